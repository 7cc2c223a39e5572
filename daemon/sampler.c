#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

typedef struct cand {
    int32_t id;
    float logit;    /* then the unnormalised probability */
} cand;

struct sampler {
    sampler_params p;
    uint32_t n_vocab;
    uint64_t seed;
    uint64_t rng[4];    /* xoshiro256** state */
    cand *cands;        /* n_vocab: the top-k heap, then sorted best first */
    uint8_t *seen;      /* n_vocab, all 0 between calls: dedupes the penalty window */
};

void sampler_params_from_gen(sampler_params *p, const gen_params *g)
{
    p->temperature = g->temperature;
    p->top_k = g->top_k;
    p->top_p = g->top_p;
    p->min_p = g->min_p;
    p->repeat_penalty = g->repeat_penalty;
    p->repeat_last_n = g->repeat_last_n;
    p->seed = g->seed;
    p->has_seed = g->has_seed;
}

/* ---- PRNG: splitmix64 expands the seed, xoshiro256** draws ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(uint64_t s[4])
{
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(uint64_t s[4])
{
    return (double)(rng_next(s) >> 11) * 0x1.0p-53;
}

static uint64_t random_seed(void)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) == (ssize_t)sizeof seed)
        return seed;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^ ((uint64_t)getpid() << 32);
}

/* ---- construction ---- */

sampler *sampler_new(const sampler_params *p, uint32_t n_vocab, pi_error *err)
{
    if (n_vocab == 0 || n_vocab > INT32_MAX) {
        pi_error_set(err, "sampler: vocabulary size %u is out of range (1..%d)", n_vocab, INT32_MAX);
        return NULL;
    }
    if (!(p->temperature >= 0) || !isfinite(p->temperature)) {
        pi_error_set(err, "sampler: temperature %g must be a finite number >= 0", (double)p->temperature);
        return NULL;
    }
    if (!(p->top_p > 0 && p->top_p <= 1)) {
        pi_error_set(err, "sampler: top-p %g must be in (0, 1]", (double)p->top_p);
        return NULL;
    }
    if (!(p->min_p >= 0 && p->min_p <= 1)) {
        pi_error_set(err, "sampler: min-p %g must be in [0, 1]", (double)p->min_p);
        return NULL;
    }
    if (!(p->repeat_penalty > 0) || !isfinite(p->repeat_penalty)) {
        pi_error_set(err, "sampler: repeat penalty %g must be a finite number > 0", (double)p->repeat_penalty);
        return NULL;
    }
    if (p->top_k < 0 || p->repeat_last_n < 0) {
        pi_error_set(err, "sampler: top-k (%d) and repeat-last-n (%d) must be >= 0", p->top_k, p->repeat_last_n);
        return NULL;
    }
    sampler *s = calloc(1, sizeof *s);
    if (!s) {
        pi_error_set(err, "sampler: out of memory");
        return NULL;
    }
    s->p = *p;
    s->n_vocab = n_vocab;
    s->cands = malloc((size_t)n_vocab * sizeof *s->cands);
    s->seen = calloc(n_vocab, 1);
    if (!s->cands || !s->seen) {
        sampler_free(&s);
        pi_error_set(err, "sampler: out of memory for %u candidates", n_vocab);
        return NULL;
    }
    s->seed = p->has_seed ? p->seed : random_seed();
    uint64_t x = s->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
    return s;
}

void sampler_free(sampler **sp)
{
    if (!sp || !*sp)
        return;
    sampler *s = *sp;
    free(s->cands);
    free(s->seen);
    free(s);
    *sp = NULL;
}

uint64_t sampler_seed(const sampler *s)
{
    return s->seed;
}

/* ---- the steps ---- */

/* CTRL / llama.cpp rule, once per distinct token in the window: a positive
 * logit is divided by the penalty, a negative one multiplied, so both move
 * away from being chosen when penalty > 1. */
static void apply_penalty(sampler *s, float *logits, const int32_t *history, size_t n_history)
{
    float r = s->p.repeat_penalty;
    if (r == 1.0f || s->p.repeat_last_n == 0 || !history || n_history == 0)
        return;
    size_t n = (size_t)s->p.repeat_last_n < n_history ? (size_t)s->p.repeat_last_n : n_history;
    const int32_t *w = history + (n_history - n);
    for (size_t j = 0; j < n; j++) {
        int32_t id = w[j];
        if (id < 0 || (uint32_t)id >= s->n_vocab || s->seen[id])
            continue;
        s->seen[id] = 1;
        logits[id] = logits[id] > 0 ? logits[id] / r : logits[id] * r;
    }
    for (size_t j = 0; j < n; j++)
        if (w[j] >= 0 && (uint32_t)w[j] < s->n_vocab)
            s->seen[w[j]] = 0;
}

