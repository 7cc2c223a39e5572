/* GGUF v2/v3 reader (docs/formats.md). The whole file is validated in
 * gguf_open* before anything is returned, so every pointer handed out lies
 * inside the mapping and every length has been checked against its end. */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_KEY_LEN 65535 /* the spec's limit on key length */

struct gguf_file {
    char *path;
    const uint8_t *base;
    size_t size;
    bool mapped;
    uint32_t version;
    bool powerinfer;
    size_t alignment;
    size_t data_start;
    size_t n_kv;
    gguf_kv *kvs;
    size_t *kv_sorted; /* kv indices sorted by key: duplicates and lookup */
    size_t n_tensors;
    gguf_tensor *tensors;
    size_t *tensor_sorted;
};

/* A bounds-checked cursor over the file; every read names what it reads. */
typedef struct rd {
    const uint8_t *p;
    size_t size;
    size_t pos;
    const char *name;
    pi_error *err;
} rd;

static size_t type_size(gguf_type t)
{
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    case GGUF_TYPE_STRING: case GGUF_TYPE_ARRAY: return 0;
    }
    return 0;
}

const char *gguf_type_name(gguf_type t)
{
    switch (t) {
    case GGUF_TYPE_UINT8: return "uint8";
    case GGUF_TYPE_INT8: return "int8";
    case GGUF_TYPE_UINT16: return "uint16";
    case GGUF_TYPE_INT16: return "int16";
    case GGUF_TYPE_UINT32: return "uint32";
    case GGUF_TYPE_INT32: return "int32";
    case GGUF_TYPE_FLOAT32: return "float32";
    case GGUF_TYPE_BOOL: return "bool";
    case GGUF_TYPE_STRING: return "string";
    case GGUF_TYPE_ARRAY: return "array";
    case GGUF_TYPE_UINT64: return "uint64";
    case GGUF_TYPE_INT64: return "int64";
    case GGUF_TYPE_FLOAT64: return "float64";
    }
    return "unknown";
}

static bool type_known(uint32_t t)
{
    return t <= GGUF_TYPE_FLOAT64;
}

static uint64_t load_le(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static size_t rd_left(const rd *r)
{
    return r->size - r->pos;
}

/* Reads n little-endian bytes; what names the field for the error. */
static int rd_uint(rd *r, size_t n, uint64_t *out, const char *what)
{
    if (rd_left(r) < n)
        return pi_error_set(r->err, "gguf %s: file ends inside %s (offset %zu, size %zu); the file is truncated",
                            r->name, what, r->pos, r->size);
    *out = load_le(r->p + r->pos, n);
    r->pos += n;
    return 0;
}

/* A string: u64 length then bytes, the bytes inside the file. */
static int rd_str(rd *r, gguf_str *s, const char *what)
{
    uint64_t len = 0;
    if (rd_uint(r, 8, &len, what) != 0)
        return -1;
    if (len > rd_left(r))
        return pi_error_set(r->err, "gguf %s: %s has length %" PRIu64 " but only %zu bytes remain in the file",
                            r->name, what, len, rd_left(r));
    s->len = len;
    s->ptr = (const char *)r->p + r->pos;
    r->pos += (size_t)len;
    return 0;
}

/* Sets one scalar value of type t from the cursor into kv->v. */
static int rd_scalar(rd *r, gguf_type t, gguf_kv *kv, const char *what)
{
    if (t == GGUF_TYPE_STRING)
        return rd_str(r, &kv->v.str, what);
    uint64_t u = 0;
    size_t n = type_size(t);
    if (rd_uint(r, n, &u, what) != 0)
        return -1;
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
        kv->v.u64 = u;
        break;
    case GGUF_TYPE_INT8: kv->v.i64 = (int8_t)u; break;
    case GGUF_TYPE_INT16: kv->v.i64 = (int16_t)u; break;
    case GGUF_TYPE_INT32: kv->v.i64 = (int32_t)u; break;
    case GGUF_TYPE_INT64: kv->v.i64 = (int64_t)u; break;
    case GGUF_TYPE_FLOAT32: {
        uint32_t b = (uint32_t)u;
        float f;
        memcpy(&f, &b, 4);
        kv->v.f64 = f;
        break;
    }
    case GGUF_TYPE_FLOAT64: memcpy(&kv->v.f64, &u, 8); break;
    case GGUF_TYPE_BOOL:
        if (u > 1)
            return pi_error_set(r->err, "gguf %s: %s is a bool with value %" PRIu64 " (must be 0 or 1)",
                                r->name, what, u);
        kv->v.b = u != 0;
        break;
    default:
        return pi_error_set(r->err, "gguf %s: %s has type %s where a scalar was expected",
                            r->name, what, gguf_type_name(t));
    }
    return 0;
}

