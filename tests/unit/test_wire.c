/* Proves pi's framing: every message kind round-trips over real inproc and ipc ROUTER/DEALER pairs, bad headers/bodies/frame counts are rejected and drained without desynchronising the stream, endpoints resolve in the documented order, and the rpc client streams, filters ids and fails fast. */
#include <errno.h>
#include <pthread.h>
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

#include "check.h"
#include "endpoint.h"
#include "pi_proc.h"
#include "rpc.h"
#include "spin_poll.h"
#include "wire.h"

typedef struct pair {
    void *router, *dealer;
} pair;

static pair pair_open(void *ctx, const char *ep)
{
    pair p;
    pi_error err = {{0}};
    p.router = zmq_socket(ctx, ZMQ_ROUTER);
    p.dealer = zmq_socket(ctx, ZMQ_DEALER);
    CHECK(p.router && p.dealer, "zmq_socket");
    CHECK(wire_socket_defaults(p.router, &err) == 0, "%s", err.msg);
    CHECK(wire_socket_defaults(p.dealer, &err) == 0, "%s", err.msg);
    CHECK(zmq_setsockopt(p.dealer, ZMQ_ROUTING_ID, "cpu:3", 5) == 0, "routing id");
    int tmo = 5000;
    CHECK(zmq_setsockopt(p.router, ZMQ_RCVTIMEO, &tmo, sizeof tmo) == 0, "rcvtimeo");
    CHECK(zmq_setsockopt(p.dealer, ZMQ_RCVTIMEO, &tmo, sizeof tmo) == 0, "rcvtimeo");
    CHECK(zmq_bind(p.router, ep) == 0, "bind %s: %s", ep, zmq_strerror(errno));
    CHECK(zmq_connect(p.dealer, ep) == 0, "connect %s", ep);
    return p;
}

static void pair_close(pair *p)
{
    zmq_close(p->router);
    zmq_close(p->dealer);
}

/* dealer -> router, then returns what the router decoded (must be OK). */
static void up(pair *p, wire_kind kind, const ProtobufCMessage *msg, wire_msg *out)
{
    pi_error err = {{0}};
    CHECK(wire_send(p->dealer, NULL, 0, wire_header(kind), msg, &err) == 0, "%s", err.msg);
    int rc = wire_recv(p->router, 1, kind, out, &err);
    CHECK(rc == WIRE_OK, "router recv %s: rc %d: %s", msg->descriptor->name, rc, err.msg);
    CHECK(out->routing_id_len == 5 && !memcmp(out->routing_id, "cpu:3", 5), "routing id kept");
}

/* router -> dealer (addressed by the routing id). */
static void down(pair *p, wire_kind kind, const ProtobufCMessage *msg, wire_msg *out)
{
    pi_error err = {{0}};
    CHECK(wire_send(p->router, "cpu:3", 5, wire_header(kind), msg, &err) == 0, "%s", err.msg);
    int rc = wire_recv(p->dealer, 0, kind, out, &err);
    CHECK(rc == WIRE_OK, "dealer recv %s: rc %d: %s", msg->descriptor->name, rc, err.msg);
}

static void round_trip_requests(pair *p)
{
    wire_msg m;
    Pi__Request r = PI__REQUEST__INIT;
    r.id = 7;

    Pi__SamplingParams sp = PI__SAMPLING_PARAMS__INIT;
    sp.temperature = 0.5f;
    sp.top_k = 40;
    sp.seed = 12345678901234ull;
    sp.seed_set = 1;
    Pi__GenerateRequest g = PI__GENERATE_REQUEST__INIT;
    g.prompt = "Once upon a time";
    g.max_tokens = 200;
    g.sampling = &sp;
    r.kind_case = PI__REQUEST__KIND_GENERATE;
    r.generate = &g;
    up(p, WIRE_REQUEST, &r.base, &m);
    CHECK(m.id == 7 && m.request->kind_case == PI__REQUEST__KIND_GENERATE, "generate kind");
    CHECK(!strcmp(m.request->generate->prompt, "Once upon a time"), "prompt");
    CHECK(m.request->generate->max_tokens == 200, "max_tokens");
    CHECK(m.request->generate->sampling && m.request->generate->sampling->top_k == 40 &&
              m.request->generate->sampling->seed == 12345678901234ull,
          "sampling");
    wire_msg_clear(&m);

    Pi__TokenizeRequest t = PI__TOKENIZE_REQUEST__INIT;
    t.text = "héllo";
    t.no_bos = 1;
    r.kind_case = PI__REQUEST__KIND_TOKENIZE;
    r.tokenize = &t;
    up(p, WIRE_REQUEST, &r.base, &m);
    CHECK(!strcmp(m.request->tokenize->text, "héllo") && m.request->tokenize->no_bos, "tokenize");
    wire_msg_clear(&m);

    int32_t ids[3] = {1, 500, 2};
    Pi__DetokenizeRequest d = PI__DETOKENIZE_REQUEST__INIT;
    d.tokens = ids;
    d.n_tokens = 3;
    r.kind_case = PI__REQUEST__KIND_DETOKENIZE;
    r.detokenize = &d;
    up(p, WIRE_REQUEST, &r.base, &m);
    CHECK(m.request->detokenize->n_tokens == 3 && m.request->detokenize->tokens[1] == 500,
          "detokenize");
    wire_msg_clear(&m);

    Pi__StatusRequest s = PI__STATUS_REQUEST__INIT;
    r.kind_case = PI__REQUEST__KIND_STATUS;
    r.status = &s;
    up(p, WIRE_REQUEST, &r.base, &m);
    CHECK(m.request->kind_case == PI__REQUEST__KIND_STATUS, "status");
    wire_msg_clear(&m);

    Pi__RestartWorkerRequest rw = PI__RESTART_WORKER_REQUEST__INIT;
    rw.name = "cpu:1";
    r.kind_case = PI__REQUEST__KIND_RESTART_WORKER;
    r.restart_worker = &rw;
    up(p, WIRE_REQUEST, &r.base, &m);
    CHECK(!strcmp(m.request->restart_worker->name, "cpu:1"), "restart_worker");
    wire_msg_clear(&m);

    Pi__ShutdownRequest sd = PI__SHUTDOWN_REQUEST__INIT;
    r.kind_case = PI__REQUEST__KIND_SHUTDOWN;
    r.shutdown = &sd;
    up(p, WIRE_REQUEST, &r.base, &m);
    CHECK(m.request->kind_case == PI__REQUEST__KIND_SHUTDOWN, "shutdown");
    wire_msg_clear(&m);
}

