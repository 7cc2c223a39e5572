/* Plain cold-FFN kernel (see ffn_cold.h): per entry, per neuron, two row
 * dots and one axpy of the neuron's down^T row, fp32 accumulation. Neurons
 * whose activation is exactly 0 (ReLU) add nothing and are skipped. */
#include "ffn_cold.h"

#include <string.h>

#include "ops.h"

void ffn_cold(const cpu_shard *s, uint32_t l, const float *x, uint32_t n, float *out)
{
    const cpu_shard_layer *d = &s->layers[l];
    size_t dim = s->dim;
    memset(out, 0, (size_t)n * dim * sizeof *out);
    for (uint32_t e = 0; e < n; e++) {
        const float *xe = x + (size_t)e * dim;
        float *oe = out + (size_t)e * dim;
        for (uint32_t k = 0; k < d->n; k++) {
            const char *rec = d->data + (size_t)k * d->record_bytes;
            float g = pi_dot_row(d->gate_type, rec, xe, dim);
            if (d->gate_b)
                g += d->gate_b[k];
            float u = pi_act_uses_up(s->act) ? pi_dot_row(d->up_type, rec + d->gate_bytes, xe, dim) : 0.0f;
            float a = ops_ffn_act(s->act, g, u);
            if (a != 0.0f)
                pi_axpy_row(d->down_t_type, a, rec + d->gate_bytes + d->up_bytes, oe, dim);
        }
    }
}
