/* Reference dense forward pass: llama2.c's transformer step over a pi_model,
 * with GQA, tied or untied output, any FFN activation, and what the other
 * architectures add (model/arch.h): LayerNorm, biases, NEOX rotation,
 * learned positions, parallel attention and FFN. Every buffer is sized in
 * forward_new; forward_token allocates nothing. */
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
    float *xf;      /* parallel blocks: the FFN's output, dim */
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
        !(s->xb2 = alloc_floats(m->dim, 1, err)) || !(s->xf = alloc_floats(m->dim, 1, err)) ||
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
    free(s->xf);
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

/* The FFN of layer il on the normed input s->xb, into out (dim, overwritten). */
static void ffn(forward_state *s, uint32_t il, float *out)
{
    const pi_model *m = s->m;
    const pi_layer *l = &m->layers[il];
    memset(out, 0, m->dim * sizeof *out);
    ops_ffn_range(l, m->act, s->xb, 0, m->n_ff, s->hb, out);
    ops_add_bias(out, &l->ffn_down_b);
    if (s->observer)
        s->observer(s->observer_ud, il, s->xb, s->hb, m->n_ff);
}

const float *forward_token(forward_state *s, int32_t token, uint32_t pos)
{
    const pi_model *m = s->m;
    if (token < 0 || (uint32_t)token >= m->n_vocab || pos >= s->n_ctx ||
        (m->pos_embd.data && (uint64_t)pos + m->pos_offset >= m->pos_embd.rows))
        return NULL;
    uint32_t dim = m->dim, hd = m->head_dim, kv_dim = s->kv_dim;
    uint32_t group = m->n_heads / m->n_kv_heads;   /* query heads per kv head */

    ops_embed(s->x, &m->tok_embd, &m->pos_embd, m->pos_offset, token, pos);

    for (uint32_t il = 0; il < m->n_layers; il++) {
        const pi_layer *l = &m->layers[il];
        float *kc = s->k_cache + (size_t)il * s->n_ctx * kv_dim;   /* this layer's cache */
        float *vc = s->v_cache + (size_t)il * s->n_ctx * kv_dim;
        float *k = kc + (size_t)pos * kv_dim, *v = vc + (size_t)pos * kv_dim;

        /* parallel blocks (falcon): the FFN reads the layer's input too */
        if (m->parallel) {
            ops_norm(m, s->xb, s->x, &l->ffn_norm, &l->ffn_norm_b);
            ffn(s, il, s->xf);
        }

        /* attention */
        ops_norm(m, s->xb, s->x, &l->attn_norm, &l->attn_norm_b);
        ops_matvec(s->q, &l->wq, s->xb, 0, l->wq.rows);
        ops_matvec(k, &l->wk, s->xb, 0, kv_dim);
        ops_matvec(v, &l->wv, s->xb, 0, kv_dim);
        ops_add_bias(s->q, &l->bq);
        ops_add_bias(k, &l->bk);
        ops_add_bias(v, &l->bv);
        ops_rope_model(m, s->q, m->n_heads * hd, pos);
        ops_rope_model(m, k, kv_dim, pos);
        for (uint32_t h = 0; h < m->n_heads; h++) {
            uint32_t kvh = h / group;
            ops_attention_head(s->xb + (size_t)h * hd, s->q + (size_t)h * hd, kc + (size_t)kvh * hd,
                               vc + (size_t)kvh * hd, kv_dim, hd, pos + 1, s->att + (size_t)h * s->n_ctx);
        }
        ops_matvec(s->xb2, &l->wo, s->xb, 0, dim);
        ops_add_bias(s->xb2, &l->bo);
        for (uint32_t i = 0; i < dim; i++)
            s->x[i] += s->xb2[i];

        if (m->parallel) {
            for (uint32_t i = 0; i < dim; i++)
                s->x[i] += s->xf[i];
            continue;
        }
        /* FFN */
        ops_norm(m, s->xb, s->x, &l->ffn_norm, &l->ffn_norm_b);
        ffn(s, il, s->xb2);
        for (uint32_t i = 0; i < dim; i++)
            s->x[i] += s->xb2[i];
    }

    ops_norm(m, s->x, s->x, &m->output_norm, &m->output_norm_b);
    ops_matvec(s->logits, &m->output, s->x, 0, m->n_vocab);
    return s->logits;
}
