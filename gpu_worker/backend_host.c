/* The host backend: the GPU worker's part of every layer in plain C over
 * model/ops.h, for machines without a GPU and as the multi-process oracle.
 * It copies what the plan puts on the GPU into its own allocations, so
 * device_bytes counts real memory: norms, attention, lm_head (the embeddings
 * when tied to it; an untied table is read from the model's mapping), the
 * KV cache, and per layer the hot gate/up rows plus the hot down columns
 * stored as rows of dim (plan.h's down^T layout): neurons [0, K), or the
 * layer's hot set (cfg->hot) in list order, hot slot k = the k-th listed
 * neuron. Activation scratch and the global -> slot lookup tables are sized
 * at create and not counted (they are not in the plan either).
 * Every entry is computed on its own, row by row, so results do not depend
 * on how entries are batched. A solo step (run_solo, cfg.solo_batch) runs
 * every FFN neuron from the model's own tensors, in parts of max_batch.
 * The predict op reads the predictor from the model's mapping, uncounted:
 * the plan reserves predictor bytes only for the CUDA backend. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend.h"
#include "ops.h"
#include "plan.h"
#include "predictor.h"
#include "vram_arena.h"

struct gpu_backend {
    const pi_model *m;
    gpu_backend_config cfg;
    uint32_t dim, kv_dim, q_dim, hd, n_hot;
    uint64_t bytes;                 /* weights + KV + hot FFN held */
    void **allocs;                  /* every counted allocation, for destroy */
    size_t n_allocs, cap_allocs;
    pi_tensor tok_embd, output, output_norm, output_norm_b, pos_embd;
    pi_layer *layers;               /* copies; ffn_gate/ffn_up hold the hot rows by slot; ffn_down unused */
    uint32_t *layer_hot;            /* per layer: hot slots */
    int32_t *slot_of;               /* n_layers x n_ff: global neuron -> hot slot, or -1 */
    void **down_t;                  /* per layer: layer_hot rows of dim, type down_t_type[l] */
    pi_type *down_t_type;
    size_t *down_t_row_bytes;
    float *k_cache, *v_cache;       /* [slot][layer][pos][kv_dim] */
    /* scratch */
    float *h;                       /* max_batch x dim: residual streams */
    float *xn;                      /* max_batch x dim: ffn input of the current layer */
    float *x_in;                    /* max_batch x dim: the layer's input, kept for PI_PRED_INPUT_LAYER */
    float *hot;                     /* max_batch x dim: hot partial */
    float *xb, *xb2, *q, *att;      /* one entry: dim, dim, q_dim, n_heads x n_ctx */
    float *pred_hidden;             /* predictor hidden units (widest layer); NULL: no predict */
    float *solo_h, *solo_out;       /* cfg.solo_batch: one entry's n_ff activations, its FFN output */
    /* The layer and entry count of the last attn while h and xn still hold
     * its result (-1 after embed and finish), so predict reads the right state. */
    int64_t attn_layer;
    uint32_t attn_n;
    /* cfg.arena_bytes > 0: the counted memory is one memfd (arena_fd, mapped
     * at arena) that pid can keep; attached: a kept one holding all of it
     * already, so nothing is copied. copied: bytes copied in at create. */
    int arena_fd;
    char *arena;
    uint64_t arena_cap, arena_used, signature, copied;
    int attached;
};

static void *take(gpu_backend *b, size_t bytes, pi_error *err)
{
    if (bytes == 0)
        return NULL;
    if (b->arena) {             /* a fresh memfd reads as zeros, like calloc */
        uint64_t off = vram_arena_take(&b->arena_used, b->arena_cap, bytes);
        if (!off) {
            pi_error_set(err, "host backend: the arena of %" PRIu64 " bytes is too small for the plan "
                         "(%" PRIu64 " laid out, %zu more asked)", b->arena_cap, b->arena_used, bytes);
            return NULL;
        }
        b->bytes += bytes;
        return b->arena + off;
    }
    if (b->n_allocs == b->cap_allocs) {
        size_t cap = b->cap_allocs ? b->cap_allocs * 2 : 64;
        void **a = realloc(b->allocs, cap * sizeof *a);
        if (!a) {
            pi_error_set(err, "host backend: out of memory");
            return NULL;
        }
        b->allocs = a;
        b->cap_allocs = cap;
    }
    void *p = calloc(1, bytes);
    if (!p) {
        pi_error_set(err, "host backend: out of memory for %zu bytes (lower --hot, --max-seqs or --n-ctx)",
                     bytes);
        return NULL;
    }
    b->allocs[b->n_allocs++] = p;
    b->bytes += bytes;
    return p;
}

