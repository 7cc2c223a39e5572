/* The plain definition of the sparse FFN math (ffn_sparse.h): row dots for
 * gate and up, the activation of ops.h, an axpy of the down^T row, all in
 * fp32 through gguf/quant.h's reference row kernels. Every optimised
 * variant is tested against ffn_sparse_ref. */
#include "ffn_sparse.h"

#include <string.h>

#include "ops.h"

static const void *row_at(const void *base, size_t stride, uint32_t j)
{
    return (const char *)base + (size_t)j * stride;
}

/* The rows of active[i], and the row expected after each: a neuron reads
 * gate, up (unless RELU_SINGLE), down^T, then the next neuron's gate. The
 * "expected" rows only steer the kernels' prefetch (ffn_kernels.dot_then):
 * a ReLU neuron that stops after its gate wastes the prefetch of one
 * FFN_PREFETCH_AHEAD into its up row, and changes no result. */
typedef struct neuron_rows {
    const void *gate, *up, *down, *after_gate, *next_gate;
} neuron_rows;

static neuron_rows rows_of(const ffn_sparse_layer *l, pi_act act, const uint32_t *active,
                           size_t n_active, size_t i)
{
    uint32_t j = active[i];
    neuron_rows r = {
        .gate = row_at(l->gate, l->gate_stride, j),
        .up = row_at(l->up, l->up_stride, j),
        .down = row_at(l->down_t, l->down_t_stride, j),
        .next_gate = i + 1 < n_active ? row_at(l->gate, l->gate_stride, active[i + 1]) : NULL,
    };
    r.after_gate = pi_act_uses_up(act) ? r.up : r.down;
    return r;
}

/* Neuron j's gate pre-activation: its row's dot with x, plus its bias. */
static float gate_at(const ffn_kernels *k, const ffn_sparse_layer *l, uint32_t j,
                     const neuron_rows *r, const float *x)
{
    float g = k->dot_then(l->gate_type, r->gate, x, l->dim, r->after_gate);
    return l->gate_bias ? g + l->gate_bias[j] : g;
}

static float up_at(const ffn_kernels *k, const ffn_sparse_layer *l, pi_act act,
                   const neuron_rows *r, const float *x)
{
    return pi_act_uses_up(act) ? k->dot_then(l->up_type, r->up, x, l->dim, r->down) : 0.0f;
}

void ffn_sparse_accum(const ffn_kernels *k, const ffn_sparse_layer *l, pi_act act,
                      const float *x, const uint32_t *active, size_t n_active, float *out)
{
    for (size_t i = 0; i < n_active; i++) {
        neuron_rows r = rows_of(l, act, active, n_active, i);
        float g = gate_at(k, l, active[i], &r, x);
        /* ReLU of a gate <= 0 makes h exactly 0 whatever up is: the up and
         * down rows need not be read (the "exact" FFN mode rests on this). */
        if (act != PI_ACT_SILU && !(g > 0.0f))
            continue;
        float h = ops_ffn_act(act, g, up_at(k, l, act, &r, x));
        if (h == 0.0f)
            continue;   /* the sparsity the whole design exploits */
        k->axpy_then(l->down_t_type, h, r.down, out, l->dim, r.next_gate);
    }
}

void ffn_dense_accum(const ffn_kernels *k, const ffn_sparse_layer *l, pi_act act,
                     const float *x, const uint32_t *active, size_t n_active, float *out)
{
    for (size_t i = 0; i < n_active; i++) {
        neuron_rows r = rows_of(l, act, active, n_active, i);
        float g = gate_at(k, l, active[i], &r, x);
        float h = ops_ffn_act(act, g, up_at(k, l, act, &r, x));
        k->axpy_then(l->down_t_type, h, r.down, out, l->dim, r.next_gate);
    }
}

