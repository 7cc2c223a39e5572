/* Import of a llama2.c checkpoint (legacy "version 0" export: 7 int32
 * header then fp32 weights) and its tokenizer file into a llama GGUF
 * (docs/llama2c-import.md). */
#ifndef PI_LLAMA2C_H
#define PI_LLAMA2C_H

#include <stdint.h>

#include "model.h"
#include "pi_error.h"
#include "quant.h"

/* What the import found and did. */
typedef struct llama2c_info {
    uint32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    int shared_classifier;  /* 1: the output layer is the token embedding */
    uint32_t n_fallback;    /* 2-D tensors written as f16 because their rows do not fill
                               whole blocks of the requested type */
} llama2c_info;

/* Reads checkpoint and tokenizer, validates both (sizes exactly against the
 * header), and writes out_path atomically. type applies to the 2-D weights
 * (norms stay f32); act is recorded as pi.ffn_activation. info may be NULL. */
int llama2c_import(const char *checkpoint, const char *tokenizer_path, const char *out_path,
                   pi_type type, pi_act act, llama2c_info *info, pi_error *err);

#endif
