/* The RPC ROUTER socket of pid (rpc_server.h). */
#include "rpc_server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

#include "chat_prompt.h"
#include "endpoint.h"
#include "req_limits.h"
#include "rpc_auth.h"
#include "wire.h"

_Static_assert((int)SCHED_E_BAD_REQUEST == (int)PI__ERROR__CODE__BAD_REQUEST &&
                   (int)SCHED_E_UNAVAILABLE == (int)PI__ERROR__CODE__UNAVAILABLE &&
                   (int)SCHED_E_WORKER_FAILED == (int)PI__ERROR__CODE__WORKER_FAILED &&
                   (int)SCHED_E_TOO_LONG == (int)PI__ERROR__CODE__TOO_LONG &&
                   (int)SCHED_E_INTERNAL == (int)PI__ERROR__CODE__INTERNAL,
               "scheduler error codes are pi.proto's");

#define MSGS_PER_WAKE 64 /* then let the engine run a step */

struct rpc_server {
    gen_params defaults;
    engine *eng;
    void *zctx, *sock;
    char endpoint[ENDPOINT_MAX];
    int bound_ipc;
    char token[RPC_AUTH_TOKEN_MAX], admin_token[RPC_AUTH_TOKEN_MAX]; /* as configured */
    rpc_auth auth;                  /* from them and the endpoint, at bind */
};

void rpc_server_set_tokens(rpc_server *s, const char *token, const char *admin_token)
{
    snprintf(s->token, sizeof s->token, "%s", token);
    snprintf(s->admin_token, sizeof s->admin_token, "%s", admin_token);
}

rpc_server *rpc_server_new(const gen_params *defaults, pi_error *err)
{
    rpc_server *s = calloc(1, sizeof *s);
    if (!s) {
        pi_error_set(err, "out of memory");
        return NULL;
    }
    s->defaults = *defaults;
    return s;
}

void rpc_server_free(rpc_server **sp)
{
    rpc_server *s = *sp;
    if (!s)
        return;
    if (s->sock)
        zmq_close(s->sock);
    if (s->zctx)
        zmq_ctx_term(s->zctx);
    if (s->bound_ipc) {
        const char *p = endpoint_ipc_path(s->endpoint);
        if (p)
            unlink(p);
    }
    free(s);
    *sp = NULL;
}

/* 0 sent; -1 the client is gone: ROUTER_MANDATORY says it disconnected
 * (EHOSTUNREACH) or its queue is full because it stopped reading (EAGAIN,
 * the socket never blocks); -2 another failure (said on stderr). */
static int send_resp(rpc_server *s, const void *tag, size_t tag_len, Pi__Response *r)
{
    pi_error err;
    if (wire_send(s->sock, tag, tag_len, WIRE_RPC_HEADER, &r->base, &err) == 0)
        return 0;
    int en = zmq_errno();
    if (en == EHOSTUNREACH || en == EAGAIN)
        return -1;
    fprintf(stderr, "pid: reply to request %llu: %s\n", (unsigned long long)r->id, err.msg);
    return -2;
}

static void send_err(rpc_server *s, const void *tag, size_t tag_len, uint64_t id, int code,
                     const char *msg)
{
    pi_error err;
    if (tag_len && wire_send_error(s->sock, tag, tag_len, WIRE_REQUEST, id, (Pi__Error__Code)code,
                                   msg, &err) < 0)
        fprintf(stderr, "pid: error reply to request %llu: %s\n", (unsigned long long)id, err.msg);
}

static int sink_chunk(void *ud, const void *tag, size_t tag_len, uint64_t id, int32_t token,
                      const char *text, size_t text_len)
{
    Pi__GenerateChunk c = PI__GENERATE_CHUNK__INIT;
    c.n_tokens = 1;
    c.tokens = &token;
    c.text.data = (uint8_t *)text;
    c.text.len = text_len;
    Pi__Response r = PI__RESPONSE__INIT;
    r.id = id;
    r.kind_case = PI__RESPONSE__KIND_CHUNK;
    r.chunk = &c;
    if (send_resp(ud, tag, tag_len, &r) == -1) {
        fprintf(stderr, "pid: request %llu: its client went away or stopped reading; cancelled\n",
                (unsigned long long)id);
        return -1;
    }
    return 0;
}

