#include "step_layout.h"

#include <string.h>

#define LINE 64u

/* Carves regions off a growing offset; any overflow sticks in `bad`. */
typedef struct cursor {
    size_t at;
    int bad;
} cursor;

static size_t take(cursor *c, size_t align, size_t bytes)
{
    size_t start;
    if (c->bad || pi_add_size(c->at, align - 1, &start) != 0) {
        c->bad = 1;
        return 0;
    }
    start &= ~(size_t)(align - 1);
    if (pi_add_size(start, bytes, &c->at) != 0)
        c->bad = 1;
    return start;
}

/* a*b*elem bytes, or sets bad. */
static size_t bytes3(cursor *c, size_t a, size_t b, size_t elem)
{
    size_t ab, r;
    if (pi_mul_size(a, b, &ab) != 0 || pi_mul_size(ab, elem, &r) != 0) {
        c->bad = 1;
        return 0;
    }
    return r;
}

int step_layout_compute(const step_params *p, step_layout *out, pi_error *err)
{
    if (!p->n_layers || !p->dim || !p->n_ff || !p->n_vocab || !p->max_batch)
        return pi_error_set(err,
                            "step layout: n_layers %u, dim %u, n_ff %u, n_vocab %u, max_batch %u: "
                            "all must be at least 1",
                            p->n_layers, p->dim, p->n_ff, p->n_vocab, p->max_batch);
    if (p->n_ff > INT32_MAX)
        return pi_error_set(err, "step layout: n_ff %u does not fit the int32 neuron indices",
                            p->n_ff);
    step_layout l;
    memset(&l, 0, sizeof l);
    l.p = *p;
    cursor c = {0, 0};
    /* Small, hot, one-writer lines first; then the page-aligned buffers. */
    take(&c, LINE, sizeof(step_header));
    l.off_layer_seq = take(&c, LINE, sizeof(seq_counter));
    l.off_abort_seq = take(&c, LINE, sizeof(seq_counter));
    l.off_done_seq = take(&c, LINE, bytes3(&c, p->n_cpu_workers, 1, sizeof(seq_counter)));
    l.off_cpu_stats = take(&c, LINE, bytes3(&c, p->n_cpu_workers, 1, sizeof(step_cpu_stats)));
    l.off_bell = take(&c, LINE, sizeof(step_bell));
    l.off_cmd = take(&c, LINE, sizeof(step_cmd) + bytes3(&c, p->max_batch, 1, sizeof(step_seq)));
    l.off_active_counts = take(&c, LINE, bytes3(&c, p->max_batch, 1, sizeof(int32_t)));
    l.off_x = take(&c, STEP_BUF_ALIGN, bytes3(&c, p->max_batch, p->dim, sizeof(float)));
    l.off_active_idx =
        take(&c, STEP_BUF_ALIGN, bytes3(&c, p->max_batch, p->n_ff, sizeof(int32_t)));
    /* Each worker's partial buffer starts on its own page. */
    size_t part = bytes3(&c, p->max_batch, p->dim, sizeof(float));
    cursor stride = {0, c.bad};
    take(&stride, 1, part);
    l.partial_stride = take(&stride, STEP_BUF_ALIGN, 0);
    c.bad |= stride.bad;
    l.off_partial = take(&c, STEP_BUF_ALIGN, bytes3(&c, p->n_cpu_workers, l.partial_stride, 1));
    l.off_logits = take(&c, STEP_BUF_ALIGN, bytes3(&c, p->max_batch, p->n_vocab, sizeof(float)));
    l.total_bytes = take(&c, STEP_BUF_ALIGN, 0);
    if (c.bad)
        return pi_error_set(err,
                            "step layout: n_layers %u, dim %u, n_ff %u, n_vocab %u, max_batch %u, "
                            "n_cpu_workers %u: the segment size overflows; lower max_batch",
                            p->n_layers, p->dim, p->n_ff, p->n_vocab, p->max_batch,
                            p->n_cpu_workers);
    *out = l;
    return 0;
}

void step_header_write(void *base, const step_layout *l)
{
    step_header *h = base;
    memset(h, 0, sizeof *h);
    memcpy(h->magic, STEP_MAGIC, 8);
    h->version = STEP_VERSION;
    h->header_bytes = sizeof *h;
    h->params = l->p;
    h->total_bytes = l->total_bytes;
    h->off_layer_seq = l->off_layer_seq;
    h->off_abort_seq = l->off_abort_seq;
    h->off_done_seq = l->off_done_seq;
    h->off_cmd = l->off_cmd;
    h->off_active_counts = l->off_active_counts;
    h->off_x = l->off_x;
    h->off_active_idx = l->off_active_idx;
    h->off_partial = l->off_partial;
    h->partial_stride = l->partial_stride;
    h->off_logits = l->off_logits;
    h->off_cpu_stats = l->off_cpu_stats;
    h->off_bell = l->off_bell;
}

