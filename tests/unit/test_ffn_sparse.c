/* Proves every sparse FFN variant this CPU runs, and the thread pool at 1..5 threads, computes the plain definition's result (and, bit for bit, what it computed before its row kernels prefetched the next row), the pool's parallel reduction bit for bit equal to the serial sum in thread order, across spinning and sleeping waits, with helpers pinned. */
/* Under ThreadSanitizer (the pool's hand-off and barrier must stay race-free;
 * scripts/test.sh runs it so):
 *   cmake -S . -B build-tsan -DPI_CUDA=OFF -DPI_SANITIZE=thread -DCMAKE_BUILD_TYPE=RelWithDebInfo
 *   cmake --build build-tsan -j2 --target test_ffn_sparse
 *   TSAN_OPTIONS=halt_on_error=1 build-tsan/bin/test_ffn_sparse
 * TSan exits non-zero (66) after any report, so the run fails on a race.
 * PI_CPU_KERNEL does not matter here: every variant the CPU runs is tested. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "ffn_pool.h"
#include "ffn_sparse.h"
#include "ops.h"

/* Tolerances, as max_i |out_i - ref_i| / (size of the terms, term_scale),
 * not / |ref_i|: cancellation in out_i, or in a gate/up dot, can make the
 * result itself arbitrarily small (dim 1 and single neurons show it).
 * Every variant reads the same exact values as the plain one (x stays fp32,
 * F16 and int8 quants widen exactly) and differs only in the order and
 * grouping of its fp32 arithmetic: vector lanes, several accumulators, a
 * block's scale applied to its sum (AVX-512) rather than to each weight,
 * threads' partial buffers added at the end, FMA's single rounding.
 * Reordering moves a sum by at most ~n * eps times its terms' size and
 * typically ~sqrt(n) * eps (eps = 6e-8, n <= 5120 here): observed errors
 * are ~1e-7, and 1e-5 leaves a wide margin for F32/F16. For Q8_0/Q4_0 we
 * allow 1e-4: their rows hold few distinct values, so the dots are sums of
 * many equal-sized terms that cancel more (a worse first-order bound); it is
 * still far below what a real bug gives (losing one neuron, a wrong scale
 * or nibble order: check_metric_fails shows the metric catches it). */
#define TOL_FLOAT 1e-5
#define TOL_QUANT 1e-4

static const char *const variants[] = {"plain", "avx2", "avx512"};
static const pi_act acts[] = {PI_ACT_SILU, PI_ACT_RELU, PI_ACT_RELU_BOTH};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

static float rndf(void)   /* uniform in [-1, 1) */
{
    return (float)rnd() / 2147483648.0f - 1.0f;
}

/* A shard in cpu_shard's layout: per neuron one record gate | up | down^T. */
typedef struct shard {
    ffn_sparse_layer l;
    char *mem;
    float *down_f32;      /* F32 only: down as dim x n (the model's layout) */
    float *gate_f32, *up_f32;
} shard;

static void shard_make(shard *s, pi_type type, uint32_t dim, uint32_t n)
{
    size_t rb;
    CHECK(pi_row_bytes(type, dim, &rb) == 0, "dim %u for %s", dim, pi_type_name(type));
    size_t rec = 3 * rb + 4;   /* odd padding: strides are not a multiple of the row */
    memset(s, 0, sizeof *s);
    s->mem = calloc(n ? n : 1, rec);
    float *row = malloc(dim * sizeof *row);
    s->gate_f32 = malloc((size_t)n * dim * sizeof(float) + 4);
    s->up_f32 = malloc((size_t)n * dim * sizeof(float) + 4);
    s->down_f32 = malloc((size_t)n * dim * sizeof(float) + 4);
    CHECK(s->mem && row && s->gate_f32 && s->up_f32 && s->down_f32, "out of memory");
    for (uint32_t j = 0; j < n; j++) {
        for (int part = 0; part < 3; part++) {
            for (uint32_t i = 0; i < dim; i++)
                row[i] = rndf() * (part == 2 ? 0.5f : 1.0f);
            pi_quantize_row(type, row, s->mem + (size_t)j * rec + (size_t)part * rb, dim);
            float *f = part == 0 ? s->gate_f32 : part == 1 ? s->up_f32 : NULL;
            for (uint32_t i = 0; i < dim; i++) {
                if (f)
                    f[(size_t)j * dim + i] = row[i];
                else
                    s->down_f32[(size_t)i * n + j] = row[i];
            }
        }
    }
    free(row);
    s->l = (ffn_sparse_layer){
        .dim = dim, .n_neurons = n,
        .gate_type = type, .up_type = type, .down_t_type = type,
        .gate = s->mem, .up = s->mem + rb, .down_t = s->mem + 2 * rb,
        .gate_stride = rec, .up_stride = rec, .down_t_stride = rec,
    };
}