static void sink_done(void *ud, const void *tag, size_t tag_len, uint64_t id, const sched_stats *st)
{
    Pi__GenerateDone d = PI__GENERATE_DONE__INIT;
    d.prompt_tokens = st->prompt_tokens;
    d.generated_tokens = st->generated_tokens;
    d.time_to_first_token_ms = st->ttft_ms;
    d.tokens_per_second = st->tokens_per_second;
    d.stop_reason = (char *)st->stop_reason;
    d.seed = st->seed;
    d.retried_steps = st->retried_steps;
    Pi__Response r = PI__RESPONSE__INIT;
    r.id = id;
    r.kind_case = PI__RESPONSE__KIND_DONE;
    r.done = &d;
    send_resp(ud, tag, tag_len, &r);
}

static void sink_fail(void *ud, const void *tag, size_t tag_len, uint64_t id, int code,
                      const char *msg)
{
    send_err(ud, tag, tag_len, id, code, msg);
}

sched_sink rpc_server_sink(rpc_server *s)
{
    return (sched_sink){.ud = s, .chunk = sink_chunk, .done = sink_done, .fail = sink_fail};
}

static void on_generate(rpc_server *s, const wire_msg *m)
{
    const Pi__GenerateRequest *g = m->request->generate;
    sched_request r = {.tag = m->routing_id, .tag_len = m->routing_id_len, .id = m->id,
                       .prompt = g->prompt, .prompt_len = g->prompt ? strlen(g->prompt) : 0,
                       .no_bos = g->no_bos, .parse_special = g->parse_special,
                       .max_tokens = g->max_tokens ? g->max_tokens : (uint32_t)s->defaults.n_predict};
    sampler_params_from_gen(&r.sampling, &s->defaults);
    pi_error err;
    if (g->sampling && req_limits_sampling_from_wire(&r.sampling, g->sampling, &err) < 0) {
        pi_error_wrap(&err, "request %llu", (unsigned long long)m->id);
        send_err(s, m->routing_id, m->routing_id_len, m->id, SCHED_E_BAD_REQUEST, err.msg);
        return;
    }
    if (r.max_tokens == 0) {
        send_err(s, m->routing_id, m->routing_id_len, m->id, SCHED_E_BAD_REQUEST,
                 "max_tokens is 0 and pid's default n_predict is 0");
        return;
    }
    char *chat = NULL; /* pictl chat: pid renders the model's template */
    if (g->n_messages > 0) {
        chat = chat_prompt_from_request(engine_model_path(s->eng), g, &r.parse_special, &err);
        if (!chat) {
            pi_error_wrap(&err, "request %llu", (unsigned long long)m->id);
            send_err(s, m->routing_id, m->routing_id_len, m->id, SCHED_E_BAD_REQUEST, err.msg);
            return;
        }
        r.prompt = chat;
        r.prompt_len = strlen(chat);
    }
    int code = engine_submit(s->eng, &r, &err);
    free(chat);
    if (code != SCHED_OK)
        send_err(s, m->routing_id, m->routing_id_len, m->id, code, err.msg);
}

static void on_tokenize(rpc_server *s, const wire_msg *m)
{
    const Pi__TokenizeRequest *t = m->request->tokenize;
    int32_t *ids = NULL;
    size_t n = 0;
    pi_error err;
    const char *text = t->text ? t->text : "";
    if (tokenizer_encode(engine_tokenizer(s->eng), text, strlen(text), !t->no_bos, &ids, &n, &err) < 0) {
        send_err(s, m->routing_id, m->routing_id_len, m->id, SCHED_E_BAD_REQUEST, err.msg);
        return;
    }
    Pi__TokenizeReply tr = PI__TOKENIZE_REPLY__INIT;
    tr.n_tokens = n;
    tr.tokens = ids;
    Pi__Response r = PI__RESPONSE__INIT;
    r.id = m->id;
    r.kind_case = PI__RESPONSE__KIND_TOKENIZE;
    r.tokenize = &tr;
    send_resp(s, m->routing_id, m->routing_id_len, &r);
    free(ids);
}

