/* Proves the SPM tokenizer matches llama.cpp's ids on every shared vocab vector, round-trips text, handles byte fallback, user-defined tokens, ties, bad vocabularies, and stays fast on long inputs. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "gguf.h"
#include "tokenizer.h"

/* ---- helpers ---- */

static char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    CHECK(f, "cannot open %s", path);
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            CHECK(buf, "out of memory");
        }
    }
    fclose(f);
    buf[len] = '\0';
    *n = len;
    return buf;
}

/* Decodes ids (the first decoded with prev = prev0) into a malloc'd string. */
static char *decode_all(const tokenizer *t, int32_t prev0, const int32_t *ids, size_t n, size_t *out_len)
{
    size_t piece_cap = tokenizer_max_piece_len(t) + 1;
    char *out = malloc(n * piece_cap + 1);
    size_t k = 0;
    int32_t prev = prev0;
    for (size_t i = 0; i < n; i++) {
        int len = tokenizer_decode_piece(t, prev, ids[i], out + k, piece_cap);
        CHECK(len >= 0 && (size_t)len <= piece_cap, "decode of token %d gave %d", ids[i], len);
        k += (size_t)len;
        prev = ids[i];
    }
    out[k] = '\0';
    *out_len = k;
    return out;
}

static void encode_ok(const tokenizer *t, const char *s, size_t len, int bos, int32_t **ids, size_t *n)
{
    pi_error err = {{0}};
    CHECK(tokenizer_encode(t, s, len, bos, ids, n, &err) == 0, "encode failed: %s", err.msg);
}

static void expect_ids(const tokenizer *t, const char *s, const int32_t *want, size_t n_want)
{
    int32_t *ids;
    size_t n;
    encode_ok(t, s, strlen(s), 0, &ids, &n);
    bool same = n == n_want && (n == 0 || memcmp(ids, want, n * sizeof *ids) == 0);
    if (!same) {
        fprintf(stderr, "encode('%s') gave:", s);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    CHECK(same, "ids of '%s' differ from the expected %zu ids", s, n_want);
    free(ids);
}

/* ---- a small vocabulary built with the GGUF writer ---- */

typedef struct small_vocab {
    const char *toks[300];
    float scores[300];
    int32_t types[300];
    size_t n;
} small_vocab;

static int32_t sv_add(small_vocab *v, const char *tok, float score, int32_t type)
{
    v->toks[v->n] = tok;
    v->scores[v->n] = score;
    v->types[v->n] = type;
    return (int32_t)v->n++;
}

enum { OPT_NO_BYTES = 1, OPT_NO_PREFIX = 2, OPT_SHORT_SCORES = 4, OPT_BAD_BOS = 8, OPT_GPT2 = 16 };

/* Ids: 0 <unk>, 1 <s>, 2 </s>, then the tokens below; byte tokens last. */
static tokenizer *small_tokenizer(int opts, pi_error *err)
{
    static char bytes[256][7];
    small_vocab v = {.n = 0};
    sv_add(&v, "<unk>", 0, 2);
    sv_add(&v, "<s>", 0, 3);
    sv_add(&v, "</s>", 0, 3);
    sv_add(&v, "\xe2\x96\x81", -1, 1);  /* 3 ▁ */
    sv_add(&v, "a", -2, 1);             /* 4 */
    sv_add(&v, "b", -2, 1);             /* 5 */
    sv_add(&v, "c", -2, 1);             /* 6 */
    sv_add(&v, "ab", -5, 1);            /* 7 */
    sv_add(&v, "bc", -5, 1);            /* 8: same score as ab: leftmost wins */
    sv_add(&v, "\xe2\x96\x81" "a", -3, 1); /* 9 ▁a */
    sv_add(&v, "\xe2\x96\x81" "b", -3, 1); /* 10 ▁b */
    sv_add(&v, "<|u|>", 0, 4);          /* 11 user-defined */
    sv_add(&v, "<", -9, 1);             /* 12 */
    sv_add(&v, "s", -9, 1);             /* 13 */
    sv_add(&v, ">", -9, 1);             /* 14 */
    sv_add(&v, "cc", -1, 1);            /* 15: beats bc */
    if (!(opts & OPT_NO_BYTES))
        for (int b = 0; b < 256; b++) {
            snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
            sv_add(&v, bytes[b], 0, 6);
        }
    size_t lens[300];
    for (size_t i = 0; i < v.n; i++)
        lens[i] = strlen(v.toks[i]);
    gguf_writer *w = gguf_writer_new();
    CHECK(w, "gguf_writer_new");
    int rc = gguf_writer_add_str(w, "tokenizer.ggml.model", opts & OPT_GPT2 ? "gpt2" : "llama");
    rc |= gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", v.toks, lens, v.n);
    rc |= gguf_writer_add_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, v.scores,
                              opts & OPT_SHORT_SCORES ? v.n - 1 : v.n);
    rc |= gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, v.types, v.n);
    rc |= gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", opts & OPT_BAD_BOS ? 100000 : 1);
    rc |= gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2);
    rc |= gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    rc |= gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", !(opts & OPT_NO_PREFIX));
    CHECK(rc == 0, "gguf writer add");
    char path[512];
    test_tmp("test_tokenizer_small.gguf", path, sizeof path);
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

