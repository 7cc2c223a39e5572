// The predictor's fc2, threshold and ordered compaction (cuda_predict.cuh).
// k_pred_mask: thread = one fc2 row (neuron j) for up to NT entries; a warp
// holds 32 consecutive neurons, so one ballot is one word of the entry's bit
// mask. k_pred_compact: block = one entry; thread t counts the set bits of
// its contiguous run of words, a block-wide exclusive scan places the runs,
// every thread writes its run's ids in order into the device list, then the
// block copies the list out to the host (coalesced) when asked.
#include <cuda_fp16.h>

#include "cuda_predict.cuh"
#include "cuda_pdl.cuh"
#include "cuda_sys.cuh"

namespace {

// A word or two each at n_ff 13824-28672; the norm's block size, so the folded
// FFN norm has the norm kernel's bits.
constexpr unsigned PRED_COMPACT_THREADS = CUDA_NORM_THREADS;

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

constexpr unsigned MASK_THREADS = 256;      // rows per block of k_pred_mask (whole warps)
constexpr unsigned COMPACT_THREADS = PRED_COMPACT_THREADS;  // k_union_compact's block

// Element r of an fc2 row in the model's layout, as block_to_f32 gives it.
template <int T> __device__ __forceinline__ float pred_elem(const unsigned char *row, uint32_t r);

template <> __device__ __forceinline__ float pred_elem<PI_TYPE_F32>(const unsigned char *row, uint32_t r)
{
    return __ldg(reinterpret_cast<const float *>(row) + r);
}

template <> __device__ __forceinline__ float pred_elem<PI_TYPE_F16>(const unsigned char *row, uint32_t r)
{
    return __half2float(__ushort_as_half(__ldg(reinterpret_cast<const unsigned short *>(row) + r)));
}

template <> __device__ __forceinline__ float pred_elem<PI_TYPE_BF16>(const unsigned char *row, uint32_t r)
{
    return __uint_as_float((uint32_t)__ldg(reinterpret_cast<const unsigned short *>(row) + r) << 16);
}

// Blocks of 34 bytes: fp16 scale, 32 int8 quants.
template <> __device__ __forceinline__ float pred_elem<PI_TYPE_Q8_0>(const unsigned char *row, uint32_t r)
{
    const unsigned char *blk = row + (size_t)(r / 32) * 34;
    float d = __half2float(__ushort_as_half(__ldg(reinterpret_cast<const unsigned short *>(blk))));
    return (float)(int)(signed char)__ldg(blk + 2 + r % 32) * d;
}

// Blocks of 18 bytes: fp16 scale, byte k holds element k (low nibble) and k + 16 (high).
template <> __device__ __forceinline__ float pred_elem<PI_TYPE_Q4_0>(const unsigned char *row, uint32_t r)
{
    const unsigned char *blk = row + (size_t)(r / 32) * 18;
    float d = __half2float(__ushort_as_half(__ldg(reinterpret_cast<const unsigned short *>(blk))));
    uint32_t k = r % 32, q = __ldg(blk + 2 + k % 16);
    q = k < 16 ? (q & 15u) : (q >> 4);
    return (float)((int)q - 8) * d;
}

// Grid (row blocks, entry groups of NT). Every thread reaches the ballots,
// rows past the end vote 0. hidden is read through L1: a warp's lanes read
// the same element at once (one broadcast transaction).
template <int T, int NT>
__global__ void __launch_bounds__(MASK_THREADS) k_pred_mask(uint32_t *mask, cuda_pred_fc2 w, const float *hidden,
                                                            uint32_t n, float threshold)
{
    pdl_begin();
    const uint32_t j = blockIdx.x * blockDim.x + threadIdx.x, g0 = blockIdx.y * NT, R = w.cols;
    const uint32_t words = (w.rows + 31) / 32;
    float acc[NT];
#pragma unroll
    for (int i = 0; i < NT; i++)
        acc[i] = 0.0f;
    if (j < w.rows) {
        const unsigned char *row = w.data + (size_t)j * w.row_bytes;
        for (uint32_t r = 0; r < R; r++) {
            float wv = pred_elem<T>(row, r);
#pragma unroll
            for (int i = 0; i < NT; i++) {
                if (g0 + i < n) {
                    float h = __ldg(hidden + (size_t)(g0 + i) * R + r);
                    h = h > 0.0f ? h : 0.0f;    // relu; NaN -> 0 as on the host
                    acc[i] = __fadd_rn(acc[i], __fmul_rn(wv, h));
                }
            }
        }
    }
#pragma unroll
    for (int i = 0; i < NT; i++) {
        unsigned bits = __ballot_sync(0xffffffffu, j < w.rows && g0 + i < n && acc[i] > threshold);
        // lane 0 holds the warp's first row, a multiple of 32: word j / 32
        if ((threadIdx.x & 31u) == 0 && j < w.rows && g0 + i < n)
            mask[(size_t)(g0 + i) * words + j / 32] = bits;
    }
}

__global__ void __launch_bounds__(PRED_COMPACT_THREADS) k_pred_compact(int32_t *lists, int32_t *counts,
                                                                       const uint32_t *mask, uint32_t rows,
                                                                       cuda_pred_out out, cuda_norm_job nj,
                                                                       uint32_t n)
{
    pdl_begin();
    if (blockIdx.x >= n) {      // the norm's blocks (cuda_pred_compact's norm)
        __shared__ float red[32];
        norm_row(nj.y, nj.y_host, nj.x, nullptr, nj.w, nj.dim, nj.eps, blockIdx.x - n, red);
    } else {
        pred_compact_entry(blockIdx.x, lists, counts, mask, rows, out);
    }
    if (!out.tick)
        return;
    // Every thread's writes were fenced (system scope) by the paths above;
    // the barrier puts them all before thread 0's arrival.
    __threadfence_system();
    __syncthreads();
    if (threadIdx.x == 0 && atomicAdd(out.arrive, 1u) == gridDim.x - 1) {
        *out.arrive = 0;        // the next launch's count starts at 0
        __threadfence_system();
        store_release_sys(out.tick, *out.tick_base + out.tick_add);
    }
}

// One block: the ascending ids whose bit is set in (OR over the n entries'
// masks) AND hot; the same scan as pred_compact_entry (block_exclusive_scan).
__global__ void __launch_bounds__(COMPACT_THREADS) k_union_compact(int32_t *list, int32_t *count,
                                                                   const uint32_t *mask, uint32_t n,
                                                                   const uint32_t *hot, uint32_t rows)
{
    pdl_begin();
    const uint32_t t = threadIdx.x;
    const uint32_t words = (rows + 31) / 32, per = (words + blockDim.x - 1) / blockDim.x;
    const uint32_t w0 = min(words, t * per), w1 = min(words, w0 + per);
    uint32_t c = 0;
    for (uint32_t w = w0; w < w1; w++) {
        uint32_t u = 0;
        for (uint32_t i = 0; i < n; i++)
            u |= mask[(size_t)i * words + w];
        c += (uint32_t)__popc(u & hot[w]);
    }
    uint32_t total;
    uint32_t off = block_exclusive_scan(c, &total);
    for (uint32_t w = w0; w < w1; w++) {
        uint32_t u = 0;
        for (uint32_t i = 0; i < n; i++)
            u |= mask[(size_t)i * words + w];
        uint32_t bits = u & hot[w];
        while (bits) {
            uint32_t b = (uint32_t)__ffs((int)bits) - 1;
            bits &= bits - 1;
            list[off++] = (int32_t)(w * 32 + b);
        }
    }
    if (t == 0)
        *count = (int32_t)total;
}

template <int T>
cudaError_t launch_mask(cudaStream_t s, uint32_t *mask, const cuda_pred_fc2 &w, const float *hidden, uint32_t n,
                        float threshold)
{
    unsigned gx = (unsigned)((w.rows + MASK_THREADS - 1) / MASK_THREADS);
    if (n == 1)
        PDL_LAUNCH(k_pred_mask<T, 1>, dim3(gx, 1), MASK_THREADS, 0, s, mask, w, hidden, n, threshold);
    else if (n == 2)
        PDL_LAUNCH(k_pred_mask<T, 2>, dim3(gx, 1), MASK_THREADS, 0, s, mask, w, hidden, n, threshold);
    else if (n <= 4)
        PDL_LAUNCH(k_pred_mask<T, 4>, dim3(gx, 1), MASK_THREADS, 0, s, mask, w, hidden, n, threshold);
    else
        PDL_LAUNCH(k_pred_mask<T, 8>, dim3(gx, (n + 7) / 8), MASK_THREADS, 0, s, mask, w, hidden, n, threshold);
    return cudaGetLastError();
}

} // namespace