static void on_detokenize(rpc_server *s, const wire_msg *m)
{
    const Pi__DetokenizeRequest *d = m->request->detokenize;
    const tokenizer *tok = engine_tokenizer(s->eng);
    size_t cap = 256, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        send_err(s, m->routing_id, m->routing_id_len, m->id, SCHED_E_INTERNAL, "out of memory");
        return;
    }
    for (size_t i = 0; i < d->n_tokens; i++) {
        char piece[512];
        int n = tokenizer_decode_piece(tok, i ? d->tokens[i - 1] : -1, d->tokens[i], piece, sizeof piece);
        if (n < 0) {
            char msg[128];
            snprintf(msg, sizeof msg, "token %zu: id %d is not in the vocabulary (0..%u)", i,
                     d->tokens[i], tokenizer_n_vocab(tok) - 1);
            send_err(s, m->routing_id, m->routing_id_len, m->id, SCHED_E_BAD_REQUEST, msg);
            free(buf);
            return;
        }
        if ((size_t)n > sizeof piece)
            n = (int)sizeof piece;
        if (len + (size_t)n > cap) {
            while (len + (size_t)n > cap)
                cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb || cap > WIRE_MAX_BODY / 2) {
                free(nb ? nb : buf);
                send_err(s, m->routing_id, m->routing_id_len, m->id, SCHED_E_BAD_REQUEST,
                         "the decoded text is too large");
                return;
            }
            buf = nb;
        }
        memcpy(buf + len, piece, (size_t)n);
        len += (size_t)n;
    }
    Pi__DetokenizeReply dr = PI__DETOKENIZE_REPLY__INIT;
    dr.text.data = (uint8_t *)buf;
    dr.text.len = len;
    Pi__Response r = PI__RESPONSE__INIT;
    r.id = m->id;
    r.kind_case = PI__RESPONSE__KIND_DETOKENIZE;
    r.detokenize = &dr;
    send_resp(s, m->routing_id, m->routing_id_len, &r);
    free(buf);
}

/* Storage for the last decode step's report in a StatusReply. */
typedef struct step_report_buf {
    Pi__StepReport rep;
    Pi__StepTimings gpu;
    Pi__CpuStepTimings cpu[SUP_MAX_WORKERS], *cpu_p[SUP_MAX_WORKERS];
    char names[SUP_MAX_WORKERS][16];
} step_report_buf;

/* The last decode step into b->rep; NULL before the first one. */
static Pi__StepReport *last_step_report(const timings *tm, step_report_buf *b)
{
    const timings_step *t = timings_last(tm);
    if (!t->n)
        return NULL;
    pi__step_report__init(&b->rep);
    b->rep.step_no = t->step_no;
    b->rep.entries = t->entries;
    b->rep.wall_us = t->wall;
    b->rep.round_trip_us = t->round_trip;
    b->rep.pid_us = t->sched;
    b->rep.sampling_us = t->sampling;
    if (t->n_gpu) {
        pi__step_timings__init(&b->gpu);
        double *f[TM_GPU_N] = {&b->gpu.embed_us, &b->gpu.attn_us, &b->gpu.predict_us, &b->gpu.publish_us,
                               &b->gpu.hot_us, &b->gpu.wait_cpu_us, &b->gpu.finish_us, &b->gpu.logits_us,
                               &b->gpu.control_us};
        for (int i = 0; i < TM_GPU_N; i++)
            *f[i] = t->gpu[i];
        b->gpu.gpu_step_us = t->gpu_step;
        b->rep.gpu = &b->gpu;
    }
    size_t n = 0;
    for (uint32_t w = 0; w < t->n_cpu && n < SUP_MAX_WORKERS; w++) {
        if (!t->cpu[w].n)
            continue; /* its stats line was stale */
        Pi__CpuStepTimings *c = &b->cpu[n];
        pi__cpu_step_timings__init(c);
        snprintf(b->names[n], sizeof b->names[n], "cpu:%u", w);
        c->name = b->names[n];
        c->cold_us = t->cpu[w].cold_us;
        c->wait_gpu_us = t->cpu[w].wait_us;
        b->cpu_p[n++] = c;
    }
    b->rep.n_cpu = n;
    b->rep.cpu = b->cpu_p;
    return &b->rep;
}

