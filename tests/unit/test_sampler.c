/* Proves the sampler picks what each step says: greedy argmax, seeded reproducibility, the drawn distribution, and exactly which tokens top-k/top-p/min-p/penalty remove. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "sampler.h"

#define NV 5
#define DRAWS 200000

static sampler_params plain(void)
{
    sampler_params p = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f,
                        .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 42, .has_seed = 1};
    return p;
}

static sampler *make(const sampler_params *p, uint32_t n_vocab)
{
    pi_error err = {{0}};
    sampler *s = sampler_new(p, n_vocab, &err);
    CHECK(s, "sampler_new: %s", err.msg);
    return s;
}

/* Draws DRAWS tokens from logits (copied each time, since the sampler may
 * modify them) and returns the frequencies. */
static void frequencies(const sampler_params *p, const float *logits, double *freq)
{
    sampler *s = make(p, NV);
    size_t count[NV] = {0};
    float buf[NV];
    for (int i = 0; i < DRAWS; i++) {
        memcpy(buf, logits, sizeof buf);
        int32_t t = sampler_sample(s, buf, NULL, 0);
        CHECK(t >= 0 && t < NV, "token %d out of range", t);
        count[t]++;
    }
    for (int i = 0; i < NV; i++)
        freq[i] = (double)count[i] / DRAWS;
    sampler_free(&s);
    CHECK(s == NULL, "sampler_free must null the pointer");
}

/* A known distribution, as logits = log p (tokens in a scrambled order so
 * the sort matters). */
static const double P[NV] = {0.10, 0.40, 0.05, 0.25, 0.20};

static void known_logits(float *l)
{
    for (int i = 0; i < NV; i++)
        l[i] = (float)log(P[i]) + 3.0f; /* an offset must not matter */
}

static void test_greedy(void)
{
    sampler_params p = plain();
    p.temperature = 0;
    sampler *s = make(&p, 6);
    float l[6] = {0.1f, 2.0f, -1.0f, 3.5f, 3.5f, NAN};
    CHECK(sampler_sample(s, l, NULL, 0) == 3, "greedy must pick the argmax, lowest id on ties");
    float neg[6] = {-5, -4, -3, -2, -1.5f, -1.7f};
    CHECK(sampler_sample(s, neg, NULL, 0) == 4, "greedy over negative logits");
    sampler_free(&s);
}

static void test_seeds(void)
{
    float base[64];
    for (int i = 0; i < 64; i++)
        base[i] = (float)sin(i * 0.7) * 2.0f;
    int32_t a[100], b[100], c[100];
    uint64_t seeds[3] = {7, 7, 8};
    int32_t *out[3] = {a, b, c};
    for (int r = 0; r < 3; r++) {
        sampler_params p = plain();
        p.seed = seeds[r];
        sampler *s = make(&p, 64);
        CHECK(sampler_seed(s) == seeds[r], "sampler_seed must report the given seed");
        for (int i = 0; i < 100; i++) {
            float l[64];
            memcpy(l, base, sizeof l);
            out[r][i] = sampler_sample(s, l, NULL, 0);
        }
        sampler_free(&s);
    }
    CHECK(!memcmp(a, b, sizeof a), "same seed must give the same sequence");
    CHECK(memcmp(a, c, sizeof a) != 0, "different seeds must give different sequences");

    /* No seed: one is picked, reported, and reproduces the run when given. */
    sampler_params p = plain();
    p.has_seed = 0;
    sampler *s1 = make(&p, 64);
    p.seed = sampler_seed(s1);
    p.has_seed = 1;
    sampler *s2 = make(&p, 64);
    for (int i = 0; i < 50; i++) {
        float l1[64], l2[64];
        memcpy(l1, base, sizeof l1);
        memcpy(l2, base, sizeof l2);
        CHECK(sampler_sample(s1, l1, NULL, 0) == sampler_sample(s2, l2, NULL, 0),
              "the reported seed must reproduce the run");
    }
    sampler_free(&s1);
    sampler_free(&s2);
}