static void test_small_vocab(void)
{
    pi_error err = {{0}};
    tokenizer *t = small_tokenizer(0, &err);
    CHECK(t, "small vocab: %s", err.msg);
    CHECK(tokenizer_n_vocab(t) == 16 + 256, "n_vocab %u", tokenizer_n_vocab(t));
    CHECK(tokenizer_bos(t) == 1 && tokenizer_eos(t) == 2, "bos/eos");

    /* Equal scores: the leftmost pair merges first ("ab" before "bc"). */
    expect_ids(t, "abc", (int32_t[]){9, 8}, 2);   /* ▁a bc: "▁a" scores higher than "ab" */
    tokenizer *np = small_tokenizer(OPT_NO_PREFIX, &err);
    CHECK(np, "no-prefix vocab: %s", err.msg);
    expect_ids(np, "abc", (int32_t[]){7, 6}, 2);  /* ab c: tie, leftmost */
    expect_ids(np, "bcc", (int32_t[]){5, 15}, 2); /* b cc: the higher score wins */
    expect_ids(np, "", NULL, 0);
    tokenizer_free(&np);
    CHECK(np == NULL, "tokenizer_free nulls the pointer");

    /* User-defined tokens are cut out first; the text after one gets a
     * space prefix again (llama.cpp). Control tokens written in text stay text. */
    expect_ids(t, "a<|u|>b", (int32_t[]){9, 11, 10}, 3);
    expect_ids(t, "<s>", (int32_t[]){3, 12, 13, 14}, 4);
    /* Characters outside the vocabulary fall back to bytes (0xC3 0xA9 = é). */
    expect_ids(t, "\xc3\xa9", (int32_t[]){3, 16 + 0xC3, 16 + 0xA9}, 3);

    /* add_bos prepends BOS; the decoder drops the prefix space after it. */
    int32_t *ids;
    size_t n, dl;
    encode_ok(t, "ab a", 4, 1, &ids, &n);
    CHECK(n >= 1 && ids[0] == 1, "BOS first");
    char *d = decode_all(t, -1, ids, n, &dl);
    CHECK(strcmp(d, "ab a") == 0, "decode after BOS gave '%s'", d);
    free(d);
    free(ids);

    /* Decoding single pieces: ▁ -> space, byte -> raw byte, control -> nothing. */
    char buf[16];
    CHECK(tokenizer_decode_piece(t, -1, 9, buf, sizeof buf) == 2 && memcmp(buf, " a", 2) == 0, "▁a");
    CHECK(tokenizer_decode_piece(t, 1, 9, buf, sizeof buf) == 1 && buf[0] == 'a', "▁a after BOS");
    CHECK(tokenizer_decode_piece(t, 1, 16 + 0x20, buf, sizeof buf) == 0, "byte space after BOS");
    CHECK(tokenizer_decode_piece(t, -1, 16 + 0xFF, buf, sizeof buf) == 1 && (uint8_t)buf[0] == 0xFF, "byte");
    CHECK(tokenizer_decode_piece(t, -1, 2, buf, sizeof buf) == 0, "control decodes to nothing");
    CHECK(tokenizer_decode_piece(t, -1, 11, buf, sizeof buf) == 5 && !memcmp(buf, "<|u|>", 5), "user");
    CHECK(tokenizer_decode_piece(t, -1, 16 + 256, buf, sizeof buf) == -1, "out of range");
    CHECK(tokenizer_decode_piece(t, -1, -1, buf, sizeof buf) == -1, "negative id");
    memset(buf, 'x', sizeof buf);
    CHECK(tokenizer_decode_piece(t, -1, 11, buf, 2) == 5 && buf[2] == 'x', "cut at cap, full length returned");
    CHECK(strcmp(tokenizer_piece(t, 11), "<|u|>") == 0 && tokenizer_piece(t, 9999) == NULL, "piece");
    tokenizer_free(&t);

    /* No byte tokens: unknown characters become unk. */
    t = small_tokenizer(OPT_NO_BYTES, &err);
    CHECK(t, "no-bytes vocab: %s", err.msg);
    expect_ids(t, "a\xc3\xa9", (int32_t[]){9, 0, 0}, 3);
    tokenizer_free(&t);

    /* Bad vocabularies fail with the key named. */
    CHECK(!small_tokenizer(OPT_SHORT_SCORES, &err) && strstr(err.msg, "tokenizer.ggml.scores"),
          "short scores: %s", err.msg);
    CHECK(!small_tokenizer(OPT_BAD_BOS, &err) && strstr(err.msg, "tokenizer.ggml.bos_token_id"),
          "bad bos: %s", err.msg);
    /* gpt2 goes to the BPE tokenizer (tests/unit/test_tok_bpe.c), which needs merges. */
    CHECK(!small_tokenizer(OPT_GPT2, &err) && strstr(err.msg, "tokenizer.ggml.merges is missing"),
          "gpt2: %s", err.msg);
}

