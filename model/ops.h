/* The plain math of a layer of every architecture pi reads, llama2.c-style:
 * small functions over float vectors and pi_tensor rows, fp32 accumulation,
 * no allocation.
 * The reference forward pass and the workers share these definitions. */
#ifndef PI_OPS_H
#define PI_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i]; out may alias x. */
void ops_rmsnorm(float *out, const float *x, const float *w, size_t n, float eps);

/* out[i] = (x[i] - mean(x)) / sqrt(var(x) + eps) * w[i] + b[i] (b NULL: no
 * shift); out may alias x. */
void ops_layernorm(float *out, const float *x, const float *w, const float *b, size_t n, float eps);

/* The model's norm (RMSNorm, or LayerNorm with the bias b when b->data is
 * set) of m->dim values; out may alias x. */
void ops_norm(const pi_model *m, float *out, const float *x, const pi_tensor *w, const pi_tensor *b);

/* v[i] += b[i] over b's cols when b->data is set; else nothing. */
void ops_add_bias(float *v, const pi_tensor *b);

/* The residual stream's start at position pos: the token's embedding, plus
 * row pos + pos_offset of pos_embd when it has data (OPT). */
void ops_embed(float *out, const pi_tensor *tok_embd, const pi_tensor *pos_embd, uint32_t pos_offset,
               int32_t token, uint32_t pos);

/* out[r - r0] = dot(row r of w, x) for r in [r0, r1); x has w->cols elements. */
void ops_matvec(float *out, const pi_tensor *w, const float *x, uint64_t r0, uint64_t r1);

/* Element (r, c) of any supported type (dequantizes the block holding it). */
float ops_tensor_get(const pi_tensor *t, uint64_t r, uint64_t c);

/* Rotary embedding at position pos over n = heads * head_dim values: pairs
 * (2i, 2i+1) inside each head turn by pos * theta^(-2i / head_dim). */
void ops_rope(float *v, uint32_t n, uint32_t head_dim, uint32_t pos, float theta);

/* NEOX rotation (qwen2, falcon): inside each head, pairs (i, i + head_dim/2)
 * turn by pos * theta^(-2i / head_dim). */
void ops_rope_neox(float *v, uint32_t n, uint32_t head_dim, uint32_t pos, float theta);

/* Pair i's angle at pos, as ops_rope and ops_rope_neox turn it, with rope
 * scaling: pos * scale * theta^(-2i / head_dim) / (freqs ? freqs[i] : 1). */
double ops_rope_angle(uint32_t pos, uint32_t i, uint32_t head_dim, float theta, float scale, const float *freqs);

/* The model's rotation (m->rope, with its scaling) of n = heads * head_dim values. */
void ops_rope_model(const pi_model *m, float *v, uint32_t n, uint32_t pos);

/* In place, numerically stable (max subtracted). */
void ops_softmax(float *x, size_t n);

/* One attention head over positions [0, n_pos): key t is k + t * kv_stride,
 * value t is v + t * kv_stride (head_dim floats each). att is scratch of n_pos.
 * out = sum_t softmax(q.k_t / sqrt(head_dim))_t * v_t. */
void ops_attention_head(float *out, const float *q, const float *k, const float *v,
                        size_t kv_stride, uint32_t head_dim, uint32_t n_pos, float *att);

/* The activation of one neuron from its gate and up dot products:
 * SILU silu(g)*u, RELU relu(g)*u, RELU_BOTH relu(g)*relu(u),
 * RELU_SINGLE relu(g) (up unused). */
float ops_ffn_act(pi_act act, float gate, float up);

/* g plus neuron j's gate bias when the layer has one (OPT's fc1 bias). */
static inline float ops_gate_biased(const pi_layer *l, uint64_t j, float g)
{
    return l->ffn_gate_b.data ? g + ((const float *)l->ffn_gate_b.data)[j] : g;
}

/* Partial FFN over neurons [n0, n1) of a layer: h[j - n0] = act(gate_j.x, up_j.x),
 * then out[i] += sum_j down[i][j] * h[j - n0]. Partials of disjoint ranges
 * add up to the whole FFN (ops_ffn_range(0, n_ff) on a zeroed out).
 * h is scratch of n1 - n0 floats; out has dim floats. */
void ops_ffn_range(const pi_layer *l, pi_act act, const float *x, uint32_t n0, uint32_t n1,
                   float *h, float *out);

/* Same for an arbitrary list of neurons idx[0..n): out += h_j * down[:, j]. */
void ops_ffn_list(const pi_layer *l, pi_act act, const float *x, const uint32_t *idx, size_t n,
                  float *out);

#endif
