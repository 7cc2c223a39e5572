/* Proves the CUDA backend computes the same model as the reference forward and the host backend, with weights kept in the model's types (stories260K f32 SiLU, synthetic f16/q8_0/q4_0 ReLU, random bf16 relu_both, random K-quant models: Q4_K_M-like q4_K with q6_K ffn_down, output and attn_v and a predictor, q6_K, q5_K; a random model with rope scaling, which the reference without it or with either part wrong misses by more than 10x the tolerance): uniform and per-layer hot sets (cold part added on the CPU), dense/exact ffn_hot, ffn_hot_active on predictor lists (copied, read in place from a mapped segment, or the device's own from predict) against the host backend, the predict op's lists equal to the host predictor's (but for logits within 1e-4 of the threshold) written zero-copy or copied, also with the predictor converted to q8_0 (--predictor-type q8_0), batches of 1..13 entries, device_bytes' weights part equal to the plan's count (+ predictors) and the whole within the plan's reservation; run_step (the device-driven step through a real step segment, a thread as the CPU worker) against the reference and the layer-by-layer path; a 13B-width model (dim 5120, n_ff 13824); a predictor reading the residual before ffn_norm (PowerInfer's files: run_step computes the FFN norm in the predictor's launch) against the layer-by-layer path, with and without that fold; solo steps (run_solo: many entries, every neuron on the device, the rows outside VRAM streamed, cuBLAS products) against the reference; the tiled matrix product for several entries (PI_CUDA_MV_BATCH=1, off by default) against the reference on every model and a 13B-width one. Skips without a GPU. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check.h"
#include "cuda_needs.h"
#include "forward.h"
#include "llama2c.h"
#include "model.h"
#include "ops.h"
#include "plan.h"
#include "pi_proc.h"
#include "pred_quant.h"
#include "predictor.h"
#include "quant.h"
#include "rand_model.h"
#include "synth.h"
#include "seqcount.h"
#include "step_layout.h"
#include "vram_arena.h"

#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <stdatomic.h>
#include <unistd.h>

#ifndef PI_HAVE_CUDA
int main(void)
{
    fprintf(stderr, "SKIP: built without CUDA\n");
    return 77;
}
#else

#include "cuda_vmm.cuh"     /* cuda.h: only where CUDA is */

#define N_POS 100   /* past 64: two attention splits */
#define N_SEQ 2
#define MAX_BATCH 16
/* Both sides accumulate the same dequantized values in fp32, in different
 * orders (warp-strided partial sums vs. a sequential loop), and the CUDA
 * backend keeps K and V in fp16 (relative rounding 4.9e-4 per element):
 * over a handful of layers and a final norm the logits agree to ~1e-4 of
 * their largest magnitude; 2e-3 leaves room and still catches any indexing
 * or dequantization slip (those give errors of order 1). */
#define TOL 2e-3

typedef struct oracle {
    uint32_t n_pos;     /* positions per sequence, <= N_POS */
    int32_t tok[N_SEQ][N_POS + 1];
    float *logits;  /* [seq][pos][n_vocab] */
} oracle;

/* One sequence of the oracle: greedy from its start token. */
typedef struct oracle_job {
    const pi_model *m;
    oracle *o;
    int s;
} oracle_job;

static void *oracle_seq(void *arg)
{
    oracle_job *j = arg;
    const pi_model *m = j->m;
    oracle *o = j->o;
    uint32_t n_pos = o->n_pos;
    int s = j->s;
    pi_error err = {{0}};
    forward_state *f = forward_new(m, n_pos, &err);
    CHECK(f, "forward_new: %s", err.msg);
    for (uint32_t p = 0; p < n_pos; p++) {
        const float *lg = forward_token(f, o->tok[s][p], p);
        CHECK(lg, "forward_token at %u", p);
        memcpy(o->logits + ((size_t)s * n_pos + p) * m->n_vocab, lg, m->n_vocab * sizeof(float));
        o->tok[s][p + 1] = (int32_t)test_argmax(lg, m->n_vocab);
    }
    forward_free(&f);
    return NULL;
}

/* The reference forward's logits and greedy tokens, the sequences in
 * threads of their own (the 13B-width model's reference is the slow part
 * of a device call). */
static void make_oracle(const pi_model *m, oracle *o, uint32_t n_pos)
{
    o->n_pos = n_pos;
    const int32_t start[N_SEQ] = {1, 7};
    CHECK(o->logits = malloc((size_t)N_SEQ * n_pos * m->n_vocab * sizeof(float)), "oom");
    oracle_job jobs[N_SEQ];
    pthread_t th[N_SEQ];
    for (int s = 0; s < N_SEQ; s++) {
        o->tok[s][0] = start[s];
        jobs[s] = (oracle_job){m, o, s};
        CHECK(pthread_create(&th[s], NULL, oracle_seq, &jobs[s]) == 0, "pthread_create");
    }
    for (int s = 0; s < N_SEQ; s++)
        CHECK(pthread_join(th[s], NULL) == 0, "pthread_join");
}

/* Step k: sequence 0 prefills 12 positions in step 0, then both decode one
 * position a step, sequence 1 sometimes pausing or catching up 3 at once, so
 * steps have 1, 2, 4 and 13 entries (every kernel's register grouping). */
static uint32_t build_step(uint32_t k, uint32_t next[N_SEQ], const oracle *o, gpu_entry *e)
{
    uint32_t quota[N_SEQ] = {k == 0 ? 12u : 1u, k % 5 == 4 ? 0u : (k % 7 == 3 ? 3u : 1u)}, n = 0;
    for (int s = 0; s < N_SEQ; s++)
        for (uint32_t q = 0; q < quota[s] && next[s] < o->n_pos && n < MAX_BATCH; q++) {
            uint32_t pos = next[s]++;
            e[n++] = (gpu_entry){.slot = (uint32_t)s, .pos = pos, .token = o->tok[s][pos],
                                 .want_logits = pos % 5 != 2};
        }
    return n;
}

/* Relative error of got against want, and whether the greedy choice agrees
 * (or the oracle's margin between the two choices is within the tolerance). */
static double check_row(const float *got, const float *want, uint32_t V, const char *label, int s, uint32_t pos)
{
    double dmax = 0, wmax = 0;
    for (uint32_t v = 0; v < V; v++) {
        dmax = fmax(dmax, fabs((double)got[v] - want[v]));
        wmax = fmax(wmax, fabs((double)want[v]));
    }
    double rel = dmax / (wmax > 0 ? wmax : 1);
    CHECK(rel <= TOL, "%s: seq %d pos %u: relative logit error %.3g > %.0e", label, s, pos, rel, TOL);
    uint32_t a = test_argmax(got, V), b = test_argmax(want, V);
    CHECK(a == b || (double)want[b] - want[a] <= 2 * TOL * wmax,
          "%s: seq %d pos %u: greedy token %u != %u", label, s, pos, a, b);
    return rel;
}

/* A hot-set configuration: NULL sets = [0, n_hot) in every layer. */
typedef struct hotcfg {
    uint32_t n_hot;
    int32_t **sets;
    uint32_t *count;
    uint32_t *vram;     /* NULL, or per layer: sets[l][0 .. vram[l]) in VRAM, the rest warm */
    uint8_t *is_hot;    /* [layer][n_ff] */
} hotcfg;

static void hot_uniform(const pi_model *m, uint32_t k, hotcfg *h)
{
    memset(h, 0, sizeof *h);
    h->n_hot = k;
    CHECK(h->is_hot = calloc((size_t)m->n_layers * m->n_ff, 1), "oom");
    for (uint32_t l = 0; l < m->n_layers; l++)
        for (uint32_t j = 0; j < k; j++)
            h->is_hot[(size_t)l * m->n_ff + j] = 1;
}

/* Each neuron hot with probability ~frac, drawn per layer (ascending). */
static void hot_random(const pi_model *m, double frac, uint64_t seed, hotcfg *h)
{
    memset(h, 0, sizeof *h);
    CHECK(h->sets = calloc(m->n_layers, sizeof *h->sets), "oom");
    CHECK(h->count = calloc(m->n_layers, sizeof *h->count), "oom");
    CHECK(h->is_hot = calloc((size_t)m->n_layers * m->n_ff, 1), "oom");
    for (uint32_t l = 0; l < m->n_layers; l++) {
        CHECK(h->sets[l] = malloc(m->n_ff * sizeof(int32_t)), "oom");
        for (uint32_t j = 0; j < m->n_ff; j++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            if ((double)(seed >> 11) / 9007199254740992.0 < frac) {
                h->sets[l][h->count[l]++] = (int32_t)j;
                h->is_hot[(size_t)l * m->n_ff + j] = 1;
            }
        }
        if (h->count[l] > h->n_hot)
            h->n_hot = h->count[l];
    }
}

/* Every other neuron of each layer's hot set becomes warm (pinned host
 * memory, read over PCIe): the set is reordered into its VRAM run, then its
 * warm run, both ascending, as the plan orders them. */
static void hot_warm(const pi_model *m, hotcfg *h)
{
    CHECK(h->sets && (h->vram = calloc(m->n_layers, sizeof *h->vram)), "hot_warm: needs hot sets; oom");
    int32_t *tmp = malloc(m->n_ff * sizeof *tmp);
    CHECK(tmp, "oom");
    for (uint32_t l = 0; l < m->n_layers; l++) {
        uint32_t n = h->count[l], v = 0;
        for (uint32_t k = 0; k < n; k += 2)
            tmp[v++] = h->sets[l][k];
        for (uint32_t k = 1, w = v; k < n; k += 2)
            tmp[w++] = h->sets[l][k];
        memcpy(h->sets[l], tmp, n * sizeof *tmp);
        h->vram[l] = v;
    }
    free(tmp);
}

static void hot_free(const pi_model *m, hotcfg *h)
{
    free(h->vram);
    for (uint32_t l = 0; h->sets && l < m->n_layers; l++)
        free(h->sets[l]);
    free(h->sets);
    free(h->count);
    free(h->is_hot);
}

