/* Placement from activation frequencies: the greedy knapsack solver, the
 * model-side byte counts and hashes, and the plan cache (see placement.h).
 *
 * Why the greedy is optimal up to one neuron. Items are neurons; item (l, i)
 * has value f[l][i] and weight w_l, the same for every neuron of layer l.
 * Order all items by density f / w descending (ties: lower rank within its
 * layer first, then lower layer). Within a layer w is constant, so this
 * order visits each layer's neurons by frequency descending: every prefix of
 * the order takes a top-k set in each layer, and a top-k set is the best
 * k-subset of its layer (exchange argument), so nothing is lost by choosing
 * counts k_l instead of sets.
 *  - Let the prefix P be the items before the first one, b, that does not
 *    fit. Dantzig's bound: the LP relaxation's optimum is P plus the fraction
 *    r / w_b of b (r = budget left after P), and it bounds every 0/1 choice,
 *    so OPT <= LP = V(P) + f_b * r / w_b < V(P) + f_b.
 *  - The greedy takes P, then keeps scanning and takes every later item that
 *    still fits ("fill"), so V(greedy) >= V(P) > OPT - f_b. The absolute gap
 *    is below one neuron's frequency, the relative gap below f_b / V(P):
 *    with a budget worth thousands of neurons that is far under 1%. Every
 *    result stores the LP bound, so the gap is measured, not assumed.
 *  - When every layer has the same neuron bytes (one type throughout) b not
 *    fitting means nothing else fits, and the greedy is the top-K by
 *    frequency over all neurons: exactly optimal.
 *  - Monotone in the budget: let G(r) be the greedy's value with capacity r
 *    over the ordered list [x, rest...]. If both r1 < r2 take x, or neither,
 *    induction on the rest. If only r2 takes x (w_x > r1): G(r1) = G_rest(r1)
 *    <= d_x * r1 < d_x * w_x = f_x <= G(r2), because every item of rest has
 *    density <= d_x. So a larger budget never serves less.
 * Densities are compared exactly: f * w' with f a float (24-bit mantissa)
 * and w' < 2^29 is exact in a double. */
#include "placement.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "plan_bytes.h"
#include "sidecar.h"

#define MAX_NEURON_BYTES (UINT64_C(1) << 29)
#define PLAN_CACHE_VERSION 1
#define FNV_OFFSET UINT64_C(0xcbf29ce484222325)
#define FNV_PRIME UINT64_C(0x100000001b3)

/* ---- result helpers ---- */

void placement_free(placement **pp)
{
    if (!pp || !*pp)
        return;
    placement *p = *pp;
    if (p->layers)
        for (uint32_t l = 0; l < p->n_layers; l++) {
            free(p->layers[l].hot);
            free(p->layers[l].is_hot);
        }
    free(p->layers);
    free(p);
    *pp = NULL;
}

static placement *placement_alloc(uint32_t n_layers, uint32_t n_ff, pi_error *err)
{
    placement *p = calloc(1, sizeof *p);
    if (p) {
        p->n_layers = n_layers;
        p->n_ff = n_ff;
        p->layers = calloc(n_layers, sizeof *p->layers);
    }
    if (!p || !p->layers) {
        placement_free(&p);
        pi_error_set(err, "placement: out of memory for %u layers", n_layers);
        return NULL;
    }
    for (uint32_t l = 0; l < n_layers; l++) {
        p->layers[l].is_hot = calloc(n_ff, 1);
        if (!p->layers[l].is_hot) {
            placement_free(&p);
            pi_error_set(err, "placement: out of memory for %u layers x %u neurons", n_layers, n_ff);
            return NULL;
        }
    }
    return p;
}

