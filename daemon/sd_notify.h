/* sd_notify: systemd's service notification protocol, without libsystemd.
 * systemd passes NOTIFY_SOCKET (a unix datagram socket path, or "@name" in
 * the abstract namespace) to a Type=notify service; the service sends
 * newline-separated assignments such as "READY=1" or "WATCHDOG=1" there
 * (sd_notify(3)). WatchdogSec= arrives as WATCHDOG_USEC (and WATCHDOG_PID,
 * the process it is meant for). Outside systemd none is set: nothing is sent. */
#ifndef PI_DAEMON_SD_NOTIFY_H
#define PI_DAEMON_SD_NOTIFY_H

#include <stdint.h>

#include "pi_error.h"

/* Sends state (e.g. "READY=1\nSTATUS=serving") to $NOTIFY_SOCKET: 1 sent,
 * 0 when NOTIFY_SOCKET is unset, -1 with err. */
int sd_notify_send(const char *state, pi_error *err);

/* The watchdog interval systemd asks this process for, in microseconds
 * (WATCHDOG_USEC, when WATCHDOG_PID is absent or this process), or 0. */
uint64_t sd_watchdog_usec(void);

#endif
