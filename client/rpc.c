#include "rpc.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "endpoint.h"
#include "wire.h"

#define PROBE_TIMEOUT_MS 2000

struct rpc_client {
    void *ctx;
    void *sock;   /* DEALER to pid */
    void *mon;    /* PAIR receiving the DEALER's connect/disconnect events */
    uint64_t next_id;
    char endpoint[ENDPOINT_MAX];
    char token[256];  /* sent in every request; "" = none */
};

/* --token, seen by rpc_parse_endpoint_flag before any connection. */
static const char *flag_token;

static int not_running(const char *endpoint, pi_error *err)
{
    return pi_error_set(err, "pid is not running at %s; start it with: pid start -m MODEL",
                        endpoint);
}

/* A plain AF_UNIX connect tells a live socket from a stale file left by a
 * pid that died, before ZeroMQ would retry it silently forever. */
static int ipc_alive(const char *endpoint, pi_error *err)
{
    const char *path = endpoint_ipc_path(endpoint);
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            return not_running(endpoint, err);
        return pi_error_set(err, "cannot reach pid at %s: %s", endpoint, strerror(errno));
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return pi_error_set(err, "socket: %s", strerror(errno));
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    int e = errno;
    close(fd);
    if (rc == 0)
        return 0;
    if (e == ECONNREFUSED)
        return not_running(endpoint, err);
    return pi_error_set(err, "cannot connect to pid at %s: %s", endpoint, strerror(e));
}

const char *rpc_endpoint(const rpc_client *c)
{
    return c->endpoint;
}

void rpc_close(rpc_client **cp)
{
    rpc_client *c = *cp;
    if (!c)
        return;
    if (c->sock) {
        zmq_socket_monitor(c->sock, NULL, 0);
        zmq_close(c->sock);
    }
    if (c->mon)
        zmq_close(c->mon);
    if (c->ctx)
        zmq_ctx_term(c->ctx);
    free(c);
    *cp = NULL;
}

static int set_int(void *sock, int opt, int v, pi_error *err)
{
    if (zmq_setsockopt(sock, opt, &v, sizeof v) != 0)
        return pi_error_set(err, "zmq_setsockopt(%d): %s", opt, zmq_strerror(errno));
    return 0;
}

static int open_sockets(rpc_client *c, pi_error *err)
{
    c->ctx = zmq_ctx_new();
    if (!c->ctx)
        return pi_error_set(err, "zmq_ctx_new: %s", zmq_strerror(errno));
    c->sock = zmq_socket(c->ctx, ZMQ_DEALER);
    if (!c->sock)
        return pi_error_set(err, "zmq_socket: %s", zmq_strerror(errno));
    if (wire_socket_defaults(c->sock, err) < 0)
        return -1;
    /* ZMTP heartbeats close a connection to a wedged or vanished pid, which
     * the monitor reports as a disconnect. */
    if (set_int(c->sock, ZMQ_HEARTBEAT_IVL, 1000, err) < 0 ||
        set_int(c->sock, ZMQ_HEARTBEAT_TIMEOUT, 5000, err) < 0)
        return -1;
    if (zmq_socket_monitor(c->sock, "inproc://pi-rpc-monitor",
                           ZMQ_EVENT_DISCONNECTED) != 0)
        return pi_error_set(err, "zmq_socket_monitor: %s", zmq_strerror(errno));
    c->mon = zmq_socket(c->ctx, ZMQ_PAIR);
    if (!c->mon)
        return pi_error_set(err, "zmq_socket: %s", zmq_strerror(errno));
    if (set_int(c->mon, ZMQ_LINGER, 0, err) < 0)
        return -1;
    if (zmq_connect(c->mon, "inproc://pi-rpc-monitor") != 0)
        return pi_error_set(err, "monitor connect: %s", zmq_strerror(errno));
    if (zmq_connect(c->sock, c->endpoint) != 0)
        return pi_error_set(err, "cannot connect to %s: %s", c->endpoint, zmq_strerror(errno));
    return 0;
}

