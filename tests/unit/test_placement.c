/* The placement solver is optimal up to one neuron (equal to brute force and an exact DP on small instances, within 1% of the optimum on power-law profiles at 13B shape), never exceeds the VRAM budget, serves more as the budget grows, handles degenerate budgets, and its cache round-trips and rejects another model/budget/KV size/profile. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "llama2c.h"
#include "placement.h"
#include "plan.h"
#include "profile.h"
#include "rand_model.h"
#include "sidecar.h"
#include "tokenizer.h"

static uint64_t rng_next(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

static double rng_unit(uint64_t *s)
{
    return (double)rng_next(s) / (double)(1ull << 31);
}

/* Frequencies for layers x n_ff, each layer its own power law: the r-th most
 * frequent neuron fires with c * (r+1)^-skew (skew 0.3 .. 1.6 by layer),
 * scaled to a mean near `active`, capped at 1, shuffled over the neurons,
 * rounded to counts over `tokens` (ties, and zeros for dead neurons). */
static float **power_law(uint32_t layers, uint32_t n_ff, double active, double tokens, uint64_t seed)
{
    float **f = calloc(layers, sizeof *f);
    double *raw = malloc(n_ff * sizeof *raw);
    CHECK(f && raw, "oom");
    uint64_t s = seed;
    for (uint32_t l = 0; l < layers; l++) {
        f[l] = malloc(n_ff * sizeof **f);
        CHECK(f[l], "oom");
        double skew = 0.3 + 1.3 * rng_unit(&s), sum = 0;
        for (uint32_t r = 0; r < n_ff; r++)
            sum += raw[r] = pow(r + 1.0, -skew) * (0.75 + 0.5 * rng_unit(&s));
        double c = active * n_ff / sum;
        for (uint32_t r = 0; r < n_ff; r++) {
            double v = fmin(1.0, c * raw[r]);
            raw[r] = round(v * tokens) / tokens;
        }
        for (uint32_t r = n_ff; r > 1; r--) { /* Fisher-Yates */
            uint32_t j = (uint32_t)(rng_next(&s) % r);
            double t = raw[r - 1];
            raw[r - 1] = raw[j];
            raw[j] = t;
        }
        for (uint32_t i = 0; i < n_ff; i++)
            f[l][i] = (float)raw[i];
    }
    free(raw);
    return f;
}

static void free_freq(float **f, uint32_t layers)
{
    for (uint32_t l = 0; l < layers; l++)
        free(f[l]);
    free(f);
}

