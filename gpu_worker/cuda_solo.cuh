// What a solo step (backend.h, run_solo) needs beyond the step kernels:
// tensor-core products over F16 weights through cuBLAS, with fp32
// accumulation and fp32 results, and the two element-wise kernels around
// them. Row-major throughout: a weight is rows x dim (one row an output, the
// model's layout; down^T one row a neuron), activations are n x dim.
#ifndef PI_CUDA_SOLO_CUH
#define PI_CUDA_SOLO_CUH

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "pi_error.h"
}

struct cuda_blas;

// A cuBLAS handle on stream s with a workspace of ws_bytes at ws (device
// memory the caller owns); -1 with err when cuBLAS is missing or fails.
int cuda_blas_create(cuda_blas **out, cudaStream_t s, void *ws, size_t ws_bytes, pi_error *err);
void cuda_blas_destroy(cuda_blas **b);
// 1 when this build has cuBLAS (solo steps possible).
int cuda_blas_available(void);

// y[i][r] = beta * y[i][r] + w[r] . x[i] for i < n, r < rows: y is n x ldy
// floats (ldy >= rows), w rows x dim, x n x dim.
int cuda_blas_rows(cuda_blas *b, float *y, uint32_t ldy, const __half *w, uint32_t rows, const __half *x, uint32_t n,
                   uint32_t dim, float beta, pi_error *err);
// y[i] += sum_j h[i][j] * dt[j] for i < n, j < k: y n x dim floats, dt k x dim
// (down^T rows), h n x k.
int cuda_blas_down(cuda_blas *b, float *y, const __half *dt, const __half *h, uint32_t k, uint32_t n, uint32_t dim,
                   pi_error *err);

// y = (half)x, count elements.
cudaError_t cuda_to_half(cudaStream_t s, __half *y, const float *x, size_t count);
// h = (half)act(g, u) element-wise (act: pi_act, gated), count elements.
cudaError_t cuda_act_half(cudaStream_t s, __half *h, const float *g, const float *u, size_t count, int act);

#endif
