/* Proves the byte-level BPE tokenizer (tokenizer.ggml.model "gpt2") gives llama.cpp's ids for
 * every MPT vocab vector, round-trips random valid UTF-8, and ranks merges, runs each
 * pre-tokenizer and treats user-defined/control tokens as llama.cpp does (small vocabularies). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "gguf.h"
#include "tokenizer.h"

static char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    CHECK(f, "open %s", path);
    CHECK(fseek(f, 0, SEEK_END) == 0, "seek %s", path);
    long sz = ftell(f);
    CHECK(sz >= 0, "tell %s", path);
    CHECK(fseek(f, 0, SEEK_SET) == 0, "seek %s", path);
    char *buf = malloc((size_t)sz + 1);
    CHECK(buf, "oom");
    CHECK(fread(buf, 1, (size_t)sz, f) == (size_t)sz, "read %s", path);
    buf[sz] = '\0';
    fclose(f);
    *n = (size_t)sz;
    return buf;
}

static void encode_ok(const tokenizer *t, const char *s, size_t len, int bos, int32_t **ids,
                      size_t *n)
{
    pi_error err = {{0}};
    CHECK(tokenizer_encode(t, s, len, bos, ids, n, &err) == 0, "encode: %s", err.msg);
}

/* Decodes ids piece by piece into a malloc'd buffer. */
static char *decode_all(const tokenizer *t, const int32_t *ids, size_t n, size_t *len)
{
    size_t cap = tokenizer_max_piece_len(t) * (n + 1) + 1, k = 0;
    char *out = malloc(cap);
    CHECK(out, "oom");
    for (size_t i = 0; i < n; i++) {
        int r = tokenizer_decode_piece(t, i ? ids[i - 1] : -1, ids[i], out + k, cap - k);
        CHECK(r >= 0 && (size_t)r <= cap - k, "decode of %d gave %d", ids[i], r);
        k += (size_t)r;
    }
    *len = k;
    return out;
}

/* ---- small vocabularies written with the GGUF writer ---- */

#define G "\xc4\xa0" /* U+0120: the space in GPT-2's byte alphabet */

static const char *const small_toks[] = {
    "<|endoftext|>", "1", "2", "3", "4", "12", "123", "1234", /* 0..7 */
    "a", "b", "c", "ab", "bc", G, G "a", "<|u|>",            /* 8..15 */
    "9", "999",                                               /* 16, 17 */
};
enum { N_SMALL = sizeof small_toks / sizeof small_toks[0] };

/* pre: tokenizer.ggml.pre (NULL: absent); swap: rank "b c" before "a b";
 * no_merges: leave the merges key out. */
static tokenizer *small_bpe(const char *pre, bool swap, bool no_merges, pi_error *err)
{
    size_t lens[N_SMALL];
    int32_t types[N_SMALL];
    for (size_t i = 0; i < N_SMALL; i++) {
        lens[i] = strlen(small_toks[i]);
        types[i] = i == 0 ? 3 : i == 15 ? 4 : 1;
    }
    const char *merges[] = {"a b", "b c", "1 2", "12 3", "123 4", G " a"};
    size_t mlens[6];
    if (swap) {
        merges[0] = "b c";
        merges[1] = "a b";
    }
    for (size_t i = 0; i < 6; i++)
        mlens[i] = strlen(merges[i]);
    gguf_writer *w = gguf_writer_new();
    CHECK(w, "gguf_writer_new");
    int rc = gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2");
    if (pre)
        rc |= gguf_writer_add_str(w, "tokenizer.ggml.pre", pre);
    rc |= gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", small_toks, lens, N_SMALL);
    rc |= gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, N_SMALL);
    if (!no_merges)
        rc |= gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", merges, mlens, 6);
    rc |= gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 0);
    rc |= gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 0);
    CHECK(rc == 0, "gguf writer add");
    char path[512];
    test_tmp("test_tok_bpe_small.gguf", path, sizeof path);
    pi_error werr = {{0}};
    CHECK(gguf_writer_write(w, path, "GGUF", &werr) == 0, "write %s: %s", path, werr.msg);
    gguf_writer_free(&w);
    gguf_file *f = gguf_open(path, &werr);
    CHECK(f, "open %s: %s", path, werr.msg);
    tokenizer *t = tokenizer_from_gguf(f, err);
    gguf_close(&f);
    remove(path);
    return t;
}

