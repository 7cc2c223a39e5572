/* Detaching pid from its terminal, its pidfile and its run folder. */
#ifndef PI_DAEMON_DAEMONIZE_H
#define PI_DAEMON_DAEMONIZE_H

#include <stddef.h>
#include <sys/types.h>

#include "pi_error.h"

/* The run folder: $XDG_RUNTIME_DIR/pi, else /run/pi when writable, else
 * /tmp/pi-$UID; created 0700. -1 with a message if none can be made. */
int pid_rundir(char *buf, size_t cap, pi_error *err);

/* Double fork + setsid. The daemon (grandchild) gets 0 and *notify_fd, the
 * write end of a pipe to tell the starter how startup went
 * (daemonize_notify); its stdin is /dev/null and stdout/stderr append to
 * log_path. The starting process gets 1 and *notify_fd, the read end: it
 * reads one byte ('1' = up) or EOF (the daemon died). -1 on error. */
int daemonize(const char *log_path, int *notify_fd, pi_error *err);

/* Writes the status byte (once) and closes *fd (sets it to -1). */
void daemonize_notify(int *fd, char status);

/* Creates path with O_EXCL holding our pid. A pidfile whose process is gone
 * (or is not a pid) is stale: removed and retried. -1 with a message naming
 * the running pid otherwise. */
int pidfile_create(const char *path, pi_error *err);

/* The process p no longer runs: kill(p, 0) fails with ESRCH, or it is a
 * zombie nobody reaped yet (a container whose init does not reap). */
int process_gone(pid_t p);

/* The pid in path if that process is alive, else 0. */
pid_t pidfile_read_live(const char *path);

/* Removes path if it still holds our pid. */
void pidfile_remove(const char *path);

#endif
