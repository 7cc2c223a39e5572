/* Synthetic ReLU models whose real activations follow a chosen power law
 * (synth.h; the construction is explained in docs/formats.md, "Synthetic
 * models"). In short, with F = [dim/2, dim) the "feature" dimensions and
 * W = [1, dim/2) the "work" dimensions of the residual stream:
 *  - every token embedding holds C at dimension 0 and unit-variance noise
 *    elsewhere; attention and FFN outputs write only W, so dimension 0 stays
 *    C and F stays the token's embedding at every layer;
 *  - gate row j reads dimension 0 (weight b_j) and F (a unit vector g_j);
 *    ffn_norm is 1, and RMSNorm scales every input alike, so the sign of
 *    gate_j.x is the sign of b_j*C + g_j.e, and g_j.e has mean 0 and
 *    variance 1 over tokens: b_j = Phi^-1(p_j) / C fires neuron j with
 *    probability p_j, at any depth;
 *  - g_j = sqrt(1 - eta^2) * (a_j . U) + eta * n_j with U a rank-8
 *    orthonormal basis of F per layer, a_j a unit 8-vector and n_j a unit
 *    vector orthogonal to U: the predictor computes the U part and the bias
 *    exactly; eta is what it cannot see;
 *  - up_j.x * rms = UP_BIAS + (unit noise) > 0, so a neuron is active
 *    (relu(gate) * up > 0) exactly when its gate fires.
 * Every value comes from a counter-based generator keyed by (seed, tensor,
 * layer, row): tensors can be produced in any order, one at a time. */
#include "synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "pi_parallel.h"
#include "synth_vocab.h"

#define SYNTH_C 4.0f        /* residual dimension 0; above any other embedding entry (sqrt 3) */
#define UP_BIAS 6.0f        /* up_j.x * rms = 6 + N(0, 1): negative with probability ~1e-9 */
#define GATE_NOISE 0.25     /* eta: std of the part of a gate the predictor does not see */
#define PRED_MARGIN 1.0     /* the predictor fires at logit > -margin * eta: leans to recall */
#define P_MAX 0.995         /* no neuron fires always */
#define K SYNTH_PRED_RANK

static const synth_shape shapes[] = {
    {"tiny", 64, 2, 256, 4, 4, 512, 512},
    {"7b", 4096, 32, 11008, 32, 32, 32000, 4096},
    {"13b", 5120, 40, 13824, 40, 40, 32000, 4096},
    {"40b", 8192, 60, 22016, 64, 8, 32000, 4096},
    {"70b", 8192, 80, 28672, 64, 8, 32000, 4096},
};

typedef enum tkind {
    T_EMBD, T_OUT_NORM, T_OUTPUT, T_ATTN_NORM, T_Q, T_K, T_V, T_O, T_FFN_NORM,
    T_GATE, T_UP, T_DOWN, T_DOWN_T, T_FC1, T_FC2,
    S_PERM, S_BASIS, S_DIR,   /* per-layer streams that are not tensors */
} tkind;

typedef struct synth_ctx synth_ctx;

typedef struct synth_tensor {
    synth_ctx *c;
    tkind kind;
    uint32_t layer;
    pi_type type;
    uint64_t rows, cols;
} synth_tensor;

struct synth_ctx {
    synth_options o;
    uint32_t dim, n_ff, f0, nf;     /* features: [f0, f0 + nf) */
    double *mu;                     /* by rank (0 = hottest): Phi^-1(p) */
    float *p;                       /* by rank */
    float down_step;                /* down weights are integer multiples of this power of two */
    float wo_scale;
    /* the layer whose neuron parameters are loaded (UINT32_MAX: none) */
    uint32_t layer;
    uint32_t *rank;                 /* n_ff */
    float *dir;                     /* n_ff x K: a_j */
    float *basis;                   /* K x nf: U */
    uint32_t n_threads;
    float *rows;                    /* scratch: a row of max(dim, n_ff) per thread */
    size_t row_cap;
    synth_progress_fn progress;
    void *ud;
    uint64_t done, total;
};

/* ---- counter-based random numbers (splitmix64) ---- */

static uint64_t mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

typedef struct rng {
    uint64_t s;
} rng;