static void on_status(rpc_server *s, const wire_msg *m)
{
    supervisor *sup = engine_supervisor(s->eng);
    const pi_plan *plan = engine_plan(s->eng);
    Pi__WorkerInfo infos[SUP_MAX_WORKERS], *ptrs[SUP_MAX_WORKERS];
    char details[SUP_MAX_WORKERS][800];
    for (uint32_t i = 0; i < sup->n; i++) {
        sup_worker *w = &sup->w[i];
        Pi__WorkerInfo *wi = &infos[i];
        pi__worker_info__init(wi);
        wi->name = w->name;
        wi->pid = (uint32_t)(w->pid > 0 ? w->pid : 0);
        wi->state = (char *)sup_state_name(w->state);
        wi->restarts = w->restarts;
        wi->rss_bytes = w->pid > 0 ? supervisor_rss(w->pid) : 0;
        if (!wi->rss_bytes)
            wi->rss_bytes = w->rss_bytes;
        wi->device_bytes = w->device_bytes;
        wi->backend = w->backend;
        wi->numa_node = w->numa_node;
        char held[200];
        if (w->is_gpu)
            plan_describe_hot(plan, held, sizeof held);
        else
            plan_describe_shard(plan, w->index, held, sizeof held);
        /* A ready worker's own description already says what it holds. */
        const char *what = w->detail[0] ? w->detail : held;
        char solo[96] = "";
        if (w->is_gpu && engine_solo_batch(s->eng) + engine_solo_steps(s->eng) > 0)
            snprintf(solo, sizeof solo, "; solo steps of up to %u entries, %llu run", engine_solo_batch(s->eng),
                     (unsigned long long)engine_solo_steps(s->eng));
        if (w->is_gpu)
            snprintf(details[i], sizeof details[i], "%s%s%s", what, solo, w->last_error[0] ? "; last error: " : "");
        else
            snprintf(details[i], sizeof details[i], "cpus %s; %s%s", w->cpus, what,
                     w->last_error[0] ? "; last error: " : "");
        if (w->last_error[0]) {
            size_t l = strlen(details[i]);
            snprintf(details[i] + l, sizeof details[i] - l, "%s", w->last_error);
        }
        wi->detail = details[i];
        ptrs[i] = wi;
    }
    Pi__StatusReply st = PI__STATUS_REPLY__INIT;
    st.model = (char *)engine_model_path(s->eng);
    st.placement = (char *)plan->summary;
    st.n_workers = sup->n;
    st.workers = ptrs;
    st.queue_length = engine_queue_length(s->eng);
    st.active = engine_active(s->eng);
    st.vram_budget_bytes = plan->budget_bytes;
    st.uptime_ms = engine_uptime_ms(s->eng);
    st.pid = (uint32_t)getpid();
    st.endpoint = s->endpoint;
    st.ffn = (char *)pi_ffn_mode_name(engine_ffn(s->eng));
    engine_predictor_stats(s->eng, &st.pred_true_pos, &st.pred_false_neg, &st.pred_false_pos);
    step_report_buf rb;
    st.last_step = last_step_report(engine_timings(s->eng), &rb);
    if (st.last_step)
        st.last_step->gpu_asked = engine_timings_asked(s->eng) != 0;
    Pi__Response r = PI__RESPONSE__INIT;
    r.id = m->id;
    r.kind_case = PI__RESPONSE__KIND_STATUS;
    r.status = &st;
    send_resp(s, m->routing_id, m->routing_id_len, &r);
}

