/* Cold shard loading: copies each layer's neurons [begin, end) out of the
 * mapped model into one allocation on the worker's NUMA node, as records of
 * (gate row, up row, down^T row). Gate and up rows keep the model's type;
 * the down column is transposed with plan_write_down_t: bit-exact for
 * F32/F16/BF16, and dequantized to F32 for Q8_0/Q4_0, whose blocks run across
 * neurons and cannot be cut into columns (the shard then holds 4 bytes per
 * down element instead of ~1). */
#include "shard.h"
#include "ffn_sparse.h"

#include <numa.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"

static void *alloc_on(size_t bytes, int node, int *used_node)
{
    if (node >= 0 && numa_available() >= 0) {
        *used_node = node;
        return numa_alloc_onnode(bytes, node);
    }
    *used_node = -1;
    return malloc(bytes);
}

cpu_shard *cpu_shard_new(const pi_model *m, uint32_t begin, uint32_t end, int numa_node, pi_error *err)
{
    if (begin > end || end > m->n_ff) {
        pi_error_set(err, "cpu shard: neuron range [%u, %u) is not inside [0, %u)", begin, end, m->n_ff);
        return NULL;
    }
    if (numa_node >= 0 && numa_available() >= 0 && numa_node > numa_max_node()) {
        pi_error_set(err, "cpu shard: NUMA node %d does not exist (this machine has nodes 0..%d); "
                     "pass --numa-node within that range", numa_node, numa_max_node());
        return NULL;
    }
    cpu_shard *s = calloc(1, sizeof *s);
    if (!s || !(s->layers = calloc(m->n_layers ? m->n_layers : 1, sizeof *s->layers))) {
        free(s);
        pi_error_set(err, "cpu shard: out of memory");
        return NULL;
    }
    s->begin = begin;
    s->end = end;
    s->n_layers = m->n_layers;
    s->dim = m->dim;
    s->act = m->act;
    s->numa_node = -1;
    uint32_t n = end - begin;
    size_t total = 0;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const pi_layer *y = &m->layers[l];
        cpu_shard_layer *d = &s->layers[l];
        d->gate_type = y->ffn_gate.type;
        d->up_type = y->ffn_up.type;
        d->down_t_type = plan_down_t_type(y->ffn_down.type);
        d->gate_bytes = y->ffn_gate.row_bytes;
        d->up_bytes = y->ffn_up.row_bytes;
        if (pi_row_bytes(d->down_t_type, m->dim, &d->down_t_bytes) < 0) {
            pi_error_set(err, "cpu shard: layer %u: bad down row size", l);
            cpu_shard_free(&s);
            return NULL;
        }
        d->record_bytes = d->gate_bytes + d->up_bytes + d->down_t_bytes;
        size_t layer_bytes;
        if (pi_mul_size(n, d->record_bytes, &layer_bytes) < 0 || pi_add_size(total, layer_bytes, &total) < 0) {
            pi_error_set(err, "cpu shard: size of neurons [%u, %u) overflows", begin, end);
            cpu_shard_free(&s);
            return NULL;
        }
    }
    s->bytes = total;
    if (total == 0)
        return s;   /* an empty shard: more workers than cold neurons */
    s->mem = alloc_on(total, numa_node, &s->numa_node);
    if (!s->mem) {
        pi_error_set(err, "cpu shard: out of memory for %zu bytes of neurons [%u, %u)%s", total, begin, end,
                     s->numa_node >= 0 ? " on the requested NUMA node" : "");
        cpu_shard_free(&s);
        return NULL;
    }
    s->mem_bytes = total;
    char *p = s->mem;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const pi_layer *y = &m->layers[l];
        cpu_shard_layer *d = &s->layers[l];
        d->data = p;
        for (uint32_t j = begin; j < end; j++) {
            char *rec = p + (size_t)(j - begin) * d->record_bytes;
            memcpy(rec, pi_tensor_row(&y->ffn_gate, j), d->gate_bytes);
            memcpy(rec + d->gate_bytes, pi_tensor_row(&y->ffn_up, j), d->up_bytes);
        }
        plan_write_down_t(m, l, begin, end, p + d->gate_bytes + d->up_bytes, d->record_bytes);
        p += (size_t)n * d->record_bytes;
    }
    return s;
}

void cpu_shard_free(cpu_shard **sp)
{
    if (!sp || !*sp)
        return;
    cpu_shard *s = *sp;
    if (s->mem) {
        if (s->numa_node >= 0)
            numa_free(s->mem, s->mem_bytes);
        else
            free(s->mem);
    }
    free(s->layers);
    free(s);
    *sp = NULL;
}

void cpu_shard_sparse_layer(const cpu_shard *s, uint32_t l, ffn_sparse_layer *f)
{
    const cpu_shard_layer *L = &s->layers[l];
    f->dim = s->dim;
    f->n_neurons = s->end - s->begin;
    f->gate_type = L->gate_type;
    f->up_type = L->up_type;
    f->down_t_type = L->down_t_type;
    f->gate = L->data;
    f->up = L->data + L->gate_bytes;
    f->down_t = L->data + L->gate_bytes + L->up_bytes;
    f->gate_stride = f->up_stride = f->down_t_stride = L->record_bytes;
}
