// Kernels over device weights in the model's own types (cuda_matvec.cuh).
// Matrix-vector products: one warp per output row; each lane reads 16 bytes
// of the row at a time (a chunk), dequantizes it and accumulates it against
// the matching floats of up to GROUP entries' x (read through L1), so a row
// is read once for GROUP entries; a warp-shuffle butterfly gives every lane
// the sums. The down product: each thread owns one 16-byte chunk of the
// output for GROUP entries and walks the hot neurons of its slice.
#include <cuda_fp16.h>
#include <string.h>

#include <type_traits>

#include "cuda_matvec.cuh"
#include "cuda_matvec_batch.cuh"
#include "cuda_pdl.cuh"
#include "cuda_rope.cuh"
#include "cuda_switch.h"

namespace {

constexpr int GROUP = 8;        // entries whose sums live in registers at once
constexpr int WARPS = 8;        // warps per block of the row kernels

__device__ __forceinline__ float2 half2_bits(uint32_t u)
{
    __half2 h;
    memcpy(&h, &u, sizeof h);
    return __half22float2(h);
}

__device__ __forceinline__ float half_bits(uint16_t u)
{
    return __half2float(__ushort_as_half(u));
}

// A chunk of a row as it sits in memory: 16 bytes (and, for the block
// types, its scale d; for the K-quants also m, a sub-block's min or second
// scale, and h, the high bits of Q5_K/Q6_K). fetch(m, row, c) reads chunk c;
// expand turns it into the E floats [c * E, c * E + E) of the row; load does
// both. Fetching several chunks before expanding any keeps several loads in
// flight. (The fields a type does not use cost no registers: they are
// never read.)
struct chunk {
    uint4 q;
    float d, m;
    uint2 h;
};

template <int T> struct wt;

// Where row lives: its part's base (and scales), row made relative to it.
__device__ __forceinline__ const unsigned char *mat_base(const cuda_mat &m, uint32_t &row)
{
    if (m.hdata && row >= m.nv) {
        row -= m.nv;
        return m.hdata;
    }
    return m.data;
}

__device__ __forceinline__ const uint16_t *mat_scales(const cuda_mat &m, const unsigned char *base)
{
    return base == m.data ? m.scales : m.hscales;
}

template <> struct wt<PI_TYPE_F32> {
    static constexpr int E = 4;
    __device__ __forceinline__ static chunk fetch(const cuda_mat &m, uint32_t row, uint32_t c)
    {
        const unsigned char *b = mat_base(m, row);
        return {__ldg(reinterpret_cast<const uint4 *>(b + (size_t)row * m.cols * 4) + c), 0.0f};
    }
    __device__ __forceinline__ static void expand(const chunk &k, float *w)
    {
        w[0] = __uint_as_float(k.q.x);
        w[1] = __uint_as_float(k.q.y);
        w[2] = __uint_as_float(k.q.z);
        w[3] = __uint_as_float(k.q.w);
    }
};

template <> struct wt<PI_TYPE_F16> {
    static constexpr int E = 8;
    __device__ __forceinline__ static chunk fetch(const cuda_mat &m, uint32_t row, uint32_t c)
    {
        const unsigned char *b = mat_base(m, row);
        return {__ldg(reinterpret_cast<const uint4 *>(b + (size_t)row * m.cols * 2) + c), 0.0f};
    }
    __device__ __forceinline__ static void expand(const chunk &k, float *w)
    {
        uint32_t u[4] = {k.q.x, k.q.y, k.q.z, k.q.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float2 f = half2_bits(u[i]);
            w[2 * i] = f.x;
            w[2 * i + 1] = f.y;
        }
    }
};

template <> struct wt<PI_TYPE_BF16> {
    static constexpr int E = 8;
    __device__ __forceinline__ static chunk fetch(const cuda_mat &m, uint32_t row, uint32_t c)
    {
        const unsigned char *b = mat_base(m, row);
        return {__ldg(reinterpret_cast<const uint4 *>(b + (size_t)row * m.cols * 2) + c), 0.0f};
    }
    __device__ __forceinline__ static void expand(const chunk &k, float *w)
    {
        uint32_t u[4] = {k.q.x, k.q.y, k.q.z, k.q.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            w[2 * i] = __uint_as_float(u[i] << 16);
            w[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
        }
    }
};

// Chunk c = half a block: 16 int8 quants, scale of block c / 2.
template <> struct wt<PI_TYPE_Q8_0> {
    static constexpr int E = 16;
    __device__ __forceinline__ static chunk fetch(const cuda_mat &m, uint32_t row, uint32_t c)
    {
        const unsigned char *b = mat_base(m, row);
        return {__ldg(reinterpret_cast<const uint4 *>(b + (size_t)row * m.cols) + c),
                half_bits(__ldg(mat_scales(m, b) + (size_t)row * (m.cols / 32) + c / 2))};
    }
    __device__ __forceinline__ static void expand(const chunk &k, float *w)
    {
        uint32_t u[4] = {k.q.x, k.q.y, k.q.z, k.q.w};
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int b = 0; b < 4; b++)
                w[4 * i + b] = (float)(int)(signed char)((u[i] >> (8 * b)) & 0xffu) * k.d;
    }
};

// Q8_0 read a word (4 quants) a lane instead of 16 bytes (PI_CUDA_Q8_NARROW,
// on by default for one-entry products and the predictor's fc2): chunk c =
// elements 4c..4c+3, scale of block c / 8. A warp's quant loads and its x
// loads are then both contiguous; with 16 elements a lane, each lane's float4
// of x lay 64 bytes from the next lane's, four times F16's L1 wavefronts per
// weight byte (the predictor's Q8_0 products ran at ~0.7-1.1 TB/s on the
// H200, session 13). The same dequantized values, summed by other lanes.
constexpr int PI_Q8N = 0x1008;  // a kernel tag, not a pi_type
template <> struct wt<PI_Q8N> {
    static constexpr int E = 4;
    __device__ __forceinline__ static chunk fetch(const cuda_mat &m, uint32_t row, uint32_t c)
    {
        const unsigned char *b = mat_base(m, row);
        chunk k;
        k.q.x = __ldg(reinterpret_cast<const uint32_t *>(b + (size_t)row * m.cols) + c);
        k.d = half_bits(__ldg(mat_scales(m, b) + (size_t)row * (m.cols / 32) + c / 8));
        return k;
    }
    __device__ __forceinline__ static void expand(const chunk &k, float *w)
    {
#pragma unroll
        for (int b = 0; b < 4; b++)
            w[b] = (float)(int)(signed char)((k.q.x >> (8 * b)) & 0xffu) * k.d;
    }
};

// Chunk c = block c: byte t holds element t (low nibble) and t + 16 (high).
template <> struct wt<PI_TYPE_Q4_0> {
    static constexpr int E = 32;
    __device__ __forceinline__ static chunk fetch(const cuda_mat &m, uint32_t row, uint32_t c)
    {
        const unsigned char *b = mat_base(m, row);
        return {__ldg(reinterpret_cast<const uint4 *>(b + (size_t)row * (m.cols / 2)) + c),
                half_bits(__ldg(mat_scales(m, b) + (size_t)row * (m.cols / 32) + c))};
    }
    __device__ __forceinline__ static void expand(const chunk &k, float *w)
    {
        uint32_t u[4] = {k.q.x, k.q.y, k.q.z, k.q.w};
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int b = 0; b < 4; b++) {
                uint32_t q = (u[i] >> (8 * b)) & 0xffu;
                w[4 * i + b] = (float)((int)(q & 15u) - 8) * k.d;
                w[4 * i + b + 16] = (float)((int)(q >> 4) - 8) * k.d;
            }
    }
};

// The K-quants (super-blocks of 256; cuda_matvec.cuh gives the layout):
// chunk c = the 32 elements of sub-block c % 8 of super-block c / 8 (Q6_K:
// two sub-blocks of 16). Each value is the host's dequantization to the bit
// (quant.c): the same fp32 products, never fused into an fma.

// Where row's scale part starts, as bytes.
__device__ __forceinline__ const unsigned char *kq_scales(const cuda_mat &m, const unsigned char *base, uint32_t row,
                                                         uint32_t bytes_per_256)
{
    return reinterpret_cast<const unsigned char *>(mat_scales(m, base)) + (size_t)row * (m.cols / 256) * bytes_per_256;
}

// Q4_K/Q5_K: sub-block j's d * scale and dmin * min from the super-block's
// header h (x: fp16 d, dmin; y, z, w: the 12 packed bytes p), as quant.c's
// kq_scale_min: j < 4 takes the low 6 bits of p[j] and p[j + 4]; j >= 4 the
// nibbles of p[j + 4] with the top 2 bits of p[j - 4] and p[j].
__device__ __forceinline__ void kq_scale_min(const uint4 &h, uint32_t j, float &ds, float &ms)
{
    const uint32_t sh = 8 * (j & 3u);
    const uint32_t a = (h.y >> sh) & 0xffu, b = (h.z >> sh) & 0xffu, c = (h.w >> sh) & 0xffu;
    const uint32_t sc = j < 4 ? a & 63u : (c & 15u) | ((a >> 6) << 4);
    const uint32_t mn = j < 4 ? b & 63u : (c >> 4) | ((b >> 6) << 4);
    const float2 dd = half2_bits(h.x);
    ds = __fmul_rn(dd.x, (float)sc);
    ms = __fmul_rn(dd.y, (float)mn);
}

