/* Proves the tensor types convert and quantize exactly as llama.cpp's
 * reference code does (hand-computed blocks, correctly rounded fp16/bf16),
 * within stated error bounds, and that dot/axpy match dequantize-then-math. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "quant.h"

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* A small deterministic generator: tests must reproduce. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static float rndf(float scale)
{
    return ((float)(rnd() % 2000001) / 1000000.0f - 1.0f) * scale;
}

static void test_names(void)
{
    CHECK(strcmp(pi_type_name(PI_TYPE_Q8_0), "q8_0") == 0 && strcmp(pi_type_name(PI_TYPE_BF16), "bf16") == 0, "names");
    CHECK(pi_type_name(10) == NULL && strcmp(pi_type_ggml_name(10), "q2_K") == 0, "q2_K known, unsupported");
    CHECK(strcmp(pi_type_name(12), "q4_K") == 0 && strcmp(pi_type_name(13), "q5_K") == 0 &&
          strcmp(pi_type_name(14), "q6_K") == 0 && !pi_type_supported(11) && !pi_type_supported(15), "k-quant names");
    CHECK(strcmp(pi_type_ggml_name(3), "q4_1") == 0 && strcmp(pi_type_ggml_name(15), "q8_K") == 0, "q4_1/q8_K");
    CHECK(strcmp(pi_type_ggml_name(24), "i8") == 0 && strcmp(pi_type_ggml_name(28), "f64") == 0, "i8/f64");
    CHECK(pi_type_ggml_name(4) == NULL && pi_type_ggml_name(-1) == NULL && pi_type_ggml_name(1000) == NULL, "gaps");
    CHECK(pi_type_supported(0) && pi_type_supported(1) && pi_type_supported(2) && pi_type_supported(8) &&
          pi_type_supported(30) && !pi_type_supported(3) && !pi_type_supported(-5), "supported set");
    size_t n;
    CHECK(pi_row_bytes(PI_TYPE_Q8_0, 64, &n) == 0 && n == 68, "q8_0 row");
    CHECK(pi_row_bytes(PI_TYPE_Q4_0, 96, &n) == 0 && n == 54, "q4_0 row");
    CHECK(pi_row_bytes(PI_TYPE_BF16, 3, &n) == 0 && n == 6, "bf16 row");
    CHECK(pi_row_bytes(PI_TYPE_Q4_0, 33, &n) == -1, "partial block");
    CHECK(pi_row_bytes(PI_TYPE_F32, UINT64_MAX / 2, &n) == -1, "overflow");
    CHECK(pi_type_block_elems(PI_TYPE_Q4_K) == 256 && pi_type_block_elems(PI_TYPE_Q5_K) == 256 &&
          pi_type_block_elems(PI_TYPE_Q6_K) == 256, "k-quant block elems");
    CHECK(pi_type_block_bytes(PI_TYPE_Q4_K) == 144 && pi_type_block_bytes(PI_TYPE_Q5_K) == 176 &&
          pi_type_block_bytes(PI_TYPE_Q6_K) == 210, "k-quant block bytes");
    CHECK(pi_row_bytes(PI_TYPE_Q4_K, 512, &n) == 0 && n == 288, "q4_K row");
    CHECK(pi_row_bytes(PI_TYPE_Q6_K, 768, &n) == 0 && n == 630, "q6_K row");
    CHECK(pi_row_bytes(PI_TYPE_Q5_K, 288, &n) == -1, "partial super-block");
}

static void test_fp16(void)
{
    static const struct { float f; uint16_t h; } cases[] = {
        {0.0f, 0x0000}, {-0.0f, 0x8000}, {1.0f, 0x3c00}, {-2.0f, 0xc000}, {0.5f, 0x3800},
        {65504.0f, 0x7bff}, {65519.0f, 0x7bff}, {65520.0f, 0x7c00}, {1e6f, 0x7c00}, {-1e6f, 0xfc00},
        {0x1p-24f, 0x0001}, {0x1p-25f, 0x0000}, {0x1.0002p-25f, 0x0001}, {0x3p-25f, 0x0002},
        {0x1p-26f, 0x0000}, {1023 * 0x1p-24f, 0x03ff}, {0x1p-14f, 0x0400}, {-0x1p-14f, 0x8400},
        {0x1.ffcp-15f, 0x0400}, /* largest subnormal + half ulp ties up to the smallest normal */
        {1.0f + 0x1p-11f, 0x3c00}, {1.0f + 0x3p-11f, 0x3c02}, {1.0f + 0x1.8p-11f, 0x3c01},
        {1e-10f, 0x0000}, {INFINITY, 0x7c00}, {-INFINITY, 0xfc00}, {0.1f, 0x2e66}, {3.14159265f, 0x4248},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t h = pi_fp32_to_fp16(cases[i].f);
        CHECK(h == cases[i].h, "fp16(%a) = 0x%04x, want 0x%04x", (double)cases[i].f, h, cases[i].h);
    }
    uint16_t hn = pi_fp32_to_fp16(NAN);
    CHECK((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0, "nan stays nan: 0x%04x", hn);
    hn = pi_fp32_to_fp16(from_bits(0x7f800001)); /* signalling nan, payload in low bits only */
    CHECK((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0, "snan stays nan: 0x%04x", hn);

    /* Every half survives half -> float -> half; the float values are exact. */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = pi_fp16_to_fp32((uint16_t)h);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
            CHECK(isnan(f), "0x%04x is nan", h);
            continue;
        }
        CHECK(pi_fp32_to_fp16(f) == h, "round trip 0x%04x", h);
    }
    CHECK(pi_fp16_to_fp32(0x0001) == 0x1p-24f && pi_fp16_to_fp32(0x7bff) == 65504.0f &&
          pi_fp16_to_fp32(0xfc00) == -INFINITY && signbit(pi_fp16_to_fp32(0x8000)), "decode edges");

    /* Random floats: the result is the nearest half, ties to even. */
    for (int i = 0; i < 200000; i++) {
        float f = from_bits(rnd() & 0x477fffffu); /* |f| < 65536 */
        if (rnd() & 1)
            f = -f;
        uint16_t h = pi_fp32_to_fp16(f);
        double e = fabs((double)f - pi_fp16_to_fp32(h));
        uint16_t mag = h & 0x7fff, sign = h & 0x8000;
        if (mag == 0x7c00) { /* overflow: only from 65520 (the tie above 65504) up */
            CHECK(fabsf(f) >= 65520.0f, "fp16(%a) overflowed", (double)f);
            continue;
        }
        for (int dlt = -1; dlt <= 1; dlt += 2) {
            int m2 = (int)mag + dlt;
            if (m2 < 0 || m2 > 0x7bff)
                continue;
            double e2 = fabs((double)f - pi_fp16_to_fp32((uint16_t)(sign | m2)));
            CHECK(e < e2 || (e == e2 && (mag & 1) == 0), "fp16(%a) = 0x%04x is not nearest-even", (double)f, h);
        }
    }
}

