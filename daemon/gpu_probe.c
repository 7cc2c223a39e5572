/* The GPU's memory from pi-gpu-worker --probe-memory (gpu_probe.h). */
#include "gpu_probe.h"
#include "pi_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Starts the probe with its stdout on the pipe's write end (closed here). */
static int spawn_probe(const char *path, const char *backend, int pipe_w, pid_t *child, pi_error *err)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    if (posix_spawn_file_actions_init(&fa) != 0)
        return pi_error_set(err, "gpu probe: out of memory");
    if (posix_spawnattr_init(&at) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return pi_error_set(err, "gpu probe: out of memory");
    }
    /* pid blocks SIGCHLD/SIGTERM/SIGINT for its signalfd: not the child */
    sigset_t none;
    sigemptyset(&none);
    int rc = posix_spawn_file_actions_adddup2(&fa, pipe_w, STDOUT_FILENO);
    if (rc == 0)
        rc = posix_spawnattr_setsigmask(&at, &none);
    if (rc == 0)
        rc = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);
    char *argv[] = {(char *)path, "--probe-memory", "--backend", (char *)backend, NULL};
    if (rc == 0)
        rc = posix_spawn(child, path, &fa, &at, argv, environ);
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return pi_error_set(err, "gpu probe: cannot run %s: %s (the worker binaries belong next to pid)", path,
                            strerror(rc));
    return 0;
}

/* Reads the probe's stdout into buf until it closes or the deadline passes. */
static int read_line(int fd, char *buf, size_t cap, double deadline_ms)
{
    size_t n = 0;
    for (;;) {
        double left = deadline_ms - pi_now_ms();
        if (left <= 0)
            return -1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)left + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        ssize_t got = read(fd, buf + n, cap - 1 - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0 || (n += (size_t)got) == cap - 1)
            break;
    }
    buf[n] = 0;
    char *nl = strchr(buf, '\n');
    if (nl)
        *nl = 0;
    return 0;
}

/* The probe's line: "free F total T source S", "error MESSAGE" or "oom
 * MESSAGE" (out of device memory). */
static int parse_line(const char *line, int status, gpu_memory *out, pi_error *err)
{
    if (!strncmp(line, "error ", 6))
        return pi_error_set(err, "gpu probe: %s", line + 6);
    if (!strncmp(line, "oom ", 4)) {
        pi_error_set(err, "gpu probe: %s", line + 4);
        return GPU_PROBE_OOM;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return pi_error_set(err, "gpu probe: pi-gpu-worker --probe-memory %s %d without a result",
                            WIFEXITED(status) ? "exited with status" : "was killed by signal",
                            WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    char src[sizeof out->source];
    if (sscanf(line, "free %" SCNu64 " total %" SCNu64 " source %15s", &out->free_bytes, &out->total_bytes,
               src) != 3)
        return pi_error_set(err, "gpu probe: unexpected answer '%s'", line);
    memcpy(out->source, src, sizeof src);
    return 0;
}

int gpu_probe_memory(const char *bin_dir, const char *backend, double timeout_ms, gpu_memory *out, pi_error *err)
{
    memset(out, 0, sizeof *out);
    char path[1100];
    int w = snprintf(path, sizeof path, "%s/pi-gpu-worker", bin_dir);
    if (w < 0 || (size_t)w >= sizeof path)
        return pi_error_set(err, "gpu probe: the path %s/pi-gpu-worker is too long", bin_dir);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return pi_error_set(err, "gpu probe: pipe: %s", strerror(errno));
    pid_t child = -1;
    int rc = spawn_probe(path, backend, fds[1], &child, err);
    close(fds[1]);
    if (rc < 0) {
        close(fds[0]);
        return -1;
    }
    char line[512];
    int timed_out = read_line(fds[0], line, sizeof line, pi_now_ms() + timeout_ms) < 0;
    close(fds[0]);
    if (timed_out)
        kill(child, SIGKILL); /* a hung driver: pid goes on without the figure */
    int status = 0;
    while (waitpid(child, &status, 0) < 0)
        if (errno != EINTR)
            return pi_error_set(err, "gpu probe: waitpid: %s", strerror(errno));
    if (timed_out)
        return pi_error_set(err, "gpu probe: pi-gpu-worker --probe-memory gave no answer in %.0f s",
                            timeout_ms / 1000.0);
    return parse_line(line, status, out, err);
}
