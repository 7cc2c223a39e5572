/* The scheduler's batched, interleaved greedy outputs equal sequential runs, also across failed steps (retried) and a lost KV cache (replayed); a step failing 3 times fails its requests; a long prompt prefilled in chunks beside a decoding sequence gives it a token every step; with a solo capacity a long prompt goes in solo steps of up to that many entries, each still carrying the decoder's token, until fewer than solo_min tokens are left; no solo step with capacity 0, below solo_min, or for a score request. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "forward.h"
#include "llama2c.h"
#include "model.h"
#include "scheduler.h"
#include "tokenizer.h"

#define N_REQ 7
#define MAX_TOK 30
#define MAX_SEQS 3
#define MAX_BATCH 5

typedef struct out_buf {
    char text[N_REQ][4096];
    size_t len[N_REQ];
    int done[N_REQ], failed[N_REQ], fail_code[N_REQ];
    uint32_t generated[N_REQ];
} out_buf;

static int on_chunk(void *ud, const void *tag, size_t tag_len, uint64_t id, int32_t token,
                    const char *text, size_t len)
{
    (void)tag; (void)tag_len; (void)token;
    out_buf *o = ud;
    CHECK(id < N_REQ && o->len[id] + len < sizeof o->text[id], "chunk for %llu", (unsigned long long)id);
    memcpy(o->text[id] + o->len[id], text, len);
    o->len[id] += len;
    return 0;
}

static void on_done(void *ud, const void *tag, size_t tag_len, uint64_t id, const sched_stats *st)
{
    (void)tag; (void)tag_len;
    out_buf *o = ud;
    CHECK(!o->done[id] && !o->failed[id], "request %llu finished twice", (unsigned long long)id);
    o->done[id] = 1;
    o->generated[id] = st->generated_tokens;
}

static void on_fail(void *ud, const void *tag, size_t tag_len, uint64_t id, int code, const char *msg)
{
    (void)tag; (void)tag_len; (void)msg;
    out_buf *o = ud;
    o->failed[id] = 1;
    o->fail_code[id] = code;
}

static const char *prompts[N_REQ] = {"Once upon a time", "", "Lily", "The dog ran", "One day, a big",
                                     "She said", "Tom and"};

/* The oracle: one request alone, token by token. */
static void sequential(const pi_model *m, const tokenizer *t, const char *prompt, char *out, size_t *len)
{
    pi_error err;
    forward_state *f = forward_new(m, 0, &err);
    CHECK(f, "%s", err.msg);
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(tokenizer_encode(t, prompt, strlen(prompt), 1, &ids, &n, &err) == 0, "%s", err.msg);
    int32_t hist[600];
    memcpy(hist, ids, n * sizeof *ids);
    const float *lg = NULL;
    for (size_t i = 0; i < n; i++)
        lg = forward_token(f, ids[i], (uint32_t)i);
    *len = 0;
    for (int g = 0; g < MAX_TOK; g++) {
        int32_t best = 0;
        for (uint32_t v = 1; v < m->n_vocab; v++)
            if (lg[v] > lg[best])
                best = (int32_t)v;
        if (best == tokenizer_eos(t))
            break;
        int k = tokenizer_decode_piece(t, hist[n - 1], best, out + *len, 512);
        *len += (size_t)(k > 0 ? k : 0);
        hist[n++] = best;
        if (g + 1 < MAX_TOK)
            lg = forward_token(f, best, (uint32_t)n - 1);
    }
    free(ids);
    forward_free(&f);
}

/* Runs every request through the scheduler; each slot has its own reference
 * forward state standing in for the workers' KV cache. fail_at: step numbers
 * that fail (count times each); lose_kv_at: a step after which the KV cache
 * is dropped. */
