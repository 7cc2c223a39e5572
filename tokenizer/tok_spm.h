/* SentencePiece-style tokenizer (GGUF tokenizer.ggml.model = "llama"),
 * byte-exact with llama.cpp's SPM tokenizer: score-driven bigram merges
 * over UTF-8 characters, byte fallback to <0xXX> tokens. See docs/tokenizer.md. */
#ifndef PI_TOK_SPM_H
#define PI_TOK_SPM_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "pi_error.h"

typedef struct tok_spm tok_spm;

/* Builds from f's tokenizer.ggml.* keys, copying what it needs. Caller owns
 * the result: tok_spm_free. */
tok_spm *tok_spm_new(const gguf_file *f, pi_error *err);
void tok_spm_free(tok_spm **s);

uint32_t tok_spm_n_vocab(const tok_spm *s);
int32_t tok_spm_bos(const tok_spm *s);   /* -1 when none */
int32_t tok_spm_eos(const tok_spm *s);   /* -1 when none */
size_t tok_spm_max_piece_len(const tok_spm *s);

/* As tokenizer_encode (parse_special: tokenizer_encode_special) / tokenizer_decode_piece / tokenizer_piece (tokenizer.h). */
int tok_spm_encode(const tok_spm *s, const char *text, size_t len, int add_bos, int parse_special,
                   int32_t **ids, size_t *n_ids, pi_error *err);
int tok_spm_decode_piece(const tok_spm *s, int32_t prev, int32_t tok, char *buf, size_t cap);
const char *tok_spm_piece(const tok_spm *s, int32_t tok);

#endif