static void round_trip_responses(pair *p)
{
    wire_msg m;
    Pi__Response r = PI__RESPONSE__INIT;
    r.id = 9;

    int32_t toks[2] = {42, 43};
    Pi__GenerateChunk c = PI__GENERATE_CHUNK__INIT;
    c.tokens = toks;
    c.n_tokens = 2;
    c.text.data = (uint8_t *)"\xe2\x82";  /* half a UTF-8 character is fine */
    c.text.len = 2;
    r.kind_case = PI__RESPONSE__KIND_CHUNK;
    r.chunk = &c;
    down(p, WIRE_RESPONSE, &r.base, &m);
    CHECK(m.id == 9 && m.response->chunk->n_tokens == 2 && m.response->chunk->tokens[1] == 43,
          "chunk tokens");
    CHECK(m.response->chunk->text.len == 2 && !memcmp(m.response->chunk->text.data, "\xe2\x82", 2),
          "chunk bytes");
    wire_msg_clear(&m);

    Pi__GenerateDone d = PI__GENERATE_DONE__INIT;
    d.prompt_tokens = 5;
    d.generated_tokens = 200;
    d.tokens_per_second = 123.5;
    d.stop_reason = "length";
    d.seed = 99;
    r.kind_case = PI__RESPONSE__KIND_DONE;
    r.done = &d;
    down(p, WIRE_RESPONSE, &r.base, &m);
    CHECK(m.response->done->generated_tokens == 200 && m.response->done->tokens_per_second == 123.5 &&
              !strcmp(m.response->done->stop_reason, "length") && m.response->done->seed == 99,
          "done");
    wire_msg_clear(&m);

    Pi__TokenizeReply tr = PI__TOKENIZE_REPLY__INIT;
    tr.tokens = toks;
    tr.n_tokens = 2;
    r.kind_case = PI__RESPONSE__KIND_TOKENIZE;
    r.tokenize = &tr;
    down(p, WIRE_RESPONSE, &r.base, &m);
    CHECK(m.response->tokenize->n_tokens == 2 && m.response->tokenize->tokens[0] == 42, "tok reply");
    wire_msg_clear(&m);

    Pi__DetokenizeReply dr = PI__DETOKENIZE_REPLY__INIT;
    dr.text.data = (uint8_t *)"hi";
    dr.text.len = 2;
    r.kind_case = PI__RESPONSE__KIND_DETOKENIZE;
    r.detokenize = &dr;
    down(p, WIRE_RESPONSE, &r.base, &m);
    CHECK(m.response->detokenize->text.len == 2, "detok reply");
    wire_msg_clear(&m);

    Pi__WorkerInfo w0 = PI__WORKER_INFO__INIT, w1 = PI__WORKER_INFO__INIT;
    w0.name = "gpu";
    w0.pid = 100;
    w0.numa_node = -1;
    w1.name = "cpu:0";
    w1.pid = 101;
    w1.rss_bytes = 1ull << 40;
    Pi__WorkerInfo *ws[2] = {&w0, &w1};
    Pi__StatusReply st = PI__STATUS_REPLY__INIT;
    st.model = "m.gguf";
    st.workers = ws;
    st.n_workers = 2;
    st.uptime_ms = 5000;
    r.kind_case = PI__RESPONSE__KIND_STATUS;
    r.status = &st;
    down(p, WIRE_RESPONSE, &r.base, &m);
    CHECK(m.response->status->n_workers == 2 && m.response->status->workers[0]->numa_node == -1 &&
              m.response->status->workers[1]->rss_bytes == 1ull << 40 &&
              !strcmp(m.response->status->workers[1]->name, "cpu:0"),
          "status reply");
    wire_msg_clear(&m);

    Pi__RestartWorkerReply rr = PI__RESTART_WORKER_REPLY__INIT;
    rr.new_pid = 4242;
    r.kind_case = PI__RESPONSE__KIND_RESTART_WORKER;
    r.restart_worker = &rr;
    down(p, WIRE_RESPONSE, &r.base, &m);
    CHECK(m.response->restart_worker->new_pid == 4242, "restart reply");
    wire_msg_clear(&m);

    Pi__ShutdownReply sr = PI__SHUTDOWN_REPLY__INIT;
    r.kind_case = PI__RESPONSE__KIND_SHUTDOWN;
    r.shutdown = &sr;
    down(p, WIRE_RESPONSE, &r.base, &m);
    CHECK(m.response->kind_case == PI__RESPONSE__KIND_SHUTDOWN, "shutdown reply");
    wire_msg_clear(&m);

    pi_error err = {{0}};
    CHECK(wire_send_error(p->router, "cpu:3", 5, WIRE_RESPONSE, 9, PI__ERROR__CODE__TOO_LONG,
                          "too long", &err) == 0, "%s", err.msg);
    CHECK(wire_recv(p->dealer, 0, WIRE_RESPONSE, &m, &err) == WIRE_OK, "%s", err.msg);
    CHECK(m.id == 9 && m.response->error->code == PI__ERROR__CODE__TOO_LONG &&
              !strcmp(m.response->error->message, "too long"),
          "error reply");
    wire_msg_clear(&m);
}

