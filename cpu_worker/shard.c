/* Cold shard loading: copies each layer's neurons (a range, or a list from
 * a placement) out of the mapped model into one allocation on the worker's
 * NUMA node, as records of (gate row, up row, down^T row). Gate and up rows
 * keep the model's type; the down columns come from plan_write_down_t_set:
 * the model's own ffn_down_t rows when it has them in the down^T type (a
 * plain copy, fast for big models), else down transposed: bit-exact for
 * F32/F16/BF16, dequantized to F32 for Q8_0/Q4_0, whose blocks run across
 * neurons and cannot be cut into columns (the shard then holds 4 bytes per
 * down element instead of ~1). */
#include "shard.h"
#include "ffn_sparse.h"

#include <numa.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "plan.h"

/* The records in pages of their own (numa_alloc_onnode's, or an anonymous
 * map), asked for transparent huge pages before the first touch: a step
 * reads ~500 scattered 30 KiB records a layer out of gigabytes, and with 4
 * KiB pages (THP "madvise", the Debian/Ubuntu default) each record costs
 * ~8 TLB misses. *huge: whether the kernel took the advice (it may not:
 * THP "never", or no THP in the kernel; the memory works either way).
 * PI_CPU_HUGE_PAGES=0 leaves the pages small: a measurement switch, so one
 * device call can compare both (docs/benchmarks.md). */
static void *alloc_on(size_t bytes, int node, int *used_node, int *huge)
{
    void *p;
    if (node >= 0 && numa_available() >= 0) {
        *used_node = node;
        p = numa_alloc_onnode(bytes, node);
    } else {
        *used_node = -1;
        p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            p = NULL;
    }
    *huge = 0;
#ifdef MADV_HUGEPAGE
    const char *sw = getenv("PI_CPU_HUGE_PAGES");
    if (p && !(sw && strcmp(sw, "0") == 0))
        *huge = madvise(p, bytes, MADV_HUGEPAGE) == 0;
#endif
    return p;
}

static cpu_shard *fail(cpu_shard **s)
{
    cpu_shard_free(s);
    return NULL;
}

/* Neuron k of layer l: from the lists, or begin + k. */
static int32_t pick(const int32_t *const *ids, uint32_t begin, uint32_t l, uint32_t k)
{
    return ids ? ids[l][k] : (int32_t)(begin + k);
}

/* Each layer's fc1 biases in record order (the ids are set). */
static int fill_biases(cpu_shard *s, const pi_model *m, pi_error *err)
{
    size_t n = 0;
    for (uint32_t l = 0; l < m->n_layers; l++)
        n += s->layers[l].n;
    if (!(s->bias_mem = malloc((n ? n : 1) * sizeof *s->bias_mem)))
        return pi_error_set(err, "cpu shard: out of memory for %zu biases", n);
    float *q = s->bias_mem;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        cpu_shard_layer *d = &s->layers[l];
        const float *all = m->layers[l].ffn_gate_b.data;
        if (!all)
            return pi_error_set(err, "cpu shard: layer %u has no ffn_up.bias but layer 0 has", l);
        for (uint32_t k = 0; k < d->n; k++)
            q[k] = all[d->ids[k]];
        d->gate_b = q;
        q += d->n;
    }
    return 0;
}

