/* The placement plan (docs/architecture.md, "Placement"): what the GPU side
 * holds, which FFN neurons of each layer are hot and which cold neurons each
 * CPU worker holds. Two kinds:
 *  - index order (plan_make, plan_make_fixed): neurons [0, n_hot) of every
 *    layer are hot, the cold [n_hot, n_ff) split into contiguous ranges;
 *  - from a placement (plan_make_from_placement, sparse/placement.h): each
 *    layer has its own hot set chosen from activation frequencies, and its
 *    cold neurons (ascending) are cut into N contiguous chunks of that list,
 *    balanced by count.
 * pid and the workers compute it with the same code (the workers from the
 * plan cache pid wrote), so they agree on every byte count and set.
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
#include "placement.h"
#include "plan_bytes.h"

#define PLAN_MAX_SHARDS 256

/* Without a budget, plan_make takes this share of the GPU's free memory
 * (pid learns it from pi-gpu-worker --probe-memory); the rest is a margin
 * left free for the driver, other processes and fragmentation. */
#define PLAN_FREE_PCT 90
/* ...rounded down to a multiple of PLAN_BUDGET_ROUND from PLAN_BUDGET_ROUND_FROM
 * up, so that restarts, which see a few MiB more or less free, find the same
 * plan cache (its name holds the budget). */
#define PLAN_BUDGET_ROUND (64ull << 20)
#define PLAN_BUDGET_ROUND_FROM (1ull << 30)
/* A KV cache the plan lowers (plan_params.fit) gets half the room the
 * budget leaves after the weights (the other half buys hot neurons), its
 * positions cut in steps of PLAN_CTX_STEP, never below PLAN_CTX_STEP (or
 * the asked n_ctx when smaller). */
#define PLAN_CTX_STEP 256
/* plan_params.fit: which KV cache sizes were not asked for, so the plan may lower them. */
#define PLAN_FIT_SEQS 1u
#define PLAN_FIT_CTX 2u

/* What a GPU backend needs from the budget beyond weights + KV cache + hot
 * neurons, described by the backend itself (the CUDA backend's:
 * gpu_worker/cuda_needs.h), so that the planner holds none of a backend's
 * constants. A backend described here holds the model's predictors
 * (plan_predictor_bytes) on the device too. plan_params.backend points to
 * one; NULL is the host backend: an fp32 KV cache and nothing beyond
 * weights + KV + hot. */
typedef struct plan_backend {
    const char *name;           /* in the summary and messages, e.g. "CUDA" */
    uint32_t kv_elem_bytes;     /* bytes of one KV cache element, >= PLAN_KV_ELEM_LEAST */
    uint64_t context_bytes;     /* what its process holds beyond its allocations (the runtime's
                                   context, the loaded kernels, step graphs) */
    /* An upper bound of its scratch (everything it allocates beyond weights,
     * KV cache, hot rows and predictors) for steps of max_batch entries,
     * n_ctx positions and at most n_hot hot neurons in a layer. */
    uint64_t (*scratch_bytes)(const pi_model *m, uint32_t max_batch, uint32_t n_ctx, uint32_t n_hot);
    /* Optional: its scratch for solo steps of solo_batch entries (0 when
     * solo_batch is 0 or it runs none for this model), beside the above. */
    uint64_t (*solo_bytes)(const pi_model *m, uint32_t solo_batch);
} plan_backend;

/* The narrowest KV cache element a backend keeps (fp16). A process that
 * reads a placement planned for a backend it does not run (a CPU worker
 * reading pid's plan for CUDA) checks it against KV elements of this size. */
#define PLAN_KV_ELEM_LEAST 2

typedef struct plan_params {
    uint32_t max_seqs;          /* KV cache slots, >= 1 */
    uint32_t n_ctx;             /* positions per slot; 0 = the model's n_ctx */
    uint32_t n_cpu_workers;     /* cold shards; 0 = every neuron must be hot */
    uint64_t budget_bytes;      /* GPU memory for weights + KV cache; 0 = default: */
    uint64_t device_free_bytes; /* ...PLAN_FREE_PCT% of this when > 0, else a quarter of
                                   the neurons hot (host backend, no device). A budget
                                   given is refused when larger than this (when > 0) */
    uint64_t device_total_bytes; /* the device's size, for messages (0 = unknown) */
    const plan_backend *backend; /* the GPU backend's needs: its KV element, and its predictors,
                                   scratch and context (plan_reserve_bytes) reserved inside the
                                   budget; NULL: the host backend (fp32 KV, nothing beyond
                                   weights + KV + hot) */
    uint32_t max_batch;         /* entries per step: sizes the backend's scratch (with backend) */
    uint32_t solo_batch;        /* entries of a solo step (gpu_backend_config.solo_batch): its
                                   scratch is reserved too (with backend); 0: none */
    int pred_q8;                /* the GPU worker holds the predictors as Q8_0 (--predictor-type
                                   q8_0): counted so, whatever type the model here has */
    double warm_share;          /* in [0, 1]: with a placement and CPU workers, this share of
                                   each layer's cold neurons (every 1/share-th of its ascending
                                   cold list, so about that share of the cold activations)
                                   becomes warm: held by the GPU worker in pinned host memory
                                   and read by the GPU over PCIe while the CPU workers compute
                                   the rest (plan.c, split_warm). 0: none */
    uint32_t fit;               /* PLAN_FIT_SEQS | PLAN_FIT_CTX: with a budget (given or from
                                   the free memory), plan_make may lower max_seqs (to 1),
                                   then n_ctx, so the KV cache fits (plan.c, kv_fit); sizes
                                   not in fit are kept, and refused when they do not fit */
} plan_params;

