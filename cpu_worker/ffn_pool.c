/* The sparse FFN thread pool (ffn_pool.h).
 *
 * One call, all through C11 seq_cst atomics (so TSan sees every
 * happens-before): the caller writes the job, sets arrived = 0 and
 * pending = helpers, then bumps gen; every thread (caller included)
 * accumulates its slice of the active list into its own buffer and bumps
 * arrived (releasing that buffer); once arrived == n_threads (acquiring every
 * buffer) it adds its slice of the output dims; a helper then decrements
 * pending (releasing its slice of out), and the caller, done with its own
 * slice, waits for pending == 0 (acquiring all of out). The caller touches
 * the job only after pending == 0, so no helper can still be reading it.
 *
 * Every wait spins (pause, the clock read every SPIN_CHECK pauses) and then
 * sleeps on a futex: helpers waiting for the next call for the pool's spin
 * budget (none for CALM_CALLS calls after such a spin was preempted), waits
 * inside a call for at most CALL_SPIN_US; each word has a sleepers count so
 * whoever changes it skips the wake-up syscall when nobody sleeps.
 * Dekker-style: the waiter bumps sleepers and then lets the kernel compare
 * the word, the waker changes the word and then reads sleepers, all seq_cst,
 * and the kernel rechecks the word under its lock, so a wake-up is never lost. */
#include "ffn_pool.h"
#include "ffn_batch.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SPIN_CHECK 64      /* pauses between clock reads: ~1-10 us, a vDSO call is ~20 ns */
/* Inside a call the threads wait only for each other's equal shares, a few
 * microseconds apart; a longer wait means one lost its CPU to another
 * process, and a waiter that sleeps then gives its own CPU back. */
#define CALL_SPIN_US 100u
/* SPIN_CHECK pauses take ~1-10 us; a longer gap between two clock reads
 * means the spinner was descheduled: its CPU is wanted by another process. */
#define PREEMPTED_NS 100000u
/* A helper whose spin was so preempted sleeps at once for the next
 * CALM_CALLS calls (a step and a half of a 40-layer model), then tries
 * spinning again: on an overloaded machine spinning only burns the pool's
 * share of the CPUs (measured on a loaded 2-core VM: up to 4x slower calls,
 * with outliers of 100s of ms), while on dedicated cores it never triggers. */
#define CALM_CALLS 64u
#define LINE_FLOATS 16     /* buffers and dim slices start on their own 64-byte lines */
#define LINE 64

typedef struct helper {
    ffn_pool *pool;
    uint32_t t;            /* thread index, 1 .. n_threads - 1 */
    uint32_t calm;         /* calls left to wait without spinning; own thread only */
} helper;

/* Each word waiters poll gets its own cache line, so the barrier's bumps do
 * not disturb the threads spinning on gen or the caller polling pending. */
struct ffn_pool {
    uint32_t n_threads, max_dim;
    uint32_t max_pass;     /* entries one batched job takes (buffers for each) */
    const ffn_kernels *k;
    float *bufs;           /* n_threads - 1 partial buffers of stride floats per pass entry */
    size_t stride;
    ffn_batch_scratch *scratch;   /* per thread: its walk over a batch's shares */
    size_t block_bytes;    /* rows per block of a batch's union (ffn_batch.h); the caller's */
    pthread_t *threads;
    helper *helpers;
    uint32_t n_started;
    int *cpus;             /* the caller's allowed CPUs at creation: helper t pins to cpus[t % n_cpus] */
    uint32_t n_cpus;
    _Atomic uint32_t spin_us;
    _Atomic int pin_warned;  /* one message per pool, not one per thread */
    _Atomic int stop;

    /* The job: written by the caller before gen is bumped, read-only after. */
    _Alignas(LINE) const ffn_sparse_layer *l;
    pi_act act;
    const float *x;
    const uint32_t *active;
    size_t n_active;
    float *out;
    const ffn_batch *batch;         /* a batched job (else the one-entry fields above) */
    size_t block_neurons;           /* its union's neurons per block */
    int dense;                      /* every listed neuron's three rows, no skipping */
    _Atomic uint32_t gen;           /* job number; a change wakes helpers */
    _Atomic uint32_t gen_sleepers;

    _Alignas(LINE) _Atomic uint32_t arrived;   /* threads whose buffer is complete */
    _Atomic uint32_t arrived_sleepers;

