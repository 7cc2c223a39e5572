/* READY=1 and WATCHDOG=1 for systemd (sd_service.h). */
#include "sd_service.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "endpoint.h"
#include "sd_notify.h"
#include "wire.h"

struct sd_service {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* signalled by sd_service_stopping */
    atomic_int stop;            /* set by sd_service_stopping (under mu for cv) */
    int running;
    uint64_t usec;              /* WatchdogSec in microseconds */
    char endpoint[ENDPOINT_MAX];
    char token[256];
};

/* One Status round trip on sock within timeout_ms: 0 answered, -1 not
 * (or stopping: the wait is cut into 100 ms slices so a stop is quick). */
static int probe(sd_service *s, void *sock, const char *token, uint64_t id, long timeout_ms)
{
    Pi__StatusRequest sr = PI__STATUS_REQUEST__INIT;
    Pi__Request req = PI__REQUEST__INIT;
    req.id = id;
    req.token = (char *)token;
    req.kind_case = PI__REQUEST__KIND_STATUS;
    req.status = &sr;
    pi_error err = {{0}};
    if (wire_send(sock, NULL, 0, WIRE_RPC_HEADER, &req.base, &err) < 0)
        return -1;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        long left = timeout_ms - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
        zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLIN};
        if (left <= 0 || atomic_load(&s->stop))
            return -1;
        int n = zmq_poll(&it, 1, left < 100 ? left : 100);
        if (n < 0)
            return -1;
        if (n == 0)
            continue;
        wire_msg m;
        int r = wire_recv(sock, 0, WIRE_RESPONSE, &m, &err);
        /* An Error (e.g. a wrong token) is an answer too: the loop is alive. */
        int mine = r == WIRE_OK && m.response->id == id;
        wire_msg_clear(&m);
        if (mine)
            return 0;
        if (r == WIRE_ERR)
            return -1;
    }
}

static void *watchdog_main(void *arg)
{
    sd_service *s = arg;
    void *ctx = zmq_ctx_new(), *sock = ctx ? zmq_socket(ctx, ZMQ_DEALER) : NULL;
    pi_error err = {{0}};
    if (!sock || wire_socket_defaults(sock, &err) < 0 || zmq_connect(sock, s->endpoint) < 0) {
        fprintf(stderr, "pid: systemd watchdog: cannot reach %s: no WATCHDOG=1 will be sent\n", s->endpoint);
        goto out;
    }
    /* Half the interval, as sd_watchdog_enabled(3) advises; the probe
     * itself may take a quarter. */
    uint64_t half = s->usec / 2, id = 1;
    pthread_mutex_lock(&s->mu);
    while (!atomic_load(&s->stop)) {
        pthread_mutex_unlock(&s->mu);
        if (probe(s, sock, s->token, id++, (long)(s->usec / 4000) + 1) == 0 &&
            sd_notify_send("WATCHDOG=1", &err) < 0)
            fprintf(stderr, "pid: systemd watchdog: %s\n", err.msg);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        uint64_t ns = (uint64_t)until.tv_nsec + (half % 1000000) * 1000;
        until.tv_sec += (time_t)(half / 1000000 + ns / 1000000000);
        until.tv_nsec = (long)(ns % 1000000000);
        pthread_mutex_lock(&s->mu);
        while (!atomic_load(&s->stop) && pthread_cond_timedwait(&s->cv, &s->mu, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&s->mu);
out:
    if (sock)
        zmq_close(sock);
    if (ctx)
        zmq_ctx_term(ctx);
    return NULL;
}

int sd_service_ready(const char *endpoint, const char *token, sd_service **out, pi_error *err)
{
    *out = NULL;
    char state[ENDPOINT_MAX + 64];
    snprintf(state, sizeof state, "READY=1\nSTATUS=model loaded, serving at %s", endpoint);
    int sent = sd_notify_send(state, err);
    if (sent <= 0)
        return sent; /* 0: not under systemd */
    uint64_t usec = sd_watchdog_usec();
    if (usec == 0)
        return 0;
    sd_service *s = calloc(1, sizeof *s);
    if (!s)
        return pi_error_set(err, "systemd watchdog: out of memory");
    s->usec = usec;
    atomic_init(&s->stop, 0);
    snprintf(s->endpoint, sizeof s->endpoint, "%s", endpoint);
    snprintf(s->token, sizeof s->token, "%s", token ? token : "");
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s);
        return pi_error_set(err, "systemd watchdog: mutex");
    }
    if (pthread_cond_init(&s->cv, NULL) != 0) {
        pthread_mutex_destroy(&s->mu);
        free(s);
        return pi_error_set(err, "systemd watchdog: condition variable");
    }
    if (pthread_create(&s->thread, NULL, watchdog_main, s) != 0) {
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return pi_error_set(err, "systemd watchdog: cannot start its thread");
    }
    s->running = 1;
    *out = s;
    return 0;
}

void sd_service_stopping(sd_service **sp)
{
    pi_error err = {{0}};
    if (sd_notify_send("STOPPING=1", &err) < 0)
        fprintf(stderr, "pid: %s\n", err.msg);
    if (!sp || !*sp)
        return;
    sd_service *s = *sp;
    pthread_mutex_lock(&s->mu);
    atomic_store(&s->stop, 1);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->running)
        pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
    *sp = NULL;
}