/* Served value of p recomputed from scratch, and its bytes checked. */
static double check_result(const placement_input *in, const placement *p)
{
    CHECK(p->gpu_bytes <= in->budget_bytes, "GPU %" PRIu64 " over budget %" PRIu64, p->gpu_bytes, in->budget_bytes);
    uint64_t hot = 0, cold = 0;
    double v = 0;
    for (uint32_t l = 0; l < in->n_layers; l++) {
        const placement_layer *y = &p->layers[l];
        uint32_t n = 0;
        for (uint32_t i = 0; i < in->n_ff; i++) {
            n += y->is_hot[i];
            if (y->is_hot[i])
                v += in->freq ? in->freq[l][i] : 1.0;
        }
        CHECK(n == y->n_hot, "layer %u: %u flags, n_hot %u", l, n, y->n_hot);
        for (uint32_t j = 0; j < y->n_hot; j++) {
            CHECK(y->hot[j] < in->n_ff && y->is_hot[y->hot[j]], "layer %u: hot[%u] = %u not flagged", l, j, y->hot[j]);
            CHECK(j == 0 || y->hot[j] > y->hot[j - 1], "layer %u: hot list not ascending", l);
        }
        /* within a layer the hot ones are the most frequent */
        if (in->freq && y->n_hot && y->n_hot < in->n_ff) {
            float lo = INFINITY, hi = -INFINITY;
            for (uint32_t i = 0; i < in->n_ff; i++) {
                if (y->is_hot[i])
                    lo = fminf(lo, in->freq[l][i]);
                else
                    hi = fmaxf(hi, in->freq[l][i]);
            }
            CHECK(lo >= hi, "layer %u: a cold neuron (%g) is more frequent than a hot one (%g)", l, (double)hi,
                  (double)lo);
        }
        CHECK(y->gpu_bytes == (uint64_t)y->n_hot * in->neuron_bytes[l], "layer %u gpu bytes", l);
        CHECK(y->cpu_bytes == (uint64_t)(in->n_ff - y->n_hot) * in->neuron_bytes[l], "layer %u cpu bytes", l);
        hot += y->gpu_bytes;
        cold += y->cpu_bytes;
    }
    CHECK(p->hot_bytes == hot && p->cold_bytes == cold && p->gpu_bytes == in->fixed_bytes + hot, "byte totals");
    CHECK(fabs(v - p->freq_hot) <= 1e-9 * (1 + v), "freq_hot %g, recomputed %g", p->freq_hot, v);
    CHECK(p->upper_bound >= p->freq_hot - 1e-9 * (1 + v), "upper bound %g below the value %g", p->upper_bound,
          p->freq_hot);
    /* Nothing left out still fits (the fill step). */
    uint64_t left = in->budget_bytes - p->gpu_bytes;
    for (uint32_t l = 0; l < in->n_layers; l++)
        CHECK(p->layers[l].n_hot == in->n_ff || in->neuron_bytes[l] > left,
              "layer %u: a neuron of %" PRIu64 " bytes would still fit in %" PRIu64, l, in->neuron_bytes[l], left);
    return v;
}

static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* Exact optimum for every capacity 0..cap (in bytes): per layer the best k
 * neurons are its k most frequent, so a DP over layers choosing k_l. */
static double *dp_all(const placement_input *in, uint64_t cap)
{
    double *best = calloc(cap + 1, sizeof *best), *next = malloc((cap + 1) * sizeof *next);
    double *pre = malloc((in->n_ff + 1) * sizeof *pre);
    float *sorted = malloc(in->n_ff * sizeof *sorted);
    CHECK(best && next && pre && sorted, "oom");
    for (uint32_t l = 0; l < in->n_layers; l++) {
        memcpy(sorted, in->freq[l], in->n_ff * sizeof *sorted);
        qsort(sorted, in->n_ff, sizeof *sorted, cmp_desc);
        pre[0] = 0;
        for (uint32_t k = 0; k < in->n_ff; k++)
            pre[k + 1] = pre[k] + sorted[k];
        uint64_t w = in->neuron_bytes[l];
        for (uint64_t c = 0; c <= cap; c++) {
            double b = best[c];
            for (uint64_t k = 1; k <= in->n_ff && k * w <= c; k++)
                b = fmax(b, best[c - k * w] + pre[k]);
            next[c] = b;
        }
        double *t = best;
        best = next;
        next = t;
    }
    free(next);
    free(pre);
    free(sorted);
    return best;
}

static double brute(const placement_input *in)
{
    uint32_t n = in->n_layers * in->n_ff;
    uint64_t cap = in->budget_bytes - in->fixed_bytes;
    double best = 0;
    for (uint32_t mask = 0; mask < (1u << n); mask++) {
        uint64_t w = 0;
        double v = 0;
        for (uint32_t b = 0; b < n; b++)
            if (mask >> b & 1) {
                w += in->neuron_bytes[b / in->n_ff];
                v += in->freq[b / in->n_ff][b % in->n_ff];
            }
        if (w <= cap && v > best)
            best = v;
    }
    return best;
}