static gpu_backend *make_cuda(const pi_model *m, const hotcfg *h, pi_ffn_mode mode, const char *label)
{
    pi_error err = {{0}};
    gpu_backend_config cfg = {.n_hot = h->n_hot, .hot = (const int32_t *const *)h->sets, .hot_count = h->count,
                              .hot_vram = h->vram, .max_seqs = N_SEQ, .n_ctx = N_POS, .max_batch = MAX_BATCH, .device = 0,
                              .ffn = mode};
    gpu_backend *b = gpu_backend_cuda.create(m, &cfg, &err);
    CHECK(b, "%s: create: %s", label, err.msg);
    /* The weights part is exactly what the plan counts for this placement
     * (plus the predictors for --ffn predicted), and every allocation fits
     * in what the plan reserves for a CUDA GPU with this max_batch. */
    pi_plan plan;
    plan_params pp = {.max_seqs = N_SEQ, .n_ctx = N_POS, .n_cpu_workers = 1, .max_batch = MAX_BATCH,
                      .backend = cuda_needs()};
    CHECK(plan_make_fixed(m, &pp, h->n_hot, &plan, &err) == 0, "%s: plan: %s", label, err.msg);
    uint64_t want = plan.gpu_bytes;
    if (h->sets) {
        want = plan.fixed_bytes;
        for (uint32_t l = 0; l < m->n_layers; l++)
            want += (uint64_t)(h->vram ? h->vram[l] : h->count[l]) * plan_neuron_bytes_layer(m, l);
    }
    uint64_t part, pred, scratch, total = gpu_backend_cuda.device_bytes(b);
    gpu_backend_cuda_bytes(b, &part, &pred, &scratch);
    uint64_t want_pred = mode == PI_FFN_PREDICTED && m->has_predictor ? plan_predictor_bytes(m, 0) : 0;
    CHECK(part == want && pred == want_pred, "%s: device bytes %llu + predictors %llu, plan %llu + %llu", label,
          (unsigned long long)part, (unsigned long long)pred, (unsigned long long)want,
          (unsigned long long)want_pred);
    CHECK(total == part + pred + scratch, "%s: device_bytes %llu is not the sum of its parts", label,
          (unsigned long long)total);
    CHECK(plan.predictor_bytes == plan_predictor_bytes(m, 0) && want_pred <= plan.predictor_bytes &&
          scratch <= plan.scratch_bytes && total <= want + plan.predictor_bytes + plan.scratch_bytes &&
          total <= plan.reserved_bytes,
          "%s: device bytes %llu (scratch %llu) over the plan's reservation %llu (scratch %llu)", label,
          (unsigned long long)total, (unsigned long long)scratch, (unsigned long long)plan.reserved_bytes,
          (unsigned long long)plan.scratch_bytes);
    return b;
}

/* out (n x dim, zeroed here) = the FFN over the listed neurons of layer l
 * that are not hot, for each entry's xn: the CPU workers' share. lists NULL:
 * every cold neuron. */
static void cold_part(const pi_model *m, const hotcfg *h, uint32_t l, const float *xn, uint32_t n,
                      int32_t *const *lists, const int32_t *counts, uint32_t *idx, float *out)
{
    memset(out, 0, (size_t)n * m->dim * sizeof(float));
    const uint8_t *hot = h->is_hot + (size_t)l * m->n_ff;
    for (uint32_t i = 0; i < n; i++) {
        size_t c = 0;
        uint32_t len = lists ? (uint32_t)counts[i] : m->n_ff;
        for (uint32_t k = 0; k < len; k++) {
            uint32_t j = lists ? (uint32_t)lists[i][k] : k;
            if (!hot[j])
                idx[c++] = j;
        }
        ops_ffn_list(&m->layers[l], m->act, xn + (size_t)i * m->dim, idx, c, out + (size_t)i * m->dim);
    }
}

/* Full model on the GPU: hot neurons there (dense or exact), every cold
 * neuron on the CPU, compared with the reference forward. */
static void run_ref(const pi_model *m, const oracle *o, const hotcfg *h, pi_ffn_mode mode, const char *name)
{
    char label[160];
    snprintf(label, sizeof label, "%s %s K=%u %s", name, h->vram ? "hot+warm sets" : h->sets ? "hot sets" : "uniform", h->n_hot,
             pi_ffn_mode_name(mode));
    pi_error err = {{0}};
    gpu_backend *b = make_cuda(m, h, mode, label);
    float *xn = malloc((size_t)MAX_BATCH * m->dim * sizeof(float));
    float *cold = malloc((size_t)MAX_BATCH * m->dim * sizeof(float));
    float *logits = malloc((size_t)MAX_BATCH * m->n_vocab * sizeof(float));
    uint32_t *idx = malloc(m->n_ff * sizeof(uint32_t));
    CHECK(xn && cold && logits && idx, "oom");
    uint32_t next[N_SEQ] = {0, 0}, n, steps = 0, rows_checked = 0;
    gpu_entry e[MAX_BATCH];
    double worst = 0;
    while ((n = build_step(steps, next, o, e)) > 0) {
        CHECK(gpu_backend_cuda.embed(b, e, n, &err) == 0, "%s: embed: %s", label, err.msg);
        for (uint32_t l = 0; l < m->n_layers; l++) {
            CHECK(gpu_backend_cuda.attn(b, l, e, n, xn, &err) == 0, "%s: attn: %s", label, err.msg);
            CHECK(gpu_backend_cuda.ffn_hot(b, l, n, &err) == 0, "%s: ffn_hot: %s", label, err.msg);
            cold_part(m, h, l, xn, n, NULL, NULL, idx, cold);
            const float *parts[1] = {cold};
            CHECK(gpu_backend_cuda.finish(b, l, n, parts, 1, &err) == 0, "%s: finish: %s", label, err.msg);
        }
        CHECK(gpu_backend_cuda.logits(b, e, n, logits, &err) == 0, "%s: logits: %s", label, err.msg);
        uint32_t row = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (!e[i].want_logits)
                continue;
            int s = (int)e[i].slot;
            const float *want = o->logits + ((size_t)s * o->n_pos + e[i].pos) * m->n_vocab;
            worst = fmax(worst, check_row(logits + (size_t)row++ * m->n_vocab, want, m->n_vocab, label, s,
                                          e[i].pos));
            rows_checked++;
        }
        steps++;
    }
    printf("%-44s %3u steps, %3u rows, worst relative error %.2e, device bytes %llu\n", label, steps,
           rows_checked, worst, (unsigned long long)gpu_backend_cuda.device_bytes(b));
    free(xn);
    free(cold);
    free(logits);
    free(idx);
    gpu_backend_cuda.destroy(&b);
    CHECK(b == NULL, "destroy must null the pointer");
}

/* --ffn predicted: the host backend with every neuron hot runs the listed
 * neurons through its ffn_hot_active; the CUDA backend runs the same lists
 * through its ffn_hot_active (its hot part) plus the listed cold neurons on
 * the CPU. Both compute "the FFN over the predicted neurons" over the same
 * lists: the CUDA predict op's when they equal the host predictor's on the
 * host backend's xn (then its ffn_hot_active reads the device's copy; every
 * other step, and when a logit at the threshold made them differ, the
 * host's copy is passed instead, read in place or copied in).
 * in_place: the lists live in a segment registered with map_host (predict
 * writes them there from the device; ffn_hot_active reads them in place). */
