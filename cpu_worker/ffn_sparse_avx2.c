/* AVX2 + FMA + F16C row kernels for the sparse FFN (ffn_sparse.h). Only the
 * functions carry the target attribute, so the file builds into a binary
 * that runs on any x86-64; ffn_dispatch.c calls them only where cpuid says
 * the CPU has these instructions. x stays in fp32 (it is never quantized):
 * a quantized weight is widened to q * d, which is exact in fp32 (8-bit q
 * times an fp16 scale), so results differ from the plain ones only by the
 * order of the fp32 sums. F16 and BF16 rows share one kernel (bf picks the
 * widening; BF16 widens exactly by a shift).
 *
 * Each kernel is written once for G inputs (a step's entries, ffn_batch.h):
 * every vector of the row is loaded and widened once and applied to each
 * input's own accumulators, in the order the one-input kernel uses, so an
 * input's result has exactly the one-input bits. The one-input kernels are
 * the G = 1 case; G is a constant at every call (the always_inline bodies
 * are specialised, their loops over k unrolled). */
#include "ffn_sparse.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define AVX2_BODY static inline __attribute__((always_inline, target("avx2,fma,f16c")))
#define QK 32
/* Inputs per pass over a row in the dots: four accumulators each, so three
 * inputs keep 12 of the 16 ymm registers for sums. */
#define GROUP 3

/* The widening of a float row's elements: f32, f16 or bf16. */
enum { WIDE_F32, WIDE_F16, WIDE_BF16 };

AVX2 static float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2_BODY float load_f16(const uint8_t *p)
{
    return _cvtsh_ss((unsigned short)(p[0] | (p[1] << 8)));
}

/* Element i of a float row as a float. */
AVX2_BODY float wide_at(int kind, const uint8_t *w, size_t i)
{
    float f;
    if (kind == WIDE_F32) {
        memcpy(&f, w + 4 * i, 4);
        return f;
    }
    if (kind == WIDE_F16)
        return load_f16(w + 2 * i);
    uint32_t u = (uint32_t)(w[2 * i] | (w[2 * i + 1] << 8)) << 16;   /* bf16: a float's top half */
    memcpy(&f, &u, 4);
    return f;
}

/* Elements i..i+7 of a float row as floats. */
AVX2_BODY __m256 wide8(int kind, const uint8_t *w, size_t i)
{
    if (kind == WIDE_F32)
        return _mm256_loadu_ps((const float *)(w + 4 * i));
    __m128i h = _mm_loadu_si128((const __m128i *)(w + 2 * i));
    if (kind == WIDE_F16)
        return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* res[k] = row . xs[k] for k < G: four accumulators over 32 elements a
 * pass, then 8 at a time into the first, then a scalar tail. */
AVX2_BODY void dot_wide(int kind, const uint8_t *w, const float *const *xs, float *res, size_t n,
                        const void *next, int G)
{
    size_t es = kind == WIDE_F32 ? 4 : 2;
    __m256 a[GROUP][4];
    for (int k = 0; k < G; k++)
        a[k][0] = a[k][1] = a[k][2] = a[k][3] = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        for (size_t b = 0; b < 32 * es; b += 64)
            ffn_prefetch_ahead(w, es * n, next, es * i + b);
        for (int c = 0; c < 4; c++) {
            __m256 wc = wide8(kind, w, i + 8 * c);
            for (int k = 0; k < G; k++)
                a[k][c] = _mm256_fmadd_ps(wc, _mm256_loadu_ps(xs[k] + i + 8 * c), a[k][c]);
        }
    }
    for (; i + 8 <= n; i += 8) {
        __m256 wc = wide8(kind, w, i);
        for (int k = 0; k < G; k++)
            a[k][0] = _mm256_fmadd_ps(wc, _mm256_loadu_ps(xs[k] + i), a[k][0]);
    }
    for (int k = 0; k < G; k++) {
        float s = hsum8(_mm256_add_ps(_mm256_add_ps(a[k][0], a[k][1]), _mm256_add_ps(a[k][2], a[k][3])));
        for (size_t j = i; j < n; j++)
            s += wide_at(kind, w, j) * xs[k][j];
        res[k] = s;
    }
}

/* ys[k] += as[k] * row for k < ny (ny need not be a constant: nothing is
 * held across the row but the row's own vector). */
