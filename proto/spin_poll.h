/* zmq_poll that first spins: for up to spin_us it polls without sleeping,
 * then sleeps in zmq_poll for what is left of timeout_ms. A control round
 * trip over ipc wakes each side's thread from its sleep; on an idle core
 * that wake-up is a large part of the ~0.3 ms a token pid and the GPU
 * worker spend on ZeroMQ (H200 host, 13B all in VRAM). Spinning costs a
 * core, so callers spin only where no CPU worker needs the cores. */
#ifndef PI_SPIN_POLL_H
#define PI_SPIN_POLL_H

#include <zmq.h>

/* As zmq_poll (the number of ready items, 0 on timeout, -1 with zmq_errno);
 * timeout_ms < 0 waits without end. */
int spin_poll(zmq_pollitem_t *items, int n, long timeout_ms, long spin_us);

/* The same, and with spin_us > 0 it also asks ready(ud) (a look at shared
 * memory, such as the step bell) before each poll and after the last:
 * SPIN_POLL_READY as soon as that returns 1 (messages that came meanwhile
 * stay queued for the next poll). */
#define SPIN_POLL_READY (-2)
int spin_poll_until(zmq_pollitem_t *items, int n, long timeout_ms, long spin_us, int (*ready)(void *ud), void *ud);

/* The spin window in us: PI_ZMQ_SPIN_US when set to a number (0: never
 * spin), else dflt. */
long spin_poll_us(long dflt);

#endif
