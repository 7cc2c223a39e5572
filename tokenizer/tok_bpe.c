/* Byte-level BPE tokenizer, matching llama.cpp's BPE tokenizer for the test
 * vectors in ../shared/vocab. Encoding:
 *   1. user-defined tokens (type 4) are cut out of the text first, longest
 *      first, leftmost occurrences first; control and unknown tokens only
 *      with parse_special (chat prompts), else they stay text;
 *   2. each remaining fragment is decoded to code points (an invalid UTF-8
 *      byte becomes U+FFFD, as in llama.cpp) and split into words by the
 *      pre-tokenizer named by tokenizer.ggml.pre (bpe_pre.c: hand-written
 *      scanners for llama.cpp's regular expressions, over the Unicode classes
 *      of unicode_table.c);
 *   3. each word's UTF-8 bytes are mapped to GPT-2's byte alphabet (every
 *      byte a printable code point) and split into those characters; the
 *      adjacent pair with the lowest merge rank (tokenizer.ggml.merges
 *      index) is merged, leftmost on ties, until no pair has a rank (a
 *      binary heap: O(n log n));
 *   4. a final symbol that is not a token falls back to the tokens of its
 *      single bytes (dropped when there is none, as in llama.cpp). */
#include "tok_bpe.h"
#include "tok_partition.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "bpe_pre.h"
#include "unicode_table.h"

enum {
    TT_UNDEFINED = 0, TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3,
    TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6,
};

/* Input cap: keeps every index (up to 8 bytes of byte-level text per input
 * byte) well inside 32 bits. */
#define BPE_MAX_TEXT ((size_t)1 << 26)
#define BPE_NO_RANK UINT32_MAX


struct tok_bpe {
    uint32_t n;
    char *arena;        /* every piece, NUL-terminated */
    size_t *off;        /* piece i is arena + off[i], len[i] bytes */
    uint32_t *len;
    uint8_t *type;
    int32_t *map;       /* open addressing, piece -> id, -1 = empty */
    size_t map_mask;
    size_t max_len;     /* longest piece */
    char *m_arena;      /* every merge "LEFT RIGHT", NUL-terminated */
    size_t *m_off;
    uint32_t *m_len;
    uint32_t n_merges;
    int32_t *m_map;     /* open addressing, merge text -> rank, -1 = empty */
    size_t m_mask;
    size_t m_max_len;
    int32_t *user;      /* user-defined tokens, longest first */
    uint32_t n_user;
    int32_t *special;   /* user-defined, control and unknown tokens, longest first */
    uint32_t n_special;
    int32_t bos, eos;
    bool add_bos;
    const bpe_pre *pre;
    uint16_t byte_cp[256];   /* GPT-2's byte -> printable code point */
    int16_t cp_byte[324];    /* and back (-1 = not a byte's code point) */
};

/* ---- vocabulary ---- */

static size_t bpe_hash(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29));
}

/* Finds p[0..n) among the strings arena + off[i] (len[i] bytes) indexed by map. */
static int32_t bpe_find(const int32_t *map, size_t mask, const char *arena, const size_t *off,
                        const uint32_t *len, const char *p, size_t n)
{
    for (size_t h = bpe_hash(p, n) & mask;; h = (h + 1) & mask) {
        int32_t id = map[h];
        if (id < 0)
            return -1;
        if (len[id] == n && memcmp(arena + off[id], p, n) == 0)
            return id;
    }
}

/* Inserts entry id; a duplicate string keeps the later id when later_wins. */
static void bpe_insert(int32_t *map, size_t mask, const char *arena, const size_t *off,
                       const uint32_t *len, int32_t id, bool later_wins)
{
    const char *p = arena + off[id];
    size_t n = len[id];
    for (size_t h = bpe_hash(p, n) & mask;; h = (h + 1) & mask) {
        int32_t old = map[h];
        if (old < 0) {
            map[h] = id;
            return;
        }
        if (len[old] == n && memcmp(arena + off[old], p, n) == 0) {
            if (later_wins)
                map[h] = id;
            return;
        }
    }
}

