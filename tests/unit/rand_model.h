/* Test helper: writes a small LLaMA GGUF with random weights (fixed seed),
 * 2-D weights in a chosen type, norms f32, untied output. Optionally
 * ffn_down and output in another type (as llama.cpp's Q4_K_M mixes Q4_K
 * with Q6_K), the tokenizer.* keys of another GGUF (so pid run can use
 * the model), sharper attention, rope scaling (linear and Llama 3's
 * rope_freqs.weight) and a random f16 predictor (blk.N.fc1/fc2). */
#include <string.h>

#ifndef PI_TEST_RAND_MODEL_H
#define PI_TEST_RAND_MODEL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "gguf.h"
#include "model.h"
#include "quant.h"

typedef struct rand_model_shape {
    uint32_t dim, n_layers, n_heads, n_kv_heads, n_ff, n_vocab, n_ctx;
    pi_type type;
    pi_act act;
    uint32_t seed;
    int has_down_type;          /* 1: ffn_down and output.weight in down_type */
    pi_type down_type;
    int mix_v;                  /* with has_down_type: even layers' attn_v in down_type too (as Q4_K_M) */
    const gguf_file *tokenizer; /* non-NULL: its tokenizer.* keys are copied */
    float qk_scale;             /* attn_q and attn_k times this (0: 1); larger: positions matter more */
    float rope_factor;          /* > 0: rope.scaling.type linear with this rope.scaling.factor */
    int rope_freqs;             /* 1: rope_freqs.weight, head_dim / 2 divisors in [1, 8] */
    uint32_t pred_hidden;       /* > 0: a random f16 predictor of this hidden size per layer */
} rand_model_shape;

static inline float rand_model_uniform(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xffffff) / (float)0x1000000 * 2.0f - 1.0f;
}

/* rows x cols of type t from uniform(-scale, scale) (+ bias), into a malloc'd
 * buffer kept in keep[*nkeep]. */
static inline void *rand_model_tensor(pi_type t, uint64_t rows, uint64_t cols, float scale, float bias,
                                      uint64_t *s, void **keep, int *nkeep)
{
    size_t rb;
    if (pi_row_bytes(t, cols, &rb) < 0)
        return NULL;
    char *buf = malloc(rb * rows);
    float *row = malloc(cols * sizeof *row);
    if (!buf || !row) {
        free(buf);
        free(row);
        return NULL;
    }
    for (uint64_t r = 0; r < rows; r++) {
        for (uint64_t c = 0; c < cols; c++)
            row[c] = bias + scale * rand_model_uniform(s);
        pi_quantize_row(t, row, buf + r * rb, cols);
    }
    free(row);
    keep[(*nkeep)++] = buf;
    return buf;
}