static int run_batched(const pi_model *m, const tokenizer *t, out_buf *o, int fail_at, int fail_count,
                       int lose_kv_at)
{
    pi_error err;
    sched_sink sink = {.ud = o, .chunk = on_chunk, .done = on_done, .fail = on_fail};
    scheduler *s = scheduler_new(t, m->n_vocab, MAX_SEQS, MAX_BATCH, 256, &sink, &err);
    CHECK(s, "%s", err.msg);
    for (int i = 0; i < N_REQ; i++) {
        sched_request r = {.tag = "x", .tag_len = 1, .id = (uint64_t)i, .prompt = prompts[i],
                           .prompt_len = strlen(prompts[i]), .max_tokens = MAX_TOK,
                           .sampling = {.temperature = 0, .top_p = 1, .repeat_penalty = 1}};
        CHECK(scheduler_submit(s, &r, &err) == SCHED_OK, "%s", err.msg);
    }
    CHECK(scheduler_queued(s) == N_REQ, "all queued");
    forward_state *slots[MAX_SEQS];
    for (int i = 0; i < MAX_SEQS; i++) {
        slots[i] = forward_new(m, 256, &err);
        CHECK(slots[i], "%s", err.msg);
    }
    sched_entry e[MAX_BATCH];
    float *logits = malloc((size_t)MAX_BATCH * m->n_vocab * sizeof *logits);
    int steps = 0, failures_left = fail_count, max_seen_batch = 0;
    uint32_t n;
    while ((n = scheduler_build(s, e)) > 0) {
        CHECK(steps < 5000, "runaway");
        steps++;
        if ((int)n > max_seen_batch)
            max_seen_batch = (int)n;
        uint32_t rows = 0;
        for (uint32_t i = 0; i < n; i++) {
            CHECK(i == 0 || e[i].slot != e[i - 1].slot || e[i].pos == e[i - 1].pos + 1,
                  "entries of one slot in position order");
            const float *lg = forward_token(slots[e[i].slot], e[i].token, e[i].pos);
            CHECK(lg, "forward slot %u pos %u", e[i].slot, e[i].pos);
            CHECK(!e[i].decode || e[i].want_logits, "a decode entry (slot %u pos %u) wants no logits",
                  e[i].slot, e[i].pos);
            if (e[i].want_logits)
                memcpy(logits + (size_t)rows++ * m->n_vocab, lg, m->n_vocab * sizeof *lg);
        }
        if (steps == fail_at && failures_left > 0) {
            failures_left--;
            steps--; /* the same step number comes again */
            scheduler_step_failed(s, "test failure");
            continue;
        }
        scheduler_complete(s, logits, m->n_vocab);
        if (steps == lose_kv_at) {
            for (int i = 0; i < MAX_SEQS; i++) {
                forward_free(&slots[i]);
                slots[i] = forward_new(m, 256, &err);
                CHECK(slots[i], "%s", err.msg);
            }
            scheduler_reset_kv(s);
        }
    }
    CHECK(scheduler_active(s) == 0 && scheduler_queued(s) == 0, "drained");
    CHECK(max_seen_batch == MAX_BATCH, "batches fill up (saw %d)", max_seen_batch);
    for (int i = 0; i < MAX_SEQS; i++)
        forward_free(&slots[i]);
    free(logits);
    scheduler_free(&s);
    return steps;
}

/* A long prompt that arrives while another sequence decodes does not stall
 * it (issue 12, "no stream starves while a long prompt is prefilled"): every
 * step until the prompt is in the cache carries the decoder's one token, and
 * the prompt goes in chunks of the rest of the batch. The decoder's text is
 * the one it has alone. */

/* The reference forward of a step's entries, each in its slot's own state; the want_logits rows into
 * logits. *a_slot (A's, set from the first entry seen when < 0) counts A's decode entries into *a_decode,
 * every other slot's prompt entries into *b_here. */