static int32_t bpe_token(const tok_bpe *b, const char *p, size_t n)
{
    if (n > b->max_len)
        return -1;
    return bpe_find(b->map, b->map_mask, b->arena, b->off, b->len, p, n);
}

static bool bpe_is_int_type(gguf_type t)
{
    return t <= GGUF_TYPE_INT32 || t == GGUF_TYPE_UINT64 || t == GGUF_TYPE_INT64;
}

/* Copies a string array into one arena: off/len per entry. */
static int bpe_copy_strs(const gguf_file *f, const gguf_kv *kv, const char *key, char **arena,
                         size_t *off, uint32_t *len, size_t *max_len, pi_error *err)
{
    uint64_t n = kv->v.arr.n;
    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t l = kv->v.arr.strs[i].len;
        if (l > UINT32_MAX || pi_add_size(total, (size_t)l + 1, &total) != 0)
            return pi_error_set(err, "%s: %s[%llu] is too long", gguf_path(f), key,
                                (unsigned long long)i);
    }
    *arena = malloc(total ? total : 1);
    if (!*arena)
        return pi_error_set(err, "%s: out of memory for %s", gguf_path(f), key);
    size_t at = 0;
    *max_len = 0;
    for (uint64_t i = 0; i < n; i++) {
        const gguf_str *s = &kv->v.arr.strs[i];
        off[i] = at;
        len[i] = (uint32_t)s->len;
        if (s->len)
            memcpy(*arena + at, s->ptr, s->len);
        (*arena)[at + s->len] = '\0';
        at += s->len + 1;
        if (s->len > *max_len)
            *max_len = s->len;
    }
    return 0;
}

static int32_t *bpe_new_map(size_t n, size_t *mask)
{
    size_t cap = 16;
    while (cap < n * 2)
        cap *= 2;
    *mask = cap - 1;
    int32_t *m = malloc(cap * sizeof *m);
    if (m)
        memset(m, 0xff, cap * sizeof *m);
    return m;
}

static int bpe_load_types(tok_bpe *b, const gguf_file *f, pi_error *err)
{
    const gguf_kv *ty = gguf_find_kv(f, "tokenizer.ggml.token_type");
    if (ty && (ty->type != GGUF_TYPE_ARRAY || !bpe_is_int_type(ty->v.arr.type)))
        return pi_error_set(err, "%s: tokenizer.ggml.token_type must be an array of integers",
                            gguf_path(f));
    if (ty && ty->v.arr.n != b->n)
        return pi_error_set(err, "%s: tokenizer.ggml.token_type has %llu entries but "
                            "tokenizer.ggml.tokens has %u: the vocabulary arrays must agree "
                            "(re-convert the model)", gguf_path(f),
                            (unsigned long long)ty->v.arr.n, b->n);
    for (uint32_t i = 0; i < b->n; i++) {
        int64_t t = ty ? gguf_arr_i64(ty, i) : TT_NORMAL;
        if (t < TT_UNDEFINED || t > TT_BYTE)
            return pi_error_set(err, "%s: tokenizer.ggml.token_type[%u] = %lld is not a known "
                                "token type (0..6)", gguf_path(f), i, (long long)t);
        b->type[i] = (uint8_t)t;
    }
    return 0;
}

/* The tokens the partition cuts out: user-defined ones always, control
 * and unknown ones too when parsing special tokens. */
static int bpe_build_lists(tok_bpe *b, pi_error *err)
{
    const unsigned user = TOK_TYPE_BIT(TOK_TYPE_USER);
    const unsigned special = user | TOK_TYPE_BIT(TOK_TYPE_CONTROL) | TOK_TYPE_BIT(TOK_TYPE_UNKNOWN);
    if (tok_partition_list(b->len, b->type, b->n, user, &b->user, &b->n_user) != 0 ||
        tok_partition_list(b->len, b->type, b->n, special, &b->special, &b->n_special) != 0)
        return pi_error_set(err, "tokenizer: out of memory");
    return 0;
}

