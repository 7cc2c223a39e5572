/* pid's OpenAI-compatible HTTP API (http_server.h, docs/http.md). */
#include "http_server.h"

#if !PI_HAVE_HTTP

int http_server_available(void) { return 0; }

http_server *http_server_start(const http_server_opts *o, pi_error *err)
{
    (void)o;
    pi_error_set(err, "%s", HTTP_UNAVAILABLE_MSG);
    return NULL;
}

void http_server_stop(http_server **s) { *s = NULL; }

#else

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "chat_prompt.h"
#include "gguf.h"
#include "http_metrics.h"
#include "http_text.h"
#include "stop_text.h"
#include "wire.h"

#define BODY_MAX (1u << 20)       /* larger request bodies: 413 */
#define MAX_STOPS 4               /* as OpenAI */
#define POLL_SLICE_MS 100         /* a waiting thread looks at `stopping` this often */
#define STATUS_TIMEOUT_MS 2000
#define GEN_IDLE_TIMEOUT_S 300.0  /* no word from pid for this long: the request fails */
#define ID_GENERATE 1
#define ID_CANCEL 2
#define ID_STATUS 3

struct http_server {
    struct MHD_Daemon *mhd;
    void *zctx;
    char rpc_endpoint[256];
    char token[256];               /* pid's client token, "" = none */
    char model_id[256];
    gen_params defaults;
    chat_prompt chat;              /* the model's chat template (chat_prompt.h) */
    http_metrics *metrics;
    atomic_int stopping;
    atomic_ullong next_id;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- one RPC conversation per request, on its own DEALER ---- */

static void *rpc_open(http_server *s, pi_error *err)
{
    void *sock = zmq_socket(s->zctx, ZMQ_DEALER);
    if (!sock) {
        pi_error_set(err, "zmq: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    int zero = 0;
    if (wire_socket_defaults(sock, err) < 0 ||
        zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero) < 0 ||
        zmq_connect(sock, s->rpc_endpoint) < 0) {
        if (!err->msg[0])
            pi_error_set(err, "cannot connect to pid's RPC socket: %s", zmq_strerror(zmq_errno()));
        zmq_close(sock);
        return NULL;
    }
    return sock;
}

/* Carries pid's client token: the ROUTER checks every request, inproc too. */
static int rpc_send(const http_server *s, void *sock, Pi__Request *req, pi_error *err)
{
    req->token = (char *)s->token;
    return wire_send(sock, NULL, 0, WIRE_RPC_HEADER, &req->base, err);
}

/* The next Response, waiting at most timeout_s: 1 got one (*out, caller
 * frees), 0 timed out or the server stops, -1 error. */
static int rpc_next(http_server *s, void *sock, double timeout_s, Pi__Response **out, pi_error *err)
{
    double until = now_s() + timeout_s;
    while (!atomic_load(&s->stopping)) {
        double left = until - now_s();
        if (left <= 0)
            return 0;
        zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLIN};
        long ms = (long)(left * 1e3) + 1;
        int r = zmq_poll(&it, 1, ms < POLL_SLICE_MS ? ms : POLL_SLICE_MS);
        if (r < 0) {
            pi_error_set(err, "zmq_poll: %s", zmq_strerror(zmq_errno()));
            return -1;
        }
        if (r == 0)
            continue;
        wire_msg m;
        int w = wire_recv(sock, 0, WIRE_RESPONSE, &m, err);
        if (w == WIRE_OK) {
            *out = m.response;
            m.response = NULL;
            wire_msg_clear(&m);
            return 1;
        }
        wire_msg_clear(&m);
        if (w == WIRE_ERR || w == WIRE_BAD || w == WIRE_VERSION)
            return -1;
    }
    pi_error_set(err, "pid is stopping");
    return 0;
}

static Pi__Response *rpc_status(http_server *s, pi_error *err)
{
    void *sock = rpc_open(s, err);
    if (!sock)
        return NULL;
    Pi__StatusRequest sr = PI__STATUS_REQUEST__INIT;
    Pi__Request req = PI__REQUEST__INIT;
    req.id = ID_STATUS;
    req.kind_case = PI__REQUEST__KIND_STATUS;
    req.status = &sr;
    Pi__Response *r = NULL;
    if (rpc_send(s, sock, &req, err) == 0) {
        int got = rpc_next(s, sock, STATUS_TIMEOUT_MS / 1e3, &r, err);
        if (got == 0)
            pi_error_set(err, "pid did not answer Status within %d ms", STATUS_TIMEOUT_MS);
        if (got == 1 && r->kind_case != PI__RESPONSE__KIND_STATUS) {
            pi_error_set(err, "pid answered Status with something else");
            pi__response__free_unpacked(r, NULL);
            r = NULL;
        }
    }
    zmq_close(sock);
    return r;
}

/* ---- responses ---- */

static enum MHD_Result queue_text(http_server *s, struct MHD_Connection *c, http_endpoint ep,
                                  int status, const char *type, char *body, size_t len)
{
    /* body: malloc'd, freed by MHD. */
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type) != MHD_YES) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    enum MHD_Result q = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    http_metrics_request(s->metrics, ep, status);
    return q;
}

