/* The per-layer activation predictor (PowerInfer's MLP, docs/formats.md):
 * hidden = relu(fc1 . x), logit_j = fc2_j . hidden, neuron j predicted
 * active when logit_j > the model's sparse_threshold. x is the FFN input
 * (after ffn_norm), the same vector the FFN itself reads. */
#ifndef PI_PREDICTOR_H
#define PI_PREDICTOR_H

#include <stdint.h>

#include "model.h"

/* Rows of fc1 (the hidden width R); 0 when the layer has no predictor. */
uint32_t predictor_hidden(const pi_layer *l);

/* Writes the predicted-active neurons of layer l for input x (dim floats) to
 * active in ascending order and returns their count. hidden is scratch of
 * predictor_hidden(l) floats. The layer must have a predictor. */
uint32_t predictor_active(const pi_layer *l, float threshold, const float *x, float *hidden, int32_t *active);

/* The neurons that really fire for x (h_j != 0: a ReLU gate > 0, and for
 * relu_both also up > 0), ascending, for measuring a predictor. */
uint32_t predictor_true_active(const pi_layer *l, pi_act act, const float *x, int32_t *active);

#endif