static void shard_free(shard *s)
{
    free(s->mem);
    free(s->gate_f32);
    free(s->up_f32);
    free(s->down_f32);
}

static double abs_dot(pi_type type, const void *row, const float *x, uint32_t dim, float *buf)
{
    double s = 0.0;
    pi_dequantize_row(type, row, buf, dim);
    for (uint32_t i = 0; i < dim; i++)
        s += fabs((double)buf[i] * x[i]);
    return s;
}

/* The size of the terms out_i is computed from: max over i of
 * sum_j H_j |downT_j[i]|, with H_j = |h_j| + 1.1 |u_j| G_j + |g_j| U_j, where
 * G_j, U_j are sum_i |w_i x_i| of the gate and up dots (1.1 bounds silu').
 * A reordered fp32 computation differs from the plain one by a small
 * multiple of eps times this (first order), whatever cancels inside. */
static double term_scale(const ffn_sparse_layer *l, pi_act act, const float *x,
                         const uint32_t *idx, size_t na)
{
    double *acc = calloc(l->dim, sizeof *acc);
    float *row = malloc(l->dim * sizeof *row);
    CHECK(acc && row, "out of memory");
    for (size_t k = 0; k < na; k++) {
        uint32_t j = idx[k];
        const char *gr = (const char *)l->gate + j * l->gate_stride;
        const char *ur = (const char *)l->up + j * l->up_stride;
        float g = pi_dot_row(l->gate_type, gr, x, l->dim);
        float u = pi_dot_row(l->up_type, ur, x, l->dim);
        double hs = fabs(ops_ffn_act(act, g, u)) +
                    1.1 * fabs(u) * abs_dot(l->gate_type, gr, x, l->dim, row) +
                    fabs(g) * abs_dot(l->up_type, ur, x, l->dim, row);
        pi_dequantize_row(l->down_t_type, (const char *)l->down_t + j * l->down_t_stride, row, l->dim);
        for (uint32_t i = 0; i < l->dim; i++)
            acc[i] += hs * fabs(row[i]);
    }
    double m = 0.0;
    for (uint32_t i = 0; i < l->dim; i++)
        m = acc[i] > m ? acc[i] : m;
    free(acc);
    free(row);
    return m;
}

/* max_i |a_i - ref_i| / scale; with nothing summed both must be exactly 0. */
static double rel_err(const float *a, const float *ref, size_t n, double scale)
{
    double num = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)ref[i]);
        num = d > num ? d : num;
    }
    if (scale == 0.0)
        return num == 0.0 ? 0.0 : INFINITY;
    return num / scale;
}

/* Active lists: empty, one neuron, all, and a random ~30% in random order. */
static size_t make_list(int kind, uint32_t n, uint32_t *idx)
{
    if (kind == 0 || n == 0)
        return 0;
    if (kind == 1) {
        idx[0] = rnd() % n;
        return 1;
    }
    if (kind == 2) {
        for (uint32_t j = 0; j < n; j++)
            idx[j] = j;
        return n;
    }
    size_t k = 0;
    for (uint32_t j = 0; j < n; j++)
        if (rnd() % 10 < 3)
            idx[k++] = j;
    for (size_t i = k; i > 1; i--) {   /* predictors need not sort */
        size_t r = rnd() % i;
        uint32_t t = idx[i - 1];
        idx[i - 1] = idx[r];
        idx[r] = t;
    }
    return k;
}