static void run_predicted(const pi_model *m, const oracle *o, const hotcfg *h, int in_place, const char *name)
{
    char label[160];
    snprintf(label, sizeof label, "%s %s K=%u predicted%s", name, h->vram ? "hot+warm sets" : h->sets ? "hot sets" : "uniform", h->n_hot,
             in_place ? " (lists in place)" : "");
    pi_error err = {{0}};
    CHECK(m->has_predictor, "%s: the model has no predictor", label);
    gpu_backend *b = make_cuda(m, h, PI_FFN_PREDICTED, label);
    gpu_backend_config hc = {.n_hot = m->n_ff, .max_seqs = N_SEQ, .n_ctx = N_POS, .max_batch = MAX_BATCH,
                             .ffn = PI_FFN_PREDICTED};
    gpu_backend *hb = gpu_backend_host.create(m, &hc, &err);
    CHECK(hb, "%s: host create: %s", label, err.msg);

    /* The lists: one block of memory, page-aligned so it can be registered;
     * lists/counts for predict, hlists/hcounts for the host predictor. */
    size_t seg_bytes = ((size_t)2 * MAX_BATCH * (m->n_ff + 1) * sizeof(int32_t) + 4095) / 4096 * 4096;
    int32_t *seg = aligned_alloc(4096, seg_bytes);
    CHECK(seg, "oom");
    memset(seg, 0, seg_bytes);
    int32_t *counts = seg, *hcounts = seg + MAX_BATCH, *lists[MAX_BATCH], *hlists[MAX_BATCH];
    for (uint32_t i = 0; i < MAX_BATCH; i++) {
        lists[i] = seg + 2 * MAX_BATCH + (size_t)i * m->n_ff;
        hlists[i] = seg + 2 * MAX_BATCH + (size_t)(MAX_BATCH + i) * m->n_ff;
    }
    if (in_place)
        CHECK(gpu_backend_cuda.map_host(b, seg, seg_bytes, &err) == 0, "%s: map_host: %s", label, err.msg);

    uint32_t R = 0;
    for (uint32_t l = 0; l < m->n_layers; l++)
        if (predictor_hidden(&m->layers[l]) > R)
            R = predictor_hidden(&m->layers[l]);
    float *hidden = malloc((R ? R : 1) * sizeof(float));
    float *xn = malloc((size_t)MAX_BATCH * m->dim * sizeof(float));
    float *hxn = malloc((size_t)MAX_BATCH * m->dim * sizeof(float));
    float *cold = malloc((size_t)MAX_BATCH * m->dim * sizeof(float));
    float *logits = malloc((size_t)MAX_BATCH * m->n_vocab * sizeof(float));
    float *hlogits = malloc((size_t)MAX_BATCH * m->n_vocab * sizeof(float));
    uint32_t *idx = malloc(m->n_ff * sizeof(uint32_t));
    CHECK(hidden && xn && hxn && cold && logits && hlogits && idx, "oom");

    uint32_t next[N_SEQ] = {0, 0}, n, steps = 0, own = 0, differ = 0;
    uint64_t listed = 0, hot_listed = 0;
    gpu_entry e[MAX_BATCH];
    double worst = 0;
    while ((n = build_step(steps, next, o, e)) > 0) {
        CHECK(gpu_backend_host.embed(hb, e, n, &err) == 0, "%s: host embed: %s", label, err.msg);
        CHECK(gpu_backend_cuda.embed(b, e, n, &err) == 0, "%s: embed: %s", label, err.msg);
        for (uint32_t l = 0; l < m->n_layers; l++) {
            CHECK(gpu_backend_host.attn(hb, l, e, n, hxn, &err) == 0, "%s: host attn: %s", label, err.msg);
            /* cuda's attn synchronises its stream: last layer's in-place
             * reads of the lists are over before they are rewritten. */
            CHECK(gpu_backend_cuda.attn(b, l, e, n, xn, &err) == 0, "%s: attn: %s", label, err.msg);
            CHECK(gpu_backend_cuda.predict(b, l, n, lists, counts, &err) == 0, "%s: predict: %s", label, err.msg);
            int same = 1;
            for (uint32_t i = 0; i < n; i++) {
                hcounts[i] = (int32_t)predictor_active(&m->layers[l], m->sparse_threshold,
                                                       hxn + (size_t)i * m->dim, hidden, hlists[i]);
                same = same && hcounts[i] == counts[i] &&
                       !memcmp(hlists[i], lists[i], (size_t)counts[i] * sizeof(int32_t));
            }
            own += (uint32_t)same;
            differ += (uint32_t)!same;
            /* odd steps take the host's copy even when equal, so the in-place
             * (mapped) and copied paths of ffn_hot_active run too */
            int dev = same && steps % 2 == 0;
            int32_t *const *use = dev ? lists : hlists;
            const int32_t *use_counts = dev ? counts : hcounts;
            for (uint32_t i = 0; i < n; i++) {
                listed += (uint64_t)use_counts[i];
                for (int32_t k = 0; k < use_counts[i]; k++)
                    hot_listed += h->is_hot[(size_t)l * m->n_ff + (uint32_t)use[i][k]];
            }
            CHECK(gpu_backend_host.ffn_hot_active(hb, l, n, (const int32_t *const *)use, use_counts, &err) == 0,
                  "%s: host ffn_hot_active: %s", label, err.msg);
            CHECK(gpu_backend_host.finish(hb, l, n, NULL, 0, &err) == 0, "%s: host finish: %s", label, err.msg);
            CHECK(gpu_backend_cuda.ffn_hot_active(b, l, n, (const int32_t *const *)use, use_counts, &err) == 0,
                  "%s: ffn_hot_active: %s", label, err.msg);
            cold_part(m, h, l, xn, n, use, use_counts, idx, cold);
            const float *parts[1] = {cold};
            CHECK(gpu_backend_cuda.finish(b, l, n, parts, 1, &err) == 0, "%s: finish: %s", label, err.msg);
        }
        CHECK(gpu_backend_host.logits(hb, e, n, hlogits, &err) == 0, "%s: host logits: %s", label, err.msg);
        CHECK(gpu_backend_cuda.logits(b, e, n, logits, &err) == 0, "%s: logits: %s", label, err.msg);
        uint32_t row = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (!e[i].want_logits)
                continue;
            worst = fmax(worst, check_row(logits + (size_t)row * m->n_vocab, hlogits + (size_t)row * m->n_vocab,
                                          m->n_vocab, label, (int)e[i].slot, e[i].pos));
            row++;
        }
        steps++;
    }
    /* The lists must have exercised both sides of the split. */
    CHECK(listed > 0 && (h->n_hot == 0 || hot_listed > 0), "%s: predictor listed %llu neurons, %llu hot", label,
          (unsigned long long)listed, (unsigned long long)hot_listed);
    /* Lists differ only at the threshold: rarely, never in most layers. */
    CHECK(own > 4 * differ, "%s: predict's lists differ from the host's in %u of %u layer steps", label, differ,
          own + differ);
    printf("%-44s %3u steps, %5.1f%% of neurons listed (%llu hot), worst relative error vs host %.2e; predict's "
           "own lists in %u of %u layer steps\n", label, steps,
           100.0 * (double)listed / ((double)(o->n_pos * N_SEQ) * m->n_layers * m->n_ff),
           (unsigned long long)hot_listed, worst, own, own + differ);
    gpu_backend_cuda.destroy(&b);   /* unregisters seg before it is freed */
    gpu_backend_host.destroy(&hb);
    free(seg);
    free(hidden);
    free(xn);
    free(hxn);
    free(cold);
    free(logits);
    free(hlogits);
    free(idx);
}

/* The predict op against predictor_active on the host over the xn the CUDA
 * backend computed (attn's copy of it): the same ascending lists, except
 * neurons whose logit lies within 1e-4 * max|logit| of the threshold (fc1
 * and fc2 are summed in other orders there: reported, not failed). Steps of
 * 1..13 entries; mapped: the lists in a map_host segment (written there by
 * the device), else in plain memory (copied out). Between layers the hot
 * part over the predicted lists goes into the residual (ffn_hot_active on
 * the device's copy of the lists), so later layers see fresh inputs. */
static void run_predict_lists(const pi_model *m, int mapped, const char *name)
{
    char label[160];
    snprintf(label, sizeof label, "%s predict %s", name, mapped ? "(zero-copy)" : "(copied)");
    pi_error err = {{0}};
    CHECK(m->has_predictor, "%s: the model has no predictor", label);
    hotcfg h;
    hot_uniform(m, m->n_ff / 4, &h);
    gpu_backend *b = make_cuda(m, &h, PI_FFN_PREDICTED, label);
    size_t seg_bytes = ((size_t)MAX_BATCH * (m->n_ff + 1) * sizeof(int32_t) + 4095) / 4096 * 4096;
    int32_t *seg = aligned_alloc(4096, seg_bytes);
    CHECK(seg, "oom");
    int32_t *counts = seg, *lists[MAX_BATCH];
    for (uint32_t i = 0; i < MAX_BATCH; i++)
        lists[i] = seg + MAX_BATCH + (size_t)i * m->n_ff;
    if (mapped)
        CHECK(gpu_backend_cuda.map_host(b, seg, seg_bytes, &err) == 0, "%s: map_host: %s", label, err.msg);
    uint32_t R = 0;
    for (uint32_t l = 0; l < m->n_layers; l++)
        if (predictor_hidden(&m->layers[l]) > R)
            R = predictor_hidden(&m->layers[l]);
    float *hidden = malloc(R * sizeof(float)), *logit = malloc(m->n_ff * sizeof(float));
    float *xn = malloc((size_t)MAX_BATCH * m->dim * sizeof(float));
    int32_t *want = malloc(m->n_ff * sizeof(int32_t));
    CHECK(hidden && logit && xn && want, "oom");

    oracle o = {.n_pos = N_POS, .logits = NULL};
    for (int sq = 0; sq < N_SEQ; sq++)
        for (uint32_t p = 0; p <= N_POS; p++)
            o.tok[sq][p] = (int32_t)((7u * (uint32_t)sq + 13u * p + 1u) % m->n_vocab);
    uint32_t next[N_SEQ] = {0, 0}, n, steps = 0, borderline = 0, sizes = 0;
    uint64_t listed = 0, want_listed = 0;
    gpu_entry e[MAX_BATCH];
    while ((n = build_step(steps, next, &o, e)) > 0) {
        sizes |= 1u << (n > 13 ? 13 : n);
        CHECK(gpu_backend_cuda.embed(b, e, n, &err) == 0, "%s: embed: %s", label, err.msg);
        /* predict reads attn's xn: before it, or for another layer, it refuses */
        CHECK(gpu_backend_cuda.predict(b, 0, n, lists, counts, &err) < 0 && strstr(err.msg, "attn"),
              "%s: predict before attn: '%s'", label, err.msg);
        for (uint32_t l = 0; l < m->n_layers; l++) {
            CHECK(gpu_backend_cuda.attn(b, l, e, n, xn, &err) == 0, "%s: attn: %s", label, err.msg);
            if (l + 1 < m->n_layers)
                CHECK(gpu_backend_cuda.predict(b, l + 1, n, lists, counts, &err) < 0 && strstr(err.msg, "attn"),
                      "%s: predict of another layer: '%s'", label, err.msg);
            /* stale values must be overwritten */
            memset(seg, 0xff, ((size_t)MAX_BATCH + (size_t)n * m->n_ff) * sizeof(int32_t));
            CHECK(gpu_backend_cuda.predict(b, l, n, lists, counts, &err) == 0, "%s: predict: %s", label, err.msg);
            const pi_layer *y = &m->layers[l];
            for (uint32_t i = 0; i < n; i++) {
                const float *x = xn + (size_t)i * m->dim;
                int32_t c = counts[i];
                CHECK(c >= 0 && (uint32_t)c <= m->n_ff, "%s: layer %u entry %u: count %d", label, l, i, c);
                for (int32_t k = 0; k < c; k++)
                    CHECK(lists[i][k] >= 0 && (uint32_t)lists[i][k] < m->n_ff &&
                          (k == 0 || lists[i][k] > lists[i][k - 1]),
                          "%s: layer %u entry %u: list[%d] = %d (out of range or not ascending)", label, l, i, k,
                          lists[i][k]);
                uint32_t wc = predictor_active(y, m->sparse_threshold, x, hidden, want);
                /* the logits themselves, to tell a borderline neuron */
                uint32_t r = predictor_hidden(y);
                ops_matvec(hidden, &y->pred_fc1, x, 0, r);
                for (uint32_t k = 0; k < r; k++)
                    hidden[k] = hidden[k] > 0.0f ? hidden[k] : 0.0f;
                double amax = 0;
                for (uint32_t j = 0; j < m->n_ff; j++) {
                    logit[j] = pi_dot_row(y->pred_fc2.type, pi_tensor_row(&y->pred_fc2, j), hidden, r);
                    amax = fmax(amax, fabs((double)logit[j]));
                }
                uint32_t a = 0, k = 0;
                while (a < (uint32_t)c || k < wc) {
                    int32_t j;
                    if (a < (uint32_t)c && k < wc && lists[i][a] == want[k]) {
                        a++;
                        k++;
                        continue;
                    }
                    if (k >= wc || (a < (uint32_t)c && lists[i][a] < want[k]))
                        j = lists[i][a++];  /* listed by the GPU only */
                    else
                        j = want[k++];      /* by the host only */
                    double gap = fabs((double)logit[j] - m->sparse_threshold);
                    CHECK(gap <= 1e-4 * amax, "%s: step %u layer %u entry %u: neuron %d (logit %.7g, threshold %g, "
                          "max |logit| %.4g) predicted differently", label, steps, l, i, j, logit[j],
                          m->sparse_threshold, amax);
                    if (borderline++ < 3)
                        printf("  %s: borderline neuron %d (layer %u, logit %.7g vs threshold %g)\n", label, j, l,
                               logit[j], m->sparse_threshold);
                }
                listed += (uint64_t)c;
                want_listed += wc;
            }
            CHECK(gpu_backend_cuda.ffn_hot_active(b, l, n, (const int32_t *const *)lists, counts, &err) == 0,
                  "%s: ffn_hot_active: %s", label, err.msg);
            CHECK(gpu_backend_cuda.finish(b, l, n, NULL, 0, &err) == 0, "%s: finish: %s", label, err.msg);
        }
        steps++;
    }
    CHECK(want_listed > 0 && listed > 0, "%s: nothing predicted active", label);
    CHECK((sizes & 0x2016) == 0x2016, "%s: steps of 1, 2, 4 and 13 entries expected (mask %#x)", label, sizes);
    printf("%-44s %3u steps, %llu neurons listed (host %llu), %u borderline\n", label, steps,
           (unsigned long long)listed, (unsigned long long)want_listed, borderline);
    gpu_backend_cuda.destroy(&b);   /* unregisters seg before it is freed */
    hot_free(m, &h);
    free(seg);
    free(hidden);
    free(logit);
    free(xn);
    free(want);
}