/* ids NULL: the range [begin, begin + counts0) in every layer. */
static cpu_shard *build(const pi_model *m, const int32_t *const *ids, const uint32_t *counts, uint32_t begin,
                        uint32_t count0, int numa_node, pi_error *err)
{
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
    s->n_layers = m->n_layers;
    s->dim = m->dim;
    s->n_ff = m->n_ff;
    s->act = m->act;
    s->numa_node = -1;
    size_t total = 0, n_ids = 0;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const pi_layer *y = &m->layers[l];
        cpu_shard_layer *d = &s->layers[l];
        d->n = ids ? counts[l] : count0;
        for (uint32_t k = 0; ids && k < d->n; k++)
            if (ids[l][k] < 0 || (uint32_t)ids[l][k] >= m->n_ff || (k && ids[l][k] <= ids[l][k - 1])) {
                pi_error_set(err, "cpu shard: layer %u: neuron %d at position %u is out of order or not below "
                             "n_ff %u", l, ids[l][k], k, m->n_ff);
                return fail(&s);
            }
        d->gate_type = y->ffn_gate.type;
        d->up_type = y->ffn_up.type;
        d->down_t_type = plan_down_t_type(pi_layer_down_type(y));
        d->gate_bytes = y->ffn_gate.row_bytes;
        d->up_bytes = pi_act_uses_up(m->act) ? y->ffn_up.row_bytes : 0;
        if (pi_row_bytes(d->down_t_type, m->dim, &d->down_t_bytes) < 0) {
            pi_error_set(err, "cpu shard: layer %u: bad down row size", l);
            return fail(&s);
        }
        d->record_bytes = d->gate_bytes + d->up_bytes + d->down_t_bytes;
        size_t layer_bytes;
        if (pi_mul_size(d->n, d->record_bytes, &layer_bytes) < 0 || pi_add_size(total, layer_bytes, &total) < 0 ||
            pi_add_size(n_ids, (size_t)d->n + m->n_ff, &n_ids) < 0) {
            pi_error_set(err, "cpu shard: size of %u neurons of layer %u overflows", d->n, l);
            return fail(&s);
        }
    }
    if (n_ids > SIZE_MAX / sizeof(int32_t) || !(s->id_mem = malloc((n_ids ? n_ids : 1) * sizeof(int32_t)))) {
        pi_error_set(err, "cpu shard: out of memory for the neuron lookup tables");
        return fail(&s);
    }
    int32_t *q = s->id_mem;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        cpu_shard_layer *d = &s->layers[l];
        int32_t *list = q, *local = q + d->n;
        for (uint32_t k = 0; k < d->n; k++)
            list[k] = pick(ids, begin, l, k);
        for (uint32_t j = 0; j < m->n_ff; j++)
            local[j] = -1;
        for (uint32_t k = 0; k < d->n; k++)
            local[list[k]] = (int32_t)k;
        d->ids = list;
        d->local = local;
        q += (size_t)d->n + m->n_ff;
    }
    if (m->n_layers && m->layers[0].ffn_gate_b.data && fill_biases(s, m, err) < 0)
        return fail(&s);
    s->bytes = total;
    if (total == 0)
        return s;   /* an empty shard: more workers than cold neurons */
    s->mem = alloc_on(total, numa_node, &s->numa_node, &s->huge_pages);
    if (!s->mem) {
        pi_error_set(err, "cpu shard: out of memory for %zu bytes of neurons%s", total,
                     s->numa_node >= 0 ? " on the requested NUMA node" : "");
        return fail(&s);
    }
    s->mem_bytes = total;
    char *p = s->mem;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const pi_layer *y = &m->layers[l];
        cpu_shard_layer *d = &s->layers[l];
        d->data = p;
        for (uint32_t k = 0; k < d->n; k++) {
            char *rec = p + (size_t)k * d->record_bytes;
            memcpy(rec, pi_tensor_row(&y->ffn_gate, (uint64_t)d->ids[k]), d->gate_bytes);
            memcpy(rec + d->gate_bytes, pi_tensor_row(&y->ffn_up, (uint64_t)d->ids[k]), d->up_bytes);
        }
        plan_set set = {d->ids, 0, d->n};
        if (plan_write_down_t_set(m, l, set, p + d->gate_bytes + d->up_bytes, d->record_bytes, err) < 0) {
            pi_error_wrap(err, "cpu shard");
            return fail(&s);
        }
        p += (size_t)d->n * d->record_bytes;
    }
    return s;
}

cpu_shard *cpu_shard_new(const pi_model *m, uint32_t begin, uint32_t end, int numa_node, pi_error *err)
{
    if (begin > end || end > m->n_ff) {
        pi_error_set(err, "cpu shard: neuron range [%u, %u) is not inside [0, %u)", begin, end, m->n_ff);
        return NULL;
    }
    cpu_shard *s = build(m, NULL, NULL, begin, end - begin, numa_node, err);
    if (s) {
        s->begin = begin;
        s->end = end;
    }
    return s;
}

cpu_shard *cpu_shard_new_sets(const pi_model *m, const int32_t *const *ids, const uint32_t *counts,
                              int numa_node, pi_error *err)
{
    if (!ids || !counts) {
        pi_error_set(err, "cpu shard: no neuron lists");
        return NULL;
    }
    for (uint32_t l = 0; l < m->n_layers; l++)
        if (counts[l] > m->n_ff || (counts[l] && !ids[l])) {
            pi_error_set(err, "cpu shard: layer %u: %u neurons listed, layers have %u", l, counts[l], m->n_ff);
            return NULL;
        }
    return build(m, ids, counts, 0, 0, numa_node, err);
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
            munmap(s->mem, s->mem_bytes);   /* cannot fail: the whole map, page-aligned */
    }
    free(s->id_mem);
    free(s->bias_mem);
    free(s->layers);
    free(s);
    *sp = NULL;
}

uint32_t cpu_shard_local_list(const cpu_shard *s, uint32_t l, const int32_t *active, uint32_t n_active,
                              uint32_t *local_out)
{
    const cpu_shard_layer *d = &s->layers[l];
    uint32_t n = 0;
    for (uint32_t k = 0; k < n_active && n < d->n; k++) {
        int32_t j = active[k];
        if (j >= 0 && (uint32_t)j < s->n_ff && d->local[j] >= 0)
            local_out[n++] = (uint32_t)d->local[j];
    }
    return n;
}

void cpu_shard_sparse_layer(const cpu_shard *s, uint32_t l, ffn_sparse_layer *f)
{
    const cpu_shard_layer *L = &s->layers[l];
    f->dim = s->dim;
    f->n_neurons = L->n;
    f->gate_type = L->gate_type;
    f->up_type = L->up_type;
    f->down_t_type = L->down_t_type;
    f->gate = L->data;
    f->up = L->data + L->gate_bytes;
    f->down_t = L->data + L->gate_bytes + L->up_bytes;
    f->gate_stride = f->up_stride = f->down_t_stride = L->record_bytes;
    f->gate_bias = L->gate_b;
}