typedef struct plan_shard {
    uint32_t begin, end;        /* index order: neurons [begin, end) of every layer; from a
                                   placement: 0, 0 (use plan_shard_set) */
} plan_shard;

/* The neurons of one layer held by one side: ascending global ids, or,
 * when ids is NULL, the range [begin, begin + n). */
typedef struct plan_set {
    const int32_t *ids;
    uint32_t begin, n;
} plan_set;

typedef struct pi_plan {
    uint32_t n_layers, n_ff, n_ctx, max_seqs;
    uint32_t n_hot;             /* K: hot neurons per layer, [0, K); from a placement: the
                                   largest layer's hot count */
    uint64_t budget_bytes;      /* the budget applied (0 when the host default chose K) */
    uint64_t weight_bytes;      /* embeddings, norms, attention, lm_head */
    uint64_t kv_bytes;          /* max_seqs * n_layers * n_ctx * kv_dim * 2 elements (plan_kv_elem_bytes) */
    uint64_t fixed_bytes;       /* weight_bytes + kv_bytes */
    uint64_t neuron_bytes;      /* one neuron in every layer (gate + up + down^T rows) */
    uint64_t hot_bytes;         /* bytes of every layer's hot neurons (n_hot * neuron_bytes) */
    uint64_t gpu_bytes;         /* fixed_bytes + hot_bytes (the host backend's device_bytes) */
    uint64_t predictor_bytes;   /* reserved for the backend's predictors (plan_params.backend) */
    uint64_t scratch_bytes;     /* reserved for its scratch: backend->scratch_bytes(.., n_hot) */
    uint64_t context_bytes;     /* reserved for its context (backend->context_bytes) */
    uint64_t reserved_bytes;    /* gpu_bytes + predictor_bytes + scratch_bytes + context_bytes:
                                   all the GPU worker's process may hold, within the budget */
    uint64_t cold_bytes;        /* the cold neurons' bytes, over all shards */
    uint32_t n_shards;
    plan_shard shards[PLAN_MAX_SHARDS];
    int from_freq;              /* hot sets chosen from measured activation frequencies */
    double gpu_share;           /* expected share of activations served by the GPU (index
                                   order, or a uniform placement: the hot fraction) */
    /* From a placement only (NULL in index-order plans); owned: plan_release.
     * order + l * n_ff: layer l's hot neurons ascending, its warm ones ascending, then its
     * cold ones ascending. */
    int32_t *order;
    uint32_t *layer_hot;        /* [n_layers] the GPU side's count of each layer: hot + warm */
    uint32_t *layer_vram;       /* [n_layers] of those, the first layer_vram[l] are in VRAM;
                                   the rest (a second ascending run) are warm */
    uint64_t warm_bytes;        /* the warm neurons' bytes (pinned host memory, not VRAM) */
    const int32_t **hot_ids;    /* [n_layers] = order + l * n_ff (gpu_backend_config.hot) */
    /* How the budget and the KV cache were sized (plan_make) */
    uint64_t device_free_bytes, device_total_bytes; /* plan_params' (0 = unknown) */
    int budget_from_free;       /* budget_bytes = PLAN_FREE_PCT% of device_free_bytes */
    uint32_t asked_seqs, asked_ctx; /* the KV cache asked for; max_seqs x n_ctx is smaller
                                   when the plan lowered it to fit */
    char summary[1024];         /* human-readable, one line */
} pi_plan;

/* The budget plan_make takes from free_bytes of free device memory. */
uint64_t plan_budget_from_free(uint64_t free_bytes);

/* Fills *out from the model and p. The budget: p's, else PLAN_FREE_PCT% of
 * p->device_free_bytes, else none (a quarter of the neurons hot). With a
 * budget, the KV cache sizes in p->fit are lowered to fit it (out->max_seqs,
 * out->n_ctx). Errors: a budget larger than the device's free memory (the
 * message names it), a KV cache asked for that does not fit (the message
 * says what would), a budget below the fixed part (the message says how many
 * bytes are needed), no CPU workers but not every neuron fits, more than
 * PLAN_MAX_SHARDS workers, max_seqs 0. */
int plan_make(const pi_model *m, const plan_params *p, pi_plan *out, pi_error *err);