    _Alignas(LINE) _Atomic uint32_t pending;   /* helpers still working on the job */
    _Atomic uint32_t pending_sleepers;
};

static int run(ffn_pool *p, const ffn_sparse_layer *l, pi_act act, const float *x,
               const uint32_t *active, size_t n_active, float *out, pi_error *err);

static void futex_wait(_Atomic uint32_t *word, uint32_t val)
{
    /* EINTR / EAGAIN just send the caller round its loop again; nothing
     * else can happen on a private word we own. */
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *word)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Monotonic nanoseconds; 0 when the clock fails (the spin then ends). */
static uint64_t now_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One wait's spin budget. The deadline is set at the first clock read, so a
 * wait that ends within SPIN_CHECK pauses never reads the clock. */
typedef struct spin {
    uint64_t budget_ns, end_ns, last_ns;
    uint32_t n;
    int preempted;         /* the spin ended because the thread lost its CPU */
} spin;

static spin spin_begin(const ffn_pool *p, uint32_t cap_us)
{
    uint32_t us = atomic_load_explicit(&p->spin_us, memory_order_relaxed);
    return (spin){.budget_ns = (uint64_t)(us < cap_us ? us : cap_us) * 1000u};
}

/* Pauses once and returns 1 while the budget lasts; 0 (from then on): time
 * to sleep. */
static int spin_on(spin *s)
{
    if (s->budget_ns == 0)
        return 0;
    if (++s->n % SPIN_CHECK == 0) {
        uint64_t t = now_ns();
        if (t != 0 && s->end_ns == 0) {
            s->end_ns = t + s->budget_ns;
        } else if (t == 0 || t >= s->end_ns || t - s->last_ns > PREEMPTED_NS) {
            s->preempted = t != 0 && t - s->last_ns > PREEMPTED_NS;
            s->budget_ns = 0;
            return 0;
        }
        s->last_ns = t;
    }
    cpu_relax();
    return 1;
}

/* Returns once *word != val: spins (at most cap_us), then sleeps on the
 * futex. Returns 1 when the spin was cut short by a preemption, else 0. */
static int wait_while(const ffn_pool *p, _Atomic uint32_t *word, uint32_t val,
                      _Atomic uint32_t *sleepers, uint32_t cap_us)
{
    spin s = spin_begin(p, cap_us);
    while (atomic_load(word) == val) {
        if (spin_on(&s))
            continue;
        atomic_fetch_add(sleepers, 1);
        futex_wait(word, val);
        atomic_fetch_sub(sleepers, 1);
    }
    return s.preempted;
}

/* Returns once *word == want (it only moves towards want): a wait inside a call. */
static void wait_until(const ffn_pool *p, _Atomic uint32_t *word, uint32_t want,
                       _Atomic uint32_t *sleepers)
{
    uint32_t v;
    while ((v = atomic_load(word)) != want)
        wait_while(p, word, v, sleepers, CALL_SPIN_US);
}

/* Call after changing *word. */
static void wake(_Atomic uint32_t *word, _Atomic uint32_t *sleepers)
{
    if (atomic_load(sleepers))
        futex_wake(word);
}

/* Slice of the active list that thread t of n takes (ffn_pool.h). */
static void slice(size_t n_active, uint32_t t, uint32_t n, size_t *b, size_t *e)
{
    *b = n_active * t / n;
    *e = n_active * (t + 1) / n;
}

/* Slice of the output dims that thread t of n adds up, in whole lines. */
static void dim_slice(uint32_t dim, uint32_t t, uint32_t n, size_t *b, size_t *e)
{
    size_t lines = ((size_t)dim + LINE_FLOATS - 1) / LINE_FLOATS;
    size_t lb = lines * t / n * LINE_FLOATS, le = lines * (t + 1) / n * LINE_FLOATS;
    *b = lb < dim ? lb : dim;
    *e = le < dim ? le : dim;
}

/* Thread t's buffer for entry e of a pass (e = 0 for a one-entry call). */
static float *partial(ffn_pool *p, uint32_t t, uint32_t e)
{
    return p->bufs + ((size_t)(t - 1) * p->max_pass + e) * p->stride;
}

/* Thread t's share of a one-entry job, into its buffer (thread 0: out). */
static void accum_one(ffn_pool *p, uint32_t t)
{
    size_t b, e;
    slice(p->n_active, t, p->n_threads, &b, &e);
    float *acc = t ? partial(p, t, 0) : p->out;
    if (t == 0 || e > b)
        memset(acc, 0, (size_t)p->l->dim * sizeof *acc);
    if (e > b)
        ffn_sparse_accum_rows(p->k, p->l, p->act, p->dense, p->x, p->active + b, e - b, acc);
}