static int rd_array(rd *r, gguf_kv *kv, const char *what)
{
    uint64_t et = 0, n = 0;
    if (rd_uint(r, 4, &et, what) != 0 || rd_uint(r, 8, &n, what) != 0)
        return -1;
    if (!type_known((uint32_t)et) || et > UINT32_MAX)
        return pi_error_set(r->err, "gguf %s: %s is an array of unknown element type %" PRIu64,
                            r->name, what, et);
    if (et == GGUF_TYPE_ARRAY)
        return pi_error_set(r->err, "gguf %s: %s is a nested array, which GGUF readers do not support",
                            r->name, what);
    kv->v.arr.type = (gguf_type)et;
    kv->v.arr.n = n;
    kv->v.arr.data = r->p + r->pos;
    kv->v.arr.strs = NULL;
    if (et == GGUF_TYPE_STRING) {
        /* Each element takes at least its 8-byte length: bounds n before allocating. */
        if (n > rd_left(r) / 8)
            return pi_error_set(r->err, "gguf %s: %s has %" PRIu64 " strings, more than the %zu bytes left can hold",
                                r->name, what, n, rd_left(r));
        gguf_str *strs = calloc(n ? (size_t)n : 1, sizeof *strs);
        if (!strs)
            return pi_error_set(r->err, "gguf %s: out of memory indexing %s", r->name, what);
        kv->v.arr.strs = strs;
        for (uint64_t i = 0; i < n; i++) {
            /* Formatting a name per element would cost more than the parse: name it on error only. */
            if (rd_left(r) < 8)
                return pi_error_set(r->err, "gguf %s: file ends inside %s element %" PRIu64 "'s length; the file is truncated",
                                    r->name, what, i);
            uint64_t len = load_le(r->p + r->pos, 8);
            r->pos += 8;
            if (len > rd_left(r))
                return pi_error_set(r->err, "gguf %s: %s element %" PRIu64 " has length %" PRIu64 " but only %zu bytes remain in the file",
                                    r->name, what, i, len, rd_left(r));
            strs[i].len = len;
            strs[i].ptr = (const char *)r->p + r->pos;
            r->pos += (size_t)len;
        }
        return 0;
    }
    size_t es = type_size((gguf_type)et);
    if (n > rd_left(r) / es)
        return pi_error_set(r->err, "gguf %s: %s has %" PRIu64 " elements of %s, more than the %zu bytes left in the file",
                            r->name, what, n, gguf_type_name((gguf_type)et), rd_left(r));
    if (et == GGUF_TYPE_BOOL) {
        for (uint64_t i = 0; i < n; i++)
            if (r->p[r->pos + i] > 1)
                return pi_error_set(r->err, "gguf %s: %s element %" PRIu64 " is a bool with value %u (must be 0 or 1)",
                                    r->name, what, i, r->p[r->pos + i]);
    }
    r->pos += (size_t)(n * es);
    return 0;
}

static int str_cmp(gguf_str a, gguf_str b)
{
    size_t n = a.len < b.len ? (size_t)a.len : (size_t)b.len;
    int c = n ? memcmp(a.ptr, b.ptr, n) : 0;
    if (c != 0)
        return c;
    return a.len < b.len ? -1 : a.len > b.len;
}

