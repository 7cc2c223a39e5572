/* Tensor element types: names, block layouts, fp16/bf16 conversion and the
 * plain reference row kernels that optimised variants are tested against. */
#include "quant.h"
#include "quant_simd.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define QK 32 /* elements per Q8_0 / Q4_0 block */
#define Q8_0_BYTES (2 + QK)
#define Q4_0_BYTES (2 + QK / 2)

/* K-quant super-blocks of QK_K elements (llama.cpp's block_q4_K, block_q5_K,
 * block_q6_K; docs/formats.md). Byte offsets inside one super-block: */
#define QK_K 256
#define Q4_K_BYTES 144  /* d, dmin (fp16), scales[12], qs[128] */
#define Q5_K_BYTES 176  /* d, dmin, scales[12], qh[32], qs[128] */
#define Q6_K_BYTES 210  /* ql[128], qh[64], scales[16] (int8), d */
#define KQ_SCALES 4     /* Q4_K/Q5_K: the 12 bytes of packed 6-bit scales and mins */
#define Q4_K_QS 16
#define Q5_K_QH 16
#define Q5_K_QS 48
#define Q6_K_QH 128
#define Q6_K_SC 192
#define Q6_K_D 208

/* ggml's type numbers; gaps are types ggml removed. */
static const char *const ggml_names[] = {
    [0] = "f32", [1] = "f16", [2] = "q4_0", [3] = "q4_1", [6] = "q5_0",
    [7] = "q5_1", [8] = "q8_0", [9] = "q8_1", [10] = "q2_K", [11] = "q3_K",
    [12] = "q4_K", [13] = "q5_K", [14] = "q6_K", [15] = "q8_K",
    [16] = "iq2_xxs", [17] = "iq2_xs", [18] = "iq3_xxs", [19] = "iq1_s",
    [20] = "iq4_nl", [21] = "iq3_s", [22] = "iq2_s", [23] = "iq4_xs",
    [24] = "i8", [25] = "i16", [26] = "i32", [27] = "i64", [28] = "f64",
    [29] = "iq1_m", [30] = "bf16", [34] = "tq1_0", [35] = "tq2_0",
    [39] = "mxfp4",
};

const char *pi_type_ggml_name(int type)
{
    if (type < 0 || (size_t)type >= sizeof ggml_names / sizeof ggml_names[0])
        return NULL;
    return ggml_names[type];
}

int pi_type_supported(int type)
{
    switch (type) {
    case PI_TYPE_F32: case PI_TYPE_F16: case PI_TYPE_BF16:
    case PI_TYPE_Q8_0: case PI_TYPE_Q4_0:
    case PI_TYPE_Q4_K: case PI_TYPE_Q5_K: case PI_TYPE_Q6_K:
        return 1;
    default:
        return 0;
    }
}

const char *pi_type_name(int type)
{
    return pi_type_supported(type) ? pi_type_ggml_name(type) : NULL;
}

size_t pi_type_block_elems(pi_type type)
{
    switch (type) {
    case PI_TYPE_Q8_0: case PI_TYPE_Q4_0: return QK;
    case PI_TYPE_Q4_K: case PI_TYPE_Q5_K: case PI_TYPE_Q6_K: return QK_K;
    default: return 1;
    }
}

size_t pi_type_block_bytes(pi_type type)
{
    switch (type) {
    case PI_TYPE_F32: return 4;
    case PI_TYPE_F16: return 2;
    case PI_TYPE_BF16: return 2;
    case PI_TYPE_Q8_0: return Q8_0_BYTES;
    case PI_TYPE_Q4_0: return Q4_0_BYTES;
    case PI_TYPE_Q4_K: return Q4_K_BYTES;
    case PI_TYPE_Q5_K: return Q5_K_BYTES;
    case PI_TYPE_Q6_K: return Q6_K_BYTES;
    }
    return 0;
}