static void step_forward(const pi_model *m, forward_state **slots, const sched_entry *e, uint32_t n, int *a_slot,
                         float *logits, uint32_t *a_decode, uint32_t *b_here)
{
    uint32_t rows = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (*a_slot < 0)
            *a_slot = (int)e[i].slot;           /* the first step holds A alone */
        if ((int)e[i].slot == *a_slot)
            *a_decode += e[i].decode;
        else
            *b_here += !e[i].decode;
        const float *lg = forward_token(slots[e[i].slot], e[i].token, e[i].pos);
        CHECK(lg, "forward slot %u pos %u", e[i].slot, e[i].pos);
        if (e[i].want_logits)
            memcpy(logits + (size_t)rows++ * m->n_vocab, lg, m->n_vocab * sizeof *lg);
    }
}
static void test_long_prompt_no_starving(const pi_model *m, const tokenizer *t, const char *want, size_t want_len)
{
    enum { BATCH = 8, LONG = 150 };
    _Static_assert((LONG + BATCH - 2) / (BATCH - 1) < MAX_TOK - 1, "A must outlive B's prefill");
    pi_error err;
    static out_buf o;
    memset(&o, 0, sizeof o);
    sched_sink sink = {.ud = &o, .chunk = on_chunk, .done = on_done, .fail = on_fail};
    scheduler *s = scheduler_new(t, m->n_vocab, 2, BATCH, 256, &sink, &err);
    CHECK(s, "%s", err.msg);
    sched_request a = {.tag = "x", .tag_len = 1, .id = 0, .prompt = prompts[0], .prompt_len = strlen(prompts[0]),
                       .max_tokens = MAX_TOK, .sampling = {.temperature = 0, .top_p = 1, .repeat_penalty = 1}};
    CHECK(scheduler_submit(s, &a, &err) == SCHED_OK, "%s", err.msg);
    int32_t ids[LONG];
    for (int i = 0; i < LONG; i++)
        ids[i] = 3 + (i * 7) % ((int)m->n_vocab - 3);   /* any tokens: only their count matters here */
    forward_state *slots[2];
    for (int i = 0; i < 2; i++) {
        slots[i] = forward_new(m, 256, &err);
        CHECK(slots[i], "%s", err.msg);
    }
    sched_entry e[BATCH];
    float *logits = malloc((size_t)BATCH * m->n_vocab * sizeof *logits);
    CHECK(logits, "oom");
    int submitted = 0, a_slot = -1, steps_with_b = 0;
    uint32_t b_fed = 0, n;
    while ((n = scheduler_build(s, e)) > 0) {
        uint32_t a_decode = 0, b_here = 0;
        step_forward(m, slots, e, n, &a_slot, logits, &a_decode, &b_here);
        if (b_here) {
            steps_with_b++;
            b_fed += b_here;
            /* A (MAX_TOK tokens) decodes through all of B's prefill (fewer steps) */
            CHECK(a_decode == 1, "a step of the long prompt's prefill (%u of its entries) left the decoding "
                  "sequence out", b_here);
            CHECK(b_here == BATCH - 1 || b_fed == LONG, "the prefill took %u entries of a step with room for %d",
                  b_here, BATCH - 1);
        }
        scheduler_complete(s, logits, m->n_vocab);
        /* the long prompt comes once the first sequence decodes */
        if (!submitted && o.len[0] > 0) {
            sched_request b = {.tag = "x", .tag_len = 1, .id = 1, .tokens = ids, .n_tokens = LONG, .max_tokens = 2,
                               .sampling = {.temperature = 0, .top_p = 1, .repeat_penalty = 1}};
            CHECK(scheduler_submit(s, &b, &err) == SCHED_OK, "%s", err.msg);
            submitted = 1;
        }
    }
    CHECK(submitted && b_fed == LONG, "the long prompt was fed %u of its %d tokens", b_fed, LONG);
    CHECK(steps_with_b == (LONG + BATCH - 2) / (BATCH - 1), "the prefill took %d steps, want %d", steps_with_b,
          (LONG + BATCH - 2) / (BATCH - 1));
    CHECK(o.done[0] && o.done[1] && !o.failed[0] && !o.failed[1], "both finished");
    CHECK(o.len[0] == want_len && !memcmp(o.text[0], want, want_len), "the decoder's text changed beside the prefill");
    for (int i = 0; i < 2; i++)
        forward_free(&slots[i]);
    free(logits);
    scheduler_free(&s);
    printf("scheduler: a %d-token prompt went in %d steps of %d beside a decoding sequence, which got a token "
           "in each\n", LONG, steps_with_b, BATCH - 1);
}