/* What the pool promises bit for bit (ffn_pool.h): thread t of n takes
 * idx[na * t / n .. na * (t + 1) / n), accumulated alone into zeros; the
 * buffers are added serially in thread order, empty slices skipped. */
static void serial_sum(const ffn_kernels *k, const shard *s, pi_act act, const float *x,
                       const uint32_t *idx, size_t na, uint32_t n, int dense, float *out)
{
    uint32_t dim = s->l.dim;
    float *buf = malloc((dim ? dim : 1) * sizeof *buf);
    CHECK(buf, "out of memory");
    memset(out, 0, dim * sizeof *out);
    for (uint32_t t = 0; t < n; t++) {
        size_t b = na * t / n, e = na * (t + 1) / n;
        if (e == b)
            continue;
        float *acc = t ? buf : out;
        memset(buf, 0, dim * sizeof *buf);
        if (dense)
            ffn_dense_accum(k, &s->l, act, x, idx + b, e - b, acc);
        else
            ffn_sparse_accum(k, &s->l, act, x, idx + b, e - b, acc);
        for (uint32_t i = 0; t && i < dim; i++)
            out[i] += buf[i];
    }
    free(buf);
}

/* ffn_sparse_accum / ffn_dense_accum as they were before the kernels were
 * told the next row (dot_then, axpy_then): one neuron at a time through
 * k->dot and k->axpy. The prefetch must not change a single bit. */
static void accum_unhinted(const ffn_kernels *k, const ffn_sparse_layer *l, pi_act act,
                           const float *x, const uint32_t *idx, size_t na, int dense, float *out)
{
    for (size_t i = 0; i < na; i++) {
        uint32_t j = idx[i];
        float g = k->dot(l->gate_type, (const char *)l->gate + j * l->gate_stride, x, l->dim);
        g = l->gate_bias ? g + l->gate_bias[j] : g;
        if (!dense && act != PI_ACT_SILU && !(g > 0.0f))
            continue;
        float u = pi_act_uses_up(act)
                      ? k->dot(l->up_type, (const char *)l->up + j * l->up_stride, x, l->dim)
                      : 0.0f;
        float h = ops_ffn_act(act, g, u);
        if (!dense && h == 0.0f)
            continue;
        k->axpy(l->down_t_type, h, (const char *)l->down_t + j * l->down_t_stride, out, l->dim);
    }
}

static int cases, skipped_notes;
static double worst_float, worst_quant;   /* largest error seen, for the log */