/* is_hot, neuron_bytes set: builds the ascending list and the layer's bytes. */
static int layer_finish(placement_layer *y, uint32_t n_ff, pi_error *err)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < n_ff; i++)
        n += y->is_hot[i] != 0;
    free(y->hot);
    y->hot = malloc((n ? n : 1) * sizeof *y->hot);
    if (!y->hot)
        return pi_error_set(err, "placement: out of memory for a hot list of %u neurons", n);
    y->n_hot = 0;
    for (uint32_t i = 0; i < n_ff; i++)
        if (y->is_hot[i])
            y->hot[y->n_hot++] = i;
    y->gpu_bytes = (uint64_t)n * y->neuron_bytes;
    y->cpu_bytes = (uint64_t)(n_ff - n) * y->neuron_bytes;
    return 0;
}

static void placement_totals(placement *p)
{
    p->hot_bytes = p->cold_bytes = 0;
    p->freq_hot = p->freq_all = 0;
    for (uint32_t l = 0; l < p->n_layers; l++) {
        const placement_layer *y = &p->layers[l];
        p->hot_bytes += y->gpu_bytes;
        p->cold_bytes += y->cpu_bytes;
        p->freq_hot += y->freq_hot;
        p->freq_all += y->freq_all;
    }
    p->gpu_bytes = p->fixed_bytes + p->hot_bytes;
}

static double share(double hot, double all, uint64_t n_hot, uint64_t n)
{
    if (all > 0)
        return hot / all;
    return n ? (double)n_hot / (double)n : 1.0;
}

double placement_share(const placement *p)
{
    uint64_t n_hot = 0;
    for (uint32_t l = 0; l < p->n_layers; l++)
        n_hot += p->layers[l].n_hot;
    return share(p->freq_hot, p->freq_all, n_hot, (uint64_t)p->n_layers * p->n_ff);
}

double placement_layer_share(const placement *p, uint32_t l)
{
    const placement_layer *y = &p->layers[l];
    return share(y->freq_hot, y->freq_all, y->n_hot, p->n_ff);
}

static void fmt_bytes(char *buf, size_t cap, uint64_t b)
{
    if (b >= ((uint64_t)1 << 30))
        snprintf(buf, cap, "%.2f GiB", (double)b / (double)((uint64_t)1 << 30));
    else
        snprintf(buf, cap, "%.2f MiB", (double)b / (double)((uint64_t)1 << 20));
}

/* Byte sizes valid and the whole FFN countable in a uint64_t. */
static int check_sizes(uint32_t n_layers, uint32_t n_ff, const uint64_t *neuron_bytes, pi_error *err)
{
    if (n_layers == 0 || n_ff == 0)
        return pi_error_set(err, "placement: %u layers x %u neurons: nothing to place", n_layers, n_ff);
    uint64_t total = 0;
    for (uint32_t l = 0; l < n_layers; l++) {
        uint64_t w = neuron_bytes[l];
        if (w == 0 || w > MAX_NEURON_BYTES)
            return pi_error_set(err, "placement: layer %u: one neuron is %" PRIu64 " bytes; expected 1 .. %" PRIu64,
                                l, w, MAX_NEURON_BYTES);
        uint64_t layer = w * n_ff; /* < 2^61 */
        if (total > UINT64_MAX - layer)
            return pi_error_set(err, "placement: the FFN's bytes overflow a 64-bit count");
        total += layer;
    }
    return 0;
}

/* ---- the solver ---- */

typedef struct ranked {
    float f;
    uint32_t idx;
} ranked;

/* Frequency descending, index ascending: a layer's greedy order. */
static int ranked_cmp(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->f != y->f)
        return x->f > y->f ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* The next candidate of a layer: its rank-th most frequent neuron. */
typedef struct head {
    float f;
    uint32_t w, rank, layer;
} head;

/* a comes before b in the global order (file comment). */
static int head_before(const head *a, const head *b)
{
    double da = (double)a->f * (double)b->w, db = (double)b->f * (double)a->w;
    if (da != db)
        return da > db;
    if (a->rank != b->rank)
        return a->rank < b->rank;
    return a->layer < b->layer;
}

