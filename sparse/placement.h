/* Placement from activation frequencies (docs/architecture.md, "Placement
 * from frequencies"): which FFN neurons of which layer are hot (on the GPU)
 * for a VRAM budget, so that the expected share of activations served by the
 * GPU is as large as possible. The GPU first holds the fixed part (weights
 * outside the FFN, predictors, KV cache); every hot neuron then costs its
 * layer's neuron bytes (gate row + up row + down^T row, plan.h's layout).
 *
 * It is a 0/1 knapsack (value = frequency, weight = neuron bytes) solved by
 * a greedy over frequency per byte; placement.c argues why that is optimal
 * up to one neuron, and every result carries the LP upper bound that
 * certifies its gap. Results are cached next to the model in a small GGUF
 * (docs/formats.md, "Placement plan cache"). */
#ifndef PI_PLACEMENT_H
#define PI_PLACEMENT_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "pi_error.h"
#include "sidecar.h"

typedef struct placement_input {
    uint32_t n_layers, n_ff;
    const float *const *freq;       /* [n_layers][n_ff], finite and >= 0; NULL = uniform (all 1) */
    const uint64_t *neuron_bytes;   /* [n_layers], 1 .. 2^29 */
    uint64_t fixed_bytes;           /* weights outside the FFN + predictors + KV cache */
    uint64_t budget_bytes;          /* GPU bytes for fixed + hot, never exceeded */
} placement_input;

typedef struct placement_layer {
    uint32_t n_hot;
    uint32_t *hot;                  /* n_hot neuron indices, ascending */
    uint8_t *is_hot;                /* n_ff flags, 1 = hot */
    uint64_t neuron_bytes;
    uint64_t gpu_bytes, cpu_bytes;  /* this layer's FFN bytes on each side */
    double freq_hot, freq_all;      /* sum of hot / all frequencies */
} placement_layer;

typedef struct placement {
    uint32_t n_layers, n_ff;
    int uniform;                    /* solved without frequencies */
    uint64_t model_hash;            /* 0 unless made or loaded for a model */
    uint64_t freq_hash;             /* placement_freq_hash of the input; 0 = uniform */
    uint64_t budget_bytes, fixed_bytes;
    uint64_t hot_bytes, cold_bytes; /* FFN bytes on the GPU / the CPU workers */
    uint64_t gpu_bytes;             /* fixed_bytes + hot_bytes <= budget_bytes */
    double freq_hot, freq_all;
    double upper_bound;             /* no placement in this budget serves more (LP bound) */
    placement_layer *layers;        /* n_layers */
} placement;

/* Solves in. Errors: budget below the fixed part (says how many bytes are
 * needed), a negative/NaN/infinite frequency (names layer and neuron), zero or
 * huge neuron bytes, no memory. Caller owns the result: placement_free. */
placement *placement_solve(const placement_input *in, pi_error *err);
void placement_free(placement **p);

/* Expected share of activations served by the GPU: freq_hot / freq_all
 * (hot / all neurons when no activation was seen). */
double placement_share(const placement *p);
double placement_layer_share(const placement *p, uint32_t l);

/* ---- from a model ---- */

typedef struct placement_params {
    uint32_t max_seqs, n_ctx;       /* KV cache as in plan.h; n_ctx 0 = the model's */
    uint32_t kv_elem_bytes;         /* bytes of a KV element (plan_kv_elem_bytes); 0 = fp32 */
    uint64_t predictor_bytes;       /* predictors kept on the GPU (sidecar); 0 = none */
    uint64_t scratch_bytes;         /* the GPU backend's scratch and context (plan_backend); 0 = none */
    uint64_t budget_bytes;
} placement_params;

/* Bytes of the predictors the GPU will hold: the sidecar's when it has
 * them, else the model file's own (PowerInfer fc1/fc2), else 0; q8: as
 * plan_pred_tensor_bytes counts them. */
uint64_t placement_predictor_bytes(const pi_model *m, const pi_sidecar *sc, int q8);
/* GPU bytes of the fixed part: plan_weight_bytes + plan_kv_bytes + predictors + scratch. */
uint64_t placement_fixed_bytes(const pi_model *m, const placement_params *p);
/* freq: m->n_layers arrays of m->n_ff, or NULL for uniform. Sets model_hash. */
placement *placement_for_model(const pi_model *m, const placement_params *p, const float *const *freq,
                               pi_error *err);

/* The model file's fingerprint: sidecar_model_hash's 16 hex digits as a
 * number (the same hash the sparse sidecar records); 0 without a file. */
uint64_t placement_model_hash(const pi_model *m);
/* FNV-1a 64 of the frequency arrays' bytes (never 0); 0 for NULL (uniform). */
uint64_t placement_freq_hash(uint32_t n_layers, uint32_t n_ff, const float *const *freq);

/* ---- plan cache ---- */

/* "<model>.pi-plan-<budget in MiB, rounded down>.gguf" beside the model,
 * named like the sidecar (a trailing ".gguf" of model_path is dropped first):
 * m.gguf -> m.pi-plan-12902.gguf. -1 if it does not fit in cap. */
int placement_cache_path(const char *model_path, uint64_t budget_bytes, char *buf, size_t cap,
                         pi_error *err);
/* Writes p atomically (temp file + rename). */
int placement_save(const placement *p, const char *path, pi_error *err);

/* What a cache must have been made for. fixed_bytes and freq_hash are
 * checked too: another KV size or another profile makes another plan. */
typedef struct placement_key {
    uint64_t model_hash, budget_bytes, fixed_bytes, freq_hash;
} placement_key;

/* Reads and validates a cache; NULL with err when it is missing, malformed,
 * or made for another model/budget/KV size/profile (the message says which). */
placement *placement_load(const char *path, const placement_key *key, pi_error *err);

#endif