static void test_top_k_1_is_greedy(void)
{
    sampler_params p = plain();
    p.top_k = 1;
    p.temperature = 1.5f;
    sampler *s = make(&p, 64);
    for (int i = 0; i < 1000; i++) {
        float l[64];
        for (int j = 0; j < 64; j++)
            l[j] = (float)sin((i + 1) * (j + 3) * 0.37);
        float copy[64];
        memcpy(copy, l, sizeof l);
        int32_t best = 0;
        for (int j = 1; j < 64; j++)
            if (copy[j] > copy[best])
                best = j;
        CHECK(sampler_sample(s, l, NULL, 0) == best, "top-k 1 must equal greedy (draw %d)", i);
    }
    sampler_free(&s);
}

static void test_distribution(void)
{
    float l[NV];
    known_logits(l);
    double f[NV];
    sampler_params p = plain();
    frequencies(&p, l, f);
    for (int i = 0; i < NV; i++) {
        printf("token %d: p %.4f freq %.4f\n", i, P[i], f[i]);
        CHECK(fabs(f[i] - P[i]) < 0.005, "token %d: freq %.4f vs p %.4f (tolerance 0.005)", i, f[i], P[i]);
    }

    /* Temperature 2 flattens: p_i ~ sqrt(P_i). */
    p.temperature = 2.0f;
    frequencies(&p, l, f);
    double z = 0;
    for (int i = 0; i < NV; i++)
        z += sqrt(P[i]);
    for (int i = 0; i < NV; i++)
        CHECK(fabs(f[i] - sqrt(P[i]) / z) < 0.005, "temp 2, token %d: freq %.4f vs %.4f", i, f[i], sqrt(P[i]) / z);
}

static void test_truncation(void)
{
    float l[NV];
    known_logits(l);
    double f[NV];

    /* top-k 2 keeps tokens 1 (0.40) and 3 (0.25), renormalised. */
    sampler_params p = plain();
    p.top_k = 2;
    frequencies(&p, l, f);
    CHECK(f[0] == 0 && f[2] == 0 && f[4] == 0, "top-k 2 kept a dropped token: %g %g %g", f[0], f[2], f[4]);
    CHECK(fabs(f[1] - 0.40 / 0.65) < 0.005 && fabs(f[3] - 0.25 / 0.65) < 0.005, "top-k 2 renormalised: %g %g", f[1], f[3]);

    /* top-p 0.7: 0.40 + 0.25 = 0.65 < 0.7, so 0.20 (token 4) is added: 0.85 >= 0.7. */
    p = plain();
    p.top_p = 0.7f;
    frequencies(&p, l, f);
    CHECK(f[0] == 0 && f[2] == 0, "top-p 0.7 kept a dropped token: %g %g", f[0], f[2]);
    CHECK(fabs(f[1] - 0.40 / 0.85) < 0.005 && fabs(f[3] - 0.25 / 0.85) < 0.005 && fabs(f[4] - 0.20 / 0.85) < 0.005,
          "top-p 0.7 renormalised: %g %g %g", f[1], f[3], f[4]);

    /* At least one token is kept: top-p 0.01 keeps only the most likely. */
    p = plain();
    p.top_p = 0.01f;
    frequencies(&p, l, f);
    CHECK(f[1] == 1.0, "top-p 0.01 must keep only the most likely token: %g", f[1]);

    /* min-p 0.3: threshold 0.3 * 0.40 = 0.12 drops 0.10 and 0.05. */
    p = plain();
    p.min_p = 0.3f;
    frequencies(&p, l, f);
    CHECK(f[0] == 0 && f[2] == 0, "min-p 0.3 kept a dropped token: %g %g", f[0], f[2]);
    CHECK(fabs(f[1] - 0.40 / 0.85) < 0.005 && fabs(f[4] - 0.20 / 0.85) < 0.005, "min-p 0.3 renormalised: %g %g", f[1], f[4]);
    /* min-p 0.2: threshold 0.08 keeps 0.10, still drops 0.05. */
    p.min_p = 0.2f;
    frequencies(&p, l, f);
    CHECK(f[2] == 0 && f[0] > 0.09, "min-p 0.2: token 2 must go, token 0 stay: %g %g", f[2], f[0]);
}

