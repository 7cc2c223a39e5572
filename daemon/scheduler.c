/* Request queue, batching and sampling for pid (scheduler.h). */
#include "scheduler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "req_limits.h"

typedef struct sched_req {      /* a queued request (malloc'd per request) */
    struct sched_req *next;
    uint8_t tag[SCHED_TAG_MAX];
    size_t tag_len;
    uint64_t id;
    int32_t *prompt;            /* malloc'd */
    size_t n_prompt;
    uint32_t max_tokens;
    int score;                  /* sched_request.score */
    sampler *smp;
    double t_submit;
} sched_req;

typedef struct sched_seq {      /* an active sequence; one per KV slot */
    int active;
    uint64_t order;             /* admission order: oldest prefills first */
    sched_req *req;             /* owned; its prompt is copied into tokens */
    int32_t *tokens;            /* n_ctx + 1, preallocated per slot */
    uint32_t n_tokens, n_prompt, generated;
    uint32_t cached;            /* tokens whose KV is in the cache */
    uint32_t cached_lost;       /* cached when the GPU worker died (scheduler_reset_kv) */
    const sched_req *lost_req;  /* and the request it held then */
    uint32_t in_step;           /* entries in the step being run */
    int32_t want_row;           /* its logits row in that step, or -1 */
    uint32_t retried;
    double t_first;
} sched_seq;