/* dst = rows [0, rows) of src in a counted allocation. */
/* Copies into counted memory, unless a kept arena holds it already. */
static void put(gpu_backend *b, void *dst, const void *src, size_t n)
{
    if (b->attached)
        return;
    memcpy(dst, src, n);
    b->copied += n;
}

static int copy_rows(gpu_backend *b, pi_tensor *dst, const pi_tensor *src, uint64_t rows, pi_error *err)
{
    *dst = *src;
    dst->rows = rows;
    dst->data = NULL;
    size_t bytes = (size_t)(rows * src->row_bytes);
    if (bytes == 0)
        return 0;
    void *p = take(b, bytes, err);
    if (!p)
        return -1;
    put(b, p, src->data, bytes);
    dst->data = p;
    return 0;
}

static float *scratch(size_t a, size_t c, pi_error *err)
{
    size_t n;
    if (pi_mul_size(a, c, &n) < 0 || n > SIZE_MAX / sizeof(float)) {
        pi_error_set(err, "host backend: scratch of %zu x %zu floats overflows", a, c);
        return NULL;
    }
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p)
        pi_error_set(err, "host backend: out of memory for scratch (lower --max-batch or --n-ctx)");
    return p;
}

static void host_destroy(gpu_backend **bp)
{
    if (!bp || !*bp)
        return;
    gpu_backend *b = *bp;
    if (b->arena)
        munmap(b->arena, b->arena_cap);
    if (b->arena_fd >= 0)
        close(b->arena_fd);
    for (size_t i = 0; i < b->n_allocs; i++)
        free(b->allocs[i]);
    free(b->allocs);
    free(b->layers);
    free(b->layer_hot);
    free(b->slot_of);
    free(b->down_t);
    free(b->down_t_type);
    free(b->down_t_row_bytes);
    free(b->h);
    free(b->xn);
    free(b->x_in);
    free(b->hot);
    free(b->xb);
    free(b->xb2);
    free(b->q);
    free(b->att);
    free(b->pred_hidden);
    free(b->solo_h);
    free(b->solo_out);
    free(b);
    *bp = NULL;
}

/* dst = the rows of set hs of src (in set order) in a counted allocation. */
static int copy_set(gpu_backend *b, pi_tensor *dst, const pi_tensor *src, plan_set hs, pi_error *err)
{
    if (!hs.ids)
        return copy_rows(b, dst, src, hs.n, err);
    *dst = *src;
    dst->rows = hs.n;
    dst->data = NULL;
    if (hs.n == 0)
        return 0;
    char *p = take(b, (size_t)hs.n * src->row_bytes, err);
    if (!p)
        return -1;
    for (uint32_t k = 0; k < hs.n; k++)
        put(b, p + (size_t)k * src->row_bytes, pi_tensor_row(src, (uint64_t)hs.ids[k]), src->row_bytes);
    dst->data = p;
    return 0;
}

