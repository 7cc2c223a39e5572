/* The split forward (host backend's hot neurons + N cold CPU shards, entries of two sequences mixed in batches) gives the reference forward's logits and greedy tokens at every position, in --ffn dense (plain kernels) and, for ReLU-family models, --ffn exact (fast kernels skipping neurons whose gate is <= 0, within 1e-4); with per-layer hot sets (random subsets of different sizes, the rest in 1-3 shards) too, and in --ffn predicted (synthetic models' predictors) it equals a reference that computes exactly the predicted neurons. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check.h"
#include "ffn_cold.h"
#include "ffn_pool.h"
#include "forward.h"
#include "greedy_oracle.h"
#include "llama2c.h"
#include "ops.h"
#include "plan.h"
#include "rand_model.h"
#include "shard.h"
#include "synth.h"

#define N_TOK 64
#define N_SEQ 2
#define MAX_BATCH 8
#define MAX_SEQS 3
#define MAX_SHARDS 3

static const uint32_t seq_slot[N_SEQ] = {0, 2};   /* slot 1 stays unused */

typedef struct oracle {
    int32_t tok[N_SEQ][N_TOK + 1];
    float *logits;  /* [seq][pos][n_vocab] */
} oracle;

/* Greedy continuation of each start token by the reference forward. */
static void make_oracle(const pi_model *m, const int32_t *start, oracle *o)
{
    o->logits = malloc((size_t)N_SEQ * N_TOK * m->n_vocab * sizeof(float));
    CHECK(o->logits, "oom");
    for (int s = 0; s < N_SEQ; s++)
        greedy_oracle(m, start[s], N_TOK, o->tok[s], o->logits + (size_t)s * N_TOK * m->n_vocab);
}

/* Step k: a few positions of each sequence, interleaved (entries of one slot
 * stay in position order); some entries want no logits. */
static uint32_t build_step(uint32_t k, uint32_t next[N_SEQ], gpu_entry *e)
{
    uint32_t quota[N_SEQ] = {1 + k % 3, 1 + (k / 2) % 4}, n = 0;
    for (int round = 0; round < 4; round++)
        for (int s = 0; s < N_SEQ; s++) {
            if (quota[s] == 0 || next[s] >= N_TOK || n >= MAX_BATCH)
                continue;
            quota[s]--;
            uint32_t pos = next[s]++;
            e[n++] = (gpu_entry){.slot = seq_slot[s], .pos = pos, .token = 0,
                                 .want_logits = (pos % 5 != 2)};
        }
    return n;
}

/* --ffn predicted: the lists the split run used, per (sequence, position,
 * layer), so the reference computes exactly the same neurons. */
typedef struct pred_log {
    uint32_t n_layers, n_ff;
    int32_t *idx;       /* [seq][pos][layer][n_ff] */
    int32_t *count;     /* [seq][pos][layer] */
    uint64_t listed;    /* sum of counts, for the report */
} pred_log;

typedef struct rig {
    const pi_model *m;
    gpu_backend *b;
    cpu_shard *shards[MAX_SHARDS];
    uint32_t n_shards;
    float *x, *partial[MAX_SHARDS], *out;
    ffn_pool *pool;             /* exact/predicted mode: the CPU worker's fast path */
    uint32_t *all;              /* 0..n_ff-1 */
    double tol;
    pi_ffn_mode mode;
    /* predicted: per entry its active list (as the segment holds it) */
    int32_t *active[MAX_BATCH], counts[MAX_BATCH];
    uint32_t *local;
    pred_log *log;
} rig;

static int seq_of(uint32_t slot)
{
    return slot == seq_slot[0] ? 0 : 1;
}

/* The GPU worker's predict_layer (the backend's predict op, which picks the
 * predictor's input: tests/unit/test_predictor.c) and the CPU workers'
 * shard_active. */