static rng rng_at(const synth_ctx *c, tkind kind, uint32_t layer, uint64_t row)
{
    uint64_t k = mix64(c->o.seed ^ mix64(((uint64_t)kind << 32 | layer) + 0x1234567ull));
    rng r = {mix64(k ^ mix64(row + 0x9e3779b97f4a7c15ull))};
    return r;
}

static uint64_t rng_next(rng *r)
{
    return mix64(r->s += 0x9e3779b97f4a7c15ull);
}

/* Uniform on [-sqrt 3, sqrt 3): mean 0, variance 1. */
static float rng_unit(rng *r)
{
    return ((float)(rng_next(r) >> 40) * (2.0f / 16777216.0f) - 1.0f) * 1.7320508f;
}

/* ---- the firing distribution ---- */

static double phi(double x)
{
    return 0.5 * erfc(-x / sqrt(2.0));
}

static double phi_inv(double p)
{
    double lo = -12.0, hi = 12.0;
    for (int i = 0; i < 80; i++) {
        double mid = 0.5 * (lo + hi);
        if (phi(mid) < p)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

/* p_r = min(P_MAX, k (r+1)^-skew) with k such that the mean is active. */
static int firing_by_rank(synth_ctx *c, pi_error *err)
{
    uint32_t n = c->n_ff;
    double lo = -60.0, hi = 60.0, s = c->o.skew;
    for (int it = 0; it < 200; it++) {
        double lk = 0.5 * (lo + hi), sum = 0.0;
        for (uint32_t r = 0; r < n; r++)
            sum += fmin(P_MAX, exp(lk - s * log((double)r + 1.0)));
        if (sum / n < c->o.active)
            lo = lk;
        else
            hi = lk;
    }
    double mean = 0.0;
    for (uint32_t r = 0; r < n; r++) {
        double p = fmin(P_MAX, exp(0.5 * (lo + hi) - s * log((double)r + 1.0)));
        c->p[r] = (float)p;
        c->mu[r] = phi_inv(p);
        mean += p;
    }
    if (fabs(mean / n - c->o.active) > 1e-3)
        return pi_error_set(err, "synth: --active %g cannot be reached with --skew %g (at most %g per neuron)",
                            c->o.active, c->o.skew, P_MAX);
    return 0;
}

/* E[relu(z)^2] for z ~ N(mu, 1). */
static double relu_sq(double mu)
{
    return (mu * mu + 1.0) * phi(mu) + mu * exp(-0.5 * mu * mu) / sqrt(2.0 * M_PI);
}

/* Output scales: each FFN and attention adds about 1/(2 n_layers) of
 * variance to the work dimensions, so the stream stays near unit scale. */
static void output_scales(synth_ctx *c)
{
    double ex = 0.0;
    for (uint32_t r = 0; r < c->n_ff; r++)
        ex += relu_sq(c->mu[r]);
    double target = 1.0 / sqrt(2.0 * c->o.shape.n_layers * UP_BIAS * UP_BIAS * ex);
    double level_std = c->o.type == PI_TYPE_Q4_0 ? 4.32 : 73.6;   /* of the integer levels below */
    c->down_step = (float)ldexp(1.0, (int)lround(log2(target / level_std)));
    c->wo_scale = (float)(1.0 / sqrt(2.0 * c->o.shape.n_layers * c->dim));
}

/* Loads layer l's ranks, basis U and directions a_j. */
static void layer_prepare(synth_ctx *c, uint32_t l)
{
    if (c->layer == l)
        return;
    c->layer = l;
    rng r = rng_at(c, S_PERM, l, 0);
    for (uint32_t j = 0; j < c->n_ff; j++)
        c->rank[j] = j;
    for (uint32_t j = c->n_ff - 1; j > 0; j--) {
        uint32_t i = (uint32_t)(rng_next(&r) % ((uint64_t)j + 1));
        uint32_t t = c->rank[i];
        c->rank[i] = c->rank[j];
        c->rank[j] = t;
    }
    /* Gram-Schmidt (twice, for orthogonality at float precision). */
    for (uint32_t k = 0; k < K; k++) {
        float *u = c->basis + (size_t)k * c->nf;
        rng b = rng_at(c, S_BASIS, l, k);
        for (uint32_t i = 0; i < c->nf; i++)
            u[i] = rng_unit(&b);
        for (int pass = 0; pass < 2; pass++)
            for (uint32_t q = 0; q < k; q++) {
                const float *v = c->basis + (size_t)q * c->nf;
                double d = 0.0;
                for (uint32_t i = 0; i < c->nf; i++)
                    d += (double)u[i] * v[i];
                for (uint32_t i = 0; i < c->nf; i++)
                    u[i] -= (float)d * v[i];
            }
        double nn = 0.0;
        for (uint32_t i = 0; i < c->nf; i++)
            nn += (double)u[i] * u[i];
        for (uint32_t i = 0; i < c->nf; i++)
            u[i] = (float)(u[i] / sqrt(nn));
    }
    for (uint32_t j = 0; j < c->n_ff; j++) {
        float *a = c->dir + (size_t)j * K;
        rng d = rng_at(c, S_DIR, l, j);
        double nn = 0.0;
        for (uint32_t k = 0; k < K; k++) {
            a[k] = rng_unit(&d);
            nn += (double)a[k] * a[k];
        }
        for (uint32_t k = 0; k < K; k++)
            a[k] = (float)(a[k] / sqrt(nn));
    }
}

/* ---- rows ---- */

/* A down weight (row i of dim, column j of n_ff) as an integer multiple of
 * down_step. Every 32-block of a row and of a column holds one element of
 * the largest level, so q8_0/q4_0 pick the same scale both ways and
 * ffn_down_t holds exactly the values of ffn_down. */
static float down_weight(const synth_ctx *c, uint32_t i, uint32_t j)
{
    if (i == 0 || i >= c->f0)
        return 0.0f;    /* dimension 0 and the features are never written */
    uint64_t h = mix64(mix64(c->o.seed ^ ((uint64_t)T_DOWN << 32 | c->layer)) +
                       ((uint64_t)i * c->n_ff + j) * 0x9e3779b97f4a7c15ull);
    int diag = i % 32 == 1 + j % 31 || (i % 32 == 0 && j % 32 == 0);
    int level;
    if (c->o.type == PI_TYPE_Q4_0)
        level = diag ? -8 : (int)(h % 15) - 7;
    else
        level = diag ? 127 : (int)(h % 255) - 127;
    return (float)level * c->down_step;
}

/* Unit vector over the features, orthogonal to the layer's basis. */
static void feature_noise(const synth_ctx *c, rng *r, float *f)
{
    for (uint32_t i = 0; i < c->nf; i++)
        f[i] = rng_unit(r);
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t k = 0; k < K; k++) {
            const float *u = c->basis + (size_t)k * c->nf;
            double d = 0.0;
            for (uint32_t i = 0; i < c->nf; i++)
                d += (double)f[i] * u[i];
            for (uint32_t i = 0; i < c->nf; i++)
                f[i] -= (float)d * u[i];
        }
    double nn = 0.0;
    for (uint32_t i = 0; i < c->nf; i++)
        nn += (double)f[i] * f[i];
    for (uint32_t i = 0; i < c->nf; i++)
        f[i] = (float)(f[i] / sqrt(nn));
}

static void gen_row(synth_ctx *c, const synth_tensor *t, uint64_t r, float *row)
{
    uint32_t l = t->layer, cols = (uint32_t)t->cols;
    rng g = rng_at(c, t->kind, l, r);
    float *feat = row + c->f0;
    memset(row, 0, cols * sizeof *row);
    switch (t->kind) {
    case T_EMBD:
        for (uint32_t i = 1; i < cols; i++)
            row[i] = rng_unit(&g);
        row[0] = SYNTH_C;
        break;
    case T_OUTPUT: case T_Q: case T_K: case T_V:
        for (uint32_t i = 0; i < cols; i++)
            row[i] = rng_unit(&g) / sqrtf((float)cols);
        break;
    case T_OUT_NORM: case T_FFN_NORM:
        for (uint32_t i = 0; i < cols; i++)
            row[i] = 1.0f;   /* ffn_norm must be 1: the calibration assumes it */
        break;
    case T_ATTN_NORM:
        for (uint32_t i = 0; i < cols; i++)
            row[i] = 1.0f + 0.1f * rng_unit(&g);
        break;
    case T_O:
        if (r >= 1 && r < c->f0)
            for (uint32_t i = 0; i < cols; i++)
                row[i] = rng_unit(&g) * c->wo_scale;
        break;
    case T_GATE: {
        uint32_t j = (uint32_t)r;
        const float *a = c->dir + (size_t)j * K;
        const double s = sqrt(1.0 - GATE_NOISE * GATE_NOISE);
        feature_noise(c, &g, feat);
        for (uint32_t i = 0; i < c->nf; i++) {
            double v = GATE_NOISE * feat[i];
            for (uint32_t k = 0; k < K; k++)
                v += s * a[k] * c->basis[(size_t)k * c->nf + i];
            feat[i] = (float)v;
        }
        row[0] = (float)(c->mu[c->rank[j]] / SYNTH_C);
        break;
    }
    case T_UP: {
        double nn = 0.0;
        for (uint32_t i = 0; i < c->nf; i++) {
            feat[i] = rng_unit(&g);
            nn += (double)feat[i] * feat[i];
        }
        for (uint32_t i = 0; i < c->nf; i++)
            feat[i] = (float)(feat[i] / sqrt(nn));
        row[0] = UP_BIAS / SYNTH_C;
        break;
    }
    case T_DOWN:
        for (uint32_t j = 0; j < cols; j++)
            row[j] = down_weight(c, (uint32_t)r, j);
        break;
    case T_DOWN_T:
        for (uint32_t i = 0; i < cols; i++)
            row[i] = down_weight(c, i, (uint32_t)r);
        break;
    case T_FC1:
        /* rows 2k, 2k+1: +-u_k over the features; row 2K: dimension 0; rows past it (pred_width): 0 */
        if (r > 2 * K)
            break;
        if (r == 2 * K) {
            row[0] = 1.0f;
        } else {
            const float *u = c->basis + (size_t)(r / 2) * c->nf;
            for (uint32_t i = 0; i < c->nf; i++)
                feat[i] = r % 2 ? -u[i] : u[i];
        }
        break;
    case T_FC2: {
        /* logit_j * rms = s a_j.(U e) + mu_j + margin * eta: the gate without its noise */
        uint32_t j = (uint32_t)r;
        const float *a = c->dir + (size_t)j * K;
        const double s = sqrt(1.0 - GATE_NOISE * GATE_NOISE);
        for (uint32_t k = 0; k < K; k++) {
            row[2 * k] = (float)(s * a[k]);
            row[2 * k + 1] = (float)(-s * a[k]);
        }
        row[2 * K] = (float)((c->mu[c->rank[j]] + PRED_MARGIN * GATE_NOISE) / SYNTH_C);
        break;
    }
    default:
        break;
    }
}

static int needs_layer(tkind k)
{
    return k == T_GATE || k == T_DOWN || k == T_DOWN_T || k == T_FC1 || k == T_FC2;
}

/* Rows [r0, r1) of a tensor: the rows are independent, so threads split them. */
typedef struct fill_job {
    const synth_tensor *t;
    char *dst;
    size_t rb;
    uint64_t r0, r1;
    float *row;
} fill_job;

static void *fill_rows(void *arg)
{
    const fill_job *j = arg;
    for (uint64_t r = j->r0; r < j->r1; r++) {
        gen_row(j->t->c, j->t, r, j->row);
        pi_quantize_row(j->t->type, j->row, j->dst + r * j->rb, (size_t)j->t->cols);
    }
    return NULL;
}

static int fill_tensor(void *ctx, void *dst, size_t size, pi_error *err)
{
    const synth_tensor *t = ctx;
    synth_ctx *c = t->c;
    size_t rb;
    if (pi_row_bytes(t->type, t->cols, &rb) < 0 || rb * t->rows != size)
        return pi_error_set(err, "synth: tensor size mismatch (%zu bytes asked)", size);
    if (needs_layer(t->kind))
        layer_prepare(c, t->layer);   /* before the threads: they only read it */
    uint32_t n = t->rows >= 64 ? c->n_threads : 1;
    fill_job jobs[SYNTH_MAX_THREADS];
    for (uint32_t i = 0; i < n; i++)
        jobs[i] = (fill_job){t, dst, rb, t->rows * i / n, t->rows * (i + 1) / n, c->rows + (size_t)i * c->row_cap};
    pi_parallel(fill_rows, jobs, sizeof jobs[0], n);
    c->done += size;
    if (c->progress)
        c->progress(c->ud, c->done, c->total);
    return 0;
}

/* ---- setup ---- */

int synth_shape_find(const char *name, synth_shape *out, pi_error *err)
{
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (name && !strcmp(name, shapes[i].name)) {
            *out = shapes[i];
            return 0;
        }
    return pi_error_set(err, "synth: unknown shape '%s': use tiny, 7b, 13b, 40b or 70b", name ? name : "(null)");
}

void synth_options_default(synth_options *o)
{
    memset(o, 0, sizeof *o);
    o->shape = shapes[0];
    o->type = PI_TYPE_F16;
    o->active = 0.11f;
    o->skew = 1.0f;
    o->seed = 1;
}

static int check_options(const synth_options *o, pi_error *err)
{
    const synth_shape *s = &o->shape;
    /* the types whose blocks synth builds itself (not the K-quants) */
    if (o->type != PI_TYPE_F32 && o->type != PI_TYPE_F16 && o->type != PI_TYPE_BF16 &&
        o->type != PI_TYPE_Q8_0 && o->type != PI_TYPE_Q4_0)
        return pi_error_set(err, "synth: unsupported weight type %d: use f32, f16, bf16, q8_0 or q4_0", (int)o->type);
    if (!(o->active > 0.0f && o->active <= 0.9f))
        return pi_error_set(err, "synth: --active %g must be in (0, 0.9]", o->active);
    if (!(o->skew >= 0.0f && o->skew <= 4.0f))
        return pi_error_set(err, "synth: --skew %g must be in [0, 4]", o->skew);
    if (o->pred_width && (o->pred_width < SYNTH_PRED_HIDDEN || o->pred_width > 4096))
        return pi_error_set(err, "synth: --pred-width %u: use %d..4096", o->pred_width, SYNTH_PRED_HIDDEN);
    if (s->n_layers == 0 || s->n_layers > 1024)
        return pi_error_set(err, "synth: %u layers: use 1..1024", s->n_layers);
    if (s->dim < 64 || s->dim % 64 || s->n_ff < 32 || s->n_ff % 32 || s->n_heads == 0 || s->dim % s->n_heads ||
        (s->dim / s->n_heads) % 2 || s->n_kv_heads == 0 || s->n_heads % s->n_kv_heads || s->n_ctx == 0)
        return pi_error_set(err, "synth: shape %s (dim %u, n_ff %u, %u heads, %u kv heads) is not buildable: "
                            "dim must be a multiple of 64, n_ff of 32, heads must divide dim",
                            s->name ? s->name : "?", s->dim, s->n_ff, s->n_heads, s->n_kv_heads);
    return 0;
}

static void ctx_free(synth_ctx *c)
{
    free(c->mu);
    free(c->p);
    free(c->rank);
    free(c->dir);
    free(c->basis);
    free(c->rows);
    free(c);
}

static synth_ctx *ctx_new(const synth_options *o, pi_error *err)
{
    if (check_options(o, err) < 0)
        return NULL;
    synth_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        pi_error_set(err, "synth: out of memory");
        return NULL;
    }
    c->o = *o;
    c->dim = o->shape.dim;
    c->n_ff = o->shape.n_ff;
    c->f0 = c->dim / 2;
    c->nf = c->dim - c->f0;
    c->layer = UINT32_MAX;
    size_t wide = c->dim > c->n_ff ? c->dim : c->n_ff;
    c->n_threads = o->n_threads ? o->n_threads : pi_cpus_usable();
    if (c->n_threads > SYNTH_MAX_THREADS)
        c->n_threads = SYNTH_MAX_THREADS;
    c->row_cap = wide > 2 * K + 1 ? wide : 2 * K + 1;
    c->mu = malloc(c->n_ff * sizeof *c->mu);
    c->p = malloc(c->n_ff * sizeof *c->p);
    c->rank = malloc(c->n_ff * sizeof *c->rank);
    c->dir = malloc((size_t)c->n_ff * K * sizeof *c->dir);
    c->basis = malloc((size_t)K * c->nf * sizeof *c->basis);
    c->rows = malloc(c->n_threads * c->row_cap * sizeof *c->rows);
    if (!c->mu || !c->p || !c->rank || !c->dir || !c->basis || !c->rows) {
        pi_error_set(err, "synth: out of memory for %u neurons", c->n_ff);
        ctx_free(c);
        return NULL;
    }
    if (firing_by_rank(c, err) < 0) {
        ctx_free(c);
        return NULL;
    }
    output_scales(c);
    return c;
}