static int load_layer(gpu_backend *b, const int32_t *const *hot, uint32_t il, pi_error *err)
{
    const pi_layer *s = &b->m->layers[il];
    pi_layer *d = &b->layers[il];
    plan_set hs = {hot ? hot[il] : NULL, 0, b->layer_hot[il]};
    int32_t *slot = b->slot_of + (size_t)il * b->m->n_ff;
    for (uint32_t j = 0; j < b->m->n_ff; j++)
        slot[j] = -1;
    for (uint32_t k = 0; k < hs.n; k++)
        slot[hs.ids ? hs.ids[k] : (int32_t)k] = (int32_t)k;
    if (copy_rows(b, &d->attn_norm, &s->attn_norm, s->attn_norm.rows, err) < 0 ||
        copy_rows(b, &d->wq, &s->wq, s->wq.rows, err) < 0 ||
        copy_rows(b, &d->wk, &s->wk, s->wk.rows, err) < 0 ||
        copy_rows(b, &d->wv, &s->wv, s->wv.rows, err) < 0 ||
        copy_rows(b, &d->wo, &s->wo, s->wo.rows, err) < 0 ||
        copy_rows(b, &d->ffn_norm, &s->ffn_norm, s->ffn_norm.rows, err) < 0 ||
        copy_set(b, &d->ffn_gate, &s->ffn_gate, hs, err) < 0)
        return -1;
    /* the other architectures' biases (absent ones copy nothing) */
    if (copy_rows(b, &d->attn_norm_b, &s->attn_norm_b, s->attn_norm_b.rows, err) < 0 ||
        copy_rows(b, &d->ffn_norm_b, &s->ffn_norm_b, s->ffn_norm_b.rows, err) < 0 ||
        copy_rows(b, &d->bq, &s->bq, s->bq.rows, err) < 0 || copy_rows(b, &d->bk, &s->bk, s->bk.rows, err) < 0 ||
        copy_rows(b, &d->bv, &s->bv, s->bv.rows, err) < 0 || copy_rows(b, &d->bo, &s->bo, s->bo.rows, err) < 0 ||
        copy_rows(b, &d->ffn_down_b, &s->ffn_down_b, s->ffn_down_b.rows, err) < 0)
        return -1;
    if (!pi_act_uses_up(b->m->act))
        d->ffn_up = d->ffn_gate;    /* never read: no up rows held */
    else if (copy_set(b, &d->ffn_up, &s->ffn_up, hs, err) < 0)
        return -1;
    if (s->ffn_gate_b.data && hs.n > 0) {
        /* fc1's bias of each hot neuron, by hot slot like the gate rows */
        float *gb = take(b, (size_t)hs.n * sizeof *gb, err);
        if (!gb)
            return -1;
        for (uint32_t k = 0; k < hs.n; k++)
            put(b, &gb[k], (const float *)s->ffn_gate_b.data + (hs.ids ? (uint32_t)hs.ids[k] : k), sizeof *gb);
        d->ffn_gate_b = s->ffn_gate_b;
        d->ffn_gate_b.cols = hs.n;
        d->ffn_gate_b.row_bytes = (size_t)hs.n * sizeof *gb;
        d->ffn_gate_b.data = gb;
    } else {
        d->ffn_gate_b.data = NULL;
    }
    b->down_t_type[il] = plan_down_t_type(pi_layer_down_type(s));
    if (pi_row_bytes(b->down_t_type[il], b->dim, &b->down_t_row_bytes[il]) < 0)
        return pi_error_set(err, "host backend: layer %u: bad down row size", il);
    if (hs.n > 0) {
        size_t n = (size_t)hs.n * b->down_t_row_bytes[il];
        void *p = take(b, n, err);
        if (!p || (!b->attached && plan_write_down_t_set(b->m, il, hs, p, b->down_t_row_bytes[il], err) < 0))
            return -1;
        if (!b->attached)
            b->copied += n;
        b->down_t[il] = p;
    }
    return 0;
}

/* cfg->hot, when given: every layer's list ascending, below n_ff, at most n_hot long. */
static int check_hot(const pi_model *m, const gpu_backend_config *cfg, pi_error *err)
{
    if (!cfg->hot)
        return 0;
    if (!cfg->hot_count)
        return pi_error_set(err, "host backend: hot sets given without their counts");
    for (uint32_t l = 0; l < m->n_layers; l++) {
        if (cfg->hot_count[l] > cfg->n_hot || (cfg->hot_count[l] && !cfg->hot[l]))
            return pi_error_set(err, "host backend: layer %u lists %u hot neurons, more than n_hot %u", l,
                                cfg->hot_count[l], cfg->n_hot);
        uint32_t nv = cfg->hot_vram ? cfg->hot_vram[l] : cfg->hot_count[l];
        for (uint32_t k = 0; k < cfg->hot_count[l]; k++) {   /* two ascending runs: VRAM, warm */
            int32_t j = cfg->hot[l][k];
            if (j < 0 || (uint32_t)j >= m->n_ff || (k && k != nv && j <= cfg->hot[l][k - 1]))
                return pi_error_set(err, "host backend: layer %u: hot neuron %d at position %u is out of order "
                                    "or not below n_ff %u", l, j, k, m->n_ff);
        }
    }
    return 0;
}

/* The arena: the kept memfd when its manifest matches this model and config,
 * else a new one (a memfd pid can keep; its pages are zero until written). */
