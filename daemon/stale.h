/* stale: what an earlier pid killed with SIGKILL left behind, swept when a
 * new one starts: its step segments (/dev/shm/pi-step-<pid>) and control
 * sockets (<rundir>/ctl-<pid>.sock) whose <pid> no longer runs. */
#ifndef PI_DAEMON_STALE_H
#define PI_DAEMON_STALE_H

#include "pi_error.h"

/* Removes pi-step-<pid> files in shm_dir and ctl-<pid>.sock files in rundir
 * (either may be NULL) whose process is gone (process_gone: kill(pid, 0)
 * fails with ESRCH, or a zombie); never our own pid's. Returns how many it removed, or -1 with err
 * filled when a folder cannot be read (a missing one is not an error). */
int stale_sweep(const char *shm_dir, const char *rundir, pi_error *err);

#endif