rpc_client *rpc_connect(const char *endpoint, pi_error *err)
{
    char ep[ENDPOINT_MAX];
    /* endpoint_resolve with a flag only validates the spelling. */
    if (endpoint_resolve(endpoint, ep, sizeof ep, err) < 0)
        return NULL;
    if (endpoint_ipc_path(ep) && ipc_alive(ep, err) < 0)
        return NULL;
    rpc_client *c = calloc(1, sizeof *c);
    if (!c) {
        pi_error_set(err, "out of memory");
        return NULL;
    }
    snprintf(c->endpoint, sizeof c->endpoint, "%s", ep);
    const char *tok = flag_token ? flag_token : getenv("PI_TOKEN");
    if (tok && strlen(tok) >= sizeof c->token) {
        pi_error_set(err, "the token is %zu bytes; pid takes at most %zu", strlen(tok),
                     sizeof c->token - 1);
        rpc_close(&c);
        return NULL;
    }
    snprintf(c->token, sizeof c->token, "%s", tok ? tok : "");
    if (open_sockets(c, err) < 0) {
        rpc_close(&c);
        return NULL;
    }
    if (!endpoint_ipc_path(ep)) {
        Pi__Request req = PI__REQUEST__INIT;
        Pi__StatusRequest st = PI__STATUS_REQUEST__INIT;
        req.kind_case = PI__REQUEST__KIND_STATUS;
        req.status = &st;
        int code = -1;
        if (rpc_call(c, &req, NULL, NULL, PROBE_TIMEOUT_MS, &code, err) < 0 && code < 0) {
            rpc_close(&c);
            not_running(ep, err);
            return NULL;
        }
    }
    return c;
}