AVX2_BODY void axpy_wide(int kind, const float *as, const uint8_t *w, float *const *ys, size_t ny,
                         size_t n, const void *next)
{
    size_t es = kind == WIDE_F32 ? 4 : 2, i = 0;
    for (; i + 8 <= n; i += 8) {
        if (es * i % 64 == 0)
            ffn_prefetch_ahead(w, es * n, next, es * i);
        __m256 wc = wide8(kind, w, i);
        for (size_t k = 0; k < ny; k++)
            _mm256_storeu_ps(ys[k] + i, _mm256_fmadd_ps(wc, _mm256_set1_ps(as[k]), _mm256_loadu_ps(ys[k] + i)));
    }
    for (; i < n; i++)
        for (size_t k = 0; k < ny; k++)
            ys[k][i] += as[k] * wide_at(kind, w, i);
}

/* Eight int8 lanes (the low 8 bytes of q) as floats times d: exact. */
AVX2_BODY __m256 q8x8(__m128i q, __m256 d)
{
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d);
}

/* A Q8_0 or Q4_0 block's 32 weights q * d as four vectors of eight. */
AVX2_BODY void block_q(pi_type type, const uint8_t *b, __m256 wq[4])
{
    __m256 d = _mm256_set1_ps(load_f16(b));
    __m128i lo, hi;
    if (type == PI_TYPE_Q8_0) {
        lo = _mm_loadu_si128((const __m128i *)(b + 2));
        hi = _mm_loadu_si128((const __m128i *)(b + 18));
    } else {
        __m128i q = _mm_loadu_si128((const __m128i *)(b + 2)), m = _mm_set1_epi8(0x0f);
        __m128i eight = _mm_set1_epi8(8);
        lo = _mm_sub_epi8(_mm_and_si128(q, m), eight);
        hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), m), eight);
    }
    wq[0] = q8x8(lo, d);
    wq[1] = q8x8(_mm_srli_si128(lo, 8), d);
    wq[2] = q8x8(hi, d);
    wq[3] = q8x8(_mm_srli_si128(hi, 8), d);
}

AVX2_BODY void dot_q(pi_type type, const uint8_t *w, const float *const *xs, float *res, size_t n,
                     const void *next, int G)
{
    size_t bb = pi_type_block_bytes(type);
    __m256 a[GROUP][4];
    for (int k = 0; k < G; k++)
        a[k][0] = a[k][1] = a[k][2] = a[k][3] = _mm256_setzero_ps();
    for (size_t blk = 0; blk < n / QK; blk++) {
        __m256 wq[4];
        ffn_prefetch_ahead(w, n / QK * bb, next, blk * bb);   /* a block is < 64 bytes */
        block_q(type, w + blk * bb, wq);
        for (int c = 0; c < 4; c++)
            for (int k = 0; k < G; k++)
                a[k][c] = _mm256_fmadd_ps(wq[c], _mm256_loadu_ps(xs[k] + blk * QK + 8 * c), a[k][c]);
    }
    for (int k = 0; k < G; k++)
        res[k] = hsum8(_mm256_add_ps(_mm256_add_ps(a[k][0], a[k][1]), _mm256_add_ps(a[k][2], a[k][3])));
}

AVX2_BODY void axpy_q(pi_type type, const float *as, const uint8_t *w, float *const *ys, size_t ny,
                      size_t n, const void *next)
{
    size_t bb = pi_type_block_bytes(type);
    for (size_t blk = 0; blk < n / QK; blk++) {
        __m256 wq[4];
        ffn_prefetch_ahead(w, n / QK * bb, next, blk * bb);
        block_q(type, w + blk * bb, wq);
        for (size_t k = 0; k < ny; k++) {
            __m256 va = _mm256_set1_ps(as[k]);
            float *yb = ys[k] + blk * QK;
            for (int c = 0; c < 4; c++)
                _mm256_storeu_ps(yb + 8 * c, _mm256_fmadd_ps(wq[c], va, _mm256_loadu_ps(yb + 8 * c)));
        }
    }
}

/* The dots of nx inputs in groups of GROUP (each group one pass over the
 * row; after the first it comes from the cache). */
AVX2_BODY void dot_groups(pi_type type, int kind, const void *row, const float *const *xs, size_t nx,
                          size_t n, float *res, const void *next)
{
    int q = type == PI_TYPE_Q8_0 || type == PI_TYPE_Q4_0;
    size_t k = 0;
    for (; k + GROUP <= nx; k += GROUP)
        q ? dot_q(type, row, xs + k, res + k, n, next, GROUP) : dot_wide(kind, row, xs + k, res + k, n, next, GROUP);
    if (nx - k == 2)
        q ? dot_q(type, row, xs + k, res + k, n, next, 2) : dot_wide(kind, row, xs + k, res + k, n, next, 2);
    else if (nx - k == 1)
        q ? dot_q(type, row, xs + k, res + k, n, next, 1) : dot_wide(kind, row, xs + k, res + k, n, next, 1);
}

