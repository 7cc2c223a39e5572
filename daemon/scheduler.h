/* scheduler: pid's request queue and batch builder. Requests wait FIFO; up
 * to max_seqs are active, each in its own KV slot with its token history
 * (prompt + generated), the length already in the KV cache, and its own
 * sampler. A step takes one decode entry from each decoding sequence
 * (round-robin when they exceed max_batch) and fills the rest with prefill of
 * the oldest prefilling sequences. A long prompt makes a solo step instead
 * (scheduler_set_solo): the same decode entries, then prefill up to the solo
 * capacity, run by the GPU worker alone. Sequence state only advances when a step
 * completes, so a failed step is simply built again, and a lost KV cache is
 * rebuilt by replaying the history (docs/architecture.md). Knows nothing of
 * sockets or workers: results go out through a sink. */
#ifndef PI_DAEMON_SCHEDULER_H
#define PI_DAEMON_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

#include "pi_error.h"
#include "sampler.h"
#include "tokenizer.h"

/* Error codes: the values of pi.proto's Error.Code. */
enum sched_err {
    SCHED_OK = 0,
    SCHED_E_BAD_REQUEST = 1,
    SCHED_E_UNAVAILABLE = 3,
    SCHED_E_WORKER_FAILED = 4,
    SCHED_E_TOO_LONG = 5,
    SCHED_E_INTERNAL = 6,
};

#define SCHED_TAG_MAX 256  /* opaque caller bytes per request (e.g. a routing id) */
#define SCHED_MAX_TRIES 3  /* a step failing this many times in a row fails its requests */

typedef struct sched_entry {
    uint32_t slot;
    int32_t token;
    uint32_t pos;
    uint32_t want_logits;
    uint32_t decode;            /* 1: a generated token fed back (not prompt, not replay) */
} sched_entry;

typedef struct sched_request {
    const void *tag;            /* copied; handed back to the sink */
    size_t tag_len;             /* <= SCHED_TAG_MAX */
    uint64_t id;
    const char *prompt;
    size_t prompt_len;
    int no_bos;
    int parse_special;          /* the prompt came from a chat template (tokenizer_encode_special) */
    uint32_t max_tokens;        /* > 0 */
    sampler_params sampling;
    const int32_t *tokens;      /* set: the prompt as token ids (prompt and no_bos unused) */
    size_t n_tokens;
    int score;                  /* sink.score gets the logits after every prompt position
                                   but the last (perplexity); the prompt runs one position
                                   per step */
} sched_request;

typedef struct sched_stats {
    uint32_t prompt_tokens, generated_tokens;
    double ttft_ms, tokens_per_second;
    const char *stop_reason;    /* "length", "eos" or "cancelled" */
    uint64_t seed;
    uint32_t retried_steps;
} sched_stats;

typedef struct sched_sink {
    void *ud;
    /* 0, or -1 when the client is gone (it disconnected or stopped reading):
     * the request is then cancelled. */
    int (*chunk)(void *ud, const void *tag, size_t tag_len, uint64_t id, int32_t token,
                 const char *text, size_t text_len);
    void (*done)(void *ud, const void *tag, size_t tag_len, uint64_t id, const sched_stats *st);
    void (*fail)(void *ud, const void *tag, size_t tag_len, uint64_t id, int code,
                 const char *msg);
    /* Score requests only (NULL: they are refused): row = the n_vocab logits
     * after prompt position pos, i.e. the prediction of prompt token pos + 1. */
    void (*score)(void *ud, const void *tag, size_t tag_len, uint64_t id, uint32_t pos,
                  const float *row);
} sched_sink;

typedef struct scheduler scheduler;

/* tok must outlive the scheduler; n_ctx = KV positions per slot. Caller
 * owns the result: scheduler_free (fails nothing; call scheduler_fail_all
 * first to answer waiting clients). */
scheduler *scheduler_new(const tokenizer *tok, uint32_t n_vocab, uint32_t max_seqs,
                         uint32_t max_batch, uint32_t n_ctx, const sched_sink *sink,
                         pi_error *err);
void scheduler_free(scheduler **s);

/* Queues a request: SCHED_OK, or an error code with err filled (bad
 * sampling values, a prompt that is not UTF-8 or too large (req_limits.h),
 * prompt + max_tokens beyond n_ctx, a full queue); nothing is queued then. */
int scheduler_submit(scheduler *s, const sched_request *r, pi_error *err);

/* Builds the next step into out (room for max(max_batch, the solo_batch last
 * given to scheduler_set_solo) entries): the entry count, 0 when there is
 * nothing to run. Replaces any step built before and not completed. The step
 * is solo (scheduler_built_solo) when solo steps are on, the oldest
 * prefilling sequence (score requests aside) has at least solo_min tokens
 * left to feed and the decode entries (at most max_batch, as in any step:
 * no stream starves) are fewer than solo_batch; prefill then fills it up to
 * solo_batch entries instead of max_batch. */
uint32_t scheduler_build(scheduler *s, sched_entry *out);

/* 1 when the step built last, still pending, is a solo step (STEP_CMD_SOLO). */
int scheduler_built_solo(const scheduler *s);

/* Solo steps of up to solo_batch entries (0: none, the default), for
 * prompts with at least solo_min (>= 1; 0 counts as 1) tokens left. Set on
 * every Ready of the GPU worker: a restarted one may take other sizes. */
void scheduler_set_solo(scheduler *s, uint32_t solo_batch, uint32_t solo_min);

/* The step built last completed: logits holds one row of n_vocab floats per
 * want_logits entry, in entry order, rows row_stride floats apart. Samples,
 * streams, finishes requests. */
void scheduler_complete(scheduler *s, const float *logits, size_t row_stride);

/* The step built last failed. Returns 1 if it should be run again, 0 when it
 * failed SCHED_MAX_TRIES times in a row and its requests were failed. */
int scheduler_step_failed(scheduler *s, const char *why);

/* The KV cache is gone (GPU worker restarted): every active sequence replays
 * its history from position 0. */
void scheduler_reset_kv(scheduler *s);

/* The new GPU worker kept the old one's memory, KV cache included: every
 * sequence that was active then, and still is with no step since, takes
 * back its cached length instead of replaying. Returns how many did. */
uint32_t scheduler_restore_kv(scheduler *s);

/* Cancels the request (tag, id), queued or active: it finishes at once with
 * stop_reason "cancelled" (sink.done) and its slot is free for the next
 * build; a step in flight that holds it just has its entries ignored.
 * 1 if it was found, 0 if not. */
int scheduler_cancel(scheduler *s, const void *tag, size_t tag_len, uint64_t id);

/* Fails every active and queued request with code and msg. */
void scheduler_fail_all(scheduler *s, int code, const char *msg);

uint32_t scheduler_active(const scheduler *s);
uint32_t scheduler_queued(const scheduler *s);

/* Requests waiting for a slot beyond max_queue are refused (UNAVAILABLE,
 * "queue full"); REQ_LIMITS_MAX_QUEUE_DEFAULT until set; at least 1. */
void scheduler_set_max_queue(scheduler *s, uint32_t max_queue);

#endif
