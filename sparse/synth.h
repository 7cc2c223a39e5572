/* Synthetic LLaMA-shaped ReLU models for benchmarks at sizes we cannot
 * download (`pictl model synth`, docs/formats.md "Synthetic models"). The
 * weights are built so that the real forward pass fires neuron j of layer l
 * with a chosen probability p_j (a power law over a seeded per-layer
 * ranking, mean = the requested active fraction), and a PowerInfer-style
 * predictor (blk.N.fc1/fc2) predicts the firing. Tensors are produced while
 * the file is written, one at a time, from counter-based seeds: any size
 * fits in a tensor's worth of memory and the same options give the same
 * bytes. */
#ifndef PI_SYNTH_H
#define PI_SYNTH_H

#include <stdint.h>

#include "pi_error.h"
#include "quant.h"

typedef struct synth_shape {
    const char *name;
    uint32_t dim, n_layers, n_ff, n_heads, n_kv_heads, n_vocab, n_ctx;
} synth_shape;

typedef struct synth_options {
    synth_shape shape;
    pi_type type;       /* 2-D weights; norms f32; predictor f16 (f32 for f32 models) */
    float active;       /* mean fraction of neurons active per token, (0, 0.9] */
    float skew;         /* power-law exponent: p_j ~ rank_j^-skew, 0..4 */
    uint64_t seed;
    int plain;          /* only llama.cpp's tensors and keys */
    uint32_t n_threads; /* generating threads; 0 = one per online CPU (at most SYNTH_MAX_THREADS) */
    uint32_t pred_width; /* the predictor's hidden width R: 0 = SYNTH_PRED_HIDDEN; more adds units of zero
                            weights (they predict the same), e.g. 32 for --predictor-type q8_0 */
} synth_options;

#define SYNTH_MAX_THREADS 64

/* Predictor hidden size: 2 units per rank-1 direction (relu(z) - relu(-z)
 * = z) plus one bias unit reading the constant residual dimension. */
#define SYNTH_PRED_RANK 8
#define SYNTH_PRED_HIDDEN (2 * SYNTH_PRED_RANK + 1)

/* Copies the named shape (tiny, 7b, 13b, 40b, 70b) into *out: 0, or -1
 * with err listing the known names. */
int synth_shape_find(const char *name, synth_shape *out, pi_error *err);

/* Defaults: the tiny shape, f16, active 0.11, skew 1, seed 1, not plain. */
void synth_options_default(synth_options *o);

/* Called after each tensor is produced: bytes done of total. */
typedef void (*synth_progress_fn)(void *ud, uint64_t done, uint64_t total);

/* Writes the model to path (atomically). progress may be NULL. 0, or -1
 * with err naming the option or file at fault. */
int synth_write(const char *path, const synth_options *o, synth_progress_fn progress, void *ud,
                pi_error *err);

/* Total bytes of tensor data synth_write will produce for o (0 on bad options). */
uint64_t synth_data_bytes(const synth_options *o);

/* The intended firing probability of every neuron of layer (n_ff floats
 * into p), as synth_write builds it: for tests and benchmarks. 0 or -1. */
int synth_neuron_probs(const synth_options *o, uint32_t layer, float *p, pi_error *err);

#endif