static void heap_down(head *h, uint32_t n, uint32_t i)
{
    for (;;) {
        uint32_t best = i, c = 2 * i + 1;
        if (c < n && head_before(&h[c], &h[best]))
            best = c;
        if (c + 1 < n && head_before(&h[c + 1], &h[best]))
            best = c + 1;
        if (best == i)
            return;
        head t = h[i];
        h[i] = h[best];
        h[best] = t;
        i = best;
    }
}

static int check_freq(const placement_input *in, pi_error *err)
{
    if (!in->freq)
        return 0;
    for (uint32_t l = 0; l < in->n_layers; l++) {
        if (!in->freq[l])
            return pi_error_set(err, "placement: no frequencies for layer %u", l);
        for (uint32_t i = 0; i < in->n_ff; i++) {
            float f = in->freq[l][i];
            if (!isfinite(f) || f < 0)
                return pi_error_set(err, "placement: layer %u neuron %u has activation frequency %g; "
                                    "frequencies must be finite and >= 0 (re-run the profiler)", l, i, (double)f);
        }
    }
    return 0;
}

/* Greedy in the global density order with fill; k[l] = neurons taken from
 * layer l (its first k[l] in order[l]). Returns the LP upper bound. */
static double greedy(const placement_input *in, const ranked *order, uint32_t *k)
{
    uint32_t n = in->n_layers, L = in->n_layers;
    head *h = malloc(n * sizeof *h);
    if (!h)
        return -1;
    for (uint32_t l = 0; l < L; l++)
        h[l] = (head){order[(size_t)l * in->n_ff].f, (uint32_t)in->neuron_bytes[l], 0, l};
    for (uint32_t i = n / 2; i-- > 0;)
        heap_down(h, n, i);
    uint64_t left = in->budget_bytes - in->fixed_bytes;
    double value = 0, bound = -1;
    while (n > 0) {
        head t = h[0];
        if (t.w <= left) {
            left -= t.w;
            value += t.f;
            k[t.layer]++;
            if (t.rank + 1 < in->n_ff) {
                h[0].rank++;
                h[0].f = order[(size_t)t.layer * in->n_ff + h[0].rank].f;
            } else {
                h[0] = h[--n];
            }
        } else {
            /* The first misfit ends the LP's prefix; the rest of this layer
             * weighs the same and can never fit again. */
            if (bound < 0)
                bound = value + (double)t.f * (double)left / (double)t.w;
            h[0] = h[--n];
        }
        heap_down(h, n, 0);
    }
    free(h);
    return bound < 0 ? value : bound;
}

static placement *solve_fail(placement **p, ranked *order, uint32_t *k)
{
    placement_free(p);
    free(order);
    free(k);
    return NULL;
}