static int open_arena(gpu_backend *b, const gpu_backend_config *cfg, pi_error *err)
{
    b->signature = vram_signature(b->m, cfg, "host");
    if (cfg->kept_bytes >= VRAM_ARENA_HEADER && cfg->kept_fd >= 0) {
        void *p = mmap(NULL, cfg->kept_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, cfg->kept_fd, 0);
        if (p != MAP_FAILED && vram_manifest_ok(p, b->signature, cfg->kept_bytes - VRAM_ARENA_HEADER) &&
            (b->arena_fd = fcntl(cfg->kept_fd, F_DUPFD_CLOEXEC, 0)) >= 0) {
            b->arena = p;
            b->arena_cap = cfg->kept_bytes;
            b->attached = 1;
            return 0;
        }
        if (p != MAP_FAILED)
            munmap(p, cfg->kept_bytes);   /* another model or config: start afresh */
    }
    b->arena_cap = cfg->arena_bytes;
    if ((b->arena_fd = memfd_create("pi-vram", MFD_CLOEXEC)) < 0)
        return pi_error_set(err, "host backend: memfd_create: %s", strerror(errno));
    if (ftruncate(b->arena_fd, (off_t)b->arena_cap) < 0)
        return pi_error_set(err, "host backend: an arena of %" PRIu64 " bytes: %s", b->arena_cap, strerror(errno));
    void *p = mmap(NULL, b->arena_cap, PROT_READ | PROT_WRITE, MAP_SHARED, b->arena_fd, 0);
    if (p == MAP_FAILED)
        return pi_error_set(err, "host backend: mapping an arena of %" PRIu64 " bytes: %s", b->arena_cap,
                            strerror(errno));
    b->arena = p;
    return 0;
}

static gpu_backend *host_create(const pi_model *m, const gpu_backend_config *cfg, pi_error *err)
{
    if (cfg->n_hot > m->n_ff || cfg->max_seqs == 0 || cfg->n_ctx == 0 || cfg->max_batch == 0) {
        pi_error_set(err, "host backend: bad config (hot %u of %u neurons, max_seqs %u, n_ctx %u, "
                     "max_batch %u): hot must be <= n_ff and the others >= 1",
                     cfg->n_hot, m->n_ff, cfg->max_seqs, cfg->n_ctx, cfg->max_batch);
        return NULL;
    }
    if (check_hot(m, cfg, err) < 0)
        return NULL;
    gpu_backend *b = calloc(1, sizeof *b);
    if (!b) {
        pi_error_set(err, "host backend: out of memory");
        return NULL;
    }
    b->m = m;
    b->cfg = *cfg;
    b->arena_fd = -1;
    b->dim = m->dim;
    b->hd = m->head_dim;
    b->q_dim = m->n_heads * m->head_dim;
    b->kv_dim = m->n_kv_heads * m->head_dim;
    b->n_hot = cfg->n_hot;
    uint32_t L = m->n_layers;
    b->layers = calloc(L, sizeof *b->layers);
    b->down_t = calloc(L, sizeof *b->down_t);
    b->down_t_type = calloc(L, sizeof *b->down_t_type);
    b->down_t_row_bytes = calloc(L, sizeof *b->down_t_row_bytes);
    b->layer_hot = calloc(L ? L : 1, sizeof *b->layer_hot);
    size_t n_slots = (size_t)L * m->n_ff;
    b->slot_of = n_slots / m->n_ff == L ? malloc((n_slots ? n_slots : 1) * sizeof *b->slot_of) : NULL;
    if (!b->layers || !b->down_t || !b->down_t_type || !b->down_t_row_bytes || !b->layer_hot || !b->slot_of) {
        pi_error_set(err, "host backend: out of memory");
        goto fail;
    }
    for (uint32_t il = 0; il < L; il++)
        b->layer_hot[il] = cfg->hot ? cfg->hot_count[il] : cfg->n_hot;
    if (cfg->arena_bytes && open_arena(b, cfg, err) < 0)
        goto fail;
    b->cfg.hot = NULL;          /* the caller's lists are copied into slot_of and the rows */
    b->cfg.hot_count = NULL;
    b->cfg.hot_vram = NULL;
    /* As the CUDA backend: an untied model's embedding table stays in host
     * memory (the model's mapping), uncounted; tied, it is the output. */
    b->tok_embd = m->tok_embd;
    if ((m->tied_output && copy_rows(b, &b->tok_embd, &m->tok_embd, m->tok_embd.rows, err) < 0) ||
        copy_rows(b, &b->output_norm, &m->output_norm, m->output_norm.rows, err) < 0 ||
        copy_rows(b, &b->output_norm_b, &m->output_norm_b, m->output_norm_b.rows, err) < 0 ||
        copy_rows(b, &b->pos_embd, &m->pos_embd, m->pos_embd.rows, err) < 0)
        goto fail;
    if (m->tied_output)
        b->output = b->tok_embd;
    else if (copy_rows(b, &b->output, &m->output, m->output.rows, err) < 0)
        goto fail;
    for (uint32_t il = 0; il < L; il++)
        if (load_layer(b, cfg->hot, il, err) < 0)
            goto fail;
    size_t cache_floats = (size_t)cfg->max_seqs * L * cfg->n_ctx * b->kv_dim;
    if (cache_floats / b->kv_dim / cfg->n_ctx / L != cfg->max_seqs ||
        cache_floats > SIZE_MAX / sizeof(float)) {
        pi_error_set(err, "host backend: KV cache size overflows");
        goto fail;
    }
    if (!(b->k_cache = take(b, cache_floats * sizeof(float), err)) ||
        !(b->v_cache = take(b, cache_floats * sizeof(float), err)))
        goto fail;
    if (!(b->h = scratch(cfg->max_batch, b->dim, err)) || !(b->xn = scratch(cfg->max_batch, b->dim, err)) ||
        !(b->hot = scratch(cfg->max_batch, b->dim, err)) || !(b->xb = scratch(b->dim, 1, err)) ||
        !(b->xb2 = scratch(b->dim, 1, err)) || !(b->q = scratch(b->q_dim, 1, err)) ||
        !(b->att = scratch(m->n_heads, cfg->n_ctx, err)))
        goto fail;
    if (cfg->solo_batch &&
        (!(b->solo_h = scratch(m->n_ff, 1, err)) || !(b->solo_out = scratch(b->dim, 1, err))))
        goto fail;
    if (cfg->ffn == PI_FFN_PREDICTED && m->has_predictor) {
        uint32_t R = 1;
        for (uint32_t il = 0; il < L; il++)
            R = predictor_hidden(&m->layers[il]) > R ? predictor_hidden(&m->layers[il]) : R;
        if (!(b->pred_hidden = scratch(R, 1, err)))
            goto fail;
        if (m->pred_input == PI_PRED_INPUT_LAYER && !(b->x_in = scratch(cfg->max_batch, b->dim, err)))
            goto fail;
    }
    if (b->arena && !b->attached)   /* the manifest last: the arena is whole now */
        vram_manifest_fill((vram_manifest *)b->arena, b->signature, b->arena_used);
    b->attn_layer = -1;
    return b;
fail:
    host_destroy(&b);
    return NULL;
}

