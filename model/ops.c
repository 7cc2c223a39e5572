/* Plain definitions of the layer math (see ops.h). These are the oracle the
 * optimised kernels are compared with: keep them obvious. */
#include "ops.h"

#include <math.h>
#include <string.h>

void ops_rmsnorm(float *out, const float *x, const float *w, size_t n, float eps)
{
    float ss = 0.0f;
    for (size_t i = 0; i < n; i++)
        ss += x[i] * x[i];
    float scale = 1.0f / sqrtf(ss / (float)n + eps);
    for (size_t i = 0; i < n; i++)
        out[i] = w[i] * (scale * x[i]);
}

void ops_layernorm(float *out, const float *x, const float *w, const float *b, size_t n, float eps)
{
    float mean = 0.0f;
    for (size_t i = 0; i < n; i++)
        mean += x[i];
    mean /= (float)n;
    float var = 0.0f;
    for (size_t i = 0; i < n; i++)
        var += (x[i] - mean) * (x[i] - mean);
    float scale = 1.0f / sqrtf(var / (float)n + eps);
    for (size_t i = 0; i < n; i++)
        out[i] = w[i] * (scale * (x[i] - mean)) + (b ? b[i] : 0.0f);
}

void ops_norm(const pi_model *m, float *out, const float *x, const pi_tensor *w, const pi_tensor *b)
{
    if (m->norm == PI_NORM_LAYER)
        ops_layernorm(out, x, w->data, b->data, m->dim, m->norm_eps);
    else
        ops_rmsnorm(out, x, w->data, m->dim, m->norm_eps);
}

void ops_add_bias(float *v, const pi_tensor *b)
{
    if (!b->data)
        return;
    const float *bb = b->data;
    for (uint64_t i = 0; i < b->cols; i++)
        v[i] += bb[i];
}

void ops_embed(float *out, const pi_tensor *tok_embd, const pi_tensor *pos_embd, uint32_t pos_offset,
               int32_t token, uint32_t pos)
{
    size_t dim = (size_t)tok_embd->cols;
    pi_dequantize_row(tok_embd->type, pi_tensor_row(tok_embd, (uint64_t)token), out, dim);
    if (!pos_embd->data)
        return;
    /* block by block: no scratch of dim floats needed */
    size_t be = pi_type_block_elems(pos_embd->type), bb = pi_type_block_bytes(pos_embd->type);
    const char *row = pi_tensor_row(pos_embd, (uint64_t)pos + pos_offset);
    float blk[PI_MAX_BLOCK_ELEMS];
    for (size_t c = 0; c < dim; c += be) {
        pi_dequantize_row(pos_embd->type, row + c / be * bb, blk, be);
        for (size_t i = 0; i < be; i++)
            out[c + i] += blk[i];
    }
}

void ops_matvec(float *out, const pi_tensor *w, const float *x, uint64_t r0, uint64_t r1)
{
    for (uint64_t r = r0; r < r1; r++)
        out[r - r0] = pi_dot_row(w->type, pi_tensor_row(w, r), x, (size_t)w->cols);
}

float ops_tensor_get(const pi_tensor *t, uint64_t r, uint64_t c)
{
    size_t be = pi_type_block_elems(t->type);
    float blk[PI_MAX_BLOCK_ELEMS];
    const char *p = (const char *)pi_tensor_row(t, r) + (c / be) * pi_type_block_bytes(t->type);
    pi_dequantize_row(t->type, p, blk, be);
    return blk[c % be];
}

double ops_rope_angle(uint32_t pos, uint32_t i, uint32_t head_dim, float theta, float scale, const float *freqs)
{
    /* in double: pos * freq loses digits in float at long positions */
    double ang = (double)pos * (double)scale * pow((double)theta, -(double)(2 * i) / (double)head_dim);
    return freqs ? ang / (double)freqs[i] : ang;
}

static void rope_norm(float *v, uint32_t n, uint32_t head_dim, uint32_t pos, float theta, float scale,
                      const float *freqs)
{
    for (uint32_t i = 0; i + 1 < n; i += 2) {
        uint32_t d = i % head_dim;   /* even index of the pair inside its head */
        double ang = ops_rope_angle(pos, d / 2, head_dim, theta, scale, freqs);
        float c = (float)cos(ang), s = (float)sin(ang);
        float a = v[i], b = v[i + 1];
        v[i] = a * c - b * s;
        v[i + 1] = a * s + b * c;
    }
}

void ops_rope(float *v, uint32_t n, uint32_t head_dim, uint32_t pos, float theta)
{
    rope_norm(v, n, head_dim, pos, theta, 1.0f, NULL);
}

static void rope_neox(float *v, uint32_t n, uint32_t head_dim, uint32_t pos, float theta, float scale,
                      const float *freqs)
{
    uint32_t half = head_dim / 2;
    for (uint32_t h0 = 0; h0 + head_dim <= n; h0 += head_dim)
        for (uint32_t i = 0; i < half; i++) {
            double ang = ops_rope_angle(pos, i, head_dim, theta, scale, freqs);
            float c = (float)cos(ang), s = (float)sin(ang);
            float a = v[h0 + i], b = v[h0 + i + half];
            v[h0 + i] = a * c - b * s;
            v[h0 + i + half] = a * s + b * c;
        }
}

void ops_rope_neox(float *v, uint32_t n, uint32_t head_dim, uint32_t pos, float theta)
{
    rope_neox(v, n, head_dim, pos, theta, 1.0f, NULL);
}

