/* The split forward (host backend's hot neurons + N cold CPU shards, entries of two sequences mixed in batches) gives the reference forward's logits and greedy tokens at every position, in --ffn dense (plain kernels) and, for ReLU-family models, --ffn exact (fast kernels skipping neurons whose gate is <= 0, within 1e-4). */
#include <math.h>
#include <string.h>

#include "backend.h"
#include "check.h"
#include "ffn_cold.h"
#include "ffn_pool.h"
#include "forward.h"
#include "llama2c.h"
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

static uint32_t argmax(const float *x, uint32_t n)
{
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* Greedy continuation of each start token by the reference forward. */
static void make_oracle(const pi_model *m, const int32_t *start, oracle *o)
{
    pi_error err = {{0}};
    o->logits = malloc((size_t)N_SEQ * N_TOK * m->n_vocab * sizeof(float));
    CHECK(o->logits, "oom");
    for (int s = 0; s < N_SEQ; s++) {
        forward_state *f = forward_new(m, N_TOK, &err);
        CHECK(f, "%s", err.msg);
        o->tok[s][0] = start[s];
        for (uint32_t p = 0; p < N_TOK; p++) {
            const float *lg = forward_token(f, o->tok[s][p], p);
            CHECK(lg, "forward_token");
            memcpy(o->logits + ((size_t)s * N_TOK + p) * m->n_vocab, lg, m->n_vocab * sizeof(float));
            o->tok[s][p + 1] = (int32_t)argmax(lg, m->n_vocab);
        }
        forward_free(&f);
    }
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

typedef struct rig {
    const pi_model *m;
    gpu_backend *b;
    cpu_shard *shards[MAX_SHARDS];
    uint32_t n_shards;
    float *x, *partial[MAX_SHARDS], *out;
    ffn_pool *pool;             /* exact mode: the CPU worker's fast path */
    uint32_t *all;              /* 0..n_ff-1 */
    double tol;
} rig;

static void run_step(rig *r, const gpu_entry *e, uint32_t n)
{
    pi_error err = {{0}};
    const gpu_backend_ops *ops = &gpu_backend_host;
    CHECK(ops->embed(r->b, e, n, &err) == 0, "%s", err.msg);
    for (uint32_t l = 0; l < r->m->n_layers; l++) {
        CHECK(ops->attn(r->b, l, e, n, r->x, &err) == 0, "%s", err.msg);
        CHECK(ops->ffn_hot(r->b, l, n, &err) == 0, "%s", err.msg);
        for (uint32_t s = 0; s < r->n_shards; s++) {
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
        CHECK((int32_t)argmax(a, V) == o->tok[s][e[i].pos + 1], "%s: seq %d pos %u: greedy token %u != %d",
              label, s, e[i].pos, argmax(a, V), o->tok[s][e[i].pos + 1]);
        worst = fmax(worst, rel);
    }
    return worst;
}

static void run_config_mode(const pi_model *m, const oracle *o, uint32_t k, uint32_t n_shards, const char *name,
                            pi_ffn_mode mode)
{
    char label[128];
    snprintf(label, sizeof label, "%s K=%u shards=%u %s", name, k, n_shards, pi_ffn_mode_name(mode));
    pi_error err = {{0}};
    /* Dense sums in the reference's order (1e-5); exact uses the vector
     * kernels and several threads, whose sums round differently (1e-4). */
    rig r = {.m = m, .n_shards = n_shards, .tol = mode == PI_FFN_EXACT ? 1e-4 : 1e-5};
    if (mode == PI_FFN_EXACT) {
        const ffn_kernels *kern = ffn_kernels_select(&err);
        CHECK(kern, "%s", err.msg);
        r.pool = ffn_pool_new(2, m->dim, kern, &err);
        CHECK(r.pool, "%s", err.msg);
        CHECK(r.all = malloc(m->n_ff * sizeof *r.all), "oom");
        for (uint32_t j = 0; j < m->n_ff; j++)
            r.all[j] = j;
    }
    gpu_backend_config cfg = {.n_hot = k, .max_seqs = MAX_SEQS, .n_ctx = N_TOK, .max_batch = MAX_BATCH,
                              .ffn = mode};
    r.b = gpu_backend_host.create(m, &cfg, &err);
    CHECK(r.b, "%s: %s", label, err.msg);

    /* The backend holds exactly what the plan counts. */
    pi_plan plan;
    plan_params pp = {.max_seqs = MAX_SEQS, .n_ctx = N_TOK, .n_cpu_workers = n_shards};
    CHECK(plan_make_fixed(m, &pp, k, &plan, &err) == 0, "%s: %s", label, err.msg);
    CHECK(gpu_backend_host.device_bytes(r.b) == plan.gpu_bytes, "%s: device bytes %llu, plan %llu", label,
          (unsigned long long)gpu_backend_host.device_bytes(r.b), (unsigned long long)plan.gpu_bytes);

    for (uint32_t s = 0; s < n_shards; s++) {
        r.shards[s] = cpu_shard_new(m, plan.shards[s].begin, plan.shards[s].end, -1, &err);
        CHECK(r.shards[s], "%s: %s", label, err.msg);
        CHECK(r.partial[s] = malloc((size_t)MAX_BATCH * m->dim * sizeof(float)), "oom");
    }
    CHECK(r.x = malloc((size_t)MAX_BATCH * m->dim * sizeof(float)), "oom");
    CHECK(r.out = malloc((size_t)MAX_BATCH * m->n_vocab * sizeof(float)), "oom");

    /* Tokens come from the oracle's greedy runs: entries are teacher-forced. */
    uint32_t next[N_SEQ] = {0, 0}, n, steps = 0;
    gpu_entry e[MAX_BATCH];
    double worst = 0.0;
    while ((n = build_step(steps, next, e)) > 0) {
        for (uint32_t i = 0; i < n; i++)
            e[i].token = o->tok[e[i].slot == seq_slot[0] ? 0 : 1][e[i].pos];
        run_step(&r, e, n);
        worst = fmax(worst, compare(&r, o, e, n, label));
        if (steps == 3) {   /* a re-run step overwrites its KV rows: same outputs */
            run_step(&r, e, n);
            worst = fmax(worst, compare(&r, o, e, n, label));
        }
        steps++;
    }
    CHECK(next[0] == N_TOK && next[1] == N_TOK, "%s: not every position ran", label);
    printf("%-40s %3u steps, worst relative error %.2e\n", label, steps, worst);

    for (uint32_t s = 0; s < n_shards; s++) {
        cpu_shard_free(&r.shards[s]);
        free(r.partial[s]);
    }
    free(r.x);
    free(r.out);
    free(r.all);
    ffn_pool_free(&r.pool);
    gpu_backend_host.destroy(&r.b);
    CHECK(r.b == NULL, "destroy nulls");
}

static void run_config(const pi_model *m, const oracle *o, uint32_t k, uint32_t n_shards, const char *name)
{
    run_config_mode(m, o, k, n_shards, name, PI_FFN_DENSE);
    if (m->act != PI_ACT_SILU && k < m->n_ff && n_shards > 0)
        run_config_mode(m, o, k, n_shards, name, PI_FFN_EXACT);
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

int main(void)
{
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
