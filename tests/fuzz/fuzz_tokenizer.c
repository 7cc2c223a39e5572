/* Proves that encoding any bytes (plainly or parsing special tokens) yields in-range ids that all decode, that BOS only prepends, that special parsing changes nothing without a control token's text, and that valid UTF-8 text round-trips through encode/decode (SPM and, with the shared MPT vocabulary, byte-level BPE). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "tokenizer.h"

#define FAIL(...)                                   \
    do {                                            \
        fprintf(stderr, "fuzz_tokenizer: " __VA_ARGS__); \
        fprintf(stderr, "\n");                      \
        abort();                                    \
    } while (0)

/* Texts of the user-defined tokens of the small vocabulary: text holding one
 * is cut there and gets a new space prefix, so it does not round-trip. */
static const char *const user_tokens[] = {"<|u|>", "ab\xc3\xa9"};

/* A small vocabulary written with the GGUF writer: control and unknown
 * tokens, merges with equal and distinct scores, multi-byte characters,
 * user-defined tokens and all 256 byte tokens. */
static tokenizer *small_tokenizer(void)
{
    static const struct {
        const char *text;
        float score;
        int32_t type;
    } base[] = {
        {"<unk>", 0, 2}, {"<s>", 0, 3}, {"</s>", 0, 3}, {"\xe2\x96\x81", -1, 1},
        {"a", -2, 1}, {"b", -2, 1}, {"c", -2, 1}, {"<", -3, 1}, {"s", -3, 1}, {">", -3, 1},
        {"ab", -4, 1}, {"bc", -4, 1}, {"abc", -3, 1}, {"cc", -1, 1}, {"\xc3\xa9", -2, 1},
        {"\xe2\x96\x81" "a", -2, 1}, {"\xe2\x96\x81\xe2\x96\x81", -2, 1},
        {"\xe2\x96\x81" "ab", -1, 1}, {"\xe6\x97\xa5", -2, 1}, {"\xe6\x97\xa5\xe6\x97\xa5", -5, 1},
        {"<|u|>", 0, 4}, {"ab\xc3\xa9", 0, 4}, {"unused", 0, 5}, {"\n\n", -2, 1},
    };
    enum { N_BASE = sizeof base / sizeof base[0], N = N_BASE + 256 };
    static char bytes[256][7];
    const char *toks[N];
    size_t lens[N];
    float scores[N];
    int32_t types[N];
    for (size_t i = 0; i < N; i++) {
        if (i < N_BASE) {
            toks[i] = base[i].text;
            scores[i] = base[i].score;
            types[i] = base[i].type;
        } else {
            snprintf(bytes[i - N_BASE], sizeof bytes[0], "<0x%02X>", (unsigned)(i - N_BASE));
            toks[i] = bytes[i - N_BASE];
            scores[i] = 0;
            types[i] = 6;
        }
        lens[i] = strlen(toks[i]);
    }
    gguf_writer *w = gguf_writer_new();
    if (!w)
        FAIL("gguf_writer_new failed");
    int rc = gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
    rc |= gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, lens, N);
    rc |= gguf_writer_add_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, N);
    rc |= gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, N);
    rc |= gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1);
    rc |= gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2);
    if (rc != 0)
        FAIL("gguf writer add failed");
    char path[] = "/tmp/fuzz_tokenizer_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        FAIL("mkstemp failed");
    close(fd);
    pi_error err = {{0}};
    if (gguf_writer_write(w, path, "GGUF", &err) != 0)
        FAIL("%s", err.msg);
    gguf_writer_free(&w);
    gguf_file *f = gguf_open(path, &err);
    tokenizer *t = f ? tokenizer_from_gguf(f, &err) : NULL;
    gguf_close(&f);
    unlink(path);
    if (!t)
        FAIL("small vocabulary: %s", err.msg);
    return t;
}

/* A vocabulary of the shared test data (name: "llama-spm", "mpt"), when PI_SHARED names it. */
static tokenizer *shared_tokenizer(const char *name)
{
    const char *dir = getenv("PI_SHARED");
    if (!dir)
        return NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-%s.gguf", dir, name);
    if (access(path, R_OK) != 0)
        return NULL;
    pi_error err = {{0}};
    gguf_file *f = gguf_open(path, &err);
    tokenizer *t = f ? tokenizer_from_gguf(f, &err) : NULL;
    gguf_close(&f);
    if (!t)
        FAIL("%s", err.msg);
    return t;
}