static enum MHD_Result queue_json(http_server *s, struct MHD_Connection *c, http_endpoint ep,
                                  int status, cJSON *j)
{
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!text)
        return MHD_NO;
    return queue_text(s, c, ep, status, "application/json", text, strlen(text));
}

static cJSON *error_json(const char *type, const char *msg, const char *param)
{
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    if (!e || !cJSON_AddStringToObject(e, "message", msg) || !cJSON_AddStringToObject(e, "type", type) ||
        !(param ? cJSON_AddStringToObject(e, "param", param) : cJSON_AddNullToObject(e, "param")) ||
        !cJSON_AddNullToObject(e, "code")) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

static enum MHD_Result queue_error(http_server *s, struct MHD_Connection *c, http_endpoint ep,
                                   int status, const char *msg)
{
    const char *type = status == 400 || status == 404 || status == 405 || status == 413
                           ? "invalid_request_error"
                       : status == 503 ? "unavailable_error" : "server_error";
    return queue_json(s, c, ep, status, error_json(type, msg, NULL));
}

/* ---- request parsing ---- */

typedef struct gen_req {
    int chat, stream;
    char *prompt;                  /* malloc'd */
    uint32_t max_tokens;           /* 0 = pid's default */
    Pi__SamplingParams sp;
    char *stops[MAX_STOPS];
    size_t n_stops;
} gen_req;

static void gen_req_clear(gen_req *g)
{
    free(g->prompt);
    for (size_t i = 0; i < g->n_stops; i++)
        free(g->stops[i]);
    memset(g, 0, sizeof *g);
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* A number field in [lo, hi] (integer when want_int): 1 present, 0 absent or
 * null, -1 bad (msg filled). */
static int num_field(const cJSON *root, const char *key, double lo, double hi, int want_int,
                     double *out, char *msg, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsNumber(v)) {
        snprintf(msg, cap, "'%s' must be a number", key);
        return -1;
    }
    double d = v->valuedouble;
    if (!(d >= lo && d <= hi) || (want_int && d != (double)(long long)d)) {
        snprintf(msg, cap, "'%s' must be %s in [%.10g, %.10g] (got %.10g)", key, want_int ? "an integer" : "a number",
                 lo, hi, d);
        return -1;
    }
    *out = d;
    return 1;
}

/* Renders chat messages with the model's chat template family (plain
 * "role: content" lines when it has none: docs/http.md). */
static char *render_chat(const http_server *s, const cJSON *msgs, char *msg, size_t cap)
{
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) {
        snprintf(msg, cap, "'messages' must be a non-empty array of {role, content}");
        return NULL;
    }
    size_t n = (size_t)cJSON_GetArraySize(msgs), i = 0;
    chat_msg *cm = calloc(n, sizeof *cm);
    if (!cm) {
        snprintf(msg, cap, "out of memory");
        return NULL;
    }
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs)
    {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role) || !cJSON_IsString(content)) {
            snprintf(msg, cap, "messages[%zu] must be an object with string 'role' and 'content'", i);
            free(cm);
            return NULL;
        }
        const char *r = role->valuestring;
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "developer")) {
            snprintf(msg, cap, "messages[%zu].role '%.40s' is not system, developer, user or assistant", i, r);
            free(cm);
            return NULL;
        }
        if (i < n)
            cm[i] = (chat_msg){.role = r, .content = content->valuestring};
        i++;
    }
    pi_error err = {{0}};
    char *out = chat_prompt_render(&s->chat, cm, i < n ? i : n, &err);
    free(cm);
    if (!out)
        snprintf(msg, cap, "%.400s", err.msg);
    return out;
}