/* One shard, every variant and activation and list kind, plus the pool. */
static void check_shard(pi_type type, uint32_t dim, uint32_t n, const ffn_kernels **ks, size_t nk)
{
    double tol = (type == PI_TYPE_Q8_0 || type == PI_TYPE_Q4_0) ? TOL_QUANT : TOL_FLOAT;
    shard s;
    shard_make(&s, type, dim, n);
    float *x = malloc(dim * sizeof *x), *ref = malloc(dim * sizeof *ref);
    float *got = malloc(dim * sizeof *got), *one = malloc(dim * sizeof *one);
    float *serial = malloc(dim * sizeof *serial);
    uint32_t *idx = malloc((n ? n : 1) * sizeof *idx);
    CHECK(x && ref && got && one && serial && idx, "out of memory");
    for (uint32_t i = 0; i < dim; i++)
        x[i] = rndf();
    pi_error err;
    for (size_t a = 0; a < sizeof acts / sizeof acts[0]; a++) {
        for (int kind = 0; kind < 4; kind++) {
            size_t na = make_list(kind, n, idx);
            ffn_sparse_ref(&s.l, acts[a], x, idx, na, ref);
            double sc = term_scale(&s.l, acts[a], x, idx, na);
            for (size_t v = 0; v < nk; v++) {
                memset(got, 0, dim * sizeof *got);
                ffn_sparse_accum(ks[v], &s.l, acts[a], x, idx, na, got);
                double e = rel_err(got, ref, dim, sc);
                double *w = tol == TOL_QUANT ? &worst_quant : &worst_float;
                *w = e > *w ? e : *w;
                CHECK(e <= tol, "%s %s dim %u act %s list %d (%zu active): rel err %.3g > %.0e",
                      ks[v]->name, pi_type_name(type), dim, pi_act_name(acts[a]), kind, na, e, tol);
                for (int dense = 0; dense < 2; dense++) {
                    memset(got, 0, dim * sizeof *got);
                    memset(one, 0, dim * sizeof *one);
                    if (dense)
                        ffn_dense_accum(ks[v], &s.l, acts[a], x, idx, na, got);
                    else
                        ffn_sparse_accum(ks[v], &s.l, acts[a], x, idx, na, got);
                    accum_unhinted(ks[v], &s.l, acts[a], x, idx, na, dense, one);
                    CHECK(memcmp(got, one, dim * sizeof *got) == 0,
                          "%s %s %s dim %u act %s list %d: prefetching changed the bits",
                          dense ? "dense" : "sparse", ks[v]->name, pi_type_name(type), dim,
                          pi_act_name(acts[a]), kind);
                }
                /* The pool: 1 thread is the variant itself; 2..5 split the list
                 * (5 leaves dims whose lines do not divide evenly). */
                for (uint32_t t = 1; t <= 5; t++) {
                    ffn_pool *p = ffn_pool_new(t, dim + 5, ks[v], &err);
                    CHECK(p, "%s", err.msg);
                    CHECK(ffn_sparse_run(p, &s.l, acts[a], x, idx, na, got, &err) == 0, "%s", err.msg);
                    serial_sum(ks[v], &s, acts[a], x, idx, na, t, 0, serial);
                    CHECK(memcmp(got, serial, dim * sizeof *got) == 0,
                          "pool %s %u threads %s dim %u act %s list %d: not the serial sum's bits",
                          ks[v]->name, t, pi_type_name(type), dim, pi_act_name(acts[a]), kind);
                    if (t == 1) {
                        memcpy(one, got, dim * sizeof *one);
                    } else {
                        e = rel_err(got, one, dim, sc);
                        CHECK(e <= tol, "pool %s %u threads %s dim %u act %s list %d: rel err %.3g",
                              ks[v]->name, t, pi_type_name(type), dim, pi_act_name(acts[a]), kind, e);
                    }
                    CHECK(rel_err(got, ref, dim, sc) <= tol, "pool %s %u threads vs plain", ks[v]->name, t);
                    /* Deterministic: a second call gives the same bits. */
                    float *again = malloc(dim * sizeof *again);
                    CHECK(again, "out of memory");
                    CHECK(ffn_sparse_run(p, &s.l, acts[a], x, idx, na, again, &err) == 0, "%s", err.msg);
                    CHECK(memcmp(again, got, dim * sizeof *got) == 0,
                          "pool %s %u threads: two calls differ", ks[v]->name, t);
                    free(again);
                    /* The dense path over every neuron equals the sparse one. */
                    if (kind == 2) {
                        float *dense = malloc(dim * sizeof *dense);
                        CHECK(dense, "out of memory");
                        CHECK(ffn_dense_run(p, &s.l, acts[a], x, idx, dense, &err) == 0, "%s", err.msg);
                        CHECK(rel_err(dense, ref, dim, sc) <= tol, "dense pool %s %u threads vs plain",
                              ks[v]->name, t);
                        serial_sum(ks[v], &s, acts[a], x, idx, na, t, 1, serial);
                        CHECK(memcmp(dense, serial, dim * sizeof *dense) == 0,
                              "dense pool %s %u threads: not the serial sum's bits", ks[v]->name, t);
                        free(dense);
                    }
                    ffn_pool_free(&p);
                    CHECK(p == NULL, "ffn_pool_free nulls the pointer");
                }
                cases++;
            }
        }
    }
    free(x);
    free(ref);
    free(got);
    free(one);
    free(serial);
    free(idx);
    shard_free(&s);
}

/* The plain definition agrees with the model's reference (ops_ffn_list over
 * untransposed F32 weights), so "equals plain" means "computes the FFN". */
