#include "endpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* sun_path holds 108 bytes including the NUL. */
#define IPC_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

/* tcp://HOST:PORT with a host (a name, an address, [v6] or *) and a port
 * 1..65535 in decimal: ZeroMQ would otherwise listen somewhere else (a port
 * of 99999 wraps). */
static int check_tcp(const char *ep, const char *from, pi_error *err)
{
    const char *host = ep + 6, *colon = strrchr(host, ':');
    if (!colon || colon == host)
        return pi_error_set(err, "%s endpoint '%s': expected tcp://HOST:PORT with a host "
                                 "(tcp://127.0.0.1:PORT)", from, ep);
    const char *port = colon + 1;
    unsigned long v = 0;
    size_t digits = 0;
    for (const char *c = port; *c; c++, digits++) {
        if (*c < '0' || *c > '9' || digits >= 5)
            return pi_error_set(err, "%s endpoint '%s': the port must be a number in 1..65535",
                                from, ep);
        v = v * 10 + (unsigned long)(*c - '0');
    }
    if (!digits || v < 1 || v > 65535)
        return pi_error_set(err, "%s endpoint '%s': the port must be a number in 1..65535", from, ep);
    return 0;
}

static int check(const char *ep, const char *from, pi_error *err)
{
    if (!strncmp(ep, "ipc://", 6)) {
        const char *p = ep + 6;
        if (p[0] != '/')
            return pi_error_set(err, "%s endpoint '%s': the ipc path must be absolute "
                                     "(ipc:///dir/pid.sock)", from, ep);
        if (strlen(p) > IPC_PATH_MAX)
            return pi_error_set(err, "%s endpoint '%s': the ipc path is longer than %zu bytes; "
                                     "use a shorter folder", from, ep, IPC_PATH_MAX);
        return 0;
    }
    if (!strncmp(ep, "tcp://", 6))
        return check_tcp(ep, from, err);
    return pi_error_set(err, "%s endpoint '%s': expected ipc:///path/pid.sock or "
                             "tcp://HOST:PORT", from, ep);
}

/* Checks the snprintf result n for truncation, then the endpoint itself. */
static int finish(int n, char *out, size_t cap, const char *from, pi_error *err)
{
    if (n < 0 || (size_t)n >= cap)
        return pi_error_set(err, "%s endpoint is longer than %zu bytes", from, cap - 1);
    return check(out, from, err);
}

/* /run/pi is usable if it is a writable folder, or absent under a writable /run. */
static int run_pi_usable(void)
{
    struct stat st;
    if (stat("/run/pi", &st) == 0)
        return S_ISDIR(st.st_mode) && access("/run/pi", W_OK | X_OK) == 0;
    return errno == ENOENT && access("/run", W_OK | X_OK) == 0;
}

int endpoint_resolve(const char *flag, char *out, size_t cap, pi_error *err)
{
    if (cap == 0)
        return pi_error_set(err, "endpoint_resolve: no room");
    out[0] = '\0';
    if (flag)
        return finish(snprintf(out, cap, "%s", flag), out, cap, "--endpoint", err);
    const char *env = getenv("PI_ENDPOINT");
    if (env && *env)
        return finish(snprintf(out, cap, "%s", env), out, cap, "PI_ENDPOINT", err);
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (xdg && xdg[0] == '/')
        return finish(snprintf(out, cap, "ipc://%s/pi/pid.sock", xdg), out, cap,
                      "XDG_RUNTIME_DIR", err);
    if (run_pi_usable())
        return finish(snprintf(out, cap, "ipc:///run/pi/pid.sock"), out, cap, "default", err);
    return finish(snprintf(out, cap, "ipc:///tmp/pi-%u/pid.sock", (unsigned)geteuid()), out,
                  cap, "default", err);
}

const char *endpoint_ipc_path(const char *endpoint)
{
    return strncmp(endpoint, "ipc://", 6) == 0 ? endpoint + 6 : NULL;
}

/* mkdir -p with 0700 for the folders it creates. */
static int make_dirs(char *path, pi_error *err)
{
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            int e = errno;
            *p = c;
            return pi_error_set(err, "cannot create folder %.*s: %s", (int)(p - path), path,
                                strerror(e));
        }
        *p = c;
        if (c == '\0')
            return 0;
    }
}

/* The folder of an ipc endpoint's socket into dir: 1; 0 when there is none
 * to look at (not ipc, or a socket directly under /); -1 on a too long path. */
static int ipc_dir(const char *endpoint, char dir[ENDPOINT_MAX], pi_error *err)
{
    const char *path = endpoint_ipc_path(endpoint);
    if (!path)
        return 0;
    if (snprintf(dir, ENDPOINT_MAX, "%s", path) >= ENDPOINT_MAX)
        return pi_error_set(err, "ipc path %s is too long", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    return 1;
}

int endpoint_prepare_dir(const char *endpoint, pi_error *err)
{
    char dir[ENDPOINT_MAX];
    int has = ipc_dir(endpoint, dir, err);
    if (has <= 0)
        return has;
    if (make_dirs(dir, err) < 0)
        return -1;
    struct stat st;
    if (lstat(dir, &st) != 0)
        return pi_error_set(err, "folder %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return pi_error_set(err, "%s is not a folder (a symlink or a file): remove it or "
                                 "choose another endpoint", dir);
    /* In a shared sticky folder such as /tmp another user could have made
     * ours first and would then own our socket: refuse it. */
    char parent[ENDPOINT_MAX];
    snprintf(parent, sizeof parent, "%s", dir);
    char *ps = strrchr(parent, '/');
    if (ps == parent)
        ps[1] = '\0';
    else
        *ps = '\0';
    struct stat pst;
    if (stat(parent, &pst) == 0 && (pst.st_mode & S_IWOTH) && st.st_uid != geteuid())
        return pi_error_set(err, "folder %s belongs to uid %u, not to you (uid %u): remove it "
                                 "or choose another endpoint with --listen",
                            dir, (unsigned)st.st_uid, (unsigned)geteuid());
    return 0;
}

int endpoint_check_dir(const char *endpoint, pi_error *err)
{
    char dir[ENDPOINT_MAX];
    int has = ipc_dir(endpoint, dir, err);
    if (has <= 0)
        return has;
    struct stat st;
    if (stat(dir, &st) != 0)
        return pi_error_set(err, "cannot listen at %s: folder %s: %s (pid creates only its own "
                                 "default run folder; create it or choose another --listen)",
                            endpoint, dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return pi_error_set(err, "cannot listen at %s: %s is not a folder", endpoint, dir);
    return endpoint_prepare_dir(endpoint, err); /* exists: only its checks run */
}

int endpoint_secure_socket(const char *endpoint, pi_error *err)
{
    const char *path = endpoint_ipc_path(endpoint);
    if (path && chmod(path, 0600) != 0)
        return pi_error_set(err, "chmod 0600 %s: %s", path, strerror(errno));
    return 0;
}
