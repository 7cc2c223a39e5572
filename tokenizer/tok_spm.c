/* SentencePiece-style tokenizer, matching llama.cpp's SPM tokenizer byte for
 * byte (the test vectors in ../shared/vocab come from it). Encoding:
 *   1. user-defined tokens (type 4) are cut out of the text first, longest
 *      first; control and unknown tokens only with parse_special (chat
 *      prompts), else they stay text;
 *   2. each remaining text fragment that starts the input or follows a cut
 *      token gets a leading space when add_space_prefix; spaces become U+2581;
 *   3. the fragment is split into characters by the UTF-8 lead byte alone
 *      (llama.cpp does not validate continuation bytes), then the adjacent
 *      pair whose concatenation is a token with the highest score is merged,
 *      leftmost on ties, until no pair is a token (a binary heap: O(n log n));
 *   4. symbols that are not tokens fall back to <0xXX> byte tokens. */
#include "tok_spm.h"
#include "tok_partition.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum {
    TT_UNDEFINED = 0, TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3,
    TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6,
};

#define SPM_SPACE "\xe2\x96\x81" /* U+2581, SentencePiece's visible space */
/* Input cap: keeps every index of the escaped text (up to 3x) in 32 bits. */
#define SPM_MAX_TEXT ((size_t)1 << 28)

struct tok_spm {
    uint32_t n;
    char *arena;        /* every piece, NUL-terminated */
    size_t *off;        /* piece i is arena + off[i], len[i] bytes */
    uint32_t *len;
    float *score;
    uint8_t *type;
    uint8_t *byte_val;  /* the byte of each TT_BYTE token */
    int32_t *map;       /* open addressing, piece -> id, -1 = empty */
    size_t map_mask;
    size_t max_len;     /* longest piece: longer strings need no lookup */
    int32_t byte_tok[256]; /* fallback token of each byte, -1 = none */
    int32_t *user;      /* user-defined tokens, longest first */
    uint32_t n_user;
    int32_t *special;   /* user-defined, control and unknown tokens, longest first */
    uint32_t n_special;
    int32_t bos, eos, unk;
    bool add_space_prefix, add_bos;
};

static size_t spm_hash(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29));
}

static int32_t spm_lookup(const tok_spm *s, const char *p, size_t n)
{
    if (n > s->max_len)
        return -1;
    for (size_t h = spm_hash(p, n) & s->map_mask;; h = (h + 1) & s->map_mask) {
        int32_t id = s->map[h];
        if (id < 0)
            return -1;
        if (s->len[id] == n && memcmp(s->arena + s->off[id], p, n) == 0)
            return id;
    }
}

/* A duplicate piece maps to its last id, as in llama.cpp. */
static void spm_insert(tok_spm *s, int32_t id)
{
    const char *p = s->arena + s->off[id];
    size_t n = s->len[id];
    for (size_t h = spm_hash(p, n) & s->map_mask;; h = (h + 1) & s->map_mask) {
        int32_t old = s->map[h];
        if (old < 0 || (s->len[old] == n && memcmp(s->arena + s->off[old], p, n) == 0)) {
            s->map[h] = id;
            return;
        }
    }
}

static bool spm_is_int_type(gguf_type t)
{
    return t <= GGUF_TYPE_INT32 || t == GGUF_TYPE_UINT64 || t == GGUF_TYPE_INT64;
}

static bool spm_is_num_type(gguf_type t)
{
    return spm_is_int_type(t) || t == GGUF_TYPE_FLOAT32 || t == GGUF_TYPE_FLOAT64;
}

/* An optional numeric array of exactly n elements; *out = NULL when absent. */
static int spm_opt_array(const gguf_file *f, const char *key, uint64_t n, bool ints,
                         const gguf_kv **out, pi_error *err)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    *out = NULL;
    if (!kv)
        return 0;
    if (kv->type != GGUF_TYPE_ARRAY ||
        !(ints ? spm_is_int_type(kv->v.arr.type) : spm_is_num_type(kv->v.arr.type)))
        return pi_error_set(err, "%s: %s must be an array of %s", gguf_path(f), key,
                            ints ? "integers" : "numbers");
    if (kv->v.arr.n != n)
        return pi_error_set(err, "%s: %s has %llu entries but tokenizer.ggml.tokens has %llu: "
                            "the vocabulary arrays must agree (re-convert the model)",
                            gguf_path(f), key, (unsigned long long)kv->v.arr.n,
                            (unsigned long long)n);
    *out = kv;
    return 0;
}

