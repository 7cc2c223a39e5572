/* The plain definition of the sparse FFN math (ffn_sparse.h): row dots for
 * gate and up, the activation of ops.h, an axpy of the down^T row, all in
 * fp32 through model/quant.h's reference row kernels. Every optimised
 * variant is tested against ffn_sparse_ref. */
#include "ffn_sparse.h"

#include <string.h>

#include "ops.h"

static const void *row_at(const void *base, size_t stride, uint32_t j)
{
    return (const char *)base + (size_t)j * stride;
}

/* Neuron j's gate pre-activation: its row's dot with x, plus its bias. */
static float gate_at(const ffn_kernels *k, const ffn_sparse_layer *l, uint32_t j, const float *x)
{
    float g = k->dot(l->gate_type, row_at(l->gate, l->gate_stride, j), x, l->dim);
    return l->gate_bias ? g + l->gate_bias[j] : g;
}

void ffn_sparse_accum(const ffn_kernels *k, const ffn_sparse_layer *l, pi_act act,
                      const float *x, const uint32_t *active, size_t n_active, float *out)
{
    size_t dim = l->dim;
    for (size_t i = 0; i < n_active; i++) {
        uint32_t j = active[i];
        float g = gate_at(k, l, j, x);
        /* ReLU of a gate <= 0 makes h exactly 0 whatever up is: the up and
         * down rows need not be read (the "exact" FFN mode rests on this). */
        if (act != PI_ACT_SILU && !(g > 0.0f))
            continue;
        float u = pi_act_uses_up(act) ? k->dot(l->up_type, row_at(l->up, l->up_stride, j), x, dim) : 0.0f;
        float h = ops_ffn_act(act, g, u);
        if (h == 0.0f)
            continue;   /* the sparsity the whole design exploits */
        k->axpy(l->down_t_type, h, row_at(l->down_t, l->down_t_stride, j), out, dim);
    }
}

void ffn_dense_accum(const ffn_kernels *k, const ffn_sparse_layer *l, pi_act act,
                     const float *x, const uint32_t *active, size_t n_active, float *out)
{
    size_t dim = l->dim;
    for (size_t i = 0; i < n_active; i++) {
        uint32_t j = active[i];
        float g = gate_at(k, l, j, x);
        float u = pi_act_uses_up(act) ? k->dot(l->up_type, row_at(l->up, l->up_stride, j), x, dim) : 0.0f;
        k->axpy(l->down_t_type, ops_ffn_act(act, g, u), row_at(l->down_t, l->down_t_stride, j), out, dim);
    }
}

void ffn_sparse_ref(const ffn_sparse_layer *l, pi_act act, const float *x,
                    const uint32_t *active, size_t n_active, float *out)
{
    memset(out, 0, (size_t)l->dim * sizeof *out);
    ffn_sparse_accum(ffn_kernels_plain(), l, act, x, active, n_active, out);
}

static const ffn_kernels plain = {
    .name = "plain",
    .dot = pi_dot_row,
    .axpy = pi_axpy_row,
};

const ffn_kernels *ffn_kernels_plain(void)
{
    return &plain;
}

static int check_rows(const char *what, pi_type type, const void *base,
                      const ffn_sparse_layer *l, pi_error *err)
{
    if (!pi_type_supported((int)type))
        return pi_error_set(err, "ffn_sparse layer: %s rows have unsupported type %d "
                            "(use f32, f16, bf16, q8_0, q4_0, q4_K, q5_K or q6_K)", what, (int)type);
    if (l->dim % pi_type_block_elems(type) != 0)
        return pi_error_set(err, "ffn_sparse layer: dim %u is not a multiple of the %s "
                            "block (%zu) of the %s rows", l->dim, pi_type_name((int)type),
                            pi_type_block_elems(type), what);
    if (!base && l->n_neurons > 0)
        return pi_error_set(err, "ffn_sparse layer: %s rows pointer is NULL", what);
    return 0;
}

int ffn_sparse_layer_check(const ffn_sparse_layer *l, pi_error *err)
{
    if (l->dim == 0)
        return pi_error_set(err, "ffn_sparse layer: dim is 0");
    if (check_rows("gate", l->gate_type, l->gate, l, err) ||
        check_rows("up", l->up_type, l->up, l, err) ||
        check_rows("down_t", l->down_t_type, l->down_t, l, err))
        return -1;
    return 0;
}
