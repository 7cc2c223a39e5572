/* GGUF v3 writer: keys, arrays and tensors collected in memory (tensor
 * bytes referenced or produced by a callback), then written in one pass to
 * a temp file that is renamed over the target, so readers never see half a file. */
#include "gguf.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WRITER_DEFAULT_ALIGNMENT 32

typedef struct wkv {
    char *key;
    gguf_type type;
    uint64_t scalar;      /* raw little-endian bits of a scalar */
    char *str;            /* STRING value */
    size_t str_len;
    gguf_type elem_type;  /* ARRAY */
    uint64_t n;
    void *data;           /* numeric array elements, packed */
    char **strs;          /* string array elements */
    size_t *lens;
} wkv;

typedef struct wtensor {
    char *name;
    pi_type type;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS];
    size_t size;
    uint64_t offset;
    const void *data;
    gguf_fill_fn fill;
    void *ctx;
} wtensor;

struct gguf_writer {
    wkv *kvs;
    size_t n_kv, cap_kv;
    wtensor *tensors;
    size_t n_tensors, cap_tensors;
    pi_error first_err; /* an add that failed: reported by write */
    bool failed;
};

static size_t elem_size(gguf_type t)
{
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

gguf_writer *gguf_writer_new(void)
{
    return calloc(1, sizeof(gguf_writer));
}

static void wkv_free(wkv *kv)
{
    free(kv->key);
    free(kv->str);
    free(kv->data);
    if (kv->strs)
        for (uint64_t i = 0; i < kv->n; i++)
            free(kv->strs[i]);
    free(kv->strs);
    free(kv->lens);
}

void gguf_writer_free(gguf_writer **wp)
{
    if (!wp || !*wp)
        return;
    gguf_writer *w = *wp;
    for (size_t i = 0; i < w->n_kv; i++)
        wkv_free(&w->kvs[i]);
    for (size_t i = 0; i < w->n_tensors; i++)
        free(w->tensors[i].name);
    free(w->kvs);
    free(w->tensors);
    free(w);
    *wp = NULL;
}

/* Records the first failed add; write reports it. Returns -1. */
static int fail(gguf_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(gguf_writer *w, const char *fmt, ...)
{
    if (!w->failed) {
        w->failed = true;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->first_err.msg, sizeof w->first_err.msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static wkv *new_kv(gguf_writer *w, const char *key, gguf_type type)
{
    if (!key || !*key) {
        fail(w, "gguf writer: empty key");
        return NULL;
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 16;
        wkv *k = realloc(w->kvs, cap * sizeof *k);
        if (!k) {
            fail(w, "gguf writer: out of memory adding key '%s'", key);
            return NULL;
        }
        w->kvs = k;
        w->cap_kv = cap;
    }
    wkv *kv = &w->kvs[w->n_kv];
    memset(kv, 0, sizeof *kv);
    kv->key = strdup(key);
    if (!kv->key) {
        fail(w, "gguf writer: out of memory adding key '%s'", key);
        return NULL;
    }
    kv->type = type;
    w->n_kv++;
    return kv;
}

static int add_scalar(gguf_writer *w, const char *key, gguf_type type, uint64_t bits)
{
    wkv *kv = new_kv(w, key, type);
    if (!kv)
        return -1;
    kv->scalar = bits;
    return 0;
}

int gguf_writer_add_u32(gguf_writer *w, const char *key, uint32_t v)
{
    return add_scalar(w, key, GGUF_TYPE_UINT32, v);
}

int gguf_writer_add_i32(gguf_writer *w, const char *key, int32_t v)
{
    return add_scalar(w, key, GGUF_TYPE_INT32, (uint32_t)v);
}

int gguf_writer_add_u64(gguf_writer *w, const char *key, uint64_t v)
{
    return add_scalar(w, key, GGUF_TYPE_UINT64, v);
}

int gguf_writer_add_f32(gguf_writer *w, const char *key, float v)
{
    uint32_t b;
    memcpy(&b, &v, 4);
    return add_scalar(w, key, GGUF_TYPE_FLOAT32, b);
}

int gguf_writer_add_bool(gguf_writer *w, const char *key, bool v)
{
    return add_scalar(w, key, GGUF_TYPE_BOOL, v ? 1 : 0);
}

int gguf_writer_add_str(gguf_writer *w, const char *key, const char *v)
{
    if (!v)
        return fail(w, "gguf writer: key '%s' has a NULL string", key ? key : "");
    wkv *kv = new_kv(w, key, GGUF_TYPE_STRING);
    if (!kv)
        return -1;
    kv->str_len = strlen(v);
    kv->str = strdup(v);
    if (!kv->str)
        return fail(w, "gguf writer: out of memory adding key '%s'", key);
    return 0;
}

int gguf_writer_add_arr(gguf_writer *w, const char *key, gguf_type elem_type, const void *data, uint64_t n)
{
    size_t es = elem_size(elem_type);
    if (es == 0)
        return fail(w, "gguf writer: key '%s': numeric arrays take a numeric element type", key ? key : "");
    if (n > SIZE_MAX / es || (n > 0 && !data))
        return fail(w, "gguf writer: key '%s': bad array length or data", key ? key : "");
    wkv *kv = new_kv(w, key, GGUF_TYPE_ARRAY);
    if (!kv)
        return -1;
    kv->elem_type = elem_type;
    kv->n = n;
    kv->data = malloc(n ? (size_t)n * es : 1);
    if (!kv->data)
        return fail(w, "gguf writer: out of memory adding key '%s'", key);
    if (n)
        memcpy(kv->data, data, (size_t)n * es);
    return 0;
}

int gguf_writer_add_arr_str(gguf_writer *w, const char *key, const char *const *strs, const size_t *lens, uint64_t n)
{
    if (n > SIZE_MAX / sizeof(char *) || (n > 0 && (!strs || !lens)))
        return fail(w, "gguf writer: key '%s': bad string array", key ? key : "");
    wkv *kv = new_kv(w, key, GGUF_TYPE_ARRAY);
    if (!kv)
        return -1;
    kv->elem_type = GGUF_TYPE_STRING;
    kv->strs = calloc(n ? (size_t)n : 1, sizeof *kv->strs);
    kv->lens = calloc(n ? (size_t)n : 1, sizeof *kv->lens);
    if (!kv->strs || !kv->lens)
        return fail(w, "gguf writer: out of memory adding key '%s'", key);
    for (uint64_t i = 0; i < n; i++) {
        kv->strs[i] = malloc(lens[i] ? lens[i] : 1);
        if (!kv->strs[i])
            return fail(w, "gguf writer: out of memory adding key '%s'", key);
        kv->n = i + 1; /* so free sees every allocated element */
        if (lens[i])
            memcpy(kv->strs[i], strs[i], lens[i]);
        kv->lens[i] = lens[i];
    }
    kv->n = n;
    return 0;
}

int gguf_writer_add_kv(gguf_writer *w, const gguf_kv *kv)
{
    if (!kv || kv->key.len == 0 || memchr(kv->key.ptr, '\0', (size_t)kv->key.len))
        return fail(w, "gguf writer: a copied key has an empty name or holds a NUL byte");
    char *key = strndup(kv->key.ptr, (size_t)kv->key.len);
    if (!key)
        return fail(w, "gguf writer: out of memory copying a key");
    int rc = -1;
    size_t es = elem_size(kv->type);
    switch (kv->type) {
    case GGUF_TYPE_STRING: {
        wkv *k = new_kv(w, key, GGUF_TYPE_STRING);
        if (!k)
            break;
        k->str_len = (size_t)kv->v.str.len;
        k->str = malloc(k->str_len ? k->str_len : 1);
        if (!k->str) {
            fail(w, "gguf writer: out of memory copying key '%s'", key);
            break;
        }
        if (k->str_len)
            memcpy(k->str, kv->v.str.ptr, k->str_len);
        rc = 0;
        break;
    }
    case GGUF_TYPE_ARRAY:
        if (kv->v.arr.type == GGUF_TYPE_STRING) {
            uint64_t n = kv->v.arr.n;
            const char **p = calloc(n ? (size_t)n : 1, sizeof *p);
            size_t *l = calloc(n ? (size_t)n : 1, sizeof *l);
            if (p && l) {
                for (uint64_t i = 0; i < n; i++) {
                    p[i] = kv->v.arr.strs[i].ptr;
                    l[i] = (size_t)kv->v.arr.strs[i].len;
                }
                rc = gguf_writer_add_arr_str(w, key, p, l, n);
            } else {
                fail(w, "gguf writer: out of memory copying key '%s'", key);
            }
            free(p);
            free(l);
        } else {
            rc = gguf_writer_add_arr(w, key, kv->v.arr.type, kv->v.arr.data, kv->v.arr.n);
        }
        break;
    case GGUF_TYPE_FLOAT32:
        rc = gguf_writer_add_f32(w, key, (float)kv->v.f64);
        break;
    case GGUF_TYPE_FLOAT64: {
        uint64_t b;
        memcpy(&b, &kv->v.f64, 8);
        rc = add_scalar(w, key, kv->type, b);
        break;
    }
    case GGUF_TYPE_BOOL:
        rc = add_scalar(w, key, kv->type, kv->v.b ? 1 : 0);
        break;
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
        /* Truncating the sign-extended value keeps the original bytes. */
        rc = add_scalar(w, key, kv->type, es == 8 ? (uint64_t)kv->v.i64
                                              : (uint64_t)kv->v.i64 & ((1ull << (8 * es)) - 1));
        break;
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
        rc = add_scalar(w, key, kv->type, kv->v.u64);
        break;
    default:
        fail(w, "gguf writer: key '%s' has an unknown type", key);
        break;
    }
    free(key);
    return rc;
}

static int add_tensor(gguf_writer *w, const char *name, pi_type type, uint32_t n_dims, const uint64_t *ne,
                      const void *data, gguf_fill_fn fill, void *ctx)
{
    if (!name || !*name)
        return fail(w, "gguf writer: tensor with an empty name");
    if (!pi_type_supported((int)type))
        return fail(w, "gguf writer: tensor %s has a type pi does not support", name);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS || !ne)
        return fail(w, "gguf writer: tensor %s must have 1..4 dimensions", name);
    if (!data && !fill)
        return fail(w, "gguf writer: tensor %s has no data", name);
    wtensor t = {.type = type, .n_dims = n_dims, .data = data, .fill = fill, .ctx = ctx};
    uint64_t rows = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] < 1 || t.ne[d] > INT64_MAX)
            return fail(w, "gguf writer: tensor %s has a dimension < 1", name);
        if (d > 0) {
            if (rows > INT64_MAX / t.ne[d])
                return fail(w, "gguf writer: tensor %s is too large", name);
            rows *= t.ne[d];
        }
    }
    size_t row;
    if (pi_row_bytes(type, t.ne[0], &row) != 0 || rows > SIZE_MAX / row)
        return fail(w, "gguf writer: tensor %s's rows are not a whole number of blocks, or it is too large", name);
    t.size = row * (size_t)rows;
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? w->cap_tensors * 2 : 16;
        wtensor *v = realloc(w->tensors, cap * sizeof *v);
        if (!v)
            return fail(w, "gguf writer: out of memory adding tensor %s", name);
        w->tensors = v;
        w->cap_tensors = cap;
    }
    t.name = strdup(name);
    if (!t.name)
        return fail(w, "gguf writer: out of memory adding tensor %s", name);
    w->tensors[w->n_tensors++] = t;
    return 0;
}

