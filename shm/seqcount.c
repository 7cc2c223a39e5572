/* Why no wake-up is ever lost (the writer W publishes v, a waiter R sleeps):
 *
 *   W: store value = v   (seq_cst)     R: waiters += 1          (seq_cst)
 *      load waiters      (seq_cst)        seen = load value     (seq_cst)
 *      if waiters > 0: FUTEX_WAKE         if seen < target: FUTEX_WAIT(&value, seen)
 *
 * All four accesses are seq_cst, so they fall in one total order (the Dekker
 * pattern): either R's load of value comes after W's store, and R sees v and
 * does not sleep; or W's load of waiters comes after R's increment, and W
 * wakes. In the second case the wake may come before R reaches FUTEX_WAIT;
 * the kernel then finds value != seen and returns at once (EAGAIN), because
 * FUTEX_WAIT compares the word and queues the sleeper atomically. A release
 * store with a relaxed load would let W's load pass its store and both sides
 * miss each other, hence seq_cst.
 *
 * Writers that never wake (the GPU's cuStreamWriteValue32, or a process that
 * died between its store and its wake) are covered by sleeping at most
 * sleep_ns per FUTEX_WAIT and re-checking. A waiter killed while registered
 * leaves waiters > 0: the writer then pays a useless FUTEX_WAKE per publish,
 * which is harmless. The futex is shared (no FUTEX_PRIVATE_FLAG): waiters
 * live in other processes, keyed by the page's backing object. */
#include "seqcount.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_SPIN 4096
#define DEFAULT_SLEEP_NS 100000
#define CHECK_EVERY 256 /* spin polls between clock/abort checks */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

static inline int geq(uint32_t cur, uint32_t v) { return (int32_t)(cur - v) >= 0; }

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* cannot fail with a valid clock id */
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

seq_wait_opts seq_wait_opts_default(void)
{
    seq_wait_opts o = {.spin_iters = DEFAULT_SPIN, .sleep_ns = DEFAULT_SLEEP_NS};
    return o;
}

uint32_t seq_load(const seq_counter *c)
{
    return atomic_load_explicit(&c->value, memory_order_acquire);
}

int seq_reached(const seq_counter *c, uint32_t v) { return geq(seq_load(c), v); }

void seq_publish(seq_counter *c, uint32_t v)
{
    atomic_store(&c->value, v);
    if (atomic_load(&c->waiters) != 0)
        syscall(SYS_futex, &c->value, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static int aborted(const seq_wait_opts *o)
{
    if (!o->abort)
        return 0;
    uint32_t a = atomic_load_explicit(&o->abort->value, memory_order_acquire);
    return (int32_t)(a - o->abort_past) > 0;
}

/* Sleeps on the counter for at most slice_ns unless it already reached v.
 * Returns 1 if it had (seen before sleeping), else 0 to re-check. */
static int sleep_once(seq_counter *c, uint32_t v, uint64_t slice_ns)
{
    atomic_fetch_add(&c->waiters, 1);
    uint32_t seen = atomic_load(&c->value);
    int done = geq(seen, v);
    if (!done) {
        struct timespec ts = {.tv_sec = (time_t)(slice_ns / 1000000000u),
                              .tv_nsec = (long)(slice_ns % 1000000000u)};
        /* EAGAIN (value moved), ETIMEDOUT and EINTR all mean: re-check. */
        syscall(SYS_futex, &c->value, FUTEX_WAIT, seen, &ts, NULL, 0);
    }
    atomic_fetch_sub(&c->waiters, 1);
    return done;
}

int seq_wait_geq(seq_counter *c, uint32_t v, const seq_wait_opts *o)
{
    seq_wait_opts def;
    if (!o) {
        def = seq_wait_opts_default();
        o = &def;
    }
    if (seq_reached(c, v))
        return 0;
    uint64_t deadline = o->timeout_ns ? now_ns() + o->timeout_ns : 0;

    for (uint32_t i = 1; o->spin_iters == SEQ_SPIN_FOREVER || i <= o->spin_iters; i++) {
        cpu_relax();
        if (seq_reached(c, v))
            return 0;
        if (i % CHECK_EVERY == 0) {
            if (aborted(o))
                return -2;
            if (deadline && now_ns() >= deadline)
                return -1;
        }
    }

    uint64_t slice = o->sleep_ns ? o->sleep_ns : DEFAULT_SLEEP_NS;
    for (;;) {
        if (seq_reached(c, v))
            return 0;
        if (aborted(o))
            return -2;
        uint64_t this_slice = slice;
        if (deadline) {
            uint64_t t = now_ns();
            if (t >= deadline)
                return -1;
            if (deadline - t < this_slice)
                this_slice = deadline - t;
        }
        if (sleep_once(c, v, this_slice))
            return 0;
    }
}