static void round_trip_control(pair *p)
{
    wire_msg m;
    Pi__Control c = PI__CONTROL__INIT;

    Pi__Hello h = PI__HELLO__INIT;
    h.name = "cpu:3";
    h.pid = 77;
    c.kind_case = PI__CONTROL__KIND_HELLO;
    c.hello = &h;
    up(p, WIRE_CONTROL, &c.base, &m);
    CHECK(!strcmp(m.control->hello->name, "cpu:3") && m.control->hello->pid == 77, "hello");
    wire_msg_clear(&m);

    Pi__Ready rd = PI__READY__INIT;
    rd.rss_bytes = 1000;
    rd.backend = "cpu";
    rd.numa_node = 0;
    c.kind_case = PI__CONTROL__KIND_READY;
    c.ready = &rd;
    up(p, WIRE_CONTROL, &c.base, &m);
    CHECK(m.control->ready->rss_bytes == 1000 && !strcmp(m.control->ready->backend, "cpu"), "ready");
    wire_msg_clear(&m);

    Pi__Step s = PI__STEP__INIT;
    s.step_no = 1ull << 33;
    s.n_entries = 4;
    s.abort_epoch = 2;
    c.kind_case = PI__CONTROL__KIND_STEP;
    c.step = &s;
    down(p, WIRE_CONTROL, &c.base, &m);
    CHECK(m.control->step->step_no == 1ull << 33 && m.control->step->n_entries == 4 &&
              m.control->step->abort_epoch == 2,
          "step");
    wire_msg_clear(&m);

    Pi__StepDone sd = PI__STEP_DONE__INIT;
    sd.step_no = 5;
    sd.ok = 1;
    c.kind_case = PI__CONTROL__KIND_STEP_DONE;
    c.step_done = &sd;
    up(p, WIRE_CONTROL, &c.base, &m);
    CHECK(m.control->step_done->step_no == 5 && m.control->step_done->ok, "step_done");
    wire_msg_clear(&m);

    Pi__Heartbeat hb = PI__HEARTBEAT__INIT;
    hb.device_bytes = 3;
    c.kind_case = PI__CONTROL__KIND_HEARTBEAT;
    c.heartbeat = &hb;
    up(p, WIRE_CONTROL, &c.base, &m);
    CHECK(m.control->heartbeat->device_bytes == 3, "heartbeat");
    wire_msg_clear(&m);

    Pi__Quit q = PI__QUIT__INIT;
    c.kind_case = PI__CONTROL__KIND_QUIT;
    c.quit = &q;
    down(p, WIRE_CONTROL, &c.base, &m);
    CHECK(m.control->kind_case == PI__CONTROL__KIND_QUIT, "quit");
    wire_msg_clear(&m);

    pi_error err = {{0}};
    CHECK(wire_send_error(p->dealer, NULL, 0, WIRE_CONTROL, 0, PI__ERROR__CODE__INTERNAL,
                          "model missing", &err) == 0, "%s", err.msg);
    CHECK(wire_recv(p->router, 1, WIRE_CONTROL, &m, &err) == WIRE_OK, "%s", err.msg);
    CHECK(m.control->error->code == PI__ERROR__CODE__INTERNAL, "control error");
    wire_msg_clear(&m);

    /* An RPC message on the control socket is another protocol: VERSION. */
    Pi__Request r = PI__REQUEST__INIT;
    Pi__StatusRequest st = PI__STATUS_REQUEST__INIT;
    r.kind_case = PI__REQUEST__KIND_STATUS;
    r.status = &st;
    CHECK(wire_send(p->dealer, NULL, 0, WIRE_RPC_HEADER, &r.base, &err) == 0, "%s", err.msg);
    CHECK(wire_recv(p->router, 1, WIRE_CONTROL, &m, &err) == WIRE_VERSION, "rpc on ctl");
    CHECK(!strcmp(m.header, "PIRPC01"), "header reported: %s", m.header);
    wire_msg_clear(&m);
}