int synth_neuron_probs(const synth_options *o, uint32_t layer, float *p, pi_error *err)
{
    if (layer >= o->shape.n_layers)
        return pi_error_set(err, "synth: layer %u of %u", layer, o->shape.n_layers);
    synth_ctx *c = ctx_new(o, err);
    if (!c)
        return -1;
    layer_prepare(c, layer);
    for (uint32_t j = 0; j < c->n_ff; j++)
        p[j] = c->p[c->rank[j]];
    ctx_free(c);
    return 0;
}

/* The tensor list, in llama.cpp's order; t may be NULL to count only. */
static size_t tensor_list(synth_ctx *c, synth_tensor *t)
{
    const synth_options *o = &c->o;
    const synth_shape *s = &o->shape;
    pi_type w = o->type, pred = o->type == PI_TYPE_F32 ? PI_TYPE_F32 : PI_TYPE_F16;
    uint64_t kv = (uint64_t)s->n_kv_heads * (s->dim / s->n_heads);
    size_t n = 0;
#define T(kind_, layer_, type_, rows_, cols_)                                                         \
    do {                                                                                             \
        if (t)                                                                                       \
            t[n] = (synth_tensor){c, (kind_), (layer_), (type_), (rows_), (cols_)};                  \
        n++;                                                                                         \
    } while (0)
    T(T_EMBD, 0, w, s->n_vocab, s->dim);
    for (uint32_t l = 0; l < s->n_layers; l++) {
        T(T_ATTN_NORM, l, PI_TYPE_F32, 1, s->dim);
        T(T_Q, l, w, s->dim, s->dim);
        T(T_K, l, w, kv, s->dim);
        T(T_V, l, w, kv, s->dim);
        T(T_O, l, w, s->dim, s->dim);
        T(T_FFN_NORM, l, PI_TYPE_F32, 1, s->dim);
        T(T_GATE, l, w, s->n_ff, s->dim);
        T(T_UP, l, w, s->n_ff, s->dim);
        T(T_DOWN, l, w, s->dim, s->n_ff);
        if (!o->plain) {
            T(T_DOWN_T, l, w, s->n_ff, s->dim);
            const uint32_t R = o->pred_width ? o->pred_width : SYNTH_PRED_HIDDEN;
            T(T_FC1, l, pred, R, s->dim);
            T(T_FC2, l, pred, s->n_ff, R);   /* columns past SYNTH_PRED_HIDDEN stay 0 */
        }
    }
    T(T_OUT_NORM, 0, PI_TYPE_F32, 1, s->dim);
    T(T_OUTPUT, 0, w, s->n_vocab, s->dim);
#undef T
    return n;
}