bool gguf_str_eq(gguf_str s, const char *c)
{
    size_t n = strlen(c);
    return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

/* qsort has no context argument: sort (key, index) pairs instead. */
typedef struct named {
    gguf_str name;
    size_t idx;
} named;

static int named_cmp(const void *a, const void *b)
{
    const named *x = a, *y = b;
    return str_cmp(x->name, y->name);
}

/* Sorts indices by name into *out; returns the index of a duplicate, or -1. */
static long sort_names(const gguf_str *(*get)(const gguf_file *, size_t), const gguf_file *f, size_t n,
                       size_t **out, bool *oom)
{
    *oom = false;
    named *v = malloc((n ? n : 1) * sizeof *v);
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!v || !idx) {
        free(v);
        free(idx);
        *oom = true;
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        v[i].name = *get(f, i);
        v[i].idx = i;
    }
    qsort(v, n, sizeof *v, named_cmp);
    long dup = -1;
    for (size_t i = 0; i < n; i++) {
        idx[i] = v[i].idx;
        if (i > 0 && dup < 0 && str_cmp(v[i - 1].name, v[i].name) == 0)
            dup = (long)(v[i].idx > v[i - 1].idx ? v[i].idx : v[i - 1].idx);
    }
    free(v);
    *out = idx;
    return dup;
}

static const gguf_str *kv_name(const gguf_file *f, size_t i)
{
    return &f->kvs[i].key;
}

static const gguf_str *tensor_name(const gguf_file *f, size_t i)
{
    return &f->tensors[i].name;
}

/* Prints a file string into a C buffer for messages, cut and made printable. */
static const char *show(gguf_str s, char *buf, size_t cap)
{
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        buf[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    buf[n] = '\0';
    return buf;
}

static int parse_kvs(gguf_file *f, rd *r)
{
    for (size_t i = 0; i < f->n_kv; i++) {
        gguf_kv *kv = &f->kvs[i];
        char what[200], kb[96];
        snprintf(what, sizeof what, "key #%zu's name", i);
        if (rd_str(r, &kv->key, what) != 0)
            return -1;
        if (kv->key.len == 0 || kv->key.len > GGUF_MAX_KEY_LEN)
            return pi_error_set(r->err, "gguf %s: key #%zu has a name of length %" PRIu64 " (must be 1..%d)",
                                r->name, i, kv->key.len, GGUF_MAX_KEY_LEN);
        snprintf(what, sizeof what, "key '%s'", show(kv->key, kb, sizeof kb));
        uint64_t t = 0;
        if (rd_uint(r, 4, &t, what) != 0)
            return -1;
        if (!type_known((uint32_t)t))
            return pi_error_set(r->err, "gguf %s: %s has unknown value type %" PRIu64, r->name, what, t);
        kv->type = (gguf_type)t;
        if (t == GGUF_TYPE_ARRAY) {
            if (rd_array(r, kv, what) != 0)
                return -1;
        } else if (rd_scalar(r, kv->type, kv, what) != 0) {
            return -1;
        }
    }
    bool oom;
    long dup = sort_names(kv_name, f, f->n_kv, &f->kv_sorted, &oom);
    if (oom)
        return pi_error_set(r->err, "gguf %s: out of memory", r->name);
    if (dup >= 0) {
        char kb[96];
        return pi_error_set(r->err, "gguf %s: key '%s' appears more than once", r->name,
                            show(f->kvs[dup].key, kb, sizeof kb));
    }
    return 0;
}

static int read_alignment(gguf_file *f, pi_error *err)
{
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *kv = gguf_find_kv(f, "general.alignment");
    if (!kv)
        return 0;
    if (kv->type != GGUF_TYPE_UINT32)
        return pi_error_set(err, "gguf %s: key 'general.alignment' has type %s; it must be uint32",
                            f->path, gguf_type_name(kv->type));
    uint64_t a = kv->v.u64;
    if (a == 0 || (a & (a - 1)) != 0)
        return pi_error_set(err, "gguf %s: key 'general.alignment' is %" PRIu64 "; it must be a power of two",
                            f->path, a);
    f->alignment = (size_t)a;
    return 0;
}

static int parse_tensor_info(gguf_file *f, rd *r, size_t i)
{
    gguf_tensor *t = &f->tensors[i];
    char what[200], nb[96];
    snprintf(what, sizeof what, "tensor #%zu's name", i);
    if (rd_str(r, &t->name, what) != 0)
        return -1;
    if (t->name.len == 0)
        return pi_error_set(r->err, "gguf %s: tensor #%zu has an empty name", r->name, i);
    const char *nm = show(t->name, nb, sizeof nb);
    snprintf(what, sizeof what, "tensor %s", nm);
    uint64_t v = 0;
    if (rd_uint(r, 4, &v, what) != 0)
        return -1;
    if (v < 1 || v > GGUF_MAX_DIMS)
        return pi_error_set(r->err, "gguf %s: tensor %s has %" PRIu64 " dimensions (must be 1..%d)",
                            r->name, nm, v, GGUF_MAX_DIMS);
    t->n_dims = (uint32_t)v;
    uint64_t nel = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if (d >= t->n_dims)
            continue;
        if (rd_uint(r, 8, &t->ne[d], what) != 0)
            return -1;
        if (t->ne[d] < 1 || t->ne[d] > INT64_MAX)
            return pi_error_set(r->err, "gguf %s: tensor %s has dimension %u = %" PRIu64 " (must be 1..2^63-1)",
                                r->name, nm, d, t->ne[d]);
        if (nel > (uint64_t)INT64_MAX / t->ne[d])
            return pi_error_set(r->err, "gguf %s: tensor %s's element count overflows (dimension %u = %" PRIu64 ")",
                                r->name, nm, d, t->ne[d]);
        nel *= t->ne[d];
    }
    if (rd_uint(r, 4, &v, what) != 0)
        return -1;
    if (!pi_type_supported((int)(v > INT32_MAX ? -1 : (int)v))) {
        const char *g = v <= INT32_MAX ? pi_type_ggml_name((int)v) : NULL;
        if (g)
            return pi_error_set(r->err, "gguf %s: tensor %s has type %s, which pi does not support; "
                                "supported: f32, f16, bf16, q8_0, q4_0, q4_K, q5_K, q6_K", r->name, nm, g);
        return pi_error_set(r->err, "gguf %s: tensor %s has unknown type %" PRIu64, r->name, nm, v);
    }
    t->type = (pi_type)v;
    size_t row, size = 0;
    if (t->ne[0] % pi_type_block_elems(t->type) != 0)
        return pi_error_set(r->err, "gguf %s: tensor %s has %" PRIu64 " elements per row, not a multiple of %s's block of %zu",
                            r->name, nm, t->ne[0], pi_type_name(t->type), pi_type_block_elems(t->type));
    if (pi_row_bytes(t->type, t->ne[0], &row) != 0)
        return pi_error_set(r->err, "gguf %s: tensor %s's size in bytes overflows", r->name, nm);
    uint64_t rows = nel / t->ne[0];
    if (rows > SIZE_MAX / row)
        return pi_error_set(r->err, "gguf %s: tensor %s's size in bytes overflows", r->name, nm);
    size = row * (size_t)rows;
    t->size = size;
    if (rd_uint(r, 8, &t->offset, what) != 0)
        return -1;
    if (t->offset % f->alignment != 0)
        return pi_error_set(r->err, "gguf %s: tensor %s's data offset %" PRIu64 " is not a multiple of the alignment %zu",
                            r->name, nm, t->offset, f->alignment);
    return 0;
}

