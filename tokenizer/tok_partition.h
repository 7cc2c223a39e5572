/* A text cut into runs of plain text and whole special tokens, the first
 * pass of both tokenizers (tok_spm.c, tok_bpe.c), in llama.cpp's order: the
 * longest token first, its leftmost occurrences first. Plain encoding cuts
 * only user-defined tokens; encoding with special parsing (chat prompts)
 * also cuts control and unknown tokens, so "<|im_start|>" is one id. */
#ifndef PI_TOK_PARTITION_H
#define PI_TOK_PARTITION_H

#include <stddef.h>
#include <stdint.h>

typedef struct tok_frag {
    size_t off, len;    /* bytes of the text */
    int32_t tok;        /* >= 0: that user-defined token; -1: plain text */
} tok_frag;

typedef struct tok_frags {
    tok_frag *a;
    size_t n, cap;
} tok_frags;

/* The tokens to cut out: user[0..n_user) (longest first); piece id is
 * arena + off[id], len[id] bytes. */
typedef struct tok_pieces {
    const char *arena;
    const size_t *off;
    const uint32_t *len;
    const int32_t *user;
    uint32_t n_user;
} tok_pieces;

/* GGUF tokenizer.ggml.token_type values, as bits for tok_partition_list. */
#define TOK_TYPE_BIT(t) (1u << (t))
enum { TOK_TYPE_UNKNOWN = 2, TOK_TYPE_CONTROL = 3, TOK_TYPE_USER = 4 };

/* The non-empty tokens whose type[i] has its bit in mask, longest first
 * (lower id first on ties), into *out (malloc'd, NULL when none; caller
 * frees). 0, or -1 when out of memory. */
int tok_partition_list(const uint32_t *len, const uint8_t *type, uint32_t n, unsigned mask,
                       int32_t **out, uint32_t *n_out);

/* Appends text[0..len)'s runs to v (empty v: the caller frees v->a either
 * way). 0, or -1 when out of memory. */
int tok_partition(const tok_pieces *p, const char *text, size_t len, tok_frags *v);

#endif
