/* Proves tokenizer_encode_special turns control, unknown and user-defined tokens written in the text (chat markers) into their ids, longest first, with the text between encoded exactly as plain text (llama.cpp's parse_special), on the real llama-spm and mpt vocabularies and on copies of them with chat tokens added; plain encoding keeps markers as text. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gguf.h"
#include "tokenizer.h"

typedef struct ids {
    int32_t *a;
    size_t n;
} ids;

static ids enc(const tokenizer *t, const char *s, int special)
{
    ids r = {0};
    pi_error err = {{0}};
    int rc = special ? tokenizer_encode_special(t, s, strlen(s), 0, &r.a, &r.n, &err)
                     : tokenizer_encode(t, s, strlen(s), 0, &r.a, &r.n, &err);
    CHECK(rc == 0, "encode '%s': %s", s, err.msg);
    return r;
}

static void ids_cat(ids *dst, const int32_t *src, size_t n)
{
    int32_t *a = realloc(dst->a, (dst->n + n + 1) * sizeof *a);
    CHECK(a, "out of memory");
    if (n)
        memcpy(a + dst->n, src, n * sizeof *a);
    dst->a = a;
    dst->n += n;
}

static void ids_print(const char *what, ids v)
{
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < v.n; i++)
        fprintf(stderr, " %d", v.a[i]);
    fprintf(stderr, "\n");
}

/* The expected ids of parts[]: a part naming a token id (tok >= 0) is that
 * id; a text part is its plain encoding (the partition cuts the text there,
 * so each run is encoded on its own, with its SPM space prefix). */
typedef struct part {
    int32_t tok;
    const char *text;
} part;

static void expect_special(const tokenizer *t, const part *parts, size_t n_parts)
{
    char text[1024] = "";
    ids want = {0};
    for (size_t i = 0; i < n_parts; i++) {
        if (parts[i].tok >= 0) {
            const char *p = tokenizer_piece(t, parts[i].tok);
            CHECK(p, "piece %d", parts[i].tok);
            strncat(text, p, sizeof text - strlen(text) - 1);
            ids_cat(&want, &parts[i].tok, 1);
        } else {
            strncat(text, parts[i].text, sizeof text - strlen(text) - 1);
            ids plain = enc(t, parts[i].text, 0);
            ids_cat(&want, plain.a, plain.n);
            free(plain.a);
        }
    }
    ids got = enc(t, text, 1);
    bool same = got.n == want.n && memcmp(got.a, want.a, got.n * sizeof *got.a) == 0;
    if (!same) {
        fprintf(stderr, "special encoding of '%s':\n", text);
        ids_print("got ", got);
        ids_print("want", want);
    }
    CHECK(same, "special encoding of '%s' differs", text);
    /* Plain encoding never yields a control id written as text. */
    ids plain = enc(t, text, 0);
    for (size_t i = 0; i < n_parts; i++)
        for (size_t k = 0; parts[i].tok >= 0 && k < plain.n; k++)
            CHECK(plain.a[k] != parts[i].tok || !strcmp(tokenizer_piece(t, parts[i].tok), "<|im"),
                  "plain encoding of '%s' produced control id %d", text, parts[i].tok);
    free(plain.a);
    free(got.a);
    free(want.a);
}

static tokenizer *open_tok(const char *path)
{
    pi_error err = {{0}};
    gguf_file *f = gguf_open(path, &err);
    CHECK(f, "open %s: %s", path, err.msg);
    tokenizer *t = tokenizer_from_gguf(f, &err);
    CHECK(t, "tokenizer of %s: %s", path, err.msg);
    gguf_close(&f);
    return t;
}

/* Writes a copy of the vocabulary at src with extra tokens (type types[i])
 * appended, as a model's added_tokens.json would; returns its path. */
static const char *vocab_with(const char *src, const char *const *extra, const int32_t *types,
                              size_t n_extra, char *out, size_t cap)
{
    pi_error err = {{0}};
    gguf_file *f = gguf_open(src, &err);
    CHECK(f, "open %s: %s", src, err.msg);
    const gguf_kv *tk = gguf_find_kv(f, "tokenizer.ggml.tokens");
    const gguf_kv *sc = gguf_find_kv(f, "tokenizer.ggml.scores");
    const gguf_kv *ty = gguf_find_kv(f, "tokenizer.ggml.token_type");
    CHECK(tk && ty, "%s has tokens and token types", src);
    size_t n = (size_t)tk->v.arr.n, m = n + n_extra;
    const char **strs = malloc(m * sizeof *strs);
    size_t *lens = malloc(m * sizeof *lens);
    float *scores = malloc(m * sizeof *scores);
    int32_t *tt = malloc(m * sizeof *tt);
    CHECK(strs && lens && scores && tt, "out of memory");
    for (size_t i = 0; i < n; i++) {
        strs[i] = tk->v.arr.strs[i].ptr;
        lens[i] = (size_t)tk->v.arr.strs[i].len;
        scores[i] = sc ? (float)gguf_arr_f64(sc, i) : 0.0f;
        tt[i] = (int32_t)gguf_arr_i64(ty, i);
    }
    for (size_t i = 0; i < n_extra; i++) {
        strs[n + i] = extra[i];
        lens[n + i] = strlen(extra[i]);
        scores[n + i] = 0.0f;
        tt[n + i] = types[i];
    }
    gguf_writer *w = gguf_writer_new();
    CHECK(w, "gguf_writer_new");
    int rc = 0;
    for (size_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        if (kv != tk && kv != sc && kv != ty)
            rc |= gguf_writer_add_kv(w, kv);
    }
    rc |= gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", strs, lens, m);
    if (sc)
        rc |= gguf_writer_add_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, m);
    rc |= gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, tt, m);
    CHECK(rc == 0, "gguf writer add");
    const char *base = strrchr(src, '/');
    char name[256];
    snprintf(name, sizeof name, "test_tok_special_%s", base ? base + 1 : src);
    test_tmp(name, out, cap);
    CHECK(gguf_writer_write(w, out, "GGUF", &err) == 0, "write %s: %s", out, err.msg);
    gguf_writer_free(&w);
    free(strs);
    free(lens);
    free(scores);
    free(tt);
    gguf_close(&f);
    return out;
}