placement *placement_solve(const placement_input *in, pi_error *err)
{
    if (!in || !in->neuron_bytes) {
        pi_error_set(err, "placement: no input or no neuron bytes");
        return NULL;
    }
    if (check_sizes(in->n_layers, in->n_ff, in->neuron_bytes, err) < 0 || check_freq(in, err) < 0)
        return NULL;
    if (in->budget_bytes < in->fixed_bytes) {
        char need[32], have[32];
        fmt_bytes(need, sizeof need, in->fixed_bytes);
        fmt_bytes(have, sizeof have, in->budget_bytes);
        pi_error_set(err, "placement: VRAM budget %" PRIu64 " bytes (%s) is below the fixed GPU part %" PRIu64
                     " bytes (%s: weights outside the FFN, predictors, KV cache); raise the budget to at least "
                     "%" PRIu64 " bytes or lower max_seqs/n_ctx", in->budget_bytes, have, in->fixed_bytes, need,
                     in->fixed_bytes);
        return NULL;
    }
    size_t n_items;
    if (pi_mul_size(in->n_layers, in->n_ff, &n_items) < 0 || pi_mul_size(n_items, sizeof(ranked), &n_items) < 0) {
        pi_error_set(err, "placement: %u x %u neurons overflow memory sizes", in->n_layers, in->n_ff);
        return NULL;
    }
    placement *p = placement_alloc(in->n_layers, in->n_ff, err);
    ranked *order = malloc(n_items);
    uint32_t *k = calloc(in->n_layers, sizeof *k);
    if (!p || !order || !k) {
        if (p)
            pi_error_set(err, "placement: out of memory ordering %u x %u neurons", in->n_layers, in->n_ff);
        return solve_fail(&p, order, k);
    }
    for (uint32_t l = 0; l < in->n_layers; l++) {
        ranked *o = order + (size_t)l * in->n_ff;
        for (uint32_t i = 0; i < in->n_ff; i++)
            o[i] = (ranked){in->freq ? in->freq[l][i] : 1.0f, i};
        qsort(o, in->n_ff, sizeof *o, ranked_cmp);
    }
    double bound = greedy(in, order, k);
    if (bound < 0) {
        pi_error_set(err, "placement: out of memory for the layer heap");
        return solve_fail(&p, order, k);
    }
    p->uniform = in->freq == NULL;
    p->freq_hash = placement_freq_hash(in->n_layers, in->n_ff, in->freq);
    p->budget_bytes = in->budget_bytes;
    p->fixed_bytes = in->fixed_bytes;
    p->upper_bound = bound;
    for (uint32_t l = 0; l < in->n_layers; l++) {
        placement_layer *y = &p->layers[l];
        const ranked *o = order + (size_t)l * in->n_ff;
        y->neuron_bytes = in->neuron_bytes[l];
        for (uint32_t r = 0; r < k[l]; r++)
            y->is_hot[o[r].idx] = 1;
        if (layer_finish(y, in->n_ff, err) < 0)
            return solve_fail(&p, order, k);
        /* sums in index order, the same on every path (cache included) */
        for (uint32_t i = 0; i < in->n_ff; i++) {
            double f = in->freq ? in->freq[l][i] : 1.0;
            y->freq_all += f;
            if (y->is_hot[i])
                y->freq_hot += f;
        }
    }
    placement_totals(p);
    free(order);
    free(k);
    return p;
}

/* ---- from a model ---- */

uint64_t placement_fixed_bytes(const pi_model *m, const placement_params *p)
{
    uint32_t n_ctx = p->n_ctx ? p->n_ctx : m->n_ctx;
    uint32_t elem = p->kv_elem_bytes ? p->kv_elem_bytes : (uint32_t)sizeof(float);
    return plan_weight_bytes(m) + plan_kv_bytes_elem(m, p->max_seqs, n_ctx, elem) + p->predictor_bytes +
           p->scratch_bytes;
}

uint64_t placement_predictor_bytes(const pi_model *m, const pi_sidecar *sc, int q8)
{
    if (!(sc && sc->has_predictor))
        return plan_predictor_bytes(m, q8);
    uint64_t b = 0;
    for (uint32_t l = 0; l < m->n_layers && l < sc->n_layers; l++)
        b += plan_pred_tensor_bytes(&sc->fc1[l], q8) + plan_pred_tensor_bytes(&sc->fc2[l], q8);
    return b;
}

placement *placement_for_model(const pi_model *m, const placement_params *p, const float *const *freq,
                               pi_error *err)
{
    if (p->max_seqs == 0) {
        pi_error_set(err, "placement: max_seqs is 0; at least one sequence slot is needed");
        return NULL;
    }
    uint64_t *nb = malloc((m->n_layers ? m->n_layers : 1) * sizeof *nb);
    if (!nb) {
        pi_error_set(err, "placement: out of memory");
        return NULL;
    }
    for (uint32_t l = 0; l < m->n_layers; l++)
        nb[l] = plan_neuron_bytes_layer(m, l);
    placement_input in = {.n_layers = m->n_layers, .n_ff = m->n_ff, .freq = freq, .neuron_bytes = nb,
                          .fixed_bytes = placement_fixed_bytes(m, p), .budget_bytes = p->budget_bytes};
    placement *out = placement_solve(&in, err);
    free(nb);
    if (out)
        out->model_hash = placement_model_hash(m);
    return out;
}