static void predicted_layer(rig *r, uint32_t l, const gpu_entry *e, uint32_t n)
{
    pi_error err = {{0}};
    const pi_model *m = r->m;
    CHECK(gpu_backend_host.predict(r->b, l, n, r->active, r->counts, &err) == 0, "%s", err.msg);
    for (uint32_t i = 0; i < n; i++) {
        pred_log *g = r->log;
        size_t at = ((size_t)seq_of(e[i].slot) * N_TOK + e[i].pos) * g->n_layers + l;
        memcpy(g->idx + at * g->n_ff, r->active[i], (size_t)r->counts[i] * sizeof(int32_t));
        g->count[at] = r->counts[i];
    }
    CHECK(gpu_backend_host.ffn_hot_active(r->b, l, n, (const int32_t *const *)r->active, r->counts, &err) == 0,
          "%s", err.msg);
    for (uint32_t s = 0; s < r->n_shards; s++) {
        ffn_sparse_layer fl;
        cpu_shard_sparse_layer(r->shards[s], l, &fl);
        for (uint32_t i = 0; i < n; i++) {
            uint32_t len = cpu_shard_local_list(r->shards[s], l, r->active[i], (uint32_t)r->counts[i], r->local);
            CHECK(ffn_sparse_run(r->pool, &fl, m->act, r->x + (size_t)i * m->dim, r->local, len,
                                 r->partial[s] + (size_t)i * m->dim, &err) == 0, "%s", err.msg);
        }
    }
}

static void run_step(rig *r, const gpu_entry *e, uint32_t n)
{
    pi_error err = {{0}};
    const gpu_backend_ops *ops = &gpu_backend_host;
    CHECK(ops->embed(r->b, e, n, &err) == 0, "%s", err.msg);
    for (uint32_t l = 0; l < r->m->n_layers; l++) {
        CHECK(ops->attn(r->b, l, e, n, r->x, &err) == 0, "%s", err.msg);
        if (r->mode == PI_FFN_PREDICTED) {
            predicted_layer(r, l, e, n);
        } else {
            CHECK(ops->ffn_hot(r->b, l, n, &err) == 0, "%s", err.msg);
        }
        for (uint32_t s = 0; s < r->n_shards && r->mode != PI_FFN_PREDICTED; s++) {
            if (!r->pool) {
                ffn_cold(r->shards[s], l, r->x, n, r->partial[s]);
                continue;
            }
            ffn_sparse_layer fl;
            cpu_shard_sparse_layer(r->shards[s], l, &fl);
            for (uint32_t i = 0; i < n; i++)
                CHECK(ffn_sparse_run(r->pool, &fl, r->m->act, r->x + (size_t)i * r->m->dim, r->all, fl.n_neurons,
                                     r->partial[s] + (size_t)i * r->m->dim, &err) == 0, "%s", err.msg);
        }
        CHECK(ops->finish(r->b, l, n, (const float *const *)r->partial, r->n_shards, &err) == 0, "%s",
              err.msg);
    }
    CHECK(ops->logits(r->b, e, n, r->out, &err) == 0, "%s", err.msg);
}

/* Compares every want_logits row with the oracle; returns the worst relative error. */
static double compare(const rig *r, const oracle *o, const gpu_entry *e, uint32_t n, const char *label)
{
    uint32_t V = r->m->n_vocab, row = 0;
    double worst = 0.0;
    for (uint32_t i = 0; i < n; i++) {
        if (!e[i].want_logits)
            continue;
        int s = e[i].slot == seq_slot[0] ? 0 : 1;
        const float *a = r->out + (size_t)row++ * V;
        const float *b = o->logits + ((size_t)s * N_TOK + e[i].pos) * V;
        double dmax = 0.0, bmax = 0.0;
        for (uint32_t v = 0; v < V; v++) {
            dmax = fmax(dmax, fabs((double)a[v] - b[v]));
            bmax = fmax(bmax, fabs((double)b[v]));
        }
        double rel = dmax / bmax;
        CHECK(rel <= r->tol, "%s: seq %d pos %u: relative error %.3g > %.0e", label, s, e[i].pos, rel, r->tol);
        CHECK((int32_t)test_argmax(a, V) == o->tok[s][e[i].pos + 1], "%s: seq %d pos %u: greedy token %u != %d",
              label, s, e[i].pos, test_argmax(a, V), o->tok[s][e[i].pos + 1]);
        worst = fmax(worst, rel);
    }
    return worst;
}