// Q4_K/Q5_K: element t of the chunk (quant v of 0..31) = ds * v - ms.
__device__ __forceinline__ float kq_value(const chunk &k, uint32_t v)
{
    return __fsub_rn(__fmul_rn(k.d, (float)v), k.m);
}

// Q4_K/Q5_K: the chunk's 32 elements; k.h.x holds Q5_K's fifth bits (bit t
// of element t), 0 for Q4_K.
__device__ __forceinline__ void kq_expand(const chunk &k, float *w)
{
    uint32_t u[4] = {k.q.x, k.q.y, k.q.z, k.q.w};
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int b = 0; b < 4; b++) {
            const uint32_t t = 4 * i + b, q = (u[i] >> (8 * b)) & 0xffu;
            w[t] = kq_value(k, (q & 15u) | (((k.h.x >> t) & 1u) << 4));
            w[t + 16] = kq_value(k, (q >> 4) | (((k.h.x >> (t + 16)) & 1u) << 4));
        }
}

template <> struct wt<PI_TYPE_Q4_K> {
    static constexpr int E = 32;
    __device__ __forceinline__ static chunk fetch(const cuda_mat &m, uint32_t row, uint32_t c)
    {
        const unsigned char *b = mat_base(m, row);
        chunk k;
        k.q = __ldg(reinterpret_cast<const uint4 *>(b + (size_t)row * (m.cols / 2)) + c);
        const uint4 h = __ldg(reinterpret_cast<const uint4 *>(kq_scales(m, b, row, 16)) + c / 8);
        kq_scale_min(h, c % 8, k.d, k.m);
        k.h = make_uint2(0, 0);
        return k;
    }
    __device__ __forceinline__ static void expand(const chunk &k, float *w)
    {
        kq_expand(k, w);
    }
};

// As Q4_K, with the fifth bit of element t at bit t of h.x.
template <> struct wt<PI_TYPE_Q5_K> {
    static constexpr int E = 32;
    __device__ __forceinline__ static chunk fetch(const cuda_mat &m, uint32_t row, uint32_t c)
    {
        const unsigned char *b = mat_base(m, row);
        const unsigned char *qr = b + (size_t)row * (m.cols / 2 + m.cols / 8);
        chunk k;
        k.q = __ldg(reinterpret_cast<const uint4 *>(qr) + c);
        k.h = make_uint2(__ldg(reinterpret_cast<const unsigned int *>(qr + m.cols / 2) + c), 0);
        const uint4 h = __ldg(reinterpret_cast<const uint4 *>(kq_scales(m, b, row, 16)) + c / 8);
        kq_scale_min(h, c % 8, k.d, k.m);
        return k;
    }
    __device__ __forceinline__ static void expand(const chunk &k, float *w)
    {
        kq_expand(k, w);
    }
};

// Low 4 bits as Q4_K, top 2 bits of element t at bits 2t of h (elements
// 0..15 in h.x, 16..31 in h.y); d = d * scale of the first 16, m of the
// second; element = scale * (q - 32).
template <> struct wt<PI_TYPE_Q6_K> {
    static constexpr int E = 32;
    __device__ __forceinline__ static chunk fetch(const cuda_mat &m, uint32_t row, uint32_t c)
    {
        const unsigned char *b = mat_base(m, row);
        const unsigned char *qr = b + (size_t)row * (m.cols / 2 + m.cols / 4);
        const unsigned char *sb = kq_scales(m, b, row, 18) + (size_t)(c / 8) * 18;
        chunk k;
        k.q = __ldg(reinterpret_cast<const uint4 *>(qr) + c);
        k.h = __ldg(reinterpret_cast<const uint2 *>(qr + m.cols / 2) + c);
        const uint32_t sc = __ldg(reinterpret_cast<const unsigned short *>(sb) + c % 8);
        const float d = half_bits(__ldg(reinterpret_cast<const unsigned short *>(sb + 16)));
        k.d = __fmul_rn(d, (float)(int)(signed char)(sc & 0xffu));
        k.m = __fmul_rn(d, (float)(int)(signed char)(sc >> 8));
        return k;
    }
    __device__ __forceinline__ static void expand(const chunk &k, float *w)
    {
        uint32_t u[4] = {k.q.x, k.q.y, k.q.z, k.q.w};
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int b = 0; b < 4; b++) {
                const uint32_t t = 4 * i + b, q = (u[i] >> (8 * b)) & 0xffu;
                const int lo = (int)((q & 15u) | (((k.h.x >> (2 * t)) & 3u) << 4));
                const int hi = (int)((q >> 4) | (((k.h.y >> (2 * t)) & 3u) << 4));
                w[t] = __fmul_rn(k.d, (float)(lo - 32));
                w[t + 16] = __fmul_rn(k.m, (float)(hi - 32));
            }
    }
};

template <int T>
__device__ __forceinline__ void load_chunk(const cuda_mat &m, uint32_t row, uint32_t c, float *w)
{
    wt<T>::expand(wt<T>::fetch(m, row, c), w);
}

__device__ __forceinline__ float ffn_act(int act, float g, float u)
{
    if (act == PI_ACT_SILU)
        return g / (1.0f + expf(-g)) * u;
    float a = g > 0.0f ? g : 0.0f;
    if (act == PI_ACT_RELU_BOTH)
        u = u > 0.0f ? u : 0.0f;
    return a * u;
}

// acc[i] = row . x[i * xs ..] for i < min(nv, NT), summed over the warp
// (every lane ends with the same sums). The caller's warp must be whole.
// acc[i] += w . x[i * xs + c * E ..] for the chunk's E elements, i < min(nv, NT).
template <int T, int NT>
__device__ __forceinline__ void dot_chunk(const chunk &k, const float *x, uint32_t xs, uint32_t c, uint32_t nv,
                                          float *acc)
{
    constexpr int E = wt<T>::E;
    float w[E];
    wt<T>::expand(k, w);
#pragma unroll
    for (int i = 0; i < NT; i++) {
        if ((uint32_t)i < nv) {
            const float4 *xp = reinterpret_cast<const float4 *>(x + (size_t)i * xs + (size_t)c * E);
#pragma unroll
            for (int q = 0; q < E / 4; q++) {
                float4 xv = __ldg(xp + q);
                acc[i] = fmaf(w[4 * q], xv.x, acc[i]);
                acc[i] = fmaf(w[4 * q + 1], xv.y, acc[i]);
                acc[i] = fmaf(w[4 * q + 2], xv.z, acc[i]);
                acc[i] = fmaf(w[4 * q + 3], xv.w, acc[i]);
            }
        }
    }
}

// acc[i] = row . x[i * xs ..] for i < min(nv, NT), summed over the warp
// (every lane ends with the same sums). Each lane takes chunks lane,
// lane + 32, ... in order, fetching BATCH of them before using any, so
// several 16-byte loads per lane are in flight. The caller's warp must be whole.
//
// BATCH: the matrix products keep 4 (many warps per SM hide the latency);
// the hot FFN's scattered rows take ROW_BATCH, so a warp has a whole F16
// row of dim 5120 (20 chunks a lane) in flight in two round trips instead
// of five (at one entry a group; more entries would spill registers). The
// row's last chunks (fewer than BATCH a lane) are fetched together too: a
// short row (a split part of 80 chunks, a Q8_0 fc2 row of 64) is all tail.
// The same chunks are added in the same order either way.
constexpr int ROW_BATCH = 10;

// [c0, c1): the row's chunks to take (a split row: one part of it), all by default.
template <int T, int NT, int BATCH = 4>
__device__ __forceinline__ void row_dot(const cuda_mat &m, uint32_t row, const float *x, uint32_t xs, uint32_t nv,
                                        float *acc, uint32_t c0 = 0, uint32_t c1 = UINT32_MAX)
{
    constexpr int E = wt<T>::E;
    const uint32_t lane = threadIdx.x & 31u, nch = min(m.cols / E, c1);
#pragma unroll
    for (int i = 0; i < NT; i++)
        acc[i] = 0.0f;
    uint32_t c = c0 + lane;
    for (; c + 32 * (BATCH - 1) < nch; c += 32 * BATCH) {
        chunk k[BATCH];
#pragma unroll
        for (int b = 0; b < BATCH; b++)
            k[b] = wt<T>::fetch(m, row, c + 32 * b);
#pragma unroll
        for (int b = 0; b < BATCH; b++)
            dot_chunk<T, NT>(k[b], x, xs, c + 32 * b, nv, acc);
    }
    if (c < nch) {      // the rest of the row (under BATCH chunks a lane), also fetched before use
        chunk k[BATCH];
#pragma unroll
        for (int b = 0; b < BATCH; b++)
            if (c + 32 * b < nch)
                k[b] = wt<T>::fetch(m, row, c + 32 * b);
#pragma unroll
        for (int b = 0; b < BATCH; b++)
            if (c + 32 * b < nch)
                dot_chunk<T, NT>(k[b], x, xs, c + 32 * b, nv, acc);
    }
#pragma unroll
    for (int i = 0; i < NT; i++)
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            acc[i] += __shfl_xor_sync(0xffffffffu, acc[i], o);
}

