/* llama2.c checkpoint + tokenizer → llama GGUF. The checkpoint is mapped and
 * every weight is converted row by row while the GGUF is written, so models
 * larger than RAM import too. Layout: docs/llama2c-import.md. */
#include "llama2c.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"

#define LLAMA2C_MAGIC 0x616b3432u   /* "ak42": llama2.c's versioned exports */
#define LLAMA2C_MAX_PARAM (1u << 24)

typedef struct ckpt {
    const char *path;
    void *map;
    size_t size;
    llama2c_info h;
    const float *tok, *rms_att, *wq, *wk, *wv, *wo, *rms_ffn, *w1, *w2, *w3, *rms_final, *wcls;
} ckpt;

/* One tensor to write: rows x cols fp32 at data, converted to type. */
typedef struct src_tensor {
    const float *data;
    uint64_t cols, rows;
    pi_type type;
} src_tensor;

/* Returns *off (in floats) and advances it by a*b*c; sets *bad on overflow.
 * Offsets, not pointers, until the file size has been checked. */
static size_t take(size_t *off, uint64_t a, uint64_t b, uint64_t c, int *bad)
{
    size_t n, start = *off;
    if (pi_mul_size((size_t)a, (size_t)b, &n) < 0 || pi_mul_size(n, (size_t)c, &n) < 0 ||
        pi_add_size(*off, n, off) < 0)
        *bad = 1;
    return start;
}