/* Per-layer hot sets and the cold rest cut into shards, built here (not by
 * plan.c) so the backend and the shards are checked on their own. */
typedef struct hot_sets {
    int32_t *hot[16];
    uint32_t hot_count[16];
    int32_t *cold[MAX_SHARDS][16];
    uint32_t cold_count[MAX_SHARDS][16];
    uint32_t max_hot;
    uint64_t hot_bytes;
} hot_sets;

/* Layer l gets a random subset of a size that differs per layer (0 and
 * n_ff included over the layers); its cold neurons, ascending, are cut into
 * n_shards contiguous chunks balanced by count. */
static void make_sets(const pi_model *m, uint32_t n_shards, uint64_t seed, hot_sets *h)
{
    memset(h, 0, sizeof *h);
    CHECK(m->n_layers <= 16, "too many layers for the test");
    uint32_t n = m->n_ff, *perm = malloc(n * sizeof *perm);
    uint8_t *is_hot = malloc(n);
    CHECK(perm && is_hot, "oom");
    static const uint32_t eighths[] = {3, 0, 5, 8, 1, 6, 2, 7};
    for (uint32_t l = 0; l < m->n_layers; l++) {
        uint32_t c = n * eighths[(l + seed) % 8] / 8;
        if (n_shards == 0)
            c = n;
        for (uint32_t j = 0; j < n; j++)
            perm[j] = j;
        for (uint32_t j = n; j > 1; j--) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            uint32_t k = (uint32_t)((seed >> 33) % j), t = perm[j - 1];
            perm[j - 1] = perm[k];
            perm[k] = t;
        }
        memset(is_hot, 0, n);
        for (uint32_t k = 0; k < c; k++)
            is_hot[perm[k]] = 1;
        CHECK(h->hot[l] = malloc((c ? c : 1) * sizeof(int32_t)), "oom");
        int32_t *cold = malloc((n - c ? n - c : 1) * sizeof *cold);
        CHECK(cold, "oom");
        uint32_t nh = 0, nc = 0;
        for (uint32_t j = 0; j < n; j++) {
            if (is_hot[j])
                h->hot[l][nh++] = (int32_t)j;
            else
                cold[nc++] = (int32_t)j;
        }
        h->hot_count[l] = nh;
        h->max_hot = nh > h->max_hot ? nh : h->max_hot;
        h->hot_bytes += (uint64_t)nh * plan_neuron_bytes_layer(m, l);
        for (uint32_t s = 0; s < n_shards; s++) {
            uint32_t b = nc * s / n_shards, e = nc * (s + 1) / n_shards;
            CHECK(h->cold[s][l] = malloc((e - b ? e - b : 1) * sizeof(int32_t)), "oom");
            memcpy(h->cold[s][l], cold + b, (e - b) * sizeof(int32_t));
            h->cold_count[s][l] = e - b;
        }
        free(cold);
    }
    free(perm);
    free(is_hot);
}

static void free_sets(hot_sets *h)
{
    for (uint32_t l = 0; l < 16; l++) {
        free(h->hot[l]);
        for (uint32_t s = 0; s < MAX_SHARDS; s++)
            free(h->cold[s][l]);
    }
}

/* The reference for --ffn predicted: the dense forward of forward.c with
 * each layer's FFN over exactly the logged predicted neurons (ops_ffn_list),
 * teacher-forced with the oracle's tokens; logits into ref [seq][pos][vocab]. */