static void check_plain_is_the_ffn(void)
{
    uint32_t dim = 96, n = 40;
    shard s;
    shard_make(&s, PI_TYPE_F32, dim, n);
    pi_layer l;
    memset(&l, 0, sizeof l);
    l.ffn_gate = (pi_tensor){PI_TYPE_F32, dim, n, dim * 4, s.gate_f32};
    l.ffn_up = (pi_tensor){PI_TYPE_F32, dim, n, dim * 4, s.up_f32};
    l.ffn_down = (pi_tensor){PI_TYPE_F32, n, dim, n * 4, s.down_f32};
    float x[96], ref[96], want[96];
    uint32_t idx[40];
    for (uint32_t i = 0; i < dim; i++)
        x[i] = rndf();
    for (size_t a = 0; a < 3; a++) {
        size_t na = make_list(3, n, idx);
        ffn_sparse_ref(&s.l, acts[a], x, idx, na, ref);
        memset(want, 0, sizeof want);
        ops_ffn_list(&l, acts[a], x, idx, na, want);
        double sc = term_scale(&s.l, acts[a], x, idx, na);
        CHECK(rel_err(ref, want, dim, sc) <= TOL_FLOAT, "plain vs ops_ffn_list, act %s: %.3g",
              pi_act_name(acts[a]), rel_err(ref, want, dim, sc));
    }
    shard_free(&s);
}

/* The metric catches a real bug: losing the strongest active neuron is far
 * above the tolerance (so the checks above can fail). */
static void check_metric_fails(void)
{
    uint32_t dim = 256, n = 64;
    shard s;
    shard_make(&s, PI_TYPE_Q4_0, dim, n);
    float x[256], full[256], less[256];
    uint32_t idx[64], rest[64];
    for (uint32_t i = 0; i < dim; i++)
        x[i] = rndf();
    size_t na = make_list(2, n, idx);
    ffn_sparse_ref(&s.l, PI_ACT_SILU, x, idx, na, full);
    double sc = term_scale(&s.l, PI_ACT_SILU, x, idx, na), worst = 0.0;
    for (size_t drop = 0; drop < na; drop++) {
        size_t k = 0;
        for (size_t i = 0; i < na; i++)
            if (i != drop)
                rest[k++] = idx[i];
        ffn_sparse_ref(&s.l, PI_ACT_SILU, x, rest, k, less);
        double e = rel_err(less, full, dim, sc);
        worst = e > worst ? e : worst;
    }
    CHECK(worst > 10 * TOL_QUANT, "losing the strongest neuron: only %.3g", worst);
    printf("losing the strongest of %zu neurons: error %.3g\n", na, worst);
    shard_free(&s);
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0)
        CHECK(errno == EINTR, "nanosleep: %s", strerror(errno));
}

/* Calls in a row as a step's layers come, with gaps inside the spin budget
 * (helpers awake) and beyond it (helpers asleep on the futex), at budgets 0,
 * short and the default: each result is the serial sum's bits, whichever
 * way the threads waited (and TSan sees both hand-offs and the barrier). */
