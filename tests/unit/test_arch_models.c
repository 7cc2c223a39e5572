/* Tiny qwen2, bamboo, opt and falcon models written with pi's GGUF writer give, in the reference forward and in the split path (host backend's hot neurons + two CPU shards, --ffn dense and exact), logits within 1e-4 of an independent float64 reference (tests/unit/arch_ref.py, numpy, reading the file itself); for the ReLU-family ones the split path's exact logits equal its dense ones; in PowerInfer's (PWRI) files of bamboo, opt and falcon the predictor reads what PowerInfer's graphs feed it (falcon: the layer's input, checked on the host backend's lists); and the CUDA backend refuses what it cannot compute. the host backend holds exactly the plan's GPU bytes. `test_arch_models --write DIR` only writes the models (with a vocabulary; the PowerInfer families also as PWRI files whose predictor names every neuron) for tests/integration/test_arch_models.sh. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "check.h"
#include "ffn_pool.h"
#include "ffn_sparse.h"
#include "forward.h"
#include "gguf.h"
#include "model.h"
#include "plan.h"
#include "predictor.h"
#include "shard.h"
#include "synth_vocab.h"

#define DIM 64
#define N_HEADS 4
#define N_FF 96
#define N_LAYERS 2
#define N_VOCAB 320
#define N_CTX 64
#define N_TOK 20
#define N_SHARDS 2
#define MAX_BATCH 4
#define TOL 1e-4
#define PRED_R 16           /* predictor hidden width */

typedef struct arch_case {
    const char *arch;
    uint32_t n_kv_heads;
    pi_type type;           /* of the 2-D weights */
    int norm_2;             /* falcon 40B: blk.N.attn_norm_2 (ln_attn) beside attn_norm (ln_mlp) */
    int rope_scaled;        /* linear rope scaling (factor 4) and Llama 3's rope_freqs.weight */
} arch_case;

static const arch_case cases[] = {
    {"qwen2", 2, PI_TYPE_F32, 0, 0},   /* GQA, q/k/v biases, NEOX rope */
    {"bamboo", 4, PI_TYPE_F16, 0, 0},  /* dReLU */
    {"opt", 4, PI_TYPE_F32, 0, 0},     /* learned positions, LayerNorm, biases, PowerInfer's ffn_down_t */
    {"falcon", 1, PI_TYPE_F32, 0, 0},  /* 7B's shape: multi-query, fused qkv, parallel blocks, ReLU */
    {"falcon", 2, PI_TYPE_F32, 1, 0},  /* 40B's: grouped kv, attention and MLP normed apart */
    {"llama", 2, PI_TYPE_F32, 0, 1},  /* rope scaling: rope.scaling.factor and rope_freqs.weight */
};

/* ---- writing ---- */

typedef struct writer {
    gguf_writer *w;
    void *keep[256];
    int n_keep;
    uint64_t seed;
    int rc;
} writer;

static float uniform(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xffffff) / (float)0x1000000 * 2.0f - 1.0f;
}

/* rows x cols values base + scale * uniform, as type t (rows 0: a vector). */
static void add(writer *wr, const char *name, pi_type t, uint64_t rows, uint64_t cols, float scale, float base)
{
    size_t rb;
    CHECK(pi_row_bytes(t, cols, &rb) == 0, "row bytes");
    uint64_t r = rows ? rows : 1;
    char *buf = malloc(rb * r);
    float *row = malloc(cols * sizeof *row);
    CHECK(buf && row && wr->n_keep < 256, "oom");
    for (uint64_t i = 0; i < r; i++) {
        for (uint64_t c = 0; c < cols; c++)
            row[c] = base + scale * uniform(&wr->seed);
        pi_quantize_row(t, row, buf + i * rb, cols);
    }
    free(row);
    wr->keep[wr->n_keep++] = buf;
    uint64_t ne[2] = {cols, r};
    wr->rc |= gguf_writer_add_tensor(wr->w, name, t, rows ? 2 : 1, ne, buf);
}

