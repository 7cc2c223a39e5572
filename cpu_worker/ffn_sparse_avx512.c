/* AVX-512 (F, BW, VL) row kernels for the sparse FFN (ffn_sparse.h), 16
 * lanes wide; a row's ragged end is read and written with masked loads and
 * stores (BW+VL for the 16-bit ones), which never touch memory past the row.
 * As in the AVX2 file: target attributes on the functions only, x kept in
 * fp32 (never quantized). F16 and BF16 rows share one kernel (BF16 widens
 * exactly by a shift). A quantized block is widened to its exact int8
 * values and its fp16 scale applied once per block: results differ from the
 * plain ones only by fp32 rounding order.
 *
 * Each kernel is written once for R rows (ffn_kernels.dot_rows, axpy_rows):
 * each vector of x (dots) or y (axpy) is loaded once and applied to every
 * row in turn, each row's arithmetic in the one-row order, so each result
 * has exactly the one-row bits. The one-row kernels are the R = 1 case; R is
 * a constant at every call (the always_inline bodies are specialised). */
#include "ffn_sparse.h"

#if defined(__x86_64__)

#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c")))
#define AVX512_BODY static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,fma,f16c")))
#define QK 32

/* The widening of a float row's elements: f32, f16 or bf16. */
enum { WIDE_F32, WIDE_F16, WIDE_BF16 };

AVX512_BODY __mmask16 tail_mask(size_t left)
{
    return (__mmask16)((1u << left) - 1u);
}

AVX512_BODY float load_f16(const uint8_t *p)
{
    return _cvtsh_ss((unsigned short)(p[0] | (p[1] << 8)));
}

/* 16 bf16 lanes as floats: each the top half of its float. */
AVX512_BODY __m512 bf16_widen(__m256i h)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Elements i..i+15 of a float row as floats. */
AVX512_BODY __m512 wide16(int kind, const uint8_t *w, size_t i)
{
    if (kind == WIDE_F32)
        return _mm512_loadu_ps((const float *)(w + 4 * i));
    __m256i h = _mm256_loadu_si256((const __m256i *)(w + 2 * i));
    return kind == WIDE_F16 ? _mm512_cvtph_ps(h) : bf16_widen(h);
}

/* The lanes of m of elements i..i+15, zero elsewhere; reads nothing past them. */
AVX512_BODY __m512 wide16_mask(int kind, const uint8_t *w, size_t i, __mmask16 m)
{
    if (kind == WIDE_F32)
        return _mm512_maskz_loadu_ps(m, w + 4 * i);
    __m256i h = _mm256_maskz_loadu_epi16(m, w + 2 * i);
    return kind == WIDE_F16 ? _mm512_cvtph_ps(h) : bf16_widen(h);
}

/* Row r of R prefetches on into next only when it is the last: the others'
 * successors are being read beside them. */
AVX512_BODY const void *after(int r, int R, const void *next)
{
    return r + 1 == R ? next : NULL;
}

/* res[r] = w[r] . x for r < R: four accumulators over 64 elements a pass,
 * then 16 at a time into the first, the masked tail into the second. */
AVX512_BODY void dot_wide(int kind, const uint8_t *const *w, const float *x, float *res, size_t n,
                          const void *next, int R)
{
    size_t es = kind == WIDE_F32 ? 4 : 2;
    __m512 a[FFN_ROWS_MAX][4];
    for (int r = 0; r < R; r++)
        a[r][0] = a[r][1] = a[r][2] = a[r][3] = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        for (int r = 0; r < R; r++)
            for (size_t b = 0; b < 64 * es; b += 64)
                ffn_prefetch_ahead(w[r], es * n, after(r, R, next), es * i + b);
        for (int c = 0; c < 4; c++) {
            __m512 xc = _mm512_loadu_ps(x + i + 16 * c);
            for (int r = 0; r < R; r++)
                a[r][c] = _mm512_fmadd_ps(wide16(kind, w[r], i + 16 * c), xc, a[r][c]);
        }
    }
    for (; i + 16 <= n; i += 16) {
        __m512 xc = _mm512_loadu_ps(x + i);
        for (int r = 0; r < R; r++)
            a[r][0] = _mm512_fmadd_ps(wide16(kind, w[r], i), xc, a[r][0]);
    }
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        __m512 xc = _mm512_maskz_loadu_ps(m, x + i);
        for (int r = 0; r < R; r++)
            a[r][1] = _mm512_fmadd_ps(wide16_mask(kind, w[r], i, m), xc, a[r][1]);
    }
    for (int r = 0; r < R; r++)
        res[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a[r][0], a[r][1]),
                                                    _mm512_add_ps(a[r][2], a[r][3])));
}