void ops_rope_model(const pi_model *m, float *v, uint32_t n, uint32_t pos)
{
    const float *freqs = m->rope_freqs.data;
    if (m->rope == PI_ROPE_NORM)
        rope_norm(v, n, m->head_dim, pos, m->rope_theta, m->rope_freq_scale, freqs);
    else if (m->rope == PI_ROPE_NEOX)
        rope_neox(v, n, m->head_dim, pos, m->rope_theta, m->rope_freq_scale, freqs);
}

void ops_softmax(float *x, size_t n)
{
    if (n == 0)
        return;
    float max = x[0];
    for (size_t i = 1; i < n; i++)
        if (x[i] > max)
            max = x[i];
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    for (size_t i = 0; i < n; i++)
        x[i] /= sum;
}

void ops_attention_head(float *out, const float *q, const float *k, const float *v,
                        size_t kv_stride, uint32_t head_dim, uint32_t n_pos, float *att)
{
    float scale = 1.0f / sqrtf((float)head_dim);
    for (uint32_t t = 0; t < n_pos; t++) {
        const float *kt = k + (size_t)t * kv_stride;
        float s = 0.0f;
        for (uint32_t i = 0; i < head_dim; i++)
            s += q[i] * kt[i];
        att[t] = s * scale;
    }
    ops_softmax(att, n_pos);
    memset(out, 0, head_dim * sizeof *out);
    for (uint32_t t = 0; t < n_pos; t++) {
        const float *vt = v + (size_t)t * kv_stride;
        for (uint32_t i = 0; i < head_dim; i++)
            out[i] += att[t] * vt[i];
    }
}

float ops_ffn_act(pi_act act, float gate, float up)
{
    switch (act) {
    case PI_ACT_SILU:
        return gate / (1.0f + expf(-gate)) * up;
    case PI_ACT_RELU:
        return (gate > 0.0f ? gate : 0.0f) * up;
    case PI_ACT_RELU_BOTH:
        return (gate > 0.0f ? gate : 0.0f) * (up > 0.0f ? up : 0.0f);
    case PI_ACT_RELU_SINGLE:
        return gate > 0.0f ? gate : 0.0f;
    }
    return 0.0f;
}

/* sum over columns c in [c0, c1) of row r of t times h[c - c0]. Whole blocks
 * go through pi_dot_row; the ragged ends of a block type are dequantized. */
static float dot_cols(const pi_tensor *t, uint64_t r, uint64_t c0, uint64_t c1, const float *h)
{
    size_t be = pi_type_block_elems(t->type), bb = pi_type_block_bytes(t->type);
    const char *row = pi_tensor_row(t, r);
    uint64_t a = (c0 + be - 1) / be * be, b = c1 / be * be;   /* aligned middle [a, b) */
    if (a >= b)
        a = b = c1;   /* no whole block inside: all element by element */
    float s = 0.0f;
    for (uint64_t c = c0; c < a; c++)
        s += ops_tensor_get(t, r, c) * h[c - c0];
    if (b > a)
        s += pi_dot_row(t->type, row + a / be * bb, h + (a - c0), (size_t)(b - a));
    for (uint64_t c = b; c < c1; c++)
        s += ops_tensor_get(t, r, c) * h[c - c0];
    return s;
}

void ops_ffn_range(const pi_layer *l, pi_act act, const float *x, uint32_t n0, uint32_t n1,
                   float *h, float *out)
{
    size_t dim = (size_t)l->ffn_gate.cols;
    for (uint32_t j = n0; j < n1; j++) {
        float g = ops_gate_biased(l, j, pi_dot_row(l->ffn_gate.type, pi_tensor_row(&l->ffn_gate, j), x, dim));
        float u = pi_act_uses_up(act) ? pi_dot_row(l->ffn_up.type, pi_tensor_row(&l->ffn_up, j), x, dim) : 0.0f;
        h[j - n0] = ops_ffn_act(act, g, u);
    }
    if (!l->ffn_down.data) {    /* only the transposed down: one row per neuron */
        for (uint32_t j = n0; j < n1; j++)
            if (h[j - n0] != 0.0f)
                pi_axpy_row(l->ffn_down_t.type, h[j - n0], pi_tensor_row(&l->ffn_down_t, j), out, dim);
        return;
    }
    for (uint64_t i = 0; i < l->ffn_down.rows; i++)
        out[i] += dot_cols(&l->ffn_down, i, n0, n1, h);
}

void ops_ffn_list(const pi_layer *l, pi_act act, const float *x, const uint32_t *idx, size_t n,
                  float *out)
{
    size_t dim = (size_t)l->ffn_gate.cols;
    for (size_t k = 0; k < n; k++) {
        uint32_t j = idx[k];
        float g = ops_gate_biased(l, j, pi_dot_row(l->ffn_gate.type, pi_tensor_row(&l->ffn_gate, j), x, dim));
        float u = pi_act_uses_up(act) ? pi_dot_row(l->ffn_up.type, pi_tensor_row(&l->ffn_up, j), x, dim) : 0.0f;
        float hj = ops_ffn_act(act, g, u);
        if (hj == 0.0f)
            continue;   /* the sparsity the whole design exploits */
        if (!l->ffn_down.data) {
            pi_axpy_row(l->ffn_down_t.type, hj, pi_tensor_row(&l->ffn_down_t, j), out, dim);
            continue;
        }
        for (uint64_t i = 0; i < l->ffn_down.rows; i++)
            out[i] += hj * ops_tensor_get(&l->ffn_down, i, j);
    }
}