static void tensor_name(const synth_tensor *t, char *buf, size_t cap)
{
    static const char *names[] = {
        [T_EMBD] = "token_embd", [T_OUT_NORM] = "output_norm", [T_OUTPUT] = "output",
        [T_ATTN_NORM] = "attn_norm", [T_Q] = "attn_q", [T_K] = "attn_k", [T_V] = "attn_v",
        [T_O] = "attn_output", [T_FFN_NORM] = "ffn_norm", [T_GATE] = "ffn_gate", [T_UP] = "ffn_up",
        [T_DOWN] = "ffn_down", [T_DOWN_T] = "ffn_down_t", [T_FC1] = "fc1", [T_FC2] = "fc2",
    };
    if (t->kind == T_EMBD || t->kind == T_OUT_NORM || t->kind == T_OUTPUT)
        snprintf(buf, cap, "%s.weight", names[t->kind]);
    else
        snprintf(buf, cap, "blk.%u.%s.weight", t->layer, names[t->kind]);
}

uint64_t synth_data_bytes(const synth_options *o)
{
    pi_error err;
    synth_ctx *c = ctx_new(o, &err);
    if (!c)
        return 0;
    size_t n = tensor_list(c, NULL);
    synth_tensor *t = malloc(n * sizeof *t);
    uint64_t total = 0;
    if (t) {
        tensor_list(c, t);
        for (size_t i = 0; i < n; i++) {
            size_t rb = 0;
            pi_row_bytes(t[i].type, t[i].cols, &rb);
            total += rb * t[i].rows;
        }
    }
    free(t);
    ctx_free(c);
    return total;
}

