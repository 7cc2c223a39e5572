/* Sweeping an earlier pid's files (stale.h). */
#include "stale.h"
#include "daemonize.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* The pid in name = prefix + digits + suffix, else 0. */
static pid_t name_pid(const char *name, const char *prefix, const char *suffix)
{
    size_t lp = strlen(prefix), ls = strlen(suffix), ln = strlen(name);
    if (ln <= lp + ls || strncmp(name, prefix, lp) || strcmp(name + ln - ls, suffix))
        return 0;
    long v = 0;
    for (size_t i = lp; i < ln - ls; i++) {
        if (name[i] < '0' || name[i] > '9' || v > 100000000)
            return 0;
        v = v * 10 + (name[i] - '0');
    }
    return (pid_t)v;
}

/* A process that does not exist (ESRCH; EPERM = alive, someone else's) or
 * is a zombie. */
static int gone(pid_t p)
{
    return p > 0 && p != getpid() && process_gone(p);
}

static int sweep_dir(const char *dir, const char *prefix, const char *suffix, pi_error *err)
{
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        return pi_error_set(err, "stale files: cannot read %s: %s", dir, strerror(errno));
    }
    int removed = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        pid_t p = name_pid(de->d_name, prefix, suffix);
        if (!gone(p))
            continue;
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path)
            continue;
        if (unlink(path) == 0)
            removed++;
    }
    closedir(d);
    return removed;
}

int stale_sweep(const char *shm_dir, const char *rundir, pi_error *err)
{
    int a = shm_dir ? sweep_dir(shm_dir, "pi-step-", "", err) : 0;
    if (a < 0)
        return -1;
    int b = rundir ? sweep_dir(rundir, "ctl-", ".sock", err) : 0;
    if (b < 0)
        return -1;
    return a + b;
}