/* Fills g from a request body: 0, or -1 with msg (a 400). */
static int parse_gen(http_server *s, const char *body, size_t len, int chat, gen_req *g, char *msg,
                     size_t cap)
{
    memset(g, 0, sizeof *g);
    g->chat = chat;
    cJSON *root = cJSON_ParseWithLength(body, len);
    int rc = -1;
    if (!root) {
        snprintf(msg, cap, "the body is not valid JSON");
        return -1;
    }
    if (!cJSON_IsObject(root)) {
        snprintf(msg, cap, "the body must be a JSON object");
        goto out;
    }
    if (chat) {
        g->prompt = render_chat(s, cJSON_GetObjectItemCaseSensitive(root, "messages"), msg, cap);
        if (!g->prompt)
            goto out;
    } else {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
        if (!cJSON_IsString(p)) {
            snprintf(msg, cap, p ? "'prompt' must be a string (arrays and token lists are not supported)"
                                 : "'prompt' is missing");
            goto out;
        }
        if (!(g->prompt = dup_str(p->valuestring))) {
            snprintf(msg, cap, "out of memory");
            goto out;
        }
    }
    const gen_params *d = &s->defaults;
    pi__sampling_params__init(&g->sp);
    g->sp.temperature = d->temperature;
    g->sp.top_k = d->top_k > 0 ? (uint32_t)d->top_k : 0;
    g->sp.top_p = d->top_p;
    g->sp.min_p = d->min_p;
    g->sp.repeat_penalty = d->repeat_penalty;
    g->sp.repeat_last_n = d->repeat_last_n > 0 ? (uint32_t)d->repeat_last_n : 0;
    g->sp.seed = d->seed;
    g->sp.seed_set = d->has_seed != 0;
    double v;
    int r;
    if ((r = num_field(root, "max_tokens", 1, 1 << 24, 1, &v, msg, cap)) < 0)
        goto out;
    if (r == 0 && chat && (r = num_field(root, "max_completion_tokens", 1, 1 << 24, 1, &v, msg, cap)) < 0)
        goto out;
    if (r > 0)
        g->max_tokens = (uint32_t)v;
    if ((r = num_field(root, "temperature", 0, 2, 0, &v, msg, cap)) < 0)
        goto out;
    if (r > 0)
        g->sp.temperature = (float)v;
    if ((r = num_field(root, "top_p", 0, 1, 0, &v, msg, cap)) < 0)
        goto out;
    if (r > 0 && v == 0) {
        snprintf(msg, cap, "'top_p' must be in (0, 1]");
        goto out;
    }
    if (r > 0)
        g->sp.top_p = (float)v;
    if ((r = num_field(root, "top_k", 0, 1e9, 1, &v, msg, cap)) < 0)
        goto out;
    if (r > 0)
        g->sp.top_k = (uint32_t)v;
    if ((r = num_field(root, "min_p", 0, 1, 0, &v, msg, cap)) < 0)
        goto out;
    if (r > 0)
        g->sp.min_p = (float)v;
    if ((r = num_field(root, "repeat_penalty", 0.01, 100, 0, &v, msg, cap)) < 0)
        goto out;
    if (r > 0)
        g->sp.repeat_penalty = (float)v;
    if ((r = num_field(root, "seed", 0, 9007199254740991.0, 1, &v, msg, cap)) < 0)
        goto out;
    if (r > 0) {
        g->sp.seed = (uint64_t)v;
        g->sp.seed_set = 1;
    }
    if ((r = num_field(root, "n", 1, 1, 1, &v, msg, cap)) < 0) {
        snprintf(msg, cap, "'n' must be 1 (one choice per request)");
        goto out;
    }
    static const char *const zero_only[] = {"frequency_penalty", "presence_penalty"};
    for (size_t i = 0; i < 2; i++)
        if ((r = num_field(root, zero_only[i], 0, 0, 0, &v, msg, cap)) < 0) {
            snprintf(msg, cap, "'%s' is not supported (only 0); use 'repeat_penalty'", zero_only[i]);
            goto out;
        }
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(root, "stream");
    if (st && !cJSON_IsNull(st) && !cJSON_IsBool(st)) {
        snprintf(msg, cap, "'stream' must be true or false");
        goto out;
    }
    g->stream = cJSON_IsTrue(st);
    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(root, "stop");
    if (cJSON_IsString(stop)) {
        if (stop->valuestring[0] && !(g->stops[g->n_stops++] = dup_str(stop->valuestring))) {
            g->n_stops--;
            snprintf(msg, cap, "out of memory");
            goto out;
        }
    } else if (cJSON_IsArray(stop)) {
        const cJSON *x;
        if (cJSON_GetArraySize(stop) > MAX_STOPS) {
            snprintf(msg, cap, "'stop' has more than %d strings", MAX_STOPS);
            goto out;
        }
        cJSON_ArrayForEach(x, stop)
        {
            if (!cJSON_IsString(x) || !x->valuestring[0]) {
                snprintf(msg, cap, "'stop' must be a string or a list of non-empty strings");
                goto out;
            }
            if (!(g->stops[g->n_stops] = dup_str(x->valuestring))) {
                snprintf(msg, cap, "out of memory");
                goto out;
            }
            g->n_stops++;
        }
    } else if (stop && !cJSON_IsNull(stop)) {
        snprintf(msg, cap, "'stop' must be a string or a list of strings");
        goto out;
    }
    rc = 0;
out:
    cJSON_Delete(root);
    if (rc < 0)
        gen_req_clear(g);
    return rc;
}

