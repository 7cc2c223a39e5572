/* The vocabulary of synthetic models: a small valid SentencePiece (SPM)
 * vocabulary built deterministically, so `pid run` can encode and decode. */
#ifndef PI_SYNTH_VOCAB_H
#define PI_SYNTH_VOCAB_H

#include <stdint.h>

#include "gguf.h"
#include "pi_error.h"

/* Adds the tokenizer.ggml.* keys for n_vocab tokens (at least 300): <unk>,
 * <s>, </s>, the 256 byte tokens <0x00>..<0xFF>, then pieces made of
 * letters, digits, punctuation and "▁" joined pairwise, with decreasing
 * scores so that shorter, earlier pieces merge first. The same n_vocab
 * always gives the same vocabulary. 0 or -1 with err. */
int synth_vocab_add(gguf_writer *w, uint32_t n_vocab, pi_error *err);

#endif