/* Bad configurations fail with a message instead of computing garbage. */
static void run_rejects(const pi_model *m)
{
    pi_error err = {{0}};
    gpu_backend_config cfg = {.n_hot = 4, .max_seqs = 1, .n_ctx = 8, .max_batch = 65};
    CHECK(!gpu_backend_cuda.create(m, &cfg, &err) && strstr(err.msg, "max_batch"), "max_batch 65: %s", err.msg);
    int32_t bad[2] = {3, 2};
    const int32_t *sets[64];
    uint32_t counts[64];
    for (uint32_t l = 0; l < m->n_layers && l < 64; l++) {
        sets[l] = bad;
        counts[l] = 2;
    }
    cfg.max_batch = 4;
    cfg.hot = sets;
    cfg.hot_count = counts;
    CHECK(!gpu_backend_cuda.create(m, &cfg, &err) && strstr(err.msg, "ascending"), "descending set: %s", err.msg);
    /* No predictor held (SiLU model, dense): predict refuses. */
    cfg.hot = NULL;
    cfg.hot_count = NULL;
    gpu_backend *b = gpu_backend_cuda.create(m, &cfg, &err);
    CHECK(b, "create: %s", err.msg);
    int32_t c[1], l0[1], *ls[1] = {l0};
    CHECK(gpu_backend_cuda.predict(b, 0, 1, ls, c, &err) < 0 && strstr(err.msg, "no predictor"),
          "predict without a predictor: '%s'", err.msg);
    gpu_backend_cuda.destroy(&b);
}

/* ---- run_step: the device drives the step through a real step segment,
 * a thread plays the CPU worker (waits for each layer tick, computes the
 * cold neurons of the xn (and, predicted, the lists) the device wrote into
 * the segment, publishes its done counter). */
typedef struct dev_seg {
    void *base;
    step_layout lay;
    gpu_step_links links;
    const uint32_t *done_word;
    const float *partial;
    int32_t *active[MAX_BATCH];
} dev_seg;

typedef struct cpu_peer {
    const pi_model *m;
    const hotcfg *h;
    dev_seg *d;
    uint64_t step_no;
    uint32_t n;
    int predicted;
    uint32_t *idx;
    float *xn;
} cpu_peer;

static void *cpu_peer_run(void *arg)
{
    cpu_peer *c = arg;
    const pi_model *m = c->m;
    seq_counter *tick = step_layer_seq(c->d->base, &c->d->lay), *done = step_done_seq(c->d->base, &c->d->lay, 0);
    seq_wait_opts wo = seq_wait_opts_default();
    wo.spin_iters = SEQ_SPIN_FOREVER;
    float *part = step_partial(c->d->base, &c->d->lay, 0);
    for (uint32_t l = 0; l < m->n_layers; l++) {
        uint32_t t = step_tick(c->step_no, m->n_layers, l);
        if (seq_wait_geq(tick, t, &wo) != 0)
            return NULL;
        memcpy(c->xn, step_x(c->d->base, &c->d->lay), (size_t)c->n * m->dim * sizeof(float));
        cold_part(m, c->h, l, c->xn, c->n, c->predicted ? c->d->active : NULL,
                  c->predicted ? step_active_counts(c->d->base, &c->d->lay) : NULL, c->idx, part);
        seq_publish(done, t);
    }
    return NULL;
}

static void dev_seg_make(const pi_model *m, uint32_t n_cpu, dev_seg *d)
{
    pi_error err = {{0}};
    step_params sp = {.n_layers = m->n_layers, .dim = m->dim, .n_ff = m->n_ff, .n_vocab = m->n_vocab,
                      .max_batch = MAX_BATCH, .n_cpu_workers = n_cpu};
    CHECK(step_layout_compute(&sp, &d->lay, &err) == 0, "%s", err.msg);
    size_t bytes = (d->lay.total_bytes + 4095) / 4096 * 4096;
    CHECK(d->base = aligned_alloc(4096, bytes), "oom");
    memset(d->base, 0, bytes);
    step_header_write(d->base, &d->lay);
    for (uint32_t i = 0; i < MAX_BATCH; i++)
        d->active[i] = step_active_idx(d->base, &d->lay, i);
    d->done_word = n_cpu ? (const uint32_t *)&step_done_seq(d->base, &d->lay, 0)->value : NULL;
    d->partial = n_cpu ? step_partial(d->base, &d->lay, 0) : NULL;
    d->links = (gpu_step_links){.xn = step_x(d->base, &d->lay), .active = d->active,
                                .counts = step_active_counts(d->base, &d->lay),
                                .layer_tick = (uint32_t *)&step_layer_seq(d->base, &d->lay)->value,
                                .abort_word = (const uint32_t *)&step_abort_seq(d->base, &d->lay)->value,
                                .done = &d->done_word, .partials = &d->partial, .n_cpu_workers = n_cpu,
                                .logits = step_logits(d->base, &d->lay)};
}

/* The device-driven steps against want: the reference forward (want_layers
 * 0) or the same backend driven layer by layer (1: predicted, where both
 * run the same kernels in the same order, so they agree to rounding). */
static void run_device(const pi_model *m, const oracle *o, const hotcfg *h, pi_ffn_mode mode, uint32_t n_cpu,
                       const char *name)
{
    char label[160];
    snprintf(label, sizeof label, "%s %s K=%u %s, run_step, %u cpu", name, h->vram ? "hot+warm sets" : h->sets ? "hot sets" : "uniform",
             h->n_hot, pi_ffn_mode_name(mode), n_cpu);
    pi_error err = {{0}};
    int predicted = mode == PI_FFN_PREDICTED;
    gpu_backend *b = make_cuda(m, h, mode, label);
    gpu_backend *ref = predicted ? make_cuda(m, h, mode, label) : NULL;
    dev_seg d;
    dev_seg_make(m, n_cpu, &d);
    CHECK(gpu_backend_cuda.map_host(b, d.base, d.lay.total_bytes, &err) == 0, "%s: map_host: %s", label, err.msg);
    float *xn = malloc((size_t)MAX_BATCH * m->dim * sizeof(float));
    float *cold = malloc((size_t)MAX_BATCH * m->dim * sizeof(float));
    float *want = malloc((size_t)MAX_BATCH * m->n_vocab * sizeof(float));
    int32_t *lists[MAX_BATCH], counts[MAX_BATCH];
    for (uint32_t i = 0; i < MAX_BATCH; i++)
        CHECK(lists[i] = malloc(m->n_ff * sizeof(int32_t)), "oom");
    cpu_peer peer = {.m = m, .h = h, .d = &d, .predicted = predicted};
    CHECK(xn && cold && want && (peer.idx = malloc(m->n_ff * sizeof(uint32_t))) &&
          (peer.xn = malloc((size_t)MAX_BATCH * m->dim * sizeof(float))), "oom");
    uint32_t next[N_SEQ] = {0, 0}, n, steps = 0, rows_checked = 0;
    gpu_entry e[MAX_BATCH];
    double worst = 0;
    while ((n = build_step(steps, next, o, e)) > 0) {
        uint64_t step_no = steps + 1;
        pthread_t th;
        peer.step_no = step_no;
        peer.n = n;
        CHECK(!n_cpu || pthread_create(&th, NULL, cpu_peer_run, &peer) == 0, "pthread_create");
        gpu_step_times tm;
        CHECK(gpu_backend_cuda.run_step(b, &d.links, e, n, step_tick(step_no, m->n_layers, 0), 0, predicted,
                                        steps % 3 == 1 ? &tm : NULL, &err) == 0, "%s: run_step: %s", label, err.msg);
        if (n_cpu)
            CHECK(pthread_join(th, NULL) == 0, "pthread_join");
        if (steps % 3 == 1)
            CHECK(tm.attn > 0 && tm.hot >= 0 && tm.logits >= 0, "%s: timings attn %.1f hot %.1f", label, tm.attn,
                  tm.hot);
        if (predicted) {
            /* the same step layer by layer, lists from predict, cold part on the host */
            CHECK(gpu_backend_cuda.embed(ref, e, n, &err) == 0, "%s: embed: %s", label, err.msg);
            for (uint32_t l = 0; l < m->n_layers; l++) {
                CHECK(gpu_backend_cuda.attn(ref, l, e, n, xn, &err) == 0, "%s: attn: %s", label, err.msg);
                CHECK(gpu_backend_cuda.predict(ref, l, n, lists, counts, &err) == 0, "%s: predict: %s", label,
                      err.msg);
                CHECK(gpu_backend_cuda.ffn_hot_active(ref, l, n, (const int32_t *const *)lists, counts, &err) == 0,
                      "%s: ffn_hot_active: %s", label, err.msg);
                cold_part(m, h, l, xn, n, lists, counts, peer.idx, cold);
                const float *parts[1] = {cold};
                CHECK(gpu_backend_cuda.finish(ref, l, n, parts, n_cpu ? 1 : 0, &err) == 0, "%s: finish: %s",
                      label, err.msg);
            }
            CHECK(gpu_backend_cuda.logits(ref, e, n, want, &err) == 0, "%s: logits: %s", label, err.msg);
        }
        const float *got = step_logits(d.base, &d.lay);
        uint32_t row = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (!e[i].want_logits)
                continue;
            int s = (int)e[i].slot;
            const float *w = predicted ? want + (size_t)row * m->n_vocab
                                       : o->logits + ((size_t)s * o->n_pos + e[i].pos) * m->n_vocab;
            worst = fmax(worst, check_row(got + (size_t)row * m->n_vocab, w, m->n_vocab, label, s, e[i].pos));
            row++;
            rows_checked++;
        }
        steps++;
    }
    printf("%-56s %3u steps, %3u rows, worst relative error %.2e\n", label, steps, rows_checked, worst);
    for (uint32_t i = 0; i < MAX_BATCH; i++)
        free(lists[i]);
    free(xn);
    free(cold);
    free(want);
    free(peer.idx);
    free(peer.xn);
    gpu_backend_cuda.destroy(&b);
    if (ref)
        gpu_backend_cuda.destroy(&ref);
    free(d.base);
}

