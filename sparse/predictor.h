/* The per-layer activation predictor (PowerInfer's MLP, docs/formats.md):
 * hidden = relu(fc1 . x), logit_j = fc2_j . hidden, neuron j predicted
 * active when logit_j > the model's sparse_threshold. x is what the model's
 * pred_input names: the FFN input xn (after ffn_norm) for pi's predictors,
 * the residual h before ffn_norm for PowerInfer's own files (the layer's
 * input for its falcon files). */
#ifndef PI_PREDICTOR_H
#define PI_PREDICTOR_H

#include <stdint.h>

#include "model.h"

/* The predictor's input for one entry of m: x_in (the layer's input,
 * before attention), h (the residual stream after attention, before
 * ffn_norm) or xn (the FFN input), per m->pred_input. Every caller picks
 * through here, so no path feeds the wrong vector. */
static inline const float *predictor_input(const pi_model *m, const float *x_in, const float *h, const float *xn)
{
    return m->pred_input == PI_PRED_INPUT_RESIDUAL ? h : m->pred_input == PI_PRED_INPUT_LAYER ? x_in : xn;
}

/* Rows of fc1 (the hidden width R); 0 when the layer has no predictor. */
uint32_t predictor_hidden(const pi_layer *l);

/* Writes the predicted-active neurons of layer l for input x (dim floats,
 * chosen by predictor_input) to active in ascending order and returns their
 * count. hidden is scratch of predictor_hidden(l) floats. The layer must
 * have a predictor. */
uint32_t predictor_active(const pi_layer *l, float threshold, const float *x, float *hidden, int32_t *active);

/* The neurons that really fire for the FFN input xn (h_j != 0: a ReLU gate
 * > 0, and for relu_both also up > 0), ascending, for measuring a
 * predictor. Always xn, whatever the predictor reads: the FFN reads xn. */
uint32_t predictor_true_active(const pi_layer *l, pi_act act, const float *xn, int32_t *active);

#endif