/* Thread t's share of a batched job: of every entry's list the slice a
 * one-entry call would give it, so each entry's buffers hold what they would
 * hold alone; the slices of all entries walked together. */
static void accum_batch(ffn_pool *p, uint32_t t)
{
    const ffn_batch *bt = p->batch;
    ffn_batch_scratch *s = &p->scratch[t];
    for (uint32_t e = 0; e < bt->n; e++) {
        slice(bt->n_active[e], t, p->n_threads, &s->cur[e], &s->end[e]);
        s->acc[e] = t ? partial(p, t, e) : bt->out[e];
        if (t == 0 || s->end[e] > s->cur[e])
            memset(s->acc[e], 0, (size_t)p->l->dim * sizeof(float));
    }
    ffn_batch_accum(p->k, p->l, p->act, p->dense, bt, p->block_neurons, s);
}

/* Adds the buffers of threads 1, 2, ... in order into out's dims [db, de),
 * skipping threads whose slice of the n_active-long list was empty (never
 * written; adding zeros would also turn -0 into +0). */
static void reduce_into(ffn_pool *p, float *restrict out, size_t n_active, uint32_t e, size_t db, size_t de)
{
    for (uint32_t u = 1; u < p->n_threads; u++) {
        size_t b, end;
        slice(n_active, u, p->n_threads, &b, &end);
        if (end == b)
            continue;
        const float *restrict buf = partial(p, u, e);
        for (size_t i = db; i < de; i++)
            out[i] += buf[i];
    }
}

/* Thread t's part of the job: accumulate, barrier, reduce. */
static void work(ffn_pool *p, uint32_t t)
{
    uint32_t n = p->n_threads;
    if (p->batch)
        accum_batch(p, t);
    else
        accum_one(p, t);
    if (n == 1)
        return;
    /* Nobody adds a buffer before every buffer is complete. */
    if (atomic_fetch_add(&p->arrived, 1) + 1 == n)
        wake(&p->arrived, &p->arrived_sleepers);
    else
        wait_until(p, &p->arrived, n, &p->arrived_sleepers);
    size_t db, de;
    dim_slice(p->l->dim, t, n, &db, &de);
    if (!p->batch) {
        reduce_into(p, p->out, p->n_active, 0, db, de);
        return;
    }
    for (uint32_t e = 0; e < p->batch->n; e++)
        reduce_into(p, p->batch->out[e], p->batch->n_active[e], e, db, de);
}

/* Pins the calling helper to its CPU; a failure costs speed, not results. */
static void pin(ffn_pool *p, uint32_t t)
{
    if (p->n_cpus == 0)
        return;
    int cpu = p->cpus[t % p->n_cpus];
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    int rc = pthread_setaffinity_np(pthread_self(), sizeof one, &one);
    if (rc != 0 && !atomic_exchange(&p->pin_warned, 1))
        fprintf(stderr, "ffn_pool: cannot pin thread %u to CPU %d (%s); it runs unpinned "
                "(later failures of this pool are not reported)\n", t, cpu, strerror(rc));
}

static void *helper_main(void *arg)
{
    helper *h = arg;
    ffn_pool *p = h->pool;
    pin(p, h->t);
    uint32_t seen = 0;
    for (;;) {
        int cut = wait_while(p, &p->gen, seen, &p->gen_sleepers, h->calm ? 0 : UINT32_MAX);
        h->calm = cut ? CALM_CALLS : h->calm ? h->calm - 1 : 0;
        /* The caller bumps gen once per call and waits for us in between. */
        seen = atomic_load(&p->gen);
        if (atomic_load(&p->stop))
            return NULL;
        work(p, h->t);
        if (atomic_fetch_sub(&p->pending, 1) == 1)
            wake(&p->pending, &p->pending_sleepers);
    }
}

static void stop_threads(ffn_pool *p)
{
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->gen, 1);
    futex_wake(&p->gen);
    for (uint32_t i = 0; i < p->n_started; i++) {
        int rc = pthread_join(p->threads[i], NULL);
        (void)rc;   /* only EDEADLK / EINVAL, impossible for our own live threads */
    }
    p->n_started = 0;
}

