/* seq_counter: a monotonically increasing 32-bit counter in shared memory
 * with ONE writer and any number of waiters, in other processes too. The
 * writer fills a buffer, then publishes a new value; a waiter that sees the
 * value reach its target may read the buffer (release/acquire).
 *
 * Each counter fills its own 64-byte cache line, so counters written by
 * different processes never share a line. The value is the first word: a
 * plain aligned uint32 that a GPU may also write (cuStreamWriteValue32 on
 * host-registered memory) without ever waking a futex; waiters therefore
 * sleep in bounded slices and re-check. Comparisons are wrap-safe: v is
 * reached when (int32_t)(value - v) >= 0. docs/shm.md has the protocol. */
#ifndef PI_SHM_SEQCOUNT_H
#define PI_SHM_SEQCOUNT_H

#include <stdint.h>

#ifdef __cplusplus
/* Layout-identical view for C++/CUDA code, which only takes addresses. */
extern "C" {
typedef struct seq_counter {
    alignas(64) uint32_t value;
    uint32_t waiters;
    char pad[56];
} seq_counter;
#else
#include <stdatomic.h>
typedef struct seq_counter {
    _Alignas(64) _Atomic uint32_t value; /* offset 0: the published word */
    _Atomic uint32_t waiters;            /* waiters registered to sleep */
    char pad[56];
} seq_counter;
_Static_assert(sizeof(seq_counter) == 64, "one counter per cache line");
_Static_assert(sizeof(_Atomic uint32_t) == 4 && ATOMIC_INT_LOCK_FREE == 2,
               "the counter word must be a plain lock-free 32-bit word");
#endif

#define SEQ_SPIN_FOREVER UINT32_MAX

typedef struct seq_wait_opts {
    uint32_t spin_iters;        /* pause-loop polls before sleeping; SEQ_SPIN_FOREVER: never sleep */
    uint32_t sleep_ns;          /* longest futex sleep before re-checking (GPU writes do not wake) */
    uint64_t timeout_ns;        /* give up after this long (0: wait forever) */
    const seq_counter *abort;   /* optional: stop waiting when this moves... */
    uint32_t abort_past;        /* ...past this value, i.e. (int32_t)(abort - abort_past) > 0 */
} seq_wait_opts;

/* Defaults: spin ~4096 polls, then sleep in 100 us slices; no timeout or abort. */
seq_wait_opts seq_wait_opts_default(void);

/* Stores v (the writer's only store) and wakes sleeping waiters. Everything
 * the writer wrote before is visible to a waiter that sees v. */
void seq_publish(seq_counter *c, uint32_t v);

/* The current value (acquire). */
uint32_t seq_load(const seq_counter *c);

/* 1 when the counter has reached v (wrap-safe), else 0; never blocks. */
int seq_reached(const seq_counter *c, uint32_t v);

/* Waits until the counter reaches v: 0; -1 on timeout; -2 when the abort
 * counter moved past abort_past (a peer died: pid unblocks us). o may be
 * NULL for the defaults. */
int seq_wait_geq(seq_counter *c, uint32_t v, const seq_wait_opts *o);

#ifdef __cplusplus
}
#endif

#endif
