/* Byte-level BPE tokenizer (GGUF tokenizer.ggml.model = "gpt2"), matching
 * llama.cpp's BPE tokenizer: a pre-tokenizer picked by tokenizer.ggml.pre
 * splits the text into words, each word's bytes are mapped to GPT-2's
 * printable byte alphabet and merged by the ranks of tokenizer.ggml.merges.
 * See docs/tokenizer.md ("Byte-level BPE"). */
#ifndef PI_TOK_BPE_H
#define PI_TOK_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "pi_error.h"

typedef struct tok_bpe tok_bpe;

/* Builds from f's tokenizer.ggml.* keys (tokens, token_type, merges, pre,
 * bos/eos ids), copying what it needs. Fails naming the value when
 * tokenizer.ggml.pre is not a supported pre-tokenizer. Caller owns the
 * result: tok_bpe_free. */
tok_bpe *tok_bpe_new(const gguf_file *f, pi_error *err);
void tok_bpe_free(tok_bpe **b);

uint32_t tok_bpe_n_vocab(const tok_bpe *b);
int32_t tok_bpe_bos(const tok_bpe *b);   /* -1 when none */
int32_t tok_bpe_eos(const tok_bpe *b);   /* -1 when none */
size_t tok_bpe_max_piece_len(const tok_bpe *b);

/* As tokenizer_encode (parse_special: tokenizer_encode_special) / tokenizer_decode_piece / tokenizer_piece (tokenizer.h). */
int tok_bpe_encode(const tok_bpe *b, const char *text, size_t len, int add_bos, int parse_special,
                   int32_t **ids, size_t *n_ids, pi_error *err);
int tok_bpe_decode_piece(const tok_bpe *b, int32_t prev, int32_t tok, char *buf, size_t cap);
const char *tok_bpe_piece(const tok_bpe *b, int32_t tok);

#endif