static int parse_tensors(gguf_file *f, rd *r)
{
    for (size_t i = 0; i < f->n_tensors; i++)
        if (parse_tensor_info(f, r, i) != 0)
            return -1;
    /* The data section starts at the next multiple of the alignment. */
    size_t pad = (f->alignment - r->pos % f->alignment) % f->alignment;
    if (f->n_tensors > 0 && pad > rd_left(r))
        return pi_error_set(r->err, "gguf %s: file ends before the tensor data section (offset %zu + padding %zu > size %zu)",
                            r->name, r->pos, pad, r->size);
    f->data_start = pad > rd_left(r) ? r->size : r->pos + pad;
    size_t data_size = r->size - f->data_start;
    for (size_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        char nb[96];
        if (t->offset > data_size || t->size > data_size - t->offset)
            return pi_error_set(r->err, "gguf %s: tensor %s (offset %" PRIu64 ", %zu bytes) runs past the end of the file "
                                "(data section holds %zu bytes); the file is truncated or corrupt",
                                r->name, show(t->name, nb, sizeof nb), t->offset, t->size, data_size);
        t->data = r->p + f->data_start + t->offset;
    }
    bool oom;
    long dup = sort_names(tensor_name, f, f->n_tensors, &f->tensor_sorted, &oom);
    if (oom)
        return pi_error_set(r->err, "gguf %s: out of memory", r->name);
    if (dup >= 0) {
        char nb[96];
        return pi_error_set(r->err, "gguf %s: tensor %s appears more than once", r->name,
                            show(f->tensors[dup].name, nb, sizeof nb));
    }
    return 0;
}