int pi_row_bytes(pi_type type, uint64_t n, size_t *out)
{
    size_t be = pi_type_block_elems(type), bb = pi_type_block_bytes(type);
    if (bb == 0 || n % be != 0)
        return -1;
    uint64_t blocks = n / be;
    if (blocks > SIZE_MAX / bb)
        return -1;
    *out = (size_t)blocks * bb;
    return 0;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float pi_fp16_to_fp32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f) /* inf / nan: payload kept */
        return bits_f32(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) /* zero or subnormal: mant * 2^-24, exact in fp32 */
        return (sign ? -1.0f : 1.0f) * (float)mant * 0x1p-24f;
    return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t pi_fp32_to_fp16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t exp = (x >> 23) & 0xff, mant = x & 0x7fffff;
    if (exp == 0xff) {
        if (mant) /* nan stays nan (quiet), keeping the top payload bits */
            return (uint16_t)(sign | 0x7e00 | (mant >> 13));
        return (uint16_t)(sign | 0x7c00);
    }
    int e = (int)exp - 127 + 15;
    if (e >= 31)
        return (uint16_t)(sign | 0x7c00);
    if (e <= 0) {
        /* Subnormal half: m = full mantissa * 2^(e-14); below 2^-25 rounds to 0. */
        if (e < -10)
            return sign;
        uint32_t full = mant | 0x800000u;
        unsigned shift = (unsigned)(14 - e);
        uint32_t m = full >> shift, rem = full & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (m & 1)))
            m++; /* may carry into the smallest normal: still the right bits */
        return (uint16_t)(sign | m);
    }
    uint32_t h = ((uint32_t)e << 10) | (mant >> 13), rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
        h++; /* a carry out of the mantissa bumps the exponent, up to inf */
    return (uint16_t)(sign | h);
}

float pi_bf16_to_fp32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

uint16_t pi_fp32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40); /* quiet nan; never rounds to inf */
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

static float load_fp16(const uint8_t *p)
{
    return pi_fp16_to_fp32((uint16_t)(p[0] | (p[1] << 8)));
}

static void store_fp16(uint8_t *p, float f)
{
    uint16_t h = pi_fp32_to_fp16(f);
    p[0] = (uint8_t)(h & 0xff);
    p[1] = (uint8_t)(h >> 8);
}

/* Scale and min j (0..7) of a Q4_K/Q5_K super-block, 6 bits each, from the
 * 12 packed bytes p: the first four pairs are the low 6 bits of p[j] and
 * p[j+4]; the last four take their low 4 bits from p[j+4]'s nibbles and
 * their top 2 bits from the spare top bits of p[j-4] (scale) and p[j] (min). */
static void kq_scale_min(const uint8_t *p, int j, int *sc, int *m)
{
    if (j < 4) {
        *sc = p[j] & 63;
        *m = p[j + 4] & 63;
    } else {
        *sc = (p[j + 4] & 0x0f) | ((p[j - 4] >> 6) << 4);
        *m = (p[j + 4] >> 4) | ((p[j] >> 6) << 4);
    }
}

/* Q4_K and Q5_K (qh NULL for Q4_K): 4 groups of 64 elements; group g reads
 * 32 bytes of qs, low nibbles for its first 32 elements (sub-block 2g),
 * high nibbles for the next 32 (sub-block 2g+1); Q5_K's fifth bit of
 * element l of sub-block s is bit s of qh[l]. */
static void dequant_k45(const uint8_t *b, const uint8_t *qh, const uint8_t *qs, float *out)
{
    float d = load_fp16(b), dmin = load_fp16(b + 2);
    for (int s = 0; s < 8; s++) {
        int sc, m;
        kq_scale_min(b + KQ_SCALES, s, &sc, &m);
        float ds = d * (float)sc, ms = dmin * (float)m;
        const uint8_t *q = qs + 32 * (s / 2);
        for (int l = 0; l < 32; l++) {
            int v = (s % 2) ? q[l] >> 4 : q[l] & 0x0f;
            if (qh)
                v |= ((qh[l] >> s) & 1) << 4;
            out[32 * s + l] = ds * (float)v - ms;
        }
    }
}