static void test_bf16(void)
{
    static const struct { float f; uint16_t h; } cases[] = {
        {0.0f, 0x0000}, {-0.0f, 0x8000}, {1.0f, 0x3f80}, {-2.0f, 0xc000},
        {1.0f + 0x1p-8f, 0x3f80}, {1.0f + 0x3p-8f, 0x3f82}, {1.0f + 0x1.8p-8f, 0x3f81},
        {INFINITY, 0x7f80}, {-INFINITY, 0xff80}, {3.4028235e38f, 0x7f80}, {0x1p-133f, 0x0001},
        {0.1f, 0x3dcd},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t h = pi_fp32_to_bf16(cases[i].f);
        CHECK(h == cases[i].h, "bf16(%a) = 0x%04x, want 0x%04x", (double)cases[i].f, h, cases[i].h);
    }
    CHECK(pi_fp32_to_bf16(from_bits(0x7f800001)) == 0x7fc0, "snan -> quiet nan, not inf");
    CHECK(pi_fp32_to_bf16(from_bits(0xffffffffu)) == 0xffff, "nan with payload kept");
    for (uint32_t h = 0; h < 65536; h++) {
        float f = pi_bf16_to_fp32((uint16_t)h);
        CHECK(bits(f) == h << 16, "bf16 decode 0x%04x", h);
        if (!isnan(f))
            CHECK(pi_fp32_to_bf16(f) == h, "bf16 round trip 0x%04x", h);
    }
}

