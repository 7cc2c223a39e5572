/* Sparse FFN kernels of a CPU worker (issue "activation sparsity"): for the
 * ACTIVE neurons j of a shard only,
 *     h_j = act(gate_j . x, up_j . x)      out += h_j * downT_j
 * One plain definition of the math (ffn_sparse.c, built on gguf/quant.h's
 * row kernels) and optimised row kernels beside it (ffn_sparse_avx2.c,
 * ffn_sparse_avx512.c), picked once at start-up (ffn_dispatch.c). A worker
 * runs a layer through its thread pool: ffn_sparse_run in ffn_pool.h, or
 * ffn_sparse_run_batch for all of a step's entries at once. */
#ifndef PI_CPU_FFN_SPARSE_H
#define PI_CPU_FFN_SPARSE_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "pi_error.h"

/* The rows of one layer's shard. Neuron j (0 <= j < n_neurons, local to the
 * shard) has its gate row at gate + j * gate_stride bytes, its up row at
 * up + j * up_stride and its down column, stored as a row, at
 * down_t + j * down_t_stride; each row holds dim elements of its type. The
 * layout of cpu_shard (one record per neuron) is gate = data, up = data +
 * gate_bytes, down_t = up + up_bytes, every stride = record_bytes. */
typedef struct ffn_sparse_layer {
    uint32_t dim, n_neurons;
    pi_type gate_type, up_type, down_t_type;
    const void *gate, *up, *down_t;
    size_t gate_stride, up_stride, down_t_stride;
    /* OPT's fc1 bias, one float per neuron (added to the gate's dot), or
     * NULL. With act RELU_SINGLE the up rows are never read. */
    const float *gate_bias;
} ffn_sparse_layer;

/* One variant's row kernels. dot returns sum_i row[i] * x[i]; axpy does
 * y[i] += a * row[i]; n is a multiple of the type's block. Types a variant
 * has no fast path for go to the plain pi_dot_row / pi_axpy_row.
 * dot_then and axpy_then compute exactly the same, and are told the row
 * that will most likely be read next (NULL: none): the fast variants
 * prefetch FFN_PREFETCH_AHEAD bytes ahead of their reads through row and on
 * into next, so a scattered row's first lines are on their way before it is
 * reached (ffn_prefetch_ahead). The plain variant ignores next. */
typedef struct ffn_kernels {
    const char *name;                   /* "plain", "avx2", "avx512" */
    float (*dot)(pi_type type, const void *row, const float *x, size_t n);
    void (*axpy)(pi_type type, float a, const void *row, float *y, size_t n);
    float (*dot_then)(pi_type type, const void *row, const float *x, size_t n, const void *next);
    void (*axpy_then)(pi_type type, float a, const void *row, float *y, size_t n,
                      const void *next);
    /* Several rows at once, bit for bit what dot_then / axpy_then give each
     * row in turn: res[r] = rows[r] . x for r < nr; y += as[0] * rows[0],
     * then as[1] * rows[1], ... (each element updated in that order). The
     * fast variants load each vector of x (dots) or y (axpy) once for up to
     * FFN_ROWS_MAX rows instead of once per row; next is the row expected
     * after the last. */
    void (*dot_rows)(pi_type type, const void *const *rows, size_t nr, const float *x, size_t n,
                     float *res, const void *next);
    void (*axpy_rows)(pi_type type, const float *as, const void *const *rows, size_t nr, float *y,
                      size_t n, const void *next);
} ffn_kernels;

/* Rows a fast variant's dot_rows / axpy_rows take in one pass. */
#define FFN_ROWS_MAX 4

/* How far ahead of its reads a fast row kernel prefetches, in bytes. One
 * core's share of the memory bandwidth times the memory latency is ~1-2 KB;
 * the hardware prefetcher covers the inside of a row but starts again at
 * every row and every 4 KB page. */
#ifndef FFN_PREFETCH_AHEAD
#define FFN_PREFETCH_AHEAD 2048
#endif

/* Called by a row kernel as it reads byte at of a row of row_bytes bytes:
 * prefetches the byte FFN_PREFETCH_AHEAD further on, past the row's end in
 * next (when not NULL). A prefetch never faults, and changes no result. */
static inline void ffn_prefetch_ahead(const void *row, size_t row_bytes, const void *next,
                                      size_t at)
{
    size_t p = at + FFN_PREFETCH_AHEAD;
    if (p < row_bytes)
        __builtin_prefetch((const char *)row + p, 0, 3);
    else if (next)
        __builtin_prefetch((const char *)next + (p - row_bytes), 0, 3);
}

/* The plain definition: out (dim floats) = sum over k < n_active of
 * h_j * downT_j with j = active[k], summed in list order; neurons with
 * h_j == 0 (ReLU) add nothing and are skipped. Indices must be < n_neurons. */
void ffn_sparse_ref(const ffn_sparse_layer *l, pi_act act, const float *x,
                    const uint32_t *active, size_t n_active, float *out);

/* The same math through kernels k, ADDING into out (not overwriting), one
 * neuron at a time: what each pool thread computes over its share of the
 * active list (it runs ffn_sparse_accum_rows, which gives the same bits). */
void ffn_sparse_accum(const ffn_kernels *k, const ffn_sparse_layer *l, pi_act act,
                      const float *x, const uint32_t *active, size_t n_active, float *out);

/* The same without skipping anything: every listed neuron's gate, up and
 * down rows are read and applied (the dense path's cost, same result). */
void ffn_dense_accum(const ffn_kernels *k, const ffn_sparse_layer *l, pi_act act,
                     const float *x, const uint32_t *active, size_t n_active, float *out);

/* ffn_sparse_accum (dense: ffn_dense_accum) bit for bit, FFN_ROWS_MAX
 * neurons of the list at a time through dot_rows / axpy_rows: x is read
 * once per group's gate and up dots and out once per group's axpy, instead
 * of once per neuron (at dim 5120 they are 20 KB each, and with a neuron's
 * rows they no longer fit in L1). What the pool runs. */
void ffn_sparse_accum_rows(const ffn_kernels *k, const ffn_sparse_layer *l, pi_act act, int dense,
                           const float *x, const uint32_t *active, size_t n_active, float *out);

/* Checks l's types (pi_type_supported), dim (a multiple of every row's
 * block) and pointers: 0, or -1 with err naming the field. */
int ffn_sparse_layer_check(const ffn_sparse_layer *l, pi_error *err);

/* The variants. avx2 and avx512 return NULL where the build's compiler does
 * not target x86-64; they do NOT check the CPU (ffn_kernels_by_name does). */
const ffn_kernels *ffn_kernels_plain(void);
const ffn_kernels *ffn_kernels_avx2(void);
const ffn_kernels *ffn_kernels_avx512(void);

/* ffn_dispatch.c. The variant named "plain", "avx2" or "avx512", or NULL
 * with err when the name is unknown or this CPU lacks its instructions. */
const ffn_kernels *ffn_kernels_by_name(const char *name, pi_error *err);
/* The best variant this CPU runs, unless the environment variable
 * PI_CPU_KERNEL=plain|avx2|avx512 forces one (NULL with err when the forced
 * one is unknown or unsupported here). Call once at start-up. */
const ffn_kernels *ffn_kernels_select(pi_error *err);

#endif
