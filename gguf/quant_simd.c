/* quant_simd.h */
#include "quant_simd.h"

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>

/* The probe runs once; a race only repeats it (the answer is the same). */
static int cpu_ok(void)
{
    static _Atomic int state; /* 0 unknown, 1 yes, 2 no */
    int s = state;
    if (s == 0) {
        unsigned a, b, c, d;
        __builtin_cpu_init();
        int f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
        s = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c ? 1 : 2;
        state = s;
    }
    return s == 1;
}

/* Element i of an F16 row that may sit at any byte address. */
__attribute__((target("f16c"))) static float f16_at(const uint8_t *w, size_t i)
{
    uint16_t h;
    memcpy(&h, w + 2 * i, sizeof h);
    return _cvtsh_ss(h);
}

__attribute__((target("avx2,fma"))) static float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Four independent accumulators: the FMA latency, not the loads, bounds one. */
__attribute__((target("avx2,fma,f16c"))) static float dot_f16(const uint8_t *w, const float *x, size_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 2 * (i)))), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 2 * (i + 8)))),
                             _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 2 * (i + 16)))),
                             _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 2 * (i + 24)))),
                             _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 2 * (i)))), _mm256_loadu_ps(x + i), a0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++)
        s += f16_at(w, i) * x[i];
    return s;
}

__attribute__((target("avx2,fma"))) static float dot_f32(const float *w, const float *x, size_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++)
        s += w[i] * x[i];
    return s;
}

/* y += a * w with a multiply then an add (no FMA): the scalar loop's roundings. */
__attribute__((target("avx2,f16c"))) static void axpy_f16(float a, const uint8_t *w, float *y, size_t n)
{
    __m256 va = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 p = _mm256_mul_ps(va, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 2 * (i)))));
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), p));
    }
    for (; i < n; i++) {
        float p = a * f16_at(w, i);
        y[i] += p;
    }
}

__attribute__((target("avx2"))) static void axpy_f32(float a, const float *w, float *y, size_t n)
{
    __m256 va = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 p = _mm256_mul_ps(va, _mm256_loadu_ps(w + i));
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), p));
    }
    for (; i < n; i++) {
        float p = a * w[i];
        y[i] += p;
    }
}

int quant_simd_dot(pi_type type, const void *row, const float *x, size_t n, float *out)
{
    if ((type != PI_TYPE_F16 && type != PI_TYPE_F32) || !cpu_ok())
        return 0;
    *out = type == PI_TYPE_F16 ? dot_f16(row, x, n) : dot_f32(row, x, n);
    return 1;
}

int quant_simd_axpy(pi_type type, float a, const void *row, float *y, size_t n)
{
    if ((type != PI_TYPE_F16 && type != PI_TYPE_F32) || !cpu_ok())
        return 0;
    if (type == PI_TYPE_F16)
        axpy_f16(a, row, y, n);
    else
        axpy_f32(a, row, y, n);
    return 1;
}

#else

int quant_simd_dot(pi_type type, const void *row, const float *x, size_t n, float *out)
{
    (void)type, (void)row, (void)x, (void)n, (void)out;
    return 0;
}

int quant_simd_axpy(pi_type type, float a, const void *row, float *y, size_t n)
{
    (void)type, (void)a, (void)row, (void)y, (void)n;
    return 0;
}

#endif
