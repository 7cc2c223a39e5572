/* Pre-tokenizers of the byte-level BPE tokenizer (tok_bpe.c): split text
 * into words as llama.cpp's unicode_regex_split does for each
 * tokenizer.ggml.pre value, with hand-written scanners over the Unicode
 * classes of unicode_table.c instead of regular expressions. See
 * docs/tokenizer.md ("Byte-level BPE"). */
#ifndef PI_BPE_PRE_H
#define PI_BPE_PRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bpe_pre bpe_pre;

/* The pre-tokenizer named by a tokenizer.ggml.pre value, or NULL. */
const bpe_pre *bpe_pre_find(const char *name);

/* Whether a word that is a token is taken whole, without merges (Llama 3). */
bool bpe_pre_ignore_merges(const bpe_pre *p);
/* The default of tokenizer.ggml.add_bos_token for this family. */
bool bpe_pre_add_bos(const bpe_pre *p);

/* Decodes n bytes to code points with llama.cpp's rules: the lead byte gives
 * the length; a lead byte whose continuation bytes are missing is U+FFFD and
 * consumes one byte; overlong forms and surrogates are taken as they come.
 * cp holds n entries; returns the number written. */
size_t bpe_pre_decode(const uint8_t *s, size_t n, uint32_t *cp);

/* Splits the code points cp[0..n) (fl[i] = unicode_flags(cp[i])) into words:
 * writes their lengths in code points to piece and returns how many. piece
 * and scratch hold n entries each. */
size_t bpe_pre_split(const bpe_pre *p, const uint32_t *cp, const uint16_t *fl, size_t n,
                     uint32_t *piece, uint32_t *scratch);

#endif