/* Same, but with K chosen by the caller (pid's --hot, or a worker told K):
 * checks 0 <= K <= n_ff and that N = 0 only when K = n_ff; no budget check. */
int plan_make_fixed(const pi_model *m, const plan_params *p, uint32_t n_hot, pi_plan *out,
                    pi_error *err);

/* Fills *out from a placement solved for m (placement_for_model, or a cache
 * read with placement_load): per-layer hot sets, the cold neurons of each
 * layer cut into p->n_cpu_workers chunks; budget_bytes = the placement's.
 * Errors: a placement of another shape/model/neuron layout, cold neurons
 * but no CPU workers, a fixed part bigger than the placement's (the plan
 * would exceed the budget). Call plan_release when done. */
struct placement;
int plan_make_from_placement(const pi_model *m, const plan_params *p, const struct placement *pl, pi_plan *out,
                             pi_error *err);
/* Frees what plan_make_from_placement allocated (safe on any plan, twice too). */
void plan_release(pi_plan *p);

/* Hot count of layer l, its hot set, and the neurons of layer l in shard i. */
uint32_t plan_layer_hot(const pi_plan *p, uint32_t l);
plan_set plan_hot_set(const pi_plan *p, uint32_t l);
plan_set plan_shard_set(const pi_plan *p, uint32_t shard, uint32_t l);
/* One line on what worker gpu / shard i holds (for Ready details and Status). */
void plan_describe_hot(const pi_plan *p, char *buf, size_t cap);
void plan_describe_shard(const pi_plan *p, uint32_t shard, char *buf, size_t cap);

/* pid's plan. plan_make's budget and KV cache sizes; when the model has a
 * sparse sidecar (sidecar_path_for) made for it, solves the placement from
 * its frequencies for that budget (none: what the index-order default
 * would put on the GPU) and those sizes, reusing
 * the plan cache when it matches, and writes the cache (placement_cache_path,
 * or into fallback_dir when the model's folder is not writable). The workers'
 * copy: saved again at worker_copy when given (a file private to this pid,
 * which no later `pictl model plan` or other pid can overwrite under
 * restarting workers), else the cache; its path goes to plan_path, for the
 * workers' --plan. Otherwise (no sidecar, or one for another model: the
 * summary says so) plan_make's index-order plan and plan_path = "". Call
 * plan_release when done. */
int plan_make_for_model(const pi_model *m, const char *model_path, const plan_params *pp,
                        const char *fallback_dir, const char *worker_copy, pi_plan *out, char *plan_path,
                        size_t cap, pi_error *err);

/* The placement's parameters for a KV cache of max_seqs x n_ctx under pp
 * (as plan_make_for_model solves it): pp's KV element size, the predictors
 * the GPU holds (the sidecar sc's, on a GPU backend at least the model's
 * own) and the backend's scratch and context. budget_bytes is left 0. */
placement_params plan_placement_params(const pi_model *m, const plan_params *pp, uint32_t max_seqs, uint32_t n_ctx,
                                       const pi_sidecar *sc);

/* A worker's plan from pid's plan cache (--plan FILE): placement_load, checked
 * against m's hash, then plan_make_from_placement. */
int plan_load_for_model(const pi_model *m, const char *plan_path, const plan_params *pp, pi_plan *out,
                        pi_error *err);

/* Shard index of of: neurons [begin, end) of [n_hot, n_ff) split contiguously
 * (sizes differ by at most one; a shard may be empty when there are more
 * shards than cold neurons). */
plan_shard plan_shard_range(uint32_t n_hot, uint32_t n_ff, uint32_t index, uint32_t of);

/* Bytes of one KV cache element for p: its backend's, else (host) fp32. */
uint32_t plan_kv_elem_bytes(const plan_params *p);

/* What a budget must hold beyond weights + KV + hot neurons for p: the
 * predictors, the backend's scratch with n_hot = n_ff (hot counts are not
 * known before planning) and its context; 0 on the host backend. */
uint64_t plan_reserve_bytes(const pi_model *m, const plan_params *p);

/* ---- the neuron layout (shared by the host backend and the CPU shards) ---- */

/* Writes the down columns [n0, n1) of layer l as rows of dim elements of
 * plan_down_t_type: row j - n0 at dst + (j - n0) * stride. Float types are
 * copied bit-exactly; block types are dequantized to F32. */
void plan_write_down_t(const pi_model *m, uint32_t l, uint32_t n0, uint32_t n1, void *dst,
                       size_t stride);
/* The same for the neurons of set s, in set order: row k at dst + k * stride.
 * Reads down row by row once (so it is fast for any set); when the model has
 * ffn_down_t in the down^T type, copies its rows instead (the same values).
 * -1 only when out of memory (block types need one dequantized row). */
int plan_write_down_t_set(const pi_model *m, uint32_t l, plan_set s, void *dst, size_t stride, pi_error *err);

#endif
