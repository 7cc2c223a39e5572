#include "spin_poll.h"

#include <errno.h>
#include <stdlib.h>

#include "pi_proc.h"

int spin_poll(zmq_pollitem_t *items, int n, long timeout_ms, long spin_us)
{
    return spin_poll_until(items, n, timeout_ms, spin_us, NULL, NULL);
}

int spin_poll_until(zmq_pollitem_t *items, int n, long timeout_ms, long spin_us, int (*ready)(void *ud), void *ud)
{
    double t0 = pi_now_ms();
    double spin_ms = (double)spin_us / 1e3;
    if (timeout_ms >= 0 && spin_ms > (double)timeout_ms)
        spin_ms = (double)timeout_ms;
    while (spin_ms > 0) {
        if (ready && ready(ud))
            return SPIN_POLL_READY;
        int r = zmq_poll(items, n, 0);
        if (r != 0)
            return r > 0 && ready && ready(ud) ? SPIN_POLL_READY : r;
        if (pi_now_ms() - t0 >= spin_ms)
            break;
    }
    long left = timeout_ms;
    if (timeout_ms >= 0) {
        left = timeout_ms - (long)(pi_now_ms() - t0);
        if (left < 0)
            left = 0;
    }
    int r = zmq_poll(items, n, left);
    /* The message that woke us may announce what the bell already says (a
     * timeout too short to spin through): the bell first, the message stays
     * queued. Only for a spinning caller: one that sleeps takes the messages. */
    if (r >= 0 && spin_us > 0 && ready && ready(ud))
        return SPIN_POLL_READY;
    return r;
}

long spin_poll_us(long dflt)
{
    const char *v = getenv("PI_ZMQ_SPIN_US");
    if (!v || !*v)
        return dflt;
    char *end;
    errno = 0;
    long us = strtol(v, &end, 10);
    if (errno || *end || us < 0)
        return dflt;
    return us;
}