static int bpe_load_merges(tok_bpe *b, const gguf_file *f, pi_error *err)
{
    const char *key = "tokenizer.ggml.merges";
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv)
        return pi_error_set(err, "%s: key %s is missing: a gpt2 (BPE) vocabulary needs its merges "
                            "(re-convert the model)", gguf_path(f), key);
    if (kv->type != GGUF_TYPE_ARRAY || kv->v.arr.type != GGUF_TYPE_STRING ||
        kv->v.arr.n > INT32_MAX)
        return pi_error_set(err, "%s: %s must be an array of strings", gguf_path(f), key);
    b->n_merges = (uint32_t)kv->v.arr.n;
    size_t n = b->n_merges ? b->n_merges : 1;
    b->m_off = malloc(n * sizeof *b->m_off);
    b->m_len = malloc(n * sizeof *b->m_len);
    b->m_map = bpe_new_map(n, &b->m_mask);
    if (!b->m_off || !b->m_len || !b->m_map)
        return pi_error_set(err, "%s: out of memory for %u merges", gguf_path(f), b->n_merges);
    if (bpe_copy_strs(f, kv, key, &b->m_arena, b->m_off, b->m_len, &b->m_max_len, err) != 0)
        return -1;
    for (uint32_t i = 0; i < b->n_merges; i++) {
        /* "LEFT RIGHT": the separator is the first space after the first byte. */
        const char *p = b->m_arena + b->m_off[i];
        const char *sp = b->m_len[i] > 1 ? memchr(p + 1, ' ', b->m_len[i] - 1) : NULL;
        if (!sp || (size_t)(sp - p) + 1 >= b->m_len[i])
            return pi_error_set(err, "%s: %s[%u] = '%.40s' is not of the form 'LEFT RIGHT'",
                                gguf_path(f), key, i, p);
        /* The first of duplicate merges keeps its rank, as in llama.cpp. */
        bpe_insert(b->m_map, b->m_mask, b->m_arena, b->m_off, b->m_len, (int32_t)i, false);
    }
    return 0;
}

/* The rank of merging left and right (BPE_NO_RANK when not a merge). scratch
 * holds at least m_max_len bytes. */
static uint32_t bpe_rank(const tok_bpe *b, const char *l, size_t ln, const char *r, size_t rn,
                         char *scratch)
{
    if (ln + rn + 1 > b->m_max_len)
        return BPE_NO_RANK;
    memcpy(scratch, l, ln);
    scratch[ln] = ' ';
    memcpy(scratch + ln + 1, r, rn);
    int32_t i = bpe_find(b->m_map, b->m_mask, b->m_arena, b->m_off, b->m_len, scratch, ln + rn + 1);
    return i < 0 ? BPE_NO_RANK : (uint32_t)i;
}

/* GPT-2's byte alphabet: the printable Latin-1 bytes stand for themselves,
 * the other 68 bytes take U+0100.. in byte order. */
