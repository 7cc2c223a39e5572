/* Reference dense forward pass for every architecture pi reads (llama,
 * qwen2, bamboo, opt, falcon: model/arch.h), plain C with fp32
 * accumulation: the oracle for every later test. One sequence, one token at
 * a time, KV cache held in the state. */
#ifndef PI_FORWARD_H
#define PI_FORWARD_H

#include <stdint.h>

#include "model.h"
#include "pi_error.h"

typedef struct forward_state forward_state;

/* Allocates the KV cache for n_ctx positions (0 = the model's n_ctx) and
 * every scratch buffer; nothing is allocated per token afterwards. The model
 * must outlive the state. */
forward_state *forward_new(const pi_model *m, uint32_t n_ctx, pi_error *err);
void forward_free(forward_state **s);

/* Runs token at position pos (0 <= pos < n_ctx; positions before pos must
 * have been run) and returns n_vocab logits owned by the state, valid until
 * the next call; NULL if pos is out of range or the token is out of range. */
const float *forward_token(forward_state *s, int32_t token, uint32_t pos);

/* Sees every FFN of forward_token: called once per layer per token, after
 * the FFN ran, with the FFN input x_norm (ffn_norm applied, dim floats) and
 * the activations h (act(gate.x) * up.x, n_ff floats). Both are the state's
 * buffers, valid only during the call; the observer must not keep them. */
typedef void (*forward_ffn_observer)(void *ud, uint32_t layer, const float *x_norm, const float *h, uint32_t n_ff);

/* Installs fn (NULL removes it); ud is passed through. */
void forward_set_ffn_observer(forward_state *s, forward_ffn_observer fn, void *ud);

#endif