static void predicted_reference(const pi_model *m, const oracle *o, const pred_log *g, float *ref)
{
    uint32_t dim = m->dim, hd = m->head_dim, kv_dim = m->n_kv_heads * hd, q_dim = m->n_heads * hd;
    uint32_t group = m->n_heads / m->n_kv_heads;
    float *x = malloc(dim * sizeof *x), *xb = malloc(dim * sizeof *xb), *xb2 = malloc(dim * sizeof *xb2);
    float *q = malloc(q_dim * sizeof *q), *att = malloc((size_t)m->n_heads * N_TOK * sizeof *att);
    float *kc = malloc((size_t)m->n_layers * N_TOK * kv_dim * sizeof *kc);
    float *vc = malloc((size_t)m->n_layers * N_TOK * kv_dim * sizeof *vc);
    uint32_t *list = malloc(m->n_ff * sizeof *list);
    CHECK(x && xb && xb2 && q && att && kc && vc && list, "oom");
    for (int s = 0; s < N_SEQ; s++)
        for (uint32_t pos = 0; pos < N_TOK; pos++) {
            pi_dequantize_row(m->tok_embd.type, pi_tensor_row(&m->tok_embd, (uint64_t)o->tok[s][pos]), x, dim);
            for (uint32_t l = 0; l < m->n_layers; l++) {
                const pi_layer *y = &m->layers[l];
                float *lk = kc + (size_t)l * N_TOK * kv_dim, *lv = vc + (size_t)l * N_TOK * kv_dim;
                float *k = lk + (size_t)pos * kv_dim, *v = lv + (size_t)pos * kv_dim;
                ops_rmsnorm(xb, x, y->attn_norm.data, dim, m->norm_eps);
                ops_matvec(q, &y->wq, xb, 0, q_dim);
                ops_matvec(k, &y->wk, xb, 0, kv_dim);
                ops_matvec(v, &y->wv, xb, 0, kv_dim);
                ops_rope(q, q_dim, hd, pos, m->rope_theta);
                ops_rope(k, kv_dim, hd, pos, m->rope_theta);
                for (uint32_t h = 0; h < m->n_heads; h++)
                    ops_attention_head(xb + (size_t)h * hd, q + (size_t)h * hd, lk + (size_t)(h / group) * hd,
                                       lv + (size_t)(h / group) * hd, kv_dim, hd, pos + 1, att + (size_t)h * N_TOK);
                ops_matvec(xb2, &y->wo, xb, 0, dim);
                for (uint32_t i = 0; i < dim; i++)
                    x[i] += xb2[i];
                ops_rmsnorm(xb, x, y->ffn_norm.data, dim, m->norm_eps);
                size_t at = ((size_t)s * N_TOK + pos) * g->n_layers + l;
                for (int32_t i = 0; i < g->count[at]; i++)
                    list[i] = (uint32_t)g->idx[at * g->n_ff + (size_t)i];
                memset(xb2, 0, dim * sizeof *xb2);
                ops_ffn_list(y, m->act, xb, list, (size_t)g->count[at], xb2);
                for (uint32_t i = 0; i < dim; i++)
                    x[i] += xb2[i];
            }
            ops_rmsnorm(x, x, m->output_norm.data, dim, m->norm_eps);
            ops_matvec(ref + ((size_t)s * N_TOK + pos) * m->n_vocab, &m->output, x, 0, m->n_vocab);
        }
    free(x);
    free(xb);
    free(xb2);
    free(q);
    free(att);
    free(kc);
    free(vc);
    free(list);
}

