/* Bytes over the model's shapes that the plan and the placement solver both
 * count (see plan_bytes.h). */
#include "plan_bytes.h"

static uint64_t tensor_bytes(const pi_tensor *t)
{
    return (uint64_t)t->rows * t->row_bytes;
}

uint64_t plan_weight_bytes(const pi_model *m)
{
    uint64_t b = tensor_bytes(&m->output_norm) + tensor_bytes(&m->output_norm_b) + tensor_bytes(&m->pos_embd);
    /* An untied model's token_embd is read a row per token and stays in host
     * memory; tied, it is the output matrix, read whole every token. */
    b += tensor_bytes(m->tied_output ? &m->tok_embd : &m->output);
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const pi_layer *y = &m->layers[l];
        b += tensor_bytes(&y->attn_norm) + tensor_bytes(&y->wq) + tensor_bytes(&y->wk) +
             tensor_bytes(&y->wv) + tensor_bytes(&y->wo) + tensor_bytes(&y->ffn_norm);
        /* the other architectures' biases (absent ones count 0) */
        b += tensor_bytes(&y->attn_norm_b) + tensor_bytes(&y->ffn_norm_b) + tensor_bytes(&y->bq) +
             tensor_bytes(&y->bk) + tensor_bytes(&y->bv) + tensor_bytes(&y->bo) + tensor_bytes(&y->ffn_down_b);
    }
    return b;
}

uint64_t plan_kv_bytes_elem(const pi_model *m, uint32_t max_seqs, uint32_t n_ctx, uint32_t elem_bytes)
{
    uint64_t kv_dim = (uint64_t)m->n_kv_heads * m->head_dim;
    return (uint64_t)max_seqs * m->n_layers * n_ctx * kv_dim * 2 * elem_bytes;
}

uint64_t plan_kv_bytes(const pi_model *m, uint32_t max_seqs, uint32_t n_ctx)
{
    return plan_kv_bytes_elem(m, max_seqs, n_ctx, sizeof(float));
}

uint64_t plan_pred_tensor_bytes(const pi_tensor *t, int q8)
{
    size_t rb;
    if (!t->data)
        return 0;
    if (q8 && pi_row_bytes(PI_TYPE_Q8_0, t->cols, &rb) == 0)
        return (uint64_t)t->rows * rb;
    return tensor_bytes(t);
}

uint64_t plan_predictor_bytes(const pi_model *m, int q8)
{
    if (!m->has_predictor)
        return 0;
    uint64_t b = 0;
    for (uint32_t l = 0; l < m->n_layers; l++)
        b += plan_pred_tensor_bytes(&m->layers[l].pred_fc1, q8) + plan_pred_tensor_bytes(&m->layers[l].pred_fc2, q8);
    return b;
}

pi_type plan_down_t_type(pi_type t)
{
    return (t == PI_TYPE_F16 || t == PI_TYPE_BF16) ? t : PI_TYPE_F32;
}

size_t plan_neuron_bytes_layer(const pi_model *m, uint32_t l)
{
    const pi_layer *y = &m->layers[l];
    size_t down_t = 0;
    /* dim is whole elements for every float type: cannot fail */
    (void)pi_row_bytes(plan_down_t_type(pi_layer_down_type(y)), m->dim, &down_t);
    /* a gate-less FFN (RELU_SINGLE) holds no up row; OPT's fc1 bias is one float */
    return y->ffn_gate.row_bytes + (pi_act_uses_up(m->act) ? y->ffn_up.row_bytes : 0) + down_t +
           (y->ffn_gate_b.data ? sizeof(float) : 0);
}