/* ---- one generation: pid's chunks through the stop strings ---- */

typedef struct gen_run {
    http_server *s;
    gen_req g;
    void *sock;
    char id[48];
    long created;
    double t_start, t_last;
    int n_chunks;
    char *text;                    /* everything generated, malloc'd */
    size_t len, cap, emitted, cut; /* cut: where a stop string begins (stopped) */
    int stopped, finished, failed, cancel_sent;
    int fail_status;
    char fail_msg[512];
    uint32_t prompt_tokens, completion_tokens;
    char stop_reason[16];
    /* streaming: SSE bytes not yet handed to MHD */
    char *out;
    size_t out_len, out_cap, out_off;
    int ended, role_sent;
} gen_run;

static void gen_run_free(gen_run *r)
{
    if (r->sock)
        zmq_close(r->sock);
    gen_req_clear(&r->g);
    free(r->text);
    free(r->out);
    free(r);
}

static int grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    char *b = realloc(*buf, c);
    if (!b)
        return -1;
    *buf = b;
    *cap = c;
    return 0;
}

static void send_cancel(gen_run *r)
{
    if (r->cancel_sent || !r->sock)
        return;
    r->cancel_sent = 1;
    Pi__CancelRequest cr = PI__CANCEL_REQUEST__INIT;
    cr.request_id = ID_GENERATE;
    Pi__Request req = PI__REQUEST__INIT;
    req.id = ID_CANCEL;
    req.kind_case = PI__REQUEST__KIND_CANCEL;
    req.cancel = &cr;
    pi_error err;
    if (rpc_send(r->s, r->sock, &req, &err) < 0)
        fprintf(stderr, "pid: http: cancel: %s\n", err.msg);
}

static gen_run *gen_start(http_server *s, gen_req *g, int *status, char *msg, size_t cap)
{
    gen_run *r = calloc(1, sizeof *r);
    if (!r) {
        *status = 500;
        snprintf(msg, cap, "out of memory");
        return NULL;
    }
    r->s = s;
    r->g = *g;
    memset(g, 0, sizeof *g);
    r->created = (long)time(NULL);
    snprintf(r->id, sizeof r->id, "%s-%llu", r->g.chat ? "chatcmpl" : "cmpl",
             (unsigned long long)atomic_fetch_add(&s->next_id, 1));
    r->t_start = r->t_last = now_s();
    pi_error err = {{0}};
    r->sock = rpc_open(s, &err);
    Pi__GenerateRequest gr = PI__GENERATE_REQUEST__INIT;
    gr.prompt = r->g.prompt;
    gr.max_tokens = r->g.max_tokens;
    gr.sampling = &r->g.sp;
    /* A template's markers are its control tokens; plain "role: content" lines have none. */
    gr.parse_special = r->g.chat && s->chat.style.family != CHAT_PLAIN;
    Pi__Request req = PI__REQUEST__INIT;
    req.id = ID_GENERATE;
    req.kind_case = PI__REQUEST__KIND_GENERATE;
    req.generate = &gr;
    if (!r->sock || rpc_send(r->s, r->sock, &req, &err) < 0) {
        *status = 500;
        snprintf(msg, cap, "cannot reach pid's scheduler: %.400s", err.msg);
        gen_run_free(r);
        return NULL;
    }
    return r;
}

/* Waits for pid's next message about the request and applies it. Returns the
 * bytes [*from, *to) of text that may now go out; sets finished/failed. */
