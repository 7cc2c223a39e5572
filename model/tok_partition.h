/* A text cut into runs of plain text and whole user-defined tokens, the
 * first pass of both tokenizers (tok_spm.c, tok_bpe.c), in llama.cpp's
 * order: the longest token first, its leftmost occurrences first. */
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

/* Appends text[0..len)'s runs to v (empty v: the caller frees v->a either
 * way). 0, or -1 when out of memory. */
int tok_partition(const tok_pieces *p, const char *text, size_t len, tok_frags *v);

#endif
