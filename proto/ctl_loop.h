/* The worker side of pid's control socket, shared by both workers: waits
 * for control messages, sends a heartbeat whenever nothing was sent for
 * heartbeat_ms (and, from a second thread, every heartbeat_ms during a
 * step), hands every Step to on_step and returns on Quit. Messages
 * pid never sends to workers are ignored. */
#ifndef PI_CTL_LOOP_H
#define PI_CTL_LOOP_H

#include <stdint.h>

#include "pi.pb-c.h"
#include "pi_error.h"
#include "step_layout.h"

typedef struct ctl_loop {
    void *sock;                 /* the worker's DEALER */
    const char *name;           /* "gpu worker", "cpu:0": for messages */
    double heartbeat_ms;
    const double *last_sent_ms; /* when the worker last sent anything (pi_now_ms) */
    int (*heartbeat)(void *ud, pi_error *err);
    int (*on_step)(void *ud, const Pi__Step *st, pi_error *err);
    void *ud;
    /* After a step, wait for the next message spinning for up to this many
     * us (spin_poll.h) before sleeping; 0: sleep at once. */
    long spin_us;
    /* Optional: the step segment's bell and command (step_bell.h). While it
     * spins, a step the bell announces is run at once; its Step message,
     * when it comes, is dropped, as is any Step of a step up to first_step
     * (the command's step_id when the worker attached: a restarted worker
     * never reruns the step it died in). */
    step_bell *bell;
    const step_cmd *cmd;
    uint64_t first_step;
    /* Set all three to beat from a thread while on_step runs
     * (ctl_heartbeat.h); zctx NULL: no such thread. */
    void *zctx;                 /* the context of sock */
    const char *ctl_endpoint;   /* pid's control endpoint */
    const char *routing_id;     /* sock's routing id: "gpu", "cpu:I" */
} ctl_loop;

/* 0 after Quit; -1 with err when the socket fails or a callback does. */
int ctl_loop_run(const ctl_loop *l, pi_error *err);

#endif