static void on_restart(rpc_server *s, const wire_msg *m)
{
    const char *name = m->request->restart_worker->name;
    uint32_t new_pid = 0;
    pi_error err;
    if (engine_restart_worker(s->eng, name ? name : "", &new_pid, &err) < 0) {
        send_err(s, m->routing_id, m->routing_id_len, m->id, SCHED_E_BAD_REQUEST, err.msg);
        return;
    }
    Pi__RestartWorkerReply rr = PI__RESTART_WORKER_REPLY__INIT;
    rr.new_pid = new_pid;
    Pi__Response r = PI__RESPONSE__INIT;
    r.id = m->id;
    r.kind_case = PI__RESPONSE__KIND_RESTART_WORKER;
    r.restart_worker = &rr;
    send_resp(s, m->routing_id, m->routing_id_len, &r);
}

static void on_shutdown(rpc_server *s, const wire_msg *m)
{
    Pi__ShutdownReply sr = PI__SHUTDOWN_REPLY__INIT;
    Pi__Response r = PI__RESPONSE__INIT;
    r.id = m->id;
    r.kind_case = PI__RESPONSE__KIND_SHUTDOWN;
    r.shutdown = &sr;
    send_resp(s, m->routing_id, m->routing_id_len, &r);
    fprintf(stderr, "pid: shutdown requested\n");
    engine_stop(s->eng, 10.0);
}

static void on_cancel(rpc_server *s, const wire_msg *m)
{
    Pi__CancelReply cr = PI__CANCEL_REPLY__INIT;
    /* The stream's GenerateDone{"cancelled"} goes out first, then this. */
    cr.found = engine_cancel(s->eng, m->routing_id, m->routing_id_len,
                             m->request->cancel->request_id) == 1;
    Pi__Response r = PI__RESPONSE__INIT;
    r.id = m->id;
    r.kind_case = PI__RESPONSE__KIND_CANCEL;
    r.cancel = &cr;
    send_resp(s, m->routing_id, m->routing_id_len, &r);
}

/* Every request passes the token check before it is looked at. */
static int allowed(rpc_server *s, const wire_msg *m)
{
    Pi__Request__KindCase k = m->request->kind_case;
    int admin = k == PI__REQUEST__KIND_SHUTDOWN || k == PI__REQUEST__KIND_RESTART_WORKER;
    char what[64], msg[300];
    snprintf(what, sizeof what, "request %llu (%s)", (unsigned long long)m->id,
             wire_request_name(m->request));
    if (rpc_auth_check(&s->auth, m->request->token, admin, what, msg, sizeof msg) == 0)
        return 1;
    send_err(s, m->routing_id, m->routing_id_len, m->id, PI__ERROR__CODE__UNAUTHENTICATED, msg);
    return 0;
}

static void dispatch(rpc_server *s, const wire_msg *m)
{
    if (!allowed(s, m))
        return;
    switch (m->request->kind_case) {
    case PI__REQUEST__KIND_GENERATE: on_generate(s, m); break;
    case PI__REQUEST__KIND_TOKENIZE: on_tokenize(s, m); break;
    case PI__REQUEST__KIND_DETOKENIZE: on_detokenize(s, m); break;
    case PI__REQUEST__KIND_STATUS: on_status(s, m); break;
    case PI__REQUEST__KIND_RESTART_WORKER: on_restart(s, m); break;
    case PI__REQUEST__KIND_SHUTDOWN: on_shutdown(s, m); break;
    case PI__REQUEST__KIND_CANCEL: on_cancel(s, m); break;
    default:
        send_err(s, m->routing_id, m->routing_id_len, m->id, SCHED_E_BAD_REQUEST, "unknown request kind");
        break;
    }
}