static void test_small_random(void)
{
    uint64_t s = 42;
    int exact = 0, total = 0;
    double worst = 0; /* largest (OPT - greedy) / max frequency */
    pi_error err = {{0}};
    for (int it = 0; it < 600; it++) {
        uint32_t L = 1 + (uint32_t)(rng_next(&s) % 3), n_ff = 1 + (uint32_t)(rng_next(&s) % (12 / L < 5 ? 12 / L : 5));
        float fbuf[3][5];
        const float *freq[3];
        uint64_t nb[3], sum = 0;
        float fmax_ = 0;
        for (uint32_t l = 0; l < L; l++) {
            nb[l] = 1 + rng_next(&s) % 6;
            sum += nb[l] * n_ff;
            for (uint32_t i = 0; i < n_ff; i++) {
                /* a few exact ties and zeros */
                fbuf[l][i] = rng_next(&s) % 4 == 0 ? (float)(rng_next(&s) % 3) / 2 : (float)rng_unit(&s);
                fmax_ = fmaxf(fmax_, fbuf[l][i]);
            }
            freq[l] = fbuf[l];
        }
        uint64_t fixed = rng_next(&s) % 10;
        placement_input in = {.n_layers = L, .n_ff = n_ff, .freq = freq, .neuron_bytes = nb,
                              .fixed_bytes = fixed, .budget_bytes = fixed + rng_next(&s) % (sum + 4)};
        placement *p = placement_solve(&in, &err);
        CHECK(p, "%s", err.msg);
        double v = check_result(&in, p);
        double opt = brute(&in);
        double *dp = dp_all(&in, in.budget_bytes - fixed);
        CHECK(fabs(dp[in.budget_bytes - fixed] - opt) < 1e-6, "DP %g != brute force %g", dp[in.budget_bytes - fixed],
              opt);
        free(dp);
        CHECK(v <= opt + 1e-6, "greedy %g above the optimum %g", v, opt);
        CHECK(v >= opt - fmax_ - 1e-6, "greedy %g more than one neuron (%g) below the optimum %g", v, fmax_, opt);
        CHECK(p->upper_bound >= opt - 1e-6, "LP bound %g below the optimum %g", p->upper_bound, opt);
        exact += v >= opt - 1e-6;
        if (fmax_ > 0)
            worst = fmax(worst, (opt - v) / fmax_);
        total++;
        placement_free(&p);
        CHECK(p == NULL, "placement_free nulls the pointer");
    }
    printf("small random: %d instances, DP == brute force in all; greedy optimal in %d, worst gap %.3f of the "
           "largest frequency (bound: < 1)\n", total, exact, worst);
}

/* Power-law profiles, mixed neuron sizes, every capacity: greedy vs the exact DP. */
static void test_medium_dp(void)
{
    const uint32_t L = 8, n_ff = 384;
    float **f = power_law(L, n_ff, 0.11, 2000, 7);
    uint64_t nb[8] = {3, 4, 5, 3, 4, 5, 4, 3}, total = 0;
    for (uint32_t l = 0; l < L; l++)
        total += nb[l] * n_ff;
    placement_input in = {.n_layers = L, .n_ff = n_ff, .freq = (const float *const *)f, .neuron_bytes = nb,
                          .fixed_bytes = 100};
    double *opt = dp_all(&in, total);
    double worst = 0, prev = 0;
    pi_error err = {{0}};
    for (uint64_t c = total / 40; c <= total; c += total / 40) {
        in.budget_bytes = in.fixed_bytes + c;
        placement *p = placement_solve(&in, &err);
        CHECK(p, "%s", err.msg);
        double v = check_result(&in, p);
        CHECK(v <= opt[c] + 1e-9 && p->upper_bound >= opt[c] - 1e-9, "greedy %g / bound %g vs optimum %g", v,
              p->upper_bound, opt[c]);
        double gap = (opt[c] - v) / opt[c];
        CHECK(gap <= 0.01, "capacity %" PRIu64 ": gap %.4f%% over 1%%", c, 100 * gap);
        CHECK(v >= prev - 1e-9, "a larger budget serves less: %g < %g", v, prev);
        worst = fmax(worst, gap);
        prev = v;
        placement_free(&p);
    }
    printf("medium (8 x 384, neuron sizes 3/4/5, power law): worst gap to the exact DP optimum %.5f%% over 40 "
           "budgets\n", 100 * worst);
    free(opt);
    free_freq(f, L);
}