static void ignore_score(void *ud, const void *tag, size_t tag_len, uint64_t id, uint32_t pos, const float *row)
{
    (void)ud, (void)tag, (void)tag_len, (void)id, (void)pos, (void)row;
}

/* Solo steps (scheduler_set_solo): a decoding sequence A, then a LONG-token
 * prompt B (a score request when score). Counts B's solo steps and its
 * ordinary prefill steps; checks every solo step's size and that each step
 * of B's prefill carries A's token, and A's text. */
static void solo_case(const pi_model *m, const tokenizer *t, const char *want, size_t want_len, uint32_t solo,
                      uint32_t solo_min, int score, int *n_solo, int *n_plain)
{
    enum { BATCH = 8, LONG = 150, CAP = 64 };
    pi_error err;
    static out_buf o;
    memset(&o, 0, sizeof o);
    sched_sink sink = {.ud = &o, .chunk = on_chunk, .done = on_done, .fail = on_fail, .score = ignore_score};
    scheduler *s = scheduler_new(t, m->n_vocab, 2, BATCH, 256, &sink, &err);
    CHECK(s && solo <= CAP, "%s", err.msg);
    scheduler_set_solo(s, solo, solo_min);
    sched_request a = {.tag = "x", .tag_len = 1, .id = 0, .prompt = prompts[0], .prompt_len = strlen(prompts[0]),
                       .max_tokens = MAX_TOK, .sampling = {.temperature = 0, .top_p = 1, .repeat_penalty = 1}};
    CHECK(scheduler_submit(s, &a, &err) == SCHED_OK, "%s", err.msg);
    int32_t ids[LONG];
    for (int i = 0; i < LONG; i++)
        ids[i] = 3 + (i * 7) % ((int)m->n_vocab - 3);
    forward_state *slots[2];
    for (int i = 0; i < 2; i++)
        CHECK(slots[i] = forward_new(m, 256, &err), "%s", err.msg);
    sched_entry e[CAP];
    float *logits = malloc((size_t)CAP * m->n_vocab * sizeof *logits);
    CHECK(logits, "oom");
    int submitted = 0, a_slot = -1;
    uint32_t b_fed = 0, n;
    *n_solo = *n_plain = 0;
    while ((n = scheduler_build(s, e)) > 0) {
        uint32_t a_decode = 0, b_here = 0;
        step_forward(m, slots, e, n, &a_slot, logits, &a_decode, &b_here);
        int is_solo = scheduler_built_solo(s);
        CHECK(!is_solo || b_here, "a solo step without the long prompt (A's prompt is shorter than solo_min)");
        if (is_solo) {
            uint32_t left = LONG - b_fed;   /* B's tokens to feed when the step was built */
            CHECK(left >= solo_min, "a solo step with %u tokens left, solo_min %u", left, solo_min);
            CHECK(n == (left < solo - 1 ? left + 1 : solo), "a solo step of %u entries (%u left, capacity %u)", n,
                  left, solo);
        } else {
            CHECK(n <= BATCH, "an ordinary step of %u entries", n);
        }
        if (b_here) {
            /* (a score request feeds one token a step: it outlives A) */
            CHECK(a_decode == 1 || o.done[0], "a step of B's prefill left the decoding sequence out");
            b_fed += b_here;
            *(is_solo ? n_solo : n_plain) += 1;
        }
        scheduler_complete(s, logits, m->n_vocab);
        CHECK(!scheduler_built_solo(s), "still solo after the step completed");
        if (!submitted && o.len[0] > 0) {
            sched_request b = {.tag = "x", .tag_len = 1, .id = 1, .tokens = ids, .n_tokens = LONG, .max_tokens = 2,
                               .score = score, .sampling = {.temperature = 0, .top_p = 1, .repeat_penalty = 1}};
            CHECK(scheduler_submit(s, &b, &err) == SCHED_OK, "%s", err.msg);
            submitted = 1;
        }
    }
    CHECK(submitted && b_fed == LONG, "the long prompt was fed %u of its %d tokens", b_fed, LONG);
    CHECK(o.done[0] && o.done[1] && !o.failed[0] && !o.failed[1], "both finished");
    CHECK(o.len[0] == want_len && !memcmp(o.text[0], want, want_len), "the decoder's text changed beside solo steps");
    for (int i = 0; i < 2; i++)
        forward_free(&slots[i]);
    free(logits);
    scheduler_free(&s);
}

