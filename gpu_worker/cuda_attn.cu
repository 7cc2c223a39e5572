// Norms, RoPE + fp16 KV store, split-K attention (cuda_attn.cuh).
#include <math.h>

#include "cuda_attn.cuh"
#include "cuda_norm.cuh"
#include "cuda_pdl.cuh"
#include "cuda_rope.cuh"

namespace {

constexpr unsigned NORM_THREADS = CUDA_NORM_THREADS;  // one block per row: 5 floats a thread at dim 5120

// One block per row; with add, the row first becomes x + add (the residual
// add of the previous product, fused here to save a launch).
__global__ void __launch_bounds__(NORM_THREADS) k_rmsnorm(float *y, float *y_host, float *x, const float *add,
                                                          const float *w, uint32_t dim, float eps)
{
    pdl_begin();
    __shared__ float red[32];
    norm_row(y, y_host, x, add, w, dim, eps, blockIdx.x, red);
}

// Block (entry n, head h), thread = a pair of the head: rotates q's pair,
// and for kv heads k's pair too, then stores that pair of k and v into the
// caches at [slot][layer][pos].
__global__ void k_rope_store(float *q, float *k, const float *v, __half *k_cache, __half *v_cache, const gpu_entry *e,
                             uint32_t layer, cuda_attn_shape sh)
{
    pdl_begin();
    const uint32_t n = blockIdx.x, h = blockIdx.y, pos = e[n].pos, hd = sh.head_dim;
    const uint32_t dim = sh.n_heads * hd, kv_dim = sh.n_kv_heads * hd;
    const size_t base = (((size_t)e[n].slot * sh.n_layers + layer) * sh.n_ctx + pos) * kv_dim;
    for (uint32_t d = 2 * threadIdx.x; d < hd; d += 2 * blockDim.x) {
        const uint32_t i = h * hd + d;
        float fcr, fci;
        rope_cos_sin((double)pos * sh.rope_inv[d / 2], fcr, fci);
        float *qv = q + (size_t)n * dim;
        const float2 qr = rope_rotate(qv[i], qv[i + 1], fcr, fci);
        qv[i] = qr.x;
        qv[i + 1] = qr.y;
        if (h < sh.n_kv_heads) {
            float *kvp = k + (size_t)n * kv_dim;
            const float *vv = v + (size_t)n * kv_dim;
            const float2 kr = rope_rotate(kvp[i], kvp[i + 1], fcr, fci);
            const float r0 = kr.x, r1 = kr.y;
            kvp[i] = r0;
            kvp[i + 1] = r1;
            k_cache[base + i] = __float2half_rn(r0);
            k_cache[base + i + 1] = __float2half_rn(r1);
            v_cache[base + i] = __float2half_rn(vv[i]);
            v_cache[base + i + 1] = __float2half_rn(vv[i + 1]);
        }
    }
}

// Block (split s, head h, entry i): positions [s * CHUNK, min(pos + 1, ..)),
// ATTN_WARPS warps. Scores: warp w takes positions w, w + ATTN_WARPS, ...,
// each lane 2 dims of a key row per 64 (rows are read coalesced, all of a
// warp's rows in flight at once), summed over the warp. Softmax over the
// chunk in shared memory. Values: the same positions per warp, each lane 2
// output dims per 64; the warps' sums added in warp order. One split (pos <
// CHUNK) writes out; several write their part (o, max, sum) and the last
// block of the (entry, head) to finish, counted in cnt, merges the splits in
// order and resets the count: one launch, any position.
constexpr unsigned ATTN_WARPS = 4;
constexpr unsigned ATTN_PER_WARP = CUDA_ATTN_CHUNK / ATTN_WARPS;
constexpr unsigned ATTN_MAX_HD = 256;   // 4 pairs a lane
static_assert(CUDA_ATTN_CHUNK % ATTN_WARPS == 0, "whole positions per warp");

__global__ void __launch_bounds__(ATTN_WARPS * 32) k_attn(float *out, float *part, uint32_t *cnt, const float *q,
                                                          const __half *kc, const __half *vc, const gpu_entry *e,
                                                          uint32_t layer, cuda_attn_shape sh)
{
    extern __shared__ float fac[];          // the merge: one factor per split
    __shared__ float s_sc[CUDA_ATTN_CHUNK];
    __shared__ float s_o[ATTN_WARPS][ATTN_MAX_HD];
    __shared__ float red[32];
    __shared__ int last;
    const uint32_t s = blockIdx.x, h = blockIdx.y, i = blockIdx.z, splits = gridDim.x;
    // The entries come from the host before the step's first kernel, so they
    // may be read before pdl_begin(); so may the cache rows into L2 (a hint:
    // the row rope_store is writing now is read after the wait). Measured:
    // 65.2 -> 53.1 us at position 4000, no change at 127 or 1023.
    // A block past the entry's position leaves at once, without waiting for
    // the kernel before: its slot goes to the next wave's blocks (n_ctx / 64
    // splits a head: at a 4096 context, 2560 blocks for 40 heads, most empty).
    const uint32_t pos = e[i].pos, used = pos / CUDA_ATTN_CHUNK + 1, hd = sh.head_dim;
    if (s >= used)
        return;
    const uint32_t t0 = s * CUDA_ATTN_CHUNK, len = min(pos + 1 - t0, (uint32_t)CUDA_ATTN_CHUNK);
    const uint32_t kv_dim = sh.n_kv_heads * hd, kvh = h / (sh.n_heads / sh.n_kv_heads);
    const uint32_t lane = threadIdx.x & 31u, w = threadIdx.x >> 5, kd = (hd + 63) / 64;
    const size_t base = ((size_t)e[i].slot * sh.n_layers + layer) * sh.n_ctx * kv_dim + (size_t)kvh * hd +
                        (size_t)t0 * kv_dim;
    for (uint32_t j = threadIdx.x; j < 2 * len; j += blockDim.x)
        prefetch_l2((j < len ? kc : vc) + base + (size_t)(j % len) * kv_dim, hd * sizeof(__half), 0, 1);
    pdl_begin();
    const float scale = 1.0f / sqrtf((float)hd);
    const float *qh = q + ((size_t)i * sh.n_heads + h) * hd;
    float2 qv[4];
#pragma unroll
    for (uint32_t k = 0; k < 4; k++) {
        const uint32_t d = 2 * lane + 64 * k;
        qv[k] = k < kd && d < hd ? make_float2(qh[d] * scale, qh[d + 1] * scale) : make_float2(0.0f, 0.0f);
    }
    float sc[ATTN_PER_WARP];
#pragma unroll
    for (uint32_t u = 0; u < ATTN_PER_WARP; u++) {
        const uint32_t j = w + ATTN_WARPS * u;
        float a = 0.0f;
        if (j < len) {
            const __half2 *kr = reinterpret_cast<const __half2 *>(kc + base + (size_t)j * kv_dim);
#pragma unroll
            for (uint32_t k = 0; k < 4; k++) {
                const uint32_t d = 2 * lane + 64 * k;
                if (k < kd && d < hd) {
                    float2 kf = __half22float2(kr[d / 2]);
                    a = fmaf(qv[k].x, kf.x, fmaf(qv[k].y, kf.y, a));
                }
            }
        }
        sc[u] = a;
    }
#pragma unroll
    for (uint32_t u = 0; u < ATTN_PER_WARP; u++) {
        const float v = warp_sum(sc[u]);
        const uint32_t j = w + ATTN_WARPS * u;
        if (lane == 0 && j < CUDA_ATTN_CHUNK)
            s_sc[j] = j < len ? v : -INFINITY;
    }
    __syncthreads();
    const float my = threadIdx.x < len ? s_sc[threadIdx.x] : -INFINITY;
    const float mx = block_reduce<1>(my, red);
    const float p = threadIdx.x < len ? expf(my - mx) : 0.0f;
    const float sum = block_reduce<0>(p, red);   // its barriers order the reads of s_sc above
    if (threadIdx.x < CUDA_ATTN_CHUNK)
        s_sc[threadIdx.x] = p;                  // now the weights
    __syncthreads();
    float2 acc[4];
#pragma unroll
    for (uint32_t k = 0; k < 4; k++)
        acc[k] = make_float2(0.0f, 0.0f);
#pragma unroll
    for (uint32_t u = 0; u < ATTN_PER_WARP; u++) {
        const uint32_t j = w + ATTN_WARPS * u;
        if (j < len) {
            const float wt = s_sc[j];
            const __half2 *vr = reinterpret_cast<const __half2 *>(vc + base + (size_t)j * kv_dim);
#pragma unroll
            for (uint32_t k = 0; k < 4; k++) {
                const uint32_t d = 2 * lane + 64 * k;
                if (k < kd && d < hd) {
                    float2 vf = __half22float2(vr[d / 2]);
                    acc[k].x = fmaf(wt, vf.x, acc[k].x);
                    acc[k].y = fmaf(wt, vf.y, acc[k].y);
                }
            }
        }
    }
#pragma unroll
    for (uint32_t k = 0; k < 4; k++) {
        const uint32_t d = 2 * lane + 64 * k;
        if (k < kd && d < hd) {
            s_o[w][d] = acc[k].x;
            s_o[w][d + 1] = acc[k].y;
        }
    }
    __syncthreads();
    float *oh = out + ((size_t)i * sh.n_heads + h) * hd;
    if (used == 1) {
        const float inv = 1.0f / sum;
        for (uint32_t d = threadIdx.x; d < hd; d += blockDim.x) {
            float o = 0.0f;
            for (uint32_t ww = 0; ww < ATTN_WARPS; ww++)
                o += s_o[ww][d];
            oh[d] = o * inv;
        }
        return;
    }
    float *pp = part + CUDA_ATTN_COUNTERS(sh.n_heads) + ((size_t)i * sh.n_heads + h) * splits * (hd + 2);
    for (uint32_t d = threadIdx.x; d < hd; d += blockDim.x) {
        float o = 0.0f;
        for (uint32_t ww = 0; ww < ATTN_WARPS; ww++)
            o += s_o[ww][d];
        pp[(size_t)s * (hd + 2) + d] = o;
    }
    if (threadIdx.x == 0) {
        pp[(size_t)s * (hd + 2) + hd] = mx;
        pp[(size_t)s * (hd + 2) + hd + 1] = sum;
    }
    __threadfence();        // this split's part is visible before it is counted
    __syncthreads();
    if (threadIdx.x == 0) {
        uint32_t *c = cnt + (size_t)i * sh.n_heads + h;
        last = atomicAdd(c, 1u) == used - 1;
        if (last)
            *c = 0;         // ready for the next launch (only this block still uses it)
    }
    __syncthreads();
    if (!last)
        return;
    __threadfence();
    float M = -INFINITY;
    for (uint32_t t = 0; t < used; t++)
        M = fmaxf(M, __ldcg(pp + (size_t)t * (hd + 2) + hd));
    for (uint32_t t = threadIdx.x; t < used; t += blockDim.x)
        fac[t] = expf(__ldcg(pp + (size_t)t * (hd + 2) + hd) - M);
    __syncthreads();
    float L = 0.0f;
    for (uint32_t t = 0; t < used; t++)
        L += __ldcg(pp + (size_t)t * (hd + 2) + hd + 1) * fac[t];
    const float inv = 1.0f / L;
    for (uint32_t d = threadIdx.x; d < hd; d += blockDim.x) {
        float o = 0.0f;
        for (uint32_t t = 0; t < used; t++)
            o += __ldcg(pp + (size_t)t * (hd + 2) + d) * fac[t];
        oh[d] = o * inv;
    }
}

} // namespace

