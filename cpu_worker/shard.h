/* cpu_shard: one CPU worker's cold neurons of every FFN layer, copied out of
 * the model into memory on the worker's NUMA node: either the contiguous
 * range [begin, end) of every layer (index-order plans), or a per-layer list
 * of neurons (plans from a placement: plan_shard_set). Per layer, each
 * neuron's gate row, up row and down^T row (its down column as a row of dim,
 * plan.h's layout) lie together in one record, so computing a neuron reads
 * one contiguous run of memory. Records follow the layer's list order.
 * Gate-less FFNs (RELU_SINGLE) hold no up row (up_bytes 0); OPT's fc1 biases
 * lie in a separate array beside the records. */
#ifndef PI_CPU_SHARD_H
#define PI_CPU_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "pi_error.h"

typedef struct cpu_shard_layer {
    const char *data;           /* n neurons x record_bytes */
    uint32_t n;                 /* neurons of this layer in the shard */
    const int32_t *ids;         /* n global neuron ids, ascending (record k = neuron ids[k]) */
    const int32_t *local;       /* n_ff entries: global id -> record index, or -1 */
    pi_type gate_type, up_type, down_t_type;
    size_t gate_bytes, up_bytes, down_t_bytes;  /* the three parts of a record */
    size_t record_bytes;
    const float *gate_b;        /* n fc1 biases in record order (OPT), or NULL */
} cpu_shard_layer;

typedef struct cpu_shard {
    uint32_t begin, end;        /* range shards: neurons [begin, end) in every layer; list shards: 0, 0 */
    uint32_t n_layers, dim, n_ff;
    pi_act act;
    int numa_node;              /* node the memory is on; -1: an anonymous map on any node */
    int huge_pages;             /* 1: the kernel took the advice of transparent huge pages */
    uint64_t bytes;             /* weight bytes held (sum over layers of n x record_bytes) */
    cpu_shard_layer *layers;
    void *mem;                  /* one allocation holding every layer's records */
    size_t mem_bytes;
    int32_t *id_mem;            /* every layer's ids and lookup table */
    float *bias_mem;            /* every layer's gate biases, or NULL */
} cpu_shard;

/* Copies neurons [begin, end) of every layer of m (which may be closed
 * afterwards). numa_node >= 0 allocates there with numa_alloc_onnode; -1, or
 * libnuma reporting NUMA unavailable, maps anonymous memory. The caller owns
 * the result: cpu_shard_free. */
cpu_shard *cpu_shard_new(const pi_model *m, uint32_t begin, uint32_t end, int numa_node, pi_error *err);

/* The same for per-layer lists: layer l holds the counts[l] neurons ids[l]
 * (ascending global ids below n_ff; NULL ids[l] with counts[l] 0 = none).
 * Fails naming the layer when a list is out of order or out of range. */
cpu_shard *cpu_shard_new_sets(const pi_model *m, const int32_t *const *ids, const uint32_t *counts,
                              int numa_node, pi_error *err);
void cpu_shard_free(cpu_shard **s);

/* Neuron j (global index, held by the shard) of layer l: its three rows. */
static inline const void *cpu_shard_gate(const cpu_shard *s, uint32_t l, uint32_t j)
{
    return s->layers[l].data + (size_t)s->layers[l].local[j] * s->layers[l].record_bytes;
}
static inline const void *cpu_shard_up(const cpu_shard *s, uint32_t l, uint32_t j)
{
    return (const char *)cpu_shard_gate(s, l, j) + s->layers[l].gate_bytes;
}
static inline const void *cpu_shard_down_t(const cpu_shard *s, uint32_t l, uint32_t j)
{
    return (const char *)cpu_shard_up(s, l, j) + s->layers[l].up_bytes;
}

/* --ffn predicted: the neurons of an active list (global ids, any order,
 * out-of-range ids ignored) that the shard holds in layer l, as record
 * indices into local_out (room for the layer's n); returns their count. */
uint32_t cpu_shard_local_list(const cpu_shard *s, uint32_t l, const int32_t *active, uint32_t n_active,
                              uint32_t *local_out);

/* Layer l of the shard as the sparse kernels' rows (ffn_sparse.h), with
 * record indices 0..n-1. */
struct ffn_sparse_layer;
void cpu_shard_sparse_layer(const cpu_shard *s, uint32_t l, struct ffn_sparse_layer *out);

#endif