/* Sends raw frames from the dealer. */
static void send_raw(void *sock, const wire_frame *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        CHECK(zmq_send(sock, f[i].data, f[i].len, i + 1 < n ? ZMQ_SNDMORE : 0) >= 0, "send");
}

static void send_status(void *dealer, uint64_t id)
{
    pi_error err = {{0}};
    Pi__Request r = PI__REQUEST__INIT;
    Pi__StatusRequest st = PI__STATUS_REQUEST__INIT;
    r.id = id;
    r.kind_case = PI__REQUEST__KIND_STATUS;
    r.status = &st;
    CHECK(wire_send(dealer, NULL, 0, WIRE_RPC_HEADER, &r.base, &err) == 0, "%s", err.msg);
}

static void expect_status(void *router, uint64_t id)
{
    wire_msg m;
    pi_error err = {{0}};
    int rc = wire_recv(router, 1, WIRE_REQUEST, &m, &err);
    CHECK(rc == WIRE_OK, "valid message after garbage: rc %d %s", rc, err.msg);
    CHECK(m.id == id && m.request->kind_case == PI__REQUEST__KIND_STATUS, "same message back");
    wire_msg_clear(&m);
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void bad_messages(pair *p)
{
    wire_msg m;
    pi_error err = {{0}};

    /* Another pi protocol version: its own code, header and sender kept. */
    wire_frame v[2] = {{"PIRPC02", 7}, {"\x08\x01", 2}};
    send_raw(p->dealer, v, 2);
    CHECK(wire_recv(p->router, 1, WIRE_REQUEST, &m, &err) == WIRE_VERSION, "version code");
    CHECK(!strcmp(m.header, "PIRPC02") && m.routing_id_len == 5, "version details");
    CHECK(strstr(err.msg, "PIRPC02") && strstr(err.msg, "PIRPC01"), "message names both: %s",
          err.msg);
    CHECK(wire_send_error(p->router, m.routing_id, m.routing_id_len, WIRE_RESPONSE, 0,
                          PI__ERROR__CODE__VERSION, err.msg, &err) == 0, "%s", err.msg);
    wire_msg_clear(&m);
    CHECK(wire_recv(p->dealer, 0, WIRE_RESPONSE, &m, &err) == WIRE_OK, "%s", err.msg);
    CHECK(m.response->error->code == PI__ERROR__CODE__VERSION, "client sees VERSION");
    wire_msg_clear(&m);

    /* Not pi at all. */
    wire_frame h[2] = {{"GET / HTTP/1.1", 14}, {"x", 1}};
    send_raw(p->dealer, h, 2);
    CHECK(wire_recv(p->router, 1, WIRE_REQUEST, &m, &err) == WIRE_BAD, "foreign header");
    wire_msg_clear(&m);

    /* Multi-frame garbage is drained whole: the next message is intact. */
    wire_frame g[7] = {{WIRE_RPC_HEADER, 7}, {"a", 1}, {"bb", 2}, {"", 0}, {"\xff", 1},
                       {WIRE_RPC_HEADER, 7}, {"zz", 2}};
    send_raw(p->dealer, g, 7);
    send_status(p->dealer, 31);
    CHECK(wire_recv(p->router, 1, WIRE_REQUEST, &m, &err) == WIRE_BAD, "7 frames rejected");
    CHECK(strstr(err.msg, "frames"), "says frames: %s", err.msg);
    wire_msg_clear(&m);
    expect_status(p->router, 31);

    /* Header alone (too few frames). */
    send_raw(p->dealer, g, 1);
    CHECK(wire_recv(p->router, 1, WIRE_REQUEST, &m, &err) == WIRE_BAD, "1 frame rejected");
    wire_msg_clear(&m);

    /* Unset oneof: BAD_REQUEST, but the id survives for the answer. */
    Pi__Request r = PI__REQUEST__INIT;
    r.id = 42;
    CHECK(wire_send(p->dealer, NULL, 0, WIRE_RPC_HEADER, &r.base, &err) == 0, "%s", err.msg);
    CHECK(wire_recv(p->router, 1, WIRE_REQUEST, &m, &err) == WIRE_BAD, "no kind");
    CHECK(m.id == 42 && m.request == NULL && m.routing_id_len == 5, "id kept, message freed");
    wire_msg_clear(&m);

    /* 10 000 random messages, then a valid one. */
    uint64_t s = 0x9e3779b97f4a7c15ull;
    unsigned char buf[6][64];
    int ok = 0, bad = 0, ver = 0;
    for (int i = 0; i < 10000; i++) {
        size_t nf = 1 + rng_next(&s) % 5;
        wire_frame f[6];
        for (size_t k = 0; k < nf; k++) {
            size_t len = rng_next(&s) % 64;
            for (size_t b = 0; b < len; b++)
                buf[k][b] = (unsigned char)rng_next(&s);
            f[k].data = buf[k];
            f[k].len = len;
        }
        /* Half of them carry a right header so the body decoder is hit. */
        if (i % 2 == 0 && nf >= 2) {
            f[0].data = WIRE_RPC_HEADER;
            f[0].len = 7;
        }
        send_raw(p->dealer, f, nf);
        int rc = wire_recv(p->router, 1, WIRE_REQUEST, &m, &err);
        CHECK(rc == WIRE_OK || rc == WIRE_BAD || rc == WIRE_VERSION, "random %d: rc %d %s", i, rc,
              err.msg);
        ok += rc == WIRE_OK;
        bad += rc == WIRE_BAD;
        ver += rc == WIRE_VERSION;
        CHECK(m.routing_id_len == 5, "sender known for random %d", i);
        wire_msg_clear(&m);
    }
    printf("random messages: %d ok, %d bad, %d version\n", ok, bad, ver);
    CHECK(bad > 5000, "most random messages rejected");
    send_status(p->dealer, 77);
    expect_status(p->router, 77);
}

/* Socket-free checks of the body decoder. */
static void bodies(void)
{
    pi_error err = {{0}};
    Pi__Request *r = NULL;
    /* generate (field 10), declared length 2^40: rejected, no huge allocation. */
    static const uint8_t huge[] = {0x52, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0x0a, 0x01, 'x'};
    CHECK(wire_decode_request(huge, sizeof huge, &r, &err) == WIRE_BAD && !r, "huge length");
    /* repeated tokens (packed, field 1 of detokenize) with a huge count */
    static const uint8_t huge2[] = {0x62, 0x06, 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f};
    CHECK(wire_decode_request(huge2, sizeof huge2, &r, &err) == WIRE_BAD && !r, "huge packed");

    /* Every truncation of a valid body: OK or BAD, and BAD when cut inside the submessage. */
    Pi__Request q = PI__REQUEST__INIT;
    Pi__GenerateRequest g = PI__GENERATE_REQUEST__INIT;
    g.prompt = "a prompt of some length";
    g.max_tokens = 10;
    q.id = 3;
    q.kind_case = PI__REQUEST__KIND_GENERATE;
    q.generate = &g;
    uint8_t buf[128];
    size_t n = pi__request__pack(&q, buf);
    CHECK(n > 10 && n < sizeof buf, "packed %zu", n);
    for (size_t cut = 0; cut < n; cut++) {
        int rc = wire_decode_request(buf, cut, &r, &err);
        CHECK(rc == WIRE_OK || rc == WIRE_BAD, "cut %zu", cut);
        if (r)
            pi__request__free_unpacked(r, NULL);
        r = NULL;
    }
    CHECK(wire_decode_request(buf, n - 3, &r, &err) == WIRE_BAD, "cut inside prompt");
    CHECK(wire_decode_request(buf, n, &r, &err) == WIRE_OK && r->id == 3, "whole");
    pi__request__free_unpacked(r, NULL);

    /* A newer peer's extra field is ignored; its unknown kind is BAD. */
    uint8_t ext[140];
    memcpy(ext, buf, n);
    ext[n] = 0x98; /* field 99, varint */
    ext[n + 1] = 0x06;
    ext[n + 2] = 0x01;
    CHECK(wire_decode_request(ext, n + 3, &r, &err) == WIRE_OK, "unknown field ignored: %s",
          err.msg);
    pi__request__free_unpacked(r, NULL);
    static const uint8_t newkind[] = {0x08, 0x05, 0xf2, 0x01, 0x00}; /* id 5, field 30 {} */
    CHECK(wire_decode_request(newkind, sizeof newkind, &r, &err) == WIRE_BAD, "unknown kind");
    CHECK(r && r->id == 5, "id readable");
    pi__request__free_unpacked(r, NULL);

    /* Bodies over the limit are refused before unpacking. */
    wire_frame f[3] = {{"x", 1}, {WIRE_RPC_HEADER, 7}, {buf, (size_t)WIRE_MAX_BODY + 1}};
    wire_msg m;
    CHECK(wire_decode_frames(f, 3, 1, WIRE_REQUEST, &m, &err) == WIRE_BAD, "over limit");
    CHECK(strstr(err.msg, "limit"), "says limit: %s", err.msg);
    wire_msg_clear(&m);

    Pi__Control *c = NULL;
    CHECK(wire_decode_control("", 0, &c, &err) == WIRE_BAD, "empty control");
    pi__control__free_unpacked(c, NULL);
    Pi__Response *rs = NULL;
    CHECK(wire_decode_response("\x08\x01", 2, &rs, &err) == WIRE_BAD, "response without kind");
    pi__response__free_unpacked(rs, NULL);
}

static void endpoints(void)
{
    char ep[ENDPOINT_MAX], tmp[160];
    pi_error err = {{0}};
    setenv("PI_ENDPOINT", "tcp://127.0.0.1:7000", 1);
    setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
    CHECK(endpoint_resolve("ipc:///a/b.sock", ep, sizeof ep, &err) == 0 &&
              !strcmp(ep, "ipc:///a/b.sock"), "flag wins: %s", ep);
    CHECK(endpoint_resolve(NULL, ep, sizeof ep, &err) == 0 && !strcmp(ep, "tcp://127.0.0.1:7000"),
          "env next: %s", ep);
    unsetenv("PI_ENDPOINT");
    CHECK(endpoint_resolve(NULL, ep, sizeof ep, &err) == 0 &&
              !strcmp(ep, "ipc:///run/user/1000/pi/pid.sock"), "xdg next: %s", ep);
    unsetenv("XDG_RUNTIME_DIR");
    CHECK(endpoint_resolve(NULL, ep, sizeof ep, &err) == 0, "%s", err.msg);
    char want_tmp[64];
    snprintf(want_tmp, sizeof want_tmp, "ipc:///tmp/pi-%u/pid.sock", (unsigned)geteuid());
    CHECK(!strcmp(ep, "ipc:///run/pi/pid.sock") || !strcmp(ep, want_tmp), "last: %s", ep);
    CHECK(endpoint_resolve("http://x", ep, sizeof ep, &err) < 0, "bad scheme");
    CHECK(endpoint_resolve("ipc://rel/p.sock", ep, sizeof ep, &err) < 0, "relative ipc");
    CHECK(endpoint_resolve("tcp://127.0.0.1:99999", ep, sizeof ep, &err) < 0 && strstr(err.msg, "1..65535"),
          "port beyond 65535");
    CHECK(endpoint_resolve("tcp://127.0.0.1:0", ep, sizeof ep, &err) < 0, "port 0");
    CHECK(endpoint_resolve("tcp://:5555", ep, sizeof ep, &err) < 0, "no host");
    CHECK(endpoint_resolve("tcp://127.0.0.1:12x", ep, sizeof ep, &err) < 0, "port not a number");
    CHECK(endpoint_resolve("tcp://[::1]:65535", ep, sizeof ep, &err) == 0, "%s", err.msg);
    CHECK(endpoint_resolve("tcp://*:1", ep, sizeof ep, &err) == 0, "%s", err.msg);
    char lng[200];
    memset(lng, 'a', sizeof lng);
    memcpy(lng, "ipc:///", 7);
    lng[sizeof lng - 1] = '\0';
    CHECK(endpoint_resolve(lng, ep, sizeof ep, &err) < 0 && strstr(err.msg, "longer"),
          "long ipc path: %s", err.msg);

    /* prepare_dir creates missing folders 0700 and refuses a file. */
    test_tmp("wire-ep/a/b", tmp, sizeof tmp);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", test_tmp("wire-ep", ep, sizeof ep));
    CHECK(system(cmd) == 0, "rm");
    char e2[ENDPOINT_MAX];
    snprintf(e2, sizeof e2, "ipc://%s/pid.sock", tmp);
    CHECK(endpoint_prepare_dir(e2, &err) == 0, "%s", err.msg);
    struct stat st;
    CHECK(stat(tmp, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700,
          "folder 0700");
    CHECK(endpoint_prepare_dir(e2, &err) == 0, "idempotent: %s", err.msg);
    snprintf(e2, sizeof e2, "ipc://%s/pid.sock/x.sock", tmp);
    char file[600];
    snprintf(file, sizeof file, "%s/pid.sock", tmp);
    FILE *f = fopen(file, "w");
    CHECK(f && fclose(f) == 0, "make file");
    CHECK(endpoint_prepare_dir(e2, &err) < 0, "a file is not a folder");
    CHECK(endpoint_prepare_dir("tcp://127.0.0.1:1", &err) == 0, "tcp: nothing to do");
}

/* A fake pid for the rpc client: answers one generate with a stray id
 * first, two chunks and done; then a status with an Error. */
static void *fake_pid(void *arg)
{
    void *router = arg;
    wire_msg m;
    pi_error err = {{0}};
    CHECK(wire_recv(router, 1, WIRE_REQUEST, &m, &err) == WIRE_OK, "fake: %s", err.msg);
    CHECK(m.request->kind_case == PI__REQUEST__KIND_GENERATE && m.id >= 1, "fake: generate");
    Pi__Response r = PI__RESPONSE__INIT;
    Pi__GenerateChunk c = PI__GENERATE_CHUNK__INIT;
    int32_t t = 5;
    c.tokens = &t;
    c.n_tokens = 1;
    c.text.data = (uint8_t *)"Hel";
    c.text.len = 3;
    r.kind_case = PI__RESPONSE__KIND_CHUNK;
    r.chunk = &c;
    r.id = m.id + 100; /* someone else's: ignored */
    CHECK(wire_send(router, m.routing_id, m.routing_id_len, WIRE_RPC_HEADER, &r.base, &err) == 0, "x");
    r.id = m.id;
    CHECK(wire_send(router, m.routing_id, m.routing_id_len, WIRE_RPC_HEADER, &r.base, &err) == 0, "x");
    c.text.data = (uint8_t *)"lo";
    c.text.len = 2;
    CHECK(wire_send(router, m.routing_id, m.routing_id_len, WIRE_RPC_HEADER, &r.base, &err) == 0, "x");
    Pi__GenerateDone d = PI__GENERATE_DONE__INIT;
    d.generated_tokens = 2;
    r.kind_case = PI__RESPONSE__KIND_DONE;
    r.done = &d;
    CHECK(wire_send(router, m.routing_id, m.routing_id_len, WIRE_RPC_HEADER, &r.base, &err) == 0, "x");
    wire_msg_clear(&m);
    CHECK(wire_recv(router, 1, WIRE_REQUEST, &m, &err) == WIRE_OK, "fake 2: %s", err.msg);
    CHECK(wire_send_error(router, m.routing_id, m.routing_id_len, WIRE_RESPONSE, m.id,
                          PI__ERROR__CODE__UNAVAILABLE, "workers down", &err) == 0, "x");
    wire_msg_clear(&m);
    return NULL;
}

typedef struct collected {
    char text[64];
    size_t len;
    int chunks, done;
} collected;

static int collect(const Pi__Response *r, void *user, pi_error *err)
{
    collected *c = user;
    (void)err;
    if (r->kind_case == PI__RESPONSE__KIND_CHUNK) {
        CHECK(c->len + r->chunk->text.len < sizeof c->text, "room");
        memcpy(c->text + c->len, r->chunk->text.data, r->chunk->text.len);
        c->len += r->chunk->text.len;
        c->chunks++;
    } else if (r->kind_case == PI__RESPONSE__KIND_DONE) {
        c->done = 1;
    }
    return 0;
}

static void rpc_client_checks(void *ctx)
{
    char path[96], ep[ENDPOINT_MAX];
    pi_error err = {{0}};
    test_tmp("wire-rpc.sock", path, sizeof path);
    unlink(path);
    snprintf(ep, sizeof ep, "ipc://%s", path);

    /* No socket file: fails fast with the start hint. */
    CHECK(rpc_connect(ep, &err) == NULL, "no pid");
    CHECK(strstr(err.msg, "pid is not running at") && strstr(err.msg, "pid start -m MODEL"),
          "hint: %s", err.msg);

    /* A stale socket file (no listener): same message, no hang. */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "bind stale");
    close(fd);
    CHECK(rpc_connect(ep, &err) == NULL && strstr(err.msg, "not running"), "stale: %s", err.msg);
    unlink(path);

    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    CHECK(router && wire_socket_defaults(router, &err) == 0, "router");
    CHECK(zmq_bind(router, ep) == 0, "bind %s", ep);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, fake_pid, router) == 0, "thread");
    rpc_client *c = rpc_connect(ep, &err);
    CHECK(c, "connect: %s", err.msg);
    Pi__Request req = PI__REQUEST__INIT;
    Pi__GenerateRequest g = PI__GENERATE_REQUEST__INIT;
    g.prompt = "";
    req.kind_case = PI__REQUEST__KIND_GENERATE;
    req.generate = &g;
    collected col;
    memset(&col, 0, sizeof col);
    int code = 0;
    CHECK(rpc_call(c, &req, collect, &col, 5000, &code, &err) == 0, "call: %s", err.msg);
    CHECK(col.chunks == 2 && col.len == 5 && !memcmp(col.text, "Hello", 5) && col.done,
          "streamed: %d chunks '%.*s'", col.chunks, (int)col.len, col.text);
    Pi__StatusRequest st = PI__STATUS_REQUEST__INIT;
    req.kind_case = PI__REQUEST__KIND_STATUS;
    req.status = &st;
    CHECK(rpc_call(c, &req, collect, &col, 5000, &code, &err) < 0, "error response");
    CHECK(code == PI__ERROR__CODE__UNAVAILABLE && strstr(err.msg, "UNAVAILABLE: workers down"),
          "error: %d %s", code, err.msg);
    pthread_join(th, NULL);

    /* Nobody answers: the call times out instead of hanging. */
    CHECK(rpc_call(c, &req, collect, &col, 200, &code, &err) < 0 && strstr(err.msg, "no answer"),
          "timeout: %s", err.msg);
    /* pid goes away mid-call: the monitor ends an unbounded wait. */
    zmq_close(router);
    CHECK(rpc_call(c, &req, collect, &col, -1, &code, &err) < 0 && strstr(err.msg, "closed"),
          "disconnect: %s", err.msg);
    rpc_close(&c);
    CHECK(c == NULL, "rpc_close nulls");
    unlink(path);
}