static void run_config_mode(const pi_model *m, const oracle *o, uint32_t k, uint32_t n_shards, const char *name,
                            pi_ffn_mode mode, const hot_sets *hs)
{
    char label[128];
    if (hs)
        snprintf(label, sizeof label, "%s sets<=%u shards=%u %s", name, hs->max_hot, n_shards,
                 pi_ffn_mode_name(mode));
    else
        snprintf(label, sizeof label, "%s K=%u shards=%u %s", name, k, n_shards, pi_ffn_mode_name(mode));
    pi_error err = {{0}};
    /* Dense sums in the reference's order (1e-5); exact and predicted use the
     * vector kernels and several threads, whose sums round differently (1e-4). */
    rig r = {.m = m, .n_shards = n_shards, .tol = mode == PI_FFN_DENSE ? 1e-5 : 1e-4, .mode = mode};
    pred_log g = {.n_layers = m->n_layers, .n_ff = m->n_ff};
    if (mode != PI_FFN_DENSE) {
        const ffn_kernels *kern = ffn_kernels_select(&err);
        CHECK(kern, "%s", err.msg);
        r.pool = ffn_pool_new(2, m->dim, kern, &err);
        CHECK(r.pool, "%s", err.msg);
        CHECK(r.all = malloc(m->n_ff * sizeof *r.all), "oom");
        for (uint32_t j = 0; j < m->n_ff; j++)
            r.all[j] = j;
    }
    if (mode == PI_FFN_PREDICTED) {
        CHECK(r.local = malloc(m->n_ff * sizeof *r.local), "oom");
        for (uint32_t i = 0; i < MAX_BATCH; i++)
            CHECK(r.active[i] = malloc(m->n_ff * sizeof *r.active[i]), "oom");
        size_t rows = (size_t)N_SEQ * N_TOK * m->n_layers;
        CHECK((g.idx = malloc(rows * m->n_ff * sizeof *g.idx)) && (g.count = calloc(rows, sizeof *g.count)), "oom");
        r.log = &g;
    }
    gpu_backend_config cfg = {.n_hot = hs ? hs->max_hot : k, .max_seqs = MAX_SEQS, .n_ctx = N_TOK,
                              .max_batch = MAX_BATCH, .ffn = mode};
    if (hs) {
        cfg.hot = (const int32_t *const *)hs->hot;
        cfg.hot_count = hs->hot_count;
    }
    r.b = gpu_backend_host.create(m, &cfg, &err);
    CHECK(r.b, "%s: %s", label, err.msg);

    /* The backend holds exactly what the plan counts. */
    pi_plan plan;
    plan_params pp = {.max_seqs = MAX_SEQS, .n_ctx = N_TOK, .n_cpu_workers = n_shards};
    CHECK(plan_make_fixed(m, &pp, hs ? m->n_ff : k, &plan, &err) == 0, "%s: %s", label, err.msg);
    uint64_t want = hs ? plan.fixed_bytes + hs->hot_bytes : plan.gpu_bytes;
    CHECK(gpu_backend_host.device_bytes(r.b) == want, "%s: device bytes %llu, plan %llu", label,
          (unsigned long long)gpu_backend_host.device_bytes(r.b), (unsigned long long)want);

    for (uint32_t s = 0; s < n_shards; s++) {
        if (hs)
            r.shards[s] = cpu_shard_new_sets(m, (const int32_t *const *)hs->cold[s], hs->cold_count[s], -1, &err);
        else
            r.shards[s] = cpu_shard_new(m, plan.shards[s].begin, plan.shards[s].end, -1, &err);
        CHECK(r.shards[s], "%s: %s", label, err.msg);
        CHECK(r.partial[s] = malloc((size_t)MAX_BATCH * m->dim * sizeof(float)), "oom");
    }
    CHECK(r.x = malloc((size_t)MAX_BATCH * m->dim * sizeof(float)), "oom");
    CHECK(r.out = malloc((size_t)MAX_BATCH * m->n_vocab * sizeof(float)), "oom");
    float *got = NULL;  /* predicted: the split run's logits [seq][pos][vocab], compared at the end */
    if (mode == PI_FFN_PREDICTED)
        CHECK(got = calloc((size_t)N_SEQ * N_TOK * m->n_vocab, sizeof *got), "oom");

    /* Tokens come from the oracle's greedy runs: entries are teacher-forced. */
    uint32_t next[N_SEQ] = {0, 0}, n, steps = 0;
    gpu_entry e[MAX_BATCH];
    double worst = 0.0;
    while ((n = build_step(steps, next, e)) > 0) {
        for (uint32_t i = 0; i < n; i++)
            e[i].token = o->tok[seq_of(e[i].slot)][e[i].pos];
        for (int rep = 0; rep < (steps == 3 ? 2 : 1); rep++) {  /* a re-run step overwrites its KV rows */
            run_step(&r, e, n);
            if (!got) {
                worst = fmax(worst, compare(&r, o, e, n, label));
                continue;
            }
            for (uint32_t i = 0, row = 0; i < n; i++)
                if (e[i].want_logits)
                    memcpy(got + ((size_t)seq_of(e[i].slot) * N_TOK + e[i].pos) * m->n_vocab,
                           r.out + (size_t)row++ * m->n_vocab, m->n_vocab * sizeof *got);
        }
        steps++;
    }
    CHECK(next[0] == N_TOK && next[1] == N_TOK, "%s: not every position ran", label);
    if (got) {
        float *ref = malloc((size_t)N_SEQ * N_TOK * m->n_vocab * sizeof *ref);
        CHECK(ref, "oom");
        predicted_reference(m, o, &g, ref);
        uint32_t V = m->n_vocab, compared = 0;
        for (int s = 0; s < N_SEQ; s++)
            for (uint32_t pos = 0; pos < N_TOK; pos++) {
                if (pos % 5 == 2)
                    continue;   /* build_step asks no logits there */
                const float *a = got + ((size_t)s * N_TOK + pos) * V, *b = ref + ((size_t)s * N_TOK + pos) * V;
                double dmax = 0.0, bmax = 0.0;
                for (uint32_t v = 0; v < V; v++) {
                    dmax = fmax(dmax, fabs((double)a[v] - b[v]));
                    bmax = fmax(bmax, fabs((double)b[v]));
                }
                CHECK(dmax / bmax <= r.tol, "%s: seq %d pos %u: relative error %.3g vs the predicted reference",
                      label, s, pos, dmax / bmax);
                CHECK(test_argmax(a, V) == test_argmax(b, V), "%s: seq %d pos %u: greedy token %u, reference %u", label, s,
                      pos, test_argmax(a, V), test_argmax(b, V));
                worst = fmax(worst, dmax / bmax);
                compared++;
            }
        for (size_t i = 0; i < (size_t)N_SEQ * N_TOK * m->n_layers; i++)
            g.listed += (uint64_t)g.count[i];
        CHECK(compared > N_TOK && g.listed > 0 && g.listed < (uint64_t)N_SEQ * N_TOK * m->n_layers * m->n_ff,
              "%s: predicted lists are empty or full", label);
        printf("%-40s %3u steps, worst relative error %.2e (%.1f%% of neurons predicted)\n", label, steps, worst,
               100.0 * (double)g.listed / ((double)N_SEQ * N_TOK * m->n_layers * m->n_ff));
        free(ref);
    } else {
        printf("%-40s %3u steps, worst relative error %.2e\n", label, steps, worst);
    }

    for (uint32_t s = 0; s < n_shards; s++) {
        cpu_shard_free(&r.shards[s]);
        free(r.partial[s]);
    }
    for (uint32_t i = 0; i < MAX_BATCH; i++)
        free(r.active[i]);
    free(r.local);
    free(g.idx);
    free(g.count);
    free(got);
    free(r.x);
    free(r.out);
    free(r.all);
    ffn_pool_free(&r.pool);
    gpu_backend_host.destroy(&r.b);
    CHECK(r.b == NULL, "destroy nulls");
}

