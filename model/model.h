/* A decoder-only transformer described from a GGUF file: hyperparameters
 * and 2-D views of every weight, pointing into the file's mapping (nothing
 * copied). Tensor names and keys follow llama.cpp's and PowerInfer's
 * converters (docs/formats.md); the architectures are in model/arch.h. */
#ifndef PI_MODEL_H
#define PI_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "pi_error.h"
#include "quant.h"

/* FFN activation: out = down( act(gate(x)) * up(x) ), except RELU_BOTH,
 * Bamboo's relu(gate(x)) * relu(up(x)). Stored in GGUF as pi.ffn_activation. */
typedef enum pi_act {
    PI_ACT_SILU = 0,
    PI_ACT_RELU = 1,
    PI_ACT_RELU_BOTH = 2,
    /* No gate (OPT, ReLU Falcon): h = relu(fc1(x) + b); the one input
     * projection is bound as ffn_gate, and ffn_up is the same tensor, so
     * every kernel's "gate <= 0 skips the neuron" holds unchanged. */
    PI_ACT_RELU_SINGLE = 3,
} pi_act;

/* Whether act reads the up projection (all but RELU_SINGLE): kernels skip
 * its dot product, and shards and backends hold no up rows, otherwise. */
static inline int pi_act_uses_up(pi_act act)
{
    return act != PI_ACT_RELU_SINGLE;
}

/* The vector a layer's predictor reads (docs/predictors.md). PowerInfer's
 * llama graph feeds its predictor the residual stream before ffn_norm, pi's
 * own predictors (sidecars, synth) were fit to the FFN input: a predictor
 * given the other vector predicts other sets once ffn_norm is not all ones. */
typedef enum pi_pred_input {
    PI_PRED_INPUT_NORMED = 0,   /* xn = rmsnorm(h) * ffn_norm, the FFN's own input */
    PI_PRED_INPUT_RESIDUAL = 1, /* h: the residual stream after attention, before ffn_norm */
    PI_PRED_INPUT_LAYER = 2,    /* the layer's input, before attention (PowerInfer's falcon graph) */
} pi_pred_input;

/* A matrix of rows x cols; row r starts at data + r * row_bytes. A missing
 * tensor has data == NULL. */
typedef struct pi_tensor {
    pi_type type;
    uint64_t cols;      /* GGUF ne[0] */
    uint64_t rows;      /* GGUF ne[1] (1 for vectors) */
    size_t row_bytes;
    const void *data;
} pi_tensor;

static inline const void *pi_tensor_row(const pi_tensor *t, uint64_t r)
{
    return (const char *)t->data + r * t->row_bytes;
}

typedef struct pi_layer {
    pi_tensor attn_norm;            /* dim */
    pi_tensor wq, wk, wv, wo;       /* rows = outputs; views into attn_qkv for falcon */
    pi_tensor ffn_norm;             /* dim; falcon: the file's attn_norm (attn_norm above is then its
                                       attn_norm_2 when present: 40B's ln_attn) */
    pi_tensor ffn_gate, ffn_up;     /* n_ff x dim; RELU_SINGLE: both the one projection */
    /* Biases (f32 vectors), data NULL when the architecture has none:
     * LayerNorm shifts (attn_norm_b, ffn_norm_b), qwen2's and OPT's
     * projections (bq, bk, bv; bo OPT only), OPT's fc1 per neuron (ffn_gate_b,
     * n_ff) and fc2 per output (ffn_down_b, dim). */
    pi_tensor attn_norm_b, ffn_norm_b;
    pi_tensor bq, bk, bv, bo;
    pi_tensor ffn_gate_b, ffn_down_b;
    pi_tensor ffn_down;             /* dim x n_ff; data NULL in PowerInfer files that hold only ffn_down_t */
    /* PowerInfer files (docs/formats.md); data NULL when absent. */
    pi_tensor pred_fc1;             /* R x dim: predictor hidden layer (GGUF ne [dim, R]) */
    pi_tensor pred_fc2;             /* n_ff x R: predictor logits (GGUF ne [R, n_ff]) */
    pi_tensor ffn_down_t;           /* n_ff x dim: down transposed, row j = column j of down */
} pi_layer;

/* How layers normalise: RMSNorm * w, or LayerNorm * w + b. */
typedef enum pi_norm {
    PI_NORM_RMS = 0,
    PI_NORM_LAYER = 1,
} pi_norm;