static void test_penalty(void)
{
    sampler_params p = plain();
    p.temperature = 0;
    p.repeat_penalty = 1.5f;
    p.repeat_last_n = 3;
    sampler *s = make(&p, 6);
    /* Token 2 leads (3.0); penalised it becomes 2.0 < 2.5 of token 4. */
    float l[6] = {0.5f, -1.0f, 3.0f, 1.0f, 2.5f, 0.0f};
    int32_t hist[4] = {4, 2, 2, 1};  /* token 4 is outside the last 3 */
    int32_t t = sampler_sample(s, l, hist, 4);
    CHECK(t == 4, "penalty must move the argmax from 2 to 4, got %d", t);
    CHECK(l[2] == 2.0f, "positive logit divided once (despite two occurrences): %g", l[2]);
    CHECK(l[1] == -1.5f, "negative logit multiplied: %g", l[1]);
    CHECK(l[4] == 2.5f && l[0] == 0.5f, "tokens outside the window untouched");

    /* Negative case: token 1 at -0.1 leads, penalised to -0.15 it loses to -0.12. */
    float n[6] = {-3, -0.1f, -0.12f, -5, -5, -5};
    int32_t h2[1] = {1};
    CHECK(sampler_sample(s, n, h2, 1) == 2, "penalty on a negative leading logit");

    /* Penalty 1 changes nothing. */
    sampler_free(&s);
    p.repeat_penalty = 1.0f;
    s = make(&p, 6);
    float m[6] = {0.5f, -1.0f, 3.0f, 1.0f, 2.5f, 0.0f};
    CHECK(sampler_sample(s, m, hist, 4) == 2 && m[2] == 3.0f, "penalty 1 must be off");
    sampler_free(&s);
}

static void test_bad_params(void)
{
    pi_error err = {{0}};
    sampler_params p = plain();
    p.top_p = 0;
    CHECK(!sampler_new(&p, 10, &err) && strstr(err.msg, "top-p"), "top-p 0 must be rejected: %s", err.msg);
    p = plain();
    p.temperature = -1;
    CHECK(!sampler_new(&p, 10, &err) && strstr(err.msg, "temperature"), "negative temperature rejected");
    p = plain();
    CHECK(!sampler_new(&p, 0, &err), "empty vocabulary rejected");
}

/* Larger vocab, top-k smaller than it: the sample is always among the k best. */
static void test_top_k_large(void)
{
    enum { V = 1000, K = 10 };
    static float base[V];
    for (int i = 0; i < V; i++)
        base[i] = (float)((i * 7919) % V) / 100.0f; /* a permutation of 0..9.99 */
    sampler_params p = plain();
    p.top_k = K;
    p.top_p = 1.0f;
    sampler *s = make(&p, V);
    static float l[V];
    for (int i = 0; i < 20000; i++) {
        memcpy(l, base, sizeof l);
        int32_t t = sampler_sample(s, l, NULL, 0);
        CHECK(base[t] >= (V - K) / 100.0f - 1e-4f, "top-k %d sampled a token ranked below: logit %g", K, base[t]);
    }
    sampler_free(&s);
}

/* With top-k off, min-p sorts only the tokens it can keep; that shortcut
 * must draw exactly what the full sort draws (top-k V-1 takes the full
 * path and drops only the worst token, far below the min-p cut). */
static void test_min_p_shortcut(void)
{
    enum { V = 4096 };
    static float base[V], l1[V], l2[V];
    for (int i = 0; i < V; i++)
        base[i] = (float)sin(i * 12.9898) * 8.0f;
    sampler_params p = plain();
    p.temperature = 0.9f;
    p.top_p = 0.9f;
    p.min_p = 0.05f;
    sampler *full = NULL, *fast = NULL;
    p.top_k = V - 1;
    full = make(&p, V);
    p.top_k = 0;
    fast = make(&p, V);
    for (int i = 0; i < 1000; i++) {
        base[(i * 31) % V] += 1.0f; /* vary the distribution between draws */
        memcpy(l1, base, sizeof l1);
        memcpy(l2, base, sizeof l2);
        int32_t a = sampler_sample(full, l1, NULL, 0), b = sampler_sample(fast, l2, NULL, 0);
        CHECK(a == b, "draw %d: full sort %d, min-p shortcut %d", i, a, b);
    }
    sampler_free(&full);
    sampler_free(&fast);
}

int main(void)
{
    test_greedy();
    test_seeds();
    test_top_k_1_is_greedy();
    test_distribution();
    test_truncation();
    test_penalty();
    test_bad_params();
    test_top_k_large();
    test_min_p_shortcut();
    printf("test_sampler: ok\n");
    return 0;
}