// Warp per output row of the concatenated matrices of set (fused products
// of one input, e.g. Q, K and V); mode: what each output does (mv_out).
// (Capping registers for 5 blocks an SM instead of 4 was measured slower on
// the H200: QKV 41.7 vs 38.7 us, wo 16.2 vs 15.5; docs/benchmarks.md.)
// ROPE (set = Q, K, V; cuda_matvec_qkv_rope): the block's warps leave their
// sums in shared memory, then each row of q and k is rotated with its pair's
// other row (rows 2i and 2i + 1 of a head: adjacent warps of one block, as a
// block starts at a multiple of WARPS and Q's and K's rows are even in
// number) by its entry's position, and k's and v's rows are stored into the
// fp16 caches: what k_rope_store does after the product, bit for bit.
// SPLIT > 1 (one entry; matrices of few rows, e.g. wo and the predictor's
// fc1): SPLIT consecutive warps share a row, each over a contiguous part of
// its chunks, and the first adds the parts in order, so a matrix of R rows
// runs R * SPLIT warps: ncu showed wo's 5120 rows in 1.2 waves of the
// machine's 4224 resident warps, most SMs idle in the second.
template <int T, int NT, bool ROPE = false, int SPLIT = 1>
__global__ void __launch_bounds__(WARPS * 32) k_matvec(cuda_mv_set set, const float *x, uint32_t xs, uint32_t n,
                                                       int mode, cuda_qkv_rope rp)
{
    static_assert(WARPS % 2 == 0, "a rope pair's rows in one block");
    static_assert(SPLIT == 1 || (NT == 1 && !ROPE && WARPS % SPLIT == 0), "a split row: one entry, one block");
    __shared__ float s_acc[ROPE ? WARPS : 1][NT];
    __shared__ float s_part[SPLIT > 1 ? WARPS : 1];
    const uint32_t w = threadIdx.x / 32, lane = threadIdx.x & 31u, part = w % SPLIT;
    uint32_t row = (blockIdx.x * WARPS + w) / SPLIT;
    int k = 0;
    while (k < set.count && row >= set.w[k].rows)
        row -= set.w[k++].rows;
    pdl_begin();
    const bool active = k < set.count;
    if (!ROPE && SPLIT == 1 && !active)
        return; // the whole warp: rows are per warp
    const cuda_mat &m = set.w[active ? k : 0];
    float *y = set.y[active ? k : 0];
    const uint32_t ys = set.ys[active ? k : 0];
    if constexpr (SPLIT > 1) {     // n == 1
        float acc = 0.0f;
        if (active) {
            const uint32_t nch = m.cols / wt<T>::E;
            row_dot<T, 1>(m, row, x, xs, 1, &acc, nch * part / SPLIT, nch * (part + 1) / SPLIT);
        }
        if (lane == 0)
            s_part[w] = acc;
        __syncthreads();
        if (active && part == 0 && lane == 0) {
            float sum = s_part[w];
#pragma unroll
            for (int p = 1; p < SPLIT; p++)
                sum += s_part[w + p];
            mvb::mv_out(y + row, sum, mode);
        }
    } else {
        for (uint32_t g0 = 0; g0 < n; g0 += NT) {
            float acc[NT];
            if (active)
                row_dot<T, NT>(m, row, x + (size_t)g0 * xs, xs, n - g0, acc);
            if constexpr (ROPE) {
                // every lane holds the sums after row_dot's butterfly
                if (active && lane == 0)
#pragma unroll
                    for (int i = 0; i < NT; i++)
                        s_acc[w][i] = acc[i];
                __syncthreads();
                if (active) {
                    const uint32_t kv_dim = set.w[1].rows;
#pragma unroll
                    for (int i = 0; i < NT; i++) {
                        if (lane != (uint32_t)i || g0 + i >= n)
                            continue;
                        const gpu_entry en = rp.e[g0 + i];
                        const size_t cache = (((size_t)en.slot * rp.n_layers + rp.layer) * rp.n_ctx + en.pos) * kv_dim;
                        float v = acc[i];
                        if (k < 2) {        // q or k: rotate with the pair's other row
                            const bool first = row % 2 == 0;
                            const float other = s_acc[w ^ 1u][i];
                            float c, sn;
                            rope_cos_sin((double)en.pos * rp.rope_inv[(row % rp.head_dim) / 2], c, sn);
                            const float2 r = first ? rope_rotate(v, other, c, sn) : rope_rotate(other, v, c, sn);
                            v = first ? r.x : r.y;
                        }
                        y[(size_t)(g0 + i) * ys + row] = v;
                        if (k == 1)
                            rp.k_cache[cache + row] = __float2half_rn(v);
                        else if (k == 2)
                            rp.v_cache[cache + row] = __float2half_rn(v);
                    }
                }
                __syncthreads();    // s_acc is rewritten by the next group
            } else {
#pragma unroll
                for (int i = 0; i < NT; i++)
                    if (lane == (uint32_t)i && g0 + i < n)
                        mvb::mv_out(y + (size_t)(g0 + i) * ys + row, acc[i], mode);
            }
        }
    }
}

template <int T, int NT>
__global__ void __launch_bounds__(WARPS * 32) k_gate_up(float *coef, cuda_mat gate, cuda_mat up, const float *x,
                                                        uint32_t n, int act, int skip_dead)
{
    pdl_begin();
    const uint32_t j = blockIdx.x * WARPS + threadIdx.x / 32, lane = threadIdx.x & 31u;
    const uint32_t K = gate.rows, xs = gate.cols;
    if (j >= K)
        return;
    for (uint32_t g0 = 0; g0 < n; g0 += NT) {
        float g[NT], u[NT];
        row_dot<T, NT>(gate, j, x + (size_t)g0 * xs, xs, n - g0, g);
        bool live = !skip_dead;
#pragma unroll
        for (int i = 0; i < NT; i++)
            if (g0 + i < n && g[i] > 0.0f)
                live = true;    // warp-uniform: every lane holds the same sums
        if (live) {
            row_dot<T, NT>(up, j, x + (size_t)g0 * xs, xs, n - g0, u);
        } else {
#pragma unroll
            for (int i = 0; i < NT; i++)
                u[i] = 0.0f;
        }
#pragma unroll
        for (int i = 0; i < NT; i++)
            if (lane == (uint32_t)i && g0 + i < n)
                coef[(size_t)(g0 + i) * K + j] = live ? ffn_act(act, g[i], u[i]) : 0.0f;
    }
}

// Warp per (entry blockIdx.y, list position); grid.x covers the longest list.
template <int T>
__global__ void __launch_bounds__(WARPS * 32) k_gate_up_active(float *coef, cuda_mat gate, cuda_mat up,
                                                               const float *x, cuda_active lists,
                                                               const int32_t *map, uint32_t n_ff, int act)
{
    pdl_begin();
    const uint32_t i = blockIdx.y, k = blockIdx.x * WARPS + threadIdx.x / 32, lane = threadIdx.x & 31u;
    const uint32_t K = gate.rows, xs = gate.cols;
    if ((int32_t)k >= lists.count[i])
        return;
    int32_t id = lists.list[i][k];
    int32_t slot = -1;
    if (id >= 0 && (uint32_t)id < n_ff)
        slot = map ? map[id] : ((uint32_t)id < K ? id : -1);
    if (slot < 0 || (uint32_t)slot >= K)
        return;
    const float *xi = x + (size_t)i * xs;
    float g, u = 0.0f;
    row_dot<T, 1, ROW_BATCH>(gate, (uint32_t)slot, xi, xs, 1, &g);
    if (act != PI_ACT_SILU && !(g > 0.0f))
        return; // relu(g) = 0: the zeroed coefficient stands
    row_dot<T, 1, ROW_BATCH>(up, (uint32_t)slot, xi, xs, 1, &u);
    if (lane == 0)
        coef[(size_t)i * K + (uint32_t)slot] = ffn_act(act, g, u);
}

// Thread = output chunk (blockIdx.x, threadIdx.x) of entries [g0, g0 + NT),
// g0 = blockIdx.z * NT, over neurons [blockIdx.y * slice, + slice).
template <int T, int NT>
__global__ void __launch_bounds__(128) k_down(float *part, cuda_mat dt, const float *coef, uint32_t n,
                                              uint32_t slice)
{
    pdl_begin();
    constexpr int E = wt<T>::E;
    const uint32_t c = blockIdx.x * blockDim.x + threadIdx.x, K = dt.rows, dim = dt.cols;
    const uint32_t s = blockIdx.y, g0 = blockIdx.z * NT;
    if (c >= dim / E)
        return;
    const uint32_t j0 = s * slice, j1 = min(K, j0 + slice);
    float acc[NT][E];
#pragma unroll
    for (int i = 0; i < NT; i++)
#pragma unroll
        for (int e = 0; e < E; e++)
            acc[i][e] = 0.0f;
    for (uint32_t j = j0; j < j1; j++) {
        float a[NT];
        bool any = false;
#pragma unroll
        for (int i = 0; i < NT; i++) {
            a[i] = g0 + i < n ? coef[(size_t)(g0 + i) * K + j] : 0.0f;
            any = any || a[i] != 0.0f;
        }
        if (!any)
            continue;   // the same for the whole block: a sparse step skips the row
        float w[E];
        load_chunk<T>(dt, j, c, w);
#pragma unroll
        for (int i = 0; i < NT; i++)
#pragma unroll
            for (int e = 0; e < E; e++)
                acc[i][e] = fmaf(a[i], w[e], acc[i][e]);
    }
#pragma unroll
    for (int i = 0; i < NT; i++) {
        if (g0 + i >= n)
            break;
        float4 *o = reinterpret_cast<float4 *>(part + ((size_t)s * n + g0 + i) * dim + (size_t)c * E);
#pragma unroll
        for (int q = 0; q < E / 4; q++)
            o[q] = make_float4(acc[i][4 * q], acc[i][4 * q + 1], acc[i][4 * q + 2], acc[i][4 * q + 3]);
    }
}