static int host_keep_fd(gpu_backend *b, uint64_t *bytes)
{
    *bytes = b->arena_cap;
    return b->arena_fd >= 0 ? fcntl(b->arena_fd, F_DUPFD_CLOEXEC, 0) : -1;
}

static uint64_t host_copied_bytes(const gpu_backend *b)
{
    return b->copied;
}

static uint64_t host_device_bytes(const gpu_backend *b)
{
    return b->bytes;
}

static int check_n(const gpu_backend *b, uint32_t n, pi_error *err)
{
    if (n > b->cfg.max_batch)
        return pi_error_set(err, "host backend: %u entries in a step; max_batch is %u", n, b->cfg.max_batch);
    return 0;
}

static int host_embed(gpu_backend *b, const gpu_entry *e, uint32_t n, pi_error *err)
{
    b->attn_layer = -1;
    if (check_n(b, n, err) < 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        if (e[i].token < 0 || (uint32_t)e[i].token >= b->m->n_vocab)
            return pi_error_set(err, "host backend: entry %u: token %d is outside the vocabulary of %u",
                                i, e[i].token, b->m->n_vocab);
        if (e[i].slot >= b->cfg.max_seqs || e[i].pos >= b->cfg.n_ctx)
            return pi_error_set(err, "host backend: entry %u: slot %u / pos %u outside max_seqs %u / n_ctx %u",
                                i, e[i].slot, e[i].pos, b->cfg.max_seqs, b->cfg.n_ctx);
        if (b->pos_embd.data && (uint64_t)e[i].pos + b->m->pos_offset >= b->pos_embd.rows)
            return pi_error_set(err, "host backend: entry %u: pos %u is past the model's %" PRIu64 " learned positions",
                                i, e[i].pos, b->pos_embd.rows - b->m->pos_offset);
        ops_embed(b->h + (size_t)i * b->dim, &b->tok_embd, &b->pos_embd, b->m->pos_offset, e[i].token, e[i].pos);
    }
    return 0;
}

