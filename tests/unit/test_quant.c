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
    CHECK(pi_type_name(12) == NULL && strcmp(pi_type_ggml_name(12), "q4_K") == 0, "q4_K known, unsupported");
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

int main(void)
{
    test_names();
    test_fp16();
    test_bf16();
    test_hand_blocks();
    test_error_bounds();
    test_dot_axpy();
    printf("test_quant: ok\n");
    return 0;
}