/* Q6_K: 2 halves of 128; half h uses ql[64h..64h+64), qh[32h..32h+32) and
 * scales[8h..8h+8). Element 32k + l of a half (k = 0..3, l = 0..31) has its
 * low 4 bits in the low (k = 0, 1) or high (k = 2, 3) nibble of ql[l + 32 *
 * (k % 2)], its top 2 bits at bit 2k of qh[l], and the scale of its 16. */
static void dequant_q6_k(const uint8_t *b, float *out)
{
    float d = load_fp16(b + Q6_K_D);
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b + 64 * h, *qh = b + Q6_K_QH + 32 * h;
        const uint8_t *sc = b + Q6_K_SC + 8 * h;
        for (int k = 0; k < 4; k++) {
            for (int l = 0; l < 32; l++) {
                int lo = k < 2 ? ql[l + 32 * (k % 2)] & 0x0f : ql[l + 32 * (k % 2)] >> 4;
                int q = (lo | (((qh[l] >> (2 * k)) & 3) << 4)) - 32;
                float s = d * (float)(int8_t)sc[2 * k + l / 16];
                out[128 * h + 32 * k + l] = s * (float)q;
            }
        }
    }
}

/* Element i of a row as float. The plain, obviously-right definition. */
static void block_to_f32(pi_type type, const void *src, size_t blk, float *out)
{
    const uint8_t *b = src;
    switch (type) {
    case PI_TYPE_F32:
        memcpy(out, b + blk * 4, 4);
        return;
    case PI_TYPE_F16:
        out[0] = load_fp16(b + blk * 2);
        return;
    case PI_TYPE_BF16:
        out[0] = pi_bf16_to_fp32((uint16_t)(b[blk * 2] | (b[blk * 2 + 1] << 8)));
        return;
    case PI_TYPE_Q8_0: {
        const uint8_t *q = b + blk * Q8_0_BYTES;
        float d = load_fp16(q);
        for (int j = 0; j < QK; j++)
            out[j] = (float)(int8_t)q[2 + j] * d;
        return;
    }
    case PI_TYPE_Q4_0: {
        const uint8_t *q = b + blk * Q4_0_BYTES;
        float d = load_fp16(q);
        for (int j = 0; j < QK / 2; j++) {
            out[j] = (float)((q[2 + j] & 0x0f) - 8) * d;
            out[j + QK / 2] = (float)((q[2 + j] >> 4) - 8) * d;
        }
        return;
    }
    case PI_TYPE_Q4_K: {
        const uint8_t *q = b + blk * Q4_K_BYTES;
        dequant_k45(q, NULL, q + Q4_K_QS, out);
        return;
    }
    case PI_TYPE_Q5_K: {
        const uint8_t *q = b + blk * Q5_K_BYTES;
        dequant_k45(q, q + Q5_K_QH, q + Q5_K_QS, out);
        return;
    }
    case PI_TYPE_Q6_K:
        dequant_q6_k(b + blk * Q6_K_BYTES, out);
        return;
    }
}

void pi_dequantize_row(pi_type type, const void *src, float *dst, size_t n)
{
    size_t be = pi_type_block_elems(type);
    for (size_t i = 0; i < n / be; i++)
        block_to_f32(type, src, i, dst + i * be);
}