// The hot slot of global neuron id (map: the layer's lookup table, or NULL
// when the hot set is [0, K)); -1 when it is not hot.
__device__ __forceinline__ int32_t hot_slot(const int32_t *map, int32_t id, uint32_t K)
{
    if (map)
        return map[id];
    return (uint32_t)id < K ? id : -1;
}

__device__ __forceinline__ bool mask_bit(const uint32_t *mask, uint32_t words, uint32_t i, int32_t id)
{
    return (__ldg(mask + (size_t)i * words + (uint32_t)id / 32) >> ((uint32_t)id % 32)) & 1u;
}

// Warps stride over the union list (its length is read on the device); a
// row is read once for the NT entries of a group, up only when some entry
// of the group predicted the neuron and (ReLU) has a positive gate.
template <int T, int NT>
__global__ void __launch_bounds__(WARPS * 32) k_gate_up_union(float *coef, cuda_mat gate, cuda_mat up, const float *x,
                                                              uint32_t n, cuda_union u, const int32_t *map, int act)
{
    pdl_begin();
    const uint32_t lane = threadIdx.x & 31u, K = gate.rows, xs = gate.cols;
    const uint32_t count = (uint32_t)*u.count, stride = gridDim.x * WARPS;
    for (uint32_t k = blockIdx.x * WARPS + threadIdx.x / 32; k < count; k += stride) {
        const int32_t id = u.list[k], slot = hot_slot(map, id, K);
        if (slot < 0)
            continue;
        for (uint32_t g0 = 0; g0 < n; g0 += NT) {
            float g[NT], v[NT];
            bool want[NT], any = false;
            row_dot<T, NT, NT == 1 ? ROW_BATCH : 4>(gate, (uint32_t)slot, x + (size_t)g0 * xs, xs, n - g0, g);
#pragma unroll
            for (int i = 0; i < NT; i++) {
                want[i] = g0 + i < n && mask_bit(u.mask, u.words, g0 + i, id) &&
                          (act == PI_ACT_SILU || g[i] > 0.0f);
                any = any || want[i];   // warp-uniform: every lane holds the same sums
            }
            if (any)
                row_dot<T, NT, NT == 1 ? ROW_BATCH : 4>(up, (uint32_t)slot, x + (size_t)g0 * xs, xs, n - g0, v);
#pragma unroll
            for (int i = 0; i < NT; i++)
                if (lane == (uint32_t)i && g0 + i < n)
                    coef[(size_t)(g0 + i) * K + (uint32_t)slot] = want[i] ? ffn_act(act, g[i], v[i]) : 0.0f;
        }
    }
}

// Thread = output chunk (blockIdx.x, threadIdx.x) of entries [g0, g0 + NT);
// slice blockIdx.y of `slices` takes an equal run of the union list.
template <int T, int NT>
__global__ void __launch_bounds__(128) k_down_union(float *part, cuda_mat dt, const float *coef, uint32_t n,
                                                    cuda_union u, const int32_t *map, uint32_t K_coef)
{
    pdl_begin();
    constexpr int E = wt<T>::E;
    const uint32_t c = blockIdx.x * blockDim.x + threadIdx.x, dim = dt.cols, K = dt.rows;
    const uint32_t s = blockIdx.y, slices = gridDim.y, g0 = blockIdx.z * NT;
    if (c >= dim / E)
        return;
    const uint32_t count = (uint32_t)*u.count, per = (count + slices - 1) / slices;
    const uint32_t k0 = min(count, s * per), k1 = min(count, k0 + per);
    float acc[NT][E];
#pragma unroll
    for (int i = 0; i < NT; i++)
#pragma unroll
        for (int e = 0; e < E; e++)
            acc[i][e] = 0.0f;
    // Four neurons at a time: their slots and coefficients, then their rows'
    // chunks fetched together, then added in list order (as one at a time).
    constexpr int B = 4;
    uint32_t k = k0;
    for (; k + B <= k1; k += B) {
        float a[B][NT];
        bool any[B];
        int32_t slot[B];
        chunk ch[B];
#pragma unroll
        for (int b = 0; b < B; b++) {
            slot[b] = hot_slot(map, u.list[k + b], K);
            any[b] = false;
#pragma unroll
            for (int i = 0; i < NT; i++) {
                a[b][i] = slot[b] >= 0 && g0 + i < n ? coef[(size_t)(g0 + i) * K_coef + (uint32_t)slot[b]] : 0.0f;
                any[b] = any[b] || a[b][i] != 0.0f;
            }
            if (any[b])
                ch[b] = wt<T>::fetch(dt, (uint32_t)slot[b], c);
        }
#pragma unroll
        for (int b = 0; b < B; b++) {
            if (!any[b])
                continue;
            float w[E];
            wt<T>::expand(ch[b], w);
#pragma unroll
            for (int i = 0; i < NT; i++)
#pragma unroll
                for (int e = 0; e < E; e++)
                    acc[i][e] = fmaf(a[b][i], w[e], acc[i][e]);
        }
    }
    for (; k < k1; k++) {
        const int32_t slot = hot_slot(map, u.list[k], K);
        if (slot < 0)
            continue;
        float a[NT];
        bool any = false;
#pragma unroll
        for (int i = 0; i < NT; i++) {
            a[i] = g0 + i < n ? coef[(size_t)(g0 + i) * K_coef + (uint32_t)slot] : 0.0f;
            any = any || a[i] != 0.0f;
        }
        if (!any)
            continue;
        float w[E];
        load_chunk<T>(dt, (uint32_t)slot, c, w);
#pragma unroll
        for (int i = 0; i < NT; i++)
#pragma unroll
            for (int e = 0; e < E; e++)
                acc[i][e] = fmaf(a[i], w[e], acc[i][e]);
    }
#pragma unroll
    for (int i = 0; i < NT; i++) {
        if (g0 + i >= n)
            break;
        float4 *o = reinterpret_cast<float4 *>(part + ((size_t)s * n + g0 + i) * dim + (size_t)c * E);
#pragma unroll
        for (int q = 0; q < E / 4; q++)
            o[q] = make_float4(acc[i][4 * q], acc[i][4 * q + 1], acc[i][4 * q + 2], acc[i][4 * q + 3]);
    }
}

// The predicted hot FFN of one entry in one launch (cuda_ffn_union_fused):
// block s of FUSED_SLICES takes an equal run of the union list (at most
// `cap` ids: the list's capacity / FUSED_SLICES, rounded up). Its warps
// compute the run's coefficients into shared memory as k_gate_up_union does
// (the same sums, so the same values); then each thread adds coef x its
// chunks of those neurons' down^T rows, in list order, B neurons' chunks
// fetched before any is used; the slice's sum goes to part[s], and
// k_down_sum adds the slices (a fixed order). The down rows of a slice are read as
// soon as its own coefficients are known, not after every block's, and one
// launch goes. (The two phases do not overlap, so the sums' registers are
// not live during the row dots: 2 blocks an SM.)
constexpr uint32_t FUSED_SLICES = 256;
constexpr uint32_t FUSED_CH = 4;    // output chunks a thread owns: dim <= WARPS * 32 * FUSED_CH * E
static_assert(FUSED_SLICES <= CUDA_DOWN_PART_ROWS, "a slice a row of part");

template <int T>
__global__ void __launch_bounds__(WARPS * 32, 2) k_ffn_union1(float *part, cuda_mat gate, cuda_mat up, cuda_mat dt,
                                                              const float *x, cuda_union u, const int32_t *map,
                                                              int act, uint32_t cap)
{
    constexpr int E = wt<T>::E;
    constexpr int B = 2;
    extern __shared__ float s_coef[];           // cap coefficients, then cap slots
    int32_t *s_slot = reinterpret_cast<int32_t *>(s_coef + cap);
    pdl_begin();
    const uint32_t w = threadIdx.x / 32, lane = threadIdx.x & 31u;
    const uint32_t K = gate.rows, nch = dt.cols / E;
    const uint32_t count = (uint32_t)*u.count, per = min(cap, (count + gridDim.x - 1) / gridDim.x);
    const uint32_t k0 = min(count, blockIdx.x * per), rn = min(count, k0 + per) - k0;
    for (uint32_t j = w; j < rn; j += WARPS) {
        const int32_t id = u.list[k0 + j], slot = hot_slot(map, id, K);
        float c = 0.0f;
        if (slot >= 0) {
            float g, v;
            row_dot<T, 1, ROW_BATCH>(gate, (uint32_t)slot, x, gate.cols, 1, &g);
            if (mask_bit(u.mask, u.words, 0, id) && (act == PI_ACT_SILU || g > 0.0f)) {
                row_dot<T, 1, ROW_BATCH>(up, (uint32_t)slot, x, gate.cols, 1, &v);
                c = ffn_act(act, g, v);
            }
        }
        if (lane == 0) {
            s_coef[j] = c;
            s_slot[j] = slot;
        }
    }
    __syncthreads();
    float acc[FUSED_CH][E];
#pragma unroll
    for (uint32_t q = 0; q < FUSED_CH; q++)
#pragma unroll
        for (int e = 0; e < E; e++)
            acc[q][e] = 0.0f;
    for (uint32_t j0 = 0; j0 < rn; j0 += B) {
        float a[B];
        chunk ch[B][FUSED_CH];
#pragma unroll
        for (int b = 0; b < B; b++) {
            a[b] = j0 + b < rn ? s_coef[j0 + b] : 0.0f;     // the same for the whole block
            if (a[b] == 0.0f)
                continue;
#pragma unroll
            for (uint32_t q = 0; q < FUSED_CH; q++) {
                const uint32_t c = threadIdx.x + q * blockDim.x;
                if (c < nch)
                    ch[b][q] = wt<T>::fetch(dt, (uint32_t)s_slot[j0 + b], c);
            }
        }
#pragma unroll
        for (int b = 0; b < B; b++) {
            if (a[b] == 0.0f)
                continue;
#pragma unroll
            for (uint32_t q = 0; q < FUSED_CH; q++) {
                if (threadIdx.x + q * blockDim.x >= nch)
                    continue;
                float wv[E];
                wt<T>::expand(ch[b][q], wv);
#pragma unroll
                for (int e = 0; e < E; e++)
                    acc[q][e] = fmaf(a[b], wv[e], acc[q][e]);
            }
        }
    }
    float *o = part + (size_t)blockIdx.x * dt.cols;
#pragma unroll
    for (uint32_t q = 0; q < FUSED_CH; q++) {
        const uint32_t c = threadIdx.x + q * blockDim.x;
        if (c >= nch)
            continue;
        float4 *o4 = reinterpret_cast<float4 *>(o + (size_t)c * E);
#pragma unroll
        for (int e = 0; e < E / 4; e++)
            o4[e] = make_float4(acc[q][4 * e], acc[q][4 * e + 1], acc[q][4 * e + 2], acc[q][4 * e + 3]);
    }
}