/* One step (sequence 0, positions 0..3 of the oracle's tokens) through b with
 * every cold neuron on the CPU: the logits of its last entry into out. */
static void kept_step(gpu_backend *b, const pi_model *m, const oracle *o, const hotcfg *h, float *out)
{
    pi_error err = {{0}};
    gpu_entry e[4];
    for (uint32_t i = 0; i < 4; i++)
        e[i] = (gpu_entry){.slot = 0, .pos = i, .token = o->tok[0][i], .want_logits = i == 3};
    float *xn = malloc((size_t)4 * m->dim * sizeof(float)), *cold = malloc((size_t)4 * m->dim * sizeof(float));
    uint32_t *idx = malloc(m->n_ff * sizeof(uint32_t));
    CHECK(xn && cold && idx, "oom");
    CHECK(gpu_backend_cuda.embed(b, e, 4, &err) == 0, "kept: embed: %s", err.msg);
    for (uint32_t l = 0; l < m->n_layers; l++) {
        CHECK(gpu_backend_cuda.attn(b, l, e, 4, xn, &err) == 0, "kept: attn: %s", err.msg);
        CHECK(gpu_backend_cuda.ffn_hot(b, l, 4, &err) == 0, "kept: ffn_hot: %s", err.msg);
        cold_part(m, h, l, xn, 4, NULL, NULL, idx, cold);
        const float *parts[1] = {cold};
        CHECK(gpu_backend_cuda.finish(b, l, 4, parts, 1, &err) == 0, "kept: finish: %s", err.msg);
    }
    CHECK(gpu_backend_cuda.logits(b, e, 4, out, &err) == 0, "kept: logits: %s", err.msg);
    free(xn);
    free(cold);
    free(idx);
}

/* A backend made from kept memory (cfg's kept descriptors): nothing copied
 * in, the logits of kept_step equal to want. */
static gpu_backend *kept_again(const pi_model *m, const oracle *o, const hotcfg *h, const gpu_backend_config *cfg,
                               const float *want, float *got, const char *label)
{
    pi_error err = {{0}};
    gpu_backend *b = gpu_backend_cuda.create(m, cfg, &err);
    CHECK(b, "%s: create from the kept memory: %s", label, err.msg);
    CHECK(gpu_backend_cuda.copied_bytes(b) == 0, "%s: %llu bytes copied in again", label,
          (unsigned long long)gpu_backend_cuda.copied_bytes(b));
    kept_step(b, m, o, h, got);
    CHECK(!memcmp(got, want, m->n_vocab * sizeof(float)), "%s: logits from the kept memory differ", label);
    return b;
}

/* VRAM kept across a restart (vram_arena.h): a backend in an arena hands out
 * a descriptor, is destroyed, and a new one given that descriptor copies
 * nothing in and computes the same logits; a config the arena was not made
 * for (another hot count) loads afresh. */
static void run_kept(const pi_model *m, const oracle *o, const char *name)
{
    hotcfg h;
    hot_random(m, 0.4, 11, &h);
    pi_error err = {{0}};
    gpu_backend_config cfg = {.n_hot = h.n_hot, .hot = (const int32_t *const *)h.sets, .hot_count = h.count,
                              .max_seqs = N_SEQ, .n_ctx = N_POS, .max_batch = MAX_BATCH, .device = 0,
                              .ffn = PI_FFN_DENSE, .kept_fd = -1};
    gpu_backend *plain = gpu_backend_cuda.create(m, &cfg, &err);
    CHECK(plain, "%s kept: create: %s", name, err.msg);
    uint64_t part, pred, scratch;
    gpu_backend_cuda_bytes(plain, &part, &pred, &scratch);
    float *want = malloc(m->n_vocab * sizeof(float)), *got = malloc(m->n_vocab * sizeof(float));
    CHECK(want && got, "oom");
    kept_step(plain, m, o, &h, want);
    gpu_backend_cuda.destroy(&plain);

    cfg.arena_bytes = vram_arena_size(part + pred, m->n_layers);
    gpu_backend *a = gpu_backend_cuda.create(m, &cfg, &err);
    CHECK(a, "%s kept: create in an arena: %s", name, err.msg);
    uint64_t copied_a = gpu_backend_cuda.copied_bytes(a), bytes = 0;
    uint64_t kv = plan_kv_bytes_elem(m, N_SEQ, N_POS, 2);   /* allocated, not copied */
    CHECK(copied_a + kv >= part, "%s kept: %llu bytes copied in, the weights and hot rows are %llu", name,
          (unsigned long long)copied_a, (unsigned long long)(part - kv));
    kept_step(a, m, o, &h, got);
    CHECK(!memcmp(got, want, m->n_vocab * sizeof(float)), "%s kept: the arena changed the logits", name);
    int fd = gpu_backend_cuda.keep_fd(a, &bytes);
    CHECK(fd >= 0 && bytes >= cfg.arena_bytes, "%s kept: keep_fd %d (%llu bytes)", name, fd, (unsigned long long)bytes);
    gpu_backend_cuda.destroy(&a);       /* the worker's exit: only the descriptor holds the memory now */

    cfg.kept_fd = fd;
    cfg.kept_bytes = bytes;
    char label[160];
    snprintf(label, sizeof label, "%s kept", name);
    gpu_backend *b = kept_again(m, o, &h, &cfg, want, got, label);
    int again = gpu_backend_cuda.keep_fd(b, &bytes);   /* an attached arena is handed on too */
    CHECK(again >= 0, "%s kept: the attached backend has no descriptor to hand on", name);
    close(again);
    gpu_backend_cuda.destroy(&b);

    cfg.n_hot = h.n_hot - 1;            /* another config: the manifest does not match */
    cfg.hot = NULL;
    cfg.hot_count = NULL;
    gpu_backend *c = gpu_backend_cuda.create(m, &cfg, &err);
    CHECK(c, "%s kept: create for another config: %s", name, err.msg);
    CHECK(gpu_backend_cuda.copied_bytes(c) > 0, "%s kept: another config took the kept arena as it was", name);
    gpu_backend_cuda.destroy(&c);
    close(fd);
    printf("%-44s kept arena of %llu bytes: %llu copied in first, 0 after the restart, logits equal\n", name,
           (unsigned long long)bytes, (unsigned long long)copied_a);
    free(want);
    free(got);
    hot_free(m, &h);
}

/* The warm rows' host memory kept too (the default; PI_CUDA_KEEP_WARM=1 set anyway, fd_pass WARM):
 * half of each layer's hot set warm; a backend in an arena and a warm memfd
 * hands out both, and a new one given them copies nothing in, fills no warm
 * row and computes the same logits; with the kept warm rows zeroed behind
 * its manifest, a new one computes other logits: it read the kept rows, it
 * did not gather them again. */