static void test_hand_blocks(void)
{
    /* Q8_0: amax 127 so d = 1 exactly; roundf rounds halves away from zero. */
    float x[32] = {127, -127, 63.5f, 1, -0.5f, 0.49f};
    uint8_t q[34];
    pi_quantize_row(PI_TYPE_Q8_0, x, q, 32);
    uint8_t want8[34] = {0x00, 0x3c, 0x7f, 0x81, 0x40, 0x01, 0xff, 0x00};
    CHECK(memcmp(q, want8, 34) == 0, "q8_0 block: %02x %02x %02x %02x %02x %02x %02x %02x", q[0], q[1], q[2], q[3],
          q[4], q[5], q[6], q[7]);

    /* Q4_0: the largest magnitude is -8, so d = 1; element j in the low
     * nibble of qs[j], element j+16 in the high nibble. */
    float y[64] = {-8, 7, 0, 2.4f, -3.6f};
    y[16] = 1;
    y[17] = -1;
    /* Second block: largest magnitude +16 (first of the tie) -> d = -2; -16 clamps to 15. */
    y[32] = 16;
    y[33] = -16;
    y[34] = -14;
    uint8_t q4[36];
    pi_quantize_row(PI_TYPE_Q4_0, y, q4, 64);
    uint8_t want4[36];
    memset(want4, 0x88, sizeof want4);
    want4[0] = 0x00, want4[1] = 0x3c;
    want4[2] = 0x90, want4[3] = 0x7f, want4[4] = 0x88, want4[5] = 0x8a, want4[6] = 0x84;
    want4[18] = 0x00, want4[19] = 0xc0;
    want4[20] = 0x80, want4[21] = 0x8f, want4[22] = 0x8f;
    for (int i = 0; i < 36; i++)
        CHECK(q4[i] == want4[i], "q4_0 byte %d = 0x%02x, want 0x%02x", i, q4[i], want4[i]);
    float back[64];
    pi_dequantize_row(PI_TYPE_Q4_0, q4, back, 64);
    CHECK(back[0] == -8 && back[1] == 7 && back[3] == 2 && back[4] == -4 && back[16] == 1, "q4_0 decode");
    CHECK(back[32] == 16 && back[33] == -14 && back[34] == -14 && back[35] == 0, "q4_0 decode block 2");

    /* An all-zero block has d = 0 and decodes to zeros. */
    float z[32] = {0};
    pi_quantize_row(PI_TYPE_Q4_0, z, q4, 32);
    pi_dequantize_row(PI_TYPE_Q4_0, q4, back, 32);
    for (int i = 0; i < 32; i++)
        CHECK(back[i] == 0.0f, "zero block");
}