static int add_keys(gguf_writer *w, const synth_options *o)
{
    const synth_shape *s = &o->shape;
    char name[64];
    snprintf(name, sizeof name, "pi-synth-%s%s", s->name ? s->name : "custom", o->plain ? "-plain" : "");
    int rc = 0;
    rc |= gguf_writer_add_str(w, "general.architecture", "llama");
    rc |= gguf_writer_add_str(w, "general.name", name);
    rc |= gguf_writer_add_u32(w, "llama.vocab_size", s->n_vocab);
    rc |= gguf_writer_add_u32(w, "llama.context_length", s->n_ctx);
    rc |= gguf_writer_add_u32(w, "llama.embedding_length", s->dim);
    rc |= gguf_writer_add_u32(w, "llama.block_count", s->n_layers);
    rc |= gguf_writer_add_u32(w, "llama.feed_forward_length", s->n_ff);
    rc |= gguf_writer_add_u32(w, "llama.attention.head_count", s->n_heads);
    rc |= gguf_writer_add_u32(w, "llama.attention.head_count_kv", s->n_kv_heads);
    rc |= gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    rc |= gguf_writer_add_f32(w, "llama.rope.freq_base", 10000.0f);
    rc |= gguf_writer_add_u32(w, "llama.rope.dimension_count", s->dim / s->n_heads);
    if (!o->plain) {
        rc |= gguf_writer_add_str(w, "pi.ffn_activation", "relu");
        rc |= gguf_writer_add_f32(w, "powerinfer.sparse_threshold", 0.0f);
        rc |= gguf_writer_add_f32(w, "pi.synth.active", o->active);
        rc |= gguf_writer_add_f32(w, "pi.synth.skew", o->skew);
        rc |= gguf_writer_add_u64(w, "pi.synth.seed", o->seed);
    }
    return rc;
}

