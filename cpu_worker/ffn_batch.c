/* The batched sparse FFN walk (ffn_batch.h): a merge of the entries' sorted
 * ranges, cut into blocks of the union; inside a block each entry runs its
 * own neurons through ffn_sparse_accum_rows, as the one-entry pool does, so
 * its operations are exactly those of its list run alone, in the same
 * order (a block boundary only splits one call into two consecutive ones,
 * which changes no arithmetic: each neuron's dots are its own, and the
 * output is updated neuron by neuron in list order either way). */
#include "ffn_batch.h"

#include <stdlib.h>
#include <string.h>

int ffn_batch_scratch_init(ffn_batch_scratch *s, uint32_t max)
{
    memset(s, 0, sizeof *s);
    size_t n = max ? max : 1;
    s->max = max;
    s->cur = malloc(n * sizeof *s->cur);
    s->end = malloc(n * sizeof *s->end);
    s->acc = malloc(n * sizeof *s->acc);
    s->start = malloc(n * sizeof *s->start);
    s->who = malloc(n * sizeof *s->who);
    return s->cur && s->end && s->acc && s->start && s->who ? 0 : -1;
}

void ffn_batch_scratch_free(ffn_batch_scratch *s)
{
    free(s->cur);
    free(s->end);
    free(s->acc);
    free(s->start);
    free(s->who);
    memset(s, 0, sizeof *s);
}

int ffn_list_ascending(const uint32_t *list, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (list[i] <= list[i - 1])
            return 0;
    return 1;
}

int ffn_batch_check(const ffn_sparse_layer *l, const ffn_batch *b, pi_error *err)
{
    for (uint32_t e = 0; e < b->n; e++) {
        const uint32_t *a = b->active[e];
        for (size_t i = 0; i < b->n_active[e]; i++) {
            if (a[i] >= l->n_neurons)
                return pi_error_set(err, "ffn_sparse_run_batch: entry %u: active[%zu] = %u is outside the "
                                    "shard's %u neurons (indices are shard-local)", e, i, a[i], l->n_neurons);
            if (i > 0 && a[i] <= a[i - 1])
                return pi_error_set(err, "ffn_sparse_run_batch: entry %u: active[%zu] = %u does not follow "
                                    "active[%zu] = %u (a batch's lists must be strictly ascending; "
                                    "run such an entry alone with ffn_sparse_run)", e, i, a[i], i - 1, a[i - 1]);
        }
    }
    return 0;
}

size_t ffn_batch_block_neurons(const ffn_sparse_layer *l, pi_act act, size_t block_bytes)
{
    size_t gate, up, down;
    if (pi_row_bytes(l->gate_type, l->dim, &gate) || pi_row_bytes(l->up_type, l->dim, &up) ||
        pi_row_bytes(l->down_t_type, l->dim, &down))
        return 1;   /* a layer that passed ffn_sparse_layer_check has row sizes */
    size_t per = gate + (pi_act_uses_up(act) ? up : 0) + down;
    return per && block_bytes / per ? block_bytes / per : 1;
}

/* Steps every entry past the next neuron of the union (the smallest
 * b->active[e][cur[e]] over the entries not at their end): 1, or 0 when
 * the walk is over. */
static int take_neuron(const ffn_batch *b, size_t *cur, const size_t *end, uint32_t *who)
{
    uint32_t best = 0, nw = 0;
    for (uint32_t e = 0; e < b->n; e++) {
        if (cur[e] == end[e])
            continue;
        uint32_t v = b->active[e][cur[e]];
        if (nw == 0 || v < best) {
            best = v;
            nw = 0;
        }
        if (v == best)
            who[nw++] = e;
    }
    for (uint32_t i = 0; i < nw; i++)
        cur[who[i]]++;
    return nw > 0;
}

void ffn_batch_accum(const ffn_kernels *k, const ffn_sparse_layer *l, pi_act act, int dense,
                     const ffn_batch *b, size_t block_neurons, ffn_batch_scratch *s)
{
    for (;;) {
        memcpy(s->start, s->cur, b->n * sizeof *s->start);
        size_t taken = 0;
        while (taken < block_neurons && take_neuron(b, s->cur, s->end, s->who))
            taken++;
        if (taken == 0)
            return;
        /* Entry e's mask of this block: its neurons start[e] .. cur[e). */
        for (uint32_t e = 0; e < b->n; e++) {
            size_t m = s->cur[e] - s->start[e];
            const uint32_t *list = b->active[e] + s->start[e];
            if (m > 0)
                ffn_sparse_accum_rows(k, l, act, dense, b->x[e], list, m, s->acc[e]);
        }
    }
}