static void bpe_build_byte_map(tok_bpe *b)
{
    uint16_t next = 256;
    for (int i = 0; i < 324; i++)
        b->cp_byte[i] = -1;
    for (int c = 0; c < 256; c++) {
        bool printable = (c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE;
        b->byte_cp[c] = printable ? (uint16_t)c : next++;
        b->cp_byte[b->byte_cp[c]] = (int16_t)c;
    }
}


static int bpe_id_key(const gguf_file *f, const char *key, int32_t dflt, uint32_t n,
                      int32_t *out, pi_error *err)
{
    if (!gguf_find_kv(f, key)) {
        *out = dflt >= 0 && (uint32_t)dflt < n ? dflt : -1;
        return 0;
    }
    uint32_t v;
    if (gguf_get_u32(f, key, &v, err) != 0)
        return -1;
    if (v >= n)
        return pi_error_set(err, "%s: %s = %u is out of range: the vocabulary has %u tokens",
                            gguf_path(f), key, v, n);
    *out = (int32_t)v;
    return 0;
}

static int bpe_load_pre(tok_bpe *b, const gguf_file *f, pi_error *err)
{
    char name[64] = "default"; /* llama.cpp's choice when the key is absent */
    if (gguf_find_kv(f, "tokenizer.ggml.pre") &&
        gguf_get_cstr(f, "tokenizer.ggml.pre", name, sizeof name, err) != 0)
        return -1;
    b->pre = bpe_pre_find(name);
    if (!b->pre)
        return pi_error_set(err, "%s: pre-tokenizer '%s' (tokenizer.ggml.pre) is not supported; "
                            "supported: gpt-2, mpt, default, llama-bpe, qwen2, falcon, starcoder, "
                            "refact, deepseek-llm, deepseek-coder and their aliases "
                            "(docs/tokenizer.md)", gguf_path(f), name);
    b->add_bos = bpe_pre_add_bos(b->pre);
    if (gguf_find_kv(f, "tokenizer.ggml.add_bos_token") &&
        gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &b->add_bos, err) != 0)
        return -1;
    return 0;
}

tok_bpe *tok_bpe_new(const gguf_file *f, pi_error *err)
{
    const gguf_kv *tk = gguf_find_kv(f, "tokenizer.ggml.tokens");
    if (!tk) {
        pi_error_set(err, "%s: key tokenizer.ggml.tokens is missing: the file has no vocabulary",
                     gguf_path(f));
        return NULL;
    }
    if (tk->type != GGUF_TYPE_ARRAY || tk->v.arr.type != GGUF_TYPE_STRING ||
        tk->v.arr.n == 0 || tk->v.arr.n > INT32_MAX) {
        pi_error_set(err, "%s: tokenizer.ggml.tokens must be a non-empty array of strings",
                     gguf_path(f));
        return NULL;
    }
    tok_bpe *b = calloc(1, sizeof *b);
    if (!b) {
        pi_error_set(err, "tokenizer: out of memory");
        return NULL;
    }
    b->n = (uint32_t)tk->v.arr.n;
    b->off = malloc(b->n * sizeof *b->off);
    b->len = malloc(b->n * sizeof *b->len);
    b->type = malloc(b->n);
    b->map = bpe_new_map(b->n, &b->map_mask);
    if (!b->off || !b->len || !b->type || !b->map) {
        pi_error_set(err, "%s: out of memory for %u tokens", gguf_path(f), b->n);
        goto fail;
    }
    if (bpe_copy_strs(f, tk, "tokenizer.ggml.tokens", &b->arena, b->off, b->len, &b->max_len,
                      err) != 0 ||
        bpe_load_types(b, f, err) != 0 || bpe_build_lists(b, err) != 0 ||
        bpe_load_merges(b, f, err) != 0 || bpe_load_pre(b, f, err) != 0)
        goto fail;
    for (uint32_t i = 0; i < b->n; i++)
        bpe_insert(b->map, b->map_mask, b->arena, b->off, b->len, (int32_t)i, true);
    /* llama.cpp's defaults for gpt2 vocabularies: BOS and EOS 11. */
    if (bpe_id_key(f, "tokenizer.ggml.bos_token_id", 11, b->n, &b->bos, err) != 0 ||
        bpe_id_key(f, "tokenizer.ggml.eos_token_id", 11, b->n, &b->eos, err) != 0)
        goto fail;
    bpe_build_byte_map(b);
    return b;
fail:
    tok_bpe_free(&b);
    return NULL;
}

void tok_bpe_free(tok_bpe **bp)
{
    if (!bp || !*bp)
        return;
    tok_bpe *b = *bp;
    free(b->arena);
    free(b->off);
    free(b->len);
    free(b->type);
    free(b->map);
    free(b->m_arena);
    free(b->m_off);
    free(b->m_len);
    free(b->m_map);
    free(b->user);
    free(b->special);
    free(b);
    *bp = NULL;
}