static void test_error_bounds(void)
{
    enum { N = 32 * 64 };
    static float x[N], d[N];
    static uint8_t q[N * 4];
    for (int trial = 0; trial < 20; trial++) {
        float scale = trial == 0 ? 1e-3f : (float)(trial * 3);
        for (int i = 0; i < N; i++)
            x[i] = rndf(scale);
        pi_quantize_row(PI_TYPE_Q8_0, x, q, N);
        pi_dequantize_row(PI_TYPE_Q8_0, q, d, N);
        for (int b = 0; b < N / 32; b++) {
            float amax = 0;
            for (int j = 0; j < 32; j++)
                amax = fmaxf(amax, fabsf(x[b * 32 + j]));
            float step = amax / 127;
            /* Half a step, plus the fp16 rounding of the step (relative 2^-11,
             * absolute 2^-25 where the step is subnormal in fp16) times |q| <= 127. */
            float bound = step * 0.5f + 127.0f * fmaxf(step * 0x1p-11f, 0x1p-25f) + 1e-9f;
            for (int j = 0; j < 32; j++)
                CHECK(fabsf(x[b * 32 + j] - d[b * 32 + j]) <= bound, "q8_0 error %g > %g",
                      (double)fabsf(x[b * 32 + j] - d[b * 32 + j]), (double)bound);
        }
        pi_quantize_row(PI_TYPE_Q4_0, x, q, N);
        pi_dequantize_row(PI_TYPE_Q4_0, q, d, N);
        for (int b = 0; b < N / 32; b++) {
            float amax = 0;
            for (int j = 0; j < 32; j++)
                amax = fmaxf(amax, fabsf(x[b * 32 + j]));
            float step = amax / 8;
            /* Half a step, except the clamped top code (one step), plus fp16 rounding of d times |q-8| <= 8. */
            float bound = step + 8.0f * fmaxf(step * 0x1p-11f, 0x1p-25f) + 1e-9f;
            for (int j = 0; j < 32; j++)
                CHECK(fabsf(x[b * 32 + j] - d[b * 32 + j]) <= bound, "q4_0 error");
        }
        pi_quantize_row(PI_TYPE_F16, x, q, N);
        pi_dequantize_row(PI_TYPE_F16, q, d, N);
        for (int i = 0; i < N; i++)
            CHECK(fabsf(x[i] - d[i]) <= fabsf(x[i]) * 0x1p-11f + 0x1p-25f, "f16 error");
        pi_quantize_row(PI_TYPE_BF16, x, q, N);
        pi_dequantize_row(PI_TYPE_BF16, q, d, N);
        for (int i = 0; i < N; i++)
            CHECK(fabsf(x[i] - d[i]) <= fabsf(x[i]) * 0x1p-8f, "bf16 error");
        pi_quantize_row(PI_TYPE_F32, x, q, N);
        pi_dequantize_row(PI_TYPE_F32, q, d, N);
        CHECK(memcmp(x, d, sizeof x) == 0, "f32 identity");
    }
}

static void test_dot_axpy(void)
{
    enum { N = 32 * 16 };
    static const pi_type types[] = {PI_TYPE_F32, PI_TYPE_F16, PI_TYPE_BF16, PI_TYPE_Q8_0, PI_TYPE_Q4_0};
    static float w[N], x[N], deq[N], y[N], yref[N];
    static uint8_t row[N * 4];
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        for (int trial = 0; trial < 10; trial++) {
            for (int i = 0; i < N; i++) {
                w[i] = rndf(2.0f);
                x[i] = rndf(1.0f);
                y[i] = yref[i] = rndf(1.0f);
            }
            size_t n = (size_t)(trial + 1) * 32 % N + 32; /* several lengths, whole blocks */
            pi_quantize_row(types[t], w, row, n);
            pi_dequantize_row(types[t], row, deq, n);
            double ref = 0, mag = 0;
            for (size_t i = 0; i < n; i++) {
                ref += (double)deq[i] * x[i];
                mag += fabs((double)deq[i] * x[i]);
            }
            float dot = pi_dot_row(types[t], row, x, n);
            CHECK(fabs(dot - ref) <= mag * 1e-5 + 1e-6, "%s dot %g vs %g", pi_type_name(types[t]), (double)dot, ref);
            float a = rndf(3.0f);
            pi_axpy_row(types[t], a, row, y, n);
            for (size_t i = 0; i < n; i++)
                yref[i] += a * deq[i];
            for (size_t i = 0; i < N; i++)
                CHECK(fabsf(y[i] - yref[i]) <= 1e-6f * (1 + fabsf(yref[i])), "%s axpy [%zu]", pi_type_name(types[t]), i);
        }
    }
}

/* ---- K-quants. The test's own packing follows docs/formats.md (and
 * llama.cpp's block_q4_K/q5_K/q6_K); expected values come from the logical
 * (scale, min, level) arrays, never from pi's decoder. */

static void put_fp16(uint8_t *p, float f)
{
    uint16_t h = pi_fp32_to_fp16(f);
    p[0] = (uint8_t)(h & 0xff);
    p[1] = (uint8_t)(h >> 8);
}

/* 8 scales and 8 mins of 6 bits into 12 bytes: bytes 0-3 hold scales 0-3 in
 * their low 6 bits and the top 2 bits of scales 4-7 in bits 6-7; bytes 4-7
 * the same for the mins; bytes 8-11 the low 4 bits of scale 4+j (low
 * nibble) and min 4+j (high nibble). */