static void test_solo_steps(const pi_model *m, const tokenizer *t, const char *want, size_t want_len)
{
    int solo, plain;
    /* 150 tokens, capacity 64 with A's token: 63 + 63, then 24 < 30 left in ordinary steps of 7 */
    solo_case(m, t, want, want_len, 64, 30, 0, &solo, &plain);
    CHECK(solo == 2 && plain == 4, "solo 64 / min 30: %d solo and %d ordinary steps, want 2 and 4", solo, plain);
    /* solo_min 20: the last 24 go solo too */
    solo_case(m, t, want, want_len, 64, 20, 0, &solo, &plain);
    CHECK(solo == 3 && plain == 0, "solo 64 / min 20: %d solo and %d ordinary steps, want 3 and 0", solo, plain);
    /* capacity 0, a solo_min above the prompt, a score request: never solo */
    solo_case(m, t, want, want_len, 0, 1, 0, &solo, &plain);
    CHECK(solo == 0 && plain == 22, "solo off: %d solo and %d ordinary steps, want 0 and 22", solo, plain);
    solo_case(m, t, want, want_len, 64, 151, 0, &solo, &plain);
    CHECK(solo == 0 && plain == 22, "solo_min 151: %d solo and %d ordinary steps, want 0 and 22", solo, plain);
    solo_case(m, t, want, want_len, 64, 20, 1, &solo, &plain);
    CHECK(solo == 0 && plain == 150, "score: %d solo and %d ordinary steps, want 0 and 150", solo, plain);
    printf("scheduler: a 150-token prompt went in solo steps of up to 64 entries beside a decoding sequence (each "
           "with its token) while at least solo_min tokens were left; none with capacity 0, below solo_min, or "
           "for scoring\n");
}

