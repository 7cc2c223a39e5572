// The matrix product for a step of several entries (cuda_matvec_set with
// n >= 2) as a tiled product: weights are read from memory once per step,
// not once per group of 8 entries. Used from MVB_MIN entries (MVB_MIN_KQUANT
// for the K-quants); PI_CUDA_MV_BATCH=1 uses it from 2, =0 never (the
// one-warp-per-row k_matvec then takes every step).
//
// A block owns MVB_ROWS rows of the set's concatenated matrices and all
// (up to MVB_ENTRIES) entries of the step, and walks the row in slices of
// MVB_COLS columns. For each slice it expands the rows' 16-byte chunks
// (wt<T>::fetch/expand, the same values as every other product) into a
// shared fp32 tile ws[row][col] and stages the entries' x into xs[col][entry];
// each thread then accumulates a 4-row x 4-entry register tile from them.
// Fewer than 64 entries leave threads over: the columns of a slice are then
// split between MVB_THREADS / 16 / g groups of threads (g = entry groups of
// 4), whose partial tiles are summed in a fixed order at the end, so the
// result does not depend on scheduling and differs from the host's by
// summation order only. Chunks of the next slices are fetched into registers
// before the current one is used (depth(): 1 to 4 slices ahead, deeper for
// the types with fewer bytes a slice), so 8-16 KiB of weights a block are in
// flight. Registers (ptxas -v, sm_90): 80 (F32, F16) to 105 (Q6_K), no spill:
// 2-3 blocks an SM; 34 KiB of shared memory a block.
//
// The kernel is a template over the chunk reader W (wt<T> of
// cuda_matvec.cu, which instantiates it): this header is included there.
#ifndef PI_CUDA_MATVEC_BATCH_CUH
#define PI_CUDA_MATVEC_BATCH_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "cuda_matvec.cuh"
#include "cuda_pdl.cuh"

#define MVB_ROWS 64         // rows a block owns
#define MVB_COLS 64         // columns of a slice
#define MVB_ENTRIES 64      // entries a block owns (blockIdx.y takes the next 64)
#define MVB_THREADS 256
#define MVB_PAD 4           // floats after each tile row: 16-byte aligned, spreads banks

#define MVB_MIN 8           // from this many entries (F32, F16, BF16, Q8_0, Q4_0)
#define MVB_MIN_KQUANT 2    // Q4_K, Q5_K, Q6_K

// Whether a product of n entries takes the tiled kernel (PI_CUDA_MV_BATCH is
// read at every launch, so a bench can switch it).
int cuda_mv_batch_use(uint32_t n, int kquant);
// Entry groups of 4 the kernel's threads split into for n entries of a block:
// the power of two in 1..16 that covers min(n, MVB_ENTRIES) / 4.
uint32_t cuda_mv_batch_groups(uint32_t n);

