/* step_layout: where everything lives in the "step" segment that pid, the
 * GPU worker and the CPU workers share for decode steps. pid computes the
 * layout from the model's shape, creates the segment and writes the header;
 * each worker maps it and checks the header against its own model before
 * trusting any offset. The table and the protocol are in docs/shm.md. */
#ifndef PI_SHM_STEP_LAYOUT_H
#define PI_SHM_STEP_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "pi_error.h"
#include "seqcount.h"

#define STEP_MAGIC "PISTEP01" /* 8 bytes, no terminator in the header */
#define STEP_VERSION 3u /* 3: the step bell (off_bell), abort epoch and flags in the command */
#define STEP_BUF_ALIGN 4096u  /* data buffers: page-aligned (mbind, host-register) */

typedef struct step_params {
    uint32_t n_layers, dim, n_ff, n_vocab, max_batch, n_cpu_workers;
} step_params;

/* At offset 0 of the segment. Plain integers only: it is read by processes
 * that map the segment at different addresses. */
typedef struct step_header {
    char magic[8];
    uint32_t version;
    uint32_t header_bytes; /* sizeof(step_header) of the writer */
    step_params params;
    uint32_t reserved;
    uint64_t total_bytes;
    uint64_t off_layer_seq, off_abort_seq, off_done_seq, off_cmd, off_active_counts;
    uint64_t off_x, off_active_idx, off_partial, partial_stride, off_logits;
    uint64_t off_cpu_stats, off_bell;
} step_header;

/* One sequence of the batch in this step. */
typedef struct step_seq {
    uint32_t slot;  /* KV-cache slot of the sequence */
    int32_t token;  /* input token id */
    uint32_t pos;   /* its position */
    uint32_t want_logits; /* 1: the GPU worker writes its logits (rows of the
                             want_logits entries, in entry order) */
} step_seq;

#define STEP_CMD_TIMINGS 1u  /* flags: the GPU worker measures the phases (Step.timings) */
/* flags: a solo step: the GPU worker runs it alone, every FFN neuron on its
 * side (gpu_backend_ops.run_solo: a long prompt's weights streamed to the
 * device once instead of read from host memory by every entry); the CPU
 * workers skip it (no layer ticks, no done ticks, no stats line). */
#define STEP_CMD_SOLO 2u

/* Written by pid before it starts a step; read by the workers. The fields
 * repeat the Step message's, so a worker that sees the step bell ring can
 * run the step before that message arrives. */
typedef struct step_cmd {
    uint64_t step_id;
    uint32_t n_seq;        /* <= max_batch */
    uint32_t abort_epoch;  /* Step.abort_epoch */
    uint32_t flags;        /* STEP_CMD_* */
    uint32_t reserved;
    step_seq seq[];        /* max_batch entries */
} step_cmd;

/* The GPU worker's outcome of a step, as its StepDone carries it (a failed
 * step's error text only rides StepDone). */
#define STEP_ANSWER_TIMINGS 10 /* StepTimings' fields, in its order: embed .. control, gpu_step */
typedef struct step_answer {
    uint64_t step_no;
    uint32_t ok, has_timings;
    uint64_t pred_true_pos, pred_false_neg, pred_false_pos;
    double timings[STEP_ANSWER_TIMINGS];
} step_answer;

/* The step bell (step_bell.h): pid publishes `posted` once a step's command
 * is written, the GPU worker publishes `answered` once `answer` holds the
 * step's outcome; both values are the step number's low 32 bits. */
typedef struct step_bell {
    seq_counter posted;     /* pid writes */
    seq_counter answered;   /* the GPU worker writes */
    step_answer answer;     /* the GPU worker writes, before answered */
} step_bell;

/* CPU worker w's figures for the last step it completed, on its own 64-byte
 * line (one writer per line, no false sharing). The worker writes them before
 * it publishes the step's last done tick, so a reader that got the GPU
 * worker's StepDone for step_no (sent after the GPU saw that tick) reads that
 * step's figures. An aborted step leaves the line as it was. */
typedef struct step_cpu_stats {
    uint64_t step_no;   /* the step these figures are for; 0 = none yet */
    uint64_t cold_ns;   /* computing the shard's partials, summed over the layers */
    uint64_t wait_ns;   /* waiting for the layer counter (the GPU), summed over the layers */
    uint64_t layers;    /* layers done in that step (n_layers) */
    uint64_t reserved[4];
} step_cpu_stats;
#ifndef __cplusplus
_Static_assert(sizeof(step_cpu_stats) == 64, "one stats line per CPU worker");
#endif

/* A process's view of the layout: byte offsets from the segment base. */
typedef struct step_layout {
    step_params p;
    size_t total_bytes;
    size_t off_layer_seq, off_abort_seq, off_done_seq, off_cmd, off_active_counts;
    size_t off_x, off_active_idx, off_partial, partial_stride, off_logits;
    size_t off_cpu_stats, off_bell;
} step_layout;

/* Computes the layout; -1 with a message if a parameter is 0 (n_cpu_workers
 * may be 0), n_ff exceeds INT32_MAX or a size overflows. */
int step_layout_compute(const step_params *p, step_layout *out, pi_error *err);

/* pid: writes the header into a fresh (zeroed) segment of at least
 * l->total_bytes, before any worker maps it. */
void step_header_write(void *base, const step_layout *l);

/* Worker: checks the header of a mapped segment of mapped_bytes against the
 * worker's own model shape and fills *out. -1 with a message naming the
 * first mismatch (not a step segment, other version, other model shape). */
int step_header_check(const void *base, size_t mapped_bytes, const step_params *expect,
                      step_layout *out, pi_error *err);

step_header *step_header_at(void *base);
step_cmd *step_command(void *base, const step_layout *l);
float *step_x(void *base, const step_layout *l);               /* max_batch x dim */
seq_counter *step_layer_seq(void *base, const step_layout *l); /* GPU worker writes */
seq_counter *step_abort_seq(void *base, const step_layout *l); /* pid writes */
int32_t *step_active_counts(void *base, const step_layout *l); /* max_batch counts */
/* n_ff indices of sequence seq; NULL if seq >= max_batch. */
int32_t *step_active_idx(void *base, const step_layout *l, uint32_t seq);
float *step_logits(void *base, const step_layout *l);          /* max_batch x n_vocab */
/* Per CPU worker; NULL if worker >= n_cpu_workers. */
float *step_partial(void *base, const step_layout *l, uint32_t worker); /* max_batch x dim */
seq_counter *step_done_seq(void *base, const step_layout *l, uint32_t worker);
step_cpu_stats *step_cpu_stats_at(void *base, const step_layout *l, uint32_t worker);
step_bell *step_bell_at(void *base, const step_layout *l);

/* The value the layer and done counters take when layer `layer` (0-based) of
 * step step_no is complete: ticks grow by one per layer across steps and may
 * wrap, which the wrap-safe comparison of seq_wait_geq tolerates. */
static inline uint32_t step_tick(uint64_t step_no, uint32_t n_layers, uint32_t layer)
{
    return (uint32_t)(step_no * n_layers + layer + 1);
}

#endif
