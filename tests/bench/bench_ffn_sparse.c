/* pi-bench-ffn-sparse: GB/s of weights touched by the sparse FFN kernels
 * (ffn_sparse.h) for each variant and type, at 1..N threads of ffn_pool, on
 * a shard shaped like a 13B layer's: dim 5120, 6912 neurons, 11% active.
 * Every listed neuron reads its gate, up and down^T rows (SiLU keeps every
 * h_j non-zero, as when the predictor is right), so bytes = active x 3 rows.
 * Each call takes the next of 32 random active lists: the shard (60-425 MB)
 * is larger than most caches, as the cold rows of a real model are; not
 * than the GPU host's 300 MiB L3, where --n-ff 55296 --active 0.01 (553
 * active, a 1.7 GB F16 shard) stands for a 13B layer's cold neurons
 * (docs/benchmarks.md, "Prefetching the next row").
 * --gap-us N idles the caller N us between calls (spinning, as a worker waits
 * for the next layer tick while the GPU runs attention), like a real step;
 * the gap is not counted, so the figures show what waking the pool costs;
 * --spin-us N sets how long the pool's threads spin before sleeping.
 * --batch B1,B2,.. compares, for a step of B entries, B separate
 * ffn_sparse_run calls (the per-entry path) with one ffn_sparse_run_batch
 * call (each neuron's rows read once for all the entries listing it): each
 * entry has the same number of active neurons, a share --overlap F of them
 * (default 0.9) from a set all B share (hot-ish neurons), the rest its own
 * random picks; us per layer, and GB/s of the rows each way reads (B calls:
 * B x active rows; batched: the union's rows once). --block-kb K sets the
 * batched walk's block of rows (ffn_pool_set_batch_block).
 * Prints a markdown table (scripts/bench_ffn_sparse.sh, docs/benchmarks.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "ffn_batch.h"
#include "ffn_pool.h"
#include "ffn_sparse.h"

#define N_LISTS 32
#define N_SETS 8        /* batch mode: steps of B lists each, taken in turn */
#define MAX_BATCH 256

typedef struct opts {
    uint32_t dim, n_ff, max_threads;
    double active, seconds, gap_us;
    long spin_us;                     /* -1: the pool's default */
    const char *types, *variants;
    const char *batch;                /* NULL: one entry per call (the thread-count table) */
    double overlap;
    long block_kb;                    /* -1: the pool's default */
    long huge;                        /* 1: the shard advised huge pages, as cpu_shard does */
} opts;

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--dim N] [--n-ff N] [--active FRACTION] [--threads MAX]\n"
            "          [--seconds S] [--gap-us US] [--spin-us US] [--types f32,f16,bf16,q8_0,q4_0]\n"
            "          [--variants plain,avx2,avx512] [--batch B1,B2,..] [--overlap F] [--block-kb K]\n"
            "          [--huge 0|1]   (1, the default: the shard asks for huge pages, as cpu_shard does)\n",
            argv0);
    return 2;
}