/* y += as[0] * w[0], then as[1] * w[1], ...: each vector of y loaded and
 * stored once for all R rows, updated row by row as R one-row calls would. */
AVX512_BODY void axpy_wide(int kind, const float *as, const uint8_t *const *w, float *y, size_t n,
                           const void *next, int R)
{
    size_t es = kind == WIDE_F32 ? 4 : 2, i = 0;
    for (; i + 16 <= n; i += 16) {
        if (es * i % 64 == 0)   /* every 64 bytes */
            for (int r = 0; r < R; r++)
                ffn_prefetch_ahead(w[r], es * n, after(r, R, next), es * i);
        __m512 v = _mm512_loadu_ps(y + i);
        for (int r = 0; r < R; r++)
            v = _mm512_fmadd_ps(wide16(kind, w[r], i), _mm512_set1_ps(as[r]), v);
        _mm512_storeu_ps(y + i, v);
    }
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        __m512 v = _mm512_maskz_loadu_ps(m, y + i);
        for (int r = 0; r < R; r++)
            v = _mm512_fmadd_ps(wide16_mask(kind, w[r], i, m), _mm512_set1_ps(as[r]), v);
        _mm512_mask_storeu_ps(y + i, m, v);
    }
}

/* 16 int8 lanes as floats. */
AVX512_BODY __m512 qf(__m128i q)
{
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
}

/* A Q8_0 or Q4_0 block: its int8 elements 0..15 and 16..31 as floats in
 * wq[0], wq[1]; returns its scale. */
AVX512_BODY __m512 block_q(pi_type type, const uint8_t *b, __m512 wq[2])
{
    __m512 d = _mm512_set1_ps(load_f16(b));
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
    wq[0] = qf(lo);
    wq[1] = qf(hi);
    return d;
}

/* Per block: s = sum q_i x_i over its 32 lanes, then acc += d * s, so the
 * scale costs one multiply per block instead of one per vector; two blocks
 * a pass, two independent sums per row. */
AVX512_BODY void dot_q(pi_type type, const uint8_t *const *w, const float *x, float *res, size_t n,
                       const void *next, int R)
{
    size_t bb = pi_type_block_bytes(type), nb = n / QK, blk = 0;
    __m512 a[FFN_ROWS_MAX][2];
    for (int r = 0; r < R; r++)
        a[r][0] = a[r][1] = _mm512_setzero_ps();
    for (; blk + 2 <= nb; blk += 2) {
        const float *xb = x + blk * QK;
        __m512 x0 = _mm512_loadu_ps(xb), x1 = _mm512_loadu_ps(xb + 16);
        __m512 x2 = _mm512_loadu_ps(xb + 32), x3 = _mm512_loadu_ps(xb + 48);
        for (int r = 0; r < R; r++) {
            __m512 q1[2], q2[2];
            ffn_prefetch_ahead(w[r], nb * bb, after(r, R, next), blk * bb);   /* a block is < 64 bytes */
            ffn_prefetch_ahead(w[r], nb * bb, after(r, R, next), (blk + 1) * bb);
            __m512 d = block_q(type, w[r] + blk * bb, q1);
            __m512 d2 = block_q(type, w[r] + (blk + 1) * bb, q2);
            __m512 s = _mm512_mul_ps(q1[0], x0);
            __m512 s2 = _mm512_mul_ps(q2[0], x2);
            s = _mm512_fmadd_ps(q1[1], x1, s);
            s2 = _mm512_fmadd_ps(q2[1], x3, s2);
            a[r][0] = _mm512_fmadd_ps(s, d, a[r][0]);
            a[r][1] = _mm512_fmadd_ps(s2, d2, a[r][1]);
        }
    }
    if (blk < nb) {
        const float *xb = x + blk * QK;
        __m512 x0 = _mm512_loadu_ps(xb), x1 = _mm512_loadu_ps(xb + 16);
        for (int r = 0; r < R; r++) {
            __m512 q1[2];
            __m512 d = block_q(type, w[r] + blk * bb, q1);
            __m512 s = _mm512_mul_ps(q1[0], x0);
            s = _mm512_fmadd_ps(q1[1], x1, s);
            a[r][0] = _mm512_fmadd_ps(s, d, a[r][0]);
        }
    }
    for (int r = 0; r < R; r++)
        res[r] = _mm512_reduce_add_ps(_mm512_add_ps(a[r][0], a[r][1]));
}