int main(void)
{
    char ck[1024], tk[1024], path[1024];
    test_shared("models/stories260K.bin", ck, sizeof ck);
    test_shared("models/tok512.bin", tk, sizeof tk);
    test_tmp("test_scheduler.gguf", path, sizeof path);
    pi_error err;
    CHECK(llama2c_import(ck, tk, path, PI_TYPE_F32, PI_ACT_SILU, NULL, &err) == 0, "%s", err.msg);
    pi_model *m = model_open(path, &err);
    CHECK(m, "%s", err.msg);
    tokenizer *t = tokenizer_from_gguf(m->file, &err);
    CHECK(t, "%s", err.msg);

    static char want[N_REQ][4096];
    size_t want_len[N_REQ];
    for (int i = 0; i < N_REQ; i++)
        sequential(m, t, prompts[i], want[i], &want_len[i]);

    static out_buf o;
    /* plain, two failures of step 7 (retried), lost KV cache after step 20 */
    int cases[3][3] = {{0, 0, 0}, {7, 2, 0}, {0, 0, 20}};
    for (int c = 0; c < 3; c++) {
        memset(&o, 0, sizeof o);
        run_batched(m, t, &o, cases[c][0], cases[c][1], cases[c][2]);
        for (int i = 0; i < N_REQ; i++) {
            CHECK(o.done[i] && !o.failed[i], "case %d request %d finished", c, i);
            CHECK(o.len[i] == want_len[i] && !memcmp(o.text[i], want[i], want_len[i]),
                  "case %d request %d: batched output differs:\n got: %.*s\nwant: %.*s", c, i,
                  (int)o.len[i], o.text[i], (int)want_len[i], want[i]);
        }
    }
    /* three failures in a row: the requests of that step fail, the rest finish */
    memset(&o, 0, sizeof o);
    run_batched(m, t, &o, 3, 3, 0);
    int n_failed = 0;
    for (int i = 0; i < N_REQ; i++) {
        CHECK(o.done[i] != o.failed[i], "request %d answered exactly once", i);
        if (o.failed[i]) {
            CHECK(o.fail_code[i] == SCHED_E_WORKER_FAILED, "code %d", o.fail_code[i]);
            n_failed++;
        } else {
            CHECK(o.len[i] == want_len[i] && !memcmp(o.text[i], want[i], want_len[i]), "request %d", i);
        }
    }
    CHECK(n_failed > 0 && n_failed <= MAX_SEQS, "%d requests failed", n_failed);

    /* too long for the context */
    sched_sink sink = {.ud = &o, .chunk = on_chunk, .done = on_done, .fail = on_fail};
    scheduler *s = scheduler_new(t, m->n_vocab, 1, 4, 16, &sink, &err);
    CHECK(s, "%s", err.msg);
    sched_request r = {.tag = "x", .tag_len = 1, .id = 0, .prompt = "Once", .prompt_len = 4,
                       .max_tokens = 40, .sampling = {.top_p = 1, .repeat_penalty = 1}};
    CHECK(scheduler_submit(s, &r, &err) == SCHED_E_TOO_LONG, "too long accepted");
    CHECK(strstr(err.msg, "context"), "message: %s", err.msg);
    scheduler_free(&s);

    /* Cancel: an active request whose step is in flight, then a queued one;
     * another client's tag matches nothing; the slot is free at once. */
    memset(&o, 0, sizeof o);
    s = scheduler_new(t, m->n_vocab, 1, 4, 64, &sink, &err);
    CHECK(s, "%s", err.msg);
    for (uint64_t id = 1; id <= 2; id++) {
        sched_request q = {.tag = "a", .tag_len = 1, .id = id, .prompt = "Once", .prompt_len = 4,
                           .max_tokens = 20, .sampling = {.top_p = 1, .repeat_penalty = 1}};
        CHECK(scheduler_submit(s, &q, &err) == SCHED_OK, "%s", err.msg);
    }
    sched_entry ent[4];
    CHECK(scheduler_build(s, ent) > 0 && scheduler_active(s) == 1 && scheduler_queued(s) == 1, "one active");
    CHECK(scheduler_cancel(s, "b", 1, 1) == 0, "another client's tag cancelled request 1");
    CHECK(scheduler_cancel(s, "a", 1, 1) == 1 && o.done[1] && scheduler_active(s) == 0, "cancel active");
    static float zero_logits[4 * 512];
    CHECK(m->n_vocab <= 512, "vocab");
    scheduler_complete(s, zero_logits, m->n_vocab); /* the step in flight ends: nothing to sample */
    CHECK(o.len[1] == 0 && scheduler_active(s) == 0, "a cancelled request got tokens");
    CHECK(scheduler_cancel(s, "a", 1, 2) == 1 && o.done[2] && scheduler_queued(s) == 0, "cancel queued");
    CHECK(scheduler_cancel(s, "a", 1, 2) == 0, "cancelled twice");
    CHECK(scheduler_build(s, ent) == 0, "nothing left to run");
    scheduler_free(&s);

    test_long_prompt_no_starving(m, t, want[0], want_len[0]);
    test_solo_steps(m, t, want[0], want_len[0]);

    tokenizer_free(&t);
    model_close(&m);
    remove(path);
    printf("scheduler: batched outputs equal sequential ones (plain, retried, replayed); cancel frees the slot\n");
    return 0;
}
