/* Tensor element types: names, block layouts, fp16/bf16 conversion and the
 * plain reference row kernels that optimised variants are tested against. */
#include "quant.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define QK 32 /* elements per Q8_0 / Q4_0 block */
#define Q8_0_BYTES (2 + QK)
#define Q4_0_BYTES (2 + QK / 2)

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
    return (type == PI_TYPE_Q8_0 || type == PI_TYPE_Q4_0) ? QK : 1;
}

size_t pi_type_block_bytes(pi_type type)
{
    switch (type) {
    case PI_TYPE_F32: return 4;
    case PI_TYPE_F16: return 2;
    case PI_TYPE_BF16: return 2;
    case PI_TYPE_Q8_0: return Q8_0_BYTES;
    case PI_TYPE_Q4_0: return Q4_0_BYTES;
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
    }
}

float pi_dot_row(pi_type type, const void *row, const float *x, size_t n)
{
    size_t be = pi_type_block_elems(type);
    float buf[QK], sum = 0.0f;
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
    float buf[QK];
    for (size_t i = 0; i < n / be; i++) {
        block_to_f32(type, row, i, buf);
        for (size_t j = 0; j < be; j++)
            y[i * be + j] += a * buf[j];
    }
}
