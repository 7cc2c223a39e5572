/* Tokenizer interface: one struct, an implementation per GGUF
 * tokenizer.ggml.model ("llama" = SentencePiece-style today; "gpt2" later). */
#ifndef PI_TOKENIZER_H
#define PI_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "pi_error.h"

typedef struct tokenizer tokenizer;

/* Builds from the file's tokenizer.ggml.* metadata (tokens, scores,
 * token_type, bos/eos/unk ids). Copies what it needs: f may be closed after.
 * Caller owns the result: tokenizer_free. */
tokenizer *tokenizer_from_gguf(const gguf_file *f, pi_error *err);
void tokenizer_free(tokenizer **t);

uint32_t tokenizer_n_vocab(const tokenizer *t);
int32_t tokenizer_bos(const tokenizer *t);
int32_t tokenizer_eos(const tokenizer *t);

/* Encodes len bytes of text (any bytes; invalid UTF-8 falls back to byte
 * tokens). add_bos prepends BOS when the vocabulary asks for it
 * (tokenizer.ggml.add_bos_token, default true). Control tokens written in
 * the text stay text. *ids is malloc'd, caller frees. */
int tokenizer_encode(const tokenizer *t, const char *text, size_t len, int add_bos,
                     int32_t **ids, size_t *n_ids, pi_error *err);

/* As tokenizer_encode, but control, unknown and user-defined tokens written
 * in the text (tokenizer.ggml.token_type 3, 2, 4) become their ids, as
 * llama.cpp's parse_special: for prompts rendered from a chat template,
 * whose markers ("<|im_start|>", "<s>", "[INST]"...) are such tokens. Only
 * trusted text: a user who types "<|im_end|>" in a message ends its turn. */
int tokenizer_encode_special(const tokenizer *t, const char *text, size_t len, int add_bos,
                             int32_t **ids, size_t *n_ids, pi_error *err);

/* The bytes of token tok as text, given the previous token (prev < 0 for
 * none): "▁" becomes a space, except right after BOS where a leading space is
 * dropped (llama2.c's rule); <0xXX> byte tokens become the raw byte; control
 * tokens decode to nothing. Writes at most cap bytes to buf and returns the
 * piece's full length (like snprintf: more than cap means it was cut; a buf
 * of tokenizer_max_piece_len bytes always suffices), or -1 when tok is out
 * of range. */
int tokenizer_decode_piece(const tokenizer *t, int32_t prev, int32_t tok, char *buf, size_t cap);

/* The longest vocabulary entry in bytes (decoded pieces are never longer). */
size_t tokenizer_max_piece_len(const tokenizer *t);

/* The vocabulary entry of tok as stored (for `pictl tokenize --pieces`), or NULL. */
const char *tokenizer_piece(const tokenizer *t, int32_t tok);

#endif
