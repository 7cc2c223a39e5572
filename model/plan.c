/* Placement plan: byte counts of the GPU part, the hot neuron count K and the
 * cold shards (see plan.h). Pure arithmetic over the model's shapes, so pid
 * and every worker reach the same answer. */
#include "plan.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static uint64_t tensor_bytes(const pi_tensor *t)
{
    return (uint64_t)t->rows * t->row_bytes;
}

uint64_t plan_weight_bytes(const pi_model *m)
{
    uint64_t b = tensor_bytes(&m->tok_embd) + tensor_bytes(&m->output_norm);
    if (!m->tied_output)
        b += tensor_bytes(&m->output);
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const pi_layer *y = &m->layers[l];
        b += tensor_bytes(&y->attn_norm) + tensor_bytes(&y->wq) + tensor_bytes(&y->wk) +
             tensor_bytes(&y->wv) + tensor_bytes(&y->wo) + tensor_bytes(&y->ffn_norm);
    }
    return b;
}

uint64_t plan_kv_bytes(const pi_model *m, uint32_t max_seqs, uint32_t n_ctx)
{
    uint64_t kv_dim = (uint64_t)m->n_kv_heads * m->head_dim;
    return (uint64_t)max_seqs * m->n_layers * n_ctx * kv_dim * 2 * sizeof(float);
}

pi_type plan_down_t_type(pi_type t)
{
    return (t == PI_TYPE_F16 || t == PI_TYPE_BF16) ? t : PI_TYPE_F32;
}

size_t plan_neuron_bytes_layer(const pi_model *m, uint32_t l)
{
    const pi_layer *y = &m->layers[l];
    size_t down_t = 0;
    /* dim is whole elements for every float type: cannot fail */
    (void)pi_row_bytes(plan_down_t_type(y->ffn_down.type), m->dim, &down_t);
    return y->ffn_gate.row_bytes + y->ffn_up.row_bytes + down_t;
}

void plan_write_down_t(const pi_model *m, uint32_t l, uint32_t n0, uint32_t n1, void *dst,
                       size_t stride)
{
    const pi_tensor *d = &m->layers[l].ffn_down;
    char *out = dst;
    if (d->type == PI_TYPE_F32 || d->type == PI_TYPE_F16 || d->type == PI_TYPE_BF16) {
        size_t es = d->type == PI_TYPE_F32 ? 4 : 2;
        for (uint64_t i = 0; i < d->rows; i++) {
            const char *row = pi_tensor_row(d, i);
            for (uint32_t j = n0; j < n1; j++)
                memcpy(out + (size_t)(j - n0) * stride + i * es, row + (size_t)j * es, es);
        }
        return;
    }
    /* Block types: dequantize each block of a down row that meets [n0, n1). */
    size_t be = pi_type_block_elems(d->type), bb = pi_type_block_bytes(d->type);
    float blk[32];
    for (uint64_t i = 0; i < d->rows; i++) {
        const char *row = pi_tensor_row(d, i);
        for (uint64_t b0 = n0 / be * be; b0 < n1; b0 += be) {
            pi_dequantize_row(d->type, row + b0 / be * bb, blk, be);
            for (uint64_t j = b0 < n0 ? n0 : b0; j < b0 + be && j < n1; j++) {
                float v = blk[j - b0];
                memcpy(out + (size_t)(j - n0) * stride + i * sizeof v, &v, sizeof v);
            }
        }
    }
}

plan_shard plan_shard_range(uint32_t n_hot, uint32_t n_ff, uint32_t index, uint32_t of)
{
    plan_shard s = {n_ff, n_ff};
    if (of == 0 || index >= of || n_hot >= n_ff)
        return s;
    uint64_t cold = n_ff - n_hot;
    s.begin = n_hot + (uint32_t)(cold * index / of);
    s.end = n_hot + (uint32_t)(cold * (index + 1) / of);
    return s;
}

static void fmt_bytes(char *buf, size_t cap, uint64_t b)
{
    if (b >= ((uint64_t)1 << 30))
        snprintf(buf, cap, "%.2f GiB", (double)b / (double)((uint64_t)1 << 30));
    else if (b >= ((uint64_t)1 << 20))
        snprintf(buf, cap, "%.2f MiB", (double)b / (double)((uint64_t)1 << 20));
    else
        snprintf(buf, cap, "%.1f KiB", (double)b / 1024.0);
}