rpc_client *rpc_connect_default(const char *flag, pi_error *err)
{
    char ep[ENDPOINT_MAX];
    if (endpoint_resolve(flag, ep, sizeof ep, err) < 0)
        return NULL;
    return rpc_connect(ep, err);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads one monitor event; returns 1 when it says the connection closed. */
static int monitor_closed(rpc_client *c)
{
    int closed = 0, more = 1, first = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        if (first && zmq_msg_size(&m) >= 2) {
            uint16_t ev;
            memcpy(&ev, zmq_msg_data(&m), sizeof ev);
            if (ev == ZMQ_EVENT_DISCONNECTED)
                closed = 1;
        }
        first = 0;
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    return closed;
}

#define CANCEL_WAIT_MS 2000

static int send_cancel(rpc_client *c, uint64_t request_id, pi_error *err)
{
    Pi__CancelRequest cr = PI__CANCEL_REQUEST__INIT;
    cr.request_id = request_id;
    Pi__Request r = PI__REQUEST__INIT;
    r.id = ++c->next_id;
    r.token = c->token;
    r.kind_case = PI__REQUEST__KIND_CANCEL;
    r.cancel = &cr;
    if (wire_send(c->sock, NULL, 0, WIRE_RPC_HEADER, &r.base, err) < 0)
        return pi_error_wrap(err, "sending cancel to pid at %s", c->endpoint);
    return 0;
}

int rpc_call(rpc_client *c, Pi__Request *req, rpc_handler fn, void *user, int timeout_ms,
             int *remote_code, pi_error *err)
{
    return rpc_call_cancellable(c, req, fn, user, timeout_ms, remote_code, -1, NULL, err);
}

int rpc_call_cancellable(rpc_client *c, Pi__Request *req, rpc_handler fn, void *user,
                         int timeout_ms, int *remote_code, int cancel_fd, int *cancelled,
                         pi_error *err)
{
    if (cancelled)
        *cancelled = 0;
    if (remote_code)
        *remote_code = -1;
    req->id = ++c->next_id;
    req->token = c->token;
    if (wire_send(c->sock, NULL, 0, WIRE_RPC_HEADER, &req->base, err) < 0)
        return pi_error_wrap(err, "sending %s to pid at %s", wire_request_name(req),
                             c->endpoint);
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    for (;;) {
        zmq_pollitem_t items[3] = {{c->sock, 0, ZMQ_POLLIN, 0}, {c->mon, 0, ZMQ_POLLIN, 0},
                                   {NULL, cancel_fd, ZMQ_POLLIN, 0}};
        int n_items = cancel_fd >= 0 ? 3 : 2;
        long wait = -1;
        if (deadline >= 0) {
            wait = (long)(deadline - now_ms());
            if (wait <= 0)
                return pi_error_set(err, "no answer from pid at %s to %s within %.1f s",
                                    c->endpoint, wire_request_name(req), timeout_ms / 1000.0);
        }
        if (zmq_poll(items, n_items, wait) < 0) {
            if (errno == EINTR)
                return pi_error_set(err, "interrupted while waiting for pid");
            return pi_error_set(err, "zmq_poll: %s", zmq_strerror(errno));
        }
        if (n_items == 3 && (items[2].revents & ZMQ_POLLIN)) {
            if (send_cancel(c, req->id, err) < 0)
                return -1;
            if (cancelled)
                *cancelled = 1;
            cancel_fd = -1; /* once; now wait for the stream's end */
            timeout_ms = CANCEL_WAIT_MS;
            deadline = now_ms() + timeout_ms;
            continue;
        }
        if (items[1].revents & ZMQ_POLLIN) {
            if (monitor_closed(c))
                return pi_error_set(err, "the connection to pid at %s closed during %s "
                                         "(pid exited, or did not answer for 5 s)", c->endpoint,
                                    wire_request_name(req));
            continue;
        }
        if (!(items[0].revents & ZMQ_POLLIN))
            continue;
        wire_msg m;
        int rc = wire_recv(c->sock, 0, WIRE_RESPONSE, &m, err);
        if (rc == WIRE_AGAIN)
            continue;
        if (rc == WIRE_VERSION)
            return pi_error_wrap(err, "pid at %s", c->endpoint);
        if (rc == WIRE_BAD) {
            /* A response we cannot read: our request's answer may be lost. */
            if (m.id == req->id || m.id == 0)
                return pi_error_wrap(err, "unreadable answer from pid at %s", c->endpoint);
            continue;
        }
        if (rc != WIRE_OK)
            return -1;
        const Pi__Response *r = m.response;
        /* id 0: pid could not read our request's id (docs/protocol.md). */
        if (r->id != req->id && !(r->id == 0 && r->kind_case == PI__RESPONSE__KIND_ERROR)) {
            wire_msg_clear(&m);
            continue;
        }
        if (r->kind_case == PI__RESPONSE__KIND_ERROR) {
            if (remote_code)
                *remote_code = (int)r->error->code;
            pi_error_set(err, "pid: %s: %s", wire_error_code_name((int)r->error->code),
                         r->error->message);
            wire_msg_clear(&m);
            return -1;
        }
        int final = r->kind_case != PI__RESPONSE__KIND_CHUNK;
        if (fn && fn(r, user, err) < 0) {
            wire_msg_clear(&m);
            return -1;
        }
        wire_msg_clear(&m);
        if (final)
            return 0;
        if (deadline >= 0)
            deadline = now_ms() + timeout_ms;
    }
}

int rpc_parse_endpoint_flag(int argc, char **argv, int *i, const char **value, pi_error *err)
{
    const char *a = argv[*i];
    if (!strncmp(a, "--token=", 8)) {
        flag_token = a + 8;
        return 1;
    }
    if (!strcmp(a, "--token")) {
        if (*i + 1 >= argc)
            return pi_error_set(err, "--token needs a value (or set PI_TOKEN)");
        flag_token = argv[++*i];
        return 1;
    }
    if (!strncmp(a, "--endpoint=", 11)) {
        *value = a + 11;
        return 1;
    }
    if (strcmp(a, "--endpoint") != 0)
        return 0;
    if (*i + 1 >= argc)
        return pi_error_set(err, "--endpoint needs a value: ipc:///path/pid.sock or "
                                 "tcp://HOST:PORT");
    *value = argv[++*i];
    return 1;
}

char *rpc_read_text(const char *path, pi_error *err)
{
    FILE *f = path ? fopen(path, "rb") : stdin;
    if (!f) {
        pi_error_set(err, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    const char *name = path ? path : "stdin";
    size_t cap = 4096, n = 0;
    char *buf = NULL;
    for (;;) {
        if (!buf || n + 1 >= cap) {
            size_t want = buf ? cap * 2 : cap;
            if (want > 2 * (size_t)WIRE_MAX_BODY) {
                pi_error_set(err, "%s is larger than the %u-byte message limit", name,
                             WIRE_MAX_BODY);
                goto fail;
            }
            char *b = realloc(buf, want);
            if (!b) {
                pi_error_set(err, "out of memory reading %s", name);
                goto fail;
            }
            buf = b;
            cap = want;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        pi_error_set(err, "reading %s failed", name);
        goto fail;
    }
    buf[n] = '\0';
    if (f != stdin)
        fclose(f);
    return buf;
fail:
    free(buf);
    if (f != stdin)
        fclose(f);
    return NULL;
}