/* A token id key: absent -> dflt (or -1 when dflt is out of range). */
static int spm_id_key(const gguf_file *f, const char *key, int32_t dflt, uint32_t n,
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

static int spm_bool_key(const gguf_file *f, const char *key, bool dflt, bool *out, pi_error *err)
{
    *out = dflt;
    if (!gguf_find_kv(f, key))
        return 0;
    return gguf_get_bool(f, key, out, err);
}

static int spm_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}


static int spm_load_pieces(tok_spm *s, const gguf_file *f, const gguf_kv *tk, pi_error *err)
{
    size_t total = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        uint64_t l = tk->v.arr.strs[i].len;
        if (l > UINT32_MAX || pi_add_size(total, (size_t)l + 1, &total) != 0)
            return pi_error_set(err, "%s: tokenizer.ggml.tokens[%u] is too long", gguf_path(f), i);
    }
    s->arena = malloc(total ? total : 1);
    if (!s->arena)
        return pi_error_set(err, "%s: out of memory for the vocabulary", gguf_path(f));
    size_t at = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        const gguf_str *str = &tk->v.arr.strs[i];
        s->off[i] = at;
        s->len[i] = (uint32_t)str->len;
        if (str->len)
            memcpy(s->arena + at, str->ptr, str->len);
        s->arena[at + str->len] = '\0';
        at += str->len + 1;
        if (str->len > s->max_len)
            s->max_len = str->len;
    }
    return 0;
}

static int spm_load_attrs(tok_spm *s, const gguf_file *f, pi_error *err)
{
    const gguf_kv *sk, *ty;
    if (spm_opt_array(f, "tokenizer.ggml.scores", s->n, false, &sk, err) != 0 ||
        spm_opt_array(f, "tokenizer.ggml.token_type", s->n, true, &ty, err) != 0)
        return -1;
    for (uint32_t i = 0; i < s->n; i++) {
        s->score[i] = sk ? (float)gguf_arr_f64(sk, i) : 0.0f;
        int64_t t = ty ? gguf_arr_i64(ty, i) : TT_NORMAL;
        if (t < TT_UNDEFINED || t > TT_BYTE)
            return pi_error_set(err, "%s: tokenizer.ggml.token_type[%u] = %lld is not a known "
                                "token type (0..6)", gguf_path(f), i, (long long)t);
        s->type[i] = (uint8_t)t;
        if (t == TT_BYTE) {
            const char *p = s->arena + s->off[i];
            int hi = s->len[i] == 6 ? spm_hex(p[3]) : -1, lo = s->len[i] == 6 ? spm_hex(p[4]) : -1;
            if (hi < 0 || lo < 0 || memcmp(p, "<0x", 3) != 0 || p[5] != '>')
                return pi_error_set(err, "%s: tokenizer.ggml.tokens[%u] has the byte type but "
                                    "is not of the form <0xXX>", gguf_path(f), i);
            s->byte_val[i] = (uint8_t)(hi * 16 + lo);
        }
    }
    return 0;
}

/* The tokens the partition cuts out: user-defined ones always, control
 * and unknown ones too when parsing special tokens. */
static int spm_build_lists(tok_spm *s, pi_error *err)
{
    const unsigned user = TOK_TYPE_BIT(TOK_TYPE_USER);
    const unsigned special = user | TOK_TYPE_BIT(TOK_TYPE_CONTROL) | TOK_TYPE_BIT(TOK_TYPE_UNKNOWN);
    if (tok_partition_list(s->len, s->type, s->n, user, &s->user, &s->n_user) != 0 ||
        tok_partition_list(s->len, s->type, s->n, special, &s->special, &s->n_special) != 0)
        return pi_error_set(err, "tokenizer: out of memory");
    return 0;
}

