/* The batched sparse FFN body (ffn_batch.h): a merge of the entries' sorted
 * ranges, one neuron of the union at a time, through the kernels' many-input
 * dots and axpys. Per entry the operations are ffn_sparse_accum's (gate dot
 * plus bias, the ReLU skip, the up dot, the activation, the h == 0 skip, the
 * axpy), on the same neurons in the same order: only the rows' reads are
 * shared. */
#include "ffn_batch.h"

#include <stdlib.h>
#include <string.h>

#include "ops.h"

int ffn_batch_scratch_init(ffn_batch_scratch *s, uint32_t max)
{
    memset(s, 0, sizeof *s);
    size_t n = max ? max : 1;
    s->max = max;
    s->cur = malloc(n * sizeof *s->cur);
    s->end = malloc(n * sizeof *s->end);
    s->acc = malloc(n * sizeof *s->acc);
    s->who = malloc(n * sizeof *s->who);
    s->who_next = malloc(n * sizeof *s->who_next);
    s->xs = malloc(n * sizeof *s->xs);
    s->ys = malloc(n * sizeof *s->ys);
    s->g = malloc(n * sizeof *s->g);
    s->u = malloc(n * sizeof *s->u);
    s->h = malloc(n * sizeof *s->h);
    if (!s->cur || !s->end || !s->acc || !s->who || !s->who_next || !s->xs || !s->ys || !s->g || !s->u ||
        !s->h)
        return -1;
    return 0;
}

void ffn_batch_scratch_free(ffn_batch_scratch *s)
{
    free(s->cur);
    free(s->end);
    free(s->acc);
    free(s->who);
    free(s->who_next);
    free((void *)s->xs);
    free(s->ys);
    free(s->g);
    free(s->u);
    free(s->h);
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

/* The next neuron of the union: the smallest b->active[e][cur[e]] over the
 * entries not yet at their end. The entries listing it go into who, in
 * entry order, and step past it; returns how many (0: the walk is over). */
static uint32_t next_neuron(const ffn_batch *b, size_t *cur, const size_t *end, uint32_t *j, uint32_t *who)
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
    *j = best;
    return nw;
}

static const void *row_at(const void *base, size_t stride, uint32_t j)
{
    return (const char *)base + (size_t)j * stride;
}

/* Neuron j for the nw entries who: its rows read once for all of them.
 * next_gate (or NULL) is the row the walk reads after this neuron. */
static void neuron(const ffn_kernels *k, const ffn_sparse_layer *l, pi_act act, int dense,
                   const ffn_batch *b, uint32_t j, const uint32_t *who, uint32_t nw, const void *next_gate,
                   ffn_batch_scratch *s)
{
    const void *gate = row_at(l->gate, l->gate_stride, j);
    const void *up = row_at(l->up, l->up_stride, j);
    const void *down = row_at(l->down_t, l->down_t_stride, j);
    int uses_up = pi_act_uses_up(act);
    for (uint32_t i = 0; i < nw; i++)
        s->xs[i] = b->x[who[i]];
    k->dot_many(l->gate_type, gate, s->xs, nw, l->dim, s->g, uses_up ? up : down);
    /* Keep the entries whose gate lets the neuron through (ffn_sparse_accum:
     * a ReLU gate <= 0 makes h exactly 0, up and down unread). */
    uint32_t m = 0;
    for (uint32_t i = 0; i < nw; i++) {
        float g = l->gate_bias ? s->g[i] + l->gate_bias[j] : s->g[i];
        if (!dense && act != PI_ACT_SILU && !(g > 0.0f))
            continue;
        s->g[m] = g;
        s->xs[m] = s->xs[i];
        s->ys[m] = s->acc[who[i]];
        m++;
    }
    if (m == 0)
        return;
    if (uses_up)
        k->dot_many(l->up_type, up, s->xs, m, l->dim, s->u, down);
    uint32_t na = 0;
    for (uint32_t i = 0; i < m; i++) {
        float h = ops_ffn_act(act, s->g[i], uses_up ? s->u[i] : 0.0f);
        if (!dense && h == 0.0f)
            continue;
        s->h[na] = h;
        s->ys[na] = s->ys[i];
        na++;
    }
    if (na > 0)
        k->axpy_many(l->down_t_type, s->h, down, s->ys, na, l->dim, next_gate);
}

void ffn_batch_accum(const ffn_kernels *k, const ffn_sparse_layer *l, pi_act act, int dense,
                     const ffn_batch *b, ffn_batch_scratch *s)
{
    /* One neuron ahead, so each neuron's kernels know the next gate row. */
    uint32_t j = 0, j_next = 0;
    uint32_t nw = next_neuron(b, s->cur, s->end, &j, s->who);
    while (nw > 0) {
        uint32_t nw_next = next_neuron(b, s->cur, s->end, &j_next, s->who_next);
        const void *next_gate = nw_next ? row_at(l->gate, l->gate_stride, j_next) : NULL;
        neuron(k, l, act, dense, b, j, s->who, nw, next_gate, s);
        uint32_t *t = s->who;
        s->who = s->who_next;
        s->who_next = t;
        j = j_next;
        nw = nw_next;
    }
}
