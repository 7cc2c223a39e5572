// Warp and block reductions, and the RMS norm of one row by one block: the
// norm kernel (cuda_attn.cu) and the kernels that run a norm in extra blocks
// of their own launch (cuda_predict.cu) share this code, so a row's norm has
// the same bits whichever kernel computed it (at the same block size).
#ifndef PI_CUDA_NORM_CUH
#define PI_CUDA_NORM_CUH

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

// A norm for another kernel's extra blocks: y[r] = x[r] / rms(x[r]) * w for
// the launch's rows, also into y_host (mapped host memory, fenced for the
// CPU) when given.
struct cuda_norm_job {
    float *y, *y_host, *x;
    const float *w;
    uint32_t dim;
    float eps;
};

__device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// The block's sum (MAX 0) or max (MAX 1) of v, returned to every thread. red
// holds 32 floats; the block is whole warps.
template <int MAX> __device__ __forceinline__ float block_reduce(float v, float *red)
{
    const unsigned lane = threadIdx.x & 31u, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) / 32;
    v = MAX ? warp_max(v) : warp_sum(v);
    __syncthreads();    // red may still be read from a previous reduction
    if (lane == 0)
        red[wid] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : (MAX ? -INFINITY : 0.0f);
    v = MAX ? warp_max(v) : warp_sum(v);
    return v;
}

// The block size of every kernel that computes a norm row: a row's sum of
// squares is added in the same order, so its norm has the same bits in each.
#define CUDA_NORM_THREADS 1024u

// Row r of the norm, by the whole block (CUDA_NORM_THREADS threads); with
// add, x[r] first becomes x[r] + add[r] (a residual add fused in). red: 32
// floats of shared memory.
__device__ __forceinline__ void norm_row(float *y, float *y_host, float *x, const float *add, const float *w,
                                         uint32_t dim, float eps, uint32_t r, float *red)
{
    float *xr = x + (size_t)r * dim;
    const float *ar = add ? add + (size_t)r * dim : nullptr;
    float ss = 0.0f;
    for (uint32_t i = threadIdx.x; i < dim; i += blockDim.x) {
        float v = xr[i];
        if (ar) {
            v += ar[i];
            xr[i] = v;   // each thread reads back only its own elements below
        }
        ss += v * v;
    }
    ss = block_reduce<0>(ss, red);
    float scale = 1.0f / sqrtf(ss / (float)dim + eps);
    float *yr = y + (size_t)r * dim;
    float *hr = y_host ? y_host + (size_t)r * dim : nullptr;
    for (uint32_t i = threadIdx.x; i < dim; i += blockDim.x) {
        float v = w[i] * (xr[i] * scale);
        yr[i] = v;
        if (hr)
            hr[i] = v;
    }
    if (hr)
        __threadfence_system();   // the CPU workers read it once the layer tick is published
}

#endif
