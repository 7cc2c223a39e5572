/* GGUF v2/v3 reader over mmap (docs/formats.md). gguf_open validates the
 * whole file up front (magic, version, counts, every string and array
 * length, every tensor's type, dims, offset, size and alignment inside the
 * file, integer overflow), so later accessors cannot read out of bounds.
 * PowerInfer's variant (magic "PWRI") is read the same way. */
#ifndef PI_GGUF_H
#define PI_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pi_error.h"
#include "quant.h"

typedef enum gguf_type {
    GGUF_TYPE_UINT8 = 0, GGUF_TYPE_INT8 = 1, GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3, GGUF_TYPE_UINT32 = 4, GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6, GGUF_TYPE_BOOL = 7, GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9, GGUF_TYPE_UINT64 = 10, GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
} gguf_type;

/* A string inside the mapped file: not NUL-terminated. */
typedef struct gguf_str {
    uint64_t len;
    const char *ptr;
} gguf_str;

typedef struct gguf_kv {
    gguf_str key;
    gguf_type type;
    union {
        uint64_t u64;   /* every unsigned integer type, widened */
        int64_t i64;    /* every signed integer type, widened */
        double f64;     /* FLOAT32 and FLOAT64 */
        bool b;
        gguf_str str;
        struct {
            gguf_type type;         /* element type (never ARRAY: nested arrays are rejected) */
            uint64_t n;
            const void *data;       /* numeric elements, packed little-endian, unaligned */
            const gguf_str *strs;   /* STRING elements, indexed by the reader */
        } arr;
    } v;
} gguf_kv;

#define GGUF_MAX_DIMS 4

typedef struct gguf_tensor {
    gguf_str name;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the contiguous (row) dimension; unused dims are 1 */
    pi_type type;
    uint64_t offset;            /* relative to the data section */
    size_t size;                /* bytes */
    const void *data;           /* inside the mapping */
} gguf_tensor;

typedef struct gguf_file gguf_file;

/* Maps and validates path. Returns NULL and fills err naming the file and
 * the offending key or tensor. The caller owns the result: gguf_close. */
gguf_file *gguf_open(const char *path, pi_error *err);
/* Same over a caller-owned buffer that must outlive the result (fuzzing, tests). */
gguf_file *gguf_open_memory(const void *data, size_t size, const char *name, pi_error *err);
/* Unmaps and frees; nulls *f. */
void gguf_close(gguf_file **f);

const char *gguf_path(const gguf_file *f);
uint32_t gguf_version(const gguf_file *f);
bool gguf_is_powerinfer(const gguf_file *f);   /* magic was "PWRI" */
size_t gguf_alignment(const gguf_file *f);
const void *gguf_base(const gguf_file *f);     /* start of the mapping */
size_t gguf_file_size(const gguf_file *f);

size_t gguf_n_kv(const gguf_file *f);
const gguf_kv *gguf_kv_at(const gguf_file *f, size_t i);
const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key);

/* Typed getters: 0 on success; -1 with err naming the key when it is
 * missing or not convertible (integers must fit; floats accept any number). */
int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, pi_error *err);
int gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out, pi_error *err);
int gguf_get_f32(const gguf_file *f, const char *key, float *out, pi_error *err);
int gguf_get_bool(const gguf_file *f, const char *key, bool *out, pi_error *err);
int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, pi_error *err);
/* Copies a string value into buf as a C string; -1 if missing or too long. */
int gguf_get_cstr(const gguf_file *f, const char *key, char *buf, size_t cap, pi_error *err);
/* Numeric array element i as double/int64 (any numeric element type). */
double gguf_arr_f64(const gguf_kv *kv, uint64_t i);
int64_t gguf_arr_i64(const gguf_kv *kv, uint64_t i);

size_t gguf_n_tensors(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, size_t i);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

/* 1 if s equals the C string c. */
bool gguf_str_eq(gguf_str s, const char *c);
const char *gguf_type_name(gguf_type t);

/* ---- writer (v3, little-endian, general.alignment honoured) ---- */

typedef struct gguf_writer gguf_writer;

/* Produces the bytes of a tensor into dst (size bytes); 0 or -1 with err. */
typedef int (*gguf_fill_fn)(void *ctx, void *dst, size_t size, pi_error *err);

gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer **w);
/* Keys and strings are copied. Adding a key twice is an error at write time. */
int gguf_writer_add_u32(gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_add_i32(gguf_writer *w, const char *key, int32_t v);
int gguf_writer_add_u64(gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_add_f32(gguf_writer *w, const char *key, float v);
int gguf_writer_add_bool(gguf_writer *w, const char *key, bool v);
int gguf_writer_add_str(gguf_writer *w, const char *key, const char *v);
/* Numeric array of n elements of elem_type, copied. */
int gguf_writer_add_arr(gguf_writer *w, const char *key, gguf_type elem_type, const void *data, uint64_t n);
/* Array of n strings with explicit lengths (strings may hold any bytes), copied. */
int gguf_writer_add_arr_str(gguf_writer *w, const char *key, const char *const *strs, const size_t *lens, uint64_t n);
/* Copies a key read from a GGUF file (any value type, arrays included):
 * carries metadata over from one file to another. */
int gguf_writer_add_kv(gguf_writer *w, const gguf_kv *kv);
/* Tensor whose bytes are referenced, not copied: data must live until gguf_writer_write. */
int gguf_writer_add_tensor(gguf_writer *w, const char *name, pi_type type, uint32_t n_dims, const uint64_t *ne, const void *data);
/* Tensor whose bytes are produced at write time (models larger than RAM). */
int gguf_writer_add_tensor_fn(gguf_writer *w, const char *name, pi_type type, uint32_t n_dims, const uint64_t *ne, gguf_fill_fn fill, void *ctx);
/* Writes path atomically (temp file + rename). magic is "GGUF" or "PWRI". */
int gguf_writer_write(gguf_writer *w, const char *path, const char *magic, pi_error *err);

#endif