/* Today's plan for comparison: the same K in every layer, neurons [0, K). */
static double uniform_k_value(const placement_input *in)
{
    uint64_t per = 0;
    for (uint32_t l = 0; l < in->n_layers; l++)
        per += in->neuron_bytes[l];
    uint64_t k = (in->budget_bytes - in->fixed_bytes) / per;
    double v = 0;
    for (uint32_t l = 0; l < in->n_layers; l++)
        for (uint32_t i = 0; i < k && i < in->n_ff; i++)
            v += in->freq[l][i];
    return v;
}

/* 13B shape: 40 x 13824, F16 rows of 5120 (3 x 10 KiB per neuron), fixed =
 * embeddings + lm_head + norms + attention + a KV cache of 1 x 512. */
static void test_13b(int mixed)
{
    const uint32_t L = 40, n_ff = 13824, dim = 5120, vocab = 32000;
    float **f = power_law(L, n_ff, 0.11, 10000, mixed ? 99 : 13);
    uint64_t nb[40], ffn = 0;
    for (uint32_t l = 0; l < L; l++) {
        /* mixed: F16 / Q8_0 / Q4_0 gate+up with an F32 down^T, by layer */
        static const uint64_t sizes[3] = {3 * 10240, 2 * 5440 + 20480, 2 * 2880 + 20480};
        nb[l] = mixed ? sizes[l % 3] : sizes[0];
        ffn += nb[l] * n_ff;
    }
    uint64_t fixed = 2ull * vocab * dim * 2 + (2ull * L + 1) * dim * 4 + (uint64_t)L * 4 * dim * dim * 2 +
                     (uint64_t)L * 512 * dim * 2 * 4;
    placement_input in = {.n_layers = L, .n_ff = n_ff, .freq = (const float *const *)f, .neuron_bytes = nb,
                          .fixed_bytes = fixed};
    pi_error err = {{0}};
    double prev = -1, worst = 0;
    printf("13B shape%s: fixed %.2f GiB, FFN %.2f GiB\n", mixed ? " (mixed F16/Q8_0/Q4_0 layers)" : " (F16)",
           (double)fixed / (1 << 30), (double)ffn / (1 << 30));
    for (int j = 0; j <= 10; j++) {
        in.budget_bytes = fixed + ffn / 10 * (uint64_t)j + (j == 10 ? ffn % 10 : 0);
        clock_t t0 = clock();
        placement *p = placement_solve(&in, &err);
        double ms = 1000.0 * (double)(clock() - t0) / CLOCKS_PER_SEC;
        CHECK(p, "%s", err.msg);
        double v = check_result(&in, p);
        double gap = p->upper_bound > 0 ? (p->upper_bound - v) / p->upper_bound : 0;
        CHECK(gap <= 0.01, "budget %d/10: gap to the LP bound %.4f%% over 1%%", j, 100 * gap);
        if (!mixed) /* one neuron size: the greedy is the exact top-K */
            CHECK(p->upper_bound - v < 1.0 + 1e-6, "equal sizes: more than one neuron below the bound");
        CHECK(v >= prev - 1e-9 * (1 + v), "a larger budget serves less: %g < %g", v, prev);
        if (j == 10)
            CHECK(placement_share(p) == 1.0 && p->hot_bytes == ffn, "the whole model fits: everything hot");
        if (j == 0)
            CHECK(p->hot_bytes == 0, "budget = fixed part: nothing hot");
        double base = uniform_k_value(&in);
        printf("  budget fixed + %3d%% of FFN: GPU share %6.2f%% (same-K plan %6.2f%%), gap to optimum <= %.5f%%, "
               "%.0f ms\n", j * 10, 100 * placement_share(p), 100 * base / p->freq_all, 100 * gap, ms);
        worst = fmax(worst, gap);
        prev = v;
        placement_free(&p);
    }
    printf("  worst measured gap (vs the LP upper bound, which is >= the optimum): %.5f%%\n", 100 * worst);
    free_freq(f, L);
}

