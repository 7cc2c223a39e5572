/* How the FFN of every layer is computed (`--ffn`, shared by pid and the
 * workers):
 *   dense      every neuron (the oracle);
 *   exact      the true active set from the real pre-activations: a neuron
 *              whose ReLU gate is <= 0 contributes exactly 0, so its up and
 *              down rows are skipped (equal to dense for ReLU models; the same
 *              as dense for SiLU models, which have no exact zeros);
 *   predicted  the neurons the per-layer predictor names. */
#ifndef PI_FFN_MODE_H
#define PI_FFN_MODE_H

typedef enum pi_ffn_mode {
    PI_FFN_DENSE = 0,
    PI_FFN_EXACT = 1,
    PI_FFN_PREDICTED = 2,
} pi_ffn_mode;

/* 0 and *out set, or -1 when s is not dense, exact or predicted. */
int pi_ffn_mode_parse(const char *s, pi_ffn_mode *out);
const char *pi_ffn_mode_name(pi_ffn_mode m);

#endif
