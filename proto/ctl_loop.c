#include "ctl_loop.h"

#include <stdlib.h>
#include <time.h>
#include <zmq.h>

#include "ctl_heartbeat.h"
#include "pi_proc.h"
#include "spin_poll.h"
#include "step_bell.h"
#include "wire.h"

/* PI_TEST_STEP_DELAY_MS: tests make every step this much longer, to prove a
 * long step is not taken for a hang (tests/integration/test_heartbeat.sh). */
static void test_delay(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (ms > 0 && nanosleep(&ts, &ts) != 0)
        ;
}

/* spin_poll_until's look at the bell: a step after `last` lands in st. */
typedef struct bell_look {
    const ctl_loop *l;
    uint64_t last;
    Pi__Step st;
} bell_look;

static int bell_rang(void *p)
{
    bell_look *b = p;
    uint32_t flags;
    b->st = (Pi__Step)PI__STEP__INIT;
    if (!step_bell_posted(b->l->bell, b->l->cmd, b->last, &b->st.step_no, &b->st.n_entries, &b->st.abort_epoch,
                          &flags))
        return 0;
    b->st.timings = (flags & STEP_CMD_TIMINGS) != 0;
    return 1;
}

/* One step through on_step, with the heartbeat thread beating meanwhile. */
static int step(const ctl_loop *l, ctl_heartbeat *hb, const Pi__Step *st, long delay_ms, pi_error *err)
{
    ctl_heartbeat_step(hb, 1);
    test_delay(delay_ms);
    int rc = l->on_step(l->ud, st, err);
    ctl_heartbeat_step(hb, 0);
    return rc;
}

static int loop(const ctl_loop *l, ctl_heartbeat *hb, pi_error *err)
{
    const char *d = getenv("PI_TEST_STEP_DELAY_MS");
    long delay_ms = d ? strtol(d, NULL, 10) : 0;
    int stepped = 0;    /* the last message was a step: the next one is likely close */
    bell_look look = {.l = l, .last = l->first_step};   /* .last: the last step run */
    for (;;) {
        double idle = pi_now_ms() - *l->last_sent_ms;
        if (idle >= l->heartbeat_ms) {
            if (l->heartbeat(l->ud, err) < 0)
                return -1;
            idle = 0;
        }
        zmq_pollitem_t it = {.socket = l->sock, .events = ZMQ_POLLIN};
        int pr = spin_poll_until(&it, 1, (long)(l->heartbeat_ms - idle) + 1, stepped ? l->spin_us : 0,
                                 l->bell ? bell_rang : NULL, &look);
        stepped = 0;
        if (pr == SPIN_POLL_READY) {
            look.last = look.st.step_no;
            if (step(l, hb, &look.st, delay_ms, err) < 0)
                return -1;
            stepped = 1;
            continue;
        }
        if (pr < 0) {
            if (zmq_errno() == EINTR)
                continue;
            return pi_error_set(err, "%s: zmq_poll: %s", l->name, zmq_strerror(zmq_errno()));
        }
        if (pr == 0)
            continue;
        wire_msg msg;
        int r = wire_recv(l->sock, 0, WIRE_CONTROL, &msg, err);
        if (r == WIRE_ERR) {
            wire_msg_clear(&msg);
            return -1;
        }
        int quit = 0, rc = 0;
        if (r == WIRE_OK) {
            const Pi__Control *c = msg.control;
            if (c->kind_case == PI__CONTROL__KIND_STEP) {
                if (!l->bell || c->step->step_no > look.last) {   /* else the bell ran it */
                    look.last = c->step->step_no;
                    rc = step(l, hb, c->step, delay_ms, err);
                }
                stepped = 1;
            }
            else if (c->kind_case == PI__CONTROL__KIND_QUIT)
                quit = 1;
        }
        wire_msg_clear(&msg);
        if (rc < 0)
            return -1;
        if (quit)
            return 0;
    }
}

int ctl_loop_run(const ctl_loop *l, pi_error *err)
{
    ctl_heartbeat *hb = NULL;
    if (l->zctx && !(hb = ctl_heartbeat_start(l->zctx, l->ctl_endpoint, l->routing_id,
                                              l->heartbeat_ms, err)))
        return pi_error_wrap(err, "%s", l->name);
    int rc = loop(l, hb, err);
    ctl_heartbeat_stop(&hb);
    return rc;
}