namespace mvb {

// Slices whose chunks are in flight at once: deeper for the types with few
// chunks a slice (Q8_0 and the 32-element chunks: one chunk a thread or less).
template <int E> __host__ __device__ constexpr int depth()
{
    return MVB_ROWS * (MVB_COLS / E) >= 2 * MVB_THREADS ? 1 + (E == 8) : 4;
}

// Row g of the set's concatenated rows: its matrix (count when past the end)
// and the row within it.
// One output of a product, as mode says (CUDA_MV_STORE, _RELU or _ADD).
__device__ __forceinline__ void mv_out(float *y, float v, int mode)
{
    *y = mode == CUDA_MV_RELU ? fmaxf(v, 0.0f) : mode == CUDA_MV_ADD ? *y + v : v;
}

__device__ __forceinline__ int set_row(const cuda_mv_set &set, uint32_t &g)
{
    int k = 0;
    while (k < set.count && g >= set.w[k].rows)
        g -= set.w[k++].rows;
    return k;
}

// Chunk c (0.. of this thread's CPT) of slice s: tile row q / CPR, the row's
// chunk s * CPR + q % CPR.
template <class W, class C, int CPT>
__device__ __forceinline__ void fetch_slice(const cuda_mv_set &set, uint32_t row0, uint32_t s, uint32_t nch, C *pf)
{
    constexpr uint32_t CPR = MVB_COLS / W::E, CH = MVB_ROWS * CPR;
#pragma unroll
    for (int j = 0; j < CPT; j++) {
        const uint32_t q = threadIdx.x + (uint32_t)j * MVB_THREADS, c = s * CPR + q % CPR;
        uint32_t g = row0 + q / CPR;
        if (q < CH && c < nch) {
            const int k = set_row(set, g);
            if (k < set.count)
                pf[j] = W::fetch(set.w[k], g, c);
        }
    }
}

// The fetched chunks of slice s expanded into ws (zeros past the matrices'
// rows or the row's end: they add nothing).
template <class W, class C, int CPT>
__device__ __forceinline__ void store_slice(const cuda_mv_set &set, uint32_t row0, uint32_t s, uint32_t nch,
                                            const C *pf, float (*ws)[MVB_COLS + MVB_PAD])
{
    constexpr int E = W::E;
    constexpr uint32_t CPR = MVB_COLS / E, CH = MVB_ROWS * CPR;
#pragma unroll
    for (int j = 0; j < CPT; j++) {
        const uint32_t q = threadIdx.x + (uint32_t)j * MVB_THREADS, r = q / CPR, c = q % CPR;
        if (q >= CH)
            continue;
        uint32_t g = row0 + r;
        float w[E];
        if (s * CPR + c < nch && set_row(set, g) < set.count) {
            W::expand(pf[j], w);
        } else {
#pragma unroll
            for (int i = 0; i < E; i++)
                w[i] = 0.0f;
        }
        float4 *d = reinterpret_cast<float4 *>(&ws[r][c * E]);
#pragma unroll
        for (int i = 0; i < E / 4; i++)
            d[i] = make_float4(w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]);
    }
}

// xt[col][e] = x[e * xs + s * MVB_COLS + col] for e < ne (4 g), 0 past n or
// the row's end. Entry fastest across threads, so the transposing writes
// fall in distinct banks.
__device__ __forceinline__ void stage_x(const float *x, uint32_t xs, uint32_t n, uint32_t ne, uint32_t cols,
                                        uint32_t s, float (*xt)[MVB_ENTRIES + MVB_PAD])
{
    for (uint32_t i = threadIdx.x; i < ne * (MVB_COLS / 4); i += MVB_THREADS) {
        const uint32_t e = i % ne, q = i / ne, col = s * MVB_COLS + 4 * q;
        float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (e < n && col < cols)    // cols is a multiple of 4: the whole float4 is in the row
            v = __ldg(reinterpret_cast<const float4 *>(x + (size_t)e * xs + col));
        xt[4 * q][e] = v.x;
        xt[4 * q + 1][e] = v.y;
        xt[4 * q + 2][e] = v.z;
        xt[4 * q + 3][e] = v.w;
    }
}