static void run_kept_warm(const pi_model *m, const oracle *o, const char *name)
{
    CHECK(setenv("PI_CUDA_KEEP_WARM", "1", 1) == 0, "setenv");
    hotcfg h;
    hot_random(m, 0.4, 12, &h);
    hot_warm(m, &h);
    pi_error err = {{0}};
    gpu_backend_config cfg = {.n_hot = h.n_hot, .hot = (const int32_t *const *)h.sets, .hot_count = h.count,
                              .hot_vram = h.vram, .max_seqs = N_SEQ, .n_ctx = N_POS, .max_batch = MAX_BATCH,
                              .device = 0, .ffn = PI_FFN_DENSE, .kept_fd = -1, .kept_warm_fd = -1};
    gpu_backend *plain = gpu_backend_cuda.create(m, &cfg, &err);
    CHECK(plain, "%s kept warm: create: %s", name, err.msg);
    uint64_t part, pred, scratch;
    gpu_backend_cuda_bytes(plain, &part, &pred, &scratch);
    uint64_t none = 0;
    CHECK(gpu_backend_cuda.keep_warm_fd(plain, &none) < 0, "%s kept warm: warm memory kept without an arena", name);
    float *want = malloc(m->n_vocab * sizeof(float)), *got = malloc(m->n_vocab * sizeof(float));
    CHECK(want && got, "oom");
    kept_step(plain, m, o, &h, want);
    gpu_backend_cuda.destroy(&plain);

    cfg.arena_bytes = vram_arena_size(part + pred, m->n_layers);
    cfg.warm_bytes = vram_arena_size((uint64_t)3 * m->n_layers * m->n_ff * m->dim * 4, m->n_layers);
    gpu_backend *a = gpu_backend_cuda.create(m, &cfg, &err);
    CHECK(a, "%s kept warm: create: %s", name, err.msg);
    kept_step(a, m, o, &h, got);
    CHECK(!memcmp(got, want, m->n_vocab * sizeof(float)), "%s kept warm: the memfd changed the logits", name);
    uint64_t bytes = 0, wbytes = 0;
    int fd = gpu_backend_cuda.keep_fd(a, &bytes), wfd = gpu_backend_cuda.keep_warm_fd(a, &wbytes);
    CHECK(fd >= 0 && wfd >= 0 && wbytes >= cfg.warm_bytes, "%s kept warm: keep_fd %d, keep_warm_fd %d (%llu bytes)",
          name, fd, wfd, (unsigned long long)wbytes);
    gpu_backend_cuda.destroy(&a);

    cfg.kept_fd = fd;
    cfg.kept_bytes = bytes;
    cfg.kept_warm_fd = wfd;
    cfg.kept_warm_bytes = wbytes;
    char label[160];
    snprintf(label, sizeof label, "%s kept warm", name);
    gpu_backend *b = kept_again(m, o, &h, &cfg, want, got, label);
    gpu_backend_cuda.destroy(&b);

    /* the kept warm rows zeroed behind the manifest: a restart that reads them computes something else
     * (a memfd through mmap, the driver's host memory through its own mapping) */
    struct stat st;
    CHECK(fstat(wfd, &st) == 0, "fstat of the kept warm descriptor");
    const int is_memfd = S_ISREG(st.st_mode);
    if (is_memfd) {
        unsigned char *w = mmap(NULL, wbytes, PROT_READ | PROT_WRITE, MAP_SHARED, wfd, 0);
        CHECK(w != MAP_FAILED, "mmap of the kept warm memory");
        memset(w + VRAM_ARENA_HEADER, 0, wbytes - VRAM_ARENA_HEADER);
        munmap(w, wbytes);
    } else {
        cuda_vmm v;
        CHECK(cuda_vmm_open_at(&v, 0, 0, wbytes, wfd, &err) == 0, "%s kept warm: import: %s", name, err.msg);
        memset((unsigned char *)(uintptr_t)v.ptr + VRAM_ARENA_HEADER, 0, wbytes - VRAM_ARENA_HEADER);
        cuda_vmm_close(&v);
    }
    b = gpu_backend_cuda.create(m, &cfg, &err);
    CHECK(b, "%s kept warm: create again: %s", name, err.msg);
    kept_step(b, m, o, &h, got);
    CHECK(memcmp(got, want, m->n_vocab * sizeof(float)) != 0,
          "%s kept warm: zeroed kept rows gave the same logits: the rows were gathered again", name);
    gpu_backend_cuda.destroy(&b);
    close(fd);
    close(wfd);
    printf("%-44s kept warm memory of %llu bytes (%s): nothing copied or gathered after the restart, logits "
           "equal; zeroed kept rows change them\n", name, (unsigned long long)wbytes,
           is_memfd ? "a memfd" : "driver-pinned host memory");
    free(want);
    free(got);
    hot_free(m, &h);
    CHECK(unsetenv("PI_CUDA_KEEP_WARM") == 0, "unsetenv");
}

static void run_model(const pi_model *m, const char *name, int relu)
{
    oracle o;
    make_oracle(m, &o, N_POS);
    hotcfg h;
    hot_uniform(m, m->n_ff, &h);
    run_ref(m, &o, &h, PI_FFN_DENSE, name);
    hot_free(m, &h);
    hot_uniform(m, m->n_ff / 3, &h);
    run_ref(m, &o, &h, relu ? PI_FFN_EXACT : PI_FFN_DENSE, name);
    hot_free(m, &h);
    hot_uniform(m, 0, &h);
    run_ref(m, &o, &h, PI_FFN_DENSE, name);
    hot_free(m, &h);
    hot_random(m, 0.4, 11, &h);
    run_ref(m, &o, &h, PI_FFN_DENSE, name);
    run_device(m, &o, &h, PI_FFN_DENSE, 1, name);
    if (relu) {
        run_ref(m, &o, &h, PI_FFN_EXACT, name);
        run_device(m, &o, &h, PI_FFN_EXACT, 1, name);
    }
    if (m->has_predictor) {
        run_predicted(m, &o, &h, 1, name);
        run_device(m, &o, &h, PI_FFN_PREDICTED, 1, name);
    }
    /* the same sets with half of each warm: the same results */
    hot_warm(m, &h);
    run_ref(m, &o, &h, PI_FFN_DENSE, name);
    run_device(m, &o, &h, PI_FFN_DENSE, 1, name);
    if (m->has_predictor)
        run_device(m, &o, &h, PI_FFN_PREDICTED, 1, name);
    hot_free(m, &h);
    hot_uniform(m, m->n_ff, &h);
    run_device(m, &o, &h, PI_FFN_DENSE, 0, name);
    if (m->has_predictor)
        run_device(m, &o, &h, PI_FFN_PREDICTED, 0, name);
    hot_free(m, &h);
    if (m->has_predictor) {
        hot_uniform(m, m->n_ff / 2, &h);
        run_predicted(m, &o, &h, 0, name);
        hot_free(m, &h);
    }
    run_kept(m, &o, name);
    /* both homes of kept warm rows: a memfd pinned by each worker, the driver's host memory */
    CHECK(setenv("PI_CUDA_WARM_VMM", "0", 1) == 0, "setenv");
    run_kept_warm(m, &o, name);
    CHECK(setenv("PI_CUDA_WARM_VMM", "1", 1) == 0, "setenv");
    run_kept_warm(m, &o, name);
    CHECK(unsetenv("PI_CUDA_WARM_VMM") == 0, "unsetenv");
    free(o.logits);
}

/* The tiled matrix product for steps of several entries (PI_CUDA_MV_BATCH=1,
 * cuda_matvec_batch.cuh; off by default): every product of 2..13 entries
 * (Q, K and V, fused or not, wo and the output) through it, the logits
 * against the reference as run_ref checks them, with every neuron hot and
 * with hot+warm sets. */
static void run_tiled(const pi_model *m, const char *name)
{
    char label[96];
    snprintf(label, sizeof label, "%s tiled", name);
    oracle o;
    make_oracle(m, &o, N_POS);
    hotcfg h;
    CHECK(setenv("PI_CUDA_MV_BATCH", "1", 1) == 0, "setenv");
    hot_uniform(m, m->n_ff, &h);
    run_ref(m, &o, &h, PI_FFN_DENSE, label);
    hot_free(m, &h);
    hot_random(m, 0.4, 11, &h);
    hot_warm(m, &h);
    run_ref(m, &o, &h, PI_FFN_DENSE, label);
    hot_free(m, &h);
    CHECK(unsetenv("PI_CUDA_MV_BATCH") == 0, "unsetenv");
    free(o.logits);
}

/* Writes a synthetic model of type (shape: NULL for the default tiny one)
 * to the scratch file `file` and opens it (remove(path) after model_close):
 * ReLU with its predictor. */
static pi_model *open_synth(const char *file, pi_type type, const synth_shape *shape, char *path, size_t cap)
{
    test_tmp(file, path, cap);
    synth_options so;
    synth_options_default(&so);
    so.type = type;
    so.n_threads = shape ? 0 : 1;
    if (shape)
        so.shape = *shape;
    pi_error err = {{0}};
    CHECK(synth_write(path, &so, NULL, NULL, &err) == 0, "synth: %s", err.msg);
    pi_model *m = model_open(path, &err);
    CHECK(m, "%s", err.msg);
    CHECK(m->act == PI_ACT_RELU && m->has_predictor, "synth model: ReLU with a predictor expected");
    return m;
}

/* A synthetic model of type; wide: n_ff 28672 (the largest real n_ff, 896
 * mask words), only the predict lists checked; full: the whole model too. */
static void run_synth(pi_type type, int wide, int full)
{
    char path[512], name[64];
    snprintf(name, sizeof name, "synth %s %s", wide ? "wide" : "tiny", pi_type_name(type));
    const synth_shape w = {"wide", 64, 2, 28672, 4, 4, 512, 512};
    pi_model *m = open_synth("cuda_backend_synth.gguf", type, wide ? &w : NULL, path, sizeof path);
    run_predict_lists(m, 1, name);
    run_predict_lists(m, 0, name);
    if (full) {
        run_model(m, name, 1);
        run_tiled(m, name);
    }
    model_close(&m);
    remove(path);
}

/* --predictor-type q8_0 (sparse/pred_quant.h): the tiny synthetic F16
 * model with a 32-wide predictor, its fc1 and fc2 converted to Q8_0 as pid
 * and the GPU worker convert them: the predict op's lists against the host
 * predictor over the same Q8_0 weights, then the whole model against the
 * reference and the host backend. */
static void run_synth_q8_predictor(void)
{
    char path[512];
    test_tmp("cuda_backend_synth_q8pred.gguf", path, sizeof path);
    synth_options so;
    synth_options_default(&so);
    so.n_threads = 1;
    so.pred_width = 32;
    pi_error err = {{0}};
    CHECK(synth_write(path, &so, NULL, NULL, &err) == 0, "synth: %s", err.msg);
    pi_model *m = model_open(path, &err);
    CHECK(m && m->has_predictor, "%s", err.msg);
    CHECK(predictor_requant(m, PI_TYPE_Q8_0, &err) == 0, "requant: %s", err.msg);
    CHECK(m->layers[0].pred_fc2.type == PI_TYPE_Q8_0, "fc2 is q8_0");
    run_predict_lists(m, 1, "synth tiny f16, q8_0 predictor");
    run_predict_lists(m, 0, "synth tiny f16, q8_0 predictor");
    run_model(m, "synth tiny f16, q8_0 predictor", 1);
    model_close(&m);
    remove(path);
}

/* run_step's predicted paths against the layer-by-layer ones (run_device):
 * hot sets with a CPU worker, hot+warm sets, then every neuron hot and no
 * CPU worker. For models whose predictor reads the residual, where the host
 * predictor checks of run_predicted (over the normed x) do not apply. */
static void run_device_predicted(const pi_model *m, const oracle *o, double frac, const char *name)
{
    hotcfg h;
    hot_random(m, frac, 5, &h);
    run_device(m, o, &h, PI_FFN_PREDICTED, 1, name);
    hot_warm(m, &h);
    run_device(m, o, &h, PI_FFN_PREDICTED, 1, name);
    hot_free(m, &h);
    hot_uniform(m, m->n_ff, &h);
    run_device(m, o, &h, PI_FFN_PREDICTED, 0, name);
    hot_free(m, &h);
}

/* The tiny synthetic F16 model with its predictor reading the residual
 * before ffn_norm (pred_input as a PWRI file sets it). */