/* A message 3 ms after the call, inside a 200 ms spin window. */
static void *send_later(void *dealer)
{
    struct timespec ts = {0, 3000000};
    nanosleep(&ts, NULL);
    CHECK(zmq_send(dealer, "x", 1, 0) == 1, "send");
    return NULL;
}

/* spin_poll: what is queued comes at once, a message during the spin comes
 * when it lands, nothing comes at the timeout (not at the end of the spin,
 * not later); PI_ZMQ_SPIN_US overrides the window. */
static void spin_poll_checks(void *ctx)
{
    pair p = pair_open(ctx, "inproc://spin-test");
    zmq_pollitem_t it = {.socket = p.router, .events = ZMQ_POLLIN};
    double t0 = pi_now_ms();
    CHECK(spin_poll(&it, 1, 40, 0) == 0, "nothing queued, no spin");
    double t1 = pi_now_ms();
    CHECK(spin_poll(&it, 1, 40, 10000) == 0, "nothing queued, 10 ms spin");
    double t2 = pi_now_ms();
    CHECK(t1 - t0 >= 39 && t2 - t1 >= 39 && t2 - t1 < 2000, "timeouts: %.1f and %.1f ms", t1 - t0, t2 - t1);
    CHECK(zmq_send(p.dealer, "x", 1, 0) == 1, "send");
    t0 = pi_now_ms();
    CHECK(spin_poll(&it, 1, 5000, 200000) == 1 && (it.revents & ZMQ_POLLIN), "queued");
    char buf[16];
    CHECK(zmq_recv(p.router, buf, sizeof buf, 0) > 0 && zmq_recv(p.router, buf, sizeof buf, 0) == 1, "recv");
    pthread_t th;
    CHECK(pthread_create(&th, NULL, send_later, p.dealer) == 0, "thread");
    CHECK(spin_poll(&it, 1, 5000, 200000) == 1, "sent during the spin");
    t1 = pi_now_ms();
    pthread_join(th, NULL);
    CHECK(t1 - t0 < 1000, "came after %.1f ms", t1 - t0);
    CHECK(zmq_recv(p.router, buf, sizeof buf, 0) > 0 && zmq_recv(p.router, buf, sizeof buf, 0) == 1, "recv");
    pair_close(&p);

    CHECK(unsetenv("PI_ZMQ_SPIN_US") == 0 && spin_poll_us(70) == 70, "default");
    CHECK(setenv("PI_ZMQ_SPIN_US", "0", 1) == 0 && spin_poll_us(70) == 0, "0: no spin");
    CHECK(setenv("PI_ZMQ_SPIN_US", "150", 1) == 0 && spin_poll_us(0) == 150, "150");
    CHECK(setenv("PI_ZMQ_SPIN_US", "1x", 1) == 0 && spin_poll_us(70) == 70, "not a number: default");
    CHECK(unsetenv("PI_ZMQ_SPIN_US") == 0, "unsetenv");
    printf("spin_poll: ok\n");
}

int main(void)
{
    void *ctx = zmq_ctx_new();
    CHECK(ctx, "ctx");
    char path[96], ep[200];
    test_tmp("wire-test.sock", path, sizeof path);
    unlink(path);
    snprintf(ep, sizeof ep, "ipc://%s", path);
    const char *eps[2] = {"inproc://wire-test", ep};
    for (int i = 0; i < 2; i++) {
        pair p = pair_open(ctx, eps[i]);
        round_trip_requests(&p);
        round_trip_responses(&p);
        round_trip_control(&p);
        bad_messages(&p);
        pair_close(&p);
        printf("%s: ok\n", eps[i]);
    }
    unlink(path);
    bodies();
    endpoints();
    rpc_client_checks(ctx);
    spin_poll_checks(ctx);
    zmq_ctx_term(ctx);
    printf("test_wire: ok\n");
    return 0;
}