static int host_attn(gpu_backend *b, uint32_t l, const gpu_entry *e, uint32_t n, float *xn_out, pi_error *err)
{
    b->attn_layer = -1;
    if (check_n(b, n, err) < 0)
        return -1;
    if (l >= b->m->n_layers)
        return pi_error_set(err, "host backend: layer %u of %u", l, b->m->n_layers);
    const pi_model *m = b->m;
    const pi_layer *y = &b->layers[l];
    uint32_t dim = b->dim, hd = b->hd, kv_dim = b->kv_dim, group = m->n_heads / m->n_kv_heads;
    for (uint32_t i = 0; i < n; i++) {
        if (e[i].slot >= b->cfg.max_seqs || e[i].pos >= b->cfg.n_ctx)
            return pi_error_set(err, "host backend: entry %u: slot %u / pos %u outside max_seqs %u / n_ctx %u",
                                i, e[i].slot, e[i].pos, b->cfg.max_seqs, b->cfg.n_ctx);
        float *x = b->h + (size_t)i * dim;
        uint32_t pos = e[i].pos;
        size_t layer_off = ((size_t)e[i].slot * m->n_layers + l) * b->cfg.n_ctx * kv_dim;
        float *kc = b->k_cache + layer_off, *vc = b->v_cache + layer_off;
        float *k = kc + (size_t)pos * kv_dim, *v = vc + (size_t)pos * kv_dim;
        float *xn = b->xn + (size_t)i * dim;
        if (b->x_in)
            memcpy(b->x_in + (size_t)i * dim, x, dim * sizeof *x);
        if (m->parallel)    /* falcon: the FFN reads the layer's input, not h after attention */
            ops_norm(m, xn, x, &y->ffn_norm, &y->ffn_norm_b);
        ops_norm(m, b->xb, x, &y->attn_norm, &y->attn_norm_b);
        ops_matvec(b->q, &y->wq, b->xb, 0, y->wq.rows);
        ops_matvec(k, &y->wk, b->xb, 0, kv_dim);
        ops_matvec(v, &y->wv, b->xb, 0, kv_dim);
        ops_add_bias(b->q, &y->bq);
        ops_add_bias(k, &y->bk);
        ops_add_bias(v, &y->bv);
        ops_rope_model(m, b->q, b->q_dim, pos);
        ops_rope_model(m, k, kv_dim, pos);
        for (uint32_t h = 0; h < m->n_heads; h++) {
            uint32_t kvh = h / group;
            ops_attention_head(b->xb + (size_t)h * hd, b->q + (size_t)h * hd, kc + (size_t)kvh * hd,
                               vc + (size_t)kvh * hd, kv_dim, hd, pos + 1, b->att + (size_t)h * b->cfg.n_ctx);
        }
        ops_matvec(b->xb2, &y->wo, b->xb, 0, dim);
        ops_add_bias(b->xb2, &y->bo);
        for (uint32_t j = 0; j < dim; j++)
            x[j] += b->xb2[j];
        if (!m->parallel)
            ops_norm(m, xn, x, &y->ffn_norm, &y->ffn_norm_b);
        memcpy(xn_out + (size_t)i * dim, xn, dim * sizeof *xn);
    }
    b->attn_layer = l;
    b->attn_n = n;
    return 0;
}

/* Layer l's predictor for the n entries of the last attn, from each entry's
 * residual h (PowerInfer's files: before ffn_norm), its layer input (PowerInfer's
 * falcon) or its xn, as the model's pred_input says. */
static int host_predict(gpu_backend *b, uint32_t l, uint32_t n, int32_t *const *active, int32_t *counts,
                        pi_error *err)
{
    const pi_model *m = b->m;
    if (!b->pred_hidden)
        return pi_error_set(err, "host backend: predict, but the backend holds no predictor (created for --ffn "
                            "%s, model %s one)", pi_ffn_mode_name(b->cfg.ffn), m->has_predictor ? "with" : "without");
    if (b->attn_layer != (int64_t)l || b->attn_n != n)
        return pi_error_set(err, "host backend: predict for layer %u with %u entries, but the last attn was "
                            "layer %lld with %u (predict reads its h and xn)", l, n, (long long)b->attn_layer,
                            b->attn_n);
    if (!counts)
        return pi_error_set(err, "host backend: predict without a counts array");
    for (uint32_t i = 0; i < n; i++)
        if (!active[i])
            return pi_error_set(err, "host backend: predict: entry %u has no list", i);
    const pi_layer *y = &m->layers[l];
    for (uint32_t i = 0; i < n; i++) {
        const float *x = predictor_input(m, b->x_in ? b->x_in + (size_t)i * b->dim : NULL,
                                         b->h + (size_t)i * b->dim, b->xn + (size_t)i * b->dim);
        counts[i] = (int32_t)predictor_active(y, m->sparse_threshold, x, b->pred_hidden, active[i]);
    }
    return 0;
}