int gguf_writer_add_tensor(gguf_writer *w, const char *name, pi_type type, uint32_t n_dims, const uint64_t *ne,
                           const void *data)
{
    return add_tensor(w, name, type, n_dims, ne, data, NULL, NULL);
}

int gguf_writer_add_tensor_fn(gguf_writer *w, const char *name, pi_type type, uint32_t n_dims, const uint64_t *ne,
                              gguf_fill_fn fill, void *ctx)
{
    return add_tensor(w, name, type, n_dims, ne, NULL, fill, ctx);
}

/* ---- output ---- */

typedef struct out {
    FILE *fp;
    const char *path;
    uint64_t pos;
    pi_error *err;
} out;

static int put(out *o, const void *p, size_t n)
{
    if (n && fwrite(p, 1, n, o->fp) != n)
        return pi_error_set(o->err, "gguf %s: write failed: %s", o->path, strerror(errno));
    o->pos += n;
    return 0;
}

static int put_le(out *o, uint64_t v, size_t n)
{
    uint8_t b[8];
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    return put(o, b, n);
}

static int put_str(out *o, const char *s, size_t n)
{
    return put_le(o, n, 8) != 0 ? -1 : put(o, s, n);
}

static int put_pad(out *o, size_t align)
{
    static const uint8_t zeros[64];
    size_t pad = (size_t)((align - o->pos % align) % align);
    while (pad > 0) {
        size_t n = pad < sizeof zeros ? pad : sizeof zeros;
        if (put(o, zeros, n) != 0)
            return -1;
        pad -= n;
    }
    return 0;
}

