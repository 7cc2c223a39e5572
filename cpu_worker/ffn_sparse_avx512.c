/* AVX-512 (F, BW, VL) row kernels for the sparse FFN (ffn_sparse.h), 16
 * lanes wide; a row's ragged end is read and written with masked loads and
 * stores (BW+VL for the 16-bit ones), which never touch memory past the row.
 * As in the AVX2 file: target attributes on the functions only, x kept in
 * fp32 (never quantized). F16 and BF16 rows share one kernel (BF16 widens
 * exactly by a shift). A quantized block is widened to its exact int8
 * values and its fp16 scale applied once per block: results differ from the
 * plain ones only by fp32 rounding order. As in the AVX2 file, each kernel
 * is written once for G inputs (a step's entries) reading and widening the
 * row once for all of them, each input's arithmetic in the one-input order
 * (so its bits are the one-input kernel's, which is the G = 1 case). */
#include "ffn_sparse.h"

#if defined(__x86_64__)

#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c")))
#define AVX512_BODY static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,fma,f16c")))
#define QK 32
/* Inputs per pass over a row in the dots (at most four accumulators each:
 * 16 of the 32 zmm registers for sums). */
#define GROUP 4

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

/* res[k] = row . xs[k] for k < G: four accumulators over 64 elements a
 * pass, then 16 at a time into the first, the masked tail into the second. */
AVX512_BODY void dot_wide(int kind, const uint8_t *w, const float *const *xs, float *res, size_t n,
                          const void *next, int G)
{
    size_t es = kind == WIDE_F32 ? 4 : 2;
    __m512 a[GROUP][4];
    for (int k = 0; k < G; k++)
        a[k][0] = a[k][1] = a[k][2] = a[k][3] = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        for (size_t b = 0; b < 64 * es; b += 64)
            ffn_prefetch_ahead(w, es * n, next, es * i + b);
        for (int c = 0; c < 4; c++) {
            __m512 wc = wide16(kind, w, i + 16 * c);
            for (int k = 0; k < G; k++)
                a[k][c] = _mm512_fmadd_ps(wc, _mm512_loadu_ps(xs[k] + i + 16 * c), a[k][c]);
        }
    }
    for (; i + 16 <= n; i += 16) {
        __m512 wc = wide16(kind, w, i);
        for (int k = 0; k < G; k++)
            a[k][0] = _mm512_fmadd_ps(wc, _mm512_loadu_ps(xs[k] + i), a[k][0]);
    }
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        __m512 wc = wide16_mask(kind, w, i, m);
        for (int k = 0; k < G; k++)
            a[k][1] = _mm512_fmadd_ps(wc, _mm512_maskz_loadu_ps(m, xs[k] + i), a[k][1]);
    }
    for (int k = 0; k < G; k++)
        res[k] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a[k][0], a[k][1]),
                                                    _mm512_add_ps(a[k][2], a[k][3])));
}