static void check_pool_waits(const ffn_kernels *k)
{
    enum { N_LISTS = 8, CALLS = 60 };
    uint32_t dim = 1000, n = 96;
    shard s;
    shard_make(&s, PI_TYPE_F16, dim, n);
    float *x = malloc(dim * sizeof *x), *got = malloc(dim * sizeof *got);
    float *want = malloc(dim * sizeof *want);
    uint32_t *idx = malloc((size_t)N_LISTS * n * sizeof *idx);
    size_t na[N_LISTS];
    CHECK(x && got && want && idx, "out of memory");
    for (uint32_t i = 0; i < dim; i++)
        x[i] = rndf();
    for (int i = 0; i < N_LISTS; i++)
        na[i] = make_list(i % 4 == 0 ? 1 : 3, n, idx + (size_t)i * n);
    static const uint32_t spins[] = {0, 30, FFN_POOL_SPIN_US};
    for (uint32_t t = 2; t <= 3; t++) {
        for (size_t sp = 0; sp < sizeof spins / sizeof spins[0]; sp++) {
            pi_error err;
            ffn_pool *p = ffn_pool_new(t, dim, k, &err);
            CHECK(p, "%s", err.msg);
            ffn_pool_set_spin_us(p, spins[sp]);
            for (int c = 0; c < CALLS; c++) {
                const uint32_t *list = idx + (size_t)(c % N_LISTS) * n;
                pi_act act = acts[c % 3];
                CHECK(ffn_sparse_run(p, &s.l, act, x, list, na[c % N_LISTS], got, &err) == 0, "%s", err.msg);
                serial_sum(k, &s, act, x, list, na[c % N_LISTS], t, 0, want);
                CHECK(memcmp(got, want, dim * sizeof *got) == 0,
                      "%u threads, spin %u us, call %d: not the serial sum's bits", t, spins[sp], c);
                if (c % 20 == 19)
                    sleep_us((long)spins[sp] + 1000);   /* past the budget: helpers sleep */
                else if (c % 4 == 3)
                    sleep_us(100);                      /* a layer's attention gap */
            }
            ffn_pool_free(&p);
        }
    }
    free(x);
    free(got);
    free(want);
    free(idx);
    shard_free(&s);
}

/* Threads of this process whose allowed CPUs are exactly one (/proc). */
static int pinned_tasks(void)
{
    DIR *d = opendir("/proc/self/task");
    CHECK(d, "opendir /proc/self/task: %s", strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], line[512];
        snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;   /* the thread has ended */
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "Cpus_allowed_list:", 18) == 0) {
                const char *v = line + 18 + strspn(line + 18, " \t");
                n += strcspn(v, ",-\n") == strcspn(v, "\n");
            }
        CHECK(fclose(f) == 0, "fclose %s", path);
    }
    CHECK(closedir(d) == 0, "closedir");
    return n;
}

/* Each helper pins itself to one CPU; the caller keeps its affinity. */
static void check_pinning(const ffn_kernels *k)
{
    cpu_set_t before, after;
    CHECK(sched_getaffinity(0, sizeof before, &before) == 0, "sched_getaffinity: %s", strerror(errno));
    if (CPU_COUNT(&before) < 2) {
        printf("note: pinning not checked: this process may run on one CPU only, "
               "so a pinned thread looks like any other\n");
        return;
    }
    int base = pinned_tasks();
    pi_error err;
    shard s;
    shard_make(&s, PI_TYPE_F32, 64, 8);
    float x[64] = {0}, out[64];
    uint32_t idx[2] = {1, 5};
    ffn_pool *p = ffn_pool_new(3, 64, k, &err);
    CHECK(p, "%s", err.msg);
    /* A call returns only after every helper ran, and each pins itself first. */
    CHECK(ffn_sparse_run(p, &s.l, PI_ACT_RELU, x, idx, 2, out, &err) == 0, "%s", err.msg);
    int pinned = pinned_tasks() - base;
    CHECK(pinned == 2, "%d of 2 helpers pinned to one CPU", pinned);
    CHECK(sched_getaffinity(0, sizeof after, &after) == 0, "sched_getaffinity: %s", strerror(errno));
    CHECK(CPU_EQUAL(&before, &after), "the caller's affinity changed");
    ffn_pool_free(&p);
    shard_free(&s);
}

