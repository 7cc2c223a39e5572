/* AVX-512 (F, BW, VL) row kernels for the sparse FFN (ffn_sparse.h), 16
 * lanes wide; a row's ragged end is read and written with masked loads and
 * stores (BW+VL for the 16-bit ones), which never touch memory past the row.
 * As in the AVX2 file: target attributes on the functions only, x kept in
 * fp32 (never quantized). F16 and BF16 rows share one kernel (bf picks the
 * widening; BF16 widens exactly by a shift). A quantized block
 * is widened to its exact int8 values and its fp16 scale applied once per
 * block: results differ from the plain ones only by fp32 rounding order. */
#include "ffn_sparse.h"

#if defined(__x86_64__)

#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c")))
#define QK 32

AVX512 static __mmask16 tail_mask(size_t left)
{
    return (__mmask16)((1u << left) - 1u);
}

AVX512 static float load_f16(const uint8_t *p)
{
    return _cvtsh_ss((unsigned short)(p[0] | (p[1] << 8)));
}

AVX512 static __m512 f16x16(const uint8_t *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

AVX512 static __m512 f16x16_mask(const uint8_t *p, __mmask16 m)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

/* 16 bf16 lanes as floats: each the top half of its float. */
AVX512 static __m512 bf16_widen(__m256i h)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* 16 half-width lanes (bf: bf16, else f16) as floats. */
AVX512 static __m512 h16x16(const uint8_t *p, int bf)
{
    return bf ? bf16_widen(_mm256_loadu_si256((const __m256i *)p)) : f16x16(p);
}

AVX512 static __m512 h16x16_mask(const uint8_t *p, __mmask16 m, int bf)
{
    return bf ? bf16_widen(_mm256_maskz_loadu_epi16(m, p)) : f16x16_mask(p, m);
}

AVX512 static float dot_f32(const float *w, const float *x, size_t n, const void *next)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        for (size_t b = 0; b < 256; b += 64)
            ffn_prefetch_ahead(w, 4 * n, next, 4 * i + b);
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 32), _mm512_loadu_ps(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 48), _mm512_loadu_ps(x + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16)
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + i), _mm512_maskz_loadu_ps(m, x + i), a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