static void gen_step(gen_run *r, size_t *from, size_t *to)
{
    *from = *to = r->emitted;
    Pi__Response *m = NULL;
    pi_error err = {{0}};
    int got = rpc_next(r->s, r->sock, GEN_IDLE_TIMEOUT_S, &m, &err);
    if (got <= 0) {
        r->failed = r->finished = 1;
        r->fail_status = got == 0 && atomic_load(&r->s->stopping) ? 503 : 500;
        snprintf(r->fail_msg, sizeof r->fail_msg, "%s", got == 0 && !err.msg[0]
                 ? "no word from pid's scheduler within the timeout" : err.msg);
        send_cancel(r);
        return;
    }
    if (m->id == ID_GENERATE && m->kind_case == PI__RESPONSE__KIND_CHUNK && !r->stopped) {
        const Pi__GenerateChunk *c = m->chunk;
        double t = now_s();
        if (r->n_chunks++ == 0)
            http_metrics_ttft(r->s->metrics, t - r->t_start);
        else
            http_metrics_token_gap(r->s->metrics, t - r->t_last);
        r->t_last = t;
        if (grow(&r->text, &r->cap, r->len + c->text.len + 1) < 0) {
            r->failed = r->finished = 1;
            r->fail_status = 500;
            snprintf(r->fail_msg, sizeof r->fail_msg, "out of memory");
            send_cancel(r);
        } else {
            size_t old = r->len;
            if (c->text.len)
                memcpy(r->text + r->len, c->text.data, c->text.len);
            r->len += c->text.len;
            r->text[r->len] = 0;
            size_t longest = 0;
            for (size_t i = 0; i < r->g.n_stops; i++)
                if (strlen(r->g.stops[i]) > longest)
                    longest = strlen(r->g.stops[i]);
            size_t back = old > longest ? old - longest : 0;
            long at = stop_text_find(r->text, r->len, back < r->emitted ? r->emitted : back,
                                     (const char *const *)r->g.stops, r->g.n_stops);
            if (at >= 0) {
                r->stopped = 1;
                r->cut = (size_t)at;
                *to = r->cut;
                send_cancel(r); /* its GenerateDone{"cancelled"} finishes the request */
            } else {
                *to = stop_text_safe_len(r->text, r->len, (const char *const *)r->g.stops, r->g.n_stops);
                if (*to < r->emitted)
                    *to = r->emitted;
            }
        }
    } else if (m->id == ID_GENERATE && m->kind_case == PI__RESPONSE__KIND_DONE) {
        const Pi__GenerateDone *d = m->done;
        r->finished = 1;
        r->prompt_tokens = d->prompt_tokens;
        r->completion_tokens = d->generated_tokens;
        http_metrics_tokens(r->s->metrics, d->generated_tokens);
        snprintf(r->stop_reason, sizeof r->stop_reason, "%s",
                 r->stopped || !d->stop_reason || strcmp(d->stop_reason, "length") ? "stop" : "length");
        if (!r->stopped)
            *to = r->len; /* the end: what was held back goes out */
    } else if (m->id == ID_GENERATE && m->kind_case == PI__RESPONSE__KIND_ERROR) {
        const Pi__Error *e = m->error;
        r->failed = r->finished = 1;
        r->fail_status = e->code == PI__ERROR__CODE__BAD_REQUEST || e->code == PI__ERROR__CODE__TOO_LONG ? 400
                         : e->code == PI__ERROR__CODE__UNAVAILABLE ? 503 : 500;
        snprintf(r->fail_msg, sizeof r->fail_msg, "%s", e->message ? e->message : "pid failed the request");
    }
    /* Anything else (the CancelReply, chunks after a stop string) is dropped. */
    pi__response__free_unpacked(m, NULL);
    r->emitted = *to;
}

static cJSON *usage_json(const gen_run *r)
{
    cJSON *u = cJSON_CreateObject();
    if (u && (!cJSON_AddNumberToObject(u, "prompt_tokens", r->prompt_tokens) ||
              !cJSON_AddNumberToObject(u, "completion_tokens", r->completion_tokens) ||
              !cJSON_AddNumberToObject(u, "total_tokens", (double)r->prompt_tokens + r->completion_tokens))) {
        cJSON_Delete(u);
        return NULL;
    }
    return u;
}

/* The response object (or a stream's chunk) around one choice; NULL when out of memory.
 * text: the choice's text (or delta's content), NULL for none; finish: NULL = null. */