uint32_t cuda_attn_splits(uint32_t n_ctx)
{
    return (n_ctx + CUDA_ATTN_CHUNK - 1) / CUDA_ATTN_CHUNK;
}

cudaError_t cuda_rmsnorm(cudaStream_t s, float *y, float *y_host, float *x, const float *add, const float *w,
                         uint32_t dim, float eps, uint32_t n)
{
    if (n == 0)
        return cudaSuccess;
    PDL_LAUNCH(k_rmsnorm, n, NORM_THREADS, 0, s, y, y_host, x, add, w, dim, eps);
    return cudaGetLastError();
}

cudaError_t cuda_rope_store(cudaStream_t s, float *q, float *k, const float *v, __half *k_cache, __half *v_cache,
                            const gpu_entry *e, uint32_t layer, const cuda_attn_shape &sh, uint32_t n)
{
    if (n == 0)
        return cudaSuccess;
    if (!sh.rope_inv)
        return cudaErrorInvalidValue;
    unsigned threads = (sh.head_dim / 2 + 31) / 32 * 32;
    if (threads > 256)
        threads = 256;
    PDL_LAUNCH(k_rope_store, dim3(n, sh.n_heads), threads, 0, s, q, k, v, k_cache, v_cache, e, layer, sh);
    return cudaGetLastError();
}

