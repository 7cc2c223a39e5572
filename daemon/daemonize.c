/* Daemonizing, pidfile and run folder. */
#include "daemonize.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int make_dir(const char *dir)
{
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return -1;
    struct stat st;
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != getuid())
        return -1;
    return access(dir, W_OK) == 0 ? 0 : -1;
}

int pid_rundir(char *buf, size_t cap, pi_error *err)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (xdg && *xdg) {
        snprintf(buf, cap, "%s/pi", xdg);
        if (make_dir(buf) == 0)
            return 0;
    }
    if (access("/run", W_OK) == 0) {
        snprintf(buf, cap, "/run/pi");
        if (make_dir(buf) == 0)
            return 0;
    }
    snprintf(buf, cap, "/tmp/pi-%u", (unsigned)getuid());
    if (make_dir(buf) == 0)
        return 0;
    return pi_error_set(err, "no usable run folder ($XDG_RUNTIME_DIR/pi, /run/pi, %s): %s; "
                        "set XDG_RUNTIME_DIR or --listen/--pid-file", buf, strerror(errno));
}

int daemonize(const char *log_path, int *notify_fd, pi_error *err)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return pi_error_set(err, "pipe: %s", strerror(errno));
    int logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (logfd < 0) {
        close(p[0]);
        close(p[1]);
        return pi_error_set(err, "log file %s: %s", log_path, strerror(errno));
    }
    fflush(NULL);
    pid_t c = fork();
    if (c < 0) {
        close(p[0]);
        close(p[1]);
        close(logfd);
        return pi_error_set(err, "fork: %s", strerror(errno));
    }
    if (c > 0) {
        close(p[1]);
        close(logfd);
        int st;
        while (waitpid(c, &st, 0) < 0 && errno == EINTR)
            ;
        *notify_fd = p[0];
        return 1;
    }
    /* Intermediate child: new session, then fork again so the daemon is not
     * a session leader and can never reacquire a terminal. */
    close(p[0]);
    if (setsid() < 0)
        _exit(1);
    pid_t g = fork();
    if (g < 0)
        _exit(1);
    if (g > 0)
        _exit(0);
    umask(077);
    int nul = open("/dev/null", O_RDONLY);
    if (nul < 0 || dup2(nul, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
        _exit(1);
    if (nul > 2)
        close(nul);
    close(logfd);
    if (chdir("/") < 0)
        _exit(1);
    *notify_fd = p[1];
    return 0;
}

void daemonize_notify(int *fd, char status)
{
    if (*fd < 0)
        return;
    ssize_t w;
    do
        w = write(*fd, &status, 1);
    while (w < 0 && errno == EINTR);
    close(*fd);
    *fd = -1;
}

static pid_t read_pid(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    long v = 0;
    if (fscanf(f, "%ld", &v) != 1)
        v = 0;
    fclose(f);
    return v > 0 ? (pid_t)v : 0;
}

int process_gone(pid_t p)
{
    if (kill(p, 0) == -1 && errno == ESRCH)
        return 1;
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)p);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0; /* no /proc: kill's word stands */
    int gone = 0;
    if (fgets(line, sizeof line, f)) {
        char *rp = strrchr(line, ')');
        gone = rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
    }
    fclose(f);
    return gone;
}

/* Alive and running a binary called pid (not a recycled pid number). */
static int is_live_pid(pid_t p)
{
    if (p <= 0 || process_gone(p))
        return 0;
    char path[64], comm[64] = {0};
    snprintf(path, sizeof path, "/proc/%d/comm", (int)p);
    FILE *f = fopen(path, "r");
    if (!f)
        return 1;
    if (!fgets(comm, sizeof comm, f))
        comm[0] = 0;
    fclose(f);
    comm[strcspn(comm, "\n")] = 0;
    return strcmp(comm, "pid") == 0;
}

pid_t pidfile_read_live(const char *path)
{
    pid_t p = read_pid(path);
    return is_live_pid(p) ? p : 0;
}

int pidfile_create(const char *path, pi_error *err)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd >= 0) {
            char buf[32];
            int n = snprintf(buf, sizeof buf, "%d\n", (int)getpid());
            int ok = write(fd, buf, (size_t)n) == n;
            close(fd);
            if (!ok) {
                unlink(path);
                return pi_error_set(err, "pidfile %s: write failed", path);
            }
            return 0;
        }
        if (errno != EEXIST)
            return pi_error_set(err, "pidfile %s: %s", path, strerror(errno));
        pid_t other = read_pid(path);
        if (is_live_pid(other) && other != getpid())
            return pi_error_set(err, "another pid (process %d) is already running with pidfile %s; "
                                "stop it with `pid stop` first", (int)other, path);
        unlink(path); /* stale: its process is gone */
    }
    return pi_error_set(err, "pidfile %s: could not replace a stale file", path);
}

void pidfile_remove(const char *path)
{
    if (read_pid(path) == getpid())
        unlink(path);
}
