/* The sparse FFN thread pool (ffn_pool.h).
 *
 * Hand-off, all through C11 atomics (so TSan sees every happens-before):
 * the caller writes the job, sets pending = helpers, then bumps gen
 * (seq_cst); a helper that sees gen change reads the job, works its slice,
 * and decrements pending (seq_cst, releasing its buffer); the caller sees
 * pending == 0 (acquiring every buffer) and reduces. Waiting spins a little
 * (the next layer usually comes within tens of microseconds) and then sleeps
 * on a futex; the sleepers / caller_waiting counters let the other side skip
 * the wake-up syscall when nobody sleeps. Dekker-style: each side stores its
 * own word and then reads the other's, both seq_cst, and the kernel rechecks
 * the futex word, so a wake-up is never lost. */
#include "ffn_pool.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SPIN_ROUNDS 4096   /* ~10-50 us of pause before sleeping */
#define LINE_FLOATS 16     /* buffers start on their own 64-byte lines */

typedef struct helper {
    ffn_pool *pool;
    uint32_t t;            /* thread index, 1 .. n_threads - 1 */
} helper;

struct ffn_pool {
    uint32_t n_threads, max_dim;
    const ffn_kernels *k;
    float *bufs;           /* n_threads - 1 partial buffers of stride floats */
    size_t stride;
    pthread_t *threads;
    helper *helpers;
    uint32_t n_started;
    /* The job: written by the caller before gen is bumped, read-only after. */
    const ffn_sparse_layer *l;
    pi_act act;
    const float *x;
    const uint32_t *active;
    size_t n_active;
    int dense;                      /* every listed neuron's three rows, no skipping */
    _Atomic uint32_t gen;           /* job number; a change wakes helpers */
    _Atomic uint32_t pending;       /* helpers still working on the job */
    _Atomic uint32_t sleepers;      /* helpers asleep (or about to be) on gen */
    _Atomic uint32_t caller_waiting;
    _Atomic int stop;
};

static int run(ffn_pool *p, const ffn_sparse_layer *l, pi_act act, const float *x,
               const uint32_t *active, size_t n_active, float *out, pi_error *err);

/* One thread's share of the job: sparse (skips what cannot matter) or dense. */
static void accum(const ffn_pool *p, const ffn_sparse_layer *l, pi_act act, const float *x,
                  const uint32_t *active, size_t n, float *out)
{
    if (p->dense)
        ffn_dense_accum(p->k, l, act, x, active, n, out);
    else
        ffn_sparse_accum(p->k, l, act, x, active, n, out);
}

static void futex_wait(_Atomic uint32_t *word, uint32_t val)
{
    /* EINTR / EAGAIN just send the caller round its loop again. */
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *word, int n)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Slice of the active list that thread t of n takes. */
static void slice(size_t n_active, uint32_t t, uint32_t n, size_t *b, size_t *e)
{
    *b = n_active * t / n;
    *e = n_active * (t + 1) / n;
}

static float *partial(ffn_pool *p, uint32_t t)
{
    return p->bufs + (size_t)(t - 1) * p->stride;
}

static void *helper_main(void *arg)
{
    helper *h = arg;
    ffn_pool *p = h->pool;
    uint32_t seen = 0;
    for (;;) {
        uint32_t g;
        int spins = 0;
        while ((g = atomic_load(&p->gen)) == seen) {
            if (spins++ < SPIN_ROUNDS) {
                cpu_relax();
                continue;
            }
            atomic_fetch_add(&p->sleepers, 1);
            futex_wait(&p->gen, seen);
            atomic_fetch_sub(&p->sleepers, 1);
        }
        seen = g;
        if (atomic_load(&p->stop))
            return NULL;
        size_t b, e;
        slice(p->n_active, h->t, p->n_threads, &b, &e);
        if (e > b) {
            float *buf = partial(p, h->t);
            memset(buf, 0, (size_t)p->l->dim * sizeof *buf);
            accum(p, p->l, p->act, p->x, p->active + b, e - b, buf);
        }
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_waiting))
            futex_wake(&p->pending, 1);
    }
}