static int host_ffn_hot(gpu_backend *b, uint32_t l, uint32_t n, pi_error *err)
{
    if (check_n(b, n, err) < 0)
        return -1;
    if (l >= b->m->n_layers)
        return pi_error_set(err, "host backend: layer %u of %u", l, b->m->n_layers);
    const pi_layer *y = &b->layers[l];
    uint32_t dim = b->dim;
    const char *dt = b->down_t[l];
    size_t dt_rb = b->down_t_row_bytes[l];
    pi_type dt_type = b->down_t_type[l];
    for (uint32_t i = 0; i < n; i++) {
        const float *x = b->xn + (size_t)i * dim;
        float *out = b->hot + (size_t)i * dim;
        memset(out, 0, dim * sizeof *out);
        for (uint32_t j = 0; j < b->layer_hot[l]; j++) {
            float g = ops_gate_biased(y, j, pi_dot_row(y->ffn_gate.type, pi_tensor_row(&y->ffn_gate, j), x, dim));
            if (b->cfg.ffn == PI_FFN_EXACT && b->m->act != PI_ACT_SILU && !(g > 0.0f))
                continue; /* relu(g) = 0: up and down cannot matter */
            float u = pi_act_uses_up(b->m->act) ? pi_dot_row(y->ffn_up.type, pi_tensor_row(&y->ffn_up, j), x, dim)
                                                : 0.0f;
            float a = ops_ffn_act(b->m->act, g, u);
            if (a != 0.0f)
                pi_axpy_row(dt_type, a, dt + (size_t)j * dt_rb, out, dim);
        }
    }
    return 0;
}

static int host_ffn_hot_active(gpu_backend *b, uint32_t l, uint32_t n, const int32_t *const *active,
                               const int32_t *counts, pi_error *err)
{
    if (check_n(b, n, err) < 0)
        return -1;
    if (l >= b->m->n_layers)
        return pi_error_set(err, "host backend: layer %u of %u", l, b->m->n_layers);
    const pi_layer *y = &b->layers[l];
    uint32_t dim = b->dim;
    const char *dt = b->down_t[l];
    size_t dt_rb = b->down_t_row_bytes[l];
    pi_type dt_type = b->down_t_type[l];
    const int32_t *slot_of = b->slot_of + (size_t)l * b->m->n_ff;
    for (uint32_t i = 0; i < n; i++) {
        const float *x = b->xn + (size_t)i * dim;
        float *out = b->hot + (size_t)i * dim;
        memset(out, 0, dim * sizeof *out);
        for (int32_t k = 0; k < counts[i]; k++) {
            int32_t g_id = active[i][k];
            if (g_id < 0 || (uint32_t)g_id >= b->m->n_ff || slot_of[g_id] < 0)
                continue; /* cold: a CPU worker's */
            int32_t j = slot_of[g_id];
            float g = ops_gate_biased(y, (uint64_t)j,
                                      pi_dot_row(y->ffn_gate.type, pi_tensor_row(&y->ffn_gate, (uint64_t)j), x, dim));
            if (b->m->act != PI_ACT_SILU && !(g > 0.0f))
                continue;
            float u = pi_act_uses_up(b->m->act)
                          ? pi_dot_row(y->ffn_up.type, pi_tensor_row(&y->ffn_up, (uint64_t)j), x, dim) : 0.0f;
            float a = ops_ffn_act(b->m->act, g, u);
            if (a != 0.0f)
                pi_axpy_row(dt_type, a, dt + (size_t)j * dt_rb, out, dim);
        }
    }
    return 0;
}