int cuda_pred_type_ok(int t)
{
    return t == PI_TYPE_F32 || t == PI_TYPE_F16 || t == PI_TYPE_BF16 || t == PI_TYPE_Q8_0 || t == PI_TYPE_Q4_0;
}

uint32_t cuda_pred_words(uint32_t rows)
{
    return (rows + 31) / 32;
}

cudaError_t cuda_pred_mask(cudaStream_t s, uint32_t *mask, const cuda_pred_fc2 *fc2, const float *hidden,
                           uint32_t n, float threshold)
{
    if (n == 0 || fc2->rows == 0)
        return cudaSuccess;
    if (n > CUDA_MAX_BATCH)
        return cudaErrorInvalidValue;
    switch (fc2->type) {
    case PI_TYPE_F32: return launch_mask<PI_TYPE_F32>(s, mask, *fc2, hidden, n, threshold);
    case PI_TYPE_F16: return launch_mask<PI_TYPE_F16>(s, mask, *fc2, hidden, n, threshold);
    case PI_TYPE_BF16: return launch_mask<PI_TYPE_BF16>(s, mask, *fc2, hidden, n, threshold);
    case PI_TYPE_Q8_0: return launch_mask<PI_TYPE_Q8_0>(s, mask, *fc2, hidden, n, threshold);
    case PI_TYPE_Q4_0: return launch_mask<PI_TYPE_Q4_0>(s, mask, *fc2, hidden, n, threshold);
    default: return cudaErrorInvalidValue;
    }
}

cudaError_t cuda_pred_compact(cudaStream_t s, int32_t *lists, int32_t *counts, const uint32_t *mask,
                              uint32_t rows, uint32_t n, const cuda_pred_out *out, const cuda_norm_job *norm)
{
    if (n == 0)
        return cudaSuccess;
    if (n > CUDA_MAX_BATCH)
        return cudaErrorInvalidValue;
    cuda_norm_job nj = {};
    if (norm)
        nj = *norm;
    PDL_LAUNCH(k_pred_compact, norm ? 2 * n : n, PRED_COMPACT_THREADS, 0, s, lists, counts, mask, rows, *out, nj, n);
    return cudaGetLastError();
}

cudaError_t cuda_pred_union(cudaStream_t s, int32_t *list, int32_t *count, const uint32_t *mask, uint32_t n,
                            const uint32_t *hot, uint32_t rows)
{
    if (n == 0 || n > CUDA_MAX_BATCH)
        return cudaErrorInvalidValue;
    PDL_LAUNCH(k_union_compact, 1, COMPACT_THREADS, 0, s, list, count, mask, n, hot, rows);
    return cudaGetLastError();
}
