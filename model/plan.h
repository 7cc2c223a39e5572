/* The placement plan (docs/architecture.md, "Placement"): what the GPU side
 * holds, how many FFN neurons per layer are hot ([0, n_hot) in every layer)
 * and which contiguous range of the cold neurons [n_hot, n_ff) each CPU
 * worker holds. pid and the workers compute it with the same code, so they
 * agree on every byte count and range.
 *
 * It also fixes the layout of one neuron outside the model file: its gate
 * row and up row in the model's types, and its down COLUMN stored as a row
 * of dim ("down^T"), in the down tensor's type for F32/F16/BF16 and in F32
 * for the block types (Q8_0/Q4_0 blocks run along a down row, i.e. across
 * neurons, so a column cannot be kept quantized). */
#ifndef PI_PLAN_H
#define PI_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "pi_error.h"

#define PLAN_MAX_SHARDS 256

typedef struct plan_params {
    uint32_t max_seqs;          /* KV cache slots, >= 1 */
    uint32_t n_ctx;             /* positions per slot; 0 = the model's n_ctx */
    uint32_t n_cpu_workers;     /* cold shards; 0 = every neuron must be hot */
    uint64_t budget_bytes;      /* GPU memory for weights + KV cache; 0 = default: */
    uint64_t device_free_bytes; /* ...90% of this when > 0 (CUDA), else a quarter
                                   of the neurons hot (host backend) */
} plan_params;

typedef struct plan_shard {
    uint32_t begin, end;        /* neurons [begin, end) of every layer */
} plan_shard;

typedef struct pi_plan {
    uint32_t n_layers, n_ff, n_ctx, max_seqs;
    uint32_t n_hot;             /* K: hot neurons per layer, [0, K) */
    uint64_t budget_bytes;      /* the budget applied (0 when the host default chose K) */
    uint64_t weight_bytes;      /* embeddings, norms, attention, lm_head */
    uint64_t kv_bytes;          /* max_seqs * n_layers * n_ctx * kv_dim * 2 floats */
    uint64_t fixed_bytes;       /* weight_bytes + kv_bytes */
    uint64_t neuron_bytes;      /* one neuron in every layer (gate + up + down^T rows) */
    uint64_t hot_bytes;         /* n_hot * neuron_bytes */
    uint64_t gpu_bytes;         /* fixed_bytes + hot_bytes */
    uint64_t cold_bytes;        /* (n_ff - n_hot) * neuron_bytes, over all shards */
    uint32_t n_shards;
    plan_shard shards[PLAN_MAX_SHARDS];
    char summary[512];          /* human-readable, one line */
} pi_plan;

/* Fills *out from the model and p. Errors: a budget below the fixed part
 * (the message says how many bytes are needed), no CPU workers but not
 * every neuron fits, more than PLAN_MAX_SHARDS workers, max_seqs 0. */
int plan_make(const pi_model *m, const plan_params *p, pi_plan *out, pi_error *err);

/* Same, but with K chosen by the caller (pid's --hot, or a worker told K):
 * checks 0 <= K <= n_ff and that N = 0 only when K = n_ff; no budget check. */
int plan_make_fixed(const pi_model *m, const plan_params *p, uint32_t n_hot, pi_plan *out,
                    pi_error *err);

/* Shard index of of: neurons [begin, end) of [n_hot, n_ff) split contiguously
 * (sizes differ by at most one; a shard may be empty when there are more
 * shards than cold neurons). */
plan_shard plan_shard_range(uint32_t n_hot, uint32_t n_ff, uint32_t index, uint32_t of);

/* GPU bytes of the fixed part alone (weights + KV), for messages and tests. */
uint64_t plan_weight_bytes(const pi_model *m);
uint64_t plan_kv_bytes(const pi_model *m, uint32_t max_seqs, uint32_t n_ctx);

/* ---- the neuron layout (shared by the host backend and the CPU shards) ---- */

/* Type of a down^T row for a down tensor of type t. */
pi_type plan_down_t_type(pi_type t);
/* Bytes of the gate row, up row and down^T row of one neuron of layer l. */
size_t plan_neuron_bytes_layer(const pi_model *m, uint32_t l);
/* Writes the down columns [n0, n1) of layer l as rows of dim elements of
 * plan_down_t_type: row j - n0 at dst + (j - n0) * stride. Float types are
 * copied bit-exactly; block types are dequantized to F32. */
void plan_write_down_t(const pi_model *m, uint32_t l, uint32_t n0, uint32_t n1, void *dst,
                       size_t stride);

#endif