static int host_finish(gpu_backend *b, uint32_t l, uint32_t n, const float *const *partials,
                       uint32_t n_partials, pi_error *err)
{
    b->attn_layer = -1;     /* h moves on: a predict now would read the next layer's input */
    if (check_n(b, n, err) < 0)
        return -1;
    if (l >= b->m->n_layers)
        return pi_error_set(err, "host backend: layer %u of %u", l, b->m->n_layers);
    /* fc2's bias (OPT) joins the neurons' sum before the residual add, as
     * in the reference forward */
    const float *down_b = b->layers[l].ffn_down_b.data;
    size_t total = (size_t)n * b->dim;
    for (size_t i = 0; i < total; i++) {
        float t = b->hot[i];
        for (uint32_t p = 0; p < n_partials; p++)
            t += partials[p][i];
        if (down_b)
            t += down_b[i % b->dim];
        b->h[i] += t;
    }
    return 0;
}

static int host_logits(gpu_backend *b, const gpu_entry *e, uint32_t n, float *out, pi_error *err)
{
    if (check_n(b, n, err) < 0)
        return -1;
    const pi_model *m = b->m;
    size_t row = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (!e[i].want_logits)
            continue;
        ops_norm(m, b->xb, b->h + (size_t)i * b->dim, &b->output_norm, &b->output_norm_b);
        ops_matvec(out + row * m->n_vocab, &b->output, b->xb, 0, m->n_vocab);
        row++;
    }
    return 0;
}

/* Layer l's whole FFN, every neuron from the model's own tensors, for the n
 * entries of the last attn (their xn), added into h as finish adds the hot
 * part and the partials: fc2's bias joins the sum before the residual add. */
static void solo_ffn(gpu_backend *b, uint32_t l, uint32_t n)
{
    const pi_layer *y = &b->m->layers[l];
    const float *down_b = y->ffn_down_b.data;
    uint32_t dim = b->dim;
    for (uint32_t i = 0; i < n; i++) {
        memset(b->solo_out, 0, dim * sizeof *b->solo_out);
        ops_ffn_range(y, b->m->act, b->xn + (size_t)i * dim, 0, b->m->n_ff, b->solo_h, b->solo_out);
        float *h = b->h + (size_t)i * dim;
        for (uint32_t j = 0; j < dim; j++)
            h[j] += down_b ? b->solo_out[j] + down_b[j] : b->solo_out[j];
    }
}

/* n <= max_batch entries of a solo step through every layer, then their
 * logits. attn's copy of xn goes to hot, unused here (the FFN reads xn). */
static int solo_part(gpu_backend *b, const gpu_entry *e, uint32_t n, float *logits, pi_error *err)
{
    if (host_embed(b, e, n, err) < 0)
        return -1;
    for (uint32_t l = 0; l < b->m->n_layers; l++) {
        if (host_attn(b, l, e, n, b->hot, err) < 0)
            return -1;
        solo_ffn(b, l, n);
    }
    b->attn_layer = -1;
    return host_logits(b, e, n, logits, err);
}

/* A solo step in parts of max_batch entries, in order: a part's KV is
 * written before the next part attends to it, as within a part. */
static int host_run_solo(gpu_backend *b, const gpu_entry *e, uint32_t n, float *logits, pi_error *err)
{
    if (n > b->cfg.solo_batch)
        return pi_error_set(err, "host backend: a solo step of %u entries; solo_batch is %u", n, b->cfg.solo_batch);
    size_t row = 0;
    for (uint32_t e0 = 0; e0 < n; e0 += b->cfg.max_batch) {
        uint32_t k = n - e0 < b->cfg.max_batch ? n - e0 : b->cfg.max_batch;
        if (solo_part(b, e + e0, k, logits + row * b->m->n_vocab, err) < 0)
            return pi_error_wrap(err, "solo step, entries %u..%u", e0, e0 + k - 1);
        for (uint32_t i = e0; i < e0 + k; i++)
            row += e[i].want_logits != 0;
    }
    return 0;
}

static uint32_t host_solo_max(const gpu_backend *b)
{
    return b->cfg.solo_batch;
}

const gpu_backend_ops gpu_backend_host = {
    .name = "host",
    .create = host_create,
    .destroy = host_destroy,
    .device_bytes = host_device_bytes,
    .ffn_hot_active = host_ffn_hot_active,
    .embed = host_embed,
    .attn = host_attn,
    .ffn_hot = host_ffn_hot,
    .finish = host_finish,
    .logits = host_logits,
    .predict = host_predict,
    .keep_fd = host_keep_fd,
    .copied_bytes = host_copied_bytes,
    .run_solo = host_run_solo,
    .solo_max = host_solo_max,
};
