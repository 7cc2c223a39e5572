#include "predictor.h"

#include "ops.h"

uint32_t predictor_hidden(const pi_layer *l)
{
    return l->pred_fc1.data ? (uint32_t)l->pred_fc1.rows : 0;
}

uint32_t predictor_active(const pi_layer *l, float threshold, const float *x, float *hidden, int32_t *active)
{
    uint32_t R = (uint32_t)l->pred_fc1.rows, n_ff = (uint32_t)l->pred_fc2.rows, n = 0;
    ops_matvec(hidden, &l->pred_fc1, x, 0, R);
    for (uint32_t r = 0; r < R; r++)
        if (!(hidden[r] > 0.0f))
            hidden[r] = 0.0f;
    for (uint32_t j = 0; j < n_ff; j++)
        if (pi_dot_row(l->pred_fc2.type, pi_tensor_row(&l->pred_fc2, j), hidden, R) > threshold)
            active[n++] = (int32_t)j;
    return n;
}

uint32_t predictor_true_active(const pi_layer *l, pi_act act, const float *xn, int32_t *active)
{
    uint32_t n_ff = (uint32_t)l->ffn_gate.rows, dim = (uint32_t)l->ffn_gate.cols, n = 0;
    for (uint32_t j = 0; j < n_ff; j++) {
        float g = ops_gate_biased(l, j, pi_dot_row(l->ffn_gate.type, pi_tensor_row(&l->ffn_gate, j), xn, dim));
        float u = pi_act_uses_up(act) && (act == PI_ACT_SILU || g > 0.0f)
                      ? pi_dot_row(l->ffn_up.type, pi_tensor_row(&l->ffn_up, j), xn, dim)
                      : 0.0f;
        if (ops_ffn_act(act, g, u) != 0.0f)
            active[n++] = (int32_t)j;
    }
    return n;
}