static int ckpt_open(ckpt *c, const char *path, pi_error *err)
{
    memset(c, 0, sizeof *c);
    c->path = path;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return pi_error_set(err, "llama2.c checkpoint %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return pi_error_set(err, "llama2.c checkpoint %s: %s", path, strerror(e));
    }
    c->size = (size_t)st.st_size;
    if (c->size < 7 * sizeof(int32_t)) {
        close(fd);
        return pi_error_set(err, "llama2.c checkpoint %s: %zu bytes is shorter than the 28-byte header",
                            path, c->size);
    }
    c->map = mmap(NULL, c->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (c->map == MAP_FAILED) {
        c->map = NULL;
        return pi_error_set(err, "llama2.c checkpoint %s: mmap: %s", path, strerror(errno));
    }

    int32_t hd[7];
    memcpy(hd, c->map, sizeof hd);
    if ((uint32_t)hd[0] == LLAMA2C_MAGIC)
        return pi_error_set(err, "llama2.c checkpoint %s: a versioned llama2.c export (magic ak42, "
                            "version %d) is not supported; export with llama2.c's legacy format "
                            "(export.py --version 0)", path, hd[1]);
    const char *names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
    c->h.shared_classifier = hd[5] > 0;
    if (hd[5] < 0)
        hd[5] = hd[5] == INT32_MIN ? 0 : -hd[5];
    for (int i = 0; i < 7; i++)
        if (hd[i] <= 0 || (uint32_t)hd[i] > LLAMA2C_MAX_PARAM)
            return pi_error_set(err, "llama2.c checkpoint %s: header %s = %d is out of range "
                                "(not a llama2.c checkpoint?)", path, names[i], hd[i]);
    c->h.dim = (uint32_t)hd[0];
    c->h.hidden_dim = (uint32_t)hd[1];
    c->h.n_layers = (uint32_t)hd[2];
    c->h.n_heads = (uint32_t)hd[3];
    c->h.n_kv_heads = (uint32_t)hd[4];
    c->h.vocab_size = (uint32_t)hd[5];
    c->h.seq_len = (uint32_t)hd[6];
    const llama2c_info *h = &c->h;
    if (h->dim % h->n_heads || h->n_heads % h->n_kv_heads || (h->dim / h->n_heads) % 2)
        return pi_error_set(err, "llama2.c checkpoint %s: dim %u, n_heads %u, n_kv_heads %u do not "
                            "give an even head size shared by whole kv groups", path, h->dim, h->n_heads,
                            h->n_kv_heads);

    uint64_t dim = h->dim, hid = h->hidden_dim, L = h->n_layers, V = h->vocab_size;
    uint64_t hs = dim / h->n_heads, kv = hs * h->n_kv_heads;
    size_t off = 0, o[12];
    int bad = 0;
    o[0] = take(&off, V, dim, 1, &bad);        /* token embedding */
    o[1] = take(&off, L, dim, 1, &bad);        /* rms_att */
    o[2] = take(&off, L, dim, dim, &bad);      /* wq */
    o[3] = take(&off, L, kv, dim, &bad);       /* wk */
    o[4] = take(&off, L, kv, dim, &bad);       /* wv */
    o[5] = take(&off, L, dim, dim, &bad);      /* wo */
    o[6] = take(&off, L, dim, 1, &bad);        /* rms_ffn */
    o[7] = take(&off, L, hid, dim, &bad);      /* w1 = gate */
    o[8] = take(&off, L, dim, hid, &bad);      /* w2 = down */
    o[9] = take(&off, L, hid, dim, &bad);      /* w3 = up */
    o[10] = take(&off, dim, 1, 1, &bad);       /* rms_final */
    take(&off, h->seq_len, hs, 1, &bad);       /* freq_cis real and imag: recomputed, skipped */
    o[11] = h->shared_classifier ? o[0] : take(&off, V, dim, 1, &bad);
    size_t want;
    if (bad || pi_mul_size(off, sizeof(float), &want) < 0 || pi_add_size(want, 28, &want) < 0)
        return pi_error_set(err, "llama2.c checkpoint %s: header sizes overflow", path);
    if (want != c->size)
        return pi_error_set(err, "llama2.c checkpoint %s: file is %zu bytes but its header (dim %u, "
                            "hidden %u, layers %u, heads %u, kv heads %u, vocab %u%s, seq_len %u) needs "
                            "exactly %zu; truncated or not a legacy llama2.c checkpoint",
                            path, c->size, h->dim, h->hidden_dim, h->n_layers, h->n_heads, h->n_kv_heads,
                            h->vocab_size, h->shared_classifier ? "" : " unshared", h->seq_len, want);
    const float *w = (const float *)((const char *)c->map + 7 * sizeof(int32_t));
    const float **p[12] = {&c->tok, &c->rms_att, &c->wq, &c->wk, &c->wv, &c->wo, &c->rms_ffn,
                           &c->w1, &c->w2, &c->w3, &c->rms_final, &c->wcls};
    for (int i = 0; i < 12; i++)
        *p[i] = w + o[i];
    return 0;
}

static void ckpt_close(ckpt *c)
{
    if (c->map)
        munmap(c->map, c->size);
    c->map = NULL;
}

/* The tokenizer converted to GGUF's SentencePiece vocabulary. */
typedef struct vocab {
    uint32_t n;
    char **strs;
    size_t *lens;
    float *scores;
    int32_t *types;
} vocab;

static void vocab_free(vocab *v)
{
    for (uint32_t i = 0; v->strs && i < v->n; i++)
        free(v->strs[i]);
    free(v->strs);
    free(v->lens);
    free(v->scores);
    free(v->types);
    memset(v, 0, sizeof *v);
}

static int is_byte_token(const char *s, size_t n)
{
    const char *hex = "0123456789ABCDEFabcdef";
    return n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && s[3] && s[4] &&
           strchr(hex, s[3]) && strchr(hex, s[4]);
}

/* Stores token i: spaces become U+2581 as SentencePiece writes them; ids
 * 0/1/2 are llama2.c's <unk>, BOS and EOS whatever their stored text. */
static int vocab_set(vocab *v, uint32_t i, const char *s, size_t n, float score)
{
    static const char *special[3] = {"<unk>", "<s>", "</s>"};
    if (i < 3) {
        s = special[i];
        n = strlen(s);
    }
    char *d = malloc(n * 3 + 1);
    if (!d)
        return -1;
    size_t k = 0;
    for (size_t j = 0; j < n; j++) {
        if (s[j] == ' ') {
            memcpy(d + k, "\xE2\x96\x81", 3);
            k += 3;
        } else {
            d[k++] = s[j];
        }
    }
    d[k] = 0;
    v->strs[i] = d;
    v->lens[i] = k;
    v->scores[i] = score;
    v->types[i] = i == 0 ? 2 : i < 3 ? 3 : is_byte_token(s, n) ? 6 : 1;
    return 0;
}

static int vocab_load(vocab *v, const char *path, uint32_t n_vocab, pi_error *err)
{
    memset(v, 0, sizeof *v);
    FILE *f = fopen(path, "rb");
    if (!f)
        return pi_error_set(err, "llama2.c tokenizer %s: %s", path, strerror(errno));
    unsigned char *buf = NULL;
    size_t size = 0, cap = 0;
    for (;;) {
        if (size == cap) {
            cap = cap ? cap * 2 : 1 << 16;
            unsigned char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return pi_error_set(err, "llama2.c tokenizer %s: out of memory", path);
            }
            buf = nb;
        }
        size_t got = fread(buf + size, 1, cap - size, f);
        size += got;
        if (got == 0)
            break;
    }
    int rerr = ferror(f);
    fclose(f);
    if (rerr) {
        free(buf);
        return pi_error_set(err, "llama2.c tokenizer %s: read error", path);
    }

    v->n = n_vocab;
    v->strs = calloc(n_vocab, sizeof *v->strs);
    v->lens = calloc(n_vocab, sizeof *v->lens);
    v->scores = calloc(n_vocab, sizeof *v->scores);
    v->types = calloc(n_vocab, sizeof *v->types);
    int rc = 0;
    if (!v->strs || !v->lens || !v->scores || !v->types) {
        rc = pi_error_set(err, "llama2.c tokenizer %s: out of memory", path);
        goto done;
    }
    int32_t max_len;
    if (size < 4) {
        rc = pi_error_set(err, "llama2.c tokenizer %s: %zu bytes is shorter than its 4-byte header", path, size);
        goto done;
    }
    memcpy(&max_len, buf, 4);
    if (max_len <= 0 || max_len > (1 << 20)) {
        rc = pi_error_set(err, "llama2.c tokenizer %s: max_token_length %d is out of range "
                          "(not a llama2.c tokenizer file?)", path, max_len);
        goto done;
    }
    size_t off = 4;
    for (uint32_t i = 0; i < n_vocab; i++) {
        float score;
        int32_t len;
        if (size - off < 8) {
            rc = pi_error_set(err, "llama2.c tokenizer %s: ends after %u tokens; the checkpoint's "
                              "vocab_size is %u (tokenizer and checkpoint do not match?)", path, i, n_vocab);
            goto done;
        }
        memcpy(&score, buf + off, 4);
        memcpy(&len, buf + off + 4, 4);
        off += 8;
        if (len < 0 || len > max_len || (size_t)len > size - off) {
            rc = pi_error_set(err, "llama2.c tokenizer %s: token %u has length %d (max_token_length %d, "
                              "%zu bytes left)", path, i, len, max_len, size - off);
            goto done;
        }
        if (vocab_set(v, i, (const char *)buf + off, (size_t)len, score) < 0) {
            rc = pi_error_set(err, "llama2.c tokenizer %s: out of memory", path);
            goto done;
        }
        off += (size_t)len;
    }
    if (off != size)
        rc = pi_error_set(err, "llama2.c tokenizer %s: holds more than the checkpoint's vocab_size of %u "
                          "tokens (%zu bytes follow); tokenizer and checkpoint do not match?", path, n_vocab, size - off);
done:
    free(buf);
    if (rc < 0)
        vocab_free(v);
    return rc;
}

