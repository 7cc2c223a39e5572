#include "ctl_loop.h"

#include <zmq.h>

#include "pi_proc.h"
#include "wire.h"

int ctl_loop_run(const ctl_loop *l, pi_error *err)
{
    for (;;) {
        double idle = pi_now_ms() - *l->last_sent_ms;
        if (idle >= l->heartbeat_ms) {
            if (l->heartbeat(l->ud, err) < 0)
                return -1;
            idle = 0;
        }
        zmq_pollitem_t it = {.socket = l->sock, .events = ZMQ_POLLIN};
        int pr = zmq_poll(&it, 1, (long)(l->heartbeat_ms - idle) + 1);
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
            if (c->kind_case == PI__CONTROL__KIND_STEP)
                rc = l->on_step(l->ud, c->step, err);
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