// y[k][e * ys[k] + r] = row r of the set . x_e for this block's rows and
// entries [64 blockIdx.y, + 64). g: cuda_mv_batch_groups(n).
template <class W>
__global__ void __launch_bounds__(MVB_THREADS, 2) k_matvec_batch(cuda_mv_set set, const float *x, uint32_t xs,
                                                                 uint32_t n, uint32_t g, int mode)
{
    constexpr int E = W::E, D = depth<E>();
    constexpr uint32_t CPR = MVB_COLS / E, CPT = (MVB_ROWS * CPR + MVB_THREADS - 1) / MVB_THREADS;
    using C = decltype(W::fetch(set.w[0], 0u, 0u));
    // The two tiles, then (after the last slice) the partial sums:
    // red[split][row][entry], 16 / g x 64 x 4 g floats.
    __shared__ __align__(16) float sm[MVB_ROWS * (MVB_COLS + MVB_PAD) + MVB_COLS * (MVB_ENTRIES + MVB_PAD)];
    float(*ws)[MVB_COLS + MVB_PAD] = reinterpret_cast<float(*)[MVB_COLS + MVB_PAD]>(sm);
    float(*xt)[MVB_ENTRIES + MVB_PAD] =
        reinterpret_cast<float(*)[MVB_ENTRIES + MVB_PAD]>(sm + MVB_ROWS * (MVB_COLS + MVB_PAD));

    const uint32_t cols = set.w[0].cols, nch = cols / E, nsl = (cols + MVB_COLS - 1) / MVB_COLS;
    const uint32_t row0 = blockIdx.x * MVB_ROWS, e0 = blockIdx.y * MVB_ENTRIES;
    const uint32_t nb = min(n - e0, (uint32_t)MVB_ENTRIES), ne = 4 * g;
    x += (size_t)e0 * xs;
    // Thread t: rows tr + 16 i (i < 4), entries 4 te + j (j < 4), columns
    // [ks * ksw, + ksw) of each slice.
    const uint32_t tr = threadIdx.x % 16, rest = threadIdx.x / 16, te = rest % g, ks = rest / g;
    const uint32_t splits = 16 / g, ksw = MVB_COLS / splits;

    // Weights are written by no kernel: the first slices' loads go out
    // before the previous kernel has finished.
    C pf[D][CPT];
#pragma unroll
    for (int d = 0; d < D; d++)
        if ((uint32_t)d < nsl)
            fetch_slice<W, C, CPT>(set, row0, d, nch, pf[d]);
    pdl_begin();

    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
            acc[i][j] = 0.0f;
    const bool live = 4 * te < nb;
    for (uint32_t s0 = 0; s0 < nsl; s0 += D) {
#pragma unroll
        for (int d = 0; d < D; d++) {
            const uint32_t s = s0 + d;
            if (s >= nsl)
                break;
            __syncthreads();    // the previous slice's tiles are no longer read
            store_slice<W, C, CPT>(set, row0, s, nch, pf[d], ws);
            stage_x(x, xs, nb, ne, cols, s, xt);
            __syncthreads();
            if (s + D < nsl)
                fetch_slice<W, C, CPT>(set, row0, s + D, nch, pf[d]);
            if (live) {
                for (uint32_t k = ks * ksw; k < ks * ksw + ksw; k += 4) {
                    float4 wv[4], xv[4];
#pragma unroll
                    for (int i = 0; i < 4; i++)
                        wv[i] = *reinterpret_cast<const float4 *>(&ws[tr + 16 * i][k]);
#pragma unroll
                    for (int i = 0; i < 4; i++)
                        xv[i] = *reinterpret_cast<const float4 *>(&xt[k + i][4 * te]);
#pragma unroll
                    for (int i = 0; i < 4; i++) {
                        const float w4[4] = {wv[i].x, wv[i].y, wv[i].z, wv[i].w};
#pragma unroll
                        for (int c = 0; c < 4; c++) {
                            acc[i][0] = fmaf(w4[c], xv[c].x, acc[i][0]);
                            acc[i][1] = fmaf(w4[c], xv[c].y, acc[i][1]);
                            acc[i][2] = fmaf(w4[c], xv[c].z, acc[i][2]);
                            acc[i][3] = fmaf(w4[c], xv[c].w, acc[i][3]);
                        }
                    }
                }
            }
        }
    }

    __syncthreads();
    float *red = sm;    // [splits][MVB_ROWS][ne]
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
            red[((size_t)ks * MVB_ROWS + tr + 16 * i) * ne + 4 * te + j] = acc[i][j];
    __syncthreads();
    for (uint32_t i = threadIdx.x; i < MVB_ROWS * nb; i += MVB_THREADS) {
        const uint32_t r = i % MVB_ROWS, e = i / MVB_ROWS;
        uint32_t gr = row0 + r;
        const int k = set_row(set, gr);
        if (k == set.count)
            continue;
        float sum = red[(size_t)r * ne + e];
        for (uint32_t p = 1; p < splits; p++)
            sum += red[((size_t)p * MVB_ROWS + r) * ne + e];
        mv_out(set.y[k] + (size_t)(e0 + e) * set.ys[k] + gr, sum, mode);
    }
}

// The launch for n >= 2 entries (any n: blocks of 64 entries along y).
template <class W>
cudaError_t launch_matvec_batch(cudaStream_t s, const cuda_mv_set &set, const float *x, uint32_t xs, uint32_t n,
                                int mode)
{
    uint32_t rows = 0;
    for (int k = 0; k < set.count; k++)
        rows += set.w[k].rows;
    const dim3 grid((rows + MVB_ROWS - 1) / MVB_ROWS, (n + MVB_ENTRIES - 1) / MVB_ENTRIES);
    PDL_LAUNCH(k_matvec_batch<W>, grid, dim3(MVB_THREADS), 0, s, set, x, xs, n, cuda_mv_batch_groups(n), mode);
    return cudaGetLastError();
}

} // namespace mvb

#endif
