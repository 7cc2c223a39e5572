/* Reader of a Hugging Face checkpoint's *.safetensors files: each is an
 * 8-byte little-endian header length, a JSON header naming every tensor's
 * dtype, shape and [begin, end) byte range, then the raw data. The files
 * are mapped, not read, so checkpoints larger than RAM convert too. */
#ifndef PI_HF_SAFETENSORS_H
#define PI_HF_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "pi_error.h"

typedef enum hf_dtype { HF_F32, HF_F16, HF_BF16 } hf_dtype;

#define HF_MAX_DIMS 4

typedef struct hf_tensor {
    char *name;
    const char *file;     /* the safetensors file it lives in (owned by the set) */
    hf_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[HF_MAX_DIMS];   /* safetensors order: shape[0] is the slowest (rows) */
    const void *data;              /* inside the mapping; size bytes, checked against the shape */
    size_t size;
    int used;                      /* set by the caller: a tensor nobody claimed is reported */
} hf_tensor;

typedef struct hf_st hf_st;

/* Opens the checkpoint in dir: the files model.safetensors.index.json's
 * weight_map names, else every *.safetensors in dir. Returns NULL with err
 * naming the file and what is wrong (truncated, bad header, unsupported
 * dtype). The caller owns the result: hf_st_close. */
hf_st *hf_st_open(const char *dir, pi_error *err);
void hf_st_close(hf_st **s);

size_t hf_st_count(const hf_st *s);
hf_tensor *hf_st_at(hf_st *s, size_t i);
hf_tensor *hf_st_find(hf_st *s, const char *name);

/* n elements from element first on (row-major), converted to f32 into dst;
 * the caller keeps first + n within the shape (t->size is checked against it). */
void hf_tensor_read_f32(const hf_tensor *t, uint64_t first, uint64_t n, float *dst);

#endif
