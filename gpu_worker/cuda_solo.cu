// Products and element-wise kernels of solo steps (cuda_solo.cuh). cuBLAS is
// column-major: a row-major rows x dim matrix is its dim x rows transpose, so
// y (n x rows, row-major) = x w^T is, column-major, Y (rows x n) = W^T X.
#include "cuda_solo.cuh"

#include <stdlib.h>

#ifdef PI_HAVE_CUBLAS
#include <cublas_v2.h>
#endif

extern "C" {
#include "model.h"
}

struct cuda_blas {
#ifdef PI_HAVE_CUBLAS
    cublasHandle_t h;
#else
    int unused;
#endif
};

int cuda_blas_available(void)
{
#ifdef PI_HAVE_CUBLAS
    return 1;
#else
    return 0;
#endif
}

#ifdef PI_HAVE_CUBLAS
static int blas_err(cublasStatus_t st, const char *what, pi_error *err)
{
    return pi_error_set(err, "cuda backend: %s failed: %s", what, cublasGetStatusString(st));
}
#define BLAS(call, what)                                                                   \
    do {                                                                                   \
        cublasStatus_t st_ = (call);                                                       \
        if (st_ != CUBLAS_STATUS_SUCCESS)                                                  \
            return blas_err(st_, what, err);                                               \
    } while (0)
#endif

int cuda_blas_create(cuda_blas **out, cudaStream_t s, void *ws, size_t ws_bytes, pi_error *err)
{
    *out = NULL;
#ifdef PI_HAVE_CUBLAS
    cuda_blas *b = (cuda_blas *)calloc(1, sizeof *b);
    if (!b)
        return pi_error_set(err, "cuda backend: out of host memory");
    cublasStatus_t st = cublasCreate(&b->h);
    if (st == CUBLAS_STATUS_SUCCESS && (st = cublasSetStream(b->h, s)) == CUBLAS_STATUS_SUCCESS &&
        (st = cublasSetWorkspace(b->h, ws, ws_bytes)) == CUBLAS_STATUS_SUCCESS)
        st = cublasSetMathMode(b->h, CUBLAS_DEFAULT_MATH);
    if (st != CUBLAS_STATUS_SUCCESS) {
        if (b->h)
            cublasDestroy(b->h);
        free(b);
        return blas_err(st, "cuBLAS set-up", err);
    }
    *out = b;
    return 0;
#else
    (void)s, (void)ws, (void)ws_bytes;
    return pi_error_set(err, "cuda backend: built without cuBLAS: no solo steps");
#endif
}

void cuda_blas_destroy(cuda_blas **bp)
{
    if (!*bp)
        return;
#ifdef PI_HAVE_CUBLAS
    cublasDestroy((*bp)->h);
#endif
    free(*bp);
    *bp = NULL;
}

int cuda_blas_rows(cuda_blas *b, float *y, uint32_t ldy, const __half *w, uint32_t rows, const __half *x, uint32_t n,
                   uint32_t dim, float beta, pi_error *err)
{
#ifdef PI_HAVE_CUBLAS
    const float one = 1.0f;
    if (rows == 0 || n == 0)
        return 0;
    BLAS(cublasGemmEx(b->h, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, (int)n, (int)dim, &one, w, CUDA_R_16F, (int)dim, x,
                      CUDA_R_16F, (int)dim, &beta, y, CUDA_R_32F, (int)ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
         "cublasGemmEx (rows)");
    return 0;
#else
    (void)b, (void)y, (void)ldy, (void)w, (void)rows, (void)x, (void)n, (void)dim, (void)beta;
    return pi_error_set(err, "cuda backend: built without cuBLAS");
#endif
}

int cuda_blas_down(cuda_blas *b, float *y, const __half *dt, const __half *h, uint32_t k, uint32_t n, uint32_t dim,
                   pi_error *err)
{
#ifdef PI_HAVE_CUBLAS
    const float one = 1.0f;
    if (k == 0 || n == 0)
        return 0;
    // Y (dim x n) += DT (dim x k, column-major view of k x dim rows) H (k x n)
    BLAS(cublasGemmEx(b->h, CUBLAS_OP_N, CUBLAS_OP_N, (int)dim, (int)n, (int)k, &one, dt, CUDA_R_16F, (int)dim, h,
                      CUDA_R_16F, (int)k, &one, y, CUDA_R_32F, (int)dim, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
         "cublasGemmEx (down)");
    return 0;
#else
    (void)b, (void)y, (void)dt, (void)h, (void)k, (void)n, (void)dim;
    return pi_error_set(err, "cuda backend: built without cuBLAS");
#endif
}

__global__ void k_to_half(__half *y, const float *x, size_t count)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x)
        y[i] = __float2half(x[i]);
}

// The host's ops_ffn_act for the gated activations.
__global__ void k_act_half(__half *h, const float *g, const float *u, size_t count, int act)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) {
        float a = g[i], v = u[i];
        if (act == PI_ACT_SILU) {
            a = a / (1.0f + expf(-a));
        } else {
            a = a > 0.0f ? a : 0.0f;
            if (act == PI_ACT_RELU_BOTH)
                v = v > 0.0f ? v : 0.0f;
        }
        h[i] = __float2half(a * v);
    }
}

static unsigned grid_for(size_t count)
{
    size_t b = (count + 255) / 256;
    return (unsigned)(b > 4096 ? 4096 : b ? b : 1);
}

cudaError_t cuda_to_half(cudaStream_t s, __half *y, const float *x, size_t count)
{
    k_to_half<<<grid_for(count), 256, 0, s>>>(y, x, count);
    return cudaGetLastError();
}

cudaError_t cuda_act_half(cudaStream_t s, __half *h, const float *g, const float *u, size_t count, int act)
{
    k_act_half<<<grid_for(count), 256, 0, s>>>(h, g, u, count, act);
    return cudaGetLastError();
}