static uint64_t fnv(uint64_t h, const void *data, size_t n)
{
    const unsigned char *b = data;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= FNV_PRIME;
    }
    return h;
}

uint64_t placement_model_hash(const pi_model *m)
{
    if (!m->file)
        return 0;
    char hex[17];
    sidecar_model_hash(m->file, hex);
    uint64_t h = strtoull(hex, NULL, 16);
    return h ? h : 1;
}

uint64_t placement_freq_hash(uint32_t n_layers, uint32_t n_ff, const float *const *freq)
{
    if (!freq)
        return 0;
    uint64_t h = fnv(FNV_OFFSET, &n_layers, sizeof n_layers);
    h = fnv(h, &n_ff, sizeof n_ff);
    for (uint32_t l = 0; l < n_layers; l++)
        h = fnv(h, freq[l], (size_t)n_ff * sizeof(float));
    return h ? h : 1;
}

/* ---- plan cache ---- */

int placement_cache_path(const char *model_path, uint64_t budget_bytes, char *buf, size_t cap, pi_error *err)
{
    /* like the sidecar's name: m.gguf -> m.pi-plan-<MiB>.gguf */
    size_t n = strlen(model_path);
    if (n >= 5 && !strcmp(model_path + n - 5, ".gguf"))
        n -= 5;
    int w = n <= INT32_MAX ? snprintf(buf, cap, "%.*s.pi-plan-%" PRIu64 ".gguf", (int)n, model_path,
                                      budget_bytes >> 20) : -1;
    if (w < 0 || (size_t)w >= cap)
        return pi_error_set(err, "placement: the plan cache path for %s is longer than %zu bytes", model_path, cap);
    return 0;
}

int placement_save(const placement *p, const char *path, pi_error *err)
{
    gguf_writer *w = gguf_writer_new();
    uint64_t *nb = malloc(p->n_layers * sizeof *nb);
    double *fh = malloc(p->n_layers * sizeof *fh), *fa = malloc(p->n_layers * sizeof *fa);
    if (!w || !nb || !fh || !fa) {
        gguf_writer_free(&w);
        free(nb);
        free(fh);
        free(fa);
        return pi_error_set(err, "placement: out of memory writing %s", path);
    }
    for (uint32_t l = 0; l < p->n_layers; l++) {
        nb[l] = p->layers[l].neuron_bytes;
        fh[l] = p->layers[l].freq_hot;
        fa[l] = p->layers[l].freq_all;
    }
    /* A failed add is recorded by the writer and reported by the write. */
    gguf_writer_add_u32(w, "pi.plan.version", PLAN_CACHE_VERSION);
    gguf_writer_add_u64(w, "pi.plan.model_hash", p->model_hash);
    gguf_writer_add_u64(w, "pi.plan.budget_bytes", p->budget_bytes);
    gguf_writer_add_u64(w, "pi.plan.fixed_bytes", p->fixed_bytes);
    gguf_writer_add_u64(w, "pi.plan.freq_hash", p->freq_hash);
    gguf_writer_add_bool(w, "pi.plan.uniform", p->uniform != 0);
    gguf_writer_add_u32(w, "pi.plan.n_layers", p->n_layers);
    gguf_writer_add_u32(w, "pi.plan.n_ff", p->n_ff);
    gguf_writer_add_arr(w, "pi.plan.neuron_bytes", GGUF_TYPE_UINT64, nb, p->n_layers);
    gguf_writer_add_arr(w, "pi.plan.freq_hot", GGUF_TYPE_FLOAT64, fh, p->n_layers);
    gguf_writer_add_arr(w, "pi.plan.freq_all", GGUF_TYPE_FLOAT64, fa, p->n_layers);
    gguf_writer_add_arr(w, "pi.plan.upper_bound", GGUF_TYPE_FLOAT64, &p->upper_bound, 1);
    for (uint32_t l = 0; l < p->n_layers; l++) {
        char key[64];
        snprintf(key, sizeof key, "pi.plan.blk.%u.hot", l);
        gguf_writer_add_arr(w, key, GGUF_TYPE_UINT32, p->layers[l].hot, p->layers[l].n_hot);
    }
    int rc = gguf_writer_write(w, path, "GGUF", err);
    gguf_writer_free(&w);
    free(nb);
    free(fh);
    free(fa);
    return rc;
}

