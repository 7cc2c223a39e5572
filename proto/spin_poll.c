#include "spin_poll.h"

#include <errno.h>
#include <stdlib.h>

#include "pi_proc.h"

int spin_poll(zmq_pollitem_t *items, int n, long timeout_ms, long spin_us)
{
    double t0 = pi_now_ms();
    double spin_ms = (double)spin_us / 1e3;
    if (timeout_ms >= 0 && spin_ms > (double)timeout_ms)
        spin_ms = (double)timeout_ms;
    while (spin_ms > 0) {
        int r = zmq_poll(items, n, 0);
        if (r != 0)
            return r;
        if (pi_now_ms() - t0 >= spin_ms)
            break;
    }
    long left = timeout_ms;
    if (timeout_ms >= 0) {
        left = timeout_ms - (long)(pi_now_ms() - t0);
        if (left < 0)
            left = 0;
    }
    return zmq_poll(items, n, left);
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