/* ys[k] += as[k] * row for k < ny (ny need not be a constant). */
AVX512_BODY void axpy_wide(int kind, const float *as, const uint8_t *w, float *const *ys, size_t ny,
                           size_t n, const void *next)
{
    size_t es = kind == WIDE_F32 ? 4 : 2, i = 0;
    for (; i + 16 <= n; i += 16) {
        if (es * i % 64 == 0)
            ffn_prefetch_ahead(w, es * n, next, es * i);
        __m512 wc = wide16(kind, w, i);
        for (size_t k = 0; k < ny; k++)
            _mm512_storeu_ps(ys[k] + i, _mm512_fmadd_ps(wc, _mm512_set1_ps(as[k]), _mm512_loadu_ps(ys[k] + i)));
    }
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        __m512 wc = wide16_mask(kind, w, i, m);
        for (size_t k = 0; k < ny; k++) {
            __m512 r = _mm512_fmadd_ps(wc, _mm512_set1_ps(as[k]), _mm512_maskz_loadu_ps(m, ys[k] + i));
            _mm512_mask_storeu_ps(ys[k] + i, m, r);
        }
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
 * a pass, two independent sums per input. */
AVX512_BODY void dot_q(pi_type type, const uint8_t *w, const float *const *xs, float *res, size_t n,
                       const void *next, int G)
{
    size_t bb = pi_type_block_bytes(type), nb = n / QK, blk = 0;
    __m512 a[GROUP][2];
    for (int k = 0; k < G; k++)
        a[k][0] = a[k][1] = _mm512_setzero_ps();
    for (; blk + 2 <= nb; blk += 2) {
        __m512 q1[2], q2[2];
        ffn_prefetch_ahead(w, nb * bb, next, blk * bb);   /* a block is < 64 bytes */
        ffn_prefetch_ahead(w, nb * bb, next, (blk + 1) * bb);
        __m512 d = block_q(type, w + blk * bb, q1);
        __m512 d2 = block_q(type, w + (blk + 1) * bb, q2);
        for (int k = 0; k < G; k++) {
            const float *xb = xs[k] + blk * QK;
            __m512 s = _mm512_mul_ps(q1[0], _mm512_loadu_ps(xb));
            __m512 s2 = _mm512_mul_ps(q2[0], _mm512_loadu_ps(xb + 32));
            s = _mm512_fmadd_ps(q1[1], _mm512_loadu_ps(xb + 16), s);
            s2 = _mm512_fmadd_ps(q2[1], _mm512_loadu_ps(xb + 48), s2);
            a[k][0] = _mm512_fmadd_ps(s, d, a[k][0]);
            a[k][1] = _mm512_fmadd_ps(s2, d2, a[k][1]);
        }
    }
    if (blk < nb) {
        __m512 q1[2];
        __m512 d = block_q(type, w + blk * bb, q1);
        for (int k = 0; k < G; k++) {
            const float *xb = xs[k] + blk * QK;
            __m512 s = _mm512_mul_ps(q1[0], _mm512_loadu_ps(xb));
            s = _mm512_fmadd_ps(q1[1], _mm512_loadu_ps(xb + 16), s);
            a[k][0] = _mm512_fmadd_ps(s, d, a[k][0]);
        }
    }
    for (int k = 0; k < G; k++)
        res[k] = _mm512_reduce_add_ps(_mm512_add_ps(a[k][0], a[k][1]));
}

/* y += (a * d) * q: one scalar multiply per block and input. */
AVX512_BODY void axpy_q(pi_type type, const float *as, const uint8_t *w, float *const *ys, size_t ny,
                        size_t n, const void *next)
{
    size_t bb = pi_type_block_bytes(type);
    for (size_t blk = 0; blk < n / QK; blk++) {
        __m512 wq[2];
        ffn_prefetch_ahead(w, n / QK * bb, next, blk * bb);
        __m512 d = block_q(type, w + blk * bb, wq);
        for (size_t k = 0; k < ny; k++) {
            __m512 ad = _mm512_mul_ps(d, _mm512_set1_ps(as[k]));
            float *yb = ys[k] + blk * QK;
            _mm512_storeu_ps(yb, _mm512_fmadd_ps(wq[0], ad, _mm512_loadu_ps(yb)));
            _mm512_storeu_ps(yb + 16, _mm512_fmadd_ps(wq[1], ad, _mm512_loadu_ps(yb + 16)));
        }
    }
}

/* The dots of nx inputs in groups of GROUP (each group one pass over the
 * row; after the first it comes from the cache). */
AVX512_BODY void dot_groups(pi_type type, int kind, const void *row, const float *const *xs, size_t nx,
                            size_t n, float *res, const void *next)
{
    int q = type == PI_TYPE_Q8_0 || type == PI_TYPE_Q4_0;
    size_t k = 0;
    for (; k + GROUP <= nx; k += GROUP)
        q ? dot_q(type, row, xs + k, res + k, n, next, GROUP) : dot_wide(kind, row, xs + k, res + k, n, next, GROUP);
    switch (nx - k) {
    case 3: q ? dot_q(type, row, xs + k, res + k, n, next, 3) : dot_wide(kind, row, xs + k, res + k, n, next, 3); return;
    case 2: q ? dot_q(type, row, xs + k, res + k, n, next, 2) : dot_wide(kind, row, xs + k, res + k, n, next, 2); return;
    case 1: q ? dot_q(type, row, xs + k, res + k, n, next, 1) : dot_wide(kind, row, xs + k, res + k, n, next, 1); return;
    default: return;
    }
}

AVX512 static void avx512_dot_many(pi_type type, const void *row, const float *const *xs, size_t nx,
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

AVX512 static float avx512_dot_then(pi_type type, const void *row, const float *x, size_t n,
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

AVX512 static float avx512_dot(pi_type type, const void *row, const float *x, size_t n)
{
    return avx512_dot_then(type, row, x, n, NULL);
}

AVX512 static void avx512_axpy_many(pi_type type, const float *as, const void *row, float *const *ys,
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

AVX512 static void avx512_axpy_then(pi_type type, float a, const void *row, float *y, size_t n,
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

AVX512 static void avx512_axpy(pi_type type, float a, const void *row, float *y, size_t n)
{
    avx512_axpy_then(type, a, row, y, n, NULL);
}

static const ffn_kernels avx512 = {
    .name = "avx512",
    .dot = avx512_dot,
    .axpy = avx512_axpy,
    .dot_then = avx512_dot_then,
    .axpy_then = avx512_axpy_then,
    .dot_many = avx512_dot_many,
    .axpy_many = avx512_axpy_many,
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
