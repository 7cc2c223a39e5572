// Publish, wait and finish kernels of the device-driven step (cuda_step.cuh).
#include "cuda_step.cuh"
#include "cuda_norm.cuh"
#include "cuda_pdl.cuh"

namespace {

constexpr unsigned FINISH_THREADS = 256;

__device__ __forceinline__ uint32_t load_acquire_sys(const uint32_t *p)
{
    uint32_t v;
    asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

__device__ __forceinline__ void store_release_sys(uint32_t *p, uint32_t v)
{
    asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

__device__ __forceinline__ unsigned long long global_timer()
{
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

__device__ __forceinline__ bool reached(uint32_t cur, uint32_t v)
{
    return (int32_t)(cur - v) >= 0;     // wrap-safe, as seqcount.h
}

__global__ void k_stamp(unsigned long long *slot)
{
    pdl_begin();
    *slot = global_timer();
}

__global__ void k_publish(uint32_t *counter, const cuda_step_params *p, uint32_t layer)
{
    pdl_begin();
    __threadfence_system();
    store_release_sys(counter, p->tick0 + layer);
}

// By thread 0: waits until every peer's done counter reached the layer's
// tick; 1 when the abort counter passed first (p->status = 1).
__device__ int wait_peers(const cuda_peers &peers, cuda_step_params *p, uint32_t layer)
{
    const uint32_t tick = p->tick0 + layer;
    for (uint32_t w = 0; w < peers.count; w++) {
        while (!reached(load_acquire_sys(peers.done[w]), tick)) {
            if ((int32_t)(load_acquire_sys(peers.abort_word) - p->abort_past) > 0) {
                p->status = 1;
                return 1;
            }
        }
    }
    return 0;
}

// Thread 0 of each block waits for the peers (so no block reads a partial
// before it is complete), then every thread sums one float4.
__global__ void __launch_bounds__(FINISH_THREADS) k_wait_finish(float *x, const float *hot, cuda_peers peers,
                                                                cuda_step_params *p, uint32_t layer, size_t len4,
                                                                unsigned long long *stamp)
{
    pdl_begin();
    __shared__ int give_up;
    if (threadIdx.x == 0) {
        give_up = wait_peers(peers, p, layer);
        if (stamp && blockIdx.x == 0)
            *stamp = global_timer();
    }
    __syncthreads();
    size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (give_up || t >= len4)
        return;
    float4 acc = reinterpret_cast<const float4 *>(hot)[t];
    for (uint32_t w = 0; w < peers.count; w++) {
        // Not cached: the same addresses hold the next layer's partials.
        float4 v = __ldcv(reinterpret_cast<const float4 *>(peers.partial[w]) + t);
        acc.x += v.x;
        acc.y += v.y;
        acc.z += v.z;
        acc.w += v.w;
    }
    float4 *xp = reinterpret_cast<float4 *>(x) + t;
    float4 xv = *xp;
    xv.x += acc.x;
    xv.y += acc.y;
    xv.z += acc.z;
    xv.w += acc.w;
    *xp = xv;
}

// k_wait_finish's sums for row blockIdx.x, element by element in the same
// order (x + (hot + partial_0 + ...)), then the next layer's attention norm
// of that row: what k_wait_finish then k_rmsnorm give, bit for bit, in one
// launch (the norm's block size, so its sum of squares adds in its order).
// A thread's FINISH_PER elements are loaded before any is used: the partials
// come over PCIe, and one round trip after another cost 7 us a layer
// (measured on the H200, session 11).
constexpr uint32_t FINISH_PER = 8;

__global__ void __launch_bounds__(CUDA_NORM_THREADS) k_wait_finish_norm(float *x, const float *hot, cuda_peers peers,
                                                                        cuda_step_params *p, uint32_t layer,
                                                                        cuda_norm_job nj, unsigned long long *stamp)
{
    pdl_begin();
    __shared__ int give_up;
    __shared__ float red[32];
    if (threadIdx.x == 0) {
        give_up = wait_peers(peers, p, layer);
        if (stamp && blockIdx.x == 0)
            *stamp = global_timer();
    }
    __syncthreads();
    if (give_up)
        return;
    const uint32_t dim = nj.dim;
    const size_t r = (size_t)blockIdx.x * dim;
    float *xr = x + r;
    float ss = 0.0f;
    for (uint32_t i0 = threadIdx.x; i0 < dim; i0 += FINISH_PER * blockDim.x) {
        float acc[FINISH_PER], xv[FINISH_PER];
#pragma unroll
        for (uint32_t k = 0; k < FINISH_PER; k++) {
            const uint32_t i = i0 + k * blockDim.x;
            acc[k] = i < dim ? hot[r + i] : 0.0f;
            xv[k] = i < dim ? xr[i] : 0.0f;
        }
        for (uint32_t w = 0; w < peers.count; w++) {
            const float *pw = peers.partial[w] + r;
            float v[FINISH_PER];
#pragma unroll
            for (uint32_t k = 0; k < FINISH_PER; k++) {
                const uint32_t i = i0 + k * blockDim.x;
                v[k] = i < dim ? __ldcv(pw + i) : 0.0f;
            }
#pragma unroll
            for (uint32_t k = 0; k < FINISH_PER; k++)
                acc[k] += v[k];
        }
#pragma unroll
        for (uint32_t k = 0; k < FINISH_PER; k++) {
            const uint32_t i = i0 + k * blockDim.x;
            if (i < dim) {
                const float v = xv[k] + acc[k];
                xr[i] = v;
                ss += v * v;
            }
        }
    }
    norm_scale_row(nj.y + r, nullptr, xr, nj.w, nj.dim, nj.eps, ss, red);
}

} // namespace

cudaError_t cuda_stamp(cudaStream_t s, unsigned long long *slot)
{
    PDL_LAUNCH(k_stamp, 1, 1, 0, s, slot);
    return cudaGetLastError();
}

cudaError_t cuda_publish(cudaStream_t s, uint32_t *counter, const cuda_step_params *p, uint32_t layer)
{
    PDL_LAUNCH(k_publish, 1, 1, 0, s, counter, p, layer);
    return cudaGetLastError();
}

cudaError_t cuda_wait_finish(cudaStream_t s, float *x, const float *hot, const cuda_peers *peers,
                             cuda_step_params *p, uint32_t layer, size_t len, unsigned long long *stamp,
                             const cuda_norm_job *norm)
{
    if (len % 4 != 0)
        return cudaErrorInvalidValue;
    if (norm) {
        if (norm->dim == 0 || len % norm->dim != 0 || norm->y_host)
            return cudaErrorInvalidValue;
        PDL_LAUNCH(k_wait_finish_norm, (unsigned)(len / norm->dim), CUDA_NORM_THREADS, 0, s, x, hot, *peers, p,
                   layer, *norm, stamp);
        return cudaGetLastError();
    }
    size_t len4 = len / 4;
    unsigned blocks = (unsigned)((len4 + FINISH_THREADS - 1) / FINISH_THREADS);
    PDL_LAUNCH(k_wait_finish, blocks ? blocks : 1, FINISH_THREADS, 0, s, x, hot, *peers, p, layer, len4, stamp);
    return cudaGetLastError();
}