static void quantize_q8_0(const float *x, uint8_t *q)
{
    float amax = 0.0f;
    for (int j = 0; j < QK; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    store_fp16(q, d);
    for (int j = 0; j < QK; j++)
        q[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
}

static void quantize_q4_0(const float *x, uint8_t *q)
{
    /* The signed value of largest magnitude maps to -8, so the full range is used. */
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QK; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    store_fp16(q, d);
    for (int j = 0; j < QK / 2; j++) {
        int a = (int)(x[j] * id + 8.5f), b = (int)(x[j + QK / 2] * id + 8.5f);
        a = a > 15 ? 15 : a;
        b = b > 15 ? 15 : b;
        q[2 + j] = (uint8_t)(a | (b << 4));
    }
}

/* round(v) clamped to [lo, hi], clamped before the conversion so that no
 * out-of-range float (or NaN, which gives lo) reaches an int. */
static int round_clamp(float v, int lo, int hi)
{
    if (!(v >= (float)lo))
        return lo;
    if (v >= (float)hi)
        return hi;
    return (int)lroundf(v);
}

/* Q4_K (qmax 15) and Q5_K (qmax 31): each sub-block of 32 gets x ~ s*q - m
 * with m >= 0 (its minimum, clipped at 0) and s = range / qmax; the eight
 * s and m are then 6-bit multiples of the super-block's d and dmin. The
 * levels q are chosen against the stored (rounded) scales. */
static void quantize_k45(const float *x, uint8_t *b, uint8_t *qh, uint8_t *qs, int qmax)
{
    float sub_s[8], sub_m[8], max_s = 0.0f, max_m = 0.0f;
    for (int s = 0; s < 8; s++) {
        float lo = 0.0f, hi = 0.0f;
        for (int l = 0; l < 32; l++) {
            lo = fminf(lo, x[32 * s + l]);
            hi = fmaxf(hi, x[32 * s + l]);
        }
        sub_s[s] = (hi - lo) / (float)qmax;
        sub_m[s] = -lo;
        max_s = fmaxf(max_s, sub_s[s]);
        max_m = fmaxf(max_m, sub_m[s]);
    }
    store_fp16(b, max_s / 63.0f);
    store_fp16(b + 2, max_m / 63.0f);
    float d = load_fp16(b), dmin = load_fp16(b + 2);
    uint8_t sc[8], mn[8];
    for (int s = 0; s < 8; s++) {
        sc[s] = (uint8_t)(d > 0.0f ? round_clamp(sub_s[s] / d, 0, 63) : 0);
        /* the min rounds up so that x + m stays >= 0 and no level clips below */
        mn[s] = (uint8_t)(dmin > 0.0f ? round_clamp(ceilf(sub_m[s] / dmin), 0, 63) : 0);
    }
    uint8_t *p = b + KQ_SCALES;
    for (int j = 0; j < 4; j++) {
        p[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
        p[j + 4] = (uint8_t)(mn[j] | ((mn[j + 4] >> 4) << 6));
        p[j + 8] = (uint8_t)((sc[j + 4] & 0x0f) | ((mn[j + 4] & 0x0f) << 4));
    }
    memset(qs, 0, QK_K / 2);
    if (qh)
        memset(qh, 0, QK_K / 8);
    for (int s = 0; s < 8; s++) {
        float ds = d * (float)sc[s], ms = dmin * (float)mn[s];
        for (int l = 0; l < 32; l++) {
            int q = ds > 0.0f ? round_clamp((x[32 * s + l] + ms) / ds, 0, qmax) : 0;
            qs[32 * (s / 2) + l] |= (uint8_t)((q & 0x0f) << (4 * (s % 2)));
            if (qh)
                qh[l] |= (uint8_t)(((q >> 4) & 1) << s);
        }
    }
}

/* Q6_K: each sub-block of 16 gets x ~ s*q, q in -32..31, s = amax / 31;
 * the sixteen s are int8 multiples of d = max|s| / 127. */
static void quantize_q6_k(const float *x, uint8_t *b)
{
    float sub[16], max_s = 0.0f;
    for (int s = 0; s < 16; s++) {
        float amax = 0.0f;
        for (int l = 0; l < 16; l++)
            amax = fmaxf(amax, fabsf(x[16 * s + l]));
        sub[s] = amax / 31.0f;
        max_s = fmaxf(max_s, sub[s]);
    }
    store_fp16(b + Q6_K_D, max_s / 127.0f);
    float d = load_fp16(b + Q6_K_D);
    int8_t sc[16];
    for (int s = 0; s < 16; s++) {
        sc[s] = (int8_t)(d > 0.0f ? round_clamp(sub[s] / d, 0, 127) : 0);
        b[Q6_K_SC + s] = (uint8_t)sc[s];
    }
    memset(b, 0, Q6_K_SC);   /* ql and qh */
    for (int i = 0; i < QK_K; i++) {
        float ds = d * (float)sc[i / 16];
        int q = ds > 0.0f ? round_clamp(x[i] / ds, -32, 31) + 32 : 32;
        /* the inverse of dequant_q6_k's placement */
        int h = i / 128, k = (i % 128) / 32, l = i % 32;
        b[64 * h + l + 32 * (k % 2)] |= (uint8_t)((q & 0x0f) << (k < 2 ? 0 : 4));
        b[Q6_K_QH + 32 * h + l] |= (uint8_t)((q >> 4) << (2 * k));
    }
}

void pi_quantize_row(pi_type type, const float *src, void *dst, size_t n)
{
    uint8_t *d = dst;
    switch (type) {
    case PI_TYPE_F32:
        memcpy(dst, src, n * 4);
        return;
    case PI_TYPE_F16:
        for (size_t i = 0; i < n; i++)
            store_fp16(d + 2 * i, src[i]);
        return;
    case PI_TYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = pi_fp32_to_bf16(src[i]);
            d[2 * i] = (uint8_t)(h & 0xff);
            d[2 * i + 1] = (uint8_t)(h >> 8);
        }
        return;
    case PI_TYPE_Q8_0:
        for (size_t i = 0; i < n / QK; i++)
            quantize_q8_0(src + i * QK, d + i * Q8_0_BYTES);
        return;
    case PI_TYPE_Q4_0:
        for (size_t i = 0; i < n / QK; i++)
            quantize_q4_0(src + i * QK, d + i * Q4_0_BYTES);
        return;
    case PI_TYPE_Q4_K:
        for (size_t i = 0; i < n / QK_K; i++) {
            uint8_t *b = d + i * Q4_K_BYTES;
            quantize_k45(src + i * QK_K, b, NULL, b + Q4_K_QS, 15);
        }
        return;
    case PI_TYPE_Q5_K:
        for (size_t i = 0; i < n / QK_K; i++) {
            uint8_t *b = d + i * Q5_K_BYTES;
            quantize_k45(src + i * QK_K, b, b + Q5_K_QH, b + Q5_K_QS, 31);
        }
        return;
    case PI_TYPE_Q6_K:
        for (size_t i = 0; i < n / QK_K; i++)
            quantize_q6_k(src + i * QK_K, d + i * Q6_K_BYTES);
        return;
    }
}

float pi_dot_row(pi_type type, const void *row, const float *x, size_t n)
{
    size_t be = pi_type_block_elems(type);
    float buf[PI_MAX_BLOCK_ELEMS], sum = 0.0f;
    if (quant_simd_dot(type, row, x, n, &sum))
        return sum;
    for (size_t i = 0; i < n / be; i++) {
        block_to_f32(type, row, i, buf);
        for (size_t j = 0; j < be; j++)
            sum += buf[j] * x[i * be + j];
    }
    return sum;
}

void pi_axpy_row(pi_type type, float a, const void *row, float *y, size_t n)
{
    size_t be = pi_type_block_elems(type);
    float buf[PI_MAX_BLOCK_ELEMS];
    if (quant_simd_axpy(type, a, row, y, n))
        return;
    for (size_t i = 0; i < n / be; i++) {
        block_to_f32(type, row, i, buf);
        for (size_t j = 0; j < be; j++)
            y[i * be + j] += a * buf[j];
    }
}