AVX512 static float dot_h16(const uint8_t *w, const float *x, size_t n, const void *next, int bf)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        ffn_prefetch_ahead(w, 2 * n, next, 2 * i);
        ffn_prefetch_ahead(w, 2 * n, next, 2 * i + 64);
        a0 = _mm512_fmadd_ps(h16x16(w + 2 * i, bf), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(h16x16(w + 2 * i + 32, bf), _mm512_loadu_ps(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(h16x16(w + 2 * i + 64, bf), _mm512_loadu_ps(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(h16x16(w + 2 * i + 96, bf), _mm512_loadu_ps(x + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16)
        a0 = _mm512_fmadd_ps(h16x16(w + 2 * i, bf), _mm512_loadu_ps(x + i), a0);
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        a1 = _mm512_fmadd_ps(h16x16_mask(w + 2 * i, m, bf), _mm512_maskz_loadu_ps(m, x + i), a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* 16 int8 lanes as floats. */
AVX512 static __m512 qf(__m128i q)
{
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
}

/* A Q8_0 or Q4_0 block as signed int8 elements 0..15 (lo), 16..31 (hi). */
AVX512 static __m512 block_q(pi_type type, const uint8_t *b, __m128i *lo, __m128i *hi)
{
    __m512 d = _mm512_set1_ps(load_f16(b));
    if (type == PI_TYPE_Q8_0) {
        *lo = _mm_loadu_si128((const __m128i *)(b + 2));
        *hi = _mm_loadu_si128((const __m128i *)(b + 18));
    } else {
        __m128i q = _mm_loadu_si128((const __m128i *)(b + 2)), m = _mm_set1_epi8(0x0f);
        __m128i eight = _mm_set1_epi8(8);
        *lo = _mm_sub_epi8(_mm_and_si128(q, m), eight);
        *hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), m), eight);
    }
    return d;
}

/* Per block: s = sum q_i x_i over its 32 lanes, then acc += d * s, so the
 * scale costs one multiply per block instead of one per vector. */
AVX512 static float dot_q(pi_type type, const uint8_t *w, const float *x, size_t n,
                          const void *next)
{
    size_t bb = pi_type_block_bytes(type), nb = n / QK, blk = 0;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    for (; blk + 2 <= nb; blk += 2) {   /* two blocks: two independent sums */
        __m128i lo, hi, lo2, hi2;
        ffn_prefetch_ahead(w, nb * bb, next, blk * bb);   /* a block is < 64 bytes */
        ffn_prefetch_ahead(w, nb * bb, next, (blk + 1) * bb);
        __m512 d = block_q(type, w + blk * bb, &lo, &hi);
        __m512 d2 = block_q(type, w + (blk + 1) * bb, &lo2, &hi2);
        const float *xb = x + blk * QK;
        __m512 s = _mm512_mul_ps(qf(lo), _mm512_loadu_ps(xb));
        __m512 s2 = _mm512_mul_ps(qf(lo2), _mm512_loadu_ps(xb + 32));
        s = _mm512_fmadd_ps(qf(hi), _mm512_loadu_ps(xb + 16), s);
        s2 = _mm512_fmadd_ps(qf(hi2), _mm512_loadu_ps(xb + 48), s2);
        a0 = _mm512_fmadd_ps(s, d, a0);
        a1 = _mm512_fmadd_ps(s2, d2, a1);
    }
    if (blk < nb) {
        __m128i lo, hi;
        __m512 d = block_q(type, w + blk * bb, &lo, &hi);
        const float *xb = x + blk * QK;
        __m512 s = _mm512_mul_ps(qf(lo), _mm512_loadu_ps(xb));
        s = _mm512_fmadd_ps(qf(hi), _mm512_loadu_ps(xb + 16), s);
        a0 = _mm512_fmadd_ps(s, d, a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

AVX512 static float avx512_dot_then(pi_type type, const void *row, const float *x, size_t n,
                                    const void *next)
{
    switch (type) {
    case PI_TYPE_F32: return dot_f32(row, x, n, next);
    case PI_TYPE_F16: return dot_h16(row, x, n, next, 0);
    case PI_TYPE_BF16: return dot_h16(row, x, n, next, 1);
    case PI_TYPE_Q8_0:
    case PI_TYPE_Q4_0: return dot_q(type, row, x, n, next);
    default: return pi_dot_row(type, row, x, n);
    }
}

AVX512 static float avx512_dot(pi_type type, const void *row, const float *x, size_t n)
{
    return avx512_dot_then(type, row, x, n, NULL);
}

AVX512 static void axpy_f32(float a, const float *w, float *y, size_t n, const void *next)
{
    __m512 va = _mm512_set1_ps(a);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        ffn_prefetch_ahead(w, 4 * n, next, 4 * i);
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(_mm512_loadu_ps(w + i), va, _mm512_loadu_ps(y + i)));
    }
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        __m512 r = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + i), va, _mm512_maskz_loadu_ps(m, y + i));
        _mm512_mask_storeu_ps(y + i, m, r);
    }
}

AVX512 static void axpy_h16(float a, const uint8_t *w, float *y, size_t n, const void *next, int bf)
{
    __m512 va = _mm512_set1_ps(a);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        if (i % 32 == 0)   /* every 64 bytes */
            ffn_prefetch_ahead(w, 2 * n, next, 2 * i);
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(h16x16(w + 2 * i, bf), va, _mm512_loadu_ps(y + i)));
    }
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        __m512 r = _mm512_fmadd_ps(h16x16_mask(w + 2 * i, m, bf), va, _mm512_maskz_loadu_ps(m, y + i));
        _mm512_mask_storeu_ps(y + i, m, r);
    }
}

/* y += (a * d) * q: one scalar multiply per block. */
AVX512 static void axpy_q(pi_type type, float a, const uint8_t *w, float *y, size_t n,
                          const void *next)
{
    size_t bb = pi_type_block_bytes(type);
    for (size_t blk = 0; blk < n / QK; blk++) {
        __m128i lo, hi;
        ffn_prefetch_ahead(w, n / QK * bb, next, blk * bb);
        __m512 ad = _mm512_mul_ps(block_q(type, w + blk * bb, &lo, &hi), _mm512_set1_ps(a));
        float *yb = y + blk * QK;
        _mm512_storeu_ps(yb, _mm512_fmadd_ps(qf(lo), ad, _mm512_loadu_ps(yb)));
        _mm512_storeu_ps(yb + 16, _mm512_fmadd_ps(qf(hi), ad, _mm512_loadu_ps(yb + 16)));
    }
}

AVX512 static void avx512_axpy_then(pi_type type, float a, const void *row, float *y, size_t n,
                                    const void *next)
{
    switch (type) {
    case PI_TYPE_F32: axpy_f32(a, row, y, n, next); return;
    case PI_TYPE_F16: axpy_h16(a, row, y, n, next, 0); return;
    case PI_TYPE_BF16: axpy_h16(a, row, y, n, next, 1); return;
    case PI_TYPE_Q8_0:
    case PI_TYPE_Q4_0: axpy_q(type, a, row, y, n, next); return;
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