uint32_t tok_bpe_n_vocab(const tok_bpe *b) { return b->n; }
int32_t tok_bpe_bos(const tok_bpe *b) { return b->bos; }
int32_t tok_bpe_eos(const tok_bpe *b) { return b->eos; }
size_t tok_bpe_max_piece_len(const tok_bpe *b) { return b->max_len; }

const char *tok_bpe_piece(const tok_bpe *b, int32_t tok)
{
    if (tok < 0 || (uint32_t)tok >= b->n)
        return NULL;
    return b->arena + b->off[tok];
}

/* ---- code points and words ---- */

/* Code points of one fragment with their classes, and its words as lengths
 * in code points. */
typedef struct bpe_text {
    uint32_t *cp;
    uint16_t *fl;
    size_t n;
    uint32_t *piece, *next; /* the words' lengths, and scratch for the passes */
    size_t n_piece;
} bpe_text;

static size_t bpe_encode_utf8(uint32_t v, uint8_t *o)
{
    if (v < 0x80) {
        o[0] = (uint8_t)v;
        return 1;
    }
    if (v < 0x800) {
        o[0] = (uint8_t)(0xC0 | (v >> 6));
        o[1] = (uint8_t)(0x80 | (v & 0x3F));
        return 2;
    }
    if (v < 0x10000) {
        o[0] = (uint8_t)(0xE0 | (v >> 12));
        o[1] = (uint8_t)(0x80 | ((v >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (v & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | ((v >> 18) & 0x07));
    o[1] = (uint8_t)(0x80 | ((v >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((v >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (v & 0x3F));
    return 4;
}

/* ---- merges ---- */

typedef struct bpe_sym {
    uint32_t off, n;   /* bytes of the word */
    int32_t prev, next;
} bpe_sym;

typedef struct bpe_pair {
    uint32_t rank;
    int32_t left, right;
    uint32_t ln, rn;   /* lengths when queued: a changed length means stale */
} bpe_pair;

typedef struct bpe_work {
    const tok_bpe *b;
    char *word;        /* the word in GPT-2's byte alphabet */
    bpe_sym *sym;
    bpe_pair *heap;
    size_t n_heap, cap_heap;
    char *scratch;     /* m_max_len bytes for merge lookups */
    int32_t *out;
    size_t n_out;
} bpe_work;

static bool bpe_before(const bpe_pair *x, const bpe_pair *y)
{
    return x->rank != y->rank ? x->rank < y->rank : x->left < y->left;
}

static int bpe_push(bpe_work *w, bpe_pair p)
{
    if (w->n_heap == w->cap_heap) {
        size_t cap = w->cap_heap ? w->cap_heap * 2 : 64;
        bpe_pair *h = realloc(w->heap, cap * sizeof *h);
        if (!h)
            return -1;
        w->heap = h;
        w->cap_heap = cap;
    }
    size_t i = w->n_heap++;
    while (i > 0 && bpe_before(&p, &w->heap[(i - 1) / 2])) {
        w->heap[i] = w->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->heap[i] = p;
    return 0;
}

static bpe_pair bpe_pop(bpe_work *w)
{
    bpe_pair top = w->heap[0], last = w->heap[--w->n_heap];
    size_t i = 0, n = w->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && bpe_before(&w->heap[c + 1], &w->heap[c]))
            c++;
        if (!bpe_before(&w->heap[c], &last))
            break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n > 0)
        w->heap[i] = last;
    return top;
}

static int bpe_try_pair(bpe_work *w, int32_t l, int32_t r)
{
    if (l < 0 || r < 0)
        return 0;
    const bpe_sym *a = &w->sym[l], *c = &w->sym[r];
    uint32_t rank = bpe_rank(w->b, w->word + a->off, a->n, w->word + c->off, c->n, w->scratch);
    if (rank == BPE_NO_RANK)
        return 0;
    return bpe_push(w, (bpe_pair){rank, l, r, a->n, c->n});
}

static void bpe_emit(bpe_work *w, const char *p, size_t n)
{
    int32_t id = bpe_token(w->b, p, n);
    if (id >= 0) {
        w->out[w->n_out++] = id;
        return;
    }
    for (size_t i = 0; i < n; i++) { /* no such token: each byte's token, if any */
        id = bpe_token(w->b, p + i, 1);
        if (id >= 0)
            w->out[w->n_out++] = id;
    }
}

/* Merges the word w->word[0..n) and appends its tokens. */
static int bpe_word(bpe_work *w, size_t n)
{
    if (bpe_pre_ignore_merges(w->b->pre) && bpe_token(w->b, w->word, n) >= 0) {
        bpe_emit(w, w->word, n);
        return 0;
    }
    int32_t k = 0;
    for (size_t i = 0; i < n; k++) {
        uint32_t l = ((uint8_t)w->word[i] & 0xE0) == 0xC0 && i + 1 < n ? 2 : 1;
        w->sym[k] = (bpe_sym){(uint32_t)i, l, k - 1, i + l < n ? k + 1 : -1};
        i += l;
    }
    w->n_heap = 0;
    for (int32_t i = 1; i < k; i++)
        if (bpe_try_pair(w, i - 1, i) != 0)
            return -1;
    while (w->n_heap > 0) {
        bpe_pair p = bpe_pop(w);
        bpe_sym *a = &w->sym[p.left], *c = &w->sym[p.right];
        if (a->n != p.ln || c->n != p.rn || a->next != p.right)
            continue; /* stale: one side has changed since it was queued */
        a->n += c->n;
        c->n = 0;
        a->next = c->next;
        if (c->next >= 0)
            w->sym[c->next].prev = p.left;
        if (bpe_try_pair(w, a->prev, p.left) != 0 || bpe_try_pair(w, p.left, a->next) != 0)
            return -1;
    }
    for (int32_t i = 0; i >= 0 && k > 0; i = w->sym[i].next)
        bpe_emit(w, w->word + w->sym[i].off, w->sym[i].n);
    return 0;
}

/* Maps the UTF-8 of code points cp[0..n) to GPT-2's byte alphabet. */
static size_t bpe_byte_level(const tok_bpe *b, const uint32_t *cp, size_t n, char *dst)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t u[4];
        size_t l = bpe_encode_utf8(cp[i], u);
        for (size_t j = 0; j < l; j++)
            k += bpe_encode_utf8(b->byte_cp[u[j]], (uint8_t *)dst + k);
    }
    return k;
}

static int bpe_fragment(bpe_work *w, bpe_text *t, const char *text, size_t len)
{
    t->n = bpe_pre_decode((const uint8_t *)text, len, t->cp);
    for (size_t i = 0; i < t->n; i++)
        t->fl[i] = unicode_flags(t->cp[i]);
    t->n_piece = bpe_pre_split(w->b->pre, t->cp, t->fl, t->n, t->piece, t->next);
    size_t at = 0;
    for (size_t k = 0; k < t->n_piece; k++) {
        size_t n = bpe_byte_level(w->b, t->cp + at, t->piece[k], w->word);
        at += t->piece[k];
        if (bpe_word(w, n) != 0)
            return -1;
    }
    return 0;
}

/* ---- user-defined tokens ---- */

int tok_bpe_encode(const tok_bpe *b, const char *text, size_t len, int add_bos, int parse_special,
                   int32_t **ids, size_t *n_ids, pi_error *err)
{
    *ids = NULL;
    *n_ids = 0;
    if (len > BPE_MAX_TEXT)
        return pi_error_set(err, "tokenizer: text of %zu bytes is too long (at most %zu)",
                            len, BPE_MAX_TEXT);
    if (!text && len)
        return pi_error_set(err, "tokenizer: NULL text");
    /* A byte decodes to at most one code point, whose UTF-8 (at most 4
     * bytes) maps to 2 bytes each in the byte alphabet; an invalid byte
     * becomes U+FFFD (3 bytes, so 6). 8 * len bytes and as many symbols
     * bound a word, and as many tokens the output (at most one token per
     * byte-level byte, plus BOS). */
    size_t n = len ? len : 1;
    bpe_work w = {.b = b};
    bpe_text t = {0};
    tok_frags frags = {0};
    const tok_pieces pieces = {b->arena, b->off, b->len, parse_special ? b->special : b->user,
                               parse_special ? b->n_special : b->n_user};
    int rc = -1;
    w.word = malloc(8 * n);
    w.sym = malloc(8 * n * sizeof *w.sym);
    w.scratch = malloc(b->m_max_len + 1);
    w.out = malloc((8 * n + 1) * sizeof *w.out);
    t.cp = malloc(n * sizeof *t.cp);
    t.fl = malloc(n * sizeof *t.fl);
    t.piece = malloc(n * sizeof *t.piece);
    t.next = malloc(n * sizeof *t.next);
    if (!w.word || !w.sym || !w.scratch || !w.out || !t.cp || !t.fl || !t.piece || !t.next ||
        (len > 0 && tok_partition(&pieces, text, len, &frags) != 0)) {
        pi_error_set(err, "tokenizer: out of memory for %zu bytes of text", len);
        goto fail;
    }
    if (add_bos && b->add_bos && b->bos >= 0)
        w.out[w.n_out++] = b->bos;
    for (size_t i = 0; i < frags.n; i++) {
        const tok_frag *f = &frags.a[i];
        if (f->tok >= 0) {
            w.out[w.n_out++] = f->tok;
        } else if (bpe_fragment(&w, &t, text + f->off, f->len) != 0) {
            pi_error_set(err, "tokenizer: out of memory for %zu bytes of text", len);
            goto fail;
        }
    }
    *ids = w.out;
    *n_ids = w.n_out;
    w.out = NULL;
    rc = 0;
fail:
    free(w.word);
    free(w.sym);
    free(w.scratch);
    free(w.heap);
    free(w.out);
    free(t.cp);
    free(t.fl);
    free(t.piece);
    free(t.next);
    free(frags.a);
    return rc;
}

/* ---- decoding ---- */

int tok_bpe_decode_piece(const tok_bpe *b, int32_t prev, int32_t tok, char *buf, size_t cap)
{
    (void)prev; /* byte-level pieces carry their own spaces */
    if (tok < 0 || (uint32_t)tok >= b->n)
        return -1;
    const uint8_t *p = (const uint8_t *)b->arena + b->off[tok];
    size_t n = b->len[tok], k = 0;
    if (b->type[tok] == TT_USER) {
        if (cap > 0)
            memcpy(buf, p, n < cap ? n : cap);
        k = n;
    } else if (b->type[tok] == TT_NORMAL) {
        /* Each character of the byte alphabet is one byte; any other
         * character is kept as it is. */
        for (size_t i = 0; i < n;) {
            size_t cl = (p[i] & 0xE0) == 0xC0 && i + 1 < n && (p[i + 1] & 0xC0) == 0x80 ? 2 : 1;
            uint32_t cp = cl == 2 ? ((p[i] & 0x1Fu) << 6) | (p[i + 1] & 0x3Fu) : p[i];
            /* a lone byte >= 0x80 is not a character of the alphabet */
            if (cp < 324 && b->cp_byte[cp] >= 0 && (cl == 2 || cp < 0x80)) {
                if (k < cap)
                    buf[k] = (char)b->cp_byte[cp];
                k++;
            } else {
                for (size_t j = 0; j < cl; j++, k++)
                    if (k < cap)
                        buf[k] = (char)p[i + j];
            }
            i += cl;
        }
    }
    /* control, unknown, unused, byte and undefined tokens: no text */
    return k > INT32_MAX ? INT32_MAX : (int)k;
}