/* Hot sets per layer, the rest in 1-3 shards: dense, exact (ReLU family) and
 * predicted (models with a predictor). */
static void run_sets(const pi_model *m, const oracle *o, const char *name, uint64_t seed)
{
    for (uint32_t n_shards = 1; n_shards <= 3; n_shards++) {
        hot_sets hs;
        make_sets(m, n_shards, seed + n_shards, &hs);
        run_config_mode(m, o, 0, n_shards, name, PI_FFN_DENSE, &hs);
        if (m->act != PI_ACT_SILU)
            run_config_mode(m, o, 0, n_shards, name, PI_FFN_EXACT, &hs);
        if (m->has_predictor)
            run_config_mode(m, o, 0, n_shards, name, PI_FFN_PREDICTED, &hs);
        free_sets(&hs);
    }
}

static void run_config(const pi_model *m, const oracle *o, uint32_t k, uint32_t n_shards, const char *name)
{
    run_config_mode(m, o, k, n_shards, name, PI_FFN_DENSE, NULL);
    if (m->act != PI_ACT_SILU && k < m->n_ff && n_shards > 0)
        run_config_mode(m, o, k, n_shards, name, PI_FFN_EXACT, NULL);
    if (m->has_predictor && n_shards > 0)
        run_config_mode(m, o, k, n_shards, name, PI_FFN_PREDICTED, NULL);
}

