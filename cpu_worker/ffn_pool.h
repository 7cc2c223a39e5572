/* ffn_pool: a worker's persistent threads for the sparse FFN. The threads
 * split the ACTIVE neurons of a call (not the output): thread t of n takes
 * active[n_active * t / n .. n_active * (t + 1) / n) and accumulates into its
 * own preallocated dim-float buffer (thread 0 straight into out); then, after
 * a barrier, each thread adds a slice of the output dims over the buffers of
 * threads 1, 2, ... in that order, skipping threads whose slice of the list
 * was empty. Per element that is exactly the serial sum out = ((b0 + b1) + b2)
 * + ..., so a result depends only on the inputs and the thread count, never
 * on timing or on how the dims are split. The calling thread is thread 0.
 * A batched call (ffn_sparse_run_batch) splits every entry's list the same
 * way, with a buffer per thread and entry, so each entry's result is the one
 * its own call gives.
 *
 * Between calls the other n_threads - 1 threads spin (pause, a clock read
 * every few dozen pauses) for spin_us, then sleep on a futex: a step's next
 * layer comes within ~50-150 us and finds them awake, while an idle worker
 * stops burning CPU after spin_us. A helper that is preempted while it spins
 * (the machine is overloaded: spinning only burns CPU there) sleeps at once
 * for the next few dozen calls. Helper t pins itself to the t-th CPU (mod
 * their count) of the affinity it inherited, so it does not migrate; the
 * caller is left as it is (pinning it would also narrow what every thread it
 * starts later inherits, a second pool's included); with one helper per CPU
 * but the first, the caller's CPU is the one no helper spins on. No
 * allocation per call. */
#ifndef PI_CPU_FFN_POOL_H
#define PI_CPU_FFN_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "ffn_batch.h"
#include "ffn_sparse.h"

/* Default spin between calls: far above a layer's attention gap, short
 * enough that an idle worker sleeps within milliseconds of its last step. */
#define FFN_POOL_SPIN_US 2000u

typedef struct ffn_pool ffn_pool;

/* A pool of n_threads (>= 1, the caller included) running kernels k (from
 * ffn_kernels_select, kept by pointer) for layers of up to max_dim. Helper
 * threads inherit the caller's CPU affinity and each pins itself to one CPU
 * of it (a failure is reported once on stderr and the thread runs unpinned):
 * pin the worker to its NUMA node's cores first. Spins FFN_POOL_SPIN_US,
 * or 0 when n_threads exceeds the CPUs allowed (a spinning thread would
 * only take the CPU from one with work). Caller owns the result: ffn_pool_free. */
ffn_pool *ffn_pool_new(uint32_t n_threads, uint32_t max_dim, const ffn_kernels *k, pi_error *err);
/* The same, able to take up to max_pass (1..4096) entries of a batch in one
 * pass over the rows (ffn_sparse_run_batch): each thread holds max_pass
 * partial buffers of max_dim floats. ffn_pool_new is max_pass 1. */
ffn_pool *ffn_pool_new_batch(uint32_t n_threads, uint32_t max_dim, uint32_t max_pass, const ffn_kernels *k,
                             pi_error *err);
/* Stops and joins the threads, frees everything, NULLs *p. */
void ffn_pool_free(ffn_pool **p);

/* How long (microseconds, at most 1e6) a waiting thread spins before it
 * sleeps on the futex, from the next wait on; 0 sleeps at once. */
void ffn_pool_set_spin_us(ffn_pool *p, uint32_t us);

uint32_t ffn_pool_threads(const ffn_pool *p);
uint32_t ffn_pool_max_pass(const ffn_pool *p);
/* Rows per block of a batch's union (ffn_batch.h; default
 * FFN_BATCH_BLOCK_BYTES), from the next batched call on: a tuning knob for
 * a core's L2. Results do not depend on it. */
void ffn_pool_set_batch_block(ffn_pool *p, size_t bytes);
const ffn_kernels *ffn_pool_kernels(const ffn_pool *p);

/* One layer for one sequence: out (l->dim floats) is overwritten with
 * sum over k < n_active of act(gate_j . x, up_j . x) * downT_j, j = active[k]
 * (shard-local indices, each < l->n_neurons). Returns 0, or -1 with err when
 * l is malformed, l->dim exceeds the pool's max_dim or an index is out of
 * range (out is then untouched). One caller at a time per pool. */
int ffn_sparse_run(ffn_pool *p, const ffn_sparse_layer *l, pi_act act, const float *x,
                   const uint32_t *active, size_t n_active, float *out, pi_error *err);

/* The dense oracle on the same threads and kernels: every neuron of l
 * (all = 0..n_neurons-1), each one's gate, up and down rows read and
 * applied even when its activation is 0 (--ffn dense, for benchmarks that
 * compare like with like). */
int ffn_dense_run(ffn_pool *p, const ffn_sparse_layer *l, pi_act act, const float *x,
                  const uint32_t *all, float *out, pi_error *err);

/* One layer for the b->n entries of a step (ffn_batch.h), in passes of at
 * most ffn_pool_max_pass entries, each pass reading a neuron's rows from
 * memory once per thread that has it in its share (the other entries find
 * them in that core's cache), not once per entry. Entry e's out[e] gets
 * exactly the bits of ffn_sparse_run(p, l, act, x[e], active[e],
 * n_active[e], out[e]) on this pool: every entry's list is split across the
 * threads as that call splits it, walked in the same order, and its buffers
 * added in the same thread order. Lists must be strictly ascending (else,
 * as for an index out of range, -1 with err naming the entry, and no out is
 * touched). */
int ffn_sparse_run_batch(ffn_pool *p, const ffn_sparse_layer *l, pi_act act, const ffn_batch *b,
                         pi_error *err);
/* The dense path for a batch: every listed neuron's rows read and applied;
 * with each list all = 0..n_neurons-1, entry e gets exactly the bits of
 * ffn_dense_run(p, l, act, x[e], all, out[e]). */
int ffn_dense_run_batch(ffn_pool *p, const ffn_sparse_layer *l, pi_act act, const ffn_batch *b,
                        pi_error *err);

#endif