// The predictor's fc2 and threshold: block = 32 warps = 32 consecutive rows,
// one word of each entry's bit mask; warp w reads row 32 * blockIdx.x + w
// once for NT entries (grid.y: entry groups). hidden is already ReLU'd.
template <int T, int NT>
__global__ void __launch_bounds__(1024) k_pred_rows(uint32_t *mask, cuda_mat fc2, const float *hidden, uint32_t n,
                                                    float threshold)
{
    __shared__ uint32_t hit[NT][32];
    const uint32_t wid = threadIdx.x / 32, lane = threadIdx.x & 31u, row = blockIdx.x * 32 + wid;
    const uint32_t g0 = blockIdx.y * NT, R = fc2.cols, words = (fc2.rows + 31) / 32;
    pdl_begin();
    float acc[NT];
    if (row < fc2.rows) {
        row_dot<T, NT>(fc2, row, hidden + (size_t)g0 * R, R, n - g0, acc);
    } else {
#pragma unroll
        for (int i = 0; i < NT; i++)
            acc[i] = 0.0f;
    }
#pragma unroll
    for (int i = 0; i < NT; i++)   // constant indices: acc stays in registers
        if (lane == (uint32_t)i)
            hit[i][wid] = row < fc2.rows && acc[i] > threshold;
    __syncthreads();
    if (wid == 0) {
#pragma unroll
        for (int i = 0; i < NT; i++) {
            unsigned bits = __ballot_sync(0xffffffffu, hit[i][lane] != 0);
            if (lane == 0 && g0 + i < n)
                mask[(size_t)(g0 + i) * words + blockIdx.x] = bits;
        }
    }
}

// One entry (a decode step): the same sums, with more of each lane's loads
// in flight. Warp w takes RPW consecutive rows of the block's 32 and fetches
// CPL chunks of each (RPW * CPL at once) before using any; a lane adds its
// chunks in k_pred_rows's order (lane, lane + 32, ...) and the same butterfly
// follows, so the mask has k_pred_rows's bits. A Q8_0 row of R = 1024 is 64
// chunks, two a lane: warp per row left a few 16-byte loads in flight per
// lane and 1024-thread blocks that wait for their slowest warp.
template <int T> struct pred_shape {
    static constexpr int CPL = T == PI_Q8N ? 8 : wt<T>::E <= 8 ? 4 : wt<T>::E == 16 ? 2 : 1;
    static constexpr int RPW = T == PI_Q8N ? 2 : 8 / CPL;
};

template <int T>
__global__ void __launch_bounds__(1024 / pred_shape<T>::RPW) k_pred_rows1(uint32_t *mask, cuda_mat fc2,
                                                                     const float *hidden, float threshold)
{
    constexpr int E = wt<T>::E, RPW = pred_shape<T>::RPW, CPL = pred_shape<T>::CPL;
    __shared__ uint32_t hit[32];
    const uint32_t wid = threadIdx.x / 32, lane = threadIdx.x & 31u;
    const uint32_t row0 = blockIdx.x * 32 + wid * RPW, nch = fc2.cols / E;
    pdl_begin();
    float acc[RPW];
#pragma unroll
    for (int r = 0; r < RPW; r++)
        acc[r] = 0.0f;
    for (uint32_t c = lane; c < nch; c += 32 * CPL) {
        chunk k[RPW][CPL];
#pragma unroll
        for (int r = 0; r < RPW; r++)
#pragma unroll
            for (int b = 0; b < CPL; b++)
                if (row0 + r < fc2.rows && c + 32 * b < nch)
                    k[r][b] = wt<T>::fetch(fc2, row0 + r, c + 32 * b);
#pragma unroll
        for (int r = 0; r < RPW; r++)
#pragma unroll
            for (int b = 0; b < CPL; b++)
                if (row0 + r < fc2.rows && c + 32 * b < nch)
                    dot_chunk<T, 1>(k[r][b], hidden, 0, c + 32 * b, 1, &acc[r]);
    }
#pragma unroll
    for (int r = 0; r < RPW; r++) {
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], o);
        if (lane == 0)
            hit[wid * RPW + r] = row0 + r < fc2.rows && acc[r] > threshold;
    }
    __syncthreads();
    if (wid == 0) {
        unsigned bits = __ballot_sync(0xffffffffu, hit[lane] != 0);
        if (lane == 0)
            mask[blockIdx.x] = bits;
    }
}

// out[t] = the sum of part[0..slices)[t], t < len = n * dim; with add,
// out[t] += it. A block takes SUM_COLS columns; its warp g sums the slices of
// group g in slice order (a group: SUM_PER consecutive slices, all loads of
// a thread in flight at once), then the first warp adds the groups in order:
// a fixed order, so the same sum every launch. (One thread a column over all
// slices left 256 dependent-latency loads per thread on 20 blocks.)
constexpr uint32_t SUM_COLS = 32, SUM_GROUPS = 8, SUM_PER = 32;
static_assert(CUDA_DOWN_PART_ROWS <= SUM_GROUPS * SUM_PER, "every slice in a group");

__global__ void __launch_bounds__(SUM_COLS * SUM_GROUPS) k_down_sum(float *out, const float *part, size_t len,
                                                                     uint32_t slices, int add)
{
    __shared__ float grp[SUM_GROUPS][SUM_COLS];
    const uint32_t c = threadIdx.x % SUM_COLS, g = threadIdx.x / SUM_COLS;
    const size_t t = (size_t)blockIdx.x * SUM_COLS + c;
    pdl_begin();
    float sum = 0.0f;
    if (t < len) {
        const uint32_t s0 = g * SUM_PER, s1 = min(slices, s0 + SUM_PER);
        float v[SUM_PER];
#pragma unroll
        for (uint32_t k = 0; k < SUM_PER; k++)
            v[k] = s0 + k < s1 ? part[(size_t)(s0 + k) * len + t] : 0.0f;
#pragma unroll
        for (uint32_t k = 0; k < SUM_PER; k++)
            sum += v[k];
    }
    grp[g][c] = sum;
    __syncthreads();
    if (g != 0 || t >= len)
        return;
#pragma unroll
    for (uint32_t k = 1; k < SUM_GROUPS; k++)
        sum += grp[k][c];
    out[t] = add ? out[t] + sum : sum;
}

template <int T>
__global__ void k_embed(float *x, cuda_mat table, const gpu_entry *e)
{
    pdl_begin();
    constexpr int E = wt<T>::E;
    const uint32_t dim = table.cols, row = (uint32_t)e[blockIdx.x].token;
    float *xr = x + (size_t)blockIdx.x * dim;
    for (uint32_t c = threadIdx.x; c < dim / E; c += blockDim.x) {
        float w[E];
        load_chunk<T>(table, row, c, w);
#pragma unroll
        for (int k = 0; k < E; k++)
            xr[(size_t)c * E + k] = w[k];
    }
}

// ---------------------------------------------------------------- launchers

unsigned div_up(size_t a, size_t b)
{
    return (unsigned)((a + b - 1) / b);
}

cudaError_t launch_down_sum(cudaStream_t s, float *out, const float *part, size_t len, uint32_t slices,
                                   int add)
{
    if (slices > SUM_GROUPS * SUM_PER)
        return cudaErrorInvalidValue;
    PDL_LAUNCH(k_down_sum, div_up(len, SUM_COLS), SUM_COLS * SUM_GROUPS, 0, s, out, part, len, slices, add);
    return cudaGetLastError();
}

// Registers hold sums for NT entries: the smallest of 1, 2, 4, 8 that covers
// n, else groups of 8.
// Warps a row of a one-entry product is split over: enough that the rows
// fill the machine about four times over (132 SMs x 32 resident warps on the
// H200; wo's 5120 rows -> 4, the predictor's 1024 -> 8), while each part
// keeps at least 64 chunks (2 a lane). On the H200 (session 8): wo 19.5 ->
// 18.3 us, fc1 5.6 -> 4.8 us; PI_CUDA_MV_SPLIT=0 turns it off.
int mv_split(uint32_t rows, uint32_t chunks)
{
    const int on = cuda_switch("PI_CUDA_MV_SPLIT", 1);
    constexpr uint32_t WANT = 4 * 132 * 32;
    int split = 1;
    while (on && split < 8 && (uint64_t)rows * split < WANT && chunks / (2u * split) >= 64)
        split *= 2;
    return split;
}

