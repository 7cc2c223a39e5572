/* AVX2 + FMA + F16C row kernels for the sparse FFN (ffn_sparse.h). Only the
 * functions carry the target attribute, so the file builds into a binary
 * that runs on any x86-64; ffn_dispatch.c calls them only where cpuid says
 * the CPU has these instructions. x stays in fp32 (it is never quantized):
 * a quantized weight is widened to q * d, which is exact in fp32 (8-bit q
 * times an fp16 scale), so results differ from the plain ones only by the
 * order of the fp32 sums. F16 and BF16 rows share one kernel (BF16 widens
 * exactly by a shift).
 *
 * Each kernel is written once for R rows (ffn_kernels.dot_rows, axpy_rows):
 * each vector of x (dots) or y (axpy) is loaded once and applied to every
 * row in turn, each row's arithmetic in the one-row order, so each result
 * has exactly the one-row bits. The one-row kernels are the R = 1 case; R is
 * a constant at every call (the always_inline bodies are specialised). */
#include "ffn_sparse.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define AVX2_BODY static inline __attribute__((always_inline, target("avx2,fma,f16c")))
#define QK 32
/* Rows per dot pass: four accumulators each, so two rows keep 8 of the 16
 * ymm registers for sums (three would leave too few for the rest). */
#define DOT_ROWS 2

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

/* Row r of R prefetches on into next only when it is the last: the others'
 * successors are being read beside them. */
AVX2_BODY const void *after(int r, int R, const void *next)
{
    return r + 1 == R ? next : NULL;
}

/* res[r] = w[r] . x for r < R: four accumulators over 32 elements a pass,
 * then 8 at a time into the first, then a scalar tail. */
AVX2_BODY void dot_wide(int kind, const uint8_t *const *w, const float *x, float *res, size_t n,
                        const void *next, int R)
{
    size_t es = kind == WIDE_F32 ? 4 : 2;
    __m256 a[DOT_ROWS][4];
    for (int r = 0; r < R; r++)
        a[r][0] = a[r][1] = a[r][2] = a[r][3] = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        for (int r = 0; r < R; r++)
            for (size_t b = 0; b < 32 * es; b += 64)
                ffn_prefetch_ahead(w[r], es * n, after(r, R, next), es * i + b);
        for (int c = 0; c < 4; c++) {
            __m256 xc = _mm256_loadu_ps(x + i + 8 * c);
            for (int r = 0; r < R; r++)
                a[r][c] = _mm256_fmadd_ps(wide8(kind, w[r], i + 8 * c), xc, a[r][c]);
        }
    }
    for (; i + 8 <= n; i += 8) {
        __m256 xc = _mm256_loadu_ps(x + i);
        for (int r = 0; r < R; r++)
            a[r][0] = _mm256_fmadd_ps(wide8(kind, w[r], i), xc, a[r][0]);
    }
    for (int r = 0; r < R; r++) {
        float s = hsum8(_mm256_add_ps(_mm256_add_ps(a[r][0], a[r][1]), _mm256_add_ps(a[r][2], a[r][3])));
        for (size_t j = i; j < n; j++)
            s += wide_at(kind, w[r], j) * x[j];
        res[r] = s;
    }
}

/* y += as[0] * w[0], then as[1] * w[1], ...: each vector of y loaded and
 * stored once for all R rows, updated row by row as R one-row calls would. */
