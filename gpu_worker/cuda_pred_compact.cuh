// One entry's ordered compaction of the predictor's bit mask into its list,
// as block-wide device code: k_pred_compact (cuda_predict.cu) runs it in a
// block per entry, and the fc2 kernel's last block (cuda_matvec.cu) for the
// whole step when it takes the compaction in. The block must have
// PRED_COMPACT_THREADS threads, every one of which calls it.
#ifndef PI_CUDA_PRED_COMPACT_CUH
#define PI_CUDA_PRED_COMPACT_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "cuda_predict.cuh"

constexpr unsigned PRED_COMPACT_THREADS = 1024;   // a word or two each at n_ff 13824-28672

// The block-wide exclusive prefix of each thread's c, in thread order, and
// (in *total, for every thread) their sum: a scan inside each warp, then
// over the warps' totals. Every thread of the block calls it.
__device__ __forceinline__ uint32_t block_exclusive_scan(uint32_t c, uint32_t *total)
{
    __shared__ uint32_t warp_sums[32];
    const uint32_t lane = threadIdx.x & 31u, wid = threadIdx.x >> 5, n_warps = blockDim.x / 32;
    __syncthreads();    // warp_sums may still be read by a scan before
    uint32_t v = c;
#pragma unroll
    for (uint32_t o = 1; o < 32; o <<= 1) {
        uint32_t y = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o)
            v += y;
    }
    if (lane == 31)
        warp_sums[wid] = v;
    __syncthreads();
    if (wid == 0) {
        uint32_t s = lane < n_warps ? warp_sums[lane] : 0;
#pragma unroll
        for (uint32_t o = 1; o < 32; o <<= 1) {
            uint32_t y = __shfl_up_sync(0xffffffffu, s, o);
            if (lane >= o)
                s += y;
        }
        if (lane < n_warps)
            warp_sums[lane] = s;
    }
    __syncthreads();
    *total = warp_sums[n_warps - 1];
    return (wid ? warp_sums[wid - 1] : 0) + v - c;
}

// Thread t counts the set bits of its contiguous run of words, a block-wide
// exclusive scan places the runs, every thread writes its run's ids in order
// into lists + i * rows, then the block copies the list out (coalesced) to
// out.list[i] / out.counts when given, fenced for the CPU (system scope).
// Mask words written by other blocks of the same kernel are read through L2.
__device__ __forceinline__ void pred_compact_entry(uint32_t i, int32_t *lists, int32_t *counts,
                                                   const uint32_t *mask, uint32_t rows, const cuda_pred_out &out)
{
    const uint32_t t = threadIdx.x;
    const uint32_t words = (rows + 31) / 32, per = (words + blockDim.x - 1) / blockDim.x;
    const uint32_t w0 = min(words, t * per), w1 = min(words, w0 + per);
    const uint32_t *mrow = mask + (size_t)i * words;
    uint32_t c = 0;
    for (uint32_t w = w0; w < w1; w++)
        c += (uint32_t)__popc(__ldcg(mrow + w));
    uint32_t total;
    uint32_t off = block_exclusive_scan(c, &total);    // where this thread's run of ids goes
    int32_t *dl = lists + (size_t)i * rows;
    for (uint32_t w = w0; w < w1; w++) {
        uint32_t bits = __ldcg(mrow + w);
        while (bits) {
            uint32_t b = (uint32_t)__ffs((int)bits) - 1;
            bits &= bits - 1;
            dl[off++] = (int32_t)(w * 32 + b);
        }
    }
    if (t == 0)
        counts[i] = (int32_t)total;
    int32_t *hl = out.list[i];
    if (!hl && !out.counts)
        return;         // uniform over the block
    __syncthreads();    // the whole list is written (and visible to the block)
    if (hl)
        for (uint32_t k = t; k < total; k += blockDim.x)
            hl[k] = dl[k];
    if (t == 0 && out.counts)
        out.counts[i] = (int32_t)total;
    __threadfence_system();   // the CPU workers read them once the layer tick is published
}

#endif