/* Everything but K and the budget. */
static int plan_base(const pi_model *m, const plan_params *p, pi_plan *out, pi_error *err)
{
    memset(out, 0, sizeof *out);
    if (p->max_seqs == 0)
        return pi_error_set(err, "plan: max_seqs is 0; at least one sequence slot is needed");
    if (p->n_cpu_workers > PLAN_MAX_SHARDS)
        return pi_error_set(err, "plan: %u CPU workers; at most %d are supported", p->n_cpu_workers,
                            PLAN_MAX_SHARDS);
    out->n_layers = m->n_layers;
    out->n_ff = m->n_ff;
    out->n_ctx = p->n_ctx ? p->n_ctx : m->n_ctx;
    out->max_seqs = p->max_seqs;
    out->weight_bytes = plan_weight_bytes(m);
    out->kv_bytes = plan_kv_bytes(m, out->max_seqs, out->n_ctx);
    out->fixed_bytes = out->weight_bytes + out->kv_bytes;
    for (uint32_t l = 0; l < m->n_layers; l++)
        out->neuron_bytes += plan_neuron_bytes_layer(m, l);
    out->n_shards = p->n_cpu_workers;
    return 0;
}

/* K known: shards, byte totals and the summary. */
static int plan_finish(pi_plan *out, uint32_t n_hot, pi_error *err)
{
    if (n_hot > out->n_ff)
        return pi_error_set(err, "plan: %u hot neurons, but layers have only %u", n_hot, out->n_ff);
    if (out->n_shards == 0 && n_hot < out->n_ff)
        return pi_error_set(err, "plan: %u of %u neurons per layer would be cold but there are no CPU "
                            "workers; give a larger VRAM budget or at least one CPU worker",
                            out->n_ff - n_hot, out->n_ff);
    out->n_hot = n_hot;
    out->hot_bytes = (uint64_t)n_hot * out->neuron_bytes;
    out->gpu_bytes = out->fixed_bytes + out->hot_bytes;
    out->cold_bytes = (uint64_t)(out->n_ff - n_hot) * out->neuron_bytes;
    for (uint32_t i = 0; i < out->n_shards; i++)
        out->shards[i] = plan_shard_range(n_hot, out->n_ff, i, out->n_shards);
    char gpu[32], w[32], kv[32], hot[32], cold[32];
    fmt_bytes(gpu, sizeof gpu, out->gpu_bytes);
    fmt_bytes(w, sizeof w, out->weight_bytes);
    fmt_bytes(kv, sizeof kv, out->kv_bytes);
    fmt_bytes(hot, sizeof hot, out->hot_bytes);
    fmt_bytes(cold, sizeof cold, out->cold_bytes);
    snprintf(out->summary, sizeof out->summary,
             "hot %u/%u neurons per layer (%.1f%%); GPU %s = weights %s + KV %s (%u seqs x %u ctx) + "
             "hot FFN %s; cold FFN %s over %u CPU shard%s",
             n_hot, out->n_ff, out->n_ff ? 100.0 * n_hot / out->n_ff : 0.0, gpu, w, kv,
             out->max_seqs, out->n_ctx, hot, cold, out->n_shards, out->n_shards == 1 ? "" : "s");
    return 0;
}

int plan_make_fixed(const pi_model *m, const plan_params *p, uint32_t n_hot, pi_plan *out,
                    pi_error *err)
{
    if (plan_base(m, p, out, err) < 0 || plan_finish(out, n_hot, err) < 0)
        return -1;
    out->budget_bytes = p->budget_bytes;
    return 0;
}

int plan_make(const pi_model *m, const plan_params *p, pi_plan *out, pi_error *err)
{
    if (plan_base(m, p, out, err) < 0)
        return -1;
    uint64_t budget = p->budget_bytes;
    if (budget == 0 && p->device_free_bytes > 0)
        budget = p->device_free_bytes / 10 * 9;
    uint32_t n_hot;
    if (budget == 0) {
        /* host backend default: a quarter hot, so the CPU path always runs */
        n_hot = p->n_cpu_workers ? m->n_ff / 4 : m->n_ff;
    } else {
        if (budget < out->fixed_bytes) {
            char need[32], have[32];
            fmt_bytes(need, sizeof need, out->fixed_bytes);
            fmt_bytes(have, sizeof have, budget);
            return pi_error_set(err, "plan: VRAM budget %" PRIu64 " bytes (%s) is below the fixed GPU part "
                                "%" PRIu64 " bytes (%s: weights %" PRIu64 " + KV cache %" PRIu64 "); "
                                "raise the budget to at least %" PRIu64 " bytes or lower max_seqs/n_ctx",
                                budget, have, out->fixed_bytes, need, out->weight_bytes, out->kv_bytes,
                                out->fixed_bytes);
        }
        uint64_t fit = out->neuron_bytes ? (budget - out->fixed_bytes) / out->neuron_bytes : m->n_ff;
        n_hot = fit >= m->n_ff ? m->n_ff : (uint32_t)fit;
    }
    if (plan_finish(out, n_hot, err) < 0)
        return -1;
    out->budget_bytes = budget;
    return 0;
}
