/* ffn_batch: one layer's sparse FFN for several entries of a step with one
 * read of each neuron's rows from memory (issue 12). The entries' active
 * lists are walked together in neuron order, a block of the union at a
 * time: the block's neurons (rows of about FFN_BATCH_BLOCK_BYTES, so they
 * stay in the core's L2) are applied to every entry that lists them, each
 * entry's share of the block (its mask) run through ffn_sparse_accum_rows.
 * The first entry brings the rows in, the others find them in the cache,
 * and each entry's x and accumulator stay near the core while it works.
 *
 * Entry-major inside a block, not neuron-major (one neuron's rows applied to
 * every entry in turn, the rows widened once for several x): measured on a
 * Zen 4 core at dim 5120, neuron-major streams every entry's x and y (20 KB
 * each) from L2 for every neuron, which at 16 entries cost more than the
 * reads it saved (0.55-0.75x of 16 separate calls, against 1.6-1.9x for
 * this walk with the same one-row kernels).
 *
 * Each entry's arithmetic is ffn_sparse_accum's on its own neurons in its
 * own order, so its result has the same bits as its list run alone. The
 * pool (ffn_pool.h: ffn_sparse_run_batch) splits every entry's list across
 * its threads as ffn_sparse_run would split it alone, and runs this walk on
 * each thread's share. */
#ifndef PI_CPU_FFN_BATCH_H
#define PI_CPU_FFN_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "ffn_sparse.h"

/* Rows per block of the union: about what half a core's L2 holds. */
#ifndef FFN_BATCH_BLOCK_BYTES
#define FFN_BATCH_BLOCK_BYTES (256u * 1024u)
#endif

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
 * caller fills cur, end and acc for each entry before ffn_batch_accum;
 * start and who are the walk's own. */
typedef struct ffn_batch_scratch {
    uint32_t max;
    size_t *cur, *end;     /* entry e: its neurons active[e][cur[e] .. end[e]) */
    float **acc;           /* entry e's accumulator (dim floats) */
    size_t *start;         /* entry e's first neuron of the current block */
    uint32_t *who;         /* the entries listing the neuron being taken */
} ffn_batch_scratch;

/* 0, or -1 when out of memory (s is then left freeable). */
int ffn_batch_scratch_init(ffn_batch_scratch *s, uint32_t max);
void ffn_batch_scratch_free(ffn_batch_scratch *s);

/* 1 when list[0..n) is strictly ascending (so it may join a batch). */
int ffn_list_ascending(const uint32_t *list, size_t n);

/* Checks that b's lists are strictly ascending and below l->n_neurons:
 * 0, or -1 with err naming the entry and the position. */
int ffn_batch_check(const ffn_sparse_layer *l, const ffn_batch *b, pi_error *err);

/* Neurons of l per block for block_bytes of rows (gate, up unless the
 * activation reads none, down^T): at least 1. */
size_t ffn_batch_block_neurons(const ffn_sparse_layer *l, pi_act act, size_t block_bytes);

/* The walk each pool thread runs over its share: for every entry e < b->n,
 * ADDS into s->acc[e] the neurons b->active[e][s->cur[e] .. s->end[e]),
 * block_neurons neurons of the union of those ranges at a time (s->cur is
 * used up). Entry e's accumulator gets exactly the bits ffn_sparse_accum
 * (dense: ffn_dense_accum) gives for its range alone with the same kernels.
 * b->n must be <= s->max; the lists must have passed ffn_batch_check. */
void ffn_batch_accum(const ffn_kernels *k, const ffn_sparse_layer *l, pi_act act, int dense,
                     const ffn_batch *b, size_t block_neurons, ffn_batch_scratch *s);

#endif
