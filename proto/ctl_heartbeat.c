/* The in-step heartbeat thread (ctl_heartbeat.h). */
#include "ctl_heartbeat.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "pi_proc.h"
#include "wire.h"

struct ctl_heartbeat {
    void *sock;           /* created here, then used by the thread alone */
    double interval_ms;
    atomic_int in_step;
    pthread_mutex_t mu;   /* guards stop; cv wakes the thread to stop */
    pthread_cond_t cv;
    int stop;
    pthread_t th;
};

static void beat(ctl_heartbeat *h)
{
    Pi__Heartbeat hb = PI__HEARTBEAT__INIT;
    hb.rss_bytes = pi_rss_bytes(0);
    Pi__Control c = PI__CONTROL__INIT;
    c.kind_case = PI__CONTROL__KIND_HEARTBEAT;
    c.heartbeat = &hb;
    pi_error err;
    /* A failed beat is only a missed one: pid judges by silence. */
    (void)wire_send(h->sock, NULL, 0, WIRE_CTL_HEADER, &c.base, &err);
}

static void *hb_main(void *arg)
{
    ctl_heartbeat *h = arg;
    pthread_mutex_lock(&h->mu);
    while (!h->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        long ns = ts.tv_nsec + (long)(h->interval_ms * 1e6);
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        int r = pthread_cond_timedwait(&h->cv, &h->mu, &ts);
        if (h->stop)
            break;
        if (r == ETIMEDOUT && atomic_load(&h->in_step)) {
            pthread_mutex_unlock(&h->mu);
            beat(h);
            pthread_mutex_lock(&h->mu);
        }
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

ctl_heartbeat *ctl_heartbeat_start(void *zctx, const char *endpoint, const char *routing_id,
                                   double interval_ms, pi_error *err)
{
    ctl_heartbeat *h = calloc(1, sizeof *h);
    if (!h) {
        pi_error_set(err, "out of memory");
        return NULL;
    }
    h->interval_ms = interval_ms;
    char id[64];
    int n = snprintf(id, sizeof id, "%s/hb", routing_id);
    int zero = 0;
    pthread_condattr_t ca;
    if (n < 0 || (size_t)n >= sizeof id) {
        pi_error_set(err, "heartbeat: routing id '%s' too long", routing_id);
        goto fail;
    }
    if (!(h->sock = zmq_socket(zctx, ZMQ_DEALER)) ||
        zmq_setsockopt(h->sock, ZMQ_ROUTING_ID, id, (size_t)n) != 0 ||
        zmq_setsockopt(h->sock, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        wire_socket_defaults(h->sock, err) < 0 || zmq_connect(h->sock, endpoint) != 0) {
        pi_error_set(err, "heartbeat socket to %s: %s", endpoint, zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (pthread_condattr_init(&ca) != 0) {
        pi_error_set(err, "heartbeat: pthread_condattr_init failed");
        goto fail;
    }
    int bad = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
              pthread_cond_init(&h->cv, &ca) != 0;
    pthread_condattr_destroy(&ca);
    if (bad || pthread_mutex_init(&h->mu, NULL) != 0) {
        pi_error_set(err, "heartbeat: cannot initialise its condition variable");
        goto fail;
    }
    /* pthread_create is a full barrier: the socket moves to the thread. */
    if (pthread_create(&h->th, NULL, hb_main, h) != 0) {
        pthread_mutex_destroy(&h->mu);
        pthread_cond_destroy(&h->cv);
        pi_error_set(err, "heartbeat: cannot start its thread");
        goto fail;
    }
    return h;
fail:
    if (h->sock)
        zmq_close(h->sock);
    free(h);
    return NULL;
}

void ctl_heartbeat_step(ctl_heartbeat *h, int in_step)
{
    if (h)
        atomic_store(&h->in_step, in_step);
}

void ctl_heartbeat_stop(ctl_heartbeat **hp)
{
    ctl_heartbeat *h = *hp;
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    h->stop = 1;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->th, NULL);
    zmq_close(h->sock);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
    *hp = NULL;
}