/* Array elements are stored in host order; pi only runs little-endian. */
static int put_kv(out *o, const wkv *kv)
{
    if (put_str(o, kv->key, strlen(kv->key)) != 0 || put_le(o, (uint64_t)kv->type, 4) != 0)
        return -1;
    switch (kv->type) {
    case GGUF_TYPE_STRING:
        return put_str(o, kv->str, kv->str_len);
    case GGUF_TYPE_ARRAY:
        if (put_le(o, (uint64_t)kv->elem_type, 4) != 0 || put_le(o, kv->n, 8) != 0)
            return -1;
        if (kv->elem_type == GGUF_TYPE_STRING) {
            for (uint64_t i = 0; i < kv->n; i++)
                if (put_str(o, kv->strs[i], kv->lens[i]) != 0)
                    return -1;
            return 0;
        }
        return put(o, kv->data, (size_t)kv->n * elem_size(kv->elem_type));
    default:
        return put_le(o, kv->scalar, elem_size(kv->type));
    }
}

/* Duplicates and the alignment value are checked before any byte is written. */
static int check(const gguf_writer *w, const char *path, size_t *align, pi_error *err)
{
    if (w->failed)
        return pi_error_set(err, "gguf %s: %s", path, w->first_err.msg);
    *align = WRITER_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < w->n_kv; i++) {
        for (size_t j = 0; j < i; j++)
            if (strcmp(w->kvs[i].key, w->kvs[j].key) == 0)
                return pi_error_set(err, "gguf %s: key '%s' was added twice", path, w->kvs[i].key);
        if (strcmp(w->kvs[i].key, "general.alignment") == 0) {
            uint64_t a = w->kvs[i].scalar;
            if (w->kvs[i].type != GGUF_TYPE_UINT32 || a == 0 || (a & (a - 1)) != 0)
                return pi_error_set(err, "gguf %s: general.alignment must be a uint32 power of two", path);
            *align = (size_t)a;
        }
    }
    for (size_t i = 0; i < w->n_tensors; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(w->tensors[i].name, w->tensors[j].name) == 0)
                return pi_error_set(err, "gguf %s: tensor %s was added twice", path, w->tensors[i].name);
    return 0;
}