AVX2_BODY void axpy_wide(int kind, const float *as, const uint8_t *const *w, float *y, size_t n,
                         const void *next, int R)
{
    size_t es = kind == WIDE_F32 ? 4 : 2, i = 0;
    for (; i + 8 <= n; i += 8) {
        if (es * i % 64 == 0)   /* every 64 bytes */
            for (int r = 0; r < R; r++)
                ffn_prefetch_ahead(w[r], es * n, after(r, R, next), es * i);
        __m256 v = _mm256_loadu_ps(y + i);
        for (int r = 0; r < R; r++)
            v = _mm256_fmadd_ps(wide8(kind, w[r], i), _mm256_set1_ps(as[r]), v);
        _mm256_storeu_ps(y + i, v);
    }
    for (; i < n; i++)
        for (int r = 0; r < R; r++)
            y[i] += as[r] * wide_at(kind, w[r], i);
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

AVX2_BODY void dot_q(pi_type type, const uint8_t *const *w, const float *x, float *res, size_t n,
                     const void *next, int R)
{
    size_t bb = pi_type_block_bytes(type);
    __m256 a[DOT_ROWS][4];
    for (int r = 0; r < R; r++)
        a[r][0] = a[r][1] = a[r][2] = a[r][3] = _mm256_setzero_ps();
    for (size_t blk = 0; blk < n / QK; blk++) {
        const float *xb = x + blk * QK;
        for (int r = 0; r < R; r++) {
            __m256 wq[4];
            ffn_prefetch_ahead(w[r], n / QK * bb, after(r, R, next), blk * bb);   /* a block is < 64 bytes */
            block_q(type, w[r] + blk * bb, wq);
            for (int c = 0; c < 4; c++)
                a[r][c] = _mm256_fmadd_ps(wq[c], _mm256_loadu_ps(xb + 8 * c), a[r][c]);
        }
    }
    for (int r = 0; r < R; r++)
        res[r] = hsum8(_mm256_add_ps(_mm256_add_ps(a[r][0], a[r][1]), _mm256_add_ps(a[r][2], a[r][3])));
}

/* y's four vectors of a block loaded and stored once for all R rows. */
AVX2_BODY void axpy_q(pi_type type, const float *as, const uint8_t *const *w, float *y, size_t n,
                      const void *next, int R)
{
    size_t bb = pi_type_block_bytes(type);
    for (size_t blk = 0; blk < n / QK; blk++) {
        float *yb = y + blk * QK;
        __m256 v[4];
        for (int c = 0; c < 4; c++)
            v[c] = _mm256_loadu_ps(yb + 8 * c);
        for (int r = 0; r < R; r++) {
            __m256 wq[4], va = _mm256_set1_ps(as[r]);
            ffn_prefetch_ahead(w[r], n / QK * bb, after(r, R, next), blk * bb);
            block_q(type, w[r] + blk * bb, wq);
            for (int c = 0; c < 4; c++)
                v[c] = _mm256_fmadd_ps(wq[c], va, v[c]);
        }
        for (int c = 0; c < 4; c++)
            _mm256_storeu_ps(yb + 8 * c, v[c]);
    }
}

/* The R-row kernels of one type; R a constant in each case. */
AVX2_BODY void dot_r(pi_type type, const uint8_t *const *w, const float *x, float *res, size_t n,
                     const void *next, int R)
{
    switch (type) {
    case PI_TYPE_F32: dot_wide(WIDE_F32, w, x, res, n, next, R); return;
    case PI_TYPE_F16: dot_wide(WIDE_F16, w, x, res, n, next, R); return;
    case PI_TYPE_BF16: dot_wide(WIDE_BF16, w, x, res, n, next, R); return;
    case PI_TYPE_Q8_0: dot_q(PI_TYPE_Q8_0, w, x, res, n, next, R); return;
    case PI_TYPE_Q4_0: dot_q(PI_TYPE_Q4_0, w, x, res, n, next, R); return;
    default:
        for (int r = 0; r < R; r++)
            res[r] = pi_dot_row(type, w[r], x, n);
        return;
    }
}

AVX2_BODY void axpy_r(pi_type type, const float *as, const uint8_t *const *w, float *y, size_t n,
                      const void *next, int R)
{
    switch (type) {
    case PI_TYPE_F32: axpy_wide(WIDE_F32, as, w, y, n, next, R); return;
    case PI_TYPE_F16: axpy_wide(WIDE_F16, as, w, y, n, next, R); return;
    case PI_TYPE_BF16: axpy_wide(WIDE_BF16, as, w, y, n, next, R); return;
    case PI_TYPE_Q8_0: axpy_q(PI_TYPE_Q8_0, as, w, y, n, next, R); return;
    case PI_TYPE_Q4_0: axpy_q(PI_TYPE_Q4_0, as, w, y, n, next, R); return;
    default:
        for (int r = 0; r < R; r++)
            pi_axpy_row(type, as[r], w[r], y, n);
        return;
    }
}

AVX2 static float avx2_dot_then(pi_type type, const void *row, const float *x, size_t n,
                                const void *next)
{
    const uint8_t *w = row;
    float r;
    dot_r(type, &w, x, &r, n, next, 1);
    return r;
}

AVX2 static float avx2_dot(pi_type type, const void *row, const float *x, size_t n)
{
    return avx2_dot_then(type, row, x, n, NULL);
}

AVX2 static void avx2_dot_rows(pi_type type, const void *const *rows, size_t nr, const float *x, size_t n,
                               float *res, const void *next)
{
    const uint8_t *const *w = (const uint8_t *const *)rows;
    /* A quantized row's four widened vectors and block leave no room for a
     * second row's sums (two at a time measured ~5% slower on Q4_0). */
    size_t g = type == PI_TYPE_Q8_0 || type == PI_TYPE_Q4_0 ? 1 : DOT_ROWS;
    for (; nr > g; nr -= g, w += g, res += g) {
        if (g == 1)
            dot_r(type, w, x, res, n, w[1], 1);
        else
            dot_r(type, w, x, res, n, w[2], 2);
    }
    if (nr == 2)
        dot_r(type, w, x, res, n, next, 2);
    else if (nr == 1)
        dot_r(type, w, x, res, n, next, 1);
}

AVX2 static void avx2_axpy_then(pi_type type, float a, const void *row, float *y, size_t n,
                                const void *next)
{
    const uint8_t *w = row;
    axpy_r(type, &a, &w, y, n, next, 1);
}

AVX2 static void avx2_axpy(pi_type type, float a, const void *row, float *y, size_t n)
{
    avx2_axpy_then(type, a, row, y, n, NULL);
}

AVX2 static void avx2_axpy_rows(pi_type type, const float *as, const void *const *rows, size_t nr, float *y,
                                size_t n, const void *next)
{
    const uint8_t *const *w = (const uint8_t *const *)rows;
    for (; nr > 4; nr -= 4, w += 4, as += 4)
        axpy_r(type, as, w, y, n, w[4], 4);
    switch (nr) {
    case 1: axpy_r(type, as, w, y, n, next, 1); return;
    case 2: axpy_r(type, as, w, y, n, next, 2); return;
    case 3: axpy_r(type, as, w, y, n, next, 3); return;
    case 4: axpy_r(type, as, w, y, n, next, 4); return;
    default: return;
    }
}

static const ffn_kernels avx2 = {
    .name = "avx2",
    .dot = avx2_dot,
    .axpy = avx2_axpy,
    .dot_then = avx2_dot_then,
    .axpy_then = avx2_axpy_then,
    .dot_rows = avx2_dot_rows,
    .axpy_rows = avx2_axpy_rows,
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
