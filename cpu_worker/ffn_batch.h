/* ffn_batch: one layer's sparse FFN for several entries of a step in one
 * pass over the shard's rows (issue 12). The entries' active lists are
 * walked together in neuron order: each neuron of their union has its gate,
 * up and down^T rows read once and applied to every entry that lists it
 * (the others are masked out), instead of once per entry. Each entry's own
 * arithmetic is the one-entry path's, in the same order, so its result has
 * the same bits as ffn_sparse_accum over its list alone. The pool
 * (ffn_pool.h: ffn_sparse_run_batch) splits every entry's list across its
 * threads as ffn_sparse_run would split it alone, and runs this body on
 * each thread's share. */
#ifndef PI_CPU_FFN_BATCH_H
#define PI_CPU_FFN_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "ffn_sparse.h"

/* A step's entries for one layer. Lists hold shard-local neuron indices,
 * strictly ascending (as the predictor's and the exact mode's are); x and
 * out hold dim floats per entry, and no out overlaps another out or any x. */
typedef struct ffn_batch {
    uint32_t n;                      /* entries */
    const float *const *x;           /* n inputs */
    const uint32_t *const *active;   /* n lists */
    const size_t *n_active;          /* their lengths */
    float *const *out;               /* n outputs */
} ffn_batch;

/* One thread's room for a walk over up to max entries, allocated once. The
 * caller fills cur, end and acc for each entry before ffn_batch_accum; the
 * rest is the walk's own. */
typedef struct ffn_batch_scratch {
    uint32_t max;
    size_t *cur, *end;     /* entry e: its neurons active[e][cur[e] .. end[e]) */
    float **acc;           /* entry e's accumulator (dim floats) */
    uint32_t *who, *who_next;   /* the entries listing the current / next neuron */
    const float **xs;      /* their inputs, then those still active after the gate */
    float **ys;            /* their accumulators */
    float *g, *u, *h;      /* their gate and up dots, activations */
} ffn_batch_scratch;

/* 0, or -1 when out of memory (s is then left freeable). */
int ffn_batch_scratch_init(ffn_batch_scratch *s, uint32_t max);
void ffn_batch_scratch_free(ffn_batch_scratch *s);

/* 1 when list[0..n) is strictly ascending (so it may join a batch). */
int ffn_list_ascending(const uint32_t *list, size_t n);

/* Checks that b's lists are strictly ascending and below l->n_neurons:
 * 0, or -1 with err naming the entry and the position. */
int ffn_batch_check(const ffn_sparse_layer *l, const ffn_batch *b, pi_error *err);

/* The body each pool thread runs over its share: for every entry e < b->n,
 * ADDS into s->acc[e] the neurons b->active[e][s->cur[e] .. s->end[e]),
 * walking the union of those ranges once in neuron order (s->cur is used
 * up). Entry e's accumulator gets exactly the bits ffn_sparse_accum (dense:
 * ffn_dense_accum) gives for its range alone with the same kernels. b->n
 * must be <= s->max; the lists must have passed ffn_batch_check. */
void ffn_batch_accum(const ffn_kernels *k, const ffn_sparse_layer *l, pi_act act, int dense,
                     const ffn_batch *b, ffn_batch_scratch *s);

#endif