static void spm_build_bytes(tok_spm *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        char name[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
        char raw = (char)b;
        int32_t id = spm_lookup(s, name, sizeof name);
        if (id < 0)
            id = spm_lookup(s, &raw, 1);
        s->byte_tok[b] = id >= 0 ? id : s->unk;
    }
}

tok_spm *tok_spm_new(const gguf_file *f, pi_error *err)
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
    tok_spm *s = calloc(1, sizeof *s);
    if (!s) {
        pi_error_set(err, "tokenizer: out of memory");
        return NULL;
    }
    s->n = (uint32_t)tk->v.arr.n;
    size_t cap = 16;
    while (cap < (size_t)s->n * 2)
        cap *= 2;
    s->map_mask = cap - 1;
    s->off = malloc(s->n * sizeof *s->off);
    s->len = malloc(s->n * sizeof *s->len);
    s->score = malloc(s->n * sizeof *s->score);
    s->type = malloc(s->n);
    s->byte_val = calloc(s->n, 1);
    s->map = malloc(cap * sizeof *s->map);
    if (!s->off || !s->len || !s->score || !s->type || !s->byte_val || !s->map) {
        pi_error_set(err, "%s: out of memory for %u tokens", gguf_path(f), s->n);
        goto fail;
    }
    memset(s->map, 0xff, cap * sizeof *s->map);
    if (spm_load_pieces(s, f, tk, err) != 0 || spm_load_attrs(s, f, err) != 0 ||
        spm_build_lists(s, err) != 0)
        goto fail;
    for (uint32_t i = 0; i < s->n; i++)
        spm_insert(s, (int32_t)i);
    /* llama.cpp's defaults for SPM vocabularies: unk 0, bos 1, eos 2. */
    if (spm_id_key(f, "tokenizer.ggml.bos_token_id", 1, s->n, &s->bos, err) != 0 ||
        spm_id_key(f, "tokenizer.ggml.eos_token_id", 2, s->n, &s->eos, err) != 0 ||
        spm_id_key(f, "tokenizer.ggml.unknown_token_id", 0, s->n, &s->unk, err) != 0 ||
        spm_bool_key(f, "tokenizer.ggml.add_space_prefix", true, &s->add_space_prefix, err) != 0 ||
        spm_bool_key(f, "tokenizer.ggml.add_bos_token", true, &s->add_bos, err) != 0)
        goto fail;
    spm_build_bytes(s);
    return s;
fail:
    tok_spm_free(&s);
    return NULL;
}

void tok_spm_free(tok_spm **sp)
{
    if (!sp || !*sp)
        return;
    tok_spm *s = *sp;
    free(s->arena);
    free(s->off);
    free(s->len);
    free(s->score);
    free(s->type);
    free(s->byte_val);
    free(s->map);
    free(s->user);
    free(s->special);
    free(s);
    *sp = NULL;
}

uint32_t tok_spm_n_vocab(const tok_spm *s) { return s->n; }
int32_t tok_spm_bos(const tok_spm *s) { return s->bos; }
int32_t tok_spm_eos(const tok_spm *s) { return s->eos; }
size_t tok_spm_max_piece_len(const tok_spm *s) { return s->max_len; }

const char *tok_spm_piece(const tok_spm *s, int32_t tok)
{
    if (tok < 0 || (uint32_t)tok >= s->n)
        return NULL;
    return s->arena + s->off[tok];
}

/* ---- encoding ---- */

typedef struct spm_sym {
    int32_t prev, next; /* neighbours in the live chain, -1 at the ends */
    uint32_t off, n;    /* bytes of the escaped text; n = 0 once merged away */
} spm_sym;

typedef struct spm_bigram {
    float score;
    int32_t left, right;
    uint32_t size;      /* left.n + right.n when pushed: stale if it changed */
} spm_bigram;

typedef struct spm_work {
    const tok_spm *s;
    char *esc;          /* the escaped fragment */
    spm_sym *sym;
    spm_bigram *heap;
    size_t n_heap, cap_heap;
    int32_t *out;       /* sized for the worst case by the caller */
    size_t n_out;
} spm_work;