static void pack_scales(const int sc[8], const int mn[8], uint8_t out[12])
{
    for (int j = 0; j < 4; j++) {
        out[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        out[j + 4] = (uint8_t)((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
        out[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
    }
}

static void test_kquant_literal(void)
{
    /* Bytes written by hand, values worked out by hand. */
    uint8_t b[210];
    float out[256];
    memset(b, 0, sizeof b);
    put_fp16(b, 1.0f);      /* d */
    put_fp16(b + 2, 0.5f);  /* dmin */
    b[4 + 0] = 0xC5;        /* scale 0 = 5; top bits 3 of scale 4 */
    b[4 + 4] = 0x43;        /* min 0 = 3; top bits 1 of min 4 */
    b[4 + 8] = 0x21;        /* scale 4 low 1, min 4 low 2: scale 4 = 49, min 4 = 18 */
    b[16 + 0] = 0x7A;       /* element 0: level 10; element 32: level 7 (scale 1 = 0) */
    b[16 + 64] = 0x0F;      /* element 128 (sub-block 4): level 15 */
    pi_dequantize_row(PI_TYPE_Q4_K, b, out, 256);
    CHECK(out[0] == 48.5f && out[32] == 0.0f && out[128] == 726.0f && out[1] == -1.5f && out[129] == -9.0f,
          "q4_K literal: %g %g %g %g %g", (double)out[0], (double)out[32], (double)out[128], (double)out[1],
          (double)out[129]);

    /* Q5_K: same header; qh at 16, qs at 48. */
    memset(b + 16, 0, sizeof b - 16);
    b[16 + 0] = 0x11;       /* 5th bit of element 0 (sub-block 0) and element 128 (sub-block 4) */
    b[48 + 0] = 0x0A;       /* element 0 low 4 bits 10 -> level 26 */
    b[48 + 64] = 0x0F;      /* element 128 -> level 31 */
    pi_dequantize_row(PI_TYPE_Q5_K, b, out, 256);
    CHECK(out[0] == 128.5f && out[128] == 1510.0f && out[32] == 0.0f && out[1] == -1.5f,
          "q5_K literal: %g %g %g %g", (double)out[0], (double)out[128], (double)out[32], (double)out[1]);

    /* Q6_K: ql at 0, qh at 128, int8 scales at 192, d at 208. */
    memset(b, 0, sizeof b);
    put_fp16(b + 208, 1.0f);
    b[192 + 0] = 2;         /* scale of elements 0..15 */
    b[192 + 4] = 0xFF;      /* scale -1 of elements 64..79 */
    b[0] = 0x05;            /* element 0 low 4 bits 5 (element 64 gets the high nibble 0) */
    b[128] = 0x03;          /* element 0 top bits 3: level 53 - 32 = 21 */
    pi_dequantize_row(PI_TYPE_Q6_K, b, out, 256);
    CHECK(out[0] == 42.0f && out[1] == -64.0f && out[64] == 32.0f && out[16] == 0.0f,
          "q6_K literal: %g %g %g %g", (double)out[0], (double)out[1], (double)out[64], (double)out[16]);
}

/* Random Q4_K / Q5_K super-blocks from logical arrays: sc, mn 0..63,
 * level q (0..15 or 0..31) of element i in sub-block i / 32. */
static void test_kquant45_random(pi_type type)
{
    int five = type == PI_TYPE_Q5_K, qs_at = five ? 48 : 16;
    size_t bb = five ? 176 : 144;
    enum { NB = 3 };
    static uint8_t row[NB * 176];
    static float out[NB * 256];
    for (int trial = 0; trial < 50; trial++) {
        float d[NB], dmin[NB];
        int sc[NB][8], mn[NB][8], q[NB][256];
        memset(row, 0, sizeof row);
        for (int b = 0; b < NB; b++) {
            uint8_t *blk = row + (size_t)b * bb;
            put_fp16(blk, rndf(0.1f));
            put_fp16(blk + 2, rndf(0.1f));
            d[b] = pi_fp16_to_fp32((uint16_t)(blk[0] | (blk[1] << 8)));
            dmin[b] = pi_fp16_to_fp32((uint16_t)(blk[2] | (blk[3] << 8)));
            for (int j = 0; j < 8; j++) {
                sc[b][j] = (int)(rnd() % 64);
                mn[b][j] = (int)(rnd() % 64);
            }
            pack_scales(sc[b], mn[b], blk + 4);
            for (int i = 0; i < 256; i++) {
                q[b][i] = (int)(rnd() % (five ? 32 : 16));
                /* element i: sub-block s = i / 32, byte 32 * (s / 2) + i % 32 of qs,
                 * low nibble for even s, high for odd; Q5_K's 5th bit: bit s of qh[i % 32] */
                int s = i / 32, l = i % 32;
                blk[qs_at + 32 * (s / 2) + l] |= (uint8_t)((q[b][i] & 15) << (4 * (s % 2)));
                if (five)
                    blk[16 + l] |= (uint8_t)(((q[b][i] >> 4) & 1) << s);
            }
        }
        pi_dequantize_row(type, row, out, NB * 256);
        for (int b = 0; b < NB; b++)
            for (int i = 0; i < 256; i++) {
                float want = d[b] * (float)sc[b][i / 32] * (float)q[b][i] - dmin[b] * (float)mn[b][i / 32];
                CHECK(out[b * 256 + i] == want, "%s block %d element %d: %g, want %g", pi_type_name((int)type),
                      b, i, (double)out[b * 256 + i], (double)want);
            }
    }
}

/* Random Q6_K super-blocks: int8 scale of element i is sc[i / 16], level
 * q in -32..31 stored as q + 32: low 4 bits in ql, top 2 bits in qh. */
static void test_q6_k_random(void)
{
    enum { NB = 3 };
    static uint8_t row[NB * 210];
    static float out[NB * 256];
    for (int trial = 0; trial < 50; trial++) {
        float d[NB];
        int sc[NB][16], q[NB][256];
        memset(row, 0, sizeof row);
        for (int b = 0; b < NB; b++) {
            uint8_t *blk = row + (size_t)b * 210;
            put_fp16(blk + 208, rndf(0.1f));
            d[b] = pi_fp16_to_fp32((uint16_t)(blk[208] | (blk[209] << 8)));
            for (int j = 0; j < 16; j++) {
                sc[b][j] = (int)(rnd() % 256) - 128;
                blk[192 + j] = (uint8_t)(int8_t)sc[b][j];
            }
            for (int i = 0; i < 256; i++) {
                q[b][i] = (int)(rnd() % 64) - 32;
                int u = q[b][i] + 32;
                /* half h = i / 128; in it, quarter k = (i % 128) / 32 and lane l = i % 32:
                 * ql byte 64h + l (k = 0, 2) or 64h + 32 + l (k = 1, 3), low nibble for
                 * k < 2, high for k >= 2; qh byte 32h + l, bits 2k..2k+1 */
                int h = i / 128, k = (i % 128) / 32, l = i % 32;
                blk[64 * h + l + (k == 1 || k == 3 ? 32 : 0)] |= (uint8_t)((u & 15) << (k >= 2 ? 4 : 0));
                blk[128 + 32 * h + l] |= (uint8_t)((u >> 4) << (2 * k));
            }
        }
        pi_dequantize_row(PI_TYPE_Q6_K, row, out, NB * 256);
        for (int b = 0; b < NB; b++)
            for (int i = 0; i < 256; i++) {
                float want = d[b] * (float)sc[b][i / 16] * (float)q[b][i];
                CHECK(out[b * 256 + i] == want, "q6_K block %d element %d: %g, want %g", b, i,
                      (double)out[b * 256 + i], (double)want);
            }
    }
}

/* Round trip of the reference quantizers, per element, against bounds
 * derived from the quantizers' construction (quant.c): a sub-block's true
 * step s (range / qmax for Q4_K/Q5_K, amax / 31 for Q6_K) is stored as an
 * integer multiple of the super-block's d (max s / 63, or / 127), so off by
 * at most d/2; levels round (half a step) or clip at the top, which costs at
 * most qmax * d/2 plus, for Q4_K/Q5_K, the min's upward rounding (dmin). */
static void test_kquant_error_bounds(void)
{
    enum { N = 256 * 8 };
    static float x[N], y[N];
    static uint8_t q[N];
    static const pi_type types[] = {PI_TYPE_Q4_K, PI_TYPE_Q5_K, PI_TYPE_Q6_K};
    for (size_t t = 0; t < 3; t++) {
        pi_type type = types[t];
        double se = 0, sx = 0;
        for (int trial = 0; trial < 20; trial++) {
            float scale = trial == 0 ? 1e-3f : (float)(trial * 3);
            for (int i = 0; i < N; i++)
                x[i] = rndf(scale) + (trial % 3 == 1 ? scale * 0.5f : 0.0f);   /* some offset rows */
            pi_quantize_row(type, x, q, N);
            pi_dequantize_row(type, q, y, N);
            for (int b = 0; b < N / 256; b++) {
                const float *xb = x + b * 256, *yb = y + b * 256;
                int sub = type == PI_TYPE_Q6_K ? 16 : 32, qmax = type == PI_TYPE_Q4_K ? 15 : 31;
                float step[16], max_s = 0, max_m = 0;
                for (int s = 0; s < 256 / sub; s++) {
                    float lo = 0, hi = 0, amax = 0;
                    for (int l = 0; l < sub; l++) {
                        lo = fminf(lo, xb[s * sub + l]);
                        hi = fmaxf(hi, xb[s * sub + l]);
                        amax = fmaxf(amax, fabsf(xb[s * sub + l]));
                    }
                    step[s] = type == PI_TYPE_Q6_K ? amax / 31 : (hi - lo) / (float)qmax;
                    max_s = fmaxf(max_s, step[s]);
                    max_m = fmaxf(max_m, -lo);
                }
                float scmax = type == PI_TYPE_Q6_K ? 127.0f : 63.0f;
                float d = max_s / scmax, dmin = type == PI_TYPE_Q6_K ? 0.0f : max_m / 63.0f;
                /* d and dmin are stored as fp16 (relative 2^-11, absolute 2^-25 when
                 * subnormal); a scale or min that then clamps at its top code, and
                 * every level, carry that error */
                float derr = fmaxf(d * 0x1p-11f, 0x1p-25f), merr = fmaxf(dmin * 0x1p-11f, 0x1p-25f);
                float fp16_slack = ((float)qmax + 1) * scmax * derr + 64.0f * merr;
                for (int i = 0; i < 256; i++) {
                    float e = fabsf(xb[i] - yb[i]);
                    float bound = (step[i / sub] + d / 2) / 2 + (float)qmax * d / 2 + dmin + fp16_slack + 1e-9f;
                    CHECK(e <= bound, "%s error %g > %g at %d", pi_type_name((int)type), (double)e, (double)bound, i);
                    se += (double)e * e;
                    sx += (double)xb[i] * xb[i];
                }
            }
        }
        /* and on the whole: 4, 5 and 6 bits give about 1/15, 1/31 and 1/63 of uniform data's rms */
        double rel = sqrt(se / sx), lim = type == PI_TYPE_Q4_K ? 0.10 : type == PI_TYPE_Q5_K ? 0.05 : 0.03;
        CHECK(rel < lim, "%s relative rms error %g >= %g", pi_type_name((int)type), rel, lim);
        printf("test_quant: %s round trip relative rms error %.4f\n", pi_type_name((int)type), rel);
    }
}

/* dot == sum(dequantized * x) and axpy == y + a * dequantized for the K-quants. */
static void test_kquant_dot_axpy(void)
{
    enum { N = 256 * 4 };
    static const pi_type types[] = {PI_TYPE_Q4_K, PI_TYPE_Q5_K, PI_TYPE_Q6_K};
    static float w[N], x[N], deq[N], y[N], yref[N];
    static uint8_t row[N];
    for (size_t t = 0; t < 3; t++) {
        for (int trial = 0; trial < 10; trial++) {
            for (int i = 0; i < N; i++) {
                w[i] = rndf(2.0f);
                x[i] = rndf(1.0f);
                y[i] = yref[i] = rndf(1.0f);
            }
            size_t n = 256 * (size_t)(trial % 4 + 1);
            pi_quantize_row(types[t], w, row, n);
            pi_dequantize_row(types[t], row, deq, n);
            double ref = 0, mag = 0;
            for (size_t i = 0; i < n; i++) {
                ref += (double)deq[i] * x[i];
                mag += fabs((double)deq[i] * x[i]);
            }
            float dot = pi_dot_row(types[t], row, x, n);
            CHECK(fabs(dot - ref) <= mag * 1e-5, "%s dot %g vs %g", pi_type_name(types[t]), (double)dot, ref);
            float a = rndf(3.0f);
            pi_axpy_row(types[t], a, row, y, n);
            for (size_t i = 0; i < n; i++)
                yref[i] += a * deq[i];
            for (size_t i = 0; i < N; i++)
                CHECK(fabsf(y[i] - yref[i]) <= 1e-6f * (1 + fabsf(yref[i])), "%s axpy [%zu]", pi_type_name(types[t]), i);
        }
    }
}

/* Helper mode for tests/integration/test_kquant_gguf_py.py, which compares
 * pi's K-quant layout with llama.cpp's gguf-py:
 *   test_quant --dequantize TYPE BLOCKS.bin OUT.f32   (raw blocks -> fp32 LE)
 *   test_quant --quantize TYPE IN.f32 OUT.bin          (fp32 LE -> raw blocks)
 * 0 on success, 1 with a message on stderr. */
static int convert_file(char **argv)
{
    int dequant = strcmp(argv[1], "--dequantize") == 0, type = -1;
    for (int t = 0; t < 64; t++)
        if (pi_type_name(t) && strcmp(pi_type_name(t), argv[2]) == 0)
            type = t;
    if (type < 0) {
        fprintf(stderr, "test_quant: unknown type %s\n", argv[2]);
        return 1;
    }
    FILE *f = fopen(argv[3], "rb");
    if (!f) {
        fprintf(stderr, "test_quant: cannot open %s\n", argv[3]);
        return 1;
    }
    size_t cap = 1 << 16, len = 0, got;
    uint8_t *in = malloc(cap);
    while (in && (got = fread(in + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            uint8_t *bigger = realloc(in, cap * 2);
            if (!bigger) {
                free(in);
                in = NULL;
                break;
            }
            in = bigger;
            cap *= 2;
        }
    }
    int bad_read = ferror(f);
    fclose(f);
    if (!in || bad_read) {
        free(in);
        fprintf(stderr, "test_quant: reading %s failed\n", argv[3]);
        return 1;
    }
    size_t be = pi_type_block_elems((pi_type)type), bb = pi_type_block_bytes((pi_type)type);
    size_t n = dequant ? len / bb * be : len / 4, out_len = dequant ? n * 4 : n / be * bb;
    if ((dequant ? len % bb : len % (4 * be)) != 0) {
        free(in);
        fprintf(stderr, "test_quant: %s holds %zu bytes, not whole %s blocks\n", argv[3], len, argv[2]);
        return 1;
    }
    void *out = malloc(out_len ? out_len : 1);
    float *xs = dequant ? NULL : malloc(n ? n * sizeof *xs : 1);
    int rc = 1;
    if (out && (dequant || xs)) {
        if (dequant) {
            pi_dequantize_row((pi_type)type, in, out, n);
        } else {
            memcpy(xs, in, n * sizeof *xs);   /* the input buffer need not be float-aligned */
            pi_quantize_row((pi_type)type, xs, out, n);
        }
        FILE *o = fopen(argv[4], "wb");
        int wrote = o && fwrite(out, 1, out_len, o) == out_len;
        if (o && fclose(o) != 0)
            wrote = 0;
        if (wrote)
            rc = 0;
        else
            fprintf(stderr, "test_quant: writing %s failed\n", argv[4]);
    }
    free(in);
    free(out);
    free(xs);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 5 && (strcmp(argv[1], "--dequantize") == 0 || strcmp(argv[1], "--quantize") == 0))
        return convert_file(argv);
    test_names();
    test_fp16();
    test_bf16();
    test_hand_blocks();
    test_error_bounds();
    test_dot_axpy();
    test_kquant_literal();
    test_kquant45_random(PI_TYPE_Q4_K);
    test_kquant45_random(PI_TYPE_Q5_K);
    test_q6_k_random();
    test_kquant_error_bounds();
    test_kquant_dot_axpy();
    printf("test_quant: ok\n");
    return 0;
}