static void run_synth_residual(void)
{
    char path[512];
    pi_model *m = open_synth("cuda_backend_synth_residual.gguf", PI_TYPE_F16, NULL, path, sizeof path);
    m->pred_input = PI_PRED_INPUT_RESIDUAL;
    oracle o;
    make_oracle(m, &o, N_POS);
    run_device_predicted(m, &o, 0.4, "synth tiny f16, residual input");
    free(o.logits);
    model_close(&m);
    remove(path);
}

/* Writes sh to a scratch file and opens it (remove(path) after model_close). */
static pi_model *random_model(const rand_model_shape *sh, char *path, size_t cap)
{
    test_tmp("cuda_backend_random.gguf", path, cap);
    pi_error err = {{0}};
    CHECK(rand_model_write(path, sh, &err) == 0, "%s", err.msg);
    pi_model *m = model_open(path, &err);
    CHECK(m, "%s", err.msg);
    return m;
}

static void run_random(pi_type type, pi_act act, uint32_t seed)
{
    char path[512], name[64];
    snprintf(name, sizeof name, "random %s %s", pi_type_name(type), pi_act_name(act));
    rand_model_shape sh = {.dim = 64, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2, .n_ff = 96,
                           .n_vocab = 48, .n_ctx = 128, .type = type, .act = act, .seed = seed};
    pi_model *m = random_model(&sh, path, sizeof path);
    run_model(m, name, act != PI_ACT_SILU);
    run_tiled(m, name);
    model_close(&m);
    remove(path);
}

/* A K-quant model (super-blocks of 256: dim 256, n_ff 512; token_embd and
 * every matrix in type, or Q4_K_M's mix: ffn_down, output and even layers'
 * attn_v in down, so Q, K and V take separate launches), with a random f16
 * predictor when pred: every path of run_model, the hot FFN's gate and up
 * rows in the K-quant, down^T as F32. */
static void run_kquant(pi_type type, pi_type down, pi_act act, int pred, uint32_t seed)
{
    char path[512], name[64];
    snprintf(name, sizeof name, "random %s%s%s %s", pi_type_name(type), down != type ? "+" : "",
             down != type ? pi_type_name(down) : "", pi_act_name(act));
    rand_model_shape sh = {.dim = 256, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .n_ff = 512,
                           .n_vocab = 48, .n_ctx = 128, .type = type, .act = act, .seed = seed,
                           .has_down_type = down != type, .down_type = down, .mix_v = 1,
                           .pred_hidden = pred ? 32 : 0};
    pi_model *m = random_model(&sh, path, sizeof path);
    CHECK(m->layers[0].wq.type == type && m->layers[0].ffn_gate.type == type && m->tok_embd.type == type &&
          m->layers[0].ffn_down.type == down && m->layers[0].wv.type == down && m->output.type == down &&
          m->has_predictor == pred, "%s: not the types asked for", name);
    run_model(m, name, act != PI_ACT_SILU);
    run_tiled(m, name);
    model_close(&m);
    remove(path);
}

/* The largest relative logit error (as check_row measures it) of m's
 * reference forward over o's tokens against o's logits. */
static double oracle_miss(const pi_model *m, const oracle *o)
{
    pi_error err = {{0}};
    double worst = 0;
    for (int s = 0; s < N_SEQ; s++) {
        forward_state *f = forward_new(m, o->n_pos, &err);
        CHECK(f, "forward_new: %s", err.msg);
        for (uint32_t p = 0; p < o->n_pos; p++) {
            const float *lg = forward_token(f, o->tok[s][p], p);
            const float *want = o->logits + ((size_t)s * o->n_pos + p) * m->n_vocab;
            CHECK(lg, "forward_token at %u", p);
            double dmax = 0, wmax = 0;
            for (uint32_t v = 0; v < m->n_vocab; v++) {
                dmax = fmax(dmax, fabs((double)lg[v] - want[v]));
                wmax = fmax(wmax, fabs((double)want[v]));
            }
            worst = fmax(worst, dmax / (wmax > 0 ? wmax : 1));
        }
        forward_free(&f);
    }
    return worst;
}

/* Rope scaling as llama.cpp reads it (rope.scaling.factor 4: angles x 1/4;
 * rope_freqs.weight: each pair's frequency divided by a factor in [1, 8]) on
 * a random f16 model whose attention is sharp enough for positions to
 * matter. The reference forward with the scaling left out, with either part
 * of it left out, or with either part inverted, must miss the true logits
 * by more than 10 TOL (checked here on the host), so a CUDA rope with any of
 * those slips fails the comparisons of run_model. */
static void run_rope_scaled(void)
{
    char path[512];
    const char *name = "random f16 rope-scaled";
    rand_model_shape sh = {.dim = 64, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .n_ff = 128,
                           .n_vocab = 48, .n_ctx = 128, .type = PI_TYPE_F16, .act = PI_ACT_SILU, .seed = 9,
                           .qk_scale = 2.0f, .rope_factor = 4.0f, .rope_freqs = 1};
    pi_model *m = random_model(&sh, path, sizeof path);
    CHECK(m->rope_freq_scale == 0.25f && m->rope_freqs.data, "%s: rope scaling not read", name);
    oracle o;
    make_oracle(m, &o, N_POS);
    const float *freqs = m->rope_freqs.data;
    float inv[64];
    CHECK(m->head_dim / 2 <= 64, "head_dim %u", m->head_dim);
    for (uint32_t i = 0; i < m->head_dim / 2; i++)
        inv[i] = 1.0f / freqs[i];
    for (int k = 0; k < 5; k++) {
        pi_model wrong = *m;
        if (k == 0 || k == 1)
            wrong.rope_freq_scale = 1.0f;
        if (k == 0 || k == 2)
            wrong.rope_freqs.data = NULL;
        if (k == 3)
            wrong.rope_freq_scale = 1.0f / m->rope_freq_scale;
        if (k == 4)
            wrong.rope_freqs.data = inv;
        double d = oracle_miss(&wrong, &o);
        CHECK(d > 10 * TOL, "%s: a wrong rope (case %d) misses the reference by only %.3g", name, k, d);
        printf("%-44s wrong rope case %d: relative logit error %.3g\n", name, k, d);
    }
    free(o.logits);
    run_model(m, name, 0);
    model_close(&m);
    remove(path);
}

/* A 13B model's widths (dim 5120, 40 heads of 128, n_ff 13824; 2 layers,
 * F16, its synthetic predictor): the loop paths real models take. 66
 * positions per sequence (two attention splits). The whole model on the GPU
 * through run_step against the reference forward; hot sets with the cold part
 * on the CPU, layer by layer against the reference; predicted through
 * run_step against the layer-by-layer path. residual: the predictor reads
 * the residual stream before ffn_norm, as in PowerInfer's files (run_step
 * then computes the FFN norm in the predictor's compaction launch and wo adds
 * straight into x; the layer-by-layer path keeps the norm kernel). */
static void run_real_width(int residual)
{
    char path[512];
    const synth_shape real = {"real", 5120, 2, 13824, 40, 40, 512, 512};
    pi_model *m = open_synth("cuda_backend_real.gguf", PI_TYPE_F16, &real, path, sizeof path);
    if (residual)
        m->pred_input = PI_PRED_INPUT_RESIDUAL;
    const char *name = residual ? "real width f16, residual input" : "real width f16";
    oracle o;
    make_oracle(m, &o, 66);
    hotcfg h;
    if (residual) {     /* the predicted paths only: the rest does not read pred_input */
        run_device_predicted(m, &o, 0.3, name);
        free(o.logits);
        model_close(&m);
        remove(path);
        return;
    }
    hot_uniform(m, m->n_ff, &h);
    run_device(m, &o, &h, PI_FFN_DENSE, 0, name);
    hot_free(m, &h);
    hot_random(m, 0.3, 5, &h);
    run_ref(m, &o, &h, PI_FFN_EXACT, name);
    CHECK(setenv("PI_CUDA_MV_BATCH", "1", 1) == 0, "setenv");     /* the tiled product over 80 slices a row */
    run_ref(m, &o, &h, PI_FFN_EXACT, "real width f16 tiled");
    CHECK(unsetenv("PI_CUDA_MV_BATCH") == 0, "unsetenv");
    run_device(m, &o, &h, PI_FFN_PREDICTED, 1, name);
    hot_warm(m, &h);
    run_device(m, &o, &h, PI_FFN_PREDICTED, 1, name);
    hot_free(m, &h);
    free(o.logits);
    model_close(&m);
    remove(path);
}

/* Solo steps (run_solo): each sequence's positions in two steps of many
 * entries, both sequences in each, every neuron on the device: VRAM rows,
 * warm rows and the cold rest streamed from pinned host memory. The
 * products take fp16 activations (tensor cores), so the logits are checked
 * to SOLO_TOL of their largest magnitude, and the greedy token as check_row
 * does. Then a step past solo_max is refused. */
