/* req_limits: the UTF-8 check agrees with a decode-and-range oracle on every 1-, 2- and 3-byte sequence and on random 4-byte ones, names the first bad byte's offset, caps prompts at 1 MiB; SamplingParams from the wire map proto3 zeros to off and refuse each out-of-range field. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "req_limits.h"

/* Oracle: decode each character by its bit pattern, then require the
 * shortest form, no surrogate and at most U+10FFFF (RFC 3629). */
static int oracle_valid(const uint8_t *p, size_t n)
{
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t want;
        if (p[i] < 0x80) { cp = p[i]; want = 1; }
        else if ((p[i] & 0xE0) == 0xC0) { cp = p[i] & 0x1F; want = 2; }
        else if ((p[i] & 0xF0) == 0xE0) { cp = p[i] & 0x0F; want = 3; }
        else if ((p[i] & 0xF8) == 0xF0) { cp = p[i] & 0x07; want = 4; }
        else return 0;
        if (i + want > n)
            return 0;
        for (size_t k = 1; k < want; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if (cp < min[want] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += want;
    }
    return 1;
}

static void check_seq(const uint8_t *p, size_t n)
{
    int got = req_limits_utf8_valid_prefix((const char *)p, n) == n;
    CHECK(got == oracle_valid(p, n), "%zu bytes %02x %02x %02x %02x: validator %d, oracle %d", n, p[0],
          n > 1 ? p[1] : 0, n > 2 ? p[2] : 0, n > 3 ? p[3] : 0, got, oracle_valid(p, n));
}

static void test_utf8(void)
{
    uint8_t b[4];
    for (uint32_t v = 0; v < 0x100; v++) {
        b[0] = (uint8_t)v;
        check_seq(b, 1);
    }
    for (uint32_t v = 0; v < 0x10000; v++) {
        b[0] = (uint8_t)(v >> 8), b[1] = (uint8_t)v;
        check_seq(b, 2);
    }
    for (uint32_t v = 0; v < 0x1000000; v++) {
        b[0] = (uint8_t)(v >> 16), b[1] = (uint8_t)(v >> 8), b[2] = (uint8_t)v;
        check_seq(b, 3);
    }
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < 4000000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        b[0] = (uint8_t)(0xF0 + (x & 7)), b[1] = (uint8_t)(x >> 8), b[2] = (uint8_t)(x >> 16),
        b[3] = (uint8_t)(x >> 24);
        if (i & 1) /* half with continuation bytes, so valid ones are common */
            b[1] = 0x80 | (b[1] & 0x3F), b[2] = 0x80 | (b[2] & 0x3F), b[3] = 0x80 | (b[3] & 0x3F);
        check_seq(b, 4);
    }
    /* Offsets: the first bad byte, after valid multi-byte characters. */
    const char *s = "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x99\x82!";
    CHECK(req_limits_utf8_valid_prefix(s, strlen(s)) == strlen(s), "valid text refused");
    const char *bad = "h\xc3\xa9\xe2\x9c\x93\xff";
    CHECK(req_limits_utf8_valid_prefix(bad, strlen(bad)) == 6, "offset of 0xff");
    const char *cut = "ab\xf0\x9f\x99";
    CHECK(req_limits_utf8_valid_prefix(cut, strlen(cut)) == 2, "a character cut at the end");
    pi_error err;
    CHECK(req_limits_check_prompt(bad, strlen(bad), &err) < 0 && strstr(err.msg, "at byte 6 (0xff)"),
          "message: %s", err.msg);
    CHECK(req_limits_check_prompt("", 0, &err) == 0, "the empty prompt");
}

static void test_prompt_size(void)
{
    char *p = malloc(REQ_LIMITS_MAX_PROMPT_BYTES + 1);
    CHECK(p, "out of memory");
    memset(p, 'a', REQ_LIMITS_MAX_PROMPT_BYTES + 1);
    pi_error err;
    CHECK(req_limits_check_prompt(p, REQ_LIMITS_MAX_PROMPT_BYTES, &err) == 0, "1 MiB refused: %s", err.msg);
    CHECK(req_limits_check_prompt(p, REQ_LIMITS_MAX_PROMPT_BYTES + 1, &err) < 0 &&
              strstr(err.msg, "1048577 bytes, more than pid accepts (1048576 bytes)"),
          "1 MiB + 1: %s", err.msg);
    free(p);
}

static int from_wire(Pi__SamplingParams *w, sampler_params *out, const char *want_in_msg)
{
    pi_error err = {{0}};
    int r = req_limits_sampling_from_wire(out, w, &err);
    if (want_in_msg)
        CHECK(r < 0 && strstr(err.msg, want_in_msg), "want an error with '%s', got %d '%s'", want_in_msg,
              r, err.msg);
    else
        CHECK(r == 0, "refused: %s", err.msg);
    return r;
}

static void test_sampling(void)
{
    Pi__SamplingParams w = PI__SAMPLING_PARAMS__INIT;
    sampler_params sp;
    from_wire(&w, &sp, NULL);
    CHECK(sp.temperature == 0 && sp.top_k == 0 && sp.top_p == 1.0f && sp.min_p == 0 &&
              sp.repeat_penalty == 1.0f && sp.repeat_last_n == 0 && !sp.has_seed,
          "zeros are not 'off'");
    w.temperature = 0.7f, w.top_k = 40, w.top_p = 0.9f, w.min_p = 0.05f, w.repeat_penalty = 1.1f;
    w.repeat_last_n = 64, w.seed = 42, w.seed_set = 1;
    from_wire(&w, &sp, NULL);
    CHECK(sp.temperature == 0.7f && sp.top_k == 40 && sp.top_p == 0.9f && sp.min_p == 0.05f &&
              sp.repeat_penalty == 1.1f && sp.repeat_last_n == 64 && sp.seed == 42 && sp.has_seed,
          "values not copied");
    struct { float *f; float v; const char *msg; } bad[] = {
        {&w.temperature, -1, "sampling.temperature -1"}, {&w.temperature, NAN, "sampling.temperature nan"},
        {&w.temperature, INFINITY, "sampling.temperature inf"}, {&w.top_p, -0.5f, "sampling.top_p -0.5"},
        {&w.top_p, 1.5f, "sampling.top_p 1.5"}, {&w.top_p, NAN, "sampling.top_p nan"},
        {&w.min_p, -0.1f, "sampling.min_p -0.1"}, {&w.min_p, 2, "sampling.min_p 2"},
        {&w.min_p, NAN, "sampling.min_p nan"}, {&w.repeat_penalty, -1, "sampling.repeat_penalty -1"},
        {&w.repeat_penalty, INFINITY, "sampling.repeat_penalty inf"},
        {&w.repeat_penalty, NAN, "sampling.repeat_penalty nan"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        Pi__SamplingParams c = w;
        *(float *)((char *)&c + ((char *)bad[i].f - (char *)&w)) = bad[i].v;
        from_wire(&c, &sp, bad[i].msg);
    }
    Pi__SamplingParams c = w;
    c.top_k = 0xFFFFFFFFu;
    from_wire(&c, &sp, "sampling.top_k 4294967295");
    c = w;
    c.repeat_last_n = 0x80000000u;
    from_wire(&c, &sp, "repeat_last_n 2147483648");
}

int main(void)
{
    test_utf8();
    test_prompt_size();
    test_sampling();
    printf("ok\n");
    return 0;
}