static int check_param(const char *what, uint32_t seg, uint32_t mine, pi_error *err)
{
    if (seg == mine)
        return 0;
    return pi_error_set(err,
                        "step segment: %s is %u in the segment but %u in this worker's model: "
                        "pid and the worker loaded different models or settings; restart "
                        "them with the same model",
                        what, seg, mine);
}

int step_header_check(const void *base, size_t mapped_bytes, const step_params *expect,
                      step_layout *out, pi_error *err)
{
    const step_header *h = base;
    if (mapped_bytes < sizeof *h || memcmp(h->magic, STEP_MAGIC, 8) != 0)
        return pi_error_set(err, "step segment: no '%s' magic at its start: not a step "
                                 "segment, or pid has not written it yet",
                            STEP_MAGIC);
    if (h->version != STEP_VERSION || h->header_bytes != sizeof *h)
        return pi_error_set(err,
                            "step segment: version %u (header %u bytes) but this worker speaks "
                            "version %u (%zu bytes): pid and the worker come from different "
                            "builds; install one build",
                            h->version, h->header_bytes, STEP_VERSION, sizeof *h);
    const step_params *s = &h->params;
    if (check_param("n_layers", s->n_layers, expect->n_layers, err) ||
        check_param("dim", s->dim, expect->dim, err) ||
        check_param("n_ff", s->n_ff, expect->n_ff, err) ||
        check_param("n_vocab", s->n_vocab, expect->n_vocab, err) ||
        check_param("max_batch", s->max_batch, expect->max_batch, err) ||
        check_param("n_cpu_workers", s->n_cpu_workers, expect->n_cpu_workers, err))
        return -1;
    step_layout l;
    if (step_layout_compute(expect, &l, err) != 0)
        return pi_error_wrap(err, "step segment");
    if (h->total_bytes != l.total_bytes || h->off_layer_seq != l.off_layer_seq ||
        h->off_abort_seq != l.off_abort_seq || h->off_done_seq != l.off_done_seq ||
        h->off_cmd != l.off_cmd || h->off_active_counts != l.off_active_counts ||
        h->off_x != l.off_x || h->off_active_idx != l.off_active_idx ||
        h->off_partial != l.off_partial || h->partial_stride != l.partial_stride ||
        h->off_logits != l.off_logits || h->off_cpu_stats != l.off_cpu_stats || h->off_bell != l.off_bell)
        return pi_error_set(err, "step segment: its offsets differ from the ones this worker "
                                 "computes for the same shape: pid and the worker come from "
                                 "different builds; install one build");
    if (mapped_bytes < l.total_bytes)
        return pi_error_set(err, "step segment: %zu bytes mapped but the layout needs %zu: "
                                 "the segment was truncated or is not the step segment",
                            mapped_bytes, l.total_bytes);
    *out = l;
    return 0;
}

static char *at(void *base, size_t off) { return (char *)base + off; }

step_header *step_header_at(void *base) { return base; }
step_cmd *step_command(void *base, const step_layout *l)
{
    return (step_cmd *)at(base, l->off_cmd);
}
float *step_x(void *base, const step_layout *l) { return (float *)at(base, l->off_x); }
seq_counter *step_layer_seq(void *base, const step_layout *l)
{
    return (seq_counter *)at(base, l->off_layer_seq);
}
seq_counter *step_abort_seq(void *base, const step_layout *l)
{
    return (seq_counter *)at(base, l->off_abort_seq);
}
int32_t *step_active_counts(void *base, const step_layout *l)
{
    return (int32_t *)at(base, l->off_active_counts);
}
int32_t *step_active_idx(void *base, const step_layout *l, uint32_t seq)
{
    if (seq >= l->p.max_batch)
        return NULL;
    return (int32_t *)at(base, l->off_active_idx) + (size_t)seq * l->p.n_ff;
}
float *step_logits(void *base, const step_layout *l)
{
    return (float *)at(base, l->off_logits);
}
float *step_partial(void *base, const step_layout *l, uint32_t worker)
{
    if (worker >= l->p.n_cpu_workers)
        return NULL;
    return (float *)at(base, l->off_partial + (size_t)worker * l->partial_stride);
}
seq_counter *step_done_seq(void *base, const step_layout *l, uint32_t worker)
{
    if (worker >= l->p.n_cpu_workers)
        return NULL;
    return (seq_counter *)at(base, l->off_done_seq) + worker;
}
step_cpu_stats *step_cpu_stats_at(void *base, const step_layout *l, uint32_t worker)
{
    if (worker >= l->p.n_cpu_workers)
        return NULL;
    return (step_cpu_stats *)at(base, l->off_cpu_stats) + worker;
}

step_bell *step_bell_at(void *base, const step_layout *l)
{
    return (step_bell *)at(base, l->off_bell);
}
