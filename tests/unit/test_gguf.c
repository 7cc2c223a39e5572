/* Proves the GGUF reader and writer round-trip every key and tensor type byte
 * for byte, read llama.cpp's files, and reject every malformed file cleanly. */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

#include "check.h"
#include "gguf.h"

/* ---- a byte builder for hand-made (often broken) files ---- */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void b_put(buf *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        CHECK(b->p != NULL, "oom");
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void b_le(buf *b, uint64_t v, size_t n)
{
    uint8_t x[8];
    for (size_t i = 0; i < n; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    b_put(b, x, n);
}

static void b_str(buf *b, const char *s)
{
    b_le(b, strlen(s), 8);
    b_put(b, s, strlen(s));
}

static void b_pad(buf *b, size_t align)
{
    while (b->n % align)
        b_le(b, 0, 1);
}

static void b_header(buf *b, const char *magic, uint32_t version, uint64_t nt, uint64_t nkv)
{
    b_put(b, magic, 4);
    b_le(b, version, 4);
    b_le(b, nt, 8);
    b_le(b, nkv, 8);
}

static void b_kv_u32(buf *b, const char *key, uint32_t v)
{
    b_str(b, key);
    b_le(b, GGUF_TYPE_UINT32, 4);
    b_le(b, v, 4);
}

static void b_tensor(buf *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off)
{
    b_str(b, name);
    b_le(b, n_dims, 4);
    for (uint32_t d = 0; d < n_dims; d++)
        b_le(b, ne[d], 8);
    b_le(b, type, 4);
    b_le(b, off, 8);
}

/* Opens b from an exact-size heap copy (ASan sees any overread) and expects
 * failure whose message holds every given substring. */
static void expect_fail(const buf *b, const char *what, const char *const *subs)
{
    uint8_t *copy = malloc(b->n ? b->n : 1);
    CHECK(copy != NULL, "oom");
    if (b->n)
        memcpy(copy, b->p, b->n);
    pi_error err = {{0}};
    gguf_file *f = gguf_open_memory(copy, b->n, "case.gguf", &err);
    CHECK(f == NULL, "%s: expected the reader to fail", what);
    CHECK(strstr(err.msg, "case.gguf") != NULL, "%s: message does not name the file: %s", what, err.msg);
    for (size_t i = 0; subs[i]; i++)
        CHECK(strstr(err.msg, subs[i]) != NULL, "%s: message lacks '%s': %s", what, subs[i], err.msg);
    free(copy);
}

#define FAILS(b, what, ...) expect_fail((b), (what), (const char *const[]){__VA_ARGS__, NULL})

/* A valid file with one f32 tensor of 8 elements, built by hand; pieces
 * replaceable by the error tests below. */
static void one_tensor_file(buf *b, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off,
                            size_t data_bytes)
{
    b_header(b, "GGUF", 3, 1, 1);
    b_kv_u32(b, "general.alignment", 32);
    b_tensor(b, "blk.0.ffn_up.weight", n_dims, ne, type, off);
    b_pad(b, 32);
    for (size_t i = 0; i < data_bytes; i++)
        b_le(b, i & 0xff, 1);
}

/* ---- writer → reader round trip ---- */

typedef struct fill_ctx {
    const uint8_t *src;
    int calls;
} fill_ctx;

static int fill_copy(void *ctx, void *dst, size_t size, pi_error *err)
{
    (void)err;
    fill_ctx *c = ctx;
    memcpy(dst, c->src, size);
    c->calls++;
    return 0;
}

static int fill_fail(void *ctx, void *dst, size_t size, pi_error *err)
{
    (void)ctx;
    (void)dst;
    (void)size;
    return pi_error_set(err, "source tensor unreadable");
}

static uint8_t *read_all(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    CHECK(fp != NULL, "cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *p = malloc(sz > 0 ? (size_t)sz : 1);
    CHECK(p && fread(p, 1, (size_t)sz, fp) == (size_t)sz, "cannot read %s", path);
    fclose(fp);
    *n = (size_t)sz;
    return p;
}

typedef struct tspec {
    const char *name;
    pi_type type;
    uint32_t n_dims;
    uint64_t ne[4];
} tspec;

static const tspec tensors[] = {
    {"token_embd.weight", PI_TYPE_F32, 2, {5, 3, 1, 1}},
    {"blk.0.attn_q.weight", PI_TYPE_F16, 1, {7, 1, 1, 1}},
    {"blk.0.ffn_up.weight", PI_TYPE_BF16, 3, {3, 2, 2, 1}},
    {"blk.0.ffn_down.weight", PI_TYPE_Q8_0, 2, {64, 3, 1, 1}},
    {"output.weight", PI_TYPE_Q4_0, 4, {32, 2, 1, 2}},
};
#define N_TENSORS (sizeof tensors / sizeof tensors[0])

static size_t spec_bytes(const tspec *t)
{
    size_t row;
    CHECK(pi_row_bytes(t->type, t->ne[0], &row) == 0, "row bytes");
    return row * (size_t)(t->ne[1] * t->ne[2] * t->ne[3]);
}

static const uint8_t u8s[] = {0, 1, 255};
static const int8_t i8s[] = {-128, 0, 127};
static const uint16_t u16s[] = {0, 65535};
static const int16_t i16s[] = {-32768, 32767};
static const uint32_t u32s[] = {0, 4000000000u};
static const int32_t i32s[] = {INT32_MIN, -1, INT32_MAX};
static const float f32s[] = {1.5f, -0.0f, 3.0e38f};
static const uint8_t bools[] = {1, 0, 1};
static const uint64_t u64s[] = {UINT64_MAX, 1};
static const int64_t i64s[] = {INT64_MIN, INT64_MAX};
static const double f64s[] = {0.1, -1e300};

/* Builds a writer holding every key type and every tensor type. */
static gguf_writer *full_writer(uint8_t **data, fill_ctx *fc)
{
    gguf_writer *w = gguf_writer_new();
    CHECK(w != NULL, "writer");
    CHECK(gguf_writer_add_str(w, "general.architecture", "llama") == 0, "add");
    CHECK(gguf_writer_add_u32(w, "llama.block_count", 1) == 0, "add");
    CHECK(gguf_writer_add_i32(w, "test.i32", -7) == 0, "add");
    CHECK(gguf_writer_add_u64(w, "test.u64", UINT64_MAX) == 0, "add");
    CHECK(gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f) == 0, "add");
    CHECK(gguf_writer_add_bool(w, "test.bool", true) == 0, "add");
    CHECK(gguf_writer_add_str(w, "pi.ffn_activation", "relu") == 0, "add");
    CHECK(gguf_writer_add_arr(w, "a.u8", GGUF_TYPE_UINT8, u8s, 3) == 0, "add");
    CHECK(gguf_writer_add_arr(w, "a.i8", GGUF_TYPE_INT8, i8s, 3) == 0, "add");
    CHECK(gguf_writer_add_arr(w, "a.u16", GGUF_TYPE_UINT16, u16s, 2) == 0, "add");
    CHECK(gguf_writer_add_arr(w, "a.i16", GGUF_TYPE_INT16, i16s, 2) == 0, "add");
    CHECK(gguf_writer_add_arr(w, "a.u32", GGUF_TYPE_UINT32, u32s, 2) == 0, "add");
    CHECK(gguf_writer_add_arr(w, "a.i32", GGUF_TYPE_INT32, i32s, 3) == 0, "add");
    CHECK(gguf_writer_add_arr(w, "a.f32", GGUF_TYPE_FLOAT32, f32s, 3) == 0, "add");
    CHECK(gguf_writer_add_arr(w, "a.bool", GGUF_TYPE_BOOL, bools, 3) == 0, "add");
    CHECK(gguf_writer_add_arr(w, "a.u64", GGUF_TYPE_UINT64, u64s, 2) == 0, "add");
    CHECK(gguf_writer_add_arr(w, "a.i64", GGUF_TYPE_INT64, i64s, 2) == 0, "add");
    CHECK(gguf_writer_add_arr(w, "a.f64", GGUF_TYPE_FLOAT64, f64s, 2) == 0, "add");
    CHECK(gguf_writer_add_arr(w, "a.empty", GGUF_TYPE_FLOAT32, NULL, 0) == 0, "add");
    const char *strs[] = {"<s>", "", "a\0b", "\xe2\x96\x81the"};
    const size_t lens[] = {3, 0, 3, 6};
    CHECK(gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", strs, lens, 4) == 0, "add");
    for (size_t i = 0; i < N_TENSORS; i++) {
        const tspec *t = &tensors[i];
        size_t n = spec_bytes(t);
        data[i] = malloc(n);
        for (size_t j = 0; j < n; j++)
            data[i][j] = (uint8_t)(j * 7 + i * 13 + 1);
        /* Keep fp16 scales finite: not needed for bytes, but keeps the tensor usable. */
        if (i == 3) {
            fc->src = data[i];
            CHECK(gguf_writer_add_tensor_fn(w, t->name, t->type, t->n_dims, t->ne, fill_copy, fc) == 0, "add fn");
        } else {
            CHECK(gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, data[i]) == 0, "add tensor");
        }
    }
    return w;
}

static void check_full(const gguf_file *f, uint8_t **data)
{
    pi_error err = {{0}};
    CHECK(gguf_version(f) == 3, "version %u", gguf_version(f));
    CHECK(gguf_alignment(f) == 32, "alignment");
    CHECK(gguf_n_kv(f) == 20, "n_kv %zu", gguf_n_kv(f));
    char arch[16];
    CHECK(gguf_get_cstr(f, "general.architecture", arch, sizeof arch, &err) == 0 && strcmp(arch, "llama") == 0, "arch");
    uint32_t u32;
    CHECK(gguf_get_u32(f, "llama.block_count", &u32, &err) == 0 && u32 == 1, "u32");
    const gguf_kv *kv = gguf_find_kv(f, "test.i32");
    CHECK(kv && kv->type == GGUF_TYPE_INT32 && kv->v.i64 == -7, "i32");
    uint64_t u64;
    CHECK(gguf_get_u64(f, "test.u64", &u64, &err) == 0 && u64 == UINT64_MAX, "u64");
    float eps;
    CHECK(gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &eps, &err) == 0 && eps == 1e-5f, "f32");
    bool b;
    CHECK(gguf_get_bool(f, "test.bool", &b, &err) == 0 && b, "bool");
    gguf_str s;
    CHECK(gguf_get_str(f, "pi.ffn_activation", &s, &err) == 0 && gguf_str_eq(s, "relu"), "str");

    kv = gguf_find_kv(f, "a.u8");
    CHECK(kv && kv->v.arr.type == GGUF_TYPE_UINT8 && kv->v.arr.n == 3 && gguf_arr_i64(kv, 2) == 255, "a.u8");
    kv = gguf_find_kv(f, "a.i8");
    CHECK(kv && gguf_arr_i64(kv, 0) == -128 && gguf_arr_i64(kv, 2) == 127, "a.i8");
    kv = gguf_find_kv(f, "a.u16");
    CHECK(kv && gguf_arr_i64(kv, 1) == 65535, "a.u16");
    kv = gguf_find_kv(f, "a.i16");
    CHECK(kv && gguf_arr_i64(kv, 0) == -32768, "a.i16");
    kv = gguf_find_kv(f, "a.u32");
    CHECK(kv && gguf_arr_i64(kv, 1) == 4000000000ll, "a.u32");
    kv = gguf_find_kv(f, "a.i32");
    CHECK(kv && gguf_arr_i64(kv, 0) == INT32_MIN && gguf_arr_f64(kv, 1) == -1.0, "a.i32");
    kv = gguf_find_kv(f, "a.f32");
    CHECK(kv && gguf_arr_f64(kv, 0) == 1.5 && gguf_arr_f64(kv, 2) == (double)3.0e38f &&
          signbit(gguf_arr_f64(kv, 1)), "a.f32");
    kv = gguf_find_kv(f, "a.bool");
    CHECK(kv && kv->v.arr.type == GGUF_TYPE_BOOL && gguf_arr_i64(kv, 0) == 1 && gguf_arr_i64(kv, 1) == 0, "a.bool");
    kv = gguf_find_kv(f, "a.u64");
    CHECK(kv && (uint64_t)gguf_arr_i64(kv, 0) == UINT64_MAX, "a.u64");
    kv = gguf_find_kv(f, "a.i64");
    CHECK(kv && gguf_arr_i64(kv, 0) == INT64_MIN && gguf_arr_i64(kv, 1) == INT64_MAX, "a.i64");
    kv = gguf_find_kv(f, "a.f64");
    CHECK(kv && gguf_arr_f64(kv, 0) == 0.1 && gguf_arr_f64(kv, 1) == -1e300, "a.f64");
    kv = gguf_find_kv(f, "a.empty");
    CHECK(kv && kv->v.arr.n == 0, "a.empty");
    CHECK(gguf_arr_f64(kv, 0) == 0.0, "out-of-range element reads as 0");
    kv = gguf_find_kv(f, "tokenizer.ggml.tokens");
    CHECK(kv && kv->v.arr.type == GGUF_TYPE_STRING && kv->v.arr.n == 4, "tokens");
    CHECK(gguf_str_eq(kv->v.arr.strs[0], "<s>") && kv->v.arr.strs[1].len == 0, "tokens 0,1");
    CHECK(kv->v.arr.strs[2].len == 3 && memcmp(kv->v.arr.strs[2].ptr, "a\0b", 3) == 0, "embedded NUL kept");
    CHECK(gguf_str_eq(kv->v.arr.strs[3], "\xe2\x96\x81the"), "utf-8 kept");

    CHECK(gguf_n_tensors(f) == N_TENSORS, "n_tensors");
    const uint8_t *data_start = NULL;
    for (size_t i = 0; i < N_TENSORS; i++) {
        const tspec *sp = &tensors[i];
        const gguf_tensor *t = gguf_find_tensor(f, sp->name);
        CHECK(t != NULL, "tensor %s missing", sp->name);
        CHECK(t == gguf_tensor_at(f, i), "tensor order kept");
        CHECK(t->type == sp->type && t->n_dims == sp->n_dims, "tensor %s type/dims", sp->name);
        for (int d = 0; d < 4; d++)
            CHECK(t->ne[d] == sp->ne[d], "tensor %s ne[%d]", sp->name, d);
        CHECK(t->size == spec_bytes(sp), "tensor %s size", sp->name);
        CHECK(memcmp(t->data, data[i], t->size) == 0, "tensor %s bytes differ", sp->name);
        CHECK(t->offset % 32 == 0, "tensor %s offset aligned", sp->name);
        if (i == 0)
            data_start = (const uint8_t *)t->data - t->offset;
        CHECK((size_t)(data_start - (const uint8_t *)gguf_base(f)) % 32 == 0, "data section aligned");
    }
    CHECK(gguf_find_tensor(f, "nope") == NULL && gguf_find_kv(f, "nope") == NULL, "absent names");
}

static void test_round_trip(void)
{
    char path[512], path2[512];
    test_tmp("gguf_rt.gguf", path, sizeof path);
    test_tmp("gguf_rt2.gguf", path2, sizeof path2);
    uint8_t *data[N_TENSORS];
    fill_ctx fc = {0};
    gguf_writer *w = full_writer(data, &fc);
    pi_error err = {{0}};
    CHECK(gguf_writer_write(w, path, "GGUF", &err) == 0, "write: %s", err.msg);
    CHECK(fc.calls == 1, "fill called once");
    gguf_writer_free(&w);
    CHECK(w == NULL, "free nulls");

    gguf_file *f = gguf_open(path, &err);
    CHECK(f != NULL, "open: %s", err.msg);
    CHECK(!gguf_is_powerinfer(f), "magic GGUF");
    check_full(f, data);

    /* Copy every key and tensor into a new writer: the file must be identical. */
    gguf_writer *w2 = gguf_writer_new();
    for (size_t i = 0; i < gguf_n_kv(f); i++)
        CHECK(gguf_writer_add_kv(w2, gguf_kv_at(f, i)) == 0, "add_kv %zu", i);
    for (size_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        CHECK(gguf_writer_add_tensor(w2, name, t->type, t->n_dims, t->ne, t->data) == 0, "add tensor");
    }
    CHECK(gguf_writer_write(w2, path2, "GGUF", &err) == 0, "write 2: %s", err.msg);
    gguf_writer_free(&w2);
    size_t n1, n2;
    uint8_t *b1 = read_all(path, &n1), *b2 = read_all(path2, &n2);
    CHECK(n1 == n2 && memcmp(b1, b2, n1) == 0, "re-written file differs (%zu vs %zu bytes)", n1, n2);

    /* Every prefix of a valid file fails cleanly (the data section is cut). */
    for (size_t cut = 0; cut < n1; cut++) {
        uint8_t *p = malloc(cut ? cut : 1);
        memcpy(p, b1, cut);
        pi_error e2 = {{0}};
        gguf_file *g = gguf_open_memory(p, cut, "cut.gguf", &e2);
        CHECK(g == NULL, "prefix of %zu bytes opened", cut);
        CHECK(strstr(e2.msg, "cut.gguf") != NULL, "prefix %zu: message %s", cut, e2.msg);
        free(p);
    }
    /* Every single-byte corruption either opens or fails with a message;
     * an open file's tensors still lie inside the buffer. */
    for (size_t pos = 0; pos < n1; pos++) {
        static const uint8_t vals[] = {0x00, 0x01, 0x7f, 0x80, 0xff};
        for (size_t v = 0; v < sizeof vals; v++) {
            uint8_t *p = malloc(n1);
            memcpy(p, b1, n1);
            p[pos] = vals[v];
            pi_error e2 = {{0}};
            gguf_file *g = gguf_open_memory(p, n1, "flip.gguf", &e2);
            if (g) {
                for (size_t i = 0; i < gguf_n_tensors(g); i++) {
                    const gguf_tensor *t = gguf_tensor_at(g, i);
                    const uint8_t *d = t->data;
                    CHECK(d >= p && t->size <= n1 && d + t->size <= p + n1, "tensor outside the buffer");
                }
                gguf_close(&g);
            } else {
                CHECK(strstr(e2.msg, "flip.gguf") != NULL, "flip at %zu: message %s", pos, e2.msg);
            }
            free(p);
        }
    }
    /* The same from memory opens too. */
    gguf_file *g = gguf_open_memory(b1, n1, "mem.gguf", &err);
    CHECK(g != NULL, "open memory: %s", err.msg);
    check_full(g, data);
    gguf_close(&g);
    free(b1);
    free(b2);
    gguf_close(&f);
    CHECK(f == NULL, "close nulls");
    for (size_t i = 0; i < N_TENSORS; i++)
        free(data[i]);
    unlink(path);
    unlink(path2);
    printf("round trip: %zu bytes, every prefix rejected\n", n1);
}

static void test_typed_getters(void)
{
    gguf_writer *w = gguf_writer_new();
    gguf_writer_add_u64(w, "big", (uint64_t)UINT32_MAX + 1);
    gguf_writer_add_i32(w, "neg", -1);
    gguf_writer_add_i32(w, "pos", 42);
    gguf_writer_add_str(w, "s", "hello");
    gguf_writer_add_u32(w, "n", 3);
    char path[512];
    test_tmp("gguf_get.gguf", path, sizeof path);
    pi_error err = {{0}};
    CHECK(gguf_writer_write(w, path, "PWRI", &err) == 0, "write: %s", err.msg);
    gguf_writer_free(&w);
    gguf_file *f = gguf_open(path, &err);
    CHECK(f != NULL, "open: %s", err.msg);
    CHECK(gguf_is_powerinfer(f), "PWRI magic reported");
    uint32_t u32;
    uint64_t u64;
    float fl;
    bool b;
    char small[4];
    CHECK(gguf_get_u32(f, "big", &u32, &err) == -1 && strstr(err.msg, "'big'"), "u32 overflow: %s", err.msg);
    CHECK(gguf_get_u64(f, "big", &u64, &err) == 0 && u64 == (uint64_t)UINT32_MAX + 1, "u64");
    CHECK(gguf_get_u32(f, "neg", &u32, &err) == -1 && strstr(err.msg, "'neg'"), "negative: %s", err.msg);
    CHECK(gguf_get_u32(f, "pos", &u32, &err) == 0 && u32 == 42, "signed non-negative converts");
    CHECK(gguf_get_f32(f, "n", &fl, &err) == 0 && fl == 3.0f, "f32 from int");
    CHECK(gguf_get_f32(f, "s", &fl, &err) == -1 && strstr(err.msg, "string"), "f32 from string: %s", err.msg);
    CHECK(gguf_get_u32(f, "missing.key", &u32, &err) == -1 && strstr(err.msg, "'missing.key' is missing"),
          "missing: %s", err.msg);
    CHECK(gguf_get_bool(f, "n", &b, &err) == -1, "bool from int");
    CHECK(gguf_get_cstr(f, "s", small, sizeof small, &err) == -1 && strstr(err.msg, "'s'"), "cstr too long");
    gguf_str s;
    CHECK(gguf_get_str(f, "n", &s, &err) == -1, "str from int");
    gguf_close(&f);
    unlink(path);
}

static void test_writer_errors(void)
{
    char path[512];
    test_tmp("gguf_werr.gguf", path, sizeof path);
    unlink(path);
    pi_error err = {{0}};
    float x[4] = {0};
    uint64_t ne[1] = {4};

    gguf_writer *w = gguf_writer_new();
    gguf_writer_add_u32(w, "dup.key", 1);
    gguf_writer_add_u32(w, "dup.key", 2);
    CHECK(gguf_writer_write(w, path, "GGUF", &err) == -1 && strstr(err.msg, "dup.key"), "dup key: %s", err.msg);
    gguf_writer_free(&w);

    w = gguf_writer_new();
    gguf_writer_add_tensor(w, "t.weight", PI_TYPE_F32, 1, ne, x);
    gguf_writer_add_tensor(w, "t.weight", PI_TYPE_F32, 1, ne, x);
    CHECK(gguf_writer_write(w, path, "GGUF", &err) == -1 && strstr(err.msg, "t.weight"), "dup tensor: %s", err.msg);
    gguf_writer_free(&w);

    w = gguf_writer_new();
    CHECK(gguf_writer_add_tensor(w, "q.weight", PI_TYPE_Q8_0, 1, ne, x) == -1, "4 elements of q8_0");
    CHECK(gguf_writer_write(w, path, "GGUF", &err) == -1 && strstr(err.msg, "q.weight"), "bad tensor: %s", err.msg);
    gguf_writer_free(&w);

    w = gguf_writer_new();
    gguf_writer_add_tensor_fn(w, "fn.weight", PI_TYPE_F32, 1, ne, fill_fail, NULL);
    CHECK(gguf_writer_write(w, path, "GGUF", &err) == -1 && strstr(err.msg, "fn.weight") &&
          strstr(err.msg, "source tensor unreadable"), "fill failure: %s", err.msg);
    CHECK(gguf_writer_write(w, path, "XXXX", &err) == -1, "bad magic");
    gguf_writer_free(&w);
    CHECK(access(path, F_OK) != 0, "a failed write leaves no file");

    /* No temp file left behind either. */
    char dir[512];
    test_tmp("", dir, sizeof dir);
    DIR *d = opendir(dir);
    CHECK(d != NULL, "tmp dir");
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        CHECK(strncmp(e->d_name, "gguf_werr.gguf.tmp", 18) != 0, "temp file left: %s", e->d_name);
    closedir(d);

    w = gguf_writer_new();
    gguf_writer_add_u32(w, "general.alignment", 48);
    CHECK(gguf_writer_write(w, path, "GGUF", &err) == -1 && strstr(err.msg, "alignment"), "bad alignment");
    gguf_writer_free(&w);

    /* A caller's alignment is honoured. */
    w = gguf_writer_new();
    gguf_writer_add_u32(w, "general.alignment", 64);
    gguf_writer_add_tensor(w, "a", PI_TYPE_F32, 1, ne, x);
    gguf_writer_add_tensor(w, "b", PI_TYPE_F32, 1, ne, x);
    CHECK(gguf_writer_write(w, path, "GGUF", &err) == 0, "write: %s", err.msg);
    gguf_writer_free(&w);
    gguf_file *f = gguf_open(path, &err);
    CHECK(f && gguf_alignment(f) == 64, "alignment 64");
    const gguf_tensor *b = gguf_find_tensor(f, "b");
    CHECK(b && b->offset == 64 && ((const uint8_t *)b->data - (const uint8_t *)gguf_base(f)) % 64 == 0, "64-aligned");
    gguf_close(&f);
    unlink(path);
}

static void test_llama_vocab(void)
{
    char path[512];
    const char *dir = getenv("PI_SHARED");
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-llama-spm.gguf", dir ? dir : "../shared");
    if (access(path, R_OK) != 0) {
        printf("llama vocab: %s absent, part skipped\n", path);
        return;
    }
    pi_error err = {{0}};
    gguf_file *f = gguf_open(path, &err);
    CHECK(f != NULL, "open llama.cpp file: %s", err.msg);
    char model[32];
    CHECK(gguf_get_cstr(f, "tokenizer.ggml.model", model, sizeof model, &err) == 0, "%s", err.msg);
    CHECK(strcmp(model, "llama") == 0, "tokenizer model %s", model);
    const gguf_kv *tok = gguf_find_kv(f, "tokenizer.ggml.tokens");
    CHECK(tok && tok->type == GGUF_TYPE_ARRAY && tok->v.arr.type == GGUF_TYPE_STRING, "tokens array");
    CHECK(tok->v.arr.n == 32000, "tokens %" PRIu64, tok->v.arr.n);
    CHECK(gguf_str_eq(tok->v.arr.strs[1], "<s>") && gguf_str_eq(tok->v.arr.strs[2], "</s>"), "bos/eos text");
    const gguf_kv *scores = gguf_find_kv(f, "tokenizer.ggml.scores");
    CHECK(scores && scores->v.arr.type == GGUF_TYPE_FLOAT32 && scores->v.arr.n == 32000, "scores");
    printf("llama vocab: version %u, %zu keys, %zu tensors, %" PRIu64 " tokens\n", gguf_version(f), gguf_n_kv(f),
           gguf_n_tensors(f), tok->v.arr.n);
    gguf_close(&f);
}

/* ---- every named reader error ---- */

static void test_reader_errors(void)
{
    uint64_t ne8[1] = {8};
    buf b = {0};

#define RESET() (b.n = 0)
    RESET();
    FAILS(&b, "empty", "too short");
    RESET();
    b_header(&b, "GGML", 3, 0, 0);
    FAILS(&b, "bad magic", "bad magic");
    RESET();
    b_header(&b, "GGUF", 1, 0, 0);
    FAILS(&b, "v1", "version 1");
    RESET();
    b_header(&b, "GGUF", 4, 0, 0);
    FAILS(&b, "v4", "version 4");
    RESET();
    b_header(&b, "GGUF", 0x03000000u, 0, 0);
    FAILS(&b, "big-endian", "big-endian");
    RESET();
    b_header(&b, "GGUF", 3, 1ull << 40, 0);
    FAILS(&b, "huge tensor count", "header claims", "tensors");
    RESET();
    b_header(&b, "GGUF", 3, 0, UINT64_MAX);
    FAILS(&b, "huge kv count", "header claims", "keys");

    /* Tensors. */
    RESET();
    one_tensor_file(&b, 1, ne8, PI_TYPE_F32, 0, 31);
    FAILS(&b, "tensor past end", "blk.0.ffn_up.weight", "runs past the end");
    RESET();
    one_tensor_file(&b, 1, ne8, PI_TYPE_F32, 32, 32);
    FAILS(&b, "offset past end", "blk.0.ffn_up.weight", "runs past the end");
    RESET();
    one_tensor_file(&b, 1, ne8, PI_TYPE_F32, UINT64_MAX - 31, 32);
    FAILS(&b, "offset+size overflow", "blk.0.ffn_up.weight", "runs past the end");
    RESET();
    one_tensor_file(&b, 1, ne8, 99, 0, 32);
    FAILS(&b, "unknown type", "blk.0.ffn_up.weight", "unknown type 99");
    RESET();
    one_tensor_file(&b, 1, ne8, 0xffffffffu, 0, 32);
    FAILS(&b, "type -1", "blk.0.ffn_up.weight", "unknown type");
    RESET();
    one_tensor_file(&b, 1, (uint64_t[]){256}, 10, 0, 84);
    FAILS(&b, "q2_K", "tensor blk.0.ffn_up.weight has type q2_K, which pi does not support",
          "supported: f32, f16, bf16, q8_0, q4_0, q4_K, q5_K, q6_K");
    RESET();
    one_tensor_file(&b, 1, (uint64_t[]){300}, PI_TYPE_Q5_K, 0, 352);
    FAILS(&b, "partial super-block", "blk.0.ffn_up.weight", "not a multiple of q5_K's block of 256");
    /* K-quant tensors load with 144, 176 and 210 bytes per 256 elements. */
    static const struct { uint32_t type; size_t bytes; } kq[] = {{12, 144}, {13, 176}, {14, 210}};
    for (size_t i = 0; i < 3; i++) {
        RESET();
        one_tensor_file(&b, 2, (uint64_t[]){512, 3}, kq[i].type, 0, 6 * kq[i].bytes);
        pi_error e = {{0}};
        gguf_file *kf = gguf_open_memory(b.p, b.n, "kq.gguf", &e);
        CHECK(kf, "k-quant type %u: %s", kq[i].type, e.msg);
        const gguf_tensor *kt = gguf_find_tensor(kf, "blk.0.ffn_up.weight");
        CHECK(kt && kt->type == (pi_type)kq[i].type && kt->size == 6 * kq[i].bytes, "k-quant type %u size",
              kq[i].type);
        gguf_close(&kf);
        RESET();
        one_tensor_file(&b, 2, (uint64_t[]){512, 3}, kq[i].type, 0, 6 * kq[i].bytes - 1);
        FAILS(&b, "k-quant short", "blk.0.ffn_up.weight", "runs past the end");
    }
    RESET();
    one_tensor_file(&b, 4, (uint64_t[]){1ull << 20, 1ull << 20, 1ull << 20, 1ull << 20}, PI_TYPE_F32, 0, 32);
    FAILS(&b, "ne product overflows", "blk.0.ffn_up.weight", "overflows");
    RESET();
    one_tensor_file(&b, 2, (uint64_t[]){1ull << 62, 1}, PI_TYPE_F32, 0, 32);
    FAILS(&b, "bytes overflow size_t", "blk.0.ffn_up.weight", "size in bytes overflows");
    RESET();
    one_tensor_file(&b, 1, (uint64_t[]){1ull << 63}, PI_TYPE_F32, 0, 32);
    FAILS(&b, "ne beyond int64", "blk.0.ffn_up.weight", "dimension 0");
    RESET();
    one_tensor_file(&b, 2, (uint64_t[]){8, 0}, PI_TYPE_F32, 0, 32);
    FAILS(&b, "ne 0", "blk.0.ffn_up.weight", "dimension 1 = 0");
    RESET();
    one_tensor_file(&b, 1, (uint64_t[]){33}, PI_TYPE_Q8_0, 0, 64);
    FAILS(&b, "partial block", "blk.0.ffn_up.weight", "not a multiple of q8_0's block of 32");
    RESET();
    one_tensor_file(&b, 1, ne8, PI_TYPE_F32, 4, 64);
    FAILS(&b, "misaligned offset", "blk.0.ffn_up.weight", "offset 4 is not a multiple of the alignment 32");
    RESET();
    one_tensor_file(&b, 0, ne8, PI_TYPE_F32, 0, 32);
    FAILS(&b, "n_dims 0", "blk.0.ffn_up.weight", "0 dimensions");
    RESET();
    one_tensor_file(&b, 5, (uint64_t[]){8, 1, 1, 1, 1}, PI_TYPE_F32, 0, 32);
    FAILS(&b, "n_dims 5", "blk.0.ffn_up.weight", "5 dimensions");
    RESET();
    b_header(&b, "GGUF", 3, 2, 0);
    b_tensor(&b, "output.weight", 1, ne8, PI_TYPE_F32, 0);
    b_tensor(&b, "output.weight", 1, ne8, PI_TYPE_F32, 32);
    b_pad(&b, 32);
    for (int i = 0; i < 64; i++)
        b_le(&b, 0, 1);
    FAILS(&b, "duplicate tensor", "tensor output.weight appears more than once");
    RESET();
    b_header(&b, "GGUF", 3, 1, 0);
    b_tensor(&b, "output.weight", 1, ne8, PI_TYPE_F32, 0);
    /* No padding: the data section cannot start. */
    FAILS(&b, "no data section", "data section");
    RESET();
    b_header(&b, "GGUF", 3, 1, 0);
    b_le(&b, 1ull << 62, 8);
    for (int i = 0; i < 40; i++)
        b_le(&b, 0, 1);
    FAILS(&b, "huge tensor name", "tensor #0's name", "has length 4611686018427387904");
    RESET();
    b_header(&b, "GGUF", 3, 1, 0);
    b_tensor(&b, "", 1, ne8, PI_TYPE_F32, 0);
    FAILS(&b, "empty tensor name", "tensor #0 has an empty name");

    /* Keys. */
    RESET();
    b_header(&b, "GGUF", 3, 0, 1);
    b_le(&b, 1ull << 62, 8);
    for (int i = 0; i < 16; i++)
        b_le(&b, 0, 1);
    FAILS(&b, "huge key length", "key #0's name", "has length");
    RESET();
    b_header(&b, "GGUF", 3, 0, 1);
    b_str(&b, "general.name");
    b_le(&b, GGUF_TYPE_STRING, 4);
    b_le(&b, UINT64_MAX, 8);
    FAILS(&b, "huge string value", "key 'general.name'", "has length 18446744073709551615");
    RESET();
    b_header(&b, "GGUF", 3, 0, 1);
    b_str(&b, "a.u32");
    b_le(&b, GGUF_TYPE_ARRAY, 4);
    b_le(&b, GGUF_TYPE_UINT32, 4);
    b_le(&b, 1ull << 62, 8);
    b_le(&b, 0, 8);
    FAILS(&b, "huge array", "key 'a.u32'", "4611686018427387904 elements of uint32");
    RESET();
    b_header(&b, "GGUF", 3, 0, 1);
    b_str(&b, "tokenizer.ggml.tokens");
    b_le(&b, GGUF_TYPE_ARRAY, 4);
    b_le(&b, GGUF_TYPE_STRING, 4);
    b_le(&b, UINT64_MAX, 8);
    b_le(&b, 0, 8);
    FAILS(&b, "huge string array", "key 'tokenizer.ggml.tokens'", "strings, more than");
    RESET();
    b_header(&b, "GGUF", 3, 0, 1);
    b_str(&b, "tokenizer.ggml.tokens");
    b_le(&b, GGUF_TYPE_ARRAY, 4);
    b_le(&b, GGUF_TYPE_STRING, 4);
    b_le(&b, 2, 8);
    b_str(&b, "ok");
    b_le(&b, 1000, 8);
    b_put(&b, "xx", 2);
    FAILS(&b, "bad string element", "key 'tokenizer.ggml.tokens' element 1 has length 1000");
    RESET();
    b_header(&b, "GGUF", 3, 0, 1);
    b_str(&b, "nested");
    b_le(&b, GGUF_TYPE_ARRAY, 4);
    b_le(&b, GGUF_TYPE_ARRAY, 4);
    b_le(&b, 1, 8);
    b_le(&b, GGUF_TYPE_UINT8, 4);
    b_le(&b, 1, 8);
    b_le(&b, 0, 1);
    FAILS(&b, "nested array", "key 'nested'", "nested array");
    RESET();
    b_header(&b, "GGUF", 3, 0, 1);
    b_str(&b, "weird");
    b_le(&b, GGUF_TYPE_ARRAY, 4);
    b_le(&b, 13, 4);
    b_le(&b, 0, 8);
    FAILS(&b, "unknown array element type", "key 'weird'", "unknown element type 13");
    RESET();
    b_header(&b, "GGUF", 3, 0, 1);
    b_str(&b, "weird");
    b_le(&b, 13, 4);
    b_le(&b, 0, 8);
    FAILS(&b, "unknown value type", "key 'weird'", "unknown value type 13");
    RESET();
    b_header(&b, "GGUF", 3, 0, 2);
    b_kv_u32(&b, "llama.block_count", 1);
    b_kv_u32(&b, "llama.block_count", 2);
    FAILS(&b, "duplicate key", "key 'llama.block_count' appears more than once");
    RESET();
    b_header(&b, "GGUF", 3, 0, 1);
    b_str(&b, "flag");
    b_le(&b, GGUF_TYPE_BOOL, 4);
    b_le(&b, 2, 1);
    FAILS(&b, "bool 2", "key 'flag'", "must be 0 or 1");
    RESET();
    b_header(&b, "GGUF", 3, 0, 1);
    b_str(&b, "flags");
    b_le(&b, GGUF_TYPE_ARRAY, 4);
    b_le(&b, GGUF_TYPE_BOOL, 4);
    b_le(&b, 2, 8);
    b_le(&b, 0x0501, 2);
    FAILS(&b, "bool array 5", "key 'flags' element 1", "must be 0 or 1");
    RESET();
    b_header(&b, "GGUF", 3, 0, 1);
    b_le(&b, 0, 8);
    b_le(&b, GGUF_TYPE_UINT8, 4);
    b_le(&b, 0, 1);
    FAILS(&b, "empty key", "key #0 has a name of length 0");
    RESET();
    b_header(&b, "GGUF", 3, 0, 1);
    b_kv_u32(&b, "general.alignment", 48);
    FAILS(&b, "alignment 48", "general.alignment", "power of two");
    RESET();
    b_header(&b, "GGUF", 3, 0, 1);
    b_kv_u32(&b, "general.alignment", 0);
    FAILS(&b, "alignment 0", "general.alignment", "power of two");
    RESET();
    b_header(&b, "GGUF", 3, 0, 1);
    b_str(&b, "general.alignment");
    b_le(&b, GGUF_TYPE_UINT64, 4);
    b_le(&b, 32, 8);
    FAILS(&b, "alignment u64", "general.alignment", "must be uint32");

    /* A hand-built v2 file with alignment 64 and a PowerInfer magic is fine. */
    RESET();
    b_header(&b, "PWRI", 2, 1, 1);
    b_kv_u32(&b, "general.alignment", 64);
    b_tensor(&b, "blk.0.fc1.weight", 1, ne8, PI_TYPE_F32, 0);
    b_pad(&b, 64);
    for (int i = 0; i < 32; i++)
        b_le(&b, 0, 1);
    pi_error err = {{0}};
    gguf_file *f = gguf_open_memory(b.p, b.n, "ok.gguf", &err);
    CHECK(f != NULL, "v2 PWRI: %s", err.msg);
    CHECK(gguf_version(f) == 2 && gguf_is_powerinfer(f) && gguf_alignment(f) == 64, "v2 PWRI fields");
    CHECK(((const uint8_t *)gguf_find_tensor(f, "blk.0.fc1.weight")->data - b.p) == 128, "data at 128");
    gguf_close(&f);

    pi_error e3 = {{0}};
    CHECK(gguf_open("/nonexistent/x.gguf", &e3) == NULL && strstr(e3.msg, "/nonexistent/x.gguf"), "missing file");
    free(b.p);
}

/* Writes the fuzz seeds when asked: valid and broken files, all small. */
static void write_seeds(const char *dir)
{
    uint8_t *data[N_TENSORS];
    fill_ctx fc = {0};
    gguf_writer *w = full_writer(data, &fc);
    char path[1024];
    pi_error err = {{0}};
    snprintf(path, sizeof path, "%s/valid_all_types.gguf", dir);
    CHECK(gguf_writer_write(w, path, "GGUF", &err) == 0, "%s", err.msg);
    gguf_writer_free(&w);
    for (size_t i = 0; i < N_TENSORS; i++)
        free(data[i]);
    buf b = {0};
    one_tensor_file(&b, 1, (uint64_t[]){8}, PI_TYPE_F32, 0, 32);
    snprintf(path, sizeof path, "%s/valid_one_tensor.gguf", dir);
    FILE *fp = fopen(path, "wb");
    CHECK(fp && fwrite(b.p, 1, b.n, fp) == b.n && fclose(fp) == 0, "seed");
    b.n = 0;
    one_tensor_file(&b, 1, (uint64_t[]){256}, 10, 0, 84);
    snprintf(path, sizeof path, "%s/invalid_q2_K.gguf", dir);
    fp = fopen(path, "wb");
    CHECK(fp && fwrite(b.p, 1, b.n, fp) == b.n && fclose(fp) == 0, "seed");
    b.n = 0;
    b_header(&b, "GGUF", 3, 0, 1);
    b_str(&b, "tokenizer.ggml.tokens");
    b_le(&b, GGUF_TYPE_ARRAY, 4);
    b_le(&b, GGUF_TYPE_STRING, 4);
    b_le(&b, 3, 8);
    b_str(&b, "<unk>");
    b_str(&b, "<s>");
    b_le(&b, 1000, 8);
    snprintf(path, sizeof path, "%s/invalid_string_array.gguf", dir);
    fp = fopen(path, "wb");
    CHECK(fp && fwrite(b.p, 1, b.n, fp) == b.n && fclose(fp) == 0, "seed");
    free(b.p);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0) {
        write_seeds(argv[2]);
        return 0;
    }
    test_round_trip();
    test_typed_getters();
    test_writer_errors();
    test_reader_errors();
    test_llama_vocab();
    printf("test_gguf: ok\n");
    return 0;
}