static int fill_tensor(void *ctx, void *dst, size_t size, pi_error *err)
{
    const src_tensor *t = ctx;
    size_t rb;
    if (pi_row_bytes(t->type, t->cols, &rb) < 0 || rb * t->rows != size)
        return pi_error_set(err, "llama2.c import: tensor size mismatch (%zu bytes asked)", size);
    for (uint64_t r = 0; r < t->rows; r++)
        pi_quantize_row(t->type, t->data + r * t->cols, (char *)dst + r * rb, (size_t)t->cols);
    return 0;
}

/* Queues tensor name; rows == 0 means a 1-D f32 vector of cols. */
static int add(gguf_writer *w, src_tensor *st, size_t *n, const char *name, const float *data,
               uint64_t cols, uint64_t rows, pi_type type, llama2c_info *h)
{
    src_tensor *t = &st[(*n)++];
    size_t rb;
    t->data = data;
    t->cols = cols;
    t->rows = rows ? rows : 1;
    t->type = rows ? type : PI_TYPE_F32;
    if (pi_row_bytes(t->type, cols, &rb) < 0) {
        t->type = PI_TYPE_F16;   /* rows that do not fill whole blocks */
        h->n_fallback++;
    }
    uint64_t ne[2] = {cols, t->rows};
    return gguf_writer_add_tensor_fn(w, name, t->type, rows ? 2 : 1, ne, fill_tensor, t);
}