static void test_degenerate(void)
{
    pi_error err = {{0}};
    uint64_t nb[3] = {10, 10, 10};
    float f0[4] = {0.5f, 0.1f, 0.9f, 0}, f1[4] = {0.9f, 0.9f, 0.9f, 0.9f}, f2[4] = {0, 0, 0, 0.2f};
    const float *freq[3] = {f0, f1, f2};
    placement_input in = {.n_layers = 3, .n_ff = 4, .freq = freq, .neuron_bytes = nb, .fixed_bytes = 1000,
                          .budget_bytes = 999};
    placement *p = placement_solve(&in, &err);
    CHECK(!p && strstr(err.msg, "below the fixed GPU part") && strstr(err.msg, "at least 1000 bytes"),
          "budget below the fixed part: '%s'", err.msg);
    in.budget_bytes = UINT64_MAX;
    p = placement_solve(&in, &err);
    CHECK(p, "%s", err.msg);
    check_result(&in, p);
    CHECK(p->hot_bytes == 120 && placement_share(p) == 1.0 && p->layers[2].n_hot == 4, "huge budget: all hot");
    placement_free(&p);
    in.budget_bytes = 1000 + 120;
    p = placement_solve(&in, &err);
    CHECK(p && p->hot_bytes == 120 && p->gpu_bytes == in.budget_bytes, "budget = whole model: all hot");
    placement_free(&p);
    /* 2 neurons out of five tied at 0.9: ties go to the lower rank, then the lower layer */
    in.budget_bytes = 1000 + 25;
    p = placement_solve(&in, &err);
    CHECK(p, "%s", err.msg);
    check_result(&in, p);
    CHECK(p->layers[1].n_hot == 1 && p->layers[1].hot[0] == 0 && p->layers[1].is_hot[0] && p->layers[0].n_hot == 1 &&
          p->layers[0].hot[0] == 2, "two picks: layer0 n%u, layer1 n%u", p->layers[0].n_hot, p->layers[1].n_hot);
    CHECK(fabs(placement_share(p) - 1.8 / 5.3) < 1e-6, "share %g", placement_share(p));
    CHECK(fabs(placement_layer_share(p, 0) - 0.9 / 1.5) < 1e-6 && placement_layer_share(p, 2) == 0, "layer shares");
    placement_free(&p);

    /* Bad frequencies are named. */
    f1[2] = NAN;
    CHECK(!placement_solve(&in, &err) && strstr(err.msg, "layer 1 neuron 2"), "NaN: '%s'", err.msg);
    f1[2] = -1;
    CHECK(!placement_solve(&in, &err) && strstr(err.msg, "layer 1 neuron 2"), "negative: '%s'", err.msg);
    f1[2] = 0.9f;
    nb[1] = 0;
    CHECK(!placement_solve(&in, &err) && strstr(err.msg, "layer 1"), "zero bytes: '%s'", err.msg);
    nb[1] = 10;

    /* Uniform (no profile): counts spread evenly, like plan.c's same-K. */
    uint64_t nb40[40];
    for (int l = 0; l < 40; l++)
        nb40[l] = 7;
    placement_input u = {.n_layers = 40, .n_ff = 100, .neuron_bytes = nb40, .budget_bytes = 7 * 1234 + 3};
    p = placement_solve(&u, &err);
    CHECK(p && p->uniform && p->freq_hash == 0, "%s", err.msg);
    check_result(&u, p);
    for (int l = 0; l < 40; l++)
        CHECK(p->layers[l].n_hot == 30 || p->layers[l].n_hot == 31, "uniform: layer %d has %u hot", l,
              p->layers[l].n_hot);
    CHECK(fabs(placement_share(p) - 1234.0 / 4000) < 1e-12, "uniform share %g", placement_share(p));
    placement_free(&p);
    printf("degenerate budgets, bad frequencies, uniform spread: ok\n");
}