/* Rotary embedding of q and k: NORM turns pairs (2i, 2i+1) of a head (llama,
 * whose converter permutes q/k for it), NEOX pairs (i, i + head_dim/2) (qwen2,
 * falcon), NONE: no rotation (OPT's learned positions instead). */
typedef enum pi_rope {
    PI_ROPE_NORM = 0,
    PI_ROPE_NEOX = 1,
    PI_ROPE_NONE = 2,
} pi_rope;

typedef struct pi_model {
    gguf_file *file;                /* owned */
    char arch[32];
    uint32_t n_vocab, dim, n_layers, n_heads, n_kv_heads, head_dim, n_ff, n_ctx;
    float norm_eps, rope_theta;
    /* Rope scaling as llama.cpp reads it: angles times rope_freq_scale
     * (1 / rope.scaling.factor, linear scaling; 1 = none), and pair i's
     * frequency divided by rope_freqs[i] when the file has rope_freqs.weight
     * (head_dim / 2 F32 factors: Llama 3.x). */
    float rope_freq_scale;
    pi_tensor rope_freqs;
    pi_act act;
    pi_norm norm;
    pi_rope rope;
    /* Falcon: attention and FFN both read the layer's input and add to it
     * together (x += attn(n1(x)) + ffn(n2(x))); 0: one after the other. */
    int parallel;
    pi_tensor tok_embd;             /* n_vocab x dim */
    /* OPT: learned positions, row pos + pos_offset added to the embedding
     * (data NULL otherwise). */
    pi_tensor pos_embd;
    uint32_t pos_offset;
    pi_tensor output_norm;          /* dim */
    pi_tensor output_norm_b;        /* dim, LayerNorm archs; data NULL otherwise */
    pi_tensor output;               /* n_vocab x dim; same data as tok_embd when tied */
    int tied_output;
    pi_layer *layers;               /* n_layers, owned */
    /* PowerInfer: predictor logit > sparse_threshold = neuron active
     * (powerinfer.sparse_threshold, default 0); has_predictor = every layer
     * has fc1 and fc2. */
    float sparse_threshold;
    int has_predictor;
    /* What the predictor reads: for a PWRI file whose predictor is in the
     * file (PowerInfer's own), RESIDUAL (llama, bamboo, opt) or LAYER
     * (falcon); else NORMED (GGUF files, synth, a sidecar's predictor). */
    pi_pred_input pred_input;
    /* Set by model_open_sparse (sparse/sidecar.h) when the predictor came
     * from the sidecar (owned; the layers' pred_fc1/pred_fc2 point into it).
     * model_close frees it with sidecar_free, which the opener leaves here:
     * model/ does not link sparse/. */
    struct pi_sidecar *sidecar;
    void (*sidecar_free)(struct pi_sidecar **s);
    /* The predictors converted to another type (sparse/pred_quant.h,
     * predictor_requant): the layers' pred_fc1/pred_fc2 point into it.
     * Owned; model_close frees it. */
    void *pred_owned;
} pi_model;

/* Opens and validates (every tensor present with the shape the
 * hyperparameters imply). PowerInfer's extra tensors (blk.N.fc1/fc2/
 * ffn_down_t) are bound when present, in "PWRI" or "GGUF" files alike; a
 * PWRI file's activation is ReLU unless pi.ffn_activation says otherwise.
 * Caller owns the result: model_close. */
pi_model *model_open(const char *path, pi_error *err);
/* Same over an already-open file, taking ownership of it (also on failure). */
pi_model *model_from_gguf(gguf_file *f, pi_error *err);
void model_close(pi_model **m);

const char *pi_act_name(pi_act a);

/* NULL when m computes exactly as a llama model (RMSNorm, NORM rope with or
 * without llama.cpp's rope scaling, no biases, gated FFN, sequential blocks,
 * no learned positions), else a short
 * phrase naming the first thing that differs ("Q/K/V biases", ...): what a
 * backend that runs only llama's graph (CUDA) must refuse. */
const char *model_beyond_llama(const pi_model *m);
const char *pi_pred_input_name(pi_pred_input p);   /* "normed" or "residual" */

/* The layer's down projection as a type: ffn_down's, or ffn_down_t's when
 * the file holds only the transposed form. */
static inline pi_type pi_layer_down_type(const pi_layer *l)
{
    return l->ffn_down.data ? l->ffn_down.type : l->ffn_down_t.type;
}

#endif