void cuda_rope_inv_freqs(double *out, uint32_t head_dim, float theta, float freq_scale, const float *freqs)
{
    for (uint32_t i = 0; i < head_dim / 2; i++) {
        // ops_rope_angle's factors, in its order: scale, then theta's power, then / freqs[i]
        double f = (double)freq_scale * pow((double)theta, -(double)(2 * i) / (double)head_dim);
        out[i] = freqs ? f / (double)freqs[i] : f;
    }
}

size_t cuda_attn_part_floats(uint32_t n, uint32_t n_heads, uint32_t n_ctx, uint32_t head_dim)
{
    return CUDA_ATTN_COUNTERS(n_heads) + (size_t)n * n_heads * cuda_attn_splits(n_ctx) * (head_dim + 2);
}

cudaError_t cuda_attention(cudaStream_t s, float *out, const float *q, const __half *k_cache, const __half *v_cache,
                           float *part, const gpu_entry *e, uint32_t layer, const cuda_attn_shape &sh, uint32_t n)
{
    if (n == 0)
        return cudaSuccess;
    if (sh.head_dim > ATTN_MAX_HD || sh.head_dim % 2 != 0)
        return cudaErrorInvalidValue;
    uint32_t splits = cuda_attn_splits(sh.n_ctx);
    if (n > CUDA_NEEDS_MAX_BATCH)
        return cudaErrorInvalidValue;
    uint32_t *cnt = reinterpret_cast<uint32_t *>(part);
    PDL_LAUNCH(k_attn, dim3(splits, sh.n_heads, n), ATTN_WARPS * 32, splits * sizeof(float), s, out, part, cnt, q, k_cache,
                                                                                      v_cache, e, layer, sh);
    return cudaGetLastError();
}