static void test_model_and_cache(void)
{
    char path[512], cache[600], bad[600];
    test_tmp("placement_model.gguf", path, sizeof path);
    rand_model_shape sh = {.dim = 64, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2, .n_ff = 96,
                           .n_vocab = 48, .n_ctx = 128, .type = PI_TYPE_F16, .act = PI_ACT_RELU, .seed = 5};
    pi_error err = {{0}};
    CHECK(rand_model_write(path, &sh, &err) == 0, "%s", err.msg);
    pi_model *m = model_open(path, &err);
    CHECK(m, "%s", err.msg);
    float **f = power_law(3, 96, 0.2, 500, 3);
    placement_params pp = {.max_seqs = 2, .n_ctx = 64, .predictor_bytes = 4096};
    uint64_t fixed = plan_weight_bytes(m) + plan_kv_bytes(m, 2, 64) + 4096;
    CHECK(placement_fixed_bytes(m, &pp) == fixed, "fixed bytes");
    pp.budget_bytes = fixed + 100 * plan_neuron_bytes_layer(m, 0) + 17;
    placement *p = placement_for_model(m, &pp, (const float *const *)f, &err);
    CHECK(p, "%s", err.msg);
    CHECK(p->fixed_bytes == fixed && p->gpu_bytes <= pp.budget_bytes, "model plan bytes");
    CHECK(p->layers[0].n_hot + p->layers[1].n_hot + p->layers[2].n_hot == 100, "100 neurons bought");
    char hex[17];
    sidecar_model_hash(m->file, hex);
    CHECK(p->model_hash == strtoull(hex, NULL, 16) && p->model_hash != 0, "model hash = the sidecar's");
    CHECK(p->freq_hash == placement_freq_hash(3, 96, (const float *const *)f) && p->freq_hash != 0, "freq hash");

    CHECK(placement_cache_path("/x/m.gguf", (uint64_t)(12.6 * (1 << 30)), cache, sizeof cache, &err) == 0 &&
          !strcmp(cache, "/x/m.pi-plan-12902.gguf"), "cache path '%s'", cache);
    CHECK(placement_cache_path("/x/m.bin", 5ull << 20, cache, sizeof cache, &err) == 0 &&
          !strcmp(cache, "/x/m.bin.pi-plan-5.gguf"), "cache path '%s'", cache);
    CHECK(placement_cache_path("/x/m.gguf", 1, cache, 8, &err) < 0, "short buffer");
    CHECK(placement_cache_path(path, pp.budget_bytes, cache, sizeof cache, &err) == 0, "%s", err.msg);
    CHECK(placement_save(p, cache, &err) == 0, "%s", err.msg);

    placement_key key = {p->model_hash, p->budget_bytes, p->fixed_bytes, p->freq_hash};
    placement *q = placement_load(cache, &key, &err);
    CHECK(q, "%s", err.msg);
    CHECK(q->n_layers == 3 && q->n_ff == 96 && q->gpu_bytes == p->gpu_bytes && q->hot_bytes == p->hot_bytes &&
          q->cold_bytes == p->cold_bytes && q->freq_hot == p->freq_hot && q->freq_all == p->freq_all &&
          q->upper_bound == p->upper_bound && !q->uniform, "cache round trip: totals");
    for (uint32_t l = 0; l < 3; l++) {
        CHECK(q->layers[l].n_hot == p->layers[l].n_hot &&
              !memcmp(q->layers[l].hot, p->layers[l].hot, p->layers[l].n_hot * sizeof(uint32_t)) &&
              !memcmp(q->layers[l].is_hot, p->layers[l].is_hot, 96) &&
              q->layers[l].neuron_bytes == p->layers[l].neuron_bytes, "cache round trip: layer %u", l);
        CHECK(placement_layer_share(q, l) == placement_layer_share(p, l), "layer share");
    }
    placement_free(&q);

    /* Another model, budget, KV size or profile: rejected with the reason. */
    struct { placement_key k; const char *why; } wrong[] = {
        {{key.model_hash ^ 1, key.budget_bytes, key.fixed_bytes, key.freq_hash}, "model hash"},
        {{key.model_hash, key.budget_bytes + 1, key.fixed_bytes, key.freq_hash}, "VRAM budget"},
        {{key.model_hash, key.budget_bytes, key.fixed_bytes - 1, key.freq_hash}, "fixed GPU bytes"},
        {{key.model_hash, key.budget_bytes, key.fixed_bytes, 0}, "frequency profile"},
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        CHECK(!placement_load(cache, &wrong[i].k, &err) && strstr(err.msg, wrong[i].why), "wrong %s: '%s'",
              wrong[i].why, err.msg);
    }
    printf("cache rejects: %s\n", err.msg);
    CHECK(!placement_load(path, &key, &err) && strstr(err.msg, "not a pi plan cache"), "model as cache: '%s'",
          err.msg);
    test_tmp("placement_missing.gguf", bad, sizeof bad);
    remove(bad);
    CHECK(!placement_load(bad, &key, &err), "missing file");

    /* A tampered cache: out-of-order indices, then a plan over its budget. */
    for (int t = 0; t < 2; t++) {
        placement *r = placement_load(cache, &key, &err);
        CHECK(r, "%s", err.msg);
        if (t == 0 && r->layers[0].n_hot >= 2) {
            uint32_t x = r->layers[0].hot[0];
            r->layers[0].hot[0] = r->layers[0].hot[1];
            r->layers[0].hot[1] = x;
        } else {
            r->budget_bytes = r->gpu_bytes - 1;
        }
        test_tmp("placement_bad.gguf", bad, sizeof bad);
        CHECK(placement_save(r, bad, &err) == 0, "%s", err.msg);
        placement_key k2 = key;
        k2.budget_bytes = r->budget_bytes;
        placement_free(&r);
        CHECK(!placement_load(bad, &k2, &err) &&
                  (strstr(err.msg, "out of order") || strstr(err.msg, "over its budget")),
              "tampered cache %d: '%s'", t, err.msg);
    }

    /* Uniform through the model path; a cache for it keys on freq hash 0. */
    placement_free(&p);
    p = placement_for_model(m, &pp, NULL, &err);
    CHECK(p && p->uniform && p->layers[0].n_hot >= 33 && p->layers[0].n_hot <= 34, "uniform model plan");
    pp.max_seqs = 0;
    CHECK(!placement_for_model(m, &pp, NULL, &err) && strstr(err.msg, "max_seqs"), "max_seqs 0");
    placement_free(&p);
    remove(cache);
    remove(bad);
    free_freq(f, 3);
    model_close(&m);
    printf("model plan and cache round trip: ok\n");
}