static void wait_helpers(ffn_pool *p)
{
    uint32_t v;
    int spins = 0;
    while ((v = atomic_load(&p->pending)) != 0) {
        if (spins++ < SPIN_ROUNDS) {
            cpu_relax();
            continue;
        }
        atomic_store(&p->caller_waiting, 1);
        futex_wait(&p->pending, v);
    }
    atomic_store(&p->caller_waiting, 0);
}

static void stop_threads(ffn_pool *p)
{
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->gen, 1);
    futex_wake(&p->gen, INT_MAX);
    for (uint32_t i = 0; i < p->n_started; i++)
        pthread_join(p->threads[i], NULL);
    p->n_started = 0;
}

void ffn_pool_free(ffn_pool **pp)
{
    ffn_pool *p = *pp;
    if (!p)
        return;
    stop_threads(p);
    free(p->bufs);
    free(p->threads);
    free(p->helpers);
    free(p);
    *pp = NULL;
}

ffn_pool *ffn_pool_new(uint32_t n_threads, uint32_t max_dim, const ffn_kernels *k, pi_error *err)
{
    if (n_threads < 1 || n_threads > 1024 || max_dim == 0 || !k) {
        pi_error_set(err, "ffn_pool: bad arguments (threads %u: use 1..1024; max_dim %u: "
                     "must be > 0; kernels %s)", n_threads, max_dim, k ? "set" : "missing");
        return NULL;
    }
    ffn_pool *p = calloc(1, sizeof *p);
    if (!p) {
        pi_error_set(err, "ffn_pool: out of memory");
        return NULL;
    }
    p->n_threads = n_threads;
    p->max_dim = max_dim;
    p->k = k;
    p->stride = ((size_t)max_dim + LINE_FLOATS - 1) / LINE_FLOATS * LINE_FLOATS;
    uint32_t n_helpers = n_threads - 1;
    if (n_helpers > 0) {
        void *mem = NULL;
        p->threads = calloc(n_helpers, sizeof *p->threads);
        p->helpers = calloc(n_helpers, sizeof *p->helpers);
        if (!p->threads || !p->helpers ||
            posix_memalign(&mem, 64, (size_t)n_helpers * p->stride * sizeof(float)) != 0) {
            pi_error_set(err, "ffn_pool: out of memory for %u threads of dim %u", n_threads, max_dim);
            ffn_pool_free(&p);
            return NULL;
        }
        p->bufs = mem;
    }
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

uint32_t ffn_pool_threads(const ffn_pool *p)
{
    return p->n_threads;
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

static int run(ffn_pool *p, const ffn_sparse_layer *l, pi_act act, const float *x,
               const uint32_t *active, size_t n_active, float *out, pi_error *err)
{
    if (ffn_sparse_layer_check(l, err))
        return -1;
    if (l->dim > p->max_dim)
        return pi_error_set(err, "ffn_sparse_run: layer dim %u exceeds the pool's max_dim %u; "
                            "create the pool with the model's dim", l->dim, p->max_dim);
    for (size_t i = 0; i < n_active; i++)
        if (active[i] >= l->n_neurons)
            return pi_error_set(err, "ffn_sparse_run: active[%zu] = %u is outside the shard's "
                                "%u neurons (indices are shard-local)", i, active[i], l->n_neurons);

    uint32_t n = p->n_threads;
    if (n > 1) {
        p->l = l;
        p->act = act;
        p->x = x;
        p->active = active;
        p->n_active = n_active;
        atomic_store(&p->pending, n - 1);
        atomic_fetch_add(&p->gen, 1);
        if (atomic_load(&p->sleepers))
            futex_wake(&p->gen, INT_MAX);
    }
    size_t b, e;
    slice(n_active, 0, n, &b, &e);
    memset(out, 0, (size_t)l->dim * sizeof *out);
    if (e > b)
        accum(p, l, act, x, active + b, e - b, out);
    if (n == 1)
        return 0;
    wait_helpers(p);
    /* Fixed order 1, 2, ...: the same inputs and thread count give the same bits. */
    for (uint32_t t = 1; t < n; t++) {
        slice(n_active, t, n, &b, &e);
        if (e == b)
            continue;
        const float *buf = partial(p, t);
        for (size_t i = 0; i < l->dim; i++)
            out[i] += buf[i];
    }
    return 0;
}