/* ---- llama.cpp's vectors ---- */

static void check_roundtrip(const tokenizer *t, const char *s, size_t len)
{
    int32_t *ids;
    size_t n, dl;
    /* With BOS the decoder drops the prefix space: exact text back. */
    encode_ok(t, s, len, 1, &ids, &n);
    char *d = decode_all(t, -1, ids, n, &dl);
    CHECK(dl == len && memcmp(d, s, len) == 0, "decode(encode('%s')) with BOS gave '%s'", s, d);
    free(d);
    free(ids);
    /* Without BOS the prefix space stays. */
    encode_ok(t, s, len, 0, &ids, &n);
    d = decode_all(t, -1, ids, n, &dl);
    CHECK(len == 0 ? dl == 0 : dl == len + 1 && d[0] == ' ' && memcmp(d + 1, s, len) == 0,
          "decode(encode('%s')) without BOS gave '%s'", s, d);
    free(d);
    free(ids);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void check_fast(const tokenizer *t, const char *what, const char *text, size_t len)
{
    int32_t *ids;
    size_t n, dl;
    double t0 = now_s();
    encode_ok(t, text, len, 0, &ids, &n);
    double dt = now_s() - t0;
    printf("encode %zu bytes of %s: %zu tokens in %.3f s\n", len, what, n, dt);
    CHECK(dt < 1.0, "encoding %s took %.3f s", what, dt);
    char *d = decode_all(t, -1, ids, n, &dl);
    CHECK(dl == len + 1 && memcmp(d + 1, text, len) == 0, "long %s round-trips", what);
    free(d);
    free(ids);
}

static void test_vectors(void)
{
    char path[512], inp_path[600], out_path[600];
    test_shared("vocab/ggml-vocab-llama-spm.gguf", path, sizeof path);
    snprintf(inp_path, sizeof inp_path, "%s.inp", path);
    snprintf(out_path, sizeof out_path, "%s.out", path);
    pi_error err = {{0}};
    gguf_file *f = gguf_open(path, &err);
    CHECK(f, "open %s: %s", path, err.msg);
    tokenizer *t = tokenizer_from_gguf(f, &err);
    CHECK(t, "tokenizer of %s: %s", path, err.msg);
    gguf_close(&f); /* the tokenizer copied what it needs */
    CHECK(tokenizer_n_vocab(t) == 32000 && tokenizer_bos(t) == 1 && tokenizer_eos(t) == 2, "vocab ids");

    size_t inp_len, out_len;
    char *inp = read_all(inp_path, &inp_len);
    char *out = read_all(out_path, &out_len);
    /* .inp: each string followed by "\n__ggml_vocab_test__\n"; .out: one line of ids per string. */
    static const char sep[] = "\n__ggml_vocab_test__\n";
    char *s = inp, *line = out;
    int n_vec = 0;
    for (char *end; (end = strstr(s, sep)) != NULL; s = end + strlen(sep), n_vec++) {
        size_t len = (size_t)(end - s);
        char *nl = strchr(line, '\n');
        CHECK(nl, ".out has fewer lines than .inp has strings (%d)", n_vec);
        *nl = '\0';
        int32_t want[512];
        size_t n_want = 0;
        for (char *p = line, *q; *p; p = q) {
            long v = strtol(p, &q, 10);
            if (q == p)
                break;
            CHECK(n_want < 512, "too many ids");
            want[n_want++] = (int32_t)v;
        }
        int32_t *ids;
        size_t n;
        encode_ok(t, s, len, 0, &ids, &n);
        bool same = n == n_want && (n == 0 || memcmp(ids, want, n * sizeof *ids) == 0);
        if (!same) {
            fprintf(stderr, "vector %d '%.*s'\n want:%s\n got: ", n_vec, (int)len, s, line);
            for (size_t i = 0; i < n; i++)
                fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n");
        }
        CHECK(same, "vector %d differs from llama.cpp", n_vec);
        free(ids);
        char saved = s[len];
        s[len] = '\0';
        check_roundtrip(t, s, len);
        s[len] = saved;
        line = nl + 1;
    }
    CHECK(n_vec == 46 && *line == '\0', "read %d vectors; .out has lines left: %d", n_vec, *line != '\0');
    printf("%d llama.cpp vectors match byte-exactly and round-trip\n", n_vec);
    free(inp);
    free(out);

    /* Byte fallback: an emoji outside the vocabulary, invalid UTF-8. */
    int32_t llama[] = {29871, 3 + 0xF0, 3 + 0x9F, 3 + 0xA6, 3 + 0x99};
    expect_ids(t, "\xf0\x9f\xa6\x99", llama, 5);
    expect_ids(t, "\xff", (int32_t[]){29871, 3 + 0xFF}, 2);
    check_roundtrip(t, "a\x80" "b\xff\xfe" "z\xc3", 7);

    /* Long inputs stay O(n log n). */
    size_t big = 100 * 1024;
    char *text = malloc(big);
    static const char *words[] = {"the ", "quick ", "brown ", "fox ", "jumps\n", "über ", "日本語 ", "🦙 ", "1234 "};
    size_t k = 0;
    for (unsigned r = 12345; k < big;) {
        r = r * 1103515245u + 12345u;
        const char *w = words[(r >> 16) % 9];
        size_t wl = strlen(w);
        if (k + wl > big)
            break;
        memcpy(text + k, w, wl);
        k += wl;
    }
    check_fast(t, "words", text, k);
    memset(text, 'a', big);
    check_fast(t, "'a' repeated", text, big);
    memset(text, ' ', big);
    check_fast(t, "spaces", text, big);
    free(text);
    tokenizer_free(&t);
}

int main(void)
{
    test_small_vocab();
    printf("small vocabulary checks passed\n");
    test_vectors();
    return 0;
}