/* y += (a * d) * q: one scalar multiply per block and row; y's two vectors
 * of a block loaded and stored once for all R rows. */
AVX512_BODY void axpy_q(pi_type type, const float *as, const uint8_t *const *w, float *y, size_t n,
                        const void *next, int R)
{
    size_t bb = pi_type_block_bytes(type);
    for (size_t blk = 0; blk < n / QK; blk++) {
        float *yb = y + blk * QK;
        __m512 y0 = _mm512_loadu_ps(yb), y1 = _mm512_loadu_ps(yb + 16);
        for (int r = 0; r < R; r++) {
            __m512 wq[2];
            ffn_prefetch_ahead(w[r], n / QK * bb, after(r, R, next), blk * bb);
            __m512 ad = _mm512_mul_ps(block_q(type, w[r] + blk * bb, wq), _mm512_set1_ps(as[r]));
            y0 = _mm512_fmadd_ps(wq[0], ad, y0);
            y1 = _mm512_fmadd_ps(wq[1], ad, y1);
        }
        _mm512_storeu_ps(yb, y0);
        _mm512_storeu_ps(yb + 16, y1);
    }
}

/* The R-row kernels of one type; R a constant in each case. */
AVX512_BODY void dot_r(pi_type type, const uint8_t *const *w, const float *x, float *res, size_t n,
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

AVX512_BODY void axpy_r(pi_type type, const float *as, const uint8_t *const *w, float *y, size_t n,
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

AVX512 static float avx512_dot_then(pi_type type, const void *row, const float *x, size_t n,
                                    const void *next)
{
    const uint8_t *w = row;
    float r;
    dot_r(type, &w, x, &r, n, next, 1);
    return r;
}

AVX512 static float avx512_dot(pi_type type, const void *row, const float *x, size_t n)
{
    return avx512_dot_then(type, row, x, n, NULL);
}

AVX512 static void avx512_dot_rows(pi_type type, const void *const *rows, size_t nr, const float *x, size_t n,
                                   float *res, const void *next)
{
    const uint8_t *const *w = (const uint8_t *const *)rows;
    for (; nr > 4; nr -= 4, w += 4, res += 4)
        dot_r(type, w, x, res, n, w[4], 4);
    switch (nr) {
    case 1: dot_r(type, w, x, res, n, next, 1); return;
    case 2: dot_r(type, w, x, res, n, next, 2); return;
    case 3: dot_r(type, w, x, res, n, next, 3); return;
    case 4: dot_r(type, w, x, res, n, next, 4); return;
    default: return;
    }
}

AVX512 static void avx512_axpy_then(pi_type type, float a, const void *row, float *y, size_t n,
                                    const void *next)
{
    const uint8_t *w = row;
    axpy_r(type, &a, &w, y, n, next, 1);
}

AVX512 static void avx512_axpy(pi_type type, float a, const void *row, float *y, size_t n)
{
    avx512_axpy_then(type, a, row, y, n, NULL);
}

AVX512 static void avx512_axpy_rows(pi_type type, const float *as, const void *const *rows, size_t nr, float *y,
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

static const ffn_kernels avx512 = {
    .name = "avx512",
    .dot = avx512_dot,
    .axpy = avx512_axpy,
    .dot_then = avx512_dot_then,
    .axpy_then = avx512_axpy_then,
    .dot_rows = avx512_dot_rows,
    .axpy_rows = avx512_axpy_rows,
};

const ffn_kernels *ffn_kernels_avx512(void)
{
    return &avx512;
}

#else

const ffn_kernels *ffn_kernels_avx512(void)
{
    return NULL;
}

#endif
