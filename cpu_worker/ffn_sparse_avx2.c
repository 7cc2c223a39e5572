/* AVX2 + FMA + F16C row kernels for the sparse FFN (ffn_sparse.h). Only the
 * functions carry the target attribute, so the file builds into a binary
 * that runs on any x86-64; ffn_dispatch.c calls them only where cpuid says
 * the CPU has these instructions. x stays in fp32 (it is never quantized):
 * a quantized weight is widened to q * d, which is exact in fp32 (8-bit q
 * times an fp16 scale), so results differ from the plain ones only by the
 * order of the fp32 sums. F16 and BF16 rows share one kernel (bf picks the
 * widening; BF16 widens exactly by a shift). */
#include "ffn_sparse.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define QK 32

AVX2 static float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 static float load_f32(const char *p)
{
    float f;
    memcpy(&f, p, 4);
    return f;
}

AVX2 static float load_f16(const uint8_t *p)
{
    return _cvtsh_ss((unsigned short)(p[0] | (p[1] << 8)));
}

AVX2 static __m256 f16x8(const uint8_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* One half-width value (bf: bf16, else f16) as a float. */
AVX2 static float load_h16(const uint8_t *p, int bf)
{
    if (!bf)
        return load_f16(p);
    uint32_t u = (uint32_t)(p[0] | (p[1] << 8)) << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Eight half-width lanes as floats; bf16 is the top half of its float. */
AVX2 static __m256 h16x8(const uint8_t *p, int bf)
{
    if (!bf)
        return f16x8(p);
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

AVX2 static float dot_f32(const char *w, const float *x, size_t n, const void *next)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        ffn_prefetch_ahead(w, 4 * n, next, 4 * i);
        ffn_prefetch_ahead(w, 4 * n, next, 4 * i + 64);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps((const float *)(w + 4 * i)), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps((const float *)(w + 4 * i + 32)), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps((const float *)(w + 4 * i + 64)), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps((const float *)(w + 4 * i + 96)), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps((const float *)(w + 4 * i)), _mm256_loadu_ps(x + i), a0);
    float s = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++)
        s += load_f32(w + 4 * i) * x[i];
    return s;
}

AVX2 static float dot_h16(const uint8_t *w, const float *x, size_t n, const void *next, int bf)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        ffn_prefetch_ahead(w, 2 * n, next, 2 * i);
        a0 = _mm256_fmadd_ps(h16x8(w + 2 * i, bf), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(h16x8(w + 2 * i + 16, bf), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(h16x8(w + 2 * i + 32, bf), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(h16x8(w + 2 * i + 48, bf), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(h16x8(w + 2 * i, bf), _mm256_loadu_ps(x + i), a0);
    float s = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++)
        s += load_h16(w + 2 * i, bf) * x[i];
    return s;
}

/* Eight int8 lanes (the low 8 bytes of q) as floats times d: exact. */
AVX2 static __m256 q8x8(__m128i q, __m256 d)
{
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d);
}

/* A Q8_0 or Q4_0 block as 32 signed int8 values in lo (elements 0..15) and
 * hi (16..31), and its scale. */
AVX2 static __m256 block_q(pi_type type, const uint8_t *b, __m128i *lo, __m128i *hi)
{
    __m256 d = _mm256_set1_ps(load_f16(b));
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

AVX2 static float dot_q(pi_type type, const uint8_t *w, const float *x, size_t n,
                        const void *next)
{
    size_t bb = pi_type_block_bytes(type);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t blk = 0; blk < n / QK; blk++) {
        __m128i lo, hi;
        ffn_prefetch_ahead(w, n / QK * bb, next, blk * bb);   /* a block is < 64 bytes */
        __m256 d = block_q(type, w + blk * bb, &lo, &hi);
        const float *xb = x + blk * QK;
        a0 = _mm256_fmadd_ps(q8x8(lo, d), _mm256_loadu_ps(xb), a0);
        a1 = _mm256_fmadd_ps(q8x8(_mm_srli_si128(lo, 8), d), _mm256_loadu_ps(xb + 8), a1);
        a2 = _mm256_fmadd_ps(q8x8(hi, d), _mm256_loadu_ps(xb + 16), a2);
        a3 = _mm256_fmadd_ps(q8x8(_mm_srli_si128(hi, 8), d), _mm256_loadu_ps(xb + 24), a3);
    }
    return hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}

AVX2 static float avx2_dot_then(pi_type type, const void *row, const float *x, size_t n,
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

AVX2 static float avx2_dot(pi_type type, const void *row, const float *x, size_t n)
{
    return avx2_dot_then(type, row, x, n, NULL);
}

AVX2 static void axpy_f32(float a, const char *w, float *y, size_t n, const void *next)
{
    __m256 va = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        if (i % 16 == 0)   /* every 64 bytes */
            ffn_prefetch_ahead(w, 4 * n, next, 4 * i);
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(_mm256_loadu_ps((const float *)(w + 4 * i)), va,
                                                _mm256_loadu_ps(y + i)));
    }
    for (; i < n; i++)
        y[i] += a * load_f32(w + 4 * i);
}

AVX2 static void axpy_h16(float a, const uint8_t *w, float *y, size_t n, const void *next, int bf)
{
    __m256 va = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        if (i % 32 == 0)   /* every 64 bytes */
            ffn_prefetch_ahead(w, 2 * n, next, 2 * i);
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(h16x8(w + 2 * i, bf), va, _mm256_loadu_ps(y + i)));
    }
    for (; i < n; i++)
        y[i] += a * load_h16(w + 2 * i, bf);
}

AVX2 static void axpy_q(pi_type type, float a, const uint8_t *w, float *y, size_t n,
                        const void *next)
{
    size_t bb = pi_type_block_bytes(type);
    __m256 va = _mm256_set1_ps(a);
    for (size_t blk = 0; blk < n / QK; blk++) {
        __m128i lo, hi;
        ffn_prefetch_ahead(w, n / QK * bb, next, blk * bb);
        __m256 d = block_q(type, w + blk * bb, &lo, &hi);
        float *yb = y + blk * QK;
        _mm256_storeu_ps(yb, _mm256_fmadd_ps(q8x8(lo, d), va, _mm256_loadu_ps(yb)));
        _mm256_storeu_ps(yb + 8, _mm256_fmadd_ps(q8x8(_mm_srli_si128(lo, 8), d), va,
                                                 _mm256_loadu_ps(yb + 8)));
        _mm256_storeu_ps(yb + 16, _mm256_fmadd_ps(q8x8(hi, d), va, _mm256_loadu_ps(yb + 16)));
        _mm256_storeu_ps(yb + 24, _mm256_fmadd_ps(q8x8(_mm_srli_si128(hi, 8), d), va,
                                                  _mm256_loadu_ps(yb + 24)));
    }
}

AVX2 static void avx2_axpy_then(pi_type type, float a, const void *row, float *y, size_t n,
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