static int parse(gguf_file *f, pi_error *err)
{
    rd r = {.p = f->base, .size = f->size, .pos = 0, .name = f->path, .err = err};
    if (f->size < 4)
        return pi_error_set(err, "gguf %s: file is %zu bytes, too short to be GGUF", f->path, f->size);
    if (memcmp(f->base, "GGUF", 4) == 0) {
        f->powerinfer = false;
    } else if (memcmp(f->base, "PWRI", 4) == 0) {
        f->powerinfer = true;
    } else {
        return pi_error_set(err, "gguf %s: bad magic (not a GGUF file: the first 4 bytes are not \"GGUF\" or \"PWRI\")",
                            f->path);
    }
    r.pos = 4;
    uint64_t version = 0, nt = 0, nkv = 0;
    if (rd_uint(&r, 4, &version, "the version") != 0)
        return -1;
    if (version == 1)
        return pi_error_set(err, "gguf %s: GGUF version 1 is not supported (pi reads versions 2 and 3); "
                            "convert the model with a current llama.cpp", f->path);
    if ((version & 0xffff) == 0 && version != 0)
        return pi_error_set(err, "gguf %s: the file is big-endian (version field 0x%08" PRIx64 "); pi reads little-endian GGUF only",
                            f->path, version);
    if (version != 2 && version != 3)
        return pi_error_set(err, "gguf %s: unsupported GGUF version %" PRIu64 " (pi reads versions 2 and 3)",
                            f->path, version);
    f->version = (uint32_t)version;
    if (rd_uint(&r, 8, &nt, "the tensor count") != 0 || rd_uint(&r, 8, &nkv, "the key count") != 0)
        return -1;
    /* Each key takes at least 13 bytes (name length, type, 1-byte value) and
     * each tensor info at least 32: counts beyond that cannot be real. */
    if (nkv > rd_left(&r) / 13)
        return pi_error_set(err, "gguf %s: header claims %" PRIu64 " keys, more than the %zu-byte file can hold",
                            f->path, nkv, f->size);
    if (nt > rd_left(&r) / 32)
        return pi_error_set(err, "gguf %s: header claims %" PRIu64 " tensors, more than the %zu-byte file can hold",
                            f->path, nt, f->size);
    f->n_kv = (size_t)nkv;
    f->n_tensors = (size_t)nt;
    f->kvs = calloc(f->n_kv ? f->n_kv : 1, sizeof *f->kvs);
    f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
    if (!f->kvs || !f->tensors)
        return pi_error_set(err, "gguf %s: out of memory", f->path);
    if (parse_kvs(f, &r) != 0 || read_alignment(f, err) != 0 || parse_tensors(f, &r) != 0)
        return -1;
    return 0;
}

void gguf_close(gguf_file **fp)
{
    if (!fp || !*fp)
        return;
    gguf_file *f = *fp;
    if (f->kvs) {
        for (size_t i = 0; i < f->n_kv; i++)
            if (f->kvs[i].type == GGUF_TYPE_ARRAY)
                free((void *)f->kvs[i].v.arr.strs);
    }
    free(f->kvs);
    free(f->kv_sorted);
    free(f->tensors);
    free(f->tensor_sorted);
    if (f->mapped)
        munmap((void *)f->base, f->size);
    free(f->path);
    free(f);
    *fp = NULL;
}

static gguf_file *open_common(const void *data, size_t size, const char *name, bool mapped, pi_error *err)
{
    gguf_file *f = calloc(1, sizeof *f);
    if (!f) {
        pi_error_set(err, "gguf %s: out of memory", name);
        return NULL;
    }
    f->base = data;
    f->size = size;
    f->mapped = mapped;
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    f->path = strdup(name);
    if (!f->path) {
        pi_error_set(err, "gguf %s: out of memory", name);
        if (mapped)
            munmap((void *)data, size);
        free(f);
        return NULL;
    }
    if (parse(f, err) != 0) {
        gguf_close(&f);
        return NULL;
    }
    return f;
}

