/* Deterministic SPM vocabulary for synthetic models (see synth_vocab.h).
 * Every piece longer than one character is the concatenation of two
 * earlier pieces, so the SPM merge procedure can reach it. */
#include "synth_vocab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PIECE_MAX 16            /* bytes, without the NUL */
#define SPACE "\xe2\x96\x81"    /* U+2581, SentencePiece's word-start mark */
#define N_FIXED 259             /* <unk>, <s>, </s> and 256 byte tokens */

typedef struct vocab {
    uint32_t n, cap;
    char (*text)[PIECE_MAX + 1];
    size_t *len;
    float *score;
    int32_t *type;
    int32_t *table;             /* open addressing over text, -1 empty */
    uint32_t mask;
} vocab;

static uint64_t vocab_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* Adds s (n bytes) unless it is already there: 1 added, 0 duplicate or full. */
static int vocab_put(vocab *v, const char *s, size_t n, float score, int32_t type)
{
    if (v->n == v->cap || n > PIECE_MAX)
        return 0;
    uint32_t at = (uint32_t)vocab_hash(s, n) & v->mask;
    while (v->table[at] >= 0) {
        int32_t id = v->table[at];
        if (v->len[id] == n && !memcmp(v->text[id], s, n))
            return 0;
        at = (at + 1) & v->mask;
    }
    v->table[at] = (int32_t)v->n;
    memcpy(v->text[v->n], s, n);
    v->text[v->n][n] = '\0';
    v->len[v->n] = n;
    v->score[v->n] = score;
    v->type[v->n] = type;
    v->n++;
    return 1;
}

static uint64_t vocab_rng(uint64_t *s)
{
    uint64_t x = (*s += 0x9e3779b97f4a7c15ull);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* An index below n, biased towards early (short, common) pieces. */
static uint32_t vocab_pick(uint64_t *s, uint32_t lo, uint32_t n)
{
    double u = (double)(vocab_rng(s) >> 11) / 9007199254740992.0;
    return lo + (uint32_t)((double)(n - lo) * u * u * u);
}

static void vocab_pieces(vocab *v)
{
    static const char alphabet[] = "etaoinshrdlcumwfgypbvkjxqzETAOINSHRDLCUMWFGYPBVKJXQZ0123456789.,'-!?:;\"()";
    const uint32_t first = v->n;
    float score = 0.0f;
    vocab_put(v, SPACE, 3, score--, 1);
    for (const char *c = alphabet; *c; c++)
        vocab_put(v, c, 1, score--, 1);
    for (const char *c = alphabet; *c && c < alphabet + 52; c++) {
        char w[4 + 1];
        memcpy(w, SPACE, 3);
        w[3] = *c;
        vocab_put(v, w, 4, score--, 1);
    }
    /* Joins two earlier pieces; the right one never starts a word. The
     * candidate space is far larger than any vocabulary, so the loop ends;
     * the attempt cap only guards against a bug. */
    uint64_t rng = 0x5eed5eed5eedull;
    for (uint64_t tries = 0; v->n < v->cap && tries < 1000ull * v->cap; tries++) {
        uint32_t a = vocab_pick(&rng, first, v->n), b = vocab_pick(&rng, first + 1, v->n);
        if (v->len[b] >= 3 && !memcmp(v->text[b], SPACE, 3))
            continue;
        size_t la = v->len[a], lb = v->len[b];
        if (la + lb > PIECE_MAX)
            continue;
        char w[2 * PIECE_MAX + 1];
        memcpy(w, v->text[a], la);
        memcpy(w + la, v->text[b], lb);
        if (vocab_put(v, w, la + lb, score, 1))
            score -= 1.0f;
    }
}

int synth_vocab_add(gguf_writer *w, uint32_t n_vocab, pi_error *err)
{
    if (n_vocab < N_FIXED + 41 || n_vocab > (1u << 24))
        return pi_error_set(err, "synth: vocabulary size %u is out of range (300..16777216)", n_vocab);
    vocab v = {.cap = n_vocab};
    uint32_t slots = 1;
    while (slots < 2 * n_vocab)
        slots <<= 1;
    v.mask = slots - 1;
    v.text = malloc((size_t)n_vocab * sizeof *v.text);
    v.len = malloc((size_t)n_vocab * sizeof *v.len);
    v.score = malloc((size_t)n_vocab * sizeof *v.score);
    v.type = malloc((size_t)n_vocab * sizeof *v.type);
    v.table = malloc((size_t)slots * sizeof *v.table);
    const char **strs = malloc((size_t)n_vocab * sizeof *strs);
    int rc = -1;
    if (!v.text || !v.len || !v.score || !v.type || !v.table || !strs) {
        pi_error_set(err, "synth: out of memory for a vocabulary of %u tokens", n_vocab);
        goto done;
    }
    memset(v.table, 0xff, (size_t)slots * sizeof *v.table);
    vocab_put(&v, "<unk>", 5, 0.0f, 2);
    vocab_put(&v, "<s>", 3, 0.0f, 3);
    vocab_put(&v, "</s>", 4, 0.0f, 3);
    for (int b = 0; b < 256; b++) {
        char t[8];
        snprintf(t, sizeof t, "<0x%02X>", b);
        vocab_put(&v, t, 6, 0.0f, 6);
    }
    vocab_pieces(&v);
    if (v.n != n_vocab) {
        pi_error_set(err, "synth: could only build %u of %u vocabulary pieces", v.n, n_vocab);
        goto done;
    }
    for (uint32_t i = 0; i < n_vocab; i++)
        strs[i] = v.text[i];
    int bad = 0;
    bad |= gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
    bad |= gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", strs, v.len, n_vocab);
    bad |= gguf_writer_add_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, v.score, n_vocab);
    bad |= gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, v.type, n_vocab);
    bad |= gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1);
    bad |= gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2);
    bad |= gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    bad |= gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", true);
    bad |= gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", true);
    if (bad)
        pi_error_set(err, "synth: could not add the tokenizer keys (out of memory?)");
    else
        rc = 0;
done:
    free(v.text);
    free(v.len);
    free(v.score);
    free(v.type);
    free(v.table);
    free(strs);
    return rc;
}