AVX2 static void avx2_dot_many(pi_type type, const void *row, const float *const *xs, size_t nx,
                               size_t n, float *res, const void *next)
{
    switch (type) {
    case PI_TYPE_F32: dot_groups(PI_TYPE_F32, WIDE_F32, row, xs, nx, n, res, next); return;
    case PI_TYPE_F16: dot_groups(PI_TYPE_F16, WIDE_F16, row, xs, nx, n, res, next); return;
    case PI_TYPE_BF16: dot_groups(PI_TYPE_BF16, WIDE_BF16, row, xs, nx, n, res, next); return;
    case PI_TYPE_Q8_0: dot_groups(PI_TYPE_Q8_0, 0, row, xs, nx, n, res, next); return;
    case PI_TYPE_Q4_0: dot_groups(PI_TYPE_Q4_0, 0, row, xs, nx, n, res, next); return;
    default:
        for (size_t k = 0; k < nx; k++)
            res[k] = pi_dot_row(type, row, xs[k], n);
        return;
    }
}

AVX2 static float avx2_dot_then(pi_type type, const void *row, const float *x, size_t n,
                                const void *next)
{
    float r;
    switch (type) {
    case PI_TYPE_F32: dot_wide(WIDE_F32, row, &x, &r, n, next, 1); return r;
    case PI_TYPE_F16: dot_wide(WIDE_F16, row, &x, &r, n, next, 1); return r;
    case PI_TYPE_BF16: dot_wide(WIDE_BF16, row, &x, &r, n, next, 1); return r;
    case PI_TYPE_Q8_0: dot_q(PI_TYPE_Q8_0, row, &x, &r, n, next, 1); return r;
    case PI_TYPE_Q4_0: dot_q(PI_TYPE_Q4_0, row, &x, &r, n, next, 1); return r;
    default: return pi_dot_row(type, row, x, n);
    }
}

AVX2 static float avx2_dot(pi_type type, const void *row, const float *x, size_t n)
{
    return avx2_dot_then(type, row, x, n, NULL);
}

AVX2 static void avx2_axpy_many(pi_type type, const float *as, const void *row, float *const *ys,
                                size_t ny, size_t n, const void *next)
{
    switch (type) {
    case PI_TYPE_F32: axpy_wide(WIDE_F32, as, row, ys, ny, n, next); return;
    case PI_TYPE_F16: axpy_wide(WIDE_F16, as, row, ys, ny, n, next); return;
    case PI_TYPE_BF16: axpy_wide(WIDE_BF16, as, row, ys, ny, n, next); return;
    case PI_TYPE_Q8_0: axpy_q(PI_TYPE_Q8_0, as, row, ys, ny, n, next); return;
    case PI_TYPE_Q4_0: axpy_q(PI_TYPE_Q4_0, as, row, ys, ny, n, next); return;
    default:
        for (size_t k = 0; k < ny; k++)
            pi_axpy_row(type, as[k], row, ys[k], n);
        return;
    }
}

AVX2 static void avx2_axpy_then(pi_type type, float a, const void *row, float *y, size_t n,
                                const void *next)
{
    switch (type) {
    case PI_TYPE_F32: axpy_wide(WIDE_F32, &a, row, &y, 1, n, next); return;
    case PI_TYPE_F16: axpy_wide(WIDE_F16, &a, row, &y, 1, n, next); return;
    case PI_TYPE_BF16: axpy_wide(WIDE_BF16, &a, row, &y, 1, n, next); return;
    case PI_TYPE_Q8_0: axpy_q(PI_TYPE_Q8_0, &a, row, &y, 1, n, next); return;
    case PI_TYPE_Q4_0: axpy_q(PI_TYPE_Q4_0, &a, row, &y, 1, n, next); return;
    default: pi_axpy_row(type, a, row, y, n); return;
    }
}

AVX2 static void avx2_axpy(pi_type type, float a, const void *row, float *y, size_t n)
{
    avx2_axpy_then(type, a, row, y, n, NULL);
}

static const ffn_kernels avx2 = {
    .name = "avx2",
    .dot = avx2_dot,
    .axpy = avx2_axpy,
    .dot_then = avx2_dot_then,
    .axpy_then = avx2_axpy_then,
    .dot_many = avx2_dot_many,
    .axpy_many = avx2_axpy_many,
};

const ffn_kernels *ffn_kernels_avx2(void)
{
    return &avx2;
}

#else

const ffn_kernels *ffn_kernels_avx2(void)
{
    return NULL;
}

#endif