int synth_write(const char *path, const synth_options *o, synth_progress_fn progress, void *ud, pi_error *err)
{
    synth_ctx *c = ctx_new(o, err);
    if (!c)
        return -1;
    c->progress = progress;
    c->ud = ud;
    size_t n = tensor_list(c, NULL);
    synth_tensor *t = malloc(n * sizeof *t);
    gguf_writer *w = gguf_writer_new();
    int rc = -1;
    if (!t || !w) {
        pi_error_set(err, "synth %s: out of memory", path);
        goto done;
    }
    tensor_list(c, t);
    if (add_keys(w, o) != 0) {
        pi_error_set(err, "synth %s: could not add the keys (out of memory?)", path);
        goto done;
    }
    if (synth_vocab_add(w, o->shape.n_vocab, err) < 0) {
        pi_error_wrap(err, "synth %s", path);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        char name[64];
        size_t rb = 0;
        tensor_name(&t[i], name, sizeof name);
        uint64_t ne[2] = {t[i].cols, t[i].rows};
        if (pi_row_bytes(t[i].type, t[i].cols, &rb) < 0 ||
            gguf_writer_add_tensor_fn(w, name, t[i].type, t[i].rows > 1 ? 2 : 1, ne, fill_tensor, &t[i]) != 0) {
            pi_error_set(err, "synth %s: could not add tensor %s", path, name);
            goto done;
        }
        c->total += rb * t[i].rows;
    }
    rc = gguf_writer_write(w, path, "GGUF", err);
done:
    gguf_writer_free(&w);
    free(t);
    ctx_free(c);
    return rc;
}