static void check_errors(const ffn_kernels *k)
{
    pi_error err;
    shard s;
    shard_make(&s, PI_TYPE_F16, 64, 8);
    ffn_pool *p = ffn_pool_new(2, 32, k, &err);
    CHECK(p, "%s", err.msg);
    float x[64] = {0}, out[64];
    uint32_t idx[2] = {1, 8};
    CHECK(ffn_sparse_run(p, &s.l, PI_ACT_RELU, x, idx, 1, out, &err) == -1, "dim over max_dim");
    CHECK(strstr(err.msg, "max_dim"), "message names max_dim: %s", err.msg);
    ffn_pool_free(&p);
    p = ffn_pool_new(3, 64, k, &err);
    CHECK(p, "%s", err.msg);
    out[0] = 42.0f;
    CHECK(ffn_sparse_run(p, &s.l, PI_ACT_RELU, x, idx, 2, out, &err) == -1, "index 8 of 8 neurons");
    CHECK(strstr(err.msg, "active[1]") && out[0] == 42.0f, "names the index, out untouched: %s", err.msg);
    ffn_sparse_layer bad = s.l;
    bad.up_type = PI_TYPE_Q8_0;   /* 64 is a multiple of 32: fine */
    bad.gate_type = (pi_type)3;   /* q4_1: unsupported */
    CHECK(ffn_sparse_run(p, &bad, PI_ACT_RELU, x, idx, 1, out, &err) == -1, "unsupported type");
    CHECK(strstr(err.msg, "gate"), "names the gate rows: %s", err.msg);
    ffn_pool_free(&p);
    CHECK(ffn_pool_new(0, 64, k, &err) == NULL, "0 threads refused");
    shard_free(&s);
}

static void check_dispatch(void)
{
    pi_error err;
    CHECK(ffn_kernels_by_name("sse9", &err) == NULL && strstr(err.msg, "sse9"), "unknown name");
    CHECK(setenv("PI_CPU_KERNEL", "plain", 1) == 0, "setenv");
    const ffn_kernels *k = ffn_kernels_select(&err);
    CHECK(k && strcmp(k->name, "plain") == 0, "PI_CPU_KERNEL=plain forces plain");
    CHECK(setenv("PI_CPU_KERNEL", "bogus", 1) == 0, "setenv");
    CHECK(ffn_kernels_select(&err) == NULL && strstr(err.msg, "PI_CPU_KERNEL=bogus"),
          "a bad PI_CPU_KERNEL is an error: %s", err.msg);
    CHECK(unsetenv("PI_CPU_KERNEL") == 0, "unsetenv");
    k = ffn_kernels_select(&err);
    CHECK(k, "%s", err.msg);
    printf("best variant on this CPU: %s\n", k->name);
}

int main(void)
{
    const ffn_kernels *ks[3];
    size_t nk = 0;
    for (size_t v = 0; v < 3; v++) {
        pi_error err;
        const ffn_kernels *k = ffn_kernels_by_name(variants[v], &err);
        if (!k) {
            printf("note: skipping variant %s: %s\n", variants[v], err.msg);
            skipped_notes++;
            continue;
        }
        ks[nk++] = k;
    }
    CHECK(nk >= 1 && strcmp(ks[0]->name, "plain") == 0, "plain always runs");

    check_dispatch();
    check_plain_is_the_ffn();
    check_metric_fails();
    check_errors(ks[nk - 1]);
    check_pool_waits(ks[nk - 1]);
    check_pinning(ks[nk - 1]);

    /* F32/F16/BF16: dims that are not multiples of 64 (or even 8) hit the tails. */
    static const uint32_t float_dims[] = {1, 7, 40, 100, 333, 1000, 1024, 5120};
    static const uint32_t quant_dims[] = {32, 96, 160, 1024, 5120};
    for (size_t i = 0; i < sizeof float_dims / sizeof float_dims[0]; i++) {
        uint32_t n = float_dims[i] >= 1024 ? 24 : 48;
        check_shard(PI_TYPE_F32, float_dims[i], n, ks, nk);
        check_shard(PI_TYPE_F16, float_dims[i], n, ks, nk);
        check_shard(PI_TYPE_BF16, float_dims[i], n, ks, nk);
    }
    for (size_t i = 0; i < sizeof quant_dims / sizeof quant_dims[0]; i++) {
        uint32_t n = quant_dims[i] >= 1024 ? 24 : 48;
        check_shard(PI_TYPE_Q8_0, quant_dims[i], n, ks, nk);
        check_shard(PI_TYPE_Q4_0, quant_dims[i], n, ks, nk);
    }
    check_shard(PI_TYPE_F16, 64, 0, ks, nk);   /* an empty shard */
    printf("ok: %d cases over %zu variants (%d skipped); largest error f32/f16 %.3g, "
           "q8_0/q4_0 %.3g\n", cases, nk, skipped_notes, worst_float, worst_quant);
    return 0;
}