static cJSON *gen_json(const gen_run *r, int chunk, const char *text, size_t text_len,
                       const char *finish, int usage)
{
    cJSON *root = cJSON_CreateObject(), *choices = NULL, *c = NULL;
    const char *object = r->g.chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
    int ok = root && cJSON_AddStringToObject(root, "id", r->id) &&
             cJSON_AddStringToObject(root, "object", object) &&
             cJSON_AddNumberToObject(root, "created", (double)r->created) &&
             cJSON_AddStringToObject(root, "model", r->s->model_id) &&
             (choices = cJSON_AddArrayToObject(root, "choices")) && (c = cJSON_CreateObject()) &&
             cJSON_AddItemToArray(choices, c) && cJSON_AddNumberToObject(c, "index", 0);
    char *t = NULL;
    if (ok && text) {
        t = malloc(text_len + 1);
        ok = t != NULL;
        if (ok) {
            memcpy(t, text, text_len);
            t[text_len] = 0;
        }
    }
    if (ok && r->g.chat) {
        cJSON *msg = cJSON_AddObjectToObject(c, chunk ? "delta" : "message");
        ok = msg && (chunk && !r->role_sent ? cJSON_AddStringToObject(msg, "role", "assistant") != NULL : 1) &&
             (!chunk ? cJSON_AddStringToObject(msg, "role", "assistant") != NULL : 1) &&
             (t ? cJSON_AddStringToObject(msg, "content", t) != NULL : 1);
    } else if (ok) {
        ok = cJSON_AddStringToObject(c, "text", t ? t : "") && cJSON_AddNullToObject(c, "logprobs");
    }
    free(t);
    if (ok)
        ok = finish ? cJSON_AddStringToObject(c, "finish_reason", finish) != NULL
                    : cJSON_AddNullToObject(c, "finish_reason") != NULL;
    if (ok && usage) {
        cJSON *u = usage_json(r);
        ok = u && cJSON_AddItemToObject(root, "usage", u);
        if (!ok)
            cJSON_Delete(u);
    }
    if (!ok) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* Appends "data: JSON\n\n" (or the raw line) to the stream's pending bytes. */
static int sse_append(gen_run *r, cJSON *j, const char *raw)
{
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    const char *body = raw ? raw : text;
    if (!body)
        return -1;
    size_t n = strlen(body);
    int rc = -1;
    if (r->out_off == r->out_len)
        r->out_off = r->out_len = 0;
    if (grow(&r->out, &r->out_cap, r->out_len + n + sizeof "data: \n\n") == 0) {
        r->out_len += (size_t)sprintf(r->out + r->out_len, "data: %s\n\n", body);
        rc = 0;
    }
    free(text);
    return rc;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    gen_run *r = cls;
    for (;;) {
        if (r->out_off < r->out_len) {
            size_t n = r->out_len - r->out_off;
            if (n > max)
                n = max;
            memcpy(buf, r->out + r->out_off, n);
            r->out_off += n;
            return (ssize_t)n;
        }
        if (r->ended)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (atomic_load(&r->s->stopping))
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (r->g.chat && !r->role_sent) {
            /* OpenAI's first chat chunk: the role, empty content. */
            if (sse_append(r, gen_json(r, 1, "", 0, NULL, 0), NULL) < 0)
                return MHD_CONTENT_READER_END_WITH_ERROR;
            r->role_sent = 1;
            continue;
        }
        size_t from, to;
        gen_step(r, &from, &to);
        int rc = 0;
        if (to > from)
            rc = sse_append(r, gen_json(r, 1, r->text + from, to - from, NULL, 0), NULL);
        if (rc == 0 && r->finished) {
            if (r->failed) {
                cJSON *e = error_json(r->fail_status == 400 ? "invalid_request_error" : "server_error",
                                      r->fail_msg, NULL);
                rc = sse_append(r, e, NULL);
            } else {
                rc = sse_append(r, gen_json(r, 1, r->g.chat ? NULL : "", 0, r->stop_reason, 1), NULL);
            }
            if (rc == 0)
                rc = sse_append(r, NULL, "[DONE]");
            r->ended = 1;
        }
        if (rc < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
}

static void stream_free(void *cls)
{
    gen_run *r = cls;
    if (!r->ended) {
        /* The client went away (or pid stops): its request leaves its slot now. */
        http_metrics_disconnect(r->s->metrics);
        send_cancel(r);
    }
    gen_run_free(r);
}

static enum MHD_Result on_generate(http_server *s, struct MHD_Connection *c, http_endpoint ep,
                                   const char *body, size_t len)
{
    gen_req g;
    char msg[512];
    if (ep == HTTP_EP_CHAT && s->chat.bad)
        return queue_error(s, c, ep, 500, s->chat.why); /* the model's template, not the request */
    if (parse_gen(s, body, len, ep == HTTP_EP_CHAT, &g, msg, sizeof msg) < 0)
        return queue_error(s, c, ep, 400, msg);
    int status = 500;
    gen_run *r = gen_start(s, &g, &status, msg, sizeof msg);
    if (!r)
        return queue_error(s, c, ep, status, msg);
    if (r->g.stream) {
        /* The first message tells a refused request (400/503) from a running one. */
        size_t from = 0, to = 0;
        while (!r->finished && r->n_chunks == 0)
            gen_step(r, &from, &to);
        if (r->failed && r->n_chunks == 0) {
            enum MHD_Result q = queue_error(s, c, ep, r->fail_status, r->fail_msg);
            gen_run_free(r);
            return q;
        }
        /* Re-emit what gen_step already released, inside the stream. */
        size_t released = r->emitted;
        r->emitted = 0;
        if (r->g.chat) {
            if (sse_append(r, gen_json(r, 1, "", 0, NULL, 0), NULL) < 0) {
                gen_run_free(r);
                return MHD_NO;
            }
            r->role_sent = 1;
        }
        if (released && sse_append(r, gen_json(r, 1, r->text, released, NULL, 0), NULL) < 0) {
            gen_run_free(r);
            return MHD_NO;
        }
        r->emitted = released;
        if (r->finished) {
            if (sse_append(r, gen_json(r, 1, r->g.chat ? NULL : "", 0, r->stop_reason, 1), NULL) < 0 ||
                sse_append(r, NULL, "[DONE]") < 0) {
                gen_run_free(r);
                return MHD_NO;
            }
            r->ended = 1;
        }
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read,
                                                                      r, stream_free);
        if (!resp) {
            gen_run_free(r);
            return MHD_NO;
        }
        if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream") != MHD_YES ||
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache") != MHD_YES) {
            MHD_destroy_response(resp); /* frees r through stream_free */
            return MHD_NO;
        }
        enum MHD_Result q = MHD_queue_response(c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        http_metrics_request(s->metrics, ep, 200);
        return q;
    }
    while (!r->finished) {
        size_t from, to;
        gen_step(r, &from, &to);
    }
    enum MHD_Result q;
    if (r->failed)
        q = queue_error(s, c, ep, r->fail_status, r->fail_msg);
    else
        q = queue_json(s, c, ep, 200, gen_json(r, 0, r->text ? r->text : "", r->emitted, r->stop_reason, 1));
    gen_run_free(r);
    return q;
}

/* ---- GET endpoints ---- */

static enum MHD_Result on_health(http_server *s, struct MHD_Connection *c)
{
    pi_error err = {{0}};
    Pi__Response *r = rpc_status(s, &err);
    const char *state = "ok";
    if (!r)
        state = "loading";
    else
        for (size_t i = 0; i < r->status->n_workers && !strcmp(state, "ok"); i++) {
            const char *ws = r->status->workers[i]->state;
            if (!strcmp(ws, "starting"))
                state = "loading";     /* pid start: the workers load the model */
            else if (strcmp(ws, "ready"))
                state = "unavailable"; /* a worker died and is restarting */
        }
    if (r)
        pi__response__free_unpacked(r, NULL);
    cJSON *j = cJSON_CreateObject();
    if (j && !cJSON_AddStringToObject(j, "status", state)) {
        cJSON_Delete(j);
        j = NULL;
    }
    return queue_json(s, c, HTTP_EP_HEALTH, strcmp(state, "ok") ? 503 : 200, j);
}

static enum MHD_Result on_models(http_server *s, struct MHD_Connection *c)
{
    cJSON *root = cJSON_CreateObject(), *data = NULL, *m = NULL;
    if (!root || !cJSON_AddStringToObject(root, "object", "list") ||
        !(data = cJSON_AddArrayToObject(root, "data")) || !(m = cJSON_CreateObject()) ||
        !cJSON_AddItemToArray(data, m) || !cJSON_AddStringToObject(m, "id", s->model_id) ||
        !cJSON_AddStringToObject(m, "object", "model") || !cJSON_AddNumberToObject(m, "created", 0) ||
        !cJSON_AddStringToObject(m, "owned_by", "pi")) {
        cJSON_Delete(root);
        return MHD_NO;
    }
    return queue_json(s, c, HTTP_EP_MODELS, 200, root);
}

static enum MHD_Result on_metrics(http_server *s, struct MHD_Connection *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return queue_error(s, c, HTTP_EP_METRICS, 500, "out of memory");
    http_metrics_render(s->metrics, f);
    pi_error err = {{0}};
    Pi__Response *r = rpc_status(s, &err);
    if (r) {
        const Pi__StatusReply *st = r->status;
        fprintf(f, "# HELP pi_requests_active Requests generating now.\n# TYPE pi_requests_active gauge\n"
                   "pi_requests_active %u\n", st->active);
        fprintf(f, "# HELP pi_requests_queued Requests waiting for a slot.\n# TYPE pi_requests_queued gauge\n"
                   "pi_requests_queued %u\n", st->queue_length);
        fprintf(f, "# HELP pi_vram_budget_bytes The --vram-budget pid planned with.\n"
                   "# TYPE pi_vram_budget_bytes gauge\npi_vram_budget_bytes %llu\n",
                (unsigned long long)st->vram_budget_bytes);
        static const char *const fams[3][2] = {
            {"pi_worker_restarts_total", "counter"}, {"pi_worker_rss_bytes", "gauge"},
            {"pi_worker_device_bytes", "gauge"}};
        static const char *const helps[3] = {"Times pid restarted the worker.",
                                             "Resident memory (RAM) of the worker process.",
                                             "Device memory (VRAM) the worker holds."};
        for (int k = 0; k < 3; k++) {
            fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", fams[k][0], helps[k], fams[k][0], fams[k][1]);
            for (size_t i = 0; i < st->n_workers; i++) {
                const Pi__WorkerInfo *w = st->workers[i];
                unsigned long long v = k == 0 ? w->restarts : k == 1 ? w->rss_bytes : w->device_bytes;
                fprintf(f, "%s{worker=\"%s\"} %llu\n", fams[k][0], w->name, v);
            }
        }
        pi__response__free_unpacked(r, NULL);
    } else {
        fprintf(f, "# pid's Status: %s\n", err.msg);
    }
    if (fclose(f) != 0) {
        free(buf);
        return queue_error(s, c, HTTP_EP_METRICS, 500, "out of memory");
    }
    return queue_text(s, c, HTTP_EP_METRICS, 200, "text/plain; version=0.0.4", buf, len);
}

/* ---- routing ---- */

typedef struct conn_body {
    char *buf;
    size_t len, cap;
    int too_large;
} conn_body;

static http_endpoint route(const char *url)
{
    if (!strcmp(url, "/health"))
        return HTTP_EP_HEALTH;
    if (!strcmp(url, "/v1/models"))
        return HTTP_EP_MODELS;
    if (!strcmp(url, "/v1/completions"))
        return HTTP_EP_COMPLETIONS;
    if (!strcmp(url, "/v1/chat/completions"))
        return HTTP_EP_CHAT;
    if (!strcmp(url, "/metrics"))
        return HTTP_EP_METRICS;
    return HTTP_EP_OTHER;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    (void)version;
    http_server *s = cls;
    conn_body *b = *con_cls;
    if (!b) {
        if (!(b = calloc(1, sizeof *b)))
            return MHD_NO;
        *con_cls = b;
        return MHD_YES;
    }
    if (*upload_size) {
        if (b->len + *upload_size > BODY_MAX)
            b->too_large = 1;
        else if (grow(&b->buf, &b->cap, b->len + *upload_size + 1) < 0)
            return MHD_NO;
        else {
            memcpy(b->buf + b->len, upload, *upload_size);
            b->len += *upload_size;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    http_endpoint ep = route(url);
    int post = !strcmp(method, "POST"), get = !strcmp(method, "GET");
    if (ep == HTTP_EP_OTHER)
        return queue_error(s, c, ep, 404, "no such endpoint (docs/http.md lists them)");
    if ((ep == HTTP_EP_COMPLETIONS || ep == HTTP_EP_CHAT) ? !post : !get)
        return queue_error(s, c, ep, 405, "method not allowed on this endpoint");
    if (b->too_large)
        return queue_error(s, c, ep, 413, "the request body is larger than 1 MiB");
    switch (ep) {
    case HTTP_EP_HEALTH: return on_health(s, c);
    case HTTP_EP_MODELS: return on_models(s, c);
    case HTTP_EP_METRICS: return on_metrics(s, c);
    default: return on_generate(s, c, ep, b->buf ? b->buf : "", b->len);
    }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    conn_body *b = *con_cls;
    if (b) {
        free(b->buf);
        free(b);
        *con_cls = NULL;
    }
}

int http_server_available(void) { return 1; }

http_server *http_server_start(const http_server_opts *o, pi_error *err)
{
    uint32_t addr;
    uint16_t port;
    if (http_listen_parse(o->listen, &addr, &port, err) < 0)
        return NULL;
    http_server *s = calloc(1, sizeof *s);
    if (!s || !(s->metrics = http_metrics_new())) {
        free(s);
        pi_error_set(err, "out of memory");
        return NULL;
    }
    s->zctx = o->zctx;
    s->defaults = o->defaults;
    atomic_init(&s->stopping, 0);
    atomic_init(&s->next_id, 1);
    snprintf(s->rpc_endpoint, sizeof s->rpc_endpoint, "%s", o->rpc_endpoint);
    snprintf(s->token, sizeof s->token, "%s", o->token ? o->token : "");
    const char *slash = strrchr(o->model_path, '/');
    snprintf(s->model_id, sizeof s->model_id, "%s", slash ? slash + 1 : o->model_path);
    if (chat_prompt_load(o->model_path, &s->chat, err) < 0) {
        pi_error_wrap(err, "http");
        http_metrics_free(&s->metrics);
        free(s);
        return NULL;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = addr};
    s->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                                  MHD_USE_POLL,
                              port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, &sa,
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                              MHD_OPTION_CONNECTION_LIMIT, 256u, MHD_OPTION_CONNECTION_TIMEOUT, 600u,
                              MHD_OPTION_END);
    if (!s->mhd) {
        http_metrics_free(&s->metrics);
        free(s);
        pi_error_set(err, "http: cannot listen at %s (in use, or not an address of this machine)",
                     o->listen);
        return NULL;
    }
    return s;
}

void http_server_stop(http_server **sp)
{
    http_server *s = *sp;
    if (!s)
        return;
    atomic_store(&s->stopping, 1);
    MHD_stop_daemon(s->mhd);
    http_metrics_free(&s->metrics);
    free(s);
    *sp = NULL;
}

#endif
