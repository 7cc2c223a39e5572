/* A Hugging Face tokenizer.json (+ tokenizer_config.json) as GGUF's
 * tokenizer.* keys, as llama.cpp's convert_hf_to_gguf.py writes them:
 * BPE with byte_fallback (Llama/Mistral, SentencePiece converted) becomes
 * tokenizer.ggml.model "llama", byte-level BPE (GPT-2, Llama 3) "gpt2". */
#ifndef PI_HF_TOKENIZER_H
#define PI_HF_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "pi_error.h"

typedef struct hf_vocab {
    const char *model;        /* "llama" or "gpt2" */
    const char *pre;          /* gpt2: tokenizer.ggml.pre */
    uint32_t n;
    char **tokens;
    size_t *lens;
    float *scores;            /* llama: minus the rank of the merge that makes the token */
    int32_t *types;           /* llama.cpp's: 1 normal, 2 unknown, 3 control, 4 user, 5 unused, 6 byte */
    char **merges;            /* gpt2: "left right" */
    size_t *merge_lens;
    uint32_t n_merges;
    int64_t bos, eos, unk, pad;   /* -1: none */
    int add_bos, add_space_prefix;
    char *chat_template;      /* NULL: none */
} hf_vocab;

/* Reads dir/tokenizer.json and, when present, dir/tokenizer_config.json
 * (special tokens, add_bos_token, chat_template). n_min is config.json's
 * vocab_size: ids up to it that the tokenizer lacks become [PADi] (unused).
 * cfg_bos/cfg_eos (-1: none) are config.json's ids, used when
 * tokenizer_config.json names none. Fills *v (hf_vocab_free) or returns -1. */
int hf_vocab_load(hf_vocab *v, const char *dir, uint32_t n_min, int64_t cfg_bos, int64_t cfg_eos,
                  pi_error *err);
void hf_vocab_free(hf_vocab *v);
/* Adds the tokenizer.* keys; nonzero if the writer ran out of memory. */
int hf_vocab_add(const hf_vocab *v, gguf_writer *w);

#endif