/* A numeric array key of n elements of type t, or NULL with err. */
static const gguf_kv *find_arr(const gguf_file *f, const char *path, const char *key, gguf_type t, uint64_t n,
                               pi_error *err)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || kv->type != GGUF_TYPE_ARRAY || kv->v.arr.type != t || kv->v.arr.n != n) {
        pi_error_set(err, "plan cache %s: key %s is missing or not %s[%" PRIu64 "]; delete the file to re-plan",
                     path, key, gguf_type_name(t), n);
        return NULL;
    }
    return kv;
}

static int check_key(const char *path, const char *what, uint64_t have, uint64_t want, pi_error *err)
{
    if (have == want)
        return 0;
    return pi_error_set(err, "plan cache %s was made for %s %" PRIu64 " (0x%" PRIx64 "), not %" PRIu64
                        " (0x%" PRIx64 "); it belongs to another setup: re-plan (it will be overwritten)",
                        path, what, have, have, want, want);
}

static int load_layers(placement *p, const gguf_file *f, const char *path, const gguf_kv *nb, const gguf_kv *fh,
                       const gguf_kv *fa, pi_error *err)
{
    for (uint32_t l = 0; l < p->n_layers; l++) {
        placement_layer *y = &p->layers[l];
        y->neuron_bytes = (uint64_t)gguf_arr_i64(nb, l);
        y->freq_hot = gguf_arr_f64(fh, l);
        y->freq_all = gguf_arr_f64(fa, l);
        if (!isfinite(y->freq_hot) || !isfinite(y->freq_all) || y->freq_hot < 0 || y->freq_all < 0)
            return pi_error_set(err, "plan cache %s: layer %u has bad frequency sums; delete the file", path, l);
        char key[64];
        snprintf(key, sizeof key, "pi.plan.blk.%u.hot", l);
        const gguf_kv *kv = gguf_find_kv(f, key);
        if (!kv || kv->type != GGUF_TYPE_ARRAY || kv->v.arr.type != GGUF_TYPE_UINT32 || kv->v.arr.n > p->n_ff)
            return pi_error_set(err, "plan cache %s: key %s is missing or not a u32 array of at most %u indices; "
                                "delete the file to re-plan", path, key, p->n_ff);
        int64_t prev = -1;
        for (uint64_t i = 0; i < kv->v.arr.n; i++) {
            int64_t j = gguf_arr_i64(kv, i);
            if (j <= prev || j >= p->n_ff)
                return pi_error_set(err, "plan cache %s: %s[%" PRIu64 "] = %" PRId64 " is out of order or not "
                                    "below n_ff %u; delete the file to re-plan", path, key, i, j, p->n_ff);
            y->is_hot[j] = 1;
            prev = j;
        }
        if (layer_finish(y, p->n_ff, err) < 0)
            return -1;
    }
    return 0;
}

