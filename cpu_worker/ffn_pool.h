/* ffn_pool: a worker's persistent threads for the sparse FFN. The threads
 * split the ACTIVE neurons of a call (not the output): thread t takes a fixed
 * slice of the active list and accumulates into its own preallocated dim-
 * float buffer; the caller then adds the buffers in thread order 0, 1, ...
 * So a result depends only on the inputs and the thread count, never on
 * timing. The calling thread is thread 0; the other n_threads - 1 wait
 * between calls (spinning briefly, then on a futex). No allocation per call. */
#ifndef PI_CPU_FFN_POOL_H
#define PI_CPU_FFN_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "ffn_sparse.h"

typedef struct ffn_pool ffn_pool;

/* A pool of n_threads (>= 1, the caller included) running kernels k (from
 * ffn_kernels_select, kept by pointer) for layers of up to max_dim. Helper
 * threads inherit the caller's CPU affinity: pin the worker to its NUMA
 * node's cores first. Caller owns the result: ffn_pool_free. */
ffn_pool *ffn_pool_new(uint32_t n_threads, uint32_t max_dim, const ffn_kernels *k, pi_error *err);
/* Stops and joins the threads, frees everything, NULLs *p. */
void ffn_pool_free(ffn_pool **p);

uint32_t ffn_pool_threads(const ffn_pool *p);
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

#endif