static int write_gguf(const ckpt *c, const vocab *v, const char *out_path, pi_type type, pi_act act,
                      llama2c_info *h, pi_error *err)
{
    gguf_writer *w = gguf_writer_new();
    size_t n_max = 3 + 9 * (size_t)h->n_layers, n = 0;
    src_tensor *st = calloc(n_max, sizeof *st);
    if (!w || !st) {
        gguf_writer_free(&w);
        free(st);
        return pi_error_set(err, "llama2.c import %s: out of memory", out_path);
    }

    char name[256];
    const char *base = strrchr(c->path, '/');
    snprintf(name, sizeof name, "%s", base ? base + 1 : c->path);
    char *dot = strrchr(name, '.');
    if (dot && dot != name)
        *dot = 0;
    uint32_t hs = h->dim / h->n_heads;
    int rc = 0;
    rc |= gguf_writer_add_str(w, "general.architecture", "llama");
    rc |= gguf_writer_add_str(w, "general.name", name);
    rc |= gguf_writer_add_u32(w, "llama.context_length", h->seq_len);
    rc |= gguf_writer_add_u32(w, "llama.embedding_length", h->dim);
    rc |= gguf_writer_add_u32(w, "llama.block_count", h->n_layers);
    rc |= gguf_writer_add_u32(w, "llama.feed_forward_length", h->hidden_dim);
    rc |= gguf_writer_add_u32(w, "llama.attention.head_count", h->n_heads);
    rc |= gguf_writer_add_u32(w, "llama.attention.head_count_kv", h->n_kv_heads);
    rc |= gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    rc |= gguf_writer_add_f32(w, "llama.rope.freq_base", 10000.0f);
    rc |= gguf_writer_add_u32(w, "llama.rope.dimension_count", hs);
    rc |= gguf_writer_add_u32(w, "llama.vocab_size", h->vocab_size);
    rc |= gguf_writer_add_str(w, "pi.ffn_activation", pi_act_name(act));
    rc |= gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
    rc |= gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->strs, v->lens, v->n);
    rc |= gguf_writer_add_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, v->scores, v->n);
    rc |= gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, v->types, v->n);
    rc |= gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1);
    rc |= gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2);
    rc |= gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    rc |= gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", true);
    rc |= gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", true);

    uint64_t dim = h->dim, hid = h->hidden_dim, kv = (uint64_t)hs * h->n_kv_heads;
    rc |= add(w, st, &n, "token_embd.weight", c->tok, dim, h->vocab_size, type, h);
    for (uint32_t l = 0; l < h->n_layers; l++) {
        const struct {
            const char *name;
            const float *data;
            uint64_t cols, rows;
        } t[] = {
            {"attn_norm", c->rms_att + l * dim, dim, 0},
            {"attn_q", c->wq + l * dim * dim, dim, dim},
            {"attn_k", c->wk + l * kv * dim, dim, kv},
            {"attn_v", c->wv + l * kv * dim, dim, kv},
            {"attn_output", c->wo + l * dim * dim, dim, dim},
            {"ffn_norm", c->rms_ffn + l * dim, dim, 0},
            {"ffn_gate", c->w1 + l * hid * dim, dim, hid},
            {"ffn_down", c->w2 + l * dim * hid, hid, dim},
            {"ffn_up", c->w3 + l * hid * dim, dim, hid},
        };
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
            char tn[64];
            snprintf(tn, sizeof tn, "blk.%u.%s.weight", l, t[i].name);
            rc |= add(w, st, &n, tn, t[i].data, t[i].cols, t[i].rows, type, h);
        }
    }
    rc |= add(w, st, &n, "output_norm.weight", c->rms_final, dim, 0, type, h);
    if (!h->shared_classifier)
        rc |= add(w, st, &n, "output.weight", c->wcls, dim, h->vocab_size, type, h);

    if (rc != 0)
        rc = pi_error_set(err, "llama2.c import %s: could not queue keys and tensors (out of memory?)", out_path);
    else
        rc = gguf_writer_write(w, out_path, "GGUF", err);
    gguf_writer_free(&w);
    free(st);
    return rc;
}

int llama2c_import(const char *checkpoint, const char *tokenizer_path, const char *out_path,
                   pi_type type, pi_act act, llama2c_info *info, pi_error *err)
{
    if (!pi_type_supported((int)type))
        return pi_error_set(err, "llama2.c import: unsupported output type %d", (int)type);
    ckpt c;
    vocab v;
    if (ckpt_open(&c, checkpoint, err) < 0) {
        ckpt_close(&c);
        return -1;
    }
    if (vocab_load(&v, tokenizer_path, c.h.vocab_size, err) < 0) {
        ckpt_close(&c);
        return -1;
    }
    int rc = write_gguf(&c, &v, out_path, type, act, &c.h, err);
    if (rc == 0 && info)
        *info = c.h;
    vocab_free(&v);
    ckpt_close(&c);
    return rc;
}
