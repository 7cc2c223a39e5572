/* Reference dense forward pass: llama2.c's transformer step over a pi_model,
 * with GQA, tied or untied output and any FFN activation. Every buffer is
 * sized in forward_new; forward_token allocates nothing. */
#include "forward.h"

#include <stdlib.h>
#include <string.h>

#include "ops.h"

struct forward_state {
    const pi_model *m;
    uint32_t n_ctx, kv_dim;
    float *x;       /* residual stream, dim */
    float *xb;      /* normed input / attention output, dim */
    float *xb2;     /* projection output, dim */
    float *q;       /* dim */
    float *hb;      /* FFN hidden, n_ff */
    float *att;     /* n_heads x n_ctx scores */
    float *logits;  /* n_vocab */
    float *k_cache; /* n_layers x n_ctx x kv_dim */
    float *v_cache;
    forward_ffn_observer observer;  /* optional, see forward.h */
    void *observer_ud;
};

static float *alloc_floats(size_t a, size_t b, pi_error *err)
{
    size_t n, bytes;
    if (pi_mul_size(a, b, &n) < 0 || pi_mul_size(n, sizeof(float), &bytes) < 0) {
        pi_error_set(err, "forward: buffer of %zu x %zu floats overflows", a, b);
        return NULL;
    }
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p)
        pi_error_set(err, "forward: out of memory for %zu bytes (lower n_ctx?)", bytes);
    return p;
}

forward_state *forward_new(const pi_model *m, uint32_t n_ctx, pi_error *err)
{
    if (n_ctx == 0)
        n_ctx = m->n_ctx;
    forward_state *s = calloc(1, sizeof *s);
    if (!s) {
        pi_error_set(err, "forward: out of memory");
        return NULL;
    }
    s->m = m;
    s->n_ctx = n_ctx;
    s->kv_dim = m->n_kv_heads * m->head_dim;
    size_t cache_rows = (size_t)m->n_layers * n_ctx;
    if (!(s->x = alloc_floats(m->dim, 1, err)) || !(s->xb = alloc_floats(m->dim, 1, err)) ||
        !(s->xb2 = alloc_floats(m->dim, 1, err)) ||
        !(s->q = alloc_floats((size_t)m->n_heads * m->head_dim, 1, err)) ||
        !(s->hb = alloc_floats(m->n_ff, 1, err)) ||
        !(s->att = alloc_floats(m->n_heads, n_ctx, err)) ||
        !(s->logits = alloc_floats(m->n_vocab, 1, err)) ||
        !(s->k_cache = alloc_floats(cache_rows, s->kv_dim, err)) ||
        !(s->v_cache = alloc_floats(cache_rows, s->kv_dim, err))) {
        forward_free(&s);
        return NULL;
    }
    return s;
}

void forward_free(forward_state **sp)
{
    if (!sp || !*sp)
        return;
    forward_state *s = *sp;
    free(s->x);
    free(s->xb);
    free(s->xb2);
    free(s->q);
    free(s->hb);
    free(s->att);
    free(s->logits);
    free(s->k_cache);
    free(s->v_cache);
    free(s);
    *sp = NULL;
}

void forward_set_ffn_observer(forward_state *s, forward_ffn_observer fn, void *ud)
{
    s->observer = fn;
    s->observer_ud = ud;
}

const float *forward_token(forward_state *s, int32_t token, uint32_t pos)
{
    const pi_model *m = s->m;
    if (token < 0 || (uint32_t)token >= m->n_vocab || pos >= s->n_ctx)
        return NULL;
    uint32_t dim = m->dim, hd = m->head_dim, kv_dim = s->kv_dim;
    uint32_t group = m->n_heads / m->n_kv_heads;   /* query heads per kv head */

    pi_dequantize_row(m->tok_embd.type, pi_tensor_row(&m->tok_embd, (uint64_t)token), s->x, dim);

    for (uint32_t il = 0; il < m->n_layers; il++) {
        const pi_layer *l = &m->layers[il];
        float *kc = s->k_cache + (size_t)il * s->n_ctx * kv_dim;   /* this layer's cache */
        float *vc = s->v_cache + (size_t)il * s->n_ctx * kv_dim;
        float *k = kc + (size_t)pos * kv_dim, *v = vc + (size_t)pos * kv_dim;

        /* attention */
        ops_rmsnorm(s->xb, s->x, l->attn_norm.data, dim, m->norm_eps);
        ops_matvec(s->q, &l->wq, s->xb, 0, l->wq.rows);
        ops_matvec(k, &l->wk, s->xb, 0, kv_dim);
        ops_matvec(v, &l->wv, s->xb, 0, kv_dim);
        ops_rope(s->q, m->n_heads * hd, hd, pos, m->rope_theta);
        ops_rope(k, kv_dim, hd, pos, m->rope_theta);
        for (uint32_t h = 0; h < m->n_heads; h++) {
            uint32_t kvh = h / group;
            ops_attention_head(s->xb + (size_t)h * hd, s->q + (size_t)h * hd, kc + (size_t)kvh * hd,
                               vc + (size_t)kvh * hd, kv_dim, hd, pos + 1, s->att + (size_t)h * s->n_ctx);
        }
        ops_matvec(s->xb2, &l->wo, s->xb, 0, dim);
        for (uint32_t i = 0; i < dim; i++)
            s->x[i] += s->xb2[i];

        /* FFN */
        ops_rmsnorm(s->xb, s->x, l->ffn_norm.data, dim, m->norm_eps);
        memset(s->xb2, 0, dim * sizeof *s->xb2);
        ops_ffn_range(l, m->act, s->xb, 0, m->n_ff, s->hb, s->xb2);
        if (s->observer)
            s->observer(s->observer_ud, il, s->xb, s->hb, m->n_ff);
        for (uint32_t i = 0; i < dim; i++)
            s->x[i] += s->xb2[i];
    }

    ops_rmsnorm(s->x, s->x, m->output_norm.data, dim, m->norm_eps);
    ops_matvec(s->logits, &m->output, s->x, 0, m->n_vocab);
    return s->logits;
}
