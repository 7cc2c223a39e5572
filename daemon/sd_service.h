/* sd_service: pid as a systemd Type=notify service (etc/pi.service).
 * READY=1 goes out once the model is loaded and the workers answer; with
 * WatchdogSec= a thread asks pid's own RPC socket for Status every half
 * interval and sends WATCHDOG=1 only when the answer comes, so a main loop
 * that hangs stops the pings and systemd restarts the service. Outside
 * systemd (no NOTIFY_SOCKET) it does nothing. */
#ifndef PI_DAEMON_SD_SERVICE_H
#define PI_DAEMON_SD_SERVICE_H

#include "pi_error.h"

typedef struct sd_service sd_service;

/* Sends READY=1 (with a STATUS= line naming endpoint) and starts the
 * watchdog thread when systemd asked for one; the thread talks to endpoint
 * with token (pid's client token, "" for none). *out is NULL when there is
 * nothing to stop later. -1 with err when the notification could not be
 * sent or the thread not started (pid goes on serving). */
int sd_service_ready(const char *endpoint, const char *token, sd_service **out, pi_error *err);

/* Sends STOPPING=1 (when under systemd), stops the watchdog thread and
 * frees s; NULLs *s. Safe on NULL. */
void sd_service_stopping(sd_service **s);

#endif