template <int T> constexpr int is_kquant()
{
    return T == PI_TYPE_Q4_K || T == PI_TYPE_Q5_K || T == PI_TYPE_Q6_K;
}

// rope: NULL for a plain product; else the Q, K, V set's rope epilogue (the
// caller has checked that the one-warp-a-row kernel takes this step).
int q8_narrow() { return cuda_switch("PI_CUDA_Q8_NARROW", 1); }

template <int T>
cudaError_t launch_matvec(cudaStream_t s, const cuda_mv_set &set, const float *x, uint32_t xs, uint32_t n, int mode,
                          const cuda_qkv_rope *rope = nullptr)
{
    if constexpr (T == PI_TYPE_Q8_0) {
        if (n == 1 && !rope && q8_narrow())
            return launch_matvec<PI_Q8N>(s, set, x, xs, n, mode);
    }
    uint32_t rows = 0;
    for (int k = 0; k < set.count; k++)
        rows += set.w[k].rows;
    if (!rope && cuda_mv_batch_use(n, is_kquant<T>()))
        return mvb::launch_matvec_batch<wt<T>>(s, set, x, xs, n, mode);
    dim3 grid(div_up(rows, WARPS)), block(WARPS * 32);
    cuda_qkv_rope rp;
    memset(&rp, 0, sizeof rp);
    if (rope)
        rp = *rope;
    if (n == 1 && !rope) {
        const int split = mv_split(rows, set.w[0].cols / wt<T>::E);
        if (split > 1) {
            dim3 sgrid(div_up((size_t)rows * split, WARPS));
            if (split == 2)
                PDL_LAUNCH((k_matvec<T, 1, false, 2>), sgrid, block, 0, s, set, x, xs, n, mode, rp);
            else if (split == 4)
                PDL_LAUNCH((k_matvec<T, 1, false, 4>), sgrid, block, 0, s, set, x, xs, n, mode, rp);
            else
                PDL_LAUNCH((k_matvec<T, 1, false, 8>), sgrid, block, 0, s, set, x, xs, n, mode, rp);
            return cudaGetLastError();
        }
    }
#define PI_MV_LAUNCH(NT)                                                                        \
    do {                                                                                        \
        if (rope)                                                                               \
            PDL_LAUNCH((k_matvec<T, NT, true>), grid, block, 0, s, set, x, xs, n, mode, rp);    \
        else                                                                                    \
            PDL_LAUNCH((k_matvec<T, NT, false>), grid, block, 0, s, set, x, xs, n, mode, rp);   \
    } while (0)
    if (n == 1)
        PI_MV_LAUNCH(1);
    else if (n == 2)
        PI_MV_LAUNCH(2);
    else if (n <= 4)
        PI_MV_LAUNCH(4);
    else
        PI_MV_LAUNCH(GROUP);
#undef PI_MV_LAUNCH
    return cudaGetLastError();
}

template <int T>
cudaError_t launch_gate_up(cudaStream_t s, float *coef, const cuda_mat &g, const cuda_mat &u, const float *x,
                           uint32_t n, int act, int skip)
{
    dim3 grid(div_up(g.rows, WARPS)), block(WARPS * 32);
    if (n == 1)
        PDL_LAUNCH(k_gate_up<T, 1>, grid, block, 0, s, coef, g, u, x, n, act, skip);
    else if (n == 2)
        PDL_LAUNCH(k_gate_up<T, 2>, grid, block, 0, s, coef, g, u, x, n, act, skip);
    else if (n <= 4)
        PDL_LAUNCH(k_gate_up<T, 4>, grid, block, 0, s, coef, g, u, x, n, act, skip);
    else
        PDL_LAUNCH(k_gate_up<T, GROUP>, grid, block, 0, s, coef, g, u, x, n, act, skip);
    return cudaGetLastError();
}

template <int T>
cudaError_t launch_down(cudaStream_t s, float *part, const cuda_mat &dt, const float *coef, uint32_t n,
                        uint32_t slice, uint32_t slices)
{
    constexpr int E = wt<T>::E;
    uint32_t chunks = dt.cols / E;
    unsigned threads = chunks >= 128 ? 128 : (unsigned)((chunks + 31) / 32 * 32);
    dim3 block(threads);
    if (n == 1)
        PDL_LAUNCH(k_down<T, 1>, dim3(div_up(chunks, threads), slices, 1), block, 0, s, part, dt, coef, n, slice);
    else if (n == 2)
        PDL_LAUNCH(k_down<T, 2>, dim3(div_up(chunks, threads), slices, 1), block, 0, s, part, dt, coef, n, slice);
    else if (n <= 4)
        PDL_LAUNCH(k_down<T, 4>, dim3(div_up(chunks, threads), slices, 1), block, 0, s, part, dt, coef, n, slice);
    else
        PDL_LAUNCH(k_down<T, GROUP>, dim3(div_up(chunks, threads), slices, div_up(n, GROUP)), block, 0, s, 
            part, dt, coef, n, slice);
    return cudaGetLastError();
}

template <int T>
cudaError_t launch_gate_up_union(cudaStream_t s, float *coef, const cuda_mat &g, const cuda_mat &u, const float *x,
                                 uint32_t n, const cuda_union &un, const int32_t *map, int act)
{
    // Enough warps for the longest union (every hot neuron), capped: they stride.
    dim3 grid(div_up(g.rows < 8192 ? g.rows : 8192, WARPS)), block(WARPS * 32);
    if (n == 1)
        PDL_LAUNCH(k_gate_up_union<T, 1>, grid, block, 0, s, coef, g, u, x, n, un, map, act);
    else if (n == 2)
        PDL_LAUNCH(k_gate_up_union<T, 2>, grid, block, 0, s, coef, g, u, x, n, un, map, act);
    else if (n <= 4)
        PDL_LAUNCH(k_gate_up_union<T, 4>, grid, block, 0, s, coef, g, u, x, n, un, map, act);
    else
        PDL_LAUNCH(k_gate_up_union<T, GROUP>, grid, block, 0, s, coef, g, u, x, n, un, map, act);
    return cudaGetLastError();
}

template <int T>
cudaError_t launch_down_union(cudaStream_t s, float *part, const cuda_mat &dt, const float *coef, uint32_t n,
                              const cuda_union &un, const int32_t *map, uint32_t slices)
{
    constexpr int E = wt<T>::E;
    uint32_t chunks = dt.cols / E;
    unsigned threads = chunks >= 128 ? 128 : (unsigned)((chunks + 31) / 32 * 32);
    dim3 grid(div_up(chunks, threads), slices, n <= 4 ? 1 : div_up(n, GROUP)), block(threads);
    if (n == 1)
        PDL_LAUNCH(k_down_union<T, 1>, grid, block, 0, s, part, dt, coef, n, un, map, dt.rows);
    else if (n == 2)
        PDL_LAUNCH(k_down_union<T, 2>, grid, block, 0, s, part, dt, coef, n, un, map, dt.rows);
    else if (n <= 4)
        PDL_LAUNCH(k_down_union<T, 4>, grid, block, 0, s, part, dt, coef, n, un, map, dt.rows);
    else
        PDL_LAUNCH(k_down_union<T, GROUP>, grid, block, 0, s, part, dt, coef, n, un, map, dt.rows);
    return cudaGetLastError();
}

template <int T>
cudaError_t launch_pred_rows(cudaStream_t s, uint32_t *mask, const cuda_mat &fc2, const float *hidden, uint32_t n,
                             float thr)
{
    if constexpr (T == PI_TYPE_Q8_0) {
        if (q8_narrow())
            return launch_pred_rows<PI_Q8N>(s, mask, fc2, hidden, n, thr);
    }
    unsigned gx = div_up(fc2.rows, 32);
    if (n == 1 && cuda_switch("PI_CUDA_PRED_ROWS", 1))
        PDL_LAUNCH(k_pred_rows1<T>, dim3(gx), 1024 / pred_shape<T>::RPW, 0, s, mask, fc2, hidden, thr);
    else if (n == 1)
        PDL_LAUNCH(k_pred_rows<T, 1>, dim3(gx, 1), 1024, 0, s, mask, fc2, hidden, n, thr);
    else if (n == 2)
        PDL_LAUNCH(k_pred_rows<T, 2>, dim3(gx, 1), 1024, 0, s, mask, fc2, hidden, n, thr);
    else if (n <= 4)
        PDL_LAUNCH(k_pred_rows<T, 4>, dim3(gx, 1), 1024, 0, s, mask, fc2, hidden, n, thr);
    else
        PDL_LAUNCH(k_pred_rows<T, GROUP>, dim3(gx, div_up(n, GROUP)), 1024, 0, s, mask, fc2, hidden, n, thr);
    return cudaGetLastError();
}

// f(std::integral_constant<int, t>()) for a matrix type t (cuda_mat_type_ok):
// one switch for every launcher that takes any of them.
template <class F> cudaError_t for_mat_type(int t, F f)
{
    switch (t) {
    case PI_TYPE_F32: return f(std::integral_constant<int, PI_TYPE_F32>());
    case PI_TYPE_F16: return f(std::integral_constant<int, PI_TYPE_F16>());
    case PI_TYPE_BF16: return f(std::integral_constant<int, PI_TYPE_BF16>());
    case PI_TYPE_Q8_0: return f(std::integral_constant<int, PI_TYPE_Q8_0>());
    case PI_TYPE_Q4_0: return f(std::integral_constant<int, PI_TYPE_Q4_0>());
    case PI_TYPE_Q4_K: return f(std::integral_constant<int, PI_TYPE_Q4_K>());
    case PI_TYPE_Q5_K: return f(std::integral_constant<int, PI_TYPE_Q5_K>());
    case PI_TYPE_Q6_K: return f(std::integral_constant<int, PI_TYPE_Q6_K>());
    default: return cudaErrorInvalidValue;
    }
}