void ffn_sparse_accum_rows(const ffn_kernels *k, const ffn_sparse_layer *l, pi_act act, int dense,
                           const float *x, const uint32_t *active, size_t n_active, float *out)
{
    int uses_up = pi_act_uses_up(act);
    for (size_t i = 0; i < n_active; i += FFN_ROWS_MAX) {
        size_t nr = n_active - i < FFN_ROWS_MAX ? n_active - i : FFN_ROWS_MAX;
        const void *gate[FFN_ROWS_MAX], *up[FFN_ROWS_MAX], *down[FFN_ROWS_MAX];
        float g[FFN_ROWS_MAX], u[FFN_ROWS_MAX], h[FFN_ROWS_MAX];
        uint32_t j[FFN_ROWS_MAX];
        for (size_t r = 0; r < nr; r++) {
            j[r] = active[i + r];
            gate[r] = row_at(l->gate, l->gate_stride, j[r]);
            up[r] = row_at(l->up, l->up_stride, j[r]);
            down[r] = row_at(l->down_t, l->down_t_stride, j[r]);
        }
        const void *next_gate = i + nr < n_active ? row_at(l->gate, l->gate_stride, active[i + nr]) : NULL;
        k->dot_rows(l->gate_type, gate, nr, x, l->dim, g, uses_up ? up[0] : down[0]);
        /* The neurons ffn_sparse_accum would go on with, in list order. */
        size_t m = 0;
        for (size_t r = 0; r < nr; r++) {
            float gr = l->gate_bias ? g[r] + l->gate_bias[j[r]] : g[r];
            if (!dense && act != PI_ACT_SILU && !(gr > 0.0f))
                continue;
            g[m] = gr;
            up[m] = up[r];
            down[m] = down[r];
            m++;
        }
        if (m == 0)
            continue;
        if (uses_up)
            k->dot_rows(l->up_type, up, m, x, l->dim, u, down[0]);
        size_t na = 0;
        for (size_t r = 0; r < m; r++) {
            float hr = ops_ffn_act(act, g[r], uses_up ? u[r] : 0.0f);
            if (!dense && hr == 0.0f)
                continue;
            h[na] = hr;
            down[na] = down[r];
            na++;
        }
        if (na > 0)
            k->axpy_rows(l->down_t_type, h, down, na, out, l->dim, next_gate);
    }
}

void ffn_sparse_ref(const ffn_sparse_layer *l, pi_act act, const float *x,
                    const uint32_t *active, size_t n_active, float *out)
{
    memset(out, 0, (size_t)l->dim * sizeof *out);
    ffn_sparse_accum(ffn_kernels_plain(), l, act, x, active, n_active, out);
}

static float plain_dot_then(pi_type type, const void *row, const float *x, size_t n,
                            const void *next)
{
    (void)next;
    return pi_dot_row(type, row, x, n);
}

static void plain_axpy_then(pi_type type, float a, const void *row, float *y, size_t n,
                            const void *next)
{
    (void)next;
    pi_axpy_row(type, a, row, y, n);
}

/* The definition of the row-group kernels: one row at a time. */
static void plain_dot_rows(pi_type type, const void *const *rows, size_t nr, const float *x, size_t n,
                           float *res, const void *next)
{
    (void)next;
    for (size_t r = 0; r < nr; r++)
        res[r] = pi_dot_row(type, rows[r], x, n);
}

static void plain_axpy_rows(pi_type type, const float *as, const void *const *rows, size_t nr, float *y,
                            size_t n, const void *next)
{
    (void)next;
    for (size_t r = 0; r < nr; r++)
        pi_axpy_row(type, as[r], rows[r], y, n);
}

static const ffn_kernels plain = {
    .name = "plain",
    .dot = pi_dot_row,
    .axpy = pi_axpy_row,
    .dot_then = plain_dot_then,
    .axpy_then = plain_axpy_then,
    .dot_rows = plain_dot_rows,
    .axpy_rows = plain_axpy_rows,
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