static void run_model(const pi_model *m, const int32_t *start, const char *name)
{
    oracle o;
    make_oracle(m, start, &o);
    uint32_t f = m->n_ff;
    run_config(m, &o, 0, 1, name);
    run_config(m, &o, 0, 3, name);
    run_config(m, &o, f / 3, 1, name);
    run_config(m, &o, f / 4, 2, name);
    run_config(m, &o, f / 3 + 1, 3, name);
    run_config(m, &o, f, 0, name);
    run_config(m, &o, f, 2, name);
    run_sets(m, &o, name, f);
    free(o.logits);
}

static void run_random(pi_type type, pi_act act, uint32_t seed)
{
    char path[512], name[64];
    snprintf(name, sizeof name, "random %s %s", pi_type_name(type), pi_act_name(act));
    snprintf(path, sizeof path, "split_forward_%s_%s.gguf", pi_type_name(type), pi_act_name(act));
    char full[600];
    test_tmp(path, full, sizeof full);
    rand_model_shape sh = {.dim = 64, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2, .n_ff = 96,
                           .n_vocab = 48, .n_ctx = 128, .type = type, .act = act, .seed = seed};
    pi_error err = {{0}};
    CHECK(rand_model_write(full, &sh, &err) == 0, "%s", err.msg);
    pi_model *m = model_open(full, &err);
    CHECK(m, "%s", err.msg);
    int32_t start[N_SEQ] = {1, 7};
    run_model(m, start, name);
    model_close(&m);
    remove(full);
}

/* A synthetic sparse ReLU model (pictl model synth --shape tiny). */
static void run_synth(pi_type type)
{
    char path[512], name[64];
    snprintf(name, sizeof name, "synth tiny %s", pi_type_name(type));
    test_tmp("split_forward_synth.gguf", path, sizeof path);
    synth_options so;
    synth_options_default(&so);
    so.type = type;
    so.n_threads = 1;
    pi_error err = {{0}};
    CHECK(synth_write(path, &so, NULL, NULL, &err) == 0, "%s", err.msg);
    pi_model *m = model_open(path, &err);
    CHECK(m, "%s", err.msg);
    int32_t start[N_SEQ] = {1, 77};
    run_model(m, start, name);
    model_close(&m);
    remove(path);
}

/* src rewritten as PowerInfer's converter writes it: magic PWRI and down
 * only transposed (every blk.N.ffn_down.weight dropped). */
static void strip_down(const char *src, const char *dst)
{
    pi_error err = {{0}};
    gguf_file *f = gguf_open(src, &err);
    CHECK(f, "%s", err.msg);
    gguf_writer *w = gguf_writer_new();
    CHECK(w, "oom");
    for (size_t i = 0; i < gguf_n_kv(f); i++)
        CHECK(gguf_writer_add_kv(w, gguf_kv_at(f, i)) == 0, "copy kv");
    for (size_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        if (strstr(name, ".ffn_down.weight"))
            continue;
        CHECK(gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data) == 0, "copy %s", name);
    }
    CHECK(gguf_writer_write(w, dst, "PWRI", &err) == 0, "%s", err.msg);
    gguf_writer_free(&w);
    gguf_close(&f);
}