gguf_file *gguf_open_memory(const void *data, size_t size, const char *name, pi_error *err)
{
    static const uint8_t empty[1];
    return open_common(data ? data : empty, data ? size : 0, name ? name : "(memory)", false, err);
}

gguf_file *gguf_open(const char *path, pi_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        pi_error_set(err, "gguf %s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        pi_error_set(err, "gguf %s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode) || st.st_size < 4) {
        pi_error_set(err, "gguf %s: not a regular file of at least 4 bytes (size %lld)", path, (long long)st.st_size);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int saved = errno;
    close(fd); /* the mapping keeps the file */
    if (p == MAP_FAILED) {
        pi_error_set(err, "gguf %s: cannot mmap %zu bytes: %s", path, size, strerror(saved));
        return NULL;
    }
    return open_common(p, size, path, true, err);
}

const char *gguf_path(const gguf_file *f) { return f->path; }
uint32_t gguf_version(const gguf_file *f) { return f->version; }
bool gguf_is_powerinfer(const gguf_file *f) { return f->powerinfer; }
size_t gguf_alignment(const gguf_file *f) { return f->alignment; }
const void *gguf_base(const gguf_file *f) { return f->base; }
size_t gguf_file_size(const gguf_file *f) { return f->size; }
size_t gguf_n_kv(const gguf_file *f) { return f->n_kv; }
size_t gguf_n_tensors(const gguf_file *f) { return f->n_tensors; }

const gguf_kv *gguf_kv_at(const gguf_file *f, size_t i)
{
    return i < f->n_kv ? &f->kvs[i] : NULL;
}

const gguf_tensor *gguf_tensor_at(const gguf_file *f, size_t i)
{
    return i < f->n_tensors ? &f->tensors[i] : NULL;
}

/* Binary search over the sorted index; linear before the index exists
 * (during parsing, when general.alignment is looked up it already does). */
static long find_sorted(const size_t *sorted, size_t n, const gguf_str *(*get)(const gguf_file *, size_t),
                        const gguf_file *f, const char *name)
{
    if (!sorted)
        return -1;
    gguf_str key = {.len = strlen(name), .ptr = name};
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = str_cmp(*get(f, sorted[mid]), key);
        if (c == 0)
            return (long)sorted[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key)
{
    long i = find_sorted(f->kv_sorted, f->n_kv, kv_name, f, key);
    return i < 0 ? NULL : &f->kvs[i];
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name)
{
    long i = find_sorted(f->tensor_sorted, f->n_tensors, tensor_name, f, name);
    return i < 0 ? NULL : &f->tensors[i];
}

static bool is_unsigned(gguf_type t)
{
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_UINT32 || t == GGUF_TYPE_UINT64;
}

static bool is_signed(gguf_type t)
{
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_INT64;
}

static const gguf_kv *need(const gguf_file *f, const char *key, pi_error *err)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv)
        pi_error_set(err, "gguf %s: key '%s' is missing", f->path, key);
    return kv;
}

/* An integer key as uint64 when it is non-negative; -1 otherwise. */
static int get_uint(const gguf_file *f, const char *key, uint64_t max, uint64_t *out, pi_error *err)
{
    const gguf_kv *kv = need(f, key, err);
    if (!kv)
        return -1;
    uint64_t v = 0;
    if (is_unsigned(kv->type)) {
        v = kv->v.u64;
    } else if (is_signed(kv->type) && kv->v.i64 >= 0) {
        v = (uint64_t)kv->v.i64;
    } else if (is_signed(kv->type)) {
        return pi_error_set(err, "gguf %s: key '%s' is %" PRId64 ", expected a non-negative integer",
                            f->path, key, kv->v.i64);
    } else {
        return pi_error_set(err, "gguf %s: key '%s' has type %s, expected an integer",
                            f->path, key, gguf_type_name(kv->type));
    }
    if (v > max)
        return pi_error_set(err, "gguf %s: key '%s' is %" PRIu64 ", larger than %" PRIu64,
                            f->path, key, v, max);
    *out = v;
    return 0;
}

int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, pi_error *err)
{
    uint64_t v = 0;
    if (get_uint(f, key, UINT32_MAX, &v, err) != 0)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

int gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out, pi_error *err)
{
    return get_uint(f, key, UINT64_MAX, out, err);
}