static void key_u32(writer *wr, const char *arch, const char *k, uint32_t v)
{
    char key[96];
    snprintf(key, sizeof key, "%s.%s", arch, k);
    wr->rc |= gguf_writer_add_u32(wr->w, key, v);
}

/* with_pred: PowerInfer's form, magic PWRI and a predictor (fc1/fc2) per
 * layer; PRED_ALL also sets powerinfer.sparse_threshold so low that every
 * neuron is predicted active (then --ffn predicted computes what exact does). */
#define PRED_ALL 2
static void write_model_as(const char *path, const arch_case *c, int with_vocab, int with_pred)
{
    pi_error err = {{0}};
    writer wr = {.w = gguf_writer_new(), .seed = 12345 + strlen(c->arch) * 7919};
    CHECK(wr.w, "oom");
    const char *a = c->arch;
    int opt = !strcmp(a, "opt"), falcon = !strcmp(a, "falcon"), layer_norm = opt || falcon;
    uint32_t hd = DIM / N_HEADS, kv = c->n_kv_heads * hd;
    wr.rc |= gguf_writer_add_str(wr.w, "general.architecture", a);
    key_u32(&wr, a, "context_length", N_CTX);
    key_u32(&wr, a, "embedding_length", DIM);
    key_u32(&wr, a, "block_count", N_LAYERS);
    key_u32(&wr, a, "feed_forward_length", N_FF);
    key_u32(&wr, a, "attention.head_count", N_HEADS);
    key_u32(&wr, a, "attention.head_count_kv", c->n_kv_heads);
    char key[96];
    snprintf(key, sizeof key, "%s.%s", a, layer_norm ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon");
    wr.rc |= gguf_writer_add_f32(wr.w, key, 1e-5f);
    if (!strcmp(a, "qwen2")) {
        snprintf(key, sizeof key, "%s.rope.freq_base", a);
        wr.rc |= gguf_writer_add_f32(wr.w, key, 1000000.0f);
    }
    if (c->rope_scaled) {
        snprintf(key, sizeof key, "%s.rope.scaling.type", a);
        wr.rc |= gguf_writer_add_str(wr.w, key, "linear");
        snprintf(key, sizeof key, "%s.rope.scaling.factor", a);
        wr.rc |= gguf_writer_add_f32(wr.w, key, 4.0f);
    }
    if (with_pred == PRED_ALL)
        wr.rc |= gguf_writer_add_f32(wr.w, "powerinfer.sparse_threshold", -1e30f);
    if (falcon)   /* ReLU Falcon without a predictor says so */
        wr.rc |= gguf_writer_add_str(wr.w, "pi.ffn_activation", "relu_single");
    if (with_vocab && synth_vocab_add(wr.w, N_VOCAB, &err) < 0)
        CHECK(0, "%s", err.msg);
    pi_type t = c->type;
    float ws = 1.0f / sqrtf((float)DIM), fs = 1.0f / sqrtf((float)N_FF);
    /* OPT reads its output through the embedding: small, so the text varies */
    add(&wr, "token_embd.weight", t, N_VOCAB, DIM, opt ? 0.2f : 1.0f, 0.0f);
    if (opt)
        add(&wr, "position_embd.weight", t, N_CTX + 2, DIM, 0.5f, 0.0f);
    add(&wr, "output_norm.weight", PI_TYPE_F32, 0, DIM, 0.1f, 1.0f);
    if (c->rope_scaled)     /* divisors of the pair frequencies, around 2 */
        add(&wr, "rope_freqs.weight", PI_TYPE_F32, 0, hd / 2, 0.5f, 2.0f);
    if (layer_norm)
        add(&wr, "output_norm.bias", PI_TYPE_F32, 0, DIM, 0.1f, 0.0f);
    if (!opt)   /* OPT ties its output to the embedding */
        add(&wr, "output.weight", t, N_VOCAB, DIM, ws, 0.0f);
    for (uint32_t l = 0; l < N_LAYERS; l++) {
        char n[64];
#define L(suffix) (snprintf(n, sizeof n, "blk.%u.%s", l, suffix), n)
        add(&wr, L("attn_norm.weight"), PI_TYPE_F32, 0, DIM, 0.1f, 1.0f);
        if (layer_norm)
            add(&wr, L("attn_norm.bias"), PI_TYPE_F32, 0, DIM, 0.1f, 0.0f);
        if (c->norm_2) {
            add(&wr, L("attn_norm_2.weight"), PI_TYPE_F32, 0, DIM, 0.1f, 1.0f);
            add(&wr, L("attn_norm_2.bias"), PI_TYPE_F32, 0, DIM, 0.1f, 0.0f);
        }
        if (falcon) {
            add(&wr, L("attn_qkv.weight"), t, DIM + 2 * kv, DIM, ws, 0.0f);
        } else {
            add(&wr, L("attn_q.weight"), t, DIM, DIM, ws, 0.0f);
            add(&wr, L("attn_k.weight"), t, kv, DIM, ws, 0.0f);
            add(&wr, L("attn_v.weight"), t, kv, DIM, ws, 0.0f);
        }
        if (opt || !strcmp(a, "qwen2")) {
            add(&wr, L("attn_q.bias"), PI_TYPE_F32, 0, DIM, 0.2f, 0.0f);
            add(&wr, L("attn_k.bias"), PI_TYPE_F32, 0, kv, 0.2f, 0.0f);
            add(&wr, L("attn_v.bias"), PI_TYPE_F32, 0, kv, 0.2f, 0.0f);
        }
        add(&wr, L("attn_output.weight"), t, DIM, DIM, ws, 0.0f);
        if (opt)
            add(&wr, L("attn_output.bias"), PI_TYPE_F32, 0, DIM, 0.1f, 0.0f);
        if (!falcon) {
            add(&wr, L("ffn_norm.weight"), PI_TYPE_F32, 0, DIM, 0.1f, 1.0f);
            if (opt)
                add(&wr, L("ffn_norm.bias"), PI_TYPE_F32, 0, DIM, 0.1f, 0.0f);
        }
        if (!opt && !falcon)
            add(&wr, L("ffn_gate.weight"), t, N_FF, DIM, ws, 0.0f);
        add(&wr, L("ffn_up.weight"), t, N_FF, DIM, ws, 0.0f);
        if (opt) {
            add(&wr, L("ffn_up.bias"), PI_TYPE_F32, 0, N_FF, 0.2f, 0.0f);
            /* PowerInfer's layout: fc2 transposed, its bias beside it */
            add(&wr, L("ffn_down_t.weight"), t, N_FF, DIM, fs, 0.0f);
            add(&wr, L("ffn_down_t.bias"), PI_TYPE_F32, 0, DIM, 0.1f, 0.0f);
        } else {
            add(&wr, L("ffn_down.weight"), t, DIM, N_FF, fs, 0.0f);
        }
        if (with_pred) {
            add(&wr, L("fc1.weight"), PI_TYPE_F32, PRED_R, DIM, ws, 0.0f);
            add(&wr, L("fc2.weight"), PI_TYPE_F32, N_FF, PRED_R, 0.5f, 0.0f);
        }
#undef L
    }
    CHECK(wr.rc == 0, "building %s", path);
    CHECK(gguf_writer_write(wr.w, path, with_pred ? "PWRI" : "GGUF", &err) == 0, "%s", err.msg);
    gguf_writer_free(&wr.w);
    for (int i = 0; i < wr.n_keep; i++)
        free(wr.keep[i]);
}

static void write_model(const char *path, const arch_case *c, int with_vocab)
{
    write_model_as(path, c, with_vocab, 0);
}

/* ---- the paths under test ---- */

static void tokens(int32_t *tok)
{
    uint64_t s = 99;
    for (int i = 0; i < N_TOK; i++)
        tok[i] = (int32_t)((uniform(&s) * 0.5f + 0.5f) * (N_VOCAB - 1));
}

/* Counts the FFN activations that are exactly 0: what --ffn exact skips. */
typedef struct zeros {
    uint64_t zero, all;
} zeros;

static void count_zeros(void *ud, uint32_t layer, const float *x_norm, const float *h, uint32_t n_ff)
{
    zeros *z = ud;
    (void)layer;
    (void)x_norm;
    for (uint32_t j = 0; j < n_ff; j++)
        z->zero += h[j] == 0.0f;
    z->all += n_ff;
}

/* Relative error of a against the float64 reference row b. */
static double rel_err(const float *a, const double *b)
{
    double dmax = 0.0, bmax = 0.0;
    for (uint32_t v = 0; v < N_VOCAB; v++) {
        dmax = fmax(dmax, fabs((double)a[v] - b[v]));
        bmax = fmax(bmax, fabs(b[v]));
    }
    return dmax / bmax;
}

/* The split path: the host backend holds neurons [0, N_FF/4), two CPU
 * shards the rest, run through one pool (the CPU workers' code), entries fed
 * MAX_BATCH positions per step. logits: N_TOK x N_VOCAB. */
static void split_run(const pi_model *m, const int32_t *tok, pi_ffn_mode mode, float *logits)
{
    pi_error err = {{0}};
    uint32_t n_hot = N_FF / 4, cut = n_hot + (N_FF - n_hot) / 2;
    gpu_backend_config cfg = {.n_hot = n_hot, .max_seqs = 1, .n_ctx = N_CTX, .max_batch = MAX_BATCH, .ffn = mode};
    gpu_backend *b = gpu_backend_host.create(m, &cfg, &err);
    CHECK(b, "%s", err.msg);
    cpu_shard *sh[N_SHARDS] = {cpu_shard_new(m, n_hot, cut, -1, &err), NULL};
    CHECK(sh[0], "%s", err.msg);
    sh[1] = cpu_shard_new(m, cut, N_FF, -1, &err);
    CHECK(sh[1], "%s", err.msg);
    ffn_pool *pool = ffn_pool_new(2, DIM, ffn_kernels_plain(), &err);
    CHECK(pool, "%s", err.msg);
    float *x = calloc(MAX_BATCH * DIM, sizeof *x), *part[N_SHARDS];
    uint32_t all[N_FF];
    for (uint32_t j = 0; j < N_FF; j++)
        all[j] = j;
    for (int s = 0; s < N_SHARDS; s++)
        CHECK((part[s] = calloc(MAX_BATCH * DIM, sizeof(float))) != NULL, "oom");
    CHECK(x, "oom");
    for (uint32_t p0 = 0; p0 < N_TOK; p0 += MAX_BATCH) {
        gpu_entry e[MAX_BATCH];
        uint32_t n = 0;
        for (uint32_t p = p0; p < N_TOK && n < MAX_BATCH; p++)
            e[n++] = (gpu_entry){.slot = 0, .pos = p, .token = tok[p], .want_logits = 1};
        CHECK(gpu_backend_host.embed(b, e, n, &err) == 0, "%s", err.msg);
        for (uint32_t l = 0; l < m->n_layers; l++) {
            CHECK(gpu_backend_host.attn(b, l, e, n, x, &err) == 0, "%s", err.msg);
            CHECK(gpu_backend_host.ffn_hot(b, l, n, &err) == 0, "%s", err.msg);
            for (int s = 0; s < N_SHARDS; s++) {
                ffn_sparse_layer fl;
                cpu_shard_sparse_layer(sh[s], l, &fl);
                for (uint32_t i = 0; i < n; i++) {
                    const float *xi = x + (size_t)i * DIM;
                    float *o = part[s] + (size_t)i * DIM;
                    int rc = mode == PI_FFN_DENSE ? ffn_dense_run(pool, &fl, m->act, xi, all, o, &err)
                                                  : ffn_sparse_run(pool, &fl, m->act, xi, all, fl.n_neurons, o, &err);
                    CHECK(rc == 0, "%s", err.msg);
                }
            }
            CHECK(gpu_backend_host.finish(b, l, n, (const float *const *)part, N_SHARDS, &err) == 0, "%s", err.msg);
        }
        CHECK(gpu_backend_host.logits(b, e, n, logits + (size_t)p0 * N_VOCAB, &err) == 0, "%s", err.msg);
    }
    free(x);
    for (int s = 0; s < N_SHARDS; s++) {
        free(part[s]);
        cpu_shard_free(&sh[s]);
    }
    ffn_pool_free(&pool);
    gpu_backend_host.destroy(&b);
}

/* The float64 reference's logits (arch_ref.py run on the file). */
static double *reference(const char *path, const int32_t *tok)
{
    const char *src = getenv("PI_SRC");
    char cmd[4096], out[1100];
    snprintf(out, sizeof out, "%s.ref.f64", path);
    int n = snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/unit/arch_ref.py %s %s", src ? src : ".", path, out);
    for (int i = 0; i < N_TOK; i++)
        n += snprintf(cmd + n, sizeof cmd - (size_t)n, " %d", tok[i]);
    CHECK(system(cmd) == 0, "the float64 reference failed: %s", cmd);
    double *r = malloc((size_t)N_TOK * N_VOCAB * sizeof *r);
    FILE *f = fopen(out, "rb");
    CHECK(r && f, "reading %s", out);
    CHECK(fread(r, sizeof *r, (size_t)N_TOK * N_VOCAB, f) == (size_t)N_TOK * N_VOCAB, "short %s", out);
    fclose(f);
    remove(out);
    return r;
}

static void check_case(const arch_case *c, const char *dir)
{
    pi_error err = {{0}};
    char path[1024];
    char label[32];
    snprintf(label, sizeof label, "%s%s", c->arch, c->norm_2 ? "-40b" : "");
    snprintf(path, sizeof path, "%s/arch-%s.gguf", dir, label);
    write_model(path, c, 0);
    pi_model *m = model_open(path, &err);
    CHECK(m, "%s", err.msg);
    int32_t tok[N_TOK];
    tokens(tok);
    double *ref = reference(path, tok);

    /* the reference forward */
    forward_state *f = forward_new(m, N_CTX, &err);
    CHECK(f, "%s", err.msg);
    zeros z = {0, 0};
    forward_set_ffn_observer(f, count_zeros, &z);
    double worst_fwd = 0.0;
    for (uint32_t p = 0; p < N_TOK; p++) {
        const float *lg = forward_token(f, tok[p], p);
        CHECK(lg, "forward_token %u", p);
        double e = rel_err(lg, ref + (size_t)p * N_VOCAB);
        CHECK(e <= TOL, "%s: reference forward, pos %u: relative error %.3g > %.0e", c->arch, p, e, TOL);
        worst_fwd = fmax(worst_fwd, e);
    }
    forward_free(&f);

    /* the host backend holds exactly the plan's GPU bytes, biases and positions included */
    plan_params pp = {.max_seqs = 1, .n_ctx = N_CTX, .n_cpu_workers = N_SHARDS};
    pi_plan plan;
    CHECK(plan_make_fixed(m, &pp, N_FF / 4, &plan, &err) == 0, "%s", err.msg);
    gpu_backend_config pcfg = {.n_hot = plan.n_hot, .max_seqs = 1, .n_ctx = N_CTX, .max_batch = MAX_BATCH};
    gpu_backend *pb = gpu_backend_host.create(m, &pcfg, &err);
    CHECK(pb, "%s", err.msg);
    CHECK(gpu_backend_host.device_bytes(pb) == plan.gpu_bytes, "%s: host backend holds %llu bytes, the plan %llu",
          c->arch, (unsigned long long)gpu_backend_host.device_bytes(pb), (unsigned long long)plan.gpu_bytes);
    gpu_backend_host.destroy(&pb);
    plan_release(&plan);

    /* the split path, dense and exact */
    float *dense = malloc((size_t)N_TOK * N_VOCAB * sizeof *dense), *exact = malloc((size_t)N_TOK * N_VOCAB * sizeof *exact);
    CHECK(dense && exact, "oom");
    split_run(m, tok, PI_FFN_DENSE, dense);
    double worst_split = 0.0;
    for (uint32_t p = 0; p < N_TOK; p++) {
        double e = rel_err(dense + (size_t)p * N_VOCAB, ref + (size_t)p * N_VOCAB);
        CHECK(e <= TOL, "%s: split dense, pos %u: relative error %.3g > %.0e", c->arch, p, e, TOL);
        worst_split = fmax(worst_split, e);
    }
    char exact_note[96] = "silu: no exact path";
    if (m->act != PI_ACT_SILU) {
        CHECK(z.zero > z.all / 5, "%s: only %llu of %llu activations are 0: exact would skip too little to test",
              c->arch, (unsigned long long)z.zero, (unsigned long long)z.all);
        split_run(m, tok, PI_FFN_EXACT, exact);
        for (size_t i = 0; i < (size_t)N_TOK * N_VOCAB; i++)
            CHECK(exact[i] == dense[i], "%s: split exact logit %zu = %.9g != dense %.9g", c->arch, i, exact[i], dense[i]);
        snprintf(exact_note, sizeof exact_note, "exact == dense (%.0f%% of activations are 0)",
                 100.0 * (double)z.zero / (double)z.all);
    }
    /* what the CUDA backend refuses: everything but bamboo (llama's graph with dReLU) and llama with rope
     * scaling (test_cuda_backend compares that one with the reference) */
    const char *beyond = model_beyond_llama(m);
    CHECK(!beyond == (!strcmp(c->arch, "bamboo") || c->rope_scaled), "%s: model_beyond_llama says %s", c->arch,
          beyond ? beyond : "nothing");
#ifdef PI_HAVE_CUDA
    if (pi_cuda_device_count() > 0) {
        gpu_backend_config cfg = {.n_hot = N_FF, .max_seqs = 1, .n_ctx = N_CTX, .max_batch = MAX_BATCH};
        gpu_backend *cb = gpu_backend_cuda.create(m, &cfg, &err);
        if (model_beyond_llama(m))
            CHECK(!cb && strstr(err.msg, m->arch) && strstr(err.msg, "--gpu-backend host"),
                  "%s: the CUDA backend should refuse: %s", c->arch, cb ? "it did not" : err.msg);
        else if (cb)
            gpu_backend_cuda.destroy(&cb);
    }
#endif
    printf("%-10s act %-11s max rel err vs float64: forward %.2e, split dense %.2e; %s; cuda: %s\n", label,
           pi_act_name(m->act), worst_fwd, worst_split, exact_note, beyond ? beyond : "runs it");
    free(dense);
    free(exact);
    free(ref);
    model_close(&m);
    remove(path);
}

/* PowerInfer's files of each family: the predictor reads what its graph
 * feeds it (bamboo, opt: the residual before ffn_norm; falcon: the layer's
 * input). For falcon, layer 0's input is the token's embedding, so the host
 * backend's predicted lists there must be predictor_active of that row. */
static void check_predictor_input(const arch_case *c, const char *dir)
{
    pi_error err = {{0}};
    char path[1024];
    char label[32];
    snprintf(label, sizeof label, "%s%s", c->arch, c->norm_2 ? "-40b" : "");
    snprintf(path, sizeof path, "%s/arch-%s-pwri.gguf", dir, label);
    write_model_as(path, c, 0, 1);
    pi_model *m = model_open(path, &err);
    CHECK(m, "%s", err.msg);
    pi_pred_input want = m->parallel ? PI_PRED_INPUT_LAYER : PI_PRED_INPUT_RESIDUAL;
    CHECK(m->has_predictor && m->pred_input == want, "%s PWRI: predictor input %s, want %s", c->arch,
          pi_pred_input_name(m->pred_input), pi_pred_input_name(want));
    if (m->parallel) {
        gpu_backend_config cfg = {.n_hot = N_FF, .max_seqs = 1, .n_ctx = N_CTX, .max_batch = 2, .ffn = PI_FFN_PREDICTED};
        gpu_backend *b = gpu_backend_host.create(m, &cfg, &err);
        CHECK(b, "%s", err.msg);
        gpu_entry e[2] = {{.slot = 0, .pos = 0, .token = 7}, {.slot = 0, .pos = 1, .token = 200}};
        float x[2 * DIM], emb[DIM], hidden[PRED_R];
        int32_t got0[N_FF], got1[N_FF], want_l[N_FF], counts[2];
        int32_t *lists[2] = {got0, got1};
        CHECK(gpu_backend_host.embed(b, e, 2, &err) == 0 && gpu_backend_host.attn(b, 0, e, 2, x, &err) == 0 &&
              gpu_backend_host.predict(b, 0, 2, lists, counts, &err) == 0, "%s", err.msg);
        for (int i = 0; i < 2; i++) {
            pi_dequantize_row(m->tok_embd.type, pi_tensor_row(&m->tok_embd, (uint64_t)e[i].token), emb, DIM);
            uint32_t n = predictor_active(&m->layers[0], m->sparse_threshold, emb, hidden, want_l);
            CHECK(n == (uint32_t)counts[i] && !memcmp(want_l, lists[i], n * sizeof *want_l),
                  "falcon: layer 0 predicted %d neurons for entry %d, the embedding row gives %u", counts[i], i, n);
            CHECK(n > 0 && n < N_FF, "falcon: the predictor names %u of %u neurons: too few or many to tell", n, N_FF);
        }
        gpu_backend_host.destroy(&b);
    }
    printf("%s PWRI: the predictor reads %s%s\n", label, pi_pred_input_name(m->pred_input),
           m->parallel ? " (layer 0's lists = the predictor on the embedding row)" : "");
    model_close(&m);
    remove(path);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--write")) {
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            char path[1024];
            snprintf(path, sizeof path, "%s/arch-%s%s.gguf", argv[2], cases[i].arch, cases[i].norm_2 ? "-40b" : "");
            write_model(path, &cases[i], 1);
            printf("%s\n", path);
            if (strcmp(cases[i].arch, "qwen2")) {
                snprintf(path, sizeof path, "%s/arch-%s%s-pwri.gguf", argv[2], cases[i].arch,
                         cases[i].norm_2 ? "-40b" : "");
                write_model_as(path, &cases[i], 1, PRED_ALL);
                printf("%s\n", path);
            }
        }
        return 0;
    }
    /* The GPU machine's /usr/bin/python3 has no numpy (its PyTorch python is another one). */
    if (access("/usr/bin/python3", X_OK) != 0 || system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") != 0) {
        printf("SKIP: /usr/bin/python3 with numpy runs the float64 reference and is missing "
               "(Debian: python3-numpy; scripts/setup.sh installs it)\n");
        return 77;
    }
    const char *tmp = getenv("PI_TMP");
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tmp ? tmp : "/tmp");
    mkdir(dir, 0755);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case(&cases[i], dir);
    for (size_t i = 1; i < sizeof cases / sizeof cases[0]; i++)   /* PowerInfer's families */
        check_predictor_input(&cases[i], dir);
    return 0;
}
