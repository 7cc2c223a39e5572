/* timings: where pid's steps spend their time (docs/architecture.md,
 * "Timings"). The engine reports each step's moments on pid's monotonic
 * clock (begin, step out, its end seen, sampling begun, end), the GPU
 * worker's phases from StepDone.timings when it sent them, and each CPU
 * worker's stats line from the step segment. Decode steps (one generated
 * token per sequence) are summed for `pid run --timings`'s table and the
 * last one is kept for `pictl status`; prefill steps are summed apart, for
 * a second table (where the time to the first token goes).
 * Everything is allocated by timings_new: a step allocates nothing. */
#ifndef PI_DAEMON_TIMINGS_H
#define PI_DAEMON_TIMINGS_H

#include <stdint.h>
#include <stdio.h>

#include "pi.pb-c.h"
#include "pi_error.h"
#include "step_layout.h"

/* The GPU worker's phases, in StepTimings' order; they add up to its step. */
enum {
    TM_EMBED, TM_ATTN, TM_PREDICT, TM_PUBLISH, TM_HOT, TM_WAIT_CPU, TM_FINISH, TM_LOGITS,
    TM_GPU_CONTROL, TM_GPU_N
};

typedef struct timings_cpu {
    double cold_us, wait_us;    /* its shard's FFN; waiting for the GPU's layer counter */
    uint64_t n;                 /* steps whose stats line matched (a step: 0 or 1) */
} timings_cpu;

/* One step, or a sum of steps, in microseconds. */
typedef struct timings_step {
    uint64_t step_no, n;        /* n: steps summed (1 for one step) */
    uint64_t n_gpu;             /* of them, steps whose StepDone carried the GPU's phases */
    uint32_t entries;
    double gpu[TM_GPU_N];       /* summed over the n_gpu steps */
    double gpu_step;            /* the GPU worker's whole step, over the n_gpu steps */
    double zmq;                 /* round trip beyond gpu_step (the bell or ZeroMQ, wake-ups), n_gpu steps */
    uint64_t bell;              /* of the n steps, those whose end pid saw on the step bell */
    uint64_t solo;              /* of the n steps, solo ones (STEP_CMD_SOLO: no CPU worker in them) */
    double round_trip;          /* step out (bell rung, before its messages) -> its end seen */
    double sched;               /* pid: previous step's end (or this build) -> step out,
                                   and StepDone received -> sampling */
    double sampling;            /* sampler, detokenizing, handing the text to the sink */
    double wall;                /* previous step's end (or this build) -> tokens sampled */
    double wall_gpu;            /* wall of the n_gpu steps (for sum / wall) */
    uint32_t n_cpu;
    timings_cpu *cpu;           /* n_cpu, in worker order */
} timings_step;

typedef struct timings timings;

/* For n_cpu CPU workers. Caller owns the result: timings_free. */
timings *timings_new(uint32_t n_cpu, pi_error *err);
void timings_free(timings **t);

/* The step's moments, in pid_now_ms milliseconds, in this order. decode: every
 * entry is a generated token fed back. */
void timings_begin(timings *t, double now_ms, uint64_t step_no, uint32_t entries, int decode);
void timings_sent(timings *t, double now_ms);
/* StepDone arrived; g is its timings (NULL when the GPU worker sent none). */
void timings_done(timings *t, double now_ms, const Pi__StepTimings *g);
/* Before timings_done: the step's end was seen on the step bell (step_bell.h). */
void timings_bell(timings *t);
/* After timings_begin: a solo step. The CPU workers write no stats line for
 * it, so each counts this step with 0 cold and wait time (their lines,
 * stale, are not read). */
void timings_solo(timings *t);
/* CPU worker w's stats line; ignored unless it is for this step. */
void timings_cpu_stats(timings *t, uint32_t w, const step_cpu_stats *s);
void timings_sampling(timings *t, double now_ms);
/* The step's tokens are sampled: sums it. */
void timings_end(timings *t, double now_ms);
/* The step failed or a worker died: the next step's wall starts at its own
 * begin, not at the last good step's end. */
void timings_abandon(timings *t);

/* The last decode step (n == 0 before the first one). */
const timings_step *timings_last(const timings *t);
/* Decode steps summed; prefill steps' count, entries and wall (ms). */
const timings_step *timings_decode_sum(const timings *t);
void timings_prefill(const timings *t, uint64_t *steps, uint64_t *entries, double *wall_ms);

/* Prints the per-decode-step table (docs/architecture.md, "Timings"), then
 * the per-prefill-step one when a prefill step ran, each line starting with
 * prefix. */
void timings_print(const timings *t, FILE *out, const char *prefix);

#endif