/* Heap order: higher score first, then the leftmost pair. */
static bool spm_before(const spm_bigram *a, const spm_bigram *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int spm_push(spm_work *w, spm_bigram b)
{
    if (w->n_heap == w->cap_heap) {
        size_t cap = w->cap_heap ? w->cap_heap * 2 : 256;
        spm_bigram *h = realloc(w->heap, cap * sizeof *h);
        if (!h)
            return -1;
        w->heap = h;
        w->cap_heap = cap;
    }
    size_t i = w->n_heap++;
    while (i > 0 && spm_before(&b, &w->heap[(i - 1) / 2])) {
        w->heap[i] = w->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->heap[i] = b;
    return 0;
}

static spm_bigram spm_pop(spm_work *w)
{
    spm_bigram top = w->heap[0], last = w->heap[--w->n_heap];
    size_t i = 0, n = w->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && spm_before(&w->heap[c + 1], &w->heap[c]))
            c++;
        if (!spm_before(&w->heap[c], &last))
            break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n > 0)
        w->heap[i] = last;
    return top;
}

static int spm_try_pair(spm_work *w, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return 0;
    uint32_t size = w->sym[left].n + w->sym[right].n;
    int32_t id = spm_lookup(w->s, w->esc + w->sym[left].off, size);
    if (id < 0)
        return 0;
    return spm_push(w, (spm_bigram){w->s->score[id], left, right, size});
}

static int spm_emit_bytes(spm_work *w, const spm_sym *sym, pi_error *err)
{
    for (uint32_t j = 0; j < sym->n; j++) {
        uint8_t b = (uint8_t)w->esc[sym->off + j];
        if (w->s->byte_tok[b] < 0)
            return pi_error_set(err, "tokenizer: cannot encode byte 0x%02X: the vocabulary has "
                                "no <0x%02X> token and no unknown token", b, b);
        w->out[w->n_out++] = w->s->byte_tok[b];
    }
    return 0;
}

/* Tokenizes w->esc[0..n) (already escaped) onto w->out. */
static int spm_fragment(spm_work *w, size_t n, pi_error *err)
{
    static const uint8_t utf8_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    int32_t n_sym = 0;
    for (size_t at = 0; at < n; n_sym++) {
        size_t l = utf8_len[(uint8_t)w->esc[at] >> 4];
        if (l > n - at)
            l = n - at;
        w->sym[n_sym] = (spm_sym){n_sym - 1, at + l < n ? n_sym + 1 : -1, (uint32_t)at, (uint32_t)l};
        at += l;
    }
    w->n_heap = 0;
    for (int32_t i = 1; i < n_sym; i++)
        if (spm_try_pair(w, i - 1, i) != 0)
            return pi_error_set(err, "tokenizer: out of memory");
    while (w->n_heap > 0) {
        spm_bigram b = spm_pop(w);
        spm_sym *l = &w->sym[b.left], *r = &w->sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
            continue; /* stale: one side was merged since */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            w->sym[r->next].prev = b.left;
        if (spm_try_pair(w, l->prev, b.left) != 0 || spm_try_pair(w, b.left, l->next) != 0)
            return pi_error_set(err, "tokenizer: out of memory");
    }
    for (int32_t i = n_sym > 0 ? 0 : -1; i >= 0; i = w->sym[i].next) {
        /* Merged symbols are always tokens; only single characters can miss. */
        int32_t id = spm_lookup(w->s, w->esc + w->sym[i].off, w->sym[i].n);
        if (id >= 0)
            w->out[w->n_out++] = id;
        else if (spm_emit_bytes(w, &w->sym[i], err) != 0)
            return -1;
    }
    return 0;
}

/* Copies the fragment with an optional leading space, spaces as U+2581. */
static size_t spm_escape(char *dst, const char *src, size_t n, bool prefix)
{
    size_t k = 0;
    if (prefix) {
        memcpy(dst, SPM_SPACE, 3);
        k = 3;
    }
    for (size_t i = 0; i < n; i++) {
        if (src[i] == ' ') {
            memcpy(dst + k, SPM_SPACE, 3);
            k += 3;
        } else {
            dst[k++] = src[i];
        }
    }
    return k;
}

