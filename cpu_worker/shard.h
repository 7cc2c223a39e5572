/* cpu_shard: one CPU worker's cold neurons [begin, end) of every FFN layer,
 * copied out of the model into memory on the worker's NUMA node. Per layer,
 * each neuron's gate row, up row and down^T row (its down column as a row of
 * dim, plan.h's layout) lie together in one record, so computing a neuron
 * reads one contiguous run of memory. */
#ifndef PI_CPU_SHARD_H
#define PI_CPU_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "pi_error.h"

typedef struct cpu_shard_layer {
    const char *data;           /* n neurons x record_bytes */
    pi_type gate_type, up_type, down_t_type;
    size_t gate_bytes, up_bytes, down_t_bytes;  /* the three parts of a record */
    size_t record_bytes;
} cpu_shard_layer;

typedef struct cpu_shard {
    uint32_t begin, end;        /* neurons [begin, end) in every layer */
    uint32_t n_layers, dim;
    pi_act act;
    int numa_node;              /* node the memory is on; -1: plain malloc */
    uint64_t bytes;             /* weight bytes held (sum over layers of n x record_bytes) */
    cpu_shard_layer *layers;
    void *mem;                  /* one allocation holding every layer */
    size_t mem_bytes;
} cpu_shard;

/* Copies neurons [begin, end) of every layer of m (which may be closed
 * afterwards). numa_node >= 0 allocates there with numa_alloc_onnode; -1, or
 * libnuma reporting NUMA unavailable, falls back to malloc. The caller owns
 * the result: cpu_shard_free. */
cpu_shard *cpu_shard_new(const pi_model *m, uint32_t begin, uint32_t end, int numa_node, pi_error *err);
void cpu_shard_free(cpu_shard **s);

/* Neuron j (absolute index, begin <= j < end) of layer l: its three rows. */
static inline const void *cpu_shard_gate(const cpu_shard *s, uint32_t l, uint32_t j)
{
    return s->layers[l].data + (size_t)(j - s->begin) * s->layers[l].record_bytes;
}
static inline const void *cpu_shard_up(const cpu_shard *s, uint32_t l, uint32_t j)
{
    return (const char *)cpu_shard_gate(s, l, j) + s->layers[l].gate_bytes;
}
static inline const void *cpu_shard_down_t(const cpu_shard *s, uint32_t l, uint32_t j)
{
    return (const char *)cpu_shard_up(s, l, j) + s->layers[l].up_bytes;
}

/* Layer l of the shard as the sparse kernels' rows (ffn_sparse.h), with
 * shard-local neuron indices 0..end-begin-1. */
struct ffn_sparse_layer;
void cpu_shard_sparse_layer(const cpu_shard *s, uint32_t l, struct ffn_sparse_layer *out);

#endif