/* Writes the model to path: 0, or -1 with err. */
static inline int rand_model_write(const char *path, const rand_model_shape *sh, pi_error *err)
{
    uint64_t s = sh->seed * 2654435761u + 1;
    gguf_writer *w = gguf_writer_new();
    int nkeep = 0;
    void **keep = calloc(16 + 16 * (size_t)sh->n_layers, sizeof *keep);
    if (!w || !keep) {
        gguf_writer_free(&w);
        free(keep);
        return pi_error_set(err, "rand_model: out of memory");
    }
    uint32_t hd = sh->dim / sh->n_heads, kv = sh->n_kv_heads * hd;
    int rc = 0;
    rc |= gguf_writer_add_str(w, "general.architecture", "llama");
    rc |= gguf_writer_add_u32(w, "llama.context_length", sh->n_ctx);
    rc |= gguf_writer_add_u32(w, "llama.embedding_length", sh->dim);
    rc |= gguf_writer_add_u32(w, "llama.block_count", sh->n_layers);
    rc |= gguf_writer_add_u32(w, "llama.feed_forward_length", sh->n_ff);
    rc |= gguf_writer_add_u32(w, "llama.attention.head_count", sh->n_heads);
    rc |= gguf_writer_add_u32(w, "llama.attention.head_count_kv", sh->n_kv_heads);
    rc |= gguf_writer_add_str(w, "pi.ffn_activation", pi_act_name(sh->act));
    if (sh->rope_factor > 0.0f) {
        rc |= gguf_writer_add_str(w, "llama.rope.scaling.type", "linear");
        rc |= gguf_writer_add_f32(w, "llama.rope.scaling.factor", sh->rope_factor);
    }
    for (size_t i = 0; sh->tokenizer && i < gguf_n_kv(sh->tokenizer); i++) {
        const gguf_kv *tk = gguf_kv_at(sh->tokenizer, i);
        if (tk->key.len > 10 && memcmp(tk->key.ptr, "tokenizer.", 10) == 0)
            rc |= gguf_writer_add_kv(w, tk);
    }
    pi_type down_t = sh->has_down_type ? sh->down_type : sh->type;
#define RM_ADD(name, t, rows, cols, scale, bias)                                                      \
    do {                                                                                              \
        void *d_ = rand_model_tensor((t), (rows), (cols), (scale), (bias), &s, keep, &nkeep);         \
        uint64_t ne_[2] = {(cols), (rows)};                                                           \
        rc |= d_ ? gguf_writer_add_tensor(w, (name), (t), (rows) > 1 ? 2 : 1, ne_, d_) : -1;          \
    } while (0)
    float ws = 1.0f / sqrtf((float)sh->dim), fs = 1.0f / sqrtf((float)sh->n_ff);
    float qs = ws * (sh->qk_scale > 0.0f ? sh->qk_scale : 1.0f);
    RM_ADD("token_embd.weight", sh->type, sh->n_vocab, sh->dim, 1.0f, 0.0f);
    RM_ADD("output_norm.weight", PI_TYPE_F32, 1, sh->dim, 0.1f, 1.0f);
    if (sh->rope_freqs)
        RM_ADD("rope_freqs.weight", PI_TYPE_F32, 1, hd / 2, 3.5f, 4.5f);
    RM_ADD("output.weight", down_t, sh->n_vocab, sh->dim, ws, 0.0f);
    for (uint32_t l = 0; l < sh->n_layers; l++) {
        char name[64];
#define RM_L(suffix, t, rows, cols, scale, bias)                               \
        snprintf(name, sizeof name, "blk.%u.%s.weight", l, suffix);            \
        RM_ADD(name, t, rows, cols, scale, bias)
        RM_L("attn_norm", PI_TYPE_F32, 1, sh->dim, 0.1f, 1.0f);
        RM_L("attn_q", sh->type, sh->dim, sh->dim, qs, 0.0f);
        RM_L("attn_k", sh->type, kv, sh->dim, qs, 0.0f);
        RM_L("attn_v", sh->mix_v && l % 2 == 0 ? down_t : sh->type, kv, sh->dim, ws, 0.0f);
        RM_L("attn_output", sh->type, sh->dim, sh->dim, ws, 0.0f);
        RM_L("ffn_norm", PI_TYPE_F32, 1, sh->dim, 0.1f, 1.0f);
        RM_L("ffn_gate", sh->type, sh->n_ff, sh->dim, ws, 0.0f);
        RM_L("ffn_up", sh->type, sh->n_ff, sh->dim, ws, 0.0f);
        RM_L("ffn_down", down_t, sh->dim, sh->n_ff, fs, 0.0f);
        if (sh->pred_hidden) {
            RM_L("fc1", PI_TYPE_F16, sh->pred_hidden, sh->dim, ws, 0.0f);
            RM_L("fc2", PI_TYPE_F16, sh->n_ff, sh->pred_hidden, 1.0f, 0.0f);
        }
#undef RM_L
    }
#undef RM_ADD
    if (rc)
        pi_error_set(err, "rand_model: building %s failed", path);
    else
        rc = gguf_writer_write(w, path, "GGUF", err);
    gguf_writer_free(&w);
    for (int i = 0; i < nkeep; i++)
        free(keep[i]);
    free(keep);
    return rc ? -1 : 0;
}

#endif