/* Strict UTF-8: no overlongs, surrogates or code points above U+10FFFF. */
static bool valid_utf8(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                   : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (len == 0 || len > n - i)
            return false;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
        if ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] >= 0xA0) ||
            (c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] >= 0x90))
            return false;
        i += len;
    }
    return true;
}

static bool contains(const uint8_t *s, size_t n, const char *needle)
{
    return memmem(s, n, needle, strlen(needle)) != NULL;
}

/* adds_bos: encoding with add_bos prepends BOS (byte-level BPE vocabularies
 * such as MPT's ask for none). */
static void check(const tokenizer *t, bool has_user, bool adds_bos, const uint8_t *data,
                  size_t size)
{
    pi_error err = {{0}};
    int32_t *ids = NULL, *bos_ids = NULL;
    size_t n = 0, n_bos = 0;
    if (tokenizer_encode(t, (const char *)data, size, 0, &ids, &n, &err) != 0 ||
        tokenizer_encode(t, (const char *)data, size, 1, &bos_ids, &n_bos, &err) != 0)
        FAIL("encode of %zu bytes failed: %s", size, err.msg);
    /* BOS only prepends; an empty text has no tokens. */
    size_t nb = adds_bos ? 1 : 0;
    if (n_bos != n + nb || (nb && bos_ids[0] != tokenizer_bos(t)) ||
        (n && memcmp(bos_ids + nb, ids, n * sizeof *ids) != 0))
        FAIL("encoding with BOS is not BOS + encoding without");
    if ((size == 0) != (n == 0))
        FAIL("%zu bytes gave %zu tokens", size, n);

    size_t cap = tokenizer_max_piece_len(t);
    char *out = malloc(n_bos * cap + 1);
    size_t k = 0;
    int32_t prev = -1;
    for (size_t i = 0; i < n_bos; i++) {
        if (bos_ids[i] < 0 || (uint32_t)bos_ids[i] >= tokenizer_n_vocab(t))
            FAIL("id %d out of range", bos_ids[i]);
        if (!tokenizer_piece(t, bos_ids[i]))
            FAIL("id %d has no piece", bos_ids[i]);
        int len = tokenizer_decode_piece(t, prev, bos_ids[i], out + k, cap);
        if (len < 0 || (size_t)len > cap)
            FAIL("decoding id %d gave %d (cap %zu)", bos_ids[i], len, cap);
        k += (size_t)len;
        prev = bos_ids[i];
    }
    /* Valid UTF-8 comes back exactly, unless it holds U+2581 (decodes as a
     * space) or a user-defined token (the text after it gets a new prefix). */
    bool comparable = valid_utf8(data, size) && !contains(data, size, "\xe2\x96\x81");
    for (size_t u = 0; has_user && u < sizeof user_tokens / sizeof user_tokens[0]; u++)
        comparable = comparable && !contains(data, size, user_tokens[u]);
    if (comparable && (k != size || memcmp(out, data, size) != 0))
        FAIL("decode(encode(text)) differs from the text (%zu bytes in, %zu out)", size, k);
    free(out);
    /* Special parsing (chat prompts) gives in-range ids too, and the plain
     * ids when no control token can be in the text (all of these
     * vocabularies' control tokens start with '<'). */
    int32_t *sp = NULL;
    size_t n_sp = 0;
    if (tokenizer_encode_special(t, (const char *)data, size, 0, &sp, &n_sp, &err) != 0)
        FAIL("special encode of %zu bytes failed: %s", size, err.msg);
    for (size_t i = 0; i < n_sp; i++)
        if (sp[i] < 0 || (uint32_t)sp[i] >= tokenizer_n_vocab(t))
            FAIL("special id %d out of range", sp[i]);
    if ((size == 0 || !memchr(data, '<', size)) && (n_sp != n || (n && memcmp(sp, ids, n * sizeof *ids) != 0)))
        FAIL("special encoding differs from plain on text without '<'");
    free(sp);
    free(ids);
    free(bos_ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Built once per process and kept for its life (fuzzing only). */
    static tokenizer *small, *shared, *bpe;
    static bool ready;
    if (!ready) {
        small = small_tokenizer();
        shared = shared_tokenizer("llama-spm");
        bpe = shared_tokenizer("mpt");
        ready = true;
    }
    if (size > 1 << 16)
        return 0;
    check(small, true, true, data, size);
    if (shared)
        check(shared, false, true, data, size);
    if (bpe)
        check(bpe, false, false, data, size);
    return 0;
}