/* A PowerInfer-layout file (no ffn_down) computes the same model. */
static void run_powerinfer_layout(pi_type type)
{
    char src[512], dst[512], name[64];
    test_tmp("split_forward_pwri_src.gguf", src, sizeof src);
    test_tmp("split_forward_pwri.gguf", dst, sizeof dst);
    snprintf(name, sizeof name, "powerinfer layout %s", pi_type_name(type));
    synth_options so;
    synth_options_default(&so);
    so.type = type;
    so.n_threads = 1;
    pi_error err = {{0}};
    CHECK(synth_write(src, &so, NULL, NULL, &err) == 0, "%s", err.msg);
    strip_down(src, dst);
    pi_model *a = model_open(src, &err), *b = model_open(dst, &err);
    CHECK(a && b, "%s", err.msg);
    CHECK(b->layers[0].ffn_down.data == NULL && b->layers[0].ffn_down_t.data, "%s: down must be absent", name);
    /* PWRI: the predictor reads h; synth's reads xn, and with ffn_norm 1 and
     * threshold 0 both give the same sets up to rounding (logits scale with 1/rms). */
    CHECK(a->pred_input == PI_PRED_INPUT_NORMED && b->pred_input == PI_PRED_INPUT_RESIDUAL,
          "%s: predictor inputs %s / %s", name, pi_pred_input_name(a->pred_input), pi_pred_input_name(b->pred_input));
    /* The reference forward from ffn_down_t equals the one from ffn_down. */
    forward_state *fa = forward_new(a, 16, &err), *fb = forward_new(b, 16, &err);
    CHECK(fa && fb, "%s", err.msg);
    int32_t tok = 1;
    for (uint32_t p = 0; p < 16; p++) {
        const float *la = forward_token(fa, tok, p), *lb = forward_token(fb, tok, p);
        CHECK(la && lb, "forward");
        double dmax = 0, amax = 0;
        for (uint32_t v = 0; v < a->n_vocab; v++) {
            dmax = fmax(dmax, fabs((double)la[v] - lb[v]));
            amax = fmax(amax, fabs((double)la[v]));
        }
        CHECK(dmax <= 1e-5 * amax, "%s pos %u: relative difference %.3g", name, p, dmax / amax);
        tok = (int32_t)test_argmax(la, a->n_vocab);
    }
    forward_free(&fa);
    forward_free(&fb);
    int32_t start[N_SEQ] = {1, 77};
    run_model(b, start, name);
    model_close(&a);
    model_close(&b);
    remove(src);
    remove(dst);
}

int main(void)
{
    run_powerinfer_layout(PI_TYPE_F16);
    run_powerinfer_layout(PI_TYPE_Q8_0);
    run_synth(PI_TYPE_F16);
    run_synth(PI_TYPE_Q8_0);
    run_random(PI_TYPE_F32, PI_ACT_RELU, 1);
    run_random(PI_TYPE_F32, PI_ACT_SILU, 2);
    run_random(PI_TYPE_F16, PI_ACT_RELU, 3);
    run_random(PI_TYPE_Q8_0, PI_ACT_SILU, 4);
    run_random(PI_TYPE_BF16, PI_ACT_RELU_BOTH, 5);

    char ckpt[512], tok[512], out[512];
    test_shared("models/stories260K.bin", ckpt, sizeof ckpt);
    test_shared("models/tok512.bin", tok, sizeof tok);
    test_tmp("split_forward_stories260K.gguf", out, sizeof out);
    pi_error err = {{0}};
    CHECK(llama2c_import(ckpt, tok, out, PI_TYPE_F32, PI_ACT_SILU, NULL, &err) == 0, "%s", err.msg);
    pi_model *m = model_open(out, &err);
    CHECK(m, "%s", err.msg);
    int32_t start[N_SEQ] = {1, 300};
    run_model(m, start, "stories260K");
    model_close(&m);
    remove(out);

    /* The ReLU variant of stories260K (same weights, ReLU FFN). */
    CHECK(llama2c_import(ckpt, tok, out, PI_TYPE_F32, PI_ACT_RELU, NULL, &err) == 0, "%s", err.msg);
    m = model_open(out, &err);
    CHECK(m, "%s", err.msg);
    run_model(m, start, "stories260K relu");
    model_close(&m);
    remove(out);
    return 0;
}