static int parse(int argc, char **argv, opts *o)
{
    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    *o = (opts){5120, 6912, nproc > 0 ? (uint32_t)nproc : 1, 0.11, 0.5, 0.0, -1,
                "f32,f16,q8_0,q4_0", "plain,avx2,avx512", NULL, 0.9, -1, 1};
    for (int i = 1; i < argc; i += 2) {   /* every flag takes a value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return -1;
        if (strcmp(a, "--dim") == 0)
            o->dim = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(a, "--n-ff") == 0)
            o->n_ff = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(a, "--active") == 0)
            o->active = strtod(v, NULL);
        else if (strcmp(a, "--threads") == 0)
            o->max_threads = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(a, "--seconds") == 0)
            o->seconds = strtod(v, NULL);
        else if (strcmp(a, "--gap-us") == 0)
            o->gap_us = strtod(v, NULL);
        else if (strcmp(a, "--spin-us") == 0)
            o->spin_us = strtol(v, NULL, 10);
        else if (strcmp(a, "--types") == 0)
            o->types = v;
        else if (strcmp(a, "--variants") == 0)
            o->variants = v;
        else if (strcmp(a, "--batch") == 0)
            o->batch = v;
        else if (strcmp(a, "--overlap") == 0)
            o->overlap = strtod(v, NULL);
        else if (strcmp(a, "--block-kb") == 0)
            o->block_kb = strtol(v, NULL, 10);
        else if (strcmp(a, "--huge") == 0)
            o->huge = strtol(v, NULL, 10);
        else
            return -1;
    }
    if (o->dim == 0 || o->dim % 32 || o->n_ff == 0 || o->active <= 0 || o->active > 1 ||
        o->max_threads == 0 || o->seconds <= 0 || !(o->gap_us >= 0 && o->gap_us <= 1e6) ||
        o->spin_us < -1 || o->spin_us > 1000000 || !(o->overlap >= 0 && o->overlap <= 1) ||
        o->block_kb == 0 || o->block_kb < -1 || o->block_kb > 1048576 || (o->huge != 0 && o->huge != 1)) {
        fprintf(stderr, "bench: dim must be a positive multiple of 32, n-ff > 0, "
                "0 < active <= 1, threads > 0, seconds > 0, 0 <= gap-us and spin-us <= 1e6, "
                "0 <= overlap <= 1, 1 <= block-kb <= 1048576, huge 0 or 1\n");
        return -1;
    }
    for (const char *p = o->batch; p && *p;) {
        char *end;
        unsigned long b = strtoul(p, &end, 10);
        if (end == p || b < 1 || b > MAX_BATCH || (*end && *end != ',')) {
            fprintf(stderr, "bench: --batch takes sizes 1..%d separated by commas\n", MAX_BATCH);
            return -1;
        }
        p = *end ? end + 1 : end;
    }
    return 0;
}

/* Is name in the comma-separated list? */
static int listed(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return 1;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

/* The shard in cpu_shard's layout: one record gate | up | down^T per neuron,
 * in an anonymous map (huge pages advised with o->huge); free_shard frees it. */
static char *make_shard(pi_type type, const opts *o, ffn_sparse_layer *l)
{
    size_t rb;
    if (pi_row_bytes(type, o->dim, &rb) != 0)
        return NULL;
    size_t rec = 3 * rb, bytes = (size_t)o->n_ff * rec;
    char *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return NULL;
    if (o->huge && madvise(mem, bytes, MADV_HUGEPAGE) != 0)
        fprintf(stderr, "bench: madvise(MADV_HUGEPAGE): %s (the shard keeps small pages)\n", strerror(errno));
    float *row = malloc(o->dim * sizeof *row);
    if (!row) {
        munmap(mem, bytes);
        return NULL;
    }
    for (uint32_t j = 0; j < o->n_ff; j++) {
        for (int part = 0; part < 3; part++) {
            for (uint32_t i = 0; i < o->dim; i++)
                row[i] = ((float)rnd() / 4294967296.0f - 0.5f) * 0.1f;
            pi_quantize_row(type, row, mem + (size_t)j * rec + (size_t)part * rb, o->dim);
        }
    }
    free(row);
    *l = (ffn_sparse_layer){
        .dim = o->dim, .n_neurons = o->n_ff,
        .gate_type = type, .up_type = type, .down_t_type = type,
        .gate = mem, .up = mem + rb, .down_t = mem + 2 * rb,
        .gate_stride = rec, .up_stride = rec, .down_t_stride = rec,
    };
    return mem;
}

static void free_shard(char *mem, const opts *o, const ffn_sparse_layer *l)
{
    munmap(mem, (size_t)o->n_ff * l->gate_stride);   /* the whole map: cannot fail */
}

/* N_LISTS random active lists of n_act distinct neurons each, sorted (as a
 * predictor's threshold scan yields them). */
static void make_lists(uint32_t n_ff, uint32_t n_act, uint32_t *lists)
{
    for (int k = 0; k < N_LISTS; k++) {
        uint32_t *idx = lists + (size_t)k * n_act, got = 0;
        for (uint32_t j = 0; j < n_ff && got < n_act; j++)   /* selection sampling */
            if ((uint64_t)rnd() * (n_ff - j) < (uint64_t)(n_act - got) << 32)
                idx[got++] = j;
    }
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* GB/s and microseconds per call of kernels k at t threads; the gap between
 * calls (o->gap_us) is left out of both. */
static int measure(const ffn_kernels *k, uint32_t t, const ffn_sparse_layer *l, const opts *o,
                   const float *x, const uint32_t *lists, uint32_t n_act, size_t bytes_per_call,
                   float *out, double *gbs, double *us)
{
    pi_error err;
    ffn_pool *p = ffn_pool_new(t, o->dim, k, &err);
    if (!p) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return -1;
    }
    if (o->spin_us >= 0)
        ffn_pool_set_spin_us(p, (uint32_t)o->spin_us);
    int calls = 0;
    for (int w = 0; w < 2; w++)   /* warm the threads and the page tables */
        if (ffn_sparse_run(p, l, PI_ACT_SILU, x, lists, n_act, out, &err) != 0)
            goto fail;
    double t0 = now(), t1, busy = 0.0;
    do {
        const uint32_t *idx = lists + (size_t)(calls % N_LISTS) * n_act;
        double c0 = now();
        if (ffn_sparse_run(p, l, PI_ACT_SILU, x, idx, n_act, out, &err) != 0)
            goto fail;
        t1 = now();
        busy += t1 - c0;
        calls++;
        while (o->gap_us > 0 && (now() - t1) * 1e6 < o->gap_us)
            cpu_relax();
        t1 = now();
    } while (t1 - t0 < o->seconds || calls < 3);
    *us = busy / calls * 1e6;
    *gbs = (double)bytes_per_call * calls / busy / 1e9;
    ffn_pool_free(&p);
    return 0;
fail:
    fprintf(stderr, "bench: %s\n", err.msg);
    ffn_pool_free(&p);
    return -1;
}

/* Batch mode: N_SETS steps of B entries of n_act ascending neurons each:
 * shared = round(overlap * n_act) from the step's common set, the rest the
 * entry's own picks outside it. lists: N_SETS * B lists of n_act. Returns
 * the mean size of a step's union, or -1 when out of memory. */
static double make_batch_lists(const opts *o, uint32_t B, uint32_t n_act, uint32_t *lists)
{
    enum { SHARED = 1, MINE = 2, ANY = 4 };
    uint8_t *mark = malloc(o->n_ff);
    if (!mark)
        return -1;
    uint32_t shared = (uint32_t)(o->overlap * n_act + 0.5);
    double unions = 0;
    for (int set = 0; set < N_SETS; set++) {
        memset(mark, 0, o->n_ff);
        for (uint32_t got = 0; got < shared;) {
            uint32_t j = rnd() % o->n_ff;
            if (!(mark[j] & SHARED)) {
                mark[j] |= SHARED | ANY;
                got++;
            }
        }
        for (uint32_t e = 0; e < B; e++) {
            for (uint32_t got = shared; got < n_act;) {
                uint32_t j = rnd() % o->n_ff;
                if (!(mark[j] & (SHARED | MINE))) {
                    mark[j] |= MINE | ANY;
                    got++;
                }
            }
            uint32_t *idx = lists + ((size_t)set * B + e) * n_act, k = 0;
            for (uint32_t j = 0; j < o->n_ff; j++) {
                if (mark[j] & (SHARED | MINE))
                    idx[k++] = j;
                mark[j] &= (uint8_t)~MINE;
            }
        }
        for (uint32_t j = 0; j < o->n_ff; j++)
            unions += (mark[j] & ANY) != 0;
    }
    free(mark);
    return unions / N_SETS;
}

/* Step `set` of the batch lists as an ffn_batch (arrays of B). */
static ffn_batch batch_at(uint32_t B, uint32_t n_act, int set, const uint32_t *lists, const float **xp,
                          const uint32_t **ap, size_t *counts, float **op, const float *x, float *out,
                          uint32_t dim)
{
    for (uint32_t e = 0; e < B; e++) {
        xp[e] = x + (size_t)e * dim;
        ap[e] = lists + ((size_t)set * B + e) * n_act;
        counts[e] = n_act;
        op[e] = out + (size_t)e * dim;
    }
    return (ffn_batch){.n = B, .x = xp, .active = ap, .n_active = counts, .out = op};
}

static void idle(double us)
{
    double t1 = now();
    while (us > 0 && (now() - t1) * 1e6 < us)
        cpu_relax();
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One step of B entries at t threads, interleaved so load on the machine
 * hits both ways alike: B ffn_sparse_run calls, then one
 * ffn_sparse_run_batch call, each followed by the gap. The median us per
 * layer of each (other work on a shared machine lands in a few calls);
 * *same: whether the batched outputs equalled the separate ones. */
static int measure_batch(const ffn_kernels *k, uint32_t t, const ffn_sparse_layer *l, const opts *o,
                         uint32_t B, const float *x, const uint32_t *lists, uint32_t n_act, float *out,
                         float *out_sep, double *us_sep, double *us_bat, int *same)
{
    pi_error err;
    ffn_pool *p = ffn_pool_new_batch(t, o->dim, B, k, &err);
    const float *xp[MAX_BATCH];
    const uint32_t *ap[MAX_BATCH];
    size_t counts[MAX_BATCH];
    float *op[MAX_BATCH];
    if (!p) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return -1;
    }
    if (o->spin_us >= 0)
        ffn_pool_set_spin_us(p, (uint32_t)o->spin_us);
    if (o->block_kb > 0)
        ffn_pool_set_batch_block(p, (size_t)o->block_kb * 1024);
    enum { MAX_CALLS = 4096 };
    double sep = 0, bat = 0, *seps = malloc(MAX_CALLS * sizeof *seps), *bats = malloc(MAX_CALLS * sizeof *bats);
    int calls = 0;
    *same = 1;
    if (!seps || !bats) {
        snprintf(err.msg, sizeof err.msg, "out of memory");
        goto fail;
    }
    for (int c = -2; calls < MAX_CALLS && (c < 3 || sep + bat < 2 * o->seconds); c++) {   /* two rounds warm up */
        /* Each way on its own step's lists: the rows one read are not in
         * the cache for the other (the check below runs on the same step). */
        int set = (c + N_SETS) % N_SETS;
        ffn_batch b = batch_at(B, n_act, c < 0 ? set : (set + N_SETS / 2) % N_SETS, lists, xp, ap, counts, op, x,
                               out, o->dim);
        const uint32_t *const *sep_lists = ap;
        const uint32_t *own[MAX_BATCH];
        if (c >= 0) {
            for (uint32_t e = 0; e < B; e++)
                own[e] = lists + ((size_t)set * B + e) * n_act;
            sep_lists = own;
        }
        double t0 = now();
        for (uint32_t e = 0; e < B; e++)
            if (ffn_sparse_run(p, l, PI_ACT_SILU, xp[e], sep_lists[e], n_act, out_sep + (size_t)e * o->dim, &err) != 0)
                goto fail;
        double t1 = now();
        idle(o->gap_us);
        double t2 = now();
        if (ffn_sparse_run_batch(p, l, PI_ACT_SILU, &b, &err) != 0)
            goto fail;
        double t3 = now();
        idle(o->gap_us);
        if (c < 0) {   /* warm-up: both ways ran the same step */
            *same = *same && memcmp(out, out_sep, (size_t)B * o->dim * sizeof *out) == 0;
            continue;
        }
        sep += t1 - t0;
        bat += t3 - t2;
        seps[calls] = t1 - t0;
        bats[calls] = t3 - t2;
        calls++;
    }
    *us_sep = median(seps, calls) * 1e6;
    *us_bat = median(bats, calls) * 1e6;
    free(seps);
    free(bats);
    ffn_pool_free(&p);
    return 0;
fail:
    fprintf(stderr, "bench: %s\n", err.msg);
    free(seps);
    free(bats);
    ffn_pool_free(&p);
    return -1;
}

/* The batch table: per type, variant, thread count and B. */
static int run_batches(const opts *o, const uint32_t *threads, uint32_t n_threads, uint32_t n_act)
{
    static const pi_type types[] = {PI_TYPE_F32, PI_TYPE_F16, PI_TYPE_BF16, PI_TYPE_Q8_0, PI_TYPE_Q4_0};
    static const char *const variants[] = {"plain", "avx2", "avx512"};
    uint32_t bs[64], nb = 0, max_b = 1;
    for (const char *p = o->batch; *p && nb < 64;) {
        char *end;
        bs[nb] = (uint32_t)strtoul(p, &end, 10);
        max_b = bs[nb] > max_b ? bs[nb] : max_b;
        nb++;
        p = *end ? end + 1 : end;
    }
    /* Inputs and outputs on cache lines, as the step segment's are (a
     * misaligned row of x costs the dots up to a third more here). */
    size_t fbytes = ((size_t)max_b * o->dim * sizeof(float) + 63) / 64 * 64;
    float *x = aligned_alloc(64, fbytes), *out = aligned_alloc(64, fbytes), *out_sep = aligned_alloc(64, fbytes);
    uint32_t *lists = malloc((size_t)N_SETS * max_b * n_act * sizeof *lists);
    if (!x || !out || !out_sep || !lists) {
        fprintf(stderr, "bench: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < (size_t)max_b * o->dim; i++)
        x[i] = (float)rnd() / 4294967296.0f - 0.5f;
    pi_error err;
    const ffn_kernels *best = ffn_kernels_select(&err);
    printf("dim %u, %u neurons, %u active per entry (%.0f%%), %.0f%% of them shared by a step's entries, "
           "SiLU; median us per layer for B entries (GB/s of the rows read: B calls read B x %u rows, the batched "
           "call the union's once); best variant here: %s", o->dim, o->n_ff, n_act, 100.0 * o->active,
           100.0 * o->overlap, n_act, best ? best->name : "?");
    if (o->gap_us > 0)
        printf("; %.0f us idle after each way's layer (not counted)", o->gap_us);
    printf("; blocks of %ld KiB of rows", o->block_kb > 0 ? o->block_kb : (long)(FFN_BATCH_BLOCK_BYTES / 1024));
    printf("\n\n| type | variant | thr | B | union rows | B calls | batched | batched / one call | speed-up |\n"
           "|---|---|---|---|---|---|---|---|---|\n");
    fflush(stdout);
    int rc = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0] && rc == 0; ti++) {
        if (!listed(o->types, pi_type_name(types[ti])))
            continue;
        ffn_sparse_layer l;
        char *mem = make_shard(types[ti], o, &l);
        if (!mem) {
            fprintf(stderr, "bench: cannot build the %s shard (out of memory?)\n", pi_type_name(types[ti]));
            rc = 1;
            break;
        }
        for (size_t v = 0; v < 3 && rc == 0; v++) {
            if (!listed(o->variants, variants[v]))
                continue;
            const ffn_kernels *k = ffn_kernels_by_name(variants[v], &err);
            if (!k) {
                printf("| %s | %s | skipped: %s |\n", pi_type_name(types[ti]), variants[v], err.msg);
                continue;
            }
            for (uint32_t i = 0; i < n_threads && rc == 0; i++) {
                for (uint32_t bi = 0; bi < nb && rc == 0; bi++) {
                    uint32_t B = bs[bi];
                    double uni = make_batch_lists(o, B, n_act, lists), us_sep, us_bat;
                    int same;
                    if (uni < 0 || measure_batch(k, threads[i], &l, o, B, x, lists, n_act, out, out_sep, &us_sep,
                                                 &us_bat, &same) != 0) {
                        rc = 1;
                        break;
                    }
                    double rec = (double)l.gate_stride;   /* a record is the 3 rows */
                    printf("| %s | %s | %u | %u | %.0f | %.0f (%.1f) | %.0f (%.1f) | %.2f | %.2fx |%s\n",
                           pi_type_name(types[ti]), k->name, threads[i], B, uni, us_sep,
                           (double)B * n_act * rec / us_sep / 1e3, us_bat, uni * rec / us_bat / 1e3,
                           us_bat / (us_sep / B), us_sep / us_bat, same ? "" : " OUTPUTS DIFFER |");
                    fflush(stdout);
                    if (!same)
                        rc = 1;   /* the batched call must give each entry its own call's bits */
                }
            }
        }
        free_shard(mem, o, &l);
    }
    free(x);
    free(out);
    free(out_sep);
    free(lists);
    return rc;
}

int main(int argc, char **argv)
{
    opts o;
    if (parse(argc, argv, &o) != 0)
        return usage(argv[0]);
    static const pi_type types[] = {PI_TYPE_F32, PI_TYPE_F16, PI_TYPE_BF16, PI_TYPE_Q8_0, PI_TYPE_Q4_0};
    static const char *const variants[] = {"plain", "avx2", "avx512"};
    uint32_t threads[16], n_threads = 0;
    for (uint32_t t = 1; t < o.max_threads && n_threads < 15; t *= 2)
        threads[n_threads++] = t;
    threads[n_threads++] = o.max_threads;

    uint32_t n_act = (uint32_t)(o.active * o.n_ff + 0.5);
    n_act = n_act ? n_act : 1;
    if (o.batch)
        return run_batches(&o, threads, n_threads, n_act);
    uint32_t *lists = malloc((size_t)N_LISTS * n_act * sizeof *lists);
    float *x = malloc(o.dim * sizeof *x), *out = malloc(o.dim * sizeof *out);
    if (!lists || !x || !out) {
        fprintf(stderr, "bench: out of memory\n");
        return 1;
    }
    make_lists(o.n_ff, n_act, lists);
    for (uint32_t i = 0; i < o.dim; i++)
        x[i] = (float)rnd() / 4294967296.0f - 0.5f;
    pi_error err;
    const ffn_kernels *best = ffn_kernels_select(&err);
    printf("dim %u, %u neurons, %u active (%.0f%%), SiLU; GB/s of weight rows read "
           "(us per call); best variant here: %s", o.dim, o.n_ff, n_act, 100.0 * o.active,
           best ? best->name : "?");
    if (o.gap_us > 0)
        printf("; %.0f us idle between calls (not counted)", o.gap_us);
    if (o.spin_us >= 0)
        printf("; pool spins %ld us", o.spin_us);
    printf("\n\n");
    printf("| type | variant |");
    for (uint32_t i = 0; i < n_threads; i++)
        printf(" %u thr |", threads[i]);
    printf("\n|---|---|");
    for (uint32_t i = 0; i < n_threads; i++)
        printf("---|");
    printf("\n");
    fflush(stdout);

    int rc = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0] && rc == 0; ti++) {
        if (!listed(o.types, pi_type_name(types[ti])))
            continue;
        ffn_sparse_layer l;
        char *mem = make_shard(types[ti], &o, &l);
        if (!mem) {
            fprintf(stderr, "bench: cannot build the %s shard (out of memory?)\n",
                    pi_type_name(types[ti]));
            rc = 1;
            break;
        }
        size_t bytes = (size_t)n_act * l.gate_stride;   /* a record is the 3 rows */
        for (size_t v = 0; v < 3 && rc == 0; v++) {
            if (!listed(o.variants, variants[v]))
                continue;
            const ffn_kernels *k = ffn_kernels_by_name(variants[v], &err);
            if (!k) {
                printf("| %s | %s | skipped: %s |\n", pi_type_name(types[ti]), variants[v], err.msg);
                continue;
            }
            printf("| %s | %s |", pi_type_name(types[ti]), k->name);
            for (uint32_t i = 0; i < n_threads; i++) {
                double gbs, us;
                if (measure(k, threads[i], &l, &o, x, lists, n_act, bytes, out, &gbs, &us) != 0) {
                    rc = 1;
                    break;
                }
                printf(" %.1f (%.0f) |", gbs, us);
                fflush(stdout);
            }
            printf("\n");
        }
        free_shard(mem, &o, &l);
    }
    free(lists);
    free(x);
    free(out);
    return rc;
}