/* A real profile: stories260K as a ReLU model over 1000 corpus tokens,
 * neuron sizes made unequal by layer (3/4/5 units) so the greedy is not
 * trivially exact; greedy vs the exact DP at every capacity. */
static void test_real_profile(void)
{
    const char *dir = getenv("PI_SHARED") ? getenv("PI_SHARED") : "../shared";
    char ckpt[512], tok[512], corpus[512], path[512];
    snprintf(ckpt, sizeof ckpt, "%s/models/stories260K.bin", dir);
    snprintf(tok, sizeof tok, "%s/models/tok512.bin", dir);
    snprintf(corpus, sizeof corpus, "%s/corpus/gutenberg-train.txt.xz", dir);
    FILE *probe = fopen(ckpt, "rb");
    if (!probe) {
        printf("real profile: skipped (%s absent)\n", ckpt);
        return;
    }
    fclose(probe);
    pi_error err = {{0}};
    test_tmp("placement_relu260k.gguf", path, sizeof path);
    llama2c_info info;
    CHECK(llama2c_import(ckpt, tok, path, PI_TYPE_F32, PI_ACT_RELU, &info, &err) == 0, "%s", err.msg);
    pi_model *m = model_open(path, &err);
    CHECK(m, "%s", err.msg);
    tokenizer *tk = tokenizer_from_gguf(m->file, &err);
    CHECK(tk, "%s", err.msg);
    int32_t *ids = NULL;
    size_t n_ids = 0;
    CHECK(profile_tokenize_corpus(corpus, tk, 1000, &ids, &n_ids, &err) == 0, "%s", err.msg);
    pi_sidecar *sc = sidecar_new(m, &err);
    CHECK(sc, "%s", err.msg);
    profile_opts o = {.window = 128, .bos = tokenizer_bos(tk)};
    CHECK(profile_run(m, ids, n_ids, &o, sc, &err) == 0, "%s", err.msg);
    const float *freq[64];
    uint64_t nb[64], total = 0;
    CHECK(m->n_layers <= 64, "layers");
    for (uint32_t l = 0; l < m->n_layers; l++) {
        freq[l] = sidecar_freq(sc, l);
        nb[l] = 3 + l % 3;
        total += nb[l] * m->n_ff;
    }
    placement_input in = {.n_layers = m->n_layers, .n_ff = m->n_ff, .freq = freq, .neuron_bytes = nb};
    double *opt = dp_all(&in, total), worst = 0, worst10 = 0, prev = 0;
    uint64_t worst_at = 0;
    for (uint64_t c = 0; c <= total; c++) {
        in.budget_bytes = c;
        placement *p = placement_solve(&in, &err);
        CHECK(p, "%s", err.msg);
        double v = check_result(&in, p);
        double gap = opt[c] > 0 ? (opt[c] - v) / opt[c] : 0;
        /* the proven bound everywhere: less than one neuron (frequency <= 1) */
        CHECK(v <= opt[c] + 1e-9 && v > opt[c] - 1.0, "real profile, capacity %" PRIu64 ": greedy %g vs optimum %g",
              c, v, opt[c]);
        /* 1% once the budget holds a tenth of the FFN (a few dozen neurons
         * at this toy size; thousands at 7B/13B) */
        CHECK(c < total / 10 || gap <= 0.01, "real profile, capacity %" PRIu64 ": gap %.4f%% over 1%%", c, 100 * gap);
        CHECK(v >= prev - 1e-9, "a larger budget serves less");
        if (gap > worst)
            worst = gap, worst_at = c;
        if (c >= total / 10)
            worst10 = fmax(worst10, gap);
        prev = v;
        placement_free(&p);
    }
    printf("real profile (stories260K ReLU, %" PRIu64 " tokens, %u x %u, sizes 3/4/5 units), greedy vs the exact DP "
           "at all %" PRIu64 " capacities: worst gap %.4f%% (at capacity %" PRIu64 ", %.1f%% of the FFN); "
           "%.4f%% from 10%% of the FFN up\n", sc->tokens, m->n_layers, m->n_ff, total + 1, 100 * worst, worst_at,
           100.0 * (double)worst_at / (double)total, 100 * worst10);
    free(opt);
    free(ids);
    sidecar_free(&sc);
    tokenizer_free(&tk);
    model_close(&m);
    remove(path);
}

int main(void)
{
    test_small_random();
    test_medium_dp();
    test_13b(0);
    test_13b(1);
    test_degenerate();
    test_model_and_cache();
    test_real_profile();
    return 0;
}