void ffn_pool_free(ffn_pool **pp)
{
    ffn_pool *p = *pp;
    if (!p)
        return;
    stop_threads(p);
    if (p->scratch)
        for (uint32_t t = 0; t < p->n_threads; t++)
            ffn_batch_scratch_free(&p->scratch[t]);
    free(p->scratch);
    free(p->bufs);
    free(p->threads);
    free(p->helpers);
    free(p->cpus);
    free(p);
    *pp = NULL;
}

/* The CPUs the caller may run on, which its helpers inherit. */
static int allowed_cpus(ffn_pool *p)
{
    cpu_set_t set;
    if (pthread_getaffinity_np(pthread_self(), sizeof set, &set) != 0)
        return 0;   /* unknown: no pinning, default spin */
    int n = CPU_COUNT(&set);
    if (n <= 0)
        return 0;
    p->cpus = malloc((size_t)n * sizeof *p->cpus);
    if (!p->cpus)
        return -1;
    for (int c = 0; c < CPU_SETSIZE && p->n_cpus < (uint32_t)n; c++)
        if (CPU_ISSET(c, &set))
            p->cpus[p->n_cpus++] = c;
    return 0;
}

ffn_pool *ffn_pool_new(uint32_t n_threads, uint32_t max_dim, const ffn_kernels *k, pi_error *err)
{
    return ffn_pool_new_batch(n_threads, max_dim, 1, k, err);
}

ffn_pool *ffn_pool_new_batch(uint32_t n_threads, uint32_t max_dim, uint32_t max_pass, const ffn_kernels *k,
                             pi_error *err)
{
    if (n_threads < 1 || n_threads > 1024 || max_dim == 0 || max_pass < 1 || max_pass > 4096 || !k) {
        pi_error_set(err, "ffn_pool: bad arguments (threads %u: use 1..1024; max_dim %u: "
                     "must be > 0; max_pass %u: use 1..4096; kernels %s)", n_threads, max_dim, max_pass,
                     k ? "set" : "missing");
        return NULL;
    }
    size_t size = (sizeof(ffn_pool) + LINE - 1) / LINE * LINE;   /* aligned_alloc wants a multiple */
    ffn_pool *p = aligned_alloc(LINE, size);
    if (!p) {
        pi_error_set(err, "ffn_pool: out of memory");
        return NULL;
    }
    memset(p, 0, size);
    p->n_threads = n_threads;
    p->max_dim = max_dim;
    p->max_pass = max_pass;
    p->block_bytes = FFN_BATCH_BLOCK_BYTES;
    p->k = k;
    p->stride = ((size_t)max_dim + LINE_FLOATS - 1) / LINE_FLOATS * LINE_FLOATS;
    uint32_t n_helpers = n_threads - 1;
    p->scratch = calloc(n_threads, sizeof *p->scratch);
    int oom = !p->scratch;
    for (uint32_t t = 0; !oom && t < n_threads; t++)
        oom = ffn_batch_scratch_init(&p->scratch[t], max_pass) != 0;
    if (!oom && n_helpers > 0) {
        void *mem = NULL;
        p->threads = calloc(n_helpers, sizeof *p->threads);
        p->helpers = calloc(n_helpers, sizeof *p->helpers);
        oom = !p->threads || !p->helpers || allowed_cpus(p) != 0 ||
              posix_memalign(&mem, LINE, (size_t)n_helpers * max_pass * p->stride * sizeof(float)) != 0;
        p->bufs = mem;
    }
    if (oom) {
        pi_error_set(err, "ffn_pool: out of memory for %u threads of dim %u, %u entries a pass", n_threads,
                     max_dim, max_pass);
        ffn_pool_free(&p);
        return NULL;
    }
    /* More threads than CPUs: a spinning thread only holds a CPU another needs. */
    int crowded = p->n_cpus > 0 && n_threads > p->n_cpus;
    atomic_store(&p->spin_us, crowded ? 0u : FFN_POOL_SPIN_US);
    for (uint32_t i = 0; i < n_helpers; i++) {
        p->helpers[i] = (helper){.pool = p, .t = i + 1};
        int rc = pthread_create(&p->threads[i], NULL, helper_main, &p->helpers[i]);
        if (rc != 0) {
            pi_error_set(err, "ffn_pool: cannot start thread %u of %u (%s); use fewer threads",
                         i + 1, n_threads, strerror(rc));
            ffn_pool_free(&p);
            return NULL;
        }
        p->n_started++;
    }
    return p;
}