struct scheduler {
    const tokenizer *tok;
    uint32_t n_vocab, max_seqs, max_batch, n_ctx;
    sched_sink sink;
    sched_req *q_head, *q_tail;
    uint32_t n_queued, n_active;
    uint32_t max_queue;         /* queued requests beyond it are refused (req_limits.h) */
    sched_seq *seqs;
    uint64_t next_order;
    uint32_t rr;                /* round-robin start among decoding sequences */
    uint32_t solo_batch;        /* entries of a solo step; 0: none (scheduler_set_solo) */
    uint32_t solo_min;          /* prompt tokens left that make a step solo */
    uint32_t step_n;            /* entries in the step built last (0: none pending) */
    int step_solo;              /* it is a solo step */
    uint32_t n_want;            /* want_logits entries in it */
    uint32_t failures;          /* consecutive failures of the pending step */
    float *scratch;             /* n_vocab: the sampler modifies its logits */
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void req_free(sched_req *r)
{
    if (!r)
        return;
    sampler_free(&r->smp);
    free(r->prompt);
    free(r);
}

scheduler *scheduler_new(const tokenizer *tok, uint32_t n_vocab, uint32_t max_seqs,
                         uint32_t max_batch, uint32_t n_ctx, const sched_sink *sink,
                         pi_error *err)
{
    if (!max_seqs || !max_batch || !n_ctx || !n_vocab) {
        pi_error_set(err, "scheduler: max_seqs, max_batch, n_ctx and n_vocab must be > 0");
        return NULL;
    }
    scheduler *s = calloc(1, sizeof *s);
    if (!s)
        goto oom;
    s->tok = tok;
    s->n_vocab = n_vocab;
    s->max_seqs = max_seqs;
    s->max_batch = max_batch;
    s->n_ctx = n_ctx;
    s->max_queue = REQ_LIMITS_MAX_QUEUE_DEFAULT;
    s->sink = *sink;
    s->seqs = calloc(max_seqs, sizeof *s->seqs);
    s->scratch = malloc((size_t)n_vocab * sizeof *s->scratch);
    if (!s->seqs || !s->scratch)
        goto oom;
    for (uint32_t i = 0; i < max_seqs; i++) {
        s->seqs[i].tokens = malloc(((size_t)n_ctx + 1) * sizeof(int32_t));
        if (!s->seqs[i].tokens)
            goto oom;
    }
    return s;
oom:
    scheduler_free(&s);
    pi_error_set(err, "scheduler: out of memory for %u sequences of %u positions", max_seqs, n_ctx);
    return NULL;
}

void scheduler_free(scheduler **sp)
{
    scheduler *s = *sp;
    if (!s)
        return;
    while (s->q_head) {
        sched_req *r = s->q_head;
        s->q_head = r->next;
        req_free(r);
    }
    if (s->seqs)
        for (uint32_t i = 0; i < s->max_seqs; i++) {
            req_free(s->seqs[i].req);
            free(s->seqs[i].tokens);
        }
    free(s->seqs);
    free(s->scratch);
    free(s);
    *sp = NULL;
}

/* A prompt given as token ids: copied after checking each is in the vocabulary. */
static int prompt_tokens(const scheduler *s, const sched_request *r, sched_req *q, pi_error *err)
{
    if (r->n_tokens > (size_t)s->n_ctx + 1)
        return pi_error_set(err, "request %llu: %zu prompt tokens exceed the context of %u positions",
                            (unsigned long long)r->id, r->n_tokens, s->n_ctx);
    for (size_t i = 0; i < r->n_tokens; i++)
        if (r->tokens[i] < 0 || (uint32_t)r->tokens[i] >= s->n_vocab)
            return pi_error_set(err, "request %llu: prompt token %zu is id %d, outside the vocabulary "
                                "of %u", (unsigned long long)r->id, i, r->tokens[i], s->n_vocab);
    q->prompt = malloc((r->n_tokens ? r->n_tokens : 1) * sizeof *q->prompt);
    if (!q->prompt)
        return pi_error_set(err, "request %llu: out of memory", (unsigned long long)r->id);
    if (r->n_tokens)
        memcpy(q->prompt, r->tokens, r->n_tokens * sizeof *q->prompt);
    q->n_prompt = r->n_tokens;
    return 0;
}

/* A chat template's markers are its control tokens (tokenizer_encode_special);
 * any other prompt is plain text. */
static int encode_prompt(const tokenizer *t, const sched_request *r, int32_t **ids, size_t *n,
                         pi_error *err)
{
    const char *p = r->prompt ? r->prompt : "";
    if (r->parse_special)
        return tokenizer_encode_special(t, p, r->prompt_len, !r->no_bos, ids, n, err);
    return tokenizer_encode(t, p, r->prompt_len, !r->no_bos, ids, n, err);
}

int scheduler_submit(scheduler *s, const sched_request *r, pi_error *err)
{
    if (r->tag_len > SCHED_TAG_MAX) {
        pi_error_set(err, "request %llu: tag too long", (unsigned long long)r->id);
        return SCHED_E_INTERNAL;
    }
    if (r->max_tokens == 0) {
        pi_error_set(err, "request %llu: max_tokens must be > 0", (unsigned long long)r->id);
        return SCHED_E_BAD_REQUEST;
    }
    if (r->score && !s->sink.score) {
        pi_error_set(err, "request %llu: scoring is not available here", (unsigned long long)r->id);
        return SCHED_E_BAD_REQUEST;
    }
    if (!r->tokens && req_limits_check_prompt(r->prompt ? r->prompt : "", r->prompt_len, err) < 0) {
        pi_error_wrap(err, "request %llu", (unsigned long long)r->id);
        return SCHED_E_BAD_REQUEST;
    }
    if (s->n_queued >= s->max_queue) {
        pi_error_set(err, "request %llu: queue full (%u requests waiting, max_queue %u); retry later "
                     "or raise max_queue in pid.conf", (unsigned long long)r->id, s->n_queued, s->max_queue);
        return SCHED_E_UNAVAILABLE;
    }
    sched_req *q = calloc(1, sizeof *q);
    if (!q) {
        pi_error_set(err, "request %llu: out of memory", (unsigned long long)r->id);
        return SCHED_E_INTERNAL;
    }
    memcpy(q->tag, r->tag, r->tag_len);
    q->tag_len = r->tag_len;
    q->id = r->id;
    q->max_tokens = r->max_tokens;
    q->score = r->score;
    q->t_submit = now_ms();
    int code = SCHED_E_BAD_REQUEST;
    if (r->tokens) {
        if (prompt_tokens(s, r, q, err) < 0)
            goto fail;
    } else if (encode_prompt(s->tok, r, &q->prompt,
                                &q->n_prompt, err) < 0) {
        pi_error_wrap(err, "request %llu: encoding the prompt", (unsigned long long)r->id);
        goto fail;
    }
    if (q->n_prompt == 0) {
        pi_error_set(err, "request %llu: the prompt is empty and no_bos is set: nothing to start from",
                     (unsigned long long)r->id);
        goto fail;
    }
    /* The last generated token is never fed back, so it needs no KV position. */
    if ((uint64_t)q->n_prompt + r->max_tokens - 1 > s->n_ctx) {
        pi_error_set(err, "request %llu: prompt (%zu tokens) + max_tokens (%u) exceed the context "
                     "of %u positions; shorten the prompt, ask for fewer tokens or give a larger context "
                     "(-c/--ctx-size)",
                     (unsigned long long)r->id, q->n_prompt, r->max_tokens, s->n_ctx);
        code = SCHED_E_TOO_LONG;
        goto fail;
    }
    q->smp = sampler_new(&r->sampling, s->n_vocab, err);
    if (!q->smp) {
        pi_error_wrap(err, "request %llu: sampling", (unsigned long long)r->id);
        goto fail;
    }
    if (s->q_tail)
        s->q_tail->next = q;
    else
        s->q_head = q;
    s->q_tail = q;
    s->n_queued++;
    return SCHED_OK;
fail:
    req_free(q);
    return code;
}

/* Moves queued requests into free slots, FIFO. */
static void admit(scheduler *s)
{
    for (uint32_t i = 0; i < s->max_seqs && s->q_head; i++) {
        sched_seq *q = &s->seqs[i];
        if (q->active)
            continue;
        sched_req *r = s->q_head;
        s->q_head = r->next;
        if (!s->q_head)
            s->q_tail = NULL;
        r->next = NULL;
        s->n_queued--;
        memcpy(q->tokens, r->prompt, r->n_prompt * sizeof(int32_t));
        q->n_tokens = q->n_prompt = (uint32_t)r->n_prompt;
        q->generated = q->cached = q->in_step = q->retried = 0;
        q->t_first = 0;
        q->req = r;
        q->order = s->next_order++;
        q->active = 1;
        s->n_active++;
    }
}

static void add_entries(scheduler *s, sched_entry *out, uint32_t *n, uint32_t slot, uint32_t k)
{
    sched_seq *q = &s->seqs[slot];
    for (uint32_t j = 0; j < k; j++) {
        uint32_t pos = q->cached + j;
        out[*n] = (sched_entry){.slot = slot, .token = q->tokens[pos], .pos = pos,
                                .want_logits = pos + 1 == q->n_tokens ||
                                               (q->req->score && pos + 1 < q->n_prompt),
                                .decode = k == 1 && pos >= q->n_prompt && pos + 1 == q->n_tokens};
        if (out[*n].want_logits)
            q->want_row = (int32_t)s->n_want++;
        (*n)++;
    }
    q->in_step = k;
}

/* Decoders: exactly one token not yet in the cache; at most max_batch of
 * them, round-robin. Returns the entry count. */
static uint32_t add_decoders(scheduler *s, sched_entry *out)
{
    uint32_t n = 0;
    for (uint32_t k = 0; k < s->max_seqs && n < s->max_batch; k++) {
        uint32_t i = (s->rr + k) % s->max_seqs;
        sched_seq *q = &s->seqs[i];
        if (q->active && q->n_tokens - q->cached == 1)
            add_entries(s, out, &n, i, 1);
    }
    s->rr = (s->rr + 1) % s->max_seqs;
    return n;
}

/* The oldest sequence with prompt (or replay) left to feed and not yet in
 * this step; with no_score, score requests are passed over. NULL: none. */
static sched_seq *oldest_prefill(scheduler *s, int no_score, uint32_t *slot)
{
    sched_seq *best = NULL;
    for (uint32_t i = 0; i < s->max_seqs; i++) {
        sched_seq *q = &s->seqs[i];
        if (q->active && !q->in_step && q->n_tokens - q->cached > 1 && !(no_score && q->req->score) &&
            (!best || q->order < best->order)) {
            best = q;
            *slot = i;
        }
    }
    return best;
}

/* A solo step is worth it: the oldest prefilling sequence still has solo_min
 * tokens to feed (a score request feeds one a step, so it never makes one),
 * and the decoders leave room in it. */
static int solo_due(scheduler *s, uint32_t n_decode)
{
    uint32_t slot = 0;
    const sched_seq *q = s->solo_batch > n_decode ? oldest_prefill(s, 1, &slot) : NULL;
    return q && q->n_tokens - q->cached >= s->solo_min;
}

uint32_t scheduler_build(scheduler *s, sched_entry *out)
{
    admit(s);
    for (uint32_t i = 0; i < s->max_seqs; i++) {
        s->seqs[i].in_step = 0;
        s->seqs[i].want_row = -1;
    }
    s->n_want = 0;
    uint32_t n = add_decoders(s, out);
    s->step_solo = solo_due(s, n);
    uint32_t cap = s->step_solo ? s->solo_batch : s->max_batch;
    /* Prefill: oldest first, as many positions as fit. */
    while (n < cap) {
        uint32_t bi = 0;
        sched_seq *best = oldest_prefill(s, 0, &bi);
        if (!best)
            break;
        uint32_t k = best->n_tokens - best->cached, room = cap - n;
        if (best->req->score)
            k = 1; /* one logits row per sequence and step */
        add_entries(s, out, &n, bi, k < room ? k : room);
    }
    s->step_n = n;
    return n;
}

int scheduler_built_solo(const scheduler *s) { return s->step_n > 0 && s->step_solo; }

void scheduler_set_solo(scheduler *s, uint32_t solo_batch, uint32_t solo_min)
{
    s->solo_batch = solo_batch;
    s->solo_min = solo_min ? solo_min : 1;
}

static void finish(scheduler *s, uint32_t slot, const char *reason)
{
    sched_seq *q = &s->seqs[slot];
    sched_req *r = q->req;
    double t = now_ms();
    sched_stats st = {
        .prompt_tokens = q->n_prompt,
        .generated_tokens = q->generated,
        .ttft_ms = q->t_first > 0 ? q->t_first - r->t_submit : t - r->t_submit,
        .stop_reason = reason,
        .seed = sampler_seed(r->smp),
        .retried_steps = q->retried,
    };
    if (q->generated > 1 && t > q->t_first)
        st.tokens_per_second = (double)(q->generated - 1) * 1e3 / (t - q->t_first);
    s->sink.done(s->sink.ud, r->tag, r->tag_len, r->id, &st);
    req_free(r);
    q->req = NULL;
    q->active = 0;
    s->n_active--;
}

static void fail_seq(scheduler *s, uint32_t slot, int code, const char *msg)
{
    sched_seq *q = &s->seqs[slot];
    s->sink.fail(s->sink.ud, q->req->tag, q->req->tag_len, q->req->id, code, msg);
    req_free(q->req);
    q->req = NULL;
    q->active = 0;
    s->n_active--;
}

/* Samples the next token of slot from its logits row; streams or finishes. */
static void sample_next(scheduler *s, uint32_t slot, const float *row)
{
    sched_seq *q = &s->seqs[slot];
    memcpy(s->scratch, row, (size_t)s->n_vocab * sizeof *s->scratch);
    int32_t tok = sampler_sample(q->req->smp, s->scratch, q->tokens, q->n_tokens);
    if (q->generated == 0)
        q->t_first = now_ms();
    if (tok == tokenizer_eos(s->tok)) {
        finish(s, slot, "eos");
        return;
    }
    char text[512];
    int len = tokenizer_decode_piece(s->tok, q->tokens[q->n_tokens - 1], tok, text, sizeof text);
    if (len < 0)
        len = 0;
    if ((size_t)len > sizeof text)
        len = (int)sizeof text;
    q->tokens[q->n_tokens++] = tok;
    q->generated++;
    if (s->sink.chunk(s->sink.ud, q->req->tag, q->req->tag_len, q->req->id, tok, text, (size_t)len) < 0)
        finish(s, slot, "cancelled"); /* nobody reads it: free the slot */
    else if (q->generated >= q->req->max_tokens)
        finish(s, slot, "length");
}

void scheduler_complete(scheduler *s, const float *logits, size_t row_stride)
{
    s->failures = 0;
    s->step_n = 0;
    for (uint32_t i = 0; i < s->max_seqs; i++) {
        sched_seq *q = &s->seqs[i];
        if (!q->active || !q->in_step)
            continue;
        q->cached += q->in_step;
        q->in_step = 0;
        const float *row = q->want_row >= 0 ? logits + (size_t)q->want_row * row_stride : NULL;
        if (row && q->req->score && q->cached < q->n_prompt)
            s->sink.score(s->sink.ud, q->req->tag, q->req->tag_len, q->req->id, q->cached - 1, row);
        else if (row)
            sample_next(s, i, row);
        q->want_row = -1;
    }
}

int scheduler_step_failed(scheduler *s, const char *why)
{
    if (!s->step_n)
        return 0;
    s->failures++;
    for (uint32_t i = 0; i < s->max_seqs; i++)
        if (s->seqs[i].active && s->seqs[i].in_step)
            s->seqs[i].retried++;
    if (s->failures < SCHED_MAX_TRIES)
        return 1;
    char msg[600];
    snprintf(msg, sizeof msg, "a step failed %d times in a row: %s", SCHED_MAX_TRIES,
             why ? why : "worker failure");
    for (uint32_t i = 0; i < s->max_seqs; i++)
        if (s->seqs[i].active && s->seqs[i].in_step)
            fail_seq(s, i, SCHED_E_WORKER_FAILED, msg);
    s->failures = 0;
    s->step_n = 0;
    return 0;
}

void scheduler_reset_kv(scheduler *s)
{
    for (uint32_t i = 0; i < s->max_seqs; i++) {
        sched_seq *q = &s->seqs[i];
        q->cached_lost = q->active ? q->cached : 0;
        q->lost_req = q->active ? q->req : NULL;
        q->cached = 0;
    }
}

uint32_t scheduler_restore_kv(scheduler *s)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->max_seqs; i++) {
        sched_seq *q = &s->seqs[i];
        /* the same request, and no step since (none runs while the GPU worker is down) */
        if (q->active && q->req == q->lost_req && q->cached == 0 && q->cached_lost) {
            q->cached = q->cached_lost;
            n++;
        }
        q->cached_lost = 0;
        q->lost_req = NULL;
    }
    return n;
}