static int put_all(gguf_writer *w, out *o, const char *magic, size_t align)
{
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        w->tensors[i].offset = off;
        off += w->tensors[i].size;
        off += (align - off % align) % align;
    }
    if (put(o, magic, 4) != 0 || put_le(o, 3, 4) != 0 || put_le(o, w->n_tensors, 8) != 0 ||
        put_le(o, w->n_kv, 8) != 0)
        return -1;
    for (size_t i = 0; i < w->n_kv; i++)
        if (put_kv(o, &w->kvs[i]) != 0)
            return -1;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        if (put_str(o, t->name, strlen(t->name)) != 0 || put_le(o, t->n_dims, 4) != 0)
            return -1;
        for (uint32_t d = 0; d < t->n_dims; d++)
            if (put_le(o, t->ne[d], 8) != 0)
                return -1;
        if (put_le(o, (uint64_t)t->type, 4) != 0 || put_le(o, t->offset, 8) != 0)
            return -1;
    }
    if (put_pad(o, align) != 0)
        return -1;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        if (t->fill) {
            void *buf = malloc(t->size);
            if (!buf)
                return pi_error_set(o->err, "gguf %s: out of memory producing tensor %s (%zu bytes)",
                                    o->path, t->name, t->size);
            int rc = t->fill(t->ctx, buf, t->size, o->err);
            if (rc != 0) {
                free(buf);
                return pi_error_wrap(o->err, "gguf %s: tensor %s", o->path, t->name);
            }
            rc = put(o, buf, t->size);
            free(buf);
            if (rc != 0)
                return -1;
        } else if (put(o, t->data, t->size) != 0) {
            return -1;
        }
        /* Pad between tensors only, so the file ends with the last tensor's bytes. */
        if (i + 1 < w->n_tensors && put_pad(o, align) != 0)
            return -1;
    }
    return 0;
}

int gguf_writer_write(gguf_writer *w, const char *path, const char *magic, pi_error *err)
{
    if (!magic || (strcmp(magic, "GGUF") != 0 && strcmp(magic, "PWRI") != 0))
        return pi_error_set(err, "gguf %s: magic must be \"GGUF\" or \"PWRI\"", path);
    size_t align = 32;
    if (check(w, path, &align, err) != 0)
        return -1;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp)
        return pi_error_set(err, "gguf %s: out of memory", path);
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        pi_error_set(err, "gguf %s: cannot create a temp file beside it: %s", path, strerror(errno));
        free(tmp);
        return -1;
    }
    /* mkstemp makes 0600; a model file is as readable as any other. */
    if (fchmod(fd, 0644) != 0) {
        pi_error_set(err, "gguf %s: cannot chmod %s: %s", path, tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        return -1;
    }
    FILE *fp = fdopen(fd, "wb");
    if (!fp) {
        pi_error_set(err, "gguf %s: fdopen: %s", path, strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        return -1;
    }
    out o = {.fp = fp, .path = path, .pos = 0, .err = err};
    int rc = put_all(w, &o, magic, align);
    if (fclose(fp) != 0 && rc == 0)
        rc = pi_error_set(err, "gguf %s: closing %s failed: %s", path, tmp, strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0)
        rc = pi_error_set(err, "gguf %s: cannot rename %s into place: %s", path, tmp, strerror(errno));
    if (rc != 0)
        unlink(tmp);
    free(tmp);
    return rc;
}
