/* ctl_heartbeat: a worker thread that tells pid "this process runs" every
 * interval while the worker's main thread is inside a step, so a step that
 * lasts minutes is not taken for a hang, while a stopped (SIGSTOP) or
 * frozen process falls silent at once (docs/architecture.md, "Failure and
 * recovery"). It beats on its own DEALER, routing id "<id>/hb", so it never
 * shares the main thread's socket; outside steps the main loop's own
 * heartbeats speak for the worker, so a main thread stuck while idle is
 * still seen as silent. */
#ifndef PI_CTL_HEARTBEAT_H
#define PI_CTL_HEARTBEAT_H

#include "pi_error.h"

typedef struct ctl_heartbeat ctl_heartbeat;

/* Connects "<routing_id>/hb" to endpoint in zctx and starts the thread
 * (idle until ctl_heartbeat_step(h, 1)). Caller owns it: ctl_heartbeat_stop. */
ctl_heartbeat *ctl_heartbeat_start(void *zctx, const char *endpoint, const char *routing_id,
                                   double interval_ms, pi_error *err);

/* in_step 1: beat every interval from now on; 0: stop beating. */
void ctl_heartbeat_step(ctl_heartbeat *h, int in_step);

/* Joins the thread, closes its socket. NULLs *h. */
void ctl_heartbeat_stop(ctl_heartbeat **h);

#endif