// ---------------------------------------------------------------- host staging
// The file's blocks (gguf/quant.c's layouts) into the device layout
// (cuda_matvec.cuh). Each K-quant element's integer quant is read as quant.c's
// dequantizers read it, then packed: byte t of a 32-element chunk holds
// elements t and t + 16.

// The 4-bit quant of element e (0..255) of a Q4_K/Q5_K super-block's qs: 4
// groups of 64, low nibbles for the first 32 of a group, high for the next.
uint32_t kq_nibble(const unsigned char *qs, uint32_t e)
{
    const uint32_t s = e / 32, l = e % 32;
    return (qs[32 * (s / 2) + l] >> (4 * (s % 2))) & 15u;
}

// The 6-bit quant (0..63, before - 32) of element e of a Q6_K super-block b:
// half h = e / 128; element 32k + l of it has its low 4 bits in the low (k <
// 2) or high nibble of ql[64h + l + 32 (k % 2)], its top 2 at bit 2k of
// qh[32h + l].
uint32_t q6_quant(const unsigned char *b, uint32_t e)
{
    const uint32_t h = e / 128, k = (e % 128) / 32, l = e % 32;
    const uint32_t ql = b[64 * h + l + 32 * (k % 2)], qh = b[128 + 32 * h + l];
    return ((k < 2 ? ql : ql >> 4) & 15u) | (((qh >> (2 * k)) & 3u) << 4);
}

// Packs 32 quants (their low 4 bits) into a chunk's 16 bytes.
void pack_nibbles(const uint32_t *v, unsigned char *q)
{
    for (uint32_t t = 0; t < 16; t++)
        q[t] = (unsigned char)((v[t] & 15u) | ((v[t + 16] & 15u) << 4));
}

// Bits [shift, shift + width) of v[t] at bits width * t of the little-endian
// bytes out (32 values).
void pack_bits(const uint32_t *v, uint32_t shift, uint32_t width, unsigned char *out)
{
    memset(out, 0, 4 * width);
    for (uint32_t t = 0; t < 32; t++) {
        const uint32_t bits = (v[t] >> shift) & ((1u << width) - 1u), at = width * t;
        out[at / 8] |= (unsigned char)(bits << (at % 8));
    }
}

// A K-quant row of cols elements: super-block by super-block, its 8 chunks'
// nibbles (and Q5_K's fifth or Q6_K's top bits after the row's nibbles), and
// its scale part as the file has it.
void stage_kq_row(int t, const unsigned char *src, uint32_t cols, unsigned char *q, unsigned char *s)
{
    const size_t bb = t == PI_TYPE_Q4_K ? 144 : t == PI_TYPE_Q5_K ? 176 : 210;
    const uint32_t width = t == PI_TYPE_Q5_K ? 1 : t == PI_TYPE_Q6_K ? 2 : 0;
    unsigned char *hi = q + cols / 2;
    for (uint32_t k = 0; k < cols / 256; k++) {
        const unsigned char *b = src + k * bb;
        for (uint32_t c = 0; c < 8; c++) {
            uint32_t v[32];
            for (uint32_t e = 0; e < 32; e++) {
                const uint32_t i = 32 * c + e;
                if (t == PI_TYPE_Q6_K)
                    v[e] = q6_quant(b, i);
                else if (t == PI_TYPE_Q5_K)     // qh[32] at 16, qs at 48; bit s of qh[l]: sub-block s
                    v[e] = kq_nibble(b + 48, i) | (((b[16 + i % 32] >> (i / 32)) & 1u) << 4);
                else                            // qs at 16
                    v[e] = kq_nibble(b + 16, i);
            }
            const uint32_t chunk_no = 8 * k + c;
            pack_nibbles(v, q + 16 * (size_t)chunk_no);
            if (width)
                pack_bits(v, 4, width, hi + (size_t)chunk_no * 4 * width);
        }
        if (t == PI_TYPE_Q6_K)
            memcpy(s + (size_t)k * 18, b + 192, 18);    // scales[16], then fp16 d
        else
            memcpy(s + (size_t)k * 16, b, 16);          // fp16 d, dmin, scales[12]
    }
}

} // namespace

int cuda_mat_type_ok(int t)
{
    switch (t) {
    case PI_TYPE_F32: case PI_TYPE_F16: case PI_TYPE_BF16: case PI_TYPE_Q8_0: case PI_TYPE_Q4_0:
    case PI_TYPE_Q4_K: case PI_TYPE_Q5_K: case PI_TYPE_Q6_K:
        return 1;
    default:
        return 0;
    }
}

uint32_t cuda_mat_align(int t)
{
    switch (t) {
    case PI_TYPE_F32: return 4;
    case PI_TYPE_F16: case PI_TYPE_BF16: return 8;
    case PI_TYPE_Q4_K: case PI_TYPE_Q5_K: case PI_TYPE_Q6_K: return 256;
    default: return 32;
    }
}

size_t cuda_mat_quant_bytes(int t, uint32_t cols)
{
    switch (t) {
    case PI_TYPE_F32: return (size_t)cols * 4;
    case PI_TYPE_F16: case PI_TYPE_BF16: return (size_t)cols * 2;
    case PI_TYPE_Q8_0: return cols;
    case PI_TYPE_Q5_K: return (size_t)cols / 2 + cols / 8;
    case PI_TYPE_Q6_K: return (size_t)cols / 2 + cols / 4;
    default: return cols / 2;       // Q4_0, Q4_K
    }
}

void cuda_mat_stage_row(int t, const void *src, uint32_t cols, unsigned char *q, unsigned char *s)
{
    const unsigned char *b = (const unsigned char *)src;
    if (t == PI_TYPE_Q4_K || t == PI_TYPE_Q5_K || t == PI_TYPE_Q6_K) {
        stage_kq_row(t, b, cols, q, s);
    } else if (t == PI_TYPE_Q8_0 || t == PI_TYPE_Q4_0) {   // blocks of 32: fp16 d, then the quants
        const size_t qb = t == PI_TYPE_Q8_0 ? 32 : 16;
        for (size_t k = 0; k < cols / 32; k++) {
            memcpy(q + k * qb, b + k * (qb + 2) + 2, qb);
            memcpy(s + k * 2, b + k * (qb + 2), 2);
        }
    } else {
        memcpy(q, b, cuda_mat_quant_bytes(t, cols));
    }
}

int cuda_down_type_ok(int t)
{
    return t == PI_TYPE_F32 || t == PI_TYPE_F16 || t == PI_TYPE_BF16;
}

cudaError_t cuda_matvec_set(cudaStream_t s, const cuda_mv_set *set, const float *x, uint32_t x_stride, uint32_t n,
                            int mode)
{
    if (set->count < 1 || set->count > CUDA_MV_MAX)
        return cudaErrorInvalidValue;
    if (n == 0)
        return cudaSuccess;
    uint32_t rows = 0;
    for (int k = 0; k < set->count; k++) {
        if (set->w[k].type != set->w[0].type || set->w[k].cols != set->w[0].cols)
            return cudaErrorInvalidValue;
        rows += set->w[k].rows;
    }
    if (rows == 0)
        return cudaSuccess;
    return for_mat_type(set->w[0].type, [&](auto t) {
        return launch_matvec<decltype(t)::value>(s, *set, x, x_stride, n, mode);
    });
}

int cuda_qkv_rope_fusable(uint32_t n, int type, uint32_t dim, uint32_t kv_dim, uint32_t head_dim)
{
    const int kq = type == PI_TYPE_Q4_K || type == PI_TYPE_Q5_K || type == PI_TYPE_Q6_K;
    return cuda_switch("PI_CUDA_QKV_ROPE", 1) && n >= 1 && n <= CUDA_MAX_BATCH && !cuda_mv_batch_use(n, kq) &&
           head_dim % 2 == 0 && head_dim > 0 && dim % head_dim == 0 && kv_dim % head_dim == 0;
}

cudaError_t cuda_matvec_qkv_rope(cudaStream_t s, const cuda_mv_set *set, const float *x, uint32_t x_stride,
                                 uint32_t n, const cuda_qkv_rope *rope)
{
    if (set->count != 3 || !rope || !rope->e || !rope->rope_inv || !rope->k_cache || !rope->v_cache)
        return cudaErrorInvalidValue;
    if (n == 0)
        return cudaSuccess;
    for (int k = 0; k < 3; k++)
        if (set->w[k].type != set->w[0].type || set->w[k].cols != set->w[0].cols)
            return cudaErrorInvalidValue;
    if (set->w[1].rows != set->w[2].rows ||
        !cuda_qkv_rope_fusable(n, set->w[0].type, set->w[0].rows, set->w[1].rows, rope->head_dim))
        return cudaErrorNotSupported;
    return for_mat_type(set->w[0].type, [&](auto t) {
        return launch_matvec<decltype(t)::value>(s, *set, x, x_stride, n, 0, rope);
    });
}

static cudaError_t matvec_one(cudaStream_t s, float *y, uint32_t y_stride, const cuda_mat *w, const float *x,
                              uint32_t x_stride, uint32_t n, int mode)
{
    cuda_mv_set set;
    memset(&set, 0, sizeof set);
    set.count = 1;
    set.w[0] = *w;
    set.y[0] = y;
    set.ys[0] = y_stride;
    return cuda_matvec_set(s, &set, x, x_stride, n, mode);
}

