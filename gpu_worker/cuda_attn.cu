// Norms, RoPE + fp16 KV store, split-K attention (cuda_attn.cuh).
#include <math.h>

#include "cuda_attn.cuh"

namespace {

constexpr unsigned NORM_THREADS = 1024;  // one block per row: 5 floats a thread at dim 5120
constexpr unsigned ATTN_THREADS = 128;   // >= CUDA_ATTN_CHUNK: one thread per position for the scores
static_assert(CUDA_ATTN_CHUNK <= ATTN_THREADS, "a chunk's scores are one per thread");

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

// The block's sum (op 0) or max (op 1) of v, returned to every thread. red
// holds 32 floats; the block is whole warps.
template <int MAX> __device__ float block_reduce(float v, float *red)
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

// One block per row; with add, the row first becomes x + add (the residual
// add of the previous product, fused here to save a launch).
__global__ void __launch_bounds__(NORM_THREADS) k_rmsnorm(float *y, float *y_host, float *x, const float *add,
                                                          const float *w, uint32_t dim, float eps)
{
    __shared__ float red[32];
    float *xr = x + (size_t)blockIdx.x * dim;
    const float *ar = add ? add + (size_t)blockIdx.x * dim : nullptr;
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
    float *yr = y + (size_t)blockIdx.x * dim;
    float *hr = y_host ? y_host + (size_t)blockIdx.x * dim : nullptr;
    for (uint32_t i = threadIdx.x; i < dim; i += blockDim.x) {
        float v = w[i] * (xr[i] * scale);
        yr[i] = v;
        if (hr)
            hr[i] = v;
    }
    if (hr)
        __threadfence_system();   // the CPU workers read it once the layer tick is published
}

// Block (entry n, head h), thread = a pair of the head: rotates q's pair,
// and for kv heads k's pair too, then stores that pair of k and v into the
// caches at [slot][layer][pos].
__global__ void k_rope_store(float *q, float *k, const float *v, __half *k_cache, __half *v_cache, const gpu_entry *e,
                             uint32_t layer, cuda_attn_shape sh)
{
    const uint32_t n = blockIdx.x, h = blockIdx.y, pos = e[n].pos, hd = sh.head_dim;
    const uint32_t dim = sh.n_heads * hd, kv_dim = sh.n_kv_heads * hd;
    const size_t base = (((size_t)e[n].slot * sh.n_layers + layer) * sh.n_ctx + pos) * kv_dim;
    for (uint32_t d = 2 * threadIdx.x; d < hd; d += 2 * blockDim.x) {
        const uint32_t i = h * hd + d;
        float freq = 1.0f / powf(sh.rope_theta, (float)d / (float)hd);
        float val = (float)pos * freq;
        float fcr = cosf(val), fci = sinf(val);
        float *qv = q + (size_t)n * dim;
        float q0 = qv[i], q1 = qv[i + 1];
        qv[i] = q0 * fcr - q1 * fci;
        qv[i + 1] = q0 * fci + q1 * fcr;
        if (h < sh.n_kv_heads) {
            float *kvp = k + (size_t)n * kv_dim;
            const float *vv = v + (size_t)n * kv_dim;
            float k0 = kvp[i], k1 = kvp[i + 1];
            float r0 = k0 * fcr - k1 * fci, r1 = k0 * fci + k1 * fcr;
            kvp[i] = r0;
            kvp[i + 1] = r1;
            k_cache[base + i] = __float2half_rn(r0);
            k_cache[base + i + 1] = __float2half_rn(r1);
            v_cache[base + i] = __float2half_rn(vv[i]);
            v_cache[base + i + 1] = __float2half_rn(vv[i + 1]);
        }
    }
}

// Block (split s, head h, entry i): positions [s * CHUNK, min(pos + 1, ..)).
// Writes o (head_dim floats, weights relative to the chunk's max), the max
// and the sum of the weights. Splits past pos write nothing: the merge reads
// only the splits that cover 0..pos.
__global__ void __launch_bounds__(ATTN_THREADS) k_attn_split(float *part, const float *q, const __half *kc,
                                                             const __half *vc, const gpu_entry *e, uint32_t layer,
                                                             cuda_attn_shape sh)
{
    extern __shared__ float sm[];   // q (head_dim), then CHUNK weights
    __shared__ float red[32];
    const uint32_t s = blockIdx.x, h = blockIdx.y, i = blockIdx.z, splits = gridDim.x;
    const uint32_t pos = e[i].pos, t0 = s * CUDA_ATTN_CHUNK, hd = sh.head_dim;
    if (t0 > pos)
        return;
    const uint32_t len = min(pos + 1 - t0, (uint32_t)CUDA_ATTN_CHUNK);
    const uint32_t kv_dim = sh.n_kv_heads * hd, kvh = h / (sh.n_heads / sh.n_kv_heads);
    const size_t base = ((size_t)e[i].slot * sh.n_layers + layer) * sh.n_ctx * kv_dim + (size_t)kvh * hd +
                        (size_t)t0 * kv_dim;
    float *qs = sm, *w = sm + hd;
    const float *qh = q + ((size_t)i * sh.n_heads + h) * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    for (uint32_t d = threadIdx.x; d < hd; d += blockDim.x)
        qs[d] = qh[d] * scale;
    __syncthreads();
    // One position per thread: its key row is head_dim contiguous halves.
    float sc = -INFINITY;
    if (threadIdx.x < len) {
        const __half2 *kr = reinterpret_cast<const __half2 *>(kc + base + (size_t)threadIdx.x * kv_dim);
        float acc = 0.0f;
#pragma unroll 8
        for (uint32_t d2 = 0; d2 < hd / 2; d2++) {
            float2 kf = __half22float2(kr[d2]);
            acc = fmaf(qs[2 * d2], kf.x, acc);
            acc = fmaf(qs[2 * d2 + 1], kf.y, acc);
        }
        sc = acc;
    }
    const float mx = block_reduce<1>(sc, red);
    const float p = threadIdx.x < len ? expf(sc - mx) : 0.0f;
    if (threadIdx.x < CUDA_ATTN_CHUNK)
        w[threadIdx.x] = p;
    const float sum = block_reduce<0>(p, red);   // its barriers also publish w
    float *pp = part + (((size_t)i * sh.n_heads + h) * splits + s) * (hd + 2);
    for (uint32_t d = threadIdx.x; d < hd; d += blockDim.x) {
        const __half *vr = vc + base + d;
        float acc = 0.0f;
#pragma unroll 8
        for (uint32_t j = 0; j < len; j++)
            acc = fmaf(w[j], __half2float(vr[(size_t)j * kv_dim]), acc);
        pp[d] = acc;
    }
    if (threadIdx.x == 0) {
        pp[hd] = mx;
        pp[hd + 1] = sum;
    }
}

// Block (head h, entry i): merges the splits 0..pos / CHUNK.
__global__ void __launch_bounds__(ATTN_THREADS) k_attn_merge(float *out, const float *part, const gpu_entry *e,
                                                             cuda_attn_shape sh, uint32_t splits)
{
    const uint32_t h = blockIdx.x, i = blockIdx.y, hd = sh.head_dim;
    const uint32_t used = e[i].pos / CUDA_ATTN_CHUNK + 1;
    const float *pp = part + ((size_t)i * sh.n_heads + h) * splits * (hd + 2);
    float M = -INFINITY;
    for (uint32_t s = 0; s < used; s++)
        M = fmaxf(M, pp[(size_t)s * (hd + 2) + hd]);
    float L = 0.0f;
    for (uint32_t s = 0; s < used; s++)
        L += pp[(size_t)s * (hd + 2) + hd + 1] * expf(pp[(size_t)s * (hd + 2) + hd] - M);
    const float inv = 1.0f / L;
    float *oh = out + ((size_t)i * sh.n_heads + h) * hd;
    for (uint32_t d = threadIdx.x; d < hd; d += blockDim.x) {
        float acc = 0.0f;
        for (uint32_t s = 0; s < used; s++)
            acc += pp[(size_t)s * (hd + 2) + d] * expf(pp[(size_t)s * (hd + 2) + hd] - M);
        oh[d] = acc * inv;
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
    k_rmsnorm<<<n, NORM_THREADS, 0, s>>>(y, y_host, x, add, w, dim, eps);
    return cudaGetLastError();
}

cudaError_t cuda_rope_store(cudaStream_t s, float *q, float *k, const float *v, __half *k_cache, __half *v_cache,
                            const gpu_entry *e, uint32_t layer, const cuda_attn_shape &sh, uint32_t n)
{
    if (n == 0)
        return cudaSuccess;
    unsigned threads = (sh.head_dim / 2 + 31) / 32 * 32;
    k_rope_store<<<dim3(n, sh.n_heads), threads > 256 ? 256 : threads, 0, s>>>(q, k, v, k_cache, v_cache, e, layer,
                                                                                sh);
    return cudaGetLastError();
}

cudaError_t cuda_attention(cudaStream_t s, float *out, const float *q, const __half *k_cache, const __half *v_cache,
                           float *part, const gpu_entry *e, uint32_t layer, const cuda_attn_shape &sh, uint32_t n)
{
    if (n == 0)
        return cudaSuccess;
    uint32_t splits = cuda_attn_splits(sh.n_ctx);
    size_t smem = (sh.head_dim + CUDA_ATTN_CHUNK) * sizeof(float);
    k_attn_split<<<dim3(splits, sh.n_heads, n), ATTN_THREADS, smem, s>>>(part, q, k_cache, v_cache, e, layer, sh);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess)
        return err;
    k_attn_merge<<<dim3(sh.n_heads, n), ATTN_THREADS, 0, s>>>(out, part, e, sh, splits);
    return cudaGetLastError();
}