static int same_req(const sched_req *r, const void *tag, size_t tag_len, uint64_t id)
{
    return r->id == id && r->tag_len == tag_len && !memcmp(r->tag, tag, tag_len);
}

int scheduler_cancel(scheduler *s, const void *tag, size_t tag_len, uint64_t id)
{
    for (uint32_t i = 0; i < s->max_seqs; i++) {
        sched_seq *q = &s->seqs[i];
        if (q->active && same_req(q->req, tag, tag_len, id)) {
            /* in_step stays: scheduler_complete skips inactive slots, and the
             * next build (admit) resets the slot before reusing it. */
            finish(s, i, "cancelled");
            return 1;
        }
    }
    for (sched_req **pp = &s->q_head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next) {
        sched_req *r = *pp;
        if (!same_req(r, tag, tag_len, id))
            continue;
        *pp = r->next;
        if (s->q_tail == r)
            s->q_tail = prev;
        s->n_queued--;
        sched_stats st = {.prompt_tokens = (uint32_t)r->n_prompt, .stop_reason = "cancelled",
                          .seed = sampler_seed(r->smp), .ttft_ms = now_ms() - r->t_submit};
        s->sink.done(s->sink.ud, r->tag, r->tag_len, r->id, &st);
        req_free(r);
        return 1;
    }
    return 0;
}

void scheduler_fail_all(scheduler *s, int code, const char *msg)
{
    for (uint32_t i = 0; i < s->max_seqs; i++)
        if (s->seqs[i].active)
            fail_seq(s, i, code, msg);
    while (s->q_head) {
        sched_req *r = s->q_head;
        s->q_head = r->next;
        s->sink.fail(s->sink.ud, r->tag, r->tag_len, r->id, code, msg);
        req_free(r);
    }
    s->q_tail = NULL;
    s->n_queued = 0;
    s->step_n = 0;
}

uint32_t scheduler_active(const scheduler *s) { return s->n_active; }
uint32_t scheduler_queued(const scheduler *s) { return s->n_queued; }

void scheduler_set_max_queue(scheduler *s, uint32_t max_queue) { s->max_queue = max_queue; }