static int32_t argmax(const float *logits, uint32_t n)
{
    int32_t best = 0;
    float bv = -INFINITY;
    for (uint32_t i = 0; i < n; i++)
        if (logits[i] > bv) {   /* strict: the lowest id wins ties; NaN never wins */
            bv = logits[i];
            best = (int32_t)i;
        }
    return best;
}

/* a ranks before b: higher logit, then lower id (a total order, so the
 * result does not depend on the scan order). */
static int better(const cand *a, const cand *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

/* Sift down in a heap whose root is the worst candidate. */
static void sift_down(cand *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && better(&h[w], &h[l]))
            w = l;
        if (r < n && better(&h[w], &h[r]))
            w = r;
        if (w == i)
            return;
        cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* Sorts h[0..n) best first in place: heapify, then move the root (the
 * worst) to the end repeatedly. */
static void heap_sort(cand *h, size_t n)
{
    for (size_t j = n / 2; j-- > 0;)
        sift_down(h, n, j);
    for (size_t end = n; end-- > 1;) {
        cand t = h[0];
        h[0] = h[end];
        h[end] = t;
        sift_down(h, end, 0);
    }
}

/* Leaves the best k of the logits in s->cands[0..k), sorted best first:
 * a size-k heap over the vocabulary, then heapsort (O(V log k), no
 * allocation; qsort may allocate). */
static void top_k_sorted(sampler *s, const float *logits, size_t k)
{
    cand *h = s->cands;
    size_t n = 0;
    for (uint32_t i = 0; i < s->n_vocab; i++) {
        cand c = {(int32_t)i, isnan(logits[i]) ? -INFINITY : logits[i]};
        if (n < k) {
            h[n++] = c;
            if (n == k)
                for (size_t j = k / 2; j-- > 0;)
                    sift_down(h, k, j);
        } else if (better(&c, &h[0])) {
            h[0] = c;
            sift_down(h, k, 0);
        }
    }
    heap_sort(h, n);
}

/* With top-k off and min-p on, only tokens with exp((l - max) / T) >= min_p
 * can survive, so only those are sorted; *sum_all gets the softmax
 * denominator over the whole vocabulary so top-p sees the same numbers as
 * a full sort would. Returns the number kept (>= 1); cands hold logits. */
static size_t min_p_prefilter(sampler *s, const float *logits, double *sum_all)
{
    float max = -INFINITY;
    for (uint32_t i = 0; i < s->n_vocab; i++)
        if (logits[i] > max)
            max = logits[i];
    double sum = 0;
    size_t n = 0;
    for (uint32_t i = 0; i < s->n_vocab; i++) {
        if (!(logits[i] > -INFINITY)) /* NaN and -inf have probability 0 */
            continue;
        float e = expf((logits[i] - max) / s->p.temperature);
        sum += e;
        if (e >= s->p.min_p)
            s->cands[n++] = (cand){(int32_t)i, logits[i]};
    }
    heap_sort(s->cands, n);
    *sum_all = sum;
    return n;
}

int32_t sampler_sample(sampler *s, float *logits, const int32_t *history, size_t n_history)
{
    apply_penalty(s, logits, history, n_history);
    if (s->p.temperature == 0)
        return argmax(logits, s->n_vocab);

    size_t k = s->n_vocab;
    if (s->p.top_k > 0 && (size_t)s->p.top_k < k)
        k = (size_t)s->p.top_k;
    double sum = 0, sum_all = -1;
    if (k == s->n_vocab && s->p.min_p > 0) {
        k = min_p_prefilter(s, logits, &sum_all);
        if (k == 0) /* every logit is NaN or -inf; take the first id */
            return 0;
    } else {
        top_k_sorted(s, logits, k);
    }
    cand *c = s->cands;
    float max = c[0].logit;
    if (max == -INFINITY) /* nothing is possible; take the first id */
        return c[0].id;

    /* Softmax with temperature, unnormalised: c[0] gets exactly 1. */
    for (size_t i = 0; i < k; i++) {
        c[i].logit = expf((c[i].logit - max) / s->p.temperature);
        sum += c[i].logit;
    }
    if (sum_all >= 0)
        sum = sum_all;
    size_t n = k;
    if (s->p.top_p < 1.0f) {
        double cum = 0, target = (double)s->p.top_p * sum;
        for (size_t i = 0; i < k; i++) {
            cum += c[i].logit;
            if (cum >= target) {
                n = i + 1;
                break;
            }
        }
    }
    if (s->p.min_p > 0) {
        float thresh = s->p.min_p * c[0].logit;
        size_t m = 1;
        while (m < n && c[m].logit >= thresh)
            m++;
        n = m;
    }
    sum = 0;
    size_t last = 0;
    for (size_t i = 0; i < n; i++) {
        sum += c[i].logit;
        if (c[i].logit > 0)
            last = i;
    }
    double r = rng_uniform(s->rng) * sum, cum = 0;
    for (size_t i = 0; i < n; i++) {
        cum += c[i].logit;
        if (r < cum)
            return c[i].id;
    }
    return c[last].id; /* rounding left r at the very top */
}