cudaError_t cuda_matvec(cudaStream_t s, float *y, uint32_t y_stride, const cuda_mat *w, const float *x,
                        uint32_t x_stride, uint32_t n)
{
    return matvec_one(s, y, y_stride, w, x, x_stride, n, CUDA_MV_STORE);
}

cudaError_t cuda_matvec_add(cudaStream_t s, float *y, uint32_t y_stride, const cuda_mat *w, const float *x,
                            uint32_t x_stride, uint32_t n)
{
    return matvec_one(s, y, y_stride, w, x, x_stride, n, CUDA_MV_ADD);
}

cudaError_t cuda_embed_rows(cudaStream_t s, float *x, const cuda_mat *table, const gpu_entry *e, uint32_t n)
{
    if (n == 0)
        return cudaSuccess;
    return for_mat_type(table->type, [&](auto t) {
        PDL_LAUNCH(k_embed<decltype(t)::value>, n, 128, 0, s, x, *table, e);
        return cudaGetLastError();
    });
}

cudaError_t cuda_ffn_gate_up(cudaStream_t s, float *coef, const cuda_mat *gate, const cuda_mat *up,
                             const float *x, uint32_t n, int act, int skip_dead)
{
    if (n == 0 || gate->rows == 0)
        return cudaSuccess;
    if (gate->type != up->type || gate->rows != up->rows || gate->cols != up->cols)
        return cudaErrorInvalidValue;
    int skip = skip_dead && act != PI_ACT_SILU;
    return for_mat_type(gate->type, [&](auto t) {
        return launch_gate_up<decltype(t)::value>(s, coef, *gate, *up, x, n, act, skip);
    });
}

cudaError_t cuda_ffn_gate_up_active(cudaStream_t s, float *coef, const cuda_mat *gate, const cuda_mat *up,
                                    const float *x, uint32_t n, const cuda_active *lists,
                                    uint32_t max_count, const int32_t *map, uint32_t n_ff, int act)
{
    if (n == 0 || max_count == 0 || gate->rows == 0)
        return cudaSuccess;
    if (n > CUDA_MAX_BATCH || gate->type != up->type || gate->rows != up->rows || gate->cols != up->cols)
        return cudaErrorInvalidValue;
    dim3 grid(div_up(max_count, WARPS), n), block(WARPS * 32);
    return for_mat_type(gate->type, [&](auto t) {
        PDL_LAUNCH(k_gate_up_active<decltype(t)::value>, grid, block, 0, s, coef, *gate, *up, x, *lists, map, n_ff,
                   act);
        return cudaGetLastError();
    });
}

cudaError_t cuda_ffn_down(cudaStream_t s, float *out, float *part, const cuda_mat *down_t, const float *coef,
                          uint32_t n, int add)
{
    if (n == 0)
        return cudaSuccess;
    uint32_t K = down_t->rows, dim = down_t->cols;
    size_t len = (size_t)n * dim;
    if (K == 0)
        return add ? cudaSuccess : cudaMemsetAsync(out, 0, len * sizeof(float), s);
    if (n > CUDA_MAX_BATCH)
        return cudaErrorInvalidValue;
    // Slices of >= 32 neurons, as many as the scratch holds for n entries
    // (enough threads to keep loads in flight when n is small).
    uint32_t slices = (K + 31) / 32, cap = CUDA_DOWN_PART_ROWS / n;
    if (slices > cap)
        slices = cap;
    uint32_t slice = (K + slices - 1) / slices;
    slices = (K + slice - 1) / slice;
    cudaError_t e;
    switch (down_t->type) {
    case PI_TYPE_F32: e = launch_down<PI_TYPE_F32>(s, part, *down_t, coef, n, slice, slices); break;
    case PI_TYPE_F16: e = launch_down<PI_TYPE_F16>(s, part, *down_t, coef, n, slice, slices); break;
    case PI_TYPE_BF16: e = launch_down<PI_TYPE_BF16>(s, part, *down_t, coef, n, slice, slices); break;
    default: return cudaErrorInvalidValue;
    }
    if (e != cudaSuccess)
        return e;
    return launch_down_sum(s, out, part, len, slices, add);
}

cudaError_t cuda_ffn_gate_up_union(cudaStream_t s, float *coef, const cuda_mat *gate, const cuda_mat *up,
                                   const float *x, uint32_t n, const cuda_union *u, const int32_t *map, int act)
{
    if (n == 0 || gate->rows == 0)
        return cudaSuccess;
    if (gate->type != up->type || gate->rows != up->rows || gate->cols != up->cols)
        return cudaErrorInvalidValue;
    return for_mat_type(gate->type, [&](auto t) {
        return launch_gate_up_union<decltype(t)::value>(s, coef, *gate, *up, x, n, *u, map, act);
    });
}

cudaError_t cuda_ffn_down_union(cudaStream_t s, float *out, float *part, const cuda_mat *down_t, const float *coef,
                                uint32_t n, const cuda_union *u, const int32_t *map, int add)
{
    if (n == 0)
        return cudaSuccess;
    uint32_t dim = down_t->cols;
    size_t len = (size_t)n * dim;
    if (down_t->rows == 0)
        return add ? cudaSuccess : cudaMemsetAsync(out, 0, len * sizeof(float), s);
    if (n > CUDA_MAX_BATCH)
        return cudaErrorInvalidValue;
    // A fixed number of slices (the union's length is only known on the
    // device): as many as the scratch holds for n entries, at most 64.
    uint32_t slices = CUDA_DOWN_PART_ROWS / n;
    if (slices > 64)
        slices = 64;
    cudaError_t e;
    switch (down_t->type) {
    case PI_TYPE_F32: e = launch_down_union<PI_TYPE_F32>(s, part, *down_t, coef, n, *u, map, slices); break;
    case PI_TYPE_F16: e = launch_down_union<PI_TYPE_F16>(s, part, *down_t, coef, n, *u, map, slices); break;
    case PI_TYPE_BF16: e = launch_down_union<PI_TYPE_BF16>(s, part, *down_t, coef, n, *u, map, slices); break;
    default: return cudaErrorInvalidValue;
    }
    if (e != cudaSuccess)
        return e;
    return launch_down_sum(s, out, part, len, slices, add);
}

// Types and shapes k_ffn_union1 takes (the switch aside).
static int ffn_union1_ok(const cuda_mat *gate, const cuda_mat *up, const cuda_mat *down_t)
{
    const int t = gate->type;
    if (up->type != t || down_t->type != t || (t != PI_TYPE_F32 && t != PI_TYPE_F16 && t != PI_TYPE_BF16))
        return 0;
    const uint32_t E = t == PI_TYPE_F32 ? 4 : 8;
    return gate->rows == up->rows && gate->rows == down_t->rows && gate->cols == up->cols &&
           gate->cols == down_t->cols && down_t->cols % E == 0 && down_t->cols / E <= WARPS * 32 * FUSED_CH;
}

int cuda_ffn_union_fusable(uint32_t n, const cuda_mat *gate, const cuda_mat *up, const cuda_mat *down_t)
{
    return n == 1 && cuda_switch("PI_CUDA_FFN_FUSED", 1) && ffn_union1_ok(gate, up, down_t);
}

cudaError_t cuda_ffn_union_fused(cudaStream_t s, float *out, float *part, const cuda_mat *gate, const cuda_mat *up,
                                 const cuda_mat *down_t, const float *x, const cuda_union *u, const int32_t *map,
                                 int act, int add)
{
    if (!ffn_union1_ok(gate, up, down_t))
        return cudaErrorNotSupported;
    const uint32_t dim = down_t->cols;
    if (down_t->rows == 0)
        return add ? cudaSuccess : cudaMemsetAsync(out, 0, dim * sizeof(float), s);
    const dim3 grid(FUSED_SLICES), block(WARPS * 32);
    const uint32_t cap = div_up((size_t)u->words * 32, FUSED_SLICES);    // the list holds at most words * 32 ids
    const size_t smem = (size_t)cap * (sizeof(float) + sizeof(int32_t));
    switch (gate->type) {
    case PI_TYPE_F32:
        PDL_LAUNCH(k_ffn_union1<PI_TYPE_F32>, grid, block, smem, s, part, *gate, *up, *down_t, x, *u, map, act, cap);
        break;
    case PI_TYPE_F16:
        PDL_LAUNCH(k_ffn_union1<PI_TYPE_F16>, grid, block, smem, s, part, *gate, *up, *down_t, x, *u, map, act, cap);
        break;
    case PI_TYPE_BF16:
        PDL_LAUNCH(k_ffn_union1<PI_TYPE_BF16>, grid, block, smem, s, part, *gate, *up, *down_t, x, *u, map, act, cap);
        break;
    default: return cudaErrorNotSupported;
    }
    cudaError_t e;
    if ((e = cudaGetLastError()) != cudaSuccess)
        return e;
    return launch_down_sum(s, out, part, (size_t)dim, FUSED_SLICES, add);
}

cudaError_t cuda_pred_rows(cudaStream_t s, uint32_t *mask, const cuda_mat *fc2, const float *hidden, uint32_t n,
                           float threshold)
{
    if (n == 0 || fc2->rows == 0)
        return cudaSuccess;
    if (n > CUDA_MAX_BATCH)
        return cudaErrorInvalidValue;
    return for_mat_type(fc2->type, [&](auto t) {
        return launch_pred_rows<decltype(t)::value>(s, mask, *fc2, hidden, n, threshold);
    });
}
