// Publish, wait and finish kernels of the device-driven step (cuda_step.cuh).
#include "cuda_step.cuh"
#include "cuda_pdl.cuh"
#include "cuda_sys.cuh"

namespace {

constexpr unsigned FINISH_THREADS = 256;

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

// x[t] += hot[t] + partial_0[t] + ... (float4 t): the host backend's order.
__device__ __forceinline__ void add_partials(float *x, const float *hot, const cuda_peers &peers, size_t t)
{
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

// Thread 0 of each block waits for the peers (so no block reads a partial
// before it is complete), then every thread sums one float4.
__global__ void __launch_bounds__(FINISH_THREADS) k_wait_finish(float *x, const float *hot, cuda_peers peers,
                                                                cuda_step_params *p, uint32_t layer, size_t len4,
                                                                unsigned long long *stamp,
                                                                unsigned long long *end_stamp)
{
    pdl_begin();
    __shared__ int give_up;
    if (threadIdx.x == 0) {
        const uint32_t tick = p->tick0 + layer;
        int aborted = 0;
        for (uint32_t w = 0; w < peers.count && !aborted; w++) {
            while (!reached(load_acquire_sys(peers.done[w]), tick)) {
                if ((int32_t)(load_acquire_sys(peers.abort_word) - p->abort_past) > 0) {
                    aborted = 1;
                    p->status = 1;
                    break;
                }
            }
        }
        give_up = aborted;
        if (stamp && blockIdx.x == 0)
            *stamp = global_timer();
    }
    __syncthreads();
    size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (!give_up && t < len4)
        add_partials(x, hot, peers, t);
    if (!end_stamp)
        return;
    // Timed steps: the last block to finish stamps the end here, where a
    // stamp kernel after it would add its own launch to the finish row.
    __syncthreads();
    if (threadIdx.x == 0 && atomicAdd(&p->fin_arrive, 1u) == gridDim.x - 1) {
        p->fin_arrive = 0;
        *end_stamp = global_timer();
    }
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
                             unsigned long long *end_stamp)
{
    if (len % 4 != 0)
        return cudaErrorInvalidValue;
    size_t len4 = len / 4;
    unsigned blocks = (unsigned)((len4 + FINISH_THREADS - 1) / FINISH_THREADS);
    PDL_LAUNCH(k_wait_finish, blocks ? blocks : 1, FINISH_THREADS, 0, s, x, hot, *peers, p, layer, len4, stamp,
               end_stamp);
    return cudaGetLastError();
}