int tok_spm_encode(const tok_spm *s, const char *text, size_t len, int add_bos, int parse_special,
                   int32_t **ids, size_t *n_ids, pi_error *err)
{
    *ids = NULL;
    *n_ids = 0;
    if (len > SPM_MAX_TEXT)
        return pi_error_set(err, "tokenizer: text of %zu bytes is too long (at most %zu)",
                            len, SPM_MAX_TEXT);
    if (!text && len)
        return pi_error_set(err, "tokenizer: NULL text");
    /* A fragment escapes to at most 3 bytes per byte plus a 3-byte prefix,
     * and yields at most one token per escaped byte; with user-defined
     * tokens between fragments, 4 * len + 4 bounds the output. */
    size_t esc_cap = 3 * len + 3;
    spm_work w = {.s = s};
    tok_frags frags = {0};
    const tok_pieces pieces = {s->arena, s->off, s->len, parse_special ? s->special : s->user,
                               parse_special ? s->n_special : s->n_user};
    w.esc = malloc(esc_cap);
    w.sym = malloc(esc_cap * sizeof *w.sym);
    w.out = malloc((4 * len + 4) * sizeof *w.out);
    if (!w.esc || !w.sym || !w.out || (len > 0 && tok_partition(&pieces, text, len, &frags) != 0)) {
        pi_error_set(err, "tokenizer: out of memory for %zu bytes of text", len);
        goto fail;
    }
    if (add_bos && s->add_bos && s->bos >= 0)
        w.out[w.n_out++] = s->bos;
    bool after_special = true; /* the start of the text counts as after a special token */
    for (size_t i = 0; i < frags.n; i++) {
        const tok_frag *f = &frags.a[i];
        if (f->tok >= 0) {
            w.out[w.n_out++] = f->tok;
            after_special = true;
            continue;
        }
        size_t n = spm_escape(w.esc, text + f->off, f->len, s->add_space_prefix && after_special);
        after_special = false;
        if (spm_fragment(&w, n, err) != 0)
            goto fail;
    }
    free(w.esc);
    free(w.sym);
    free(w.heap);
    free(frags.a);
    *ids = w.out;
    *n_ids = w.n_out;
    return 0;
fail:
    free(w.esc);
    free(w.sym);
    free(w.heap);
    free(w.out);
    free(frags.a);
    return -1;
}

/* ---- decoding ---- */

/* Writes bytes at position k, counting past cap so the caller learns the full length. */
typedef struct spm_out {
    char *buf;
    size_t cap, k;
    bool drop_space;    /* drop the first byte if it is a space */
} spm_out;

static void spm_put(spm_out *o, char c)
{
    if (o->drop_space) {
        o->drop_space = false;
        if (c == ' ')
            return;
    }
    if (o->k < o->cap)
        o->buf[o->k] = c;
    o->k++;
}

int tok_spm_decode_piece(const tok_spm *s, int32_t prev, int32_t tok, char *buf, size_t cap)
{
    if (tok < 0 || (uint32_t)tok >= s->n)
        return -1;
    const char *p = s->arena + s->off[tok];
    size_t n = s->len[tok];
    /* The space the encoder put before the text is not part of it. */
    spm_out o = {buf, cap, 0, s->add_space_prefix && prev >= 0 && prev == s->bos};
    switch (s->type[tok]) {
    case TT_BYTE:
        spm_put(&o, (char)s->byte_val[tok]);
        break;
    case TT_USER:
        for (size_t i = 0; i < n; i++)
            spm_put(&o, p[i]);
        break;
    case TT_NORMAL:
        for (size_t i = 0; i < n; i++) {
            if (i + 3 <= n && memcmp(p + i, SPM_SPACE, 3) == 0) {
                spm_put(&o, ' ');
                i += 2;
            } else {
                spm_put(&o, p[i]);
            }
        }
        break;
    default: /* control, unknown, unused, undefined: no text */
        break;
    }
    return o.k > INT32_MAX ? INT32_MAX : (int)o.k;
}
