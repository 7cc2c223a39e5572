/* Import of a Hugging Face LLaMA-family checkpoint folder (config.json,
 * *.safetensors, tokenizer.json) into a GGUF with llama.cpp's tensor and
 * key names (docs/cli.md, "pictl model import-hf"). */
#ifndef PI_HF_IMPORT_H
#define PI_HF_IMPORT_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "pi_error.h"
#include "quant.h"

/* Called once per tensor as it is written: i of n, bytes written so far. */
typedef void (*hf_progress_fn)(void *ctx, size_t i, size_t n, const char *name, uint64_t bytes);

typedef struct hf_import_info {
    const char *arch;          /* "llama" or "bamboo" */
    pi_act act;
    uint32_t dim, n_ff, n_layers, n_heads, n_kv_heads, n_vocab, n_ctx;
    int tied;                  /* no lm_head: the output is the embedding */
    const char *tok_model;     /* "llama" or "gpt2" */
    uint32_t n_fallback;       /* 2-D tensors kept as f16: rows are not whole blocks of the type */
    uint64_t bytes;            /* tensor bytes written */
} hf_import_info;

/* Converts dir to out_path (written atomically). type applies to the 2-D
 * weights; norms stay f32. progress may be NULL. info may be NULL. */
int hf_import(const char *dir, const char *out_path, pi_type type, hf_progress_fn progress, void *progress_ctx,
              hf_import_info *info, pi_error *err);

#endif