static placement *load_from(const gguf_file *f, const char *path, const placement_key *key, pi_error *err)
{
    uint32_t version = 0, n_layers = 0, n_ff = 0;
    uint64_t hash = 0, budget = 0, fixed = 0, fhash = 0;
    bool uniform = false;
    if (gguf_get_u32(f, "pi.plan.version", &version, err) < 0) {
        pi_error_set(err, "plan cache %s: no pi.plan.version: not a pi plan cache; delete or move it", path);
        return NULL;
    }
    if (version != PLAN_CACHE_VERSION) {
        pi_error_set(err, "plan cache %s: version %u, this pi reads version %d; delete it to re-plan", path,
                     version, PLAN_CACHE_VERSION);
        return NULL;
    }
    if (gguf_get_u64(f, "pi.plan.model_hash", &hash, err) < 0 ||
        gguf_get_u64(f, "pi.plan.budget_bytes", &budget, err) < 0 ||
        gguf_get_u64(f, "pi.plan.fixed_bytes", &fixed, err) < 0 ||
        gguf_get_u64(f, "pi.plan.freq_hash", &fhash, err) < 0 ||
        gguf_get_bool(f, "pi.plan.uniform", &uniform, err) < 0 ||
        gguf_get_u32(f, "pi.plan.n_layers", &n_layers, err) < 0 ||
        gguf_get_u32(f, "pi.plan.n_ff", &n_ff, err) < 0) {
        pi_error_wrap(err, "plan cache %s", path);
        return NULL;
    }
    if (check_key(path, "model hash", hash, key->model_hash, err) < 0 ||
        check_key(path, "VRAM budget bytes", budget, key->budget_bytes, err) < 0 ||
        check_key(path, "fixed GPU bytes (weights + predictors + KV cache)", fixed, key->fixed_bytes, err) < 0 ||
        check_key(path, "frequency profile hash", fhash, key->freq_hash, err) < 0)
        return NULL;
    if (n_layers > (1u << 16) || n_ff > (1u << 24)) {
        pi_error_set(err, "plan cache %s: implausible shape %u layers x %u neurons; delete the file", path, n_layers,
                     n_ff);
        return NULL;
    }
    const gguf_kv *nb = find_arr(f, path, "pi.plan.neuron_bytes", GGUF_TYPE_UINT64, n_layers, err);
    const gguf_kv *fh = nb ? find_arr(f, path, "pi.plan.freq_hot", GGUF_TYPE_FLOAT64, n_layers, err) : NULL;
    const gguf_kv *fa = fh ? find_arr(f, path, "pi.plan.freq_all", GGUF_TYPE_FLOAT64, n_layers, err) : NULL;
    const gguf_kv *ub = fa ? find_arr(f, path, "pi.plan.upper_bound", GGUF_TYPE_FLOAT64, 1, err) : NULL;
    if (!ub)
        return NULL;
    uint64_t *bytes = malloc((n_layers ? n_layers : 1) * sizeof *bytes);
    if (!bytes) {
        pi_error_set(err, "plan cache %s: out of memory", path);
        return NULL;
    }
    for (uint32_t l = 0; l < n_layers; l++)
        bytes[l] = (uint64_t)gguf_arr_i64(nb, l);
    int ok = check_sizes(n_layers, n_ff, bytes, err) == 0;
    free(bytes);
    if (!ok) {
        pi_error_wrap(err, "plan cache %s", path);
        return NULL;
    }
    placement *p = placement_alloc(n_layers, n_ff, err);
    if (!p)
        return NULL;
    p->uniform = uniform;
    p->model_hash = hash;
    p->freq_hash = fhash;
    p->budget_bytes = budget;
    p->fixed_bytes = fixed;
    p->upper_bound = gguf_arr_f64(ub, 0);
    if (load_layers(p, f, path, nb, fh, fa, err) < 0) {
        placement_free(&p);
        return NULL;
    }
    placement_totals(p);
    if (p->gpu_bytes > budget || p->gpu_bytes < fixed) {
        pi_error_set(err, "plan cache %s: its hot neurons need %" PRIu64 " GPU bytes, over its budget %" PRIu64
                     "; delete the file to re-plan", path, p->gpu_bytes, budget);
        placement_free(&p);
    }
    return p;
}

placement *placement_load(const char *path, const placement_key *key, pi_error *err)
{
    gguf_file *f = gguf_open(path, err);
    if (!f)
        return NULL;
    placement *p = load_from(f, path, key, err);
    gguf_close(&f);
    return p;
}
