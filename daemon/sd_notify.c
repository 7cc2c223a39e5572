/* systemd notifications over NOTIFY_SOCKET (sd_notify.h). */
#include "sd_notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int sd_notify_send(const char *state, pi_error *err)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !path[0])
        return 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || n >= sizeof sa.sun_path)
        return pi_error_set(err, "NOTIFY_SOCKET '%s' is not an absolute path or @abstract name "
                                 "of at most %zu bytes", path, sizeof sa.sun_path - 1);
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@')
        sa.sun_path[0] = '\0'; /* abstract namespace: the name is not NUL-terminated */
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '/'));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return pi_error_set(err, "sd_notify: socket: %s", strerror(errno));
    ssize_t sent = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
    int e = errno;
    close(fd);
    if (sent < 0)
        return pi_error_set(err, "sd_notify: sending '%.40s' to %s: %s", state, path, strerror(e));
    return 1;
}

uint64_t sd_watchdog_usec(void)
{
    const char *us = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    if (!us || !us[0])
        return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(us, &end, 10);
    if (*end || errno || v == 0)
        return 0;
    if (pid && pid[0]) {
        unsigned long long p = strtoull(pid, &end, 10);
        if (*end || p != (unsigned long long)getpid())
            return 0; /* meant for another process (e.g. our parent) */
    }
    return (uint64_t)v;
}