#define SOLO_BATCH 160
#define SOLO_TOL 1e-2
static void run_solo(const pi_model *m, const oracle *o, const hotcfg *h, const char *name)
{
    pi_error err = {{0}};
    gpu_backend_config cfg = {.n_hot = h->n_hot, .hot = (const int32_t *const *)h->sets, .hot_count = h->count,
                              .hot_vram = h->vram, .max_seqs = N_SEQ, .n_ctx = N_POS, .max_batch = MAX_BATCH,
                              .device = 0, .ffn = PI_FFN_PREDICTED, .solo_batch = SOLO_BATCH};
    gpu_backend *b = gpu_backend_cuda.create(m, &cfg, &err);
    CHECK(b, "%s solo: create: %s", name, err.msg);
    CHECK(gpu_backend_cuda.solo_max(b) == SOLO_BATCH, "%s: solo_max %u, want %u", name,
          gpu_backend_cuda.solo_max(b), SOLO_BATCH);
    /* what it holds beyond the plan's own bytes fits in the plan's scratch with solo steps */
    pi_plan plan;
    plan_params pp = {.max_seqs = N_SEQ, .n_ctx = N_POS, .n_cpu_workers = 1, .max_batch = MAX_BATCH,
                      .solo_batch = SOLO_BATCH, .backend = cuda_needs()};
    CHECK(plan_make_fixed(m, &pp, h->n_hot, &plan, &err) == 0, "%s: plan: %s", name, err.msg);
    uint64_t part, pred, scratch;
    gpu_backend_cuda_bytes(b, &part, &pred, &scratch);
    CHECK(scratch <= plan.scratch_bytes, "%s solo: scratch %llu over the plan's %llu", name,
          (unsigned long long)scratch, (unsigned long long)plan.scratch_bytes);
    uint32_t V = m->n_vocab, n_pos = o->n_pos, cut[N_SEQ] = {n_pos / 2, n_pos / 3}, next[N_SEQ] = {0, 0};
    gpu_entry *e = malloc((size_t)N_SEQ * n_pos * sizeof *e);
    float *lg = malloc((size_t)N_SEQ * n_pos * V * sizeof(float));
    CHECK(e && lg, "oom");
    double worst = 0;
    for (int step = 0; step < 2; step++) {
        uint32_t n = 0;
        for (int s = 0; s < N_SEQ; s++)
            for (uint32_t end = step ? n_pos : cut[s]; next[s] < end; next[s]++)
                e[n++] = (gpu_entry){.slot = (uint32_t)s, .pos = next[s], .token = o->tok[s][next[s]],
                                     .want_logits = 1};
        CHECK(n <= SOLO_BATCH, "%s: %u entries", name, n);
        double t0 = pi_now_ms();
        CHECK(gpu_backend_cuda.run_solo(b, e, n, lg, &err) == 0, "%s: run_solo: %s", name, err.msg);
        double ms = pi_now_ms() - t0;
        for (uint32_t i = 0; i < n; i++) {
            const float *want = o->logits + ((size_t)e[i].slot * n_pos + e[i].pos) * V;
            const float *got = lg + (size_t)i * V;
            double dmax = 0, wmax = 0;
            for (uint32_t v = 0; v < V; v++) {
                dmax = fmax(dmax, fabs((double)got[v] - want[v]));
                wmax = fmax(wmax, fabs((double)want[v]));
            }
            double rel = dmax / (wmax > 0 ? wmax : 1);
            worst = fmax(worst, rel);
            CHECK(rel <= SOLO_TOL, "%s solo: seq %u pos %u: relative logit error %.3g > %.0e", name, e[i].slot,
                  e[i].pos, rel, SOLO_TOL);
            uint32_t a = test_argmax(got, V), c = test_argmax(want, V);
            CHECK(a == c || (double)want[c] - want[a] <= 2 * SOLO_TOL * wmax,
                  "%s solo: seq %u pos %u: greedy token %u != %u", name, e[i].slot, e[i].pos, a, c);
        }
        printf("%s: solo step of %u entries in %.1f ms\n", name, n, ms);
    }
    printf("%s: solo steps match the reference (worst relative logit error %.2g)\n", name, worst);
    CHECK(gpu_backend_cuda.run_solo(b, e, SOLO_BATCH + 1, lg, &err) != 0 && strstr(err.msg, "at most"),
          "%s: a solo step past solo_max: %s", name, err.msg);
    free(e);
    free(lg);
    gpu_backend_cuda.destroy(&b);
}

static void run_solo_models(void)
{
    char path[512];
    pi_model *m = open_synth("cuda_backend_solo.gguf", PI_TYPE_F16, NULL, path, sizeof path);
    oracle o;
    make_oracle(m, &o, N_POS);
    hotcfg h;
    hot_random(m, 0.3, 11, &h);
    hot_warm(m, &h);
    run_solo(m, &o, &h, "synth tiny f16");
    hot_free(m, &h);
    hot_uniform(m, m->n_ff, &h);    /* all in VRAM: nothing streamed */
    run_solo(m, &o, &h, "synth tiny f16, all in VRAM");
    hot_free(m, &h);
    free(o.logits);
    model_close(&m);
    remove(path);
    const synth_shape real = {"real", 5120, 2, 13824, 40, 40, 512, 512};
    m = open_synth("cuda_backend_solo_real.gguf", PI_TYPE_F16, &real, path, sizeof path);
    make_oracle(m, &o, 66);
    hot_random(m, 0.2, 12, &h);
    hot_warm(m, &h);
    run_solo(m, &o, &h, "real width f16");
    hot_free(m, &h);
    free(o.logits);
    model_close(&m);
    remove(path);
}

/* Each group's wall time, said when the next starts and at the end, so a
 * device call's log shows where its minutes went. */
static int group_start(const char *group)
{
    static const char *cur;         /* main's thread only: the group running and its start */
    static double t0;
    double now = pi_now_ms() / 1e3;
    if (cur)
        printf("== group %s: %.1f s\n", cur, now - t0);
    cur = group;
    t0 = now;
    return 1;
}

/* PI_CUDA_TEST_ONLY=group,... (stories, synth, q8pred, random, kquant, rope,
 * real, switches, fused, residual, residual_nofold, solo):
 * only those groups, for a device call with little time left; unset: all. */
static int want(const char *group)
{
    const char *only = getenv("PI_CUDA_TEST_ONLY");
    if (!only || !*only)
        return group_start(group);
    size_t n = strlen(group);
    for (const char *p = only; (p = strstr(p, group)) != NULL; p += n)
        if ((p == only || p[-1] == ',') && (p[n] == ',' || p[n] == 0))
            return group_start(group);
    return 0;
}

int main(void)
{
    // Line by line: a device call that runs out of time kills this test, and
    // what passed before that must still reach its log.
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (pi_cuda_device_count() <= 0) {
        fprintf(stderr, "SKIP: no CUDA device\n");
        return 77;
    }
    if (getenv("PI_CUDA_TEST_ONLY"))
        printf("PI_CUDA_TEST_ONLY=%s: the other groups skipped\n", getenv("PI_CUDA_TEST_ONLY"));
    if (want("stories")) {
        char ck[1024], tk[1024], out[1024];
        test_shared("models/stories260K.bin", ck, sizeof ck);
        test_shared("models/tok512.bin", tk, sizeof tk);
        test_tmp("cuda-stories260K.gguf", out, sizeof out);
        pi_error err = {{0}};
        CHECK(llama2c_import(ck, tk, out, PI_TYPE_F32, PI_ACT_SILU, NULL, &err) == 0, "import: %s", err.msg);
        pi_model *m = model_open(out, &err);
        CHECK(m, "model_open: %s", err.msg);
        run_rejects(m);
        run_model(m, "stories260K f32", 0);
        run_tiled(m, "stories260K f32");
        model_close(&m);
        remove(out);
    }
    if (getenv("PI_CUDA_TEST_QUICK")) {     /* a short device call: stories260K only */
        printf("PI_CUDA_TEST_QUICK: the synthetic, random and 13B-width models skipped\n");
        group_start(NULL);
        return 0;
    }
    if (want("synth")) {
        run_synth(PI_TYPE_F16, 0, 1);
        run_synth(PI_TYPE_Q8_0, 0, 1);
        run_synth(PI_TYPE_Q4_0, 0, 1);
        run_synth(PI_TYPE_F32, 0, 0);   /* an f32 predictor */
        run_synth(PI_TYPE_F16, 1, 0);
    }
    if (want("q8pred"))
        run_synth_q8_predictor();
    if (want("random")) {
        run_random(PI_TYPE_BF16, PI_ACT_RELU_BOTH, 5);
        run_random(PI_TYPE_Q4_0, PI_ACT_SILU, 6);
    }
    if (want("kquant")) {
        run_kquant(PI_TYPE_Q4_K, PI_TYPE_Q6_K, PI_ACT_RELU, 1, 7);     /* Q4_K_M's mix */
        run_kquant(PI_TYPE_Q6_K, PI_TYPE_Q6_K, PI_ACT_SILU, 0, 8);
        run_kquant(PI_TYPE_Q5_K, PI_TYPE_Q5_K, PI_ACT_RELU_BOTH, 1, 9);
    }
    if (want("rope"))
        run_rope_scaled();
    if (want("solo"))
        run_solo_models();
    if (want("real"))
        run_real_width(0);
    /* The kernel choices' other side: the QKV product without its rope
     * epilogue (a rope kernel) and one warp a row, through a predictor model
     * and the 13B widths (the defaults ran above). */
    if (want("switches")) {
        const char *sw[] = {"PI_CUDA_QKV_ROPE", "PI_CUDA_MV_SPLIT"};
        for (int i = 0; i < 2; i++)
            CHECK(setenv(sw[i], "0", 1) == 0, "setenv");
        printf("PI_CUDA_QKV_ROPE=0 PI_CUDA_MV_SPLIT=0:\n");
        run_synth(PI_TYPE_F16, 0, 1);
        run_real_width(0);
        for (int i = 0; i < 2; i++)
            CHECK(unsetenv(sw[i]) == 0, "unsetenv");
    }
    /* The hot FFN in two launches (PI_CUDA_FFN_FUSED=0; one launch is the
     * default): one-entry predicted steps of F16 and BF16 (dReLU) models and
     * the 13B widths. */
    if (want("fused")) {
        CHECK(setenv("PI_CUDA_FFN_FUSED", "0", 1) == 0, "setenv");
        printf("PI_CUDA_FFN_FUSED=0:\n");
        run_synth(PI_TYPE_F16, 0, 1);
        run_random(PI_TYPE_BF16, PI_ACT_RELU_BOTH, 5);
        run_real_width(0);
        CHECK(unsetenv("PI_CUDA_FFN_FUSED") == 0, "unsetenv");
    }
    /* A predictor that reads the residual (PowerInfer's files): run_step
     * with the FFN norm folded into the predictor's launch
     * (PI_CUDA_NORM_FOLD=1), with CPU workers (xn into the segment) and
     * without; then the same with the norm kernel (=0). Against the
     * layer-by-layer path, which never folds. */
    /* Two groups (device_check.sh runs each in a process of its own, so the
     * longest group of the check takes half as long: 496 s in session 16). */
    for (int fold = 1; fold >= 0; fold--) {
        if (!want(fold ? "residual" : "residual_nofold"))
            continue;
        CHECK(setenv("PI_CUDA_NORM_FOLD", fold ? "1" : "0", 1) == 0, "setenv");
        printf("PI_CUDA_NORM_FOLD=%d:\n", fold);
        run_synth_residual();
        run_real_width(1);
        CHECK(unsetenv("PI_CUDA_NORM_FOLD") == 0, "unsetenv");
    }
    group_start(NULL);
    return 0;
}
#endif
