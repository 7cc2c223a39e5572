/* The tokenizer interface: picks the implementation named by the file's
 * tokenizer.ggml.model ("llama": tok_spm.c, "gpt2": tok_bpe.c) and forwards
 * every call to it. */
#include "tokenizer.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "tok_bpe.h"
#include "tok_spm.h"

struct tokenizer {
    tok_spm *spm; /* "llama" (exactly one of spm, bpe is set) */
    tok_bpe *bpe; /* "gpt2" */
};

tokenizer *tokenizer_from_gguf(const gguf_file *f, pi_error *err)
{
    char model[64];
    if (!gguf_find_kv(f, "tokenizer.ggml.model")) {
        pi_error_set(err, "%s: key tokenizer.ggml.model is missing: the file has no tokenizer "
                     "(is it a model converted by llama.cpp's convert script?)", gguf_path(f));
        return NULL;
    }
    if (gguf_get_cstr(f, "tokenizer.ggml.model", model, sizeof model, err) != 0)
        return NULL;
    bool spm = strcmp(model, "llama") == 0, bpe = strcmp(model, "gpt2") == 0;
    if (!spm && !bpe) {
        pi_error_set(err, "%s: tokenizer model '%s' is not supported yet (tokenizer.ggml.model; "
                     "supported: 'llama', 'gpt2')", gguf_path(f), model);
        return NULL;
    }
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        pi_error_set(err, "tokenizer: out of memory");
        return NULL;
    }
    if (spm)
        t->spm = tok_spm_new(f, err);
    else
        t->bpe = tok_bpe_new(f, err);
    if (!t->spm && !t->bpe) {
        free(t);
        return NULL;
    }
    return t;
}

void tokenizer_free(tokenizer **t)
{
    if (!t || !*t)
        return;
    tok_spm_free(&(*t)->spm);
    tok_bpe_free(&(*t)->bpe);
    free(*t);
    *t = NULL;
}

uint32_t tokenizer_n_vocab(const tokenizer *t)
{
    return t->bpe ? tok_bpe_n_vocab(t->bpe) : tok_spm_n_vocab(t->spm);
}

int32_t tokenizer_bos(const tokenizer *t)
{
    return t->bpe ? tok_bpe_bos(t->bpe) : tok_spm_bos(t->spm);
}

int32_t tokenizer_eos(const tokenizer *t)
{
    return t->bpe ? tok_bpe_eos(t->bpe) : tok_spm_eos(t->spm);
}

size_t tokenizer_max_piece_len(const tokenizer *t)
{
    return t->bpe ? tok_bpe_max_piece_len(t->bpe) : tok_spm_max_piece_len(t->spm);
}

int tokenizer_encode(const tokenizer *t, const char *text, size_t len, int add_bos,
                     int32_t **ids, size_t *n_ids, pi_error *err)
{
    if (t->bpe)
        return tok_bpe_encode(t->bpe, text, len, add_bos, 0, ids, n_ids, err);
    return tok_spm_encode(t->spm, text, len, add_bos, 0, ids, n_ids, err);
}

int tokenizer_encode_special(const tokenizer *t, const char *text, size_t len, int add_bos,
                             int32_t **ids, size_t *n_ids, pi_error *err)
{
    if (t->bpe)
        return tok_bpe_encode(t->bpe, text, len, add_bos, 1, ids, n_ids, err);
    return tok_spm_encode(t->spm, text, len, add_bos, 1, ids, n_ids, err);
}

int tokenizer_decode_piece(const tokenizer *t, int32_t prev, int32_t tok, char *buf, size_t cap)
{
    if (t->bpe)
        return tok_bpe_decode_piece(t->bpe, prev, tok, buf, cap);
    return tok_spm_decode_piece(t->spm, prev, tok, buf, cap);
}

const char *tokenizer_piece(const tokenizer *t, int32_t tok)
{
    return t->bpe ? tok_bpe_piece(t->bpe, tok) : tok_spm_piece(t->spm, tok);
}