void ffn_pool_set_spin_us(ffn_pool *p, uint32_t us)
{
    atomic_store_explicit(&p->spin_us, us < 1000000u ? us : 1000000u, memory_order_relaxed);
}

uint32_t ffn_pool_threads(const ffn_pool *p)
{
    return p->n_threads;
}

uint32_t ffn_pool_max_pass(const ffn_pool *p)
{
    return p->max_pass;
}

void ffn_pool_set_batch_block(ffn_pool *p, size_t bytes)
{
    p->block_bytes = bytes ? bytes : 1;
}

const ffn_kernels *ffn_pool_kernels(const ffn_pool *p)
{
    return p->k;
}

int ffn_sparse_run(ffn_pool *p, const ffn_sparse_layer *l, pi_act act, const float *x,
                   const uint32_t *active, size_t n_active, float *out, pi_error *err)
{
    p->dense = 0;
    return run(p, l, act, x, active, n_active, out, err);
}

int ffn_dense_run(ffn_pool *p, const ffn_sparse_layer *l, pi_act act, const float *x,
                  const uint32_t *all, float *out, pi_error *err)
{
    p->dense = 1;
    return run(p, l, act, x, all, l->n_neurons, out, err);
}

/* The checks every call makes before any thread starts: 0, or -1 with err. */
static int check_call(const ffn_pool *p, const ffn_sparse_layer *l, const char *what, pi_error *err)
{
    if (ffn_sparse_layer_check(l, err))
        return -1;
    if (l->dim > p->max_dim)
        return pi_error_set(err, "%s: layer dim %u exceeds the pool's max_dim %u; "
                            "create the pool with the model's dim", what, l->dim, p->max_dim);
    return 0;
}

/* Hands the job the caller wrote into p to the helpers, does thread 0's
 * part and returns once every helper is done with it. */
static void dispatch(ffn_pool *p)
{
    uint32_t n = p->n_threads;
    if (n > 1) {
        atomic_store(&p->arrived, 0);
        atomic_store(&p->pending, n - 1);
        atomic_fetch_add(&p->gen, 1);
        wake(&p->gen, &p->gen_sleepers);
    }
    work(p, 0);
    if (n > 1)
        wait_until(p, &p->pending, 0, &p->pending_sleepers);
}

static int run_batch(ffn_pool *p, const ffn_sparse_layer *l, pi_act act, const ffn_batch *b, int dense,
                     pi_error *err)
{
    if (check_call(p, l, "ffn_sparse_run_batch", err) || ffn_batch_check(l, b, err))
        return -1;
    p->l = l;
    p->act = act;
    p->dense = dense;
    p->block_neurons = ffn_batch_block_neurons(l, act, p->block_bytes);
    /* Passes of at most max_pass entries: an entry's result does not depend
     * on which others share its pass. */
    for (uint32_t e0 = 0; e0 < b->n; e0 += p->max_pass) {
        uint32_t m = b->n - e0 < p->max_pass ? b->n - e0 : p->max_pass;
        ffn_batch pass = {.n = m, .x = b->x + e0, .active = b->active + e0, .n_active = b->n_active + e0,
                          .out = b->out + e0};
        p->batch = &pass;
        dispatch(p);
    }
    p->batch = NULL;
    return 0;
}

int ffn_sparse_run_batch(ffn_pool *p, const ffn_sparse_layer *l, pi_act act, const ffn_batch *b, pi_error *err)
{
    return run_batch(p, l, act, b, 0, err);
}

int ffn_dense_run_batch(ffn_pool *p, const ffn_sparse_layer *l, pi_act act, const ffn_batch *b, pi_error *err)
{
    return run_batch(p, l, act, b, 1, err);
}

static int run(ffn_pool *p, const ffn_sparse_layer *l, pi_act act, const float *x,
               const uint32_t *active, size_t n_active, float *out, pi_error *err)
{
    if (check_call(p, l, "ffn_sparse_run", err))
        return -1;
    for (size_t i = 0; i < n_active; i++)
        if (active[i] >= l->n_neurons)
            return pi_error_set(err, "ffn_sparse_run: active[%zu] = %u is outside the shard's "
                                "%u neurons (indices are shard-local)", i, active[i], l->n_neurons);

    p->l = l;
    p->act = act;
    p->x = x;
    p->active = active;
    p->n_active = n_active;
    p->out = out;
    p->batch = NULL;
    dispatch(p);
    return 0;
}