enum { T_TEXT = -1 };
#define TX(s) {T_TEXT, s}
#define TK(id) {id, NULL}

static const char *const chat_tokens[] = {"<|im_start|>", "<|im_end|>", "[INST]", "[/INST]",
                                          "<start_of_turn>", "<end_of_turn>", "<|eot_id|>", "<|im"};
static const int32_t chat_types[] = {3, 3, 3, 3, 3, 3, 3, 4}; /* "<|im": user-defined prefix */

static void test_llama_spm(void)
{
    char buf[1024];
    const char *path = test_shared("vocab/ggml-vocab-llama-spm.gguf", buf, sizeof buf);
    tokenizer *t = open_tok(path);
    /* <unk> 0 (unknown), <s> 1 and </s> 2 (control) in this vocabulary. */
    expect_special(t, (part[]){TK(1), TX("[INST] Hello [/INST]")}, 2);
    expect_special(t, (part[]){TX("a"), TK(2), TX("b"), TK(1), TK(0)}, 5);
    expect_special(t, (part[]){TK(1), TK(1), TX(" x ")}, 3);
    ids v = enc(t, "<s>", 0);
    CHECK(v.n > 1, "plain '<s>' stays text (%zu ids)", v.n);
    free(v.a);
    tokenizer_free(&t);

    /* Added chat tokens: each becomes one id, longest first ("<|im" is a
     * user-defined prefix of "<|im_start|>"). */
    char added[1024];
    t = open_tok(vocab_with(path, chat_tokens, chat_types, 8, added, sizeof added));
    int32_t s = 32000; /* the first added id */
    expect_special(t, (part[]){TK(s + 0), TX("system\nBe brief."), TK(s + 1), TX("\n"), TK(s + 0),
                               TX("user\nHi"), TK(s + 1), TX("\n"), TK(s + 0), TX("assistant\n")}, 10);
    expect_special(t, (part[]){TK(1), TK(s + 2), TX(" Hi "), TK(s + 3)}, 4);
    expect_special(t, (part[]){TK(s + 4), TX("user\nHi"), TK(s + 5), TX("\n"), TK(s + 4), TX("model\n")}, 6);
    expect_special(t, (part[]){TK(s + 6), TK(s + 7), TX("_x")}, 3);
    /* Plain: the user-defined "<|im" is still cut out, the control rest is text. */
    v = enc(t, "<|im_start|>", 0);
    CHECK(v.n > 1 && v.a[0] == s + 7, "plain '<|im_start|>' = '<|im' + text (first id %d)", v.n ? v.a[0] : -1);
    free(v.a);
    tokenizer_free(&t);
    remove(added);
}

static void test_mpt_bpe(void)
{
    char buf[1024];
    const char *path = test_shared("vocab/ggml-vocab-mpt.gguf", buf, sizeof buf);
    tokenizer *t = open_tok(path);
    /* <|endoftext|> 0 and <|padding|> 1 are control tokens. */
    ids v = enc(t, "<|endoftext|>hi", 1);
    CHECK(v.n == 2 && v.a[0] == 0 && v.a[1] == 5801, "mpt '<|endoftext|>hi' = 0 5801 (%zu ids)", v.n);
    free(v.a);
    expect_special(t, (part[]){TX("Hello world"), TK(0), TK(1), TX(" again\n")}, 4);
    tokenizer_free(&t);

    char added[1024];
    t = open_tok(vocab_with(path, chat_tokens, chat_types, 8, added, sizeof added));
    int32_t s = 50432;
    expect_special(t, (part[]){TK(s + 0), TX("user\nHi there"), TK(s + 1), TX("\n"), TK(s + 0),
                               TX("assistant\n")}, 6);
    expect_special(t, (part[]){TK(s + 7), TX("x"), TK(s + 6)}, 3);
    tokenizer_free(&t);
    remove(added);
}

int main(void)
{
    test_llama_spm();
    test_mpt_bpe();
    printf("test_tok_special: ok\n");
    return 0;
}