static void expect(const tokenizer *t, const char *what, const char *s, const int32_t *want,
                   size_t n_want)
{
    int32_t *ids;
    size_t n;
    encode_ok(t, s, strlen(s), 0, &ids, &n);
    bool same = n == n_want && (n == 0 || memcmp(ids, want, n * sizeof *ids) == 0);
    if (!same) {
        fprintf(stderr, "%s: '%s' gave", what, s);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    CHECK(same, "%s: '%s' gives the wrong ids", what, s);
    free(ids);
}

#define EXPECT(t, what, s, ...)                                                         \
    do {                                                                                \
        const int32_t want_[] = {__VA_ARGS__};                                          \
        expect(t, what, s, want_, sizeof want_ / sizeof want_[0]);                      \
    } while (0)

static void test_small(void)
{
    pi_error err = {{0}};
    tokenizer *t = small_bpe("gpt-2", false, false, &err);
    CHECK(t, "gpt-2 vocab: %s", err.msg);
    CHECK(tokenizer_n_vocab(t) == N_SMALL && tokenizer_bos(t) == 0, "vocab size / bos");
    EXPECT(t, "rank order", "abc", 11, 10);
    EXPECT(t, "space as G", " a", 14);
    EXPECT(t, "gpt-2 digits", "1234", 7);
    EXPECT(t, "user-defined cut out", "a<|u|>b", 8, 15, 9);
    EXPECT(t, "no ignore_merges", "999", 16, 16, 16);
    int32_t *ids;
    size_t n;
    encode_ok(t, "<|endoftext|>", 13, 0, &ids, &n);
    for (size_t i = 0; i < n; i++)
        CHECK(ids[i] != 0, "control text must stay text");
    free(ids);
    /* No BOS unless tokenizer.ggml.add_bos_token says so (gpt-2's default). */
    encode_ok(t, "a", 1, 1, &ids, &n);
    CHECK(n == 1 && ids[0] == 8, "gpt-2 adds no BOS by default");
    free(ids);
    char buf[16];
    CHECK(tokenizer_decode_piece(t, -1, 14, buf, sizeof buf) == 2 && memcmp(buf, " a", 2) == 0,
          "G a decodes to ' a'");
    CHECK(tokenizer_decode_piece(t, -1, 0, buf, sizeof buf) == 0, "control decodes to nothing");
    CHECK(tokenizer_decode_piece(t, -1, 15, buf, sizeof buf) == 5 && memcmp(buf, "<|u|>", 5) == 0,
          "user-defined decodes as stored");
    CHECK(tokenizer_decode_piece(t, -1, N_SMALL, buf, sizeof buf) == -1, "out of range");
    CHECK(tokenizer_decode_piece(t, -1, 14, buf, 1) == 2 && buf[0] == ' ', "cut piece");
    tokenizer_free(&t);

    t = small_bpe("gpt-2", true, false, &err);
    CHECK(t, "swapped: %s", err.msg);
    EXPECT(t, "swapped ranks", "abc", 8, 12);
    tokenizer_free(&t);

    /* Each pre-tokenizer's way with digits. */
    static const struct {
        const char *pre;
        int32_t ids[4];
        size_t n;
    } digits[] = {
        {"mpt", {7}, 1},           {"llama-bpe", {6, 4}, 2},  {"qwen2", {1, 2, 3, 4}, 4},
        {"starcoder", {1, 2, 3, 4}, 4}, {"refact", {1, 2, 3, 4}, 4}, {"default", {6, 4}, 2},
        {"falcon", {6, 4}, 2},     {"deepseek-coder", {1, 2, 3, 4}, 4},
        {"deepseek-llm", {7}, 1},
    };
    for (size_t i = 0; i < sizeof digits / sizeof digits[0]; i++) {
        t = small_bpe(digits[i].pre, false, false, &err);
        CHECK(t, "%s: %s", digits[i].pre, err.msg);
        expect(t, digits[i].pre, "1234", digits[i].ids, digits[i].n);
        EXPECT(t, digits[i].pre, "a", 8);
        tokenizer_free(&t);
    }
    t = small_bpe(NULL, false, false, &err);
    CHECK(t, "absent pre is 'default': %s", err.msg);
    EXPECT(t, "absent pre", "1234", 6, 4);
    tokenizer_free(&t);

    /* Llama 3 takes a word that is a token whole, and adds BOS. */
    t = small_bpe("llama-bpe", false, false, &err);
    CHECK(t, "llama-bpe: %s", err.msg);
    EXPECT(t, "ignore_merges", "999", 17);
    encode_ok(t, "a", 1, 1, &ids, &n);
    CHECK(n == 2 && ids[0] == 0 && ids[1] == 8, "llama-bpe adds BOS");
    free(ids);
    tokenizer_free(&t);

    CHECK(!small_bpe("nope", false, false, &err) && strstr(err.msg, "'nope'") &&
          strstr(err.msg, "tokenizer.ggml.pre"), "unknown pre: %s", err.msg);
    CHECK(!small_bpe("gpt-2", false, true, &err) && strstr(err.msg, "tokenizer.ggml.merges"),
          "missing merges: %s", err.msg);
}

/* ---- the MPT vocabulary ---- */

static int check_vectors(const tokenizer *t, const char *inp_path, const char *out_path)
{
    size_t inp_len, out_len;
    char *inp = read_all(inp_path, &inp_len);
    char *out = read_all(out_path, &out_len);
    static const char sep[] = "\n__ggml_vocab_test__\n";
    char *s = inp, *line = out;
    int n_vec = 0, n_bad = 0;
    for (char *end; (end = strstr(s, sep)) != NULL; s = end + strlen(sep), n_vec++) {
        size_t len = (size_t)(end - s);
        char *nl = strchr(line, '\n');
        CHECK(nl, ".out has fewer lines than .inp has strings (%d)", n_vec);
        *nl = '\0';
        int32_t want[1024];
        size_t n_want = 0;
        for (char *p = line, *q; *p; p = q) {
            long v = strtol(p, &q, 10);
            if (q == p)
                break;
            CHECK(n_want < 1024, "too many ids");
            want[n_want++] = (int32_t)v;
        }
        int32_t *ids;
        size_t n;
        encode_ok(t, s, len, 0, &ids, &n);
        bool same = n == n_want && (n == 0 || memcmp(ids, want, n * sizeof *ids) == 0);
        if (!same) {
            fprintf(stderr, "vector %d '%.*s'\n want:%s\n got: ", n_vec + 1, (int)len, s, line);
            for (size_t i = 0; i < n; i++)
                fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n");
            n_bad++;
        }
        size_t dl;
        char *back = decode_all(t, ids, n, &dl);
        CHECK(dl == len && memcmp(back, s, len) == 0, "vector %d does not round-trip", n_vec + 1);
        free(back);
        free(ids);
        line = nl + 1;
    }
    CHECK(n_vec > 0, "no vectors in %s", inp_path);
    CHECK(n_bad == 0, "%d of %d MPT vectors differ from llama.cpp", n_bad, n_vec);
    printf("%d MPT vectors match\n", n_vec);
    free(inp);
    free(out);
    return n_vec;
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A random code point from a mix of scripts, spaces, digits, marks and emoji. */
static uint32_t random_cp(uint64_t *r)
{
    static const uint32_t pools[][2] = {
        {0x20, 0x7E}, {0x20, 0x20}, {0x09, 0x0D}, {0x30, 0x39}, {0xA0, 0xFF}, {0x300, 0x36F},
        {0x370, 0x4FF}, {0x4E00, 0x9FFF}, {0xAC00, 0xD7A3}, {0x1F300, 0x1FAFF}, {0x2000, 0x206F},
        {0x3000, 0x303F}, {0xE000, 0xFFFD}, {0x80, 0xD7FF}, {0x10000, 0x10FFFF},
    };
    const uint32_t *p = pools[rng_next(r) % (sizeof pools / sizeof pools[0])];
    return p[0] + (uint32_t)(rng_next(r) % (p[1] - p[0] + 1));
}

static size_t put_utf8(uint32_t c, char *o)
{
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xC0 | (c >> 6));
        o[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | (c >> 12));
        o[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (c >> 18));
    o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

static void check_random_roundtrips(const tokenizer *t, int count)
{
    uint64_t r = 0x9E3779B97F4A7C15ull; /* fixed seed: failures reproduce */
    char s[64 * 4];
    for (int k = 0; k < count; k++) {
        size_t len = 0, n_cp = rng_next(&r) % 64;
        for (size_t i = 0; i < n_cp; i++)
            len += put_utf8(random_cp(&r), s + len);
        int32_t *ids;
        size_t n;
        encode_ok(t, s, len, 0, &ids, &n);
        for (size_t i = 0; i < n; i++)
            CHECK(ids[i] >= 0 && (uint32_t)ids[i] < tokenizer_n_vocab(t), "id out of range");
        size_t dl;
        char *back = decode_all(t, ids, n, &dl);
        if (dl != len || memcmp(back, s, len) != 0) {
            fprintf(stderr, "string %d:", k);
            for (size_t i = 0; i < len; i++)
                fprintf(stderr, " %02x", (uint8_t)s[i]);
            fprintf(stderr, "\n");
        }
        CHECK(dl == len && memcmp(back, s, len) == 0, "random string %d does not round-trip", k);
        free(back);
        free(ids);
    }
    printf("%d random UTF-8 strings round-trip\n", count);
}

static void check_invalid_utf8(const tokenizer *t)
{
    /* An invalid byte reads as U+FFFD (llama.cpp): in-range ids, no failure. */
    static const char bad[] = "a\xff\xc3 b\xe2\x82";
    int32_t *ids;
    size_t n;
    encode_ok(t, bad, sizeof bad - 1, 0, &ids, &n);
    CHECK(n > 0, "invalid UTF-8 gives tokens");
    for (size_t i = 0; i < n; i++)
        CHECK(ids[i] >= 0 && (uint32_t)ids[i] < tokenizer_n_vocab(t), "id out of range");
    free(ids);
}

static void check_speed(const tokenizer *t)
{
    size_t len = 100000;
    char *s = malloc(len);
    CHECK(s, "oom");
    const char *kinds[] = {"text", "a", "spaces"};
    for (int k = 0; k < 3; k++) {
        for (size_t i = 0; i < len; i++)
            s[i] = k == 0 ? "The quick brown fox, 1234 jumps.\n"[i % 33] : k == 1 ? 'a' : ' ';
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int32_t *ids;
        size_t n;
        encode_ok(t, s, len, 0, &ids, &n);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        printf("100 KB of %s: %zu tokens in %.3f s\n", kinds[k], n, sec);
        CHECK(sec < 5.0, "100 KB of %s took %.3f s", kinds[k], sec); /* 0.9 s under ASan */
        free(ids);
    }
    free(s);
}

int main(void)
{
    test_small();
    printf("small vocabularies ok\n");
    char path[1024], inp[1100], out[1100];
    test_shared("vocab/ggml-vocab-mpt.gguf", path, sizeof path);
    snprintf(inp, sizeof inp, "%s.inp", path);
    snprintf(out, sizeof out, "%s.out", path);
    pi_error err = {{0}};
    gguf_file *f = gguf_open(path, &err);
    CHECK(f, "open %s: %s", path, err.msg);
    tokenizer *t = tokenizer_from_gguf(f, &err);
    gguf_close(&f);
    CHECK(t, "%s: %s", path, err.msg);
    check_vectors(t, inp, out);
    check_random_roundtrips(t, 3000);
    check_invalid_utf8(t);
    check_speed(t);
    tokenizer_free(&t);
    return 0;
}