static void on_readable(void *ud)
{
    rpc_server *s = ud;
    for (int i = 0; i < MSGS_PER_WAKE; i++) {
        wire_msg m;
        pi_error err;
        int r = wire_recv(s->sock, 1, WIRE_REQUEST, &m, &err);
        if (r == WIRE_OK) {
            dispatch(s, &m);
        } else if (r == WIRE_BAD) {
            send_err(s, m.routing_id, m.routing_id_len, m.id, PI__ERROR__CODE__BAD_REQUEST, err.msg);
        } else if (r == WIRE_VERSION) {
            char msg[700];
            snprintf(msg, sizeof msg, "unsupported protocol header '%.*s': pid speaks %s", 40,
                     m.header, WIRE_RPC_HEADER);
            send_err(s, m.routing_id, m.routing_id_len, m.id, PI__ERROR__CODE__VERSION, msg);
        }
        wire_msg_clear(&m);
        if (r == WIRE_AGAIN || r == WIRE_ERR)
            break;
    }
}

int rpc_endpoint_in_use(const char *endpoint)
{
    const char *path = endpoint_ipc_path(endpoint);
    if (!path)
        return 0;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path)
        return 0;
    memcpy(a.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    int r = connect(fd, (struct sockaddr *)&a, sizeof a);
    close(fd);
    return r == 0;
}

int rpc_server_bind_inproc(rpc_server *s, const char *inproc_endpoint, pi_error *err)
{
    if (!s->sock || zmq_bind(s->sock, inproc_endpoint) < 0)
        return pi_error_set(err, "cannot bind %s: %s", inproc_endpoint,
                            s->sock ? zmq_strerror(zmq_errno()) : "the RPC socket is not bound yet");
    return 0;
}

void *rpc_server_zctx(rpc_server *s) { return s->zctx; }

int rpc_server_bind(rpc_server *s, engine *e, const char *endpoint, pi_error *err)
{
    snprintf(s->endpoint, sizeof s->endpoint, "%s", endpoint);
    s->eng = e;
    if (rpc_auth_init(&s->auth, s->token, s->admin_token, endpoint, err) < 0)
        return -1;
    if (rpc_endpoint_in_use(endpoint))
        return pi_error_set(err, "another pid is already listening at %s; stop it with "
                                 "`pid stop --listen %s` or choose another --listen", endpoint, endpoint);
    if (endpoint_prepare_dir(endpoint, err) < 0)
        return -1;
    s->zctx = zmq_ctx_new();
    s->sock = s->zctx ? zmq_socket(s->zctx, ZMQ_ROUTER) : NULL;
    if (!s->sock)
        return pi_error_set(err, "zmq: %s", zmq_strerror(zmq_errno()));
    /* Sends never block pid and fail for a client that is gone, so its
     * requests are cancelled (sink_chunk) instead of queued for nobody. */
    int zero = 0, one = 1;
    if (wire_socket_defaults(s->sock, err) < 0 ||
        zmq_setsockopt(s->sock, ZMQ_RCVTIMEO, &zero, sizeof zero) < 0 ||
        zmq_setsockopt(s->sock, ZMQ_SNDTIMEO, &zero, sizeof zero) < 0 ||
        zmq_setsockopt(s->sock, ZMQ_ROUTER_MANDATORY, &one, sizeof one) < 0)
        return pi_error_set(err, "zmq_setsockopt on %s: %s", endpoint, zmq_strerror(zmq_errno()));
    const char *path = endpoint_ipc_path(endpoint);
    if (path)
        unlink(path); /* stale: nobody answered there */
    if (zmq_bind(s->sock, endpoint) < 0) {
        int en = zmq_errno();
        if (en == EADDRINUSE)
            return pi_error_set(err, "another pid (or another program) is already listening at %s; "
                                     "choose another --listen", endpoint);
        return pi_error_set(err, "cannot listen at %s: %s", endpoint, zmq_strerror(en));
    }
    s->bound_ipc = path != NULL;
    if (endpoint_secure_socket(endpoint, err) < 0)
        return -1;
    engine_add_socket(e, s->sock, on_readable, s);
    return 0;
}