int gguf_get_f32(const gguf_file *f, const char *key, float *out, pi_error *err)
{
    const gguf_kv *kv = need(f, key, err);
    if (!kv)
        return -1;
    if (kv->type == GGUF_TYPE_FLOAT32 || kv->type == GGUF_TYPE_FLOAT64)
        *out = (float)kv->v.f64;
    else if (is_unsigned(kv->type))
        *out = (float)kv->v.u64;
    else if (is_signed(kv->type))
        *out = (float)kv->v.i64;
    else
        return pi_error_set(err, "gguf %s: key '%s' has type %s, expected a number",
                            f->path, key, gguf_type_name(kv->type));
    return 0;
}

int gguf_get_bool(const gguf_file *f, const char *key, bool *out, pi_error *err)
{
    const gguf_kv *kv = need(f, key, err);
    if (!kv)
        return -1;
    if (kv->type != GGUF_TYPE_BOOL)
        return pi_error_set(err, "gguf %s: key '%s' has type %s, expected bool",
                            f->path, key, gguf_type_name(kv->type));
    *out = kv->v.b;
    return 0;
}

int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, pi_error *err)
{
    const gguf_kv *kv = need(f, key, err);
    if (!kv)
        return -1;
    if (kv->type != GGUF_TYPE_STRING)
        return pi_error_set(err, "gguf %s: key '%s' has type %s, expected string",
                            f->path, key, gguf_type_name(kv->type));
    *out = kv->v.str;
    return 0;
}

int gguf_get_cstr(const gguf_file *f, const char *key, char *buf, size_t cap, pi_error *err)
{
    gguf_str s = {0, NULL};
    if (gguf_get_str(f, key, &s, err) != 0)
        return -1;
    if (cap == 0 || s.len > cap - 1)
        return pi_error_set(err, "gguf %s: key '%s' is a string of %" PRIu64 " bytes, longer than the %zu allowed",
                            f->path, key, s.len, cap ? cap - 1 : 0);
    if (s.len)
        memcpy(buf, s.ptr, (size_t)s.len);
    buf[s.len] = '\0';
    return 0;
}

static bool arr_elem(const gguf_kv *kv, uint64_t i, uint64_t *raw, size_t *n)
{
    if (kv->type != GGUF_TYPE_ARRAY || i >= kv->v.arr.n)
        return false;
    *n = type_size(kv->v.arr.type);
    if (*n == 0)
        return false;
    *raw = load_le((const uint8_t *)kv->v.arr.data + i * *n, *n);
    return true;
}

double gguf_arr_f64(const gguf_kv *kv, uint64_t i)
{
    uint64_t raw = 0;
    size_t n;
    if (!arr_elem(kv, i, &raw, &n))
        return 0.0;
    switch (kv->v.arr.type) {
    case GGUF_TYPE_FLOAT32: {
        uint32_t b = (uint32_t)raw;
        float fl;
        memcpy(&fl, &b, 4);
        return fl;
    }
    case GGUF_TYPE_FLOAT64: {
        double d;
        memcpy(&d, &raw, 8);
        return d;
    }
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
        return (double)gguf_arr_i64(kv, i);
    default:
        return (double)raw;
    }
}

int64_t gguf_arr_i64(const gguf_kv *kv, uint64_t i)
{
    uint64_t raw = 0;
    size_t n;
    if (!arr_elem(kv, i, &raw, &n))
        return 0;
    switch (kv->v.arr.type) {
    case GGUF_TYPE_INT8: return (int8_t)raw;
    case GGUF_TYPE_INT16: return (int16_t)raw;
    case GGUF_TYPE_INT32: return (int32_t)raw;
    case GGUF_TYPE_INT64: return (int64_t)raw;
    case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64: {
        double d = gguf_arr_f64(kv, i);
        /* Saturate rather than hit undefined behaviour on huge or nan values. */
        if (!(d == d))
            return 0;
        if (d >= 9.2e18)
            return INT64_MAX;
        if (d <= -9.2e18)
            return INT64_MIN;
        return (int64_t)d;
    }
    default:
        return (int64_t)raw; /* unsigned: wraps above INT64_MAX */
    }
}
