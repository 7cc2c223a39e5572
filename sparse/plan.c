/* Placement plan: byte counts of the GPU part, the hot neurons and the cold
 * shards (see plan.h). Arithmetic over the model's shapes and, for plans
 * from a placement, over the placement's hot sets, so pid and every worker
 * reach the same answer. */
#include "plan.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "placement.h"
#include "plan_bytes.h"
#include "sidecar.h"

uint32_t plan_kv_elem_bytes(const plan_params *p)
{
    return p->backend ? p->backend->kv_elem_bytes : (uint32_t)sizeof(float);
}

/* The backend's scratch for q's steps at n_ctx positions and n_hot hot
 * neurons a layer, solo steps' included; 0 on the host backend. */
static uint64_t backend_scratch(const pi_model *m, const plan_params *q, uint32_t n_ctx, uint32_t n_hot)
{
    if (!q->backend)
        return 0;
    uint64_t s = q->backend->scratch_bytes ? q->backend->scratch_bytes(m, q->max_batch, n_ctx, n_hot) : 0;
    return s + (q->backend->solo_bytes && q->solo_batch ? q->backend->solo_bytes(m, q->solo_batch) : 0);
}

uint64_t plan_reserve_bytes(const pi_model *m, const plan_params *p)
{
    if (!p->backend)
        return 0;
    return plan_predictor_bytes(m, p->pred_q8) + backend_scratch(m, p, p->n_ctx ? p->n_ctx : m->n_ctx, m->n_ff) +
           p->backend->context_bytes;
}

/* Rows of ffn_down_t (PowerInfer files without ffn_down) as plan_down_t_type
 * rows: copied for float types, dequantized to F32 for block types. */
static void copy_down_t_rows(const pi_tensor *dt, uint32_t dim, const int32_t *ids, uint32_t first, uint32_t n,
                             char *out, size_t stride)
{
    for (uint32_t k = 0; k < n; k++) {
        uint32_t j = ids ? (uint32_t)ids[k] : first + k;
        char *o = out + (size_t)k * stride;
        if (dt->type == PI_TYPE_F32 || dt->type == PI_TYPE_F16 || dt->type == PI_TYPE_BF16) {
            memcpy(o, pi_tensor_row(dt, j), dt->row_bytes);
            continue;
        }
        /* Block by block through an aligned buffer: records need not be. */
        size_t be = pi_type_block_elems(dt->type), bb = pi_type_block_bytes(dt->type);
        float blk[PI_MAX_BLOCK_ELEMS];
        for (uint32_t b = 0; b < dim / be; b++) {
            pi_dequantize_row(dt->type, (const char *)pi_tensor_row(dt, j) + (size_t)b * bb, blk, be);
            memcpy(o + (size_t)b * be * sizeof *blk, blk, be * sizeof *blk);
        }
    }
}

/* Neuron k of set s. */
static uint32_t set_id(plan_set s, uint32_t k)
{
    return s.ids ? (uint32_t)s.ids[k] : s.begin + k;
}

/* Down rows of a float type (es bytes an element) as down^T rows of set s,
 * DOWN_T_BAND down rows at a time: each destination cache line then takes a
 * band's consecutive elements at once, where one down row at a time wrote one
 * element a line (a 13B model's rows outside VRAM, ~2.3e9 scattered elements,
 * took 37 s of a GPU worker's load). */
#define DOWN_T_BAND 32
static void transpose_down(const pi_tensor *d, size_t es, plan_set s, char *out, size_t stride)
{
    for (uint64_t i0 = 0; i0 < d->rows; i0 += DOWN_T_BAND) {
        uint32_t nb = d->rows - i0 < DOWN_T_BAND ? (uint32_t)(d->rows - i0) : DOWN_T_BAND;
        const char *rows[DOWN_T_BAND];
        for (uint32_t i = 0; i < nb; i++)
            rows[i] = pi_tensor_row(d, i0 + i);
        for (uint32_t k = 0; k < s.n; k++) {
            size_t at = (size_t)set_id(s, k) * es;
            char *o = out + (size_t)k * stride + i0 * es;
            if (es == 2)
                for (uint32_t i = 0; i < nb; i++)
                    memcpy(o + (size_t)i * 2, rows[i] + at, 2);
            else
                for (uint32_t i = 0; i < nb; i++)
                    memcpy(o + (size_t)i * 4, rows[i] + at, 4);
        }
    }
}

void plan_write_down_t(const pi_model *m, uint32_t l, uint32_t n0, uint32_t n1, void *dst,
                       size_t stride)
{
    const pi_tensor *d = &m->layers[l].ffn_down;
    char *out = dst;
    if (!d->data) {
        copy_down_t_rows(&m->layers[l].ffn_down_t, m->dim, NULL, n0, n1 - n0, out, stride);
        return;
    }
    if (d->type == PI_TYPE_F32 || d->type == PI_TYPE_F16 || d->type == PI_TYPE_BF16) {
        transpose_down(d, d->type == PI_TYPE_F32 ? 4 : 2, (plan_set){NULL, n0, n1 - n0}, out, stride);
        return;
    }
    /* Block types: dequantize each block of a down row that meets [n0, n1). */
    size_t be = pi_type_block_elems(d->type), bb = pi_type_block_bytes(d->type);
    float blk[PI_MAX_BLOCK_ELEMS];
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


int plan_write_down_t_set(const pi_model *m, uint32_t l, plan_set s, void *dst, size_t stride, pi_error *err)
{
    const pi_layer *y = &m->layers[l];
    const pi_tensor *d = &y->ffn_down, *dt = &y->ffn_down_t;
    char *out = dst;
    pi_type t = plan_down_t_type(pi_layer_down_type(y));
    if (!d->data) {
        copy_down_t_rows(dt, m->dim, s.ids, s.begin, s.n, out, stride);
        return 0;
    }
    size_t row_bytes = 0;
    (void)pi_row_bytes(t, m->dim, &row_bytes);
    if (dt->data && dt->type == t && dt->row_bytes == row_bytes) {
        /* PowerInfer's layout already: row j = column j of down, same values */
        for (uint32_t k = 0; k < s.n; k++)
            memcpy(out + (size_t)k * stride, pi_tensor_row(dt, set_id(s, k)), row_bytes);
        return 0;
    }
    if (d->type == PI_TYPE_F32 || d->type == PI_TYPE_F16 || d->type == PI_TYPE_BF16) {
        transpose_down(d, d->type == PI_TYPE_F32 ? 4 : 2, s, out, stride);
        return 0;
    }
    /* Block types: one dequantized down row at a time, its set's elements gathered. */
    float *row = s.n ? malloc((size_t)m->n_ff * sizeof *row) : NULL;
    if (s.n && !row)
        return pi_error_set(err, "plan: out of memory for a down row of layer %u", l);
    for (uint64_t i = 0; i < d->rows && s.n; i++) {
        pi_dequantize_row(d->type, pi_tensor_row(d, i), row, m->n_ff);
        for (uint32_t k = 0; k < s.n; k++)
            memcpy(out + (size_t)k * stride + i * sizeof *row, &row[set_id(s, k)], sizeof *row);
    }
    free(row);
    return 0;
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
    if (p->backend && p->backend->kv_elem_bytes < PLAN_KV_ELEM_LEAST)
        return pi_error_set(err, "plan: the %s backend keeps %u-byte KV elements; the plan assumes at least %d",
                            p->backend->name, p->backend->kv_elem_bytes, PLAN_KV_ELEM_LEAST);
    out->n_layers = m->n_layers;
    out->n_ff = m->n_ff;
    out->n_ctx = p->n_ctx ? p->n_ctx : m->n_ctx;
    out->max_seqs = p->max_seqs;
    out->weight_bytes = plan_weight_bytes(m);
    out->kv_bytes = plan_kv_bytes_elem(m, out->max_seqs, out->n_ctx, plan_kv_elem_bytes(p));
    out->fixed_bytes = out->weight_bytes + out->kv_bytes;
    for (uint32_t l = 0; l < m->n_layers; l++)
        out->neuron_bytes += plan_neuron_bytes_layer(m, l);
    out->n_shards = p->n_cpu_workers;
    out->device_free_bytes = p->device_free_bytes;
    out->device_total_bytes = p->device_total_bytes;
    out->asked_seqs = out->max_seqs;
    out->asked_ctx = out->n_ctx;
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
    out->gpu_share = out->n_ff ? (double)n_hot / out->n_ff : 1.0;
    snprintf(out->summary, sizeof out->summary,
             "hot %u/%u neurons per layer (%.1f%%), index order [0, K) (no activation frequencies); GPU %s = "
             "weights %s + KV cache %s (%u positions x %u sequence%s) + hot FFN %s; cold FFN %s over %u CPU shard%s",
             n_hot, out->n_ff, out->n_ff ? 100.0 * n_hot / out->n_ff : 0.0, gpu, w, kv,
             out->n_ctx, out->max_seqs, out->max_seqs == 1 ? "" : "s", hot, cold, out->n_shards,
             out->n_shards == 1 ? "" : "s");
    return 0;
}

/* K and gpu_bytes known: what the GPU backend holds besides (p->backend),
 * noted in the summary. */
static void reserve_finish(const pi_model *m, const plan_params *p, pi_plan *out)
{
    out->predictor_bytes = p->backend ? plan_predictor_bytes(m, p->pred_q8) : 0;
    out->scratch_bytes = backend_scratch(m, p, out->n_ctx, out->n_hot);
    out->context_bytes = p->backend ? p->backend->context_bytes : 0;
    out->reserved_bytes = out->gpu_bytes + out->predictor_bytes + out->scratch_bytes + out->context_bytes;
    if (!p->backend)
        return;
    char pred[32], scr[32], ctx[32], all[32];
    fmt_bytes(pred, sizeof pred, out->predictor_bytes);
    fmt_bytes(scr, sizeof scr, out->scratch_bytes);
    fmt_bytes(ctx, sizeof ctx, out->context_bytes);
    fmt_bytes(all, sizeof all, out->reserved_bytes);
    size_t n = strlen(out->summary);
    snprintf(out->summary + n, sizeof out->summary - n,
             "; %s backend besides: predictors %s + scratch %s + context %s (GPU total %s)", p->backend->name, pred,
             scr, ctx, all);
}

int plan_make_fixed(const pi_model *m, const plan_params *p, uint32_t n_hot, pi_plan *out,
                    pi_error *err)
{
    if (plan_base(m, p, out, err) < 0 || plan_finish(out, n_hot, err) < 0)
        return -1;
    out->budget_bytes = p->budget_bytes;
    reserve_finish(m, p, out);
    return 0;
}

uint64_t plan_budget_from_free(uint64_t free_bytes)
{
    _Static_assert(PLAN_FREE_PCT % 10 == 0, "whole tenths: the arithmetic below");
    uint64_t b = free_bytes / 10 * (PLAN_FREE_PCT / 10); /* no overflow */
    return b >= PLAN_BUDGET_ROUND_FROM ? b / PLAN_BUDGET_ROUND * PLAN_BUDGET_ROUND : b;
}

/* GiB as --vram-budget takes it, rounded down (up: round_up): two
 * decimals, four below 1 GiB. */
static void fmt_gib(char *buf, size_t cap, uint64_t b, int round_up)
{
    uint64_t scale = b >= (1ull << 30) ? 100 : 10000, mib = b >> 20;
    if (round_up && (b & ((1ull << 20) - 1)))
        mib++;
    uint64_t units = (mib * scale + (round_up ? 1023 : 0)) / 1024; /* cannot overflow */
    snprintf(buf, cap, "%" PRIu64 ".%0*" PRIu64, units / scale, scale == 100 ? 2 : 4, units % scale);
}

/* The budget the plan fills: the one given, else PLAN_FREE_PCT% of the
 * device's free memory, else 0 (no device known). A budget given that the
 * device cannot hold is refused here, before anything is allocated. */
static int plan_budget(const plan_params *p, uint64_t *budget, pi_error *err)
{
    *budget = p->budget_bytes ? p->budget_bytes : plan_budget_from_free(p->device_free_bytes);
    uint64_t free_b = p->device_free_bytes;
    if (!p->budget_bytes || !free_b || p->budget_bytes <= free_b)
        return 0;
    char want[32], have[32], total[32], most[32];
    fmt_bytes(want, sizeof want, p->budget_bytes);
    fmt_bytes(have, sizeof have, free_b);
    fmt_bytes(total, sizeof total, p->device_total_bytes ? p->device_total_bytes : free_b);
    fmt_gib(most, sizeof most, free_b, 0);
    return pi_error_set(err, "plan: the VRAM budget %s is larger than the GPU's free memory (%s free of %s); "
                        "give --vram-budget %s or less, or leave it out to use %d%% of the free memory",
                        want, have, total, most, PLAN_FREE_PCT);
}

static uint64_t kv_of(const pi_model *m, const plan_params *q)
{
    return plan_kv_bytes_elem(m, q->max_seqs, q->n_ctx, plan_kv_elem_bytes(q));
}

/* What the budget holds beside the weights, the KV cache and the hot
 * neurons: the GPU backend's reserve, or on the host backend the
 * predictors, which a placement reserves all the same
 * (placement_predictor_bytes). */
static uint64_t kv_beside(const pi_model *m, const plan_params *q)
{
    return q->backend ? plan_reserve_bytes(m, q) : plan_predictor_bytes(m, q->pred_q8);
}

/* What room bytes of KV cache hold: positions at q's sequences, sequences
 * at q's positions, else one sequence as long as fits. */
static void kv_fits_text(const plan_params *q, uint64_t room, uint64_t pos, char *buf, size_t cap)
{
    uint64_t ctx_fit = room / ((uint64_t)q->max_seqs * pos), seqs_fit = room / ((uint64_t)q->n_ctx * pos);
    char a[64] = "", b[64] = "";
    if (ctx_fit)
        snprintf(a, sizeof a, "%u sequence%s x %" PRIu64 " position%s", q->max_seqs, q->max_seqs == 1 ? "" : "s",
                 ctx_fit, ctx_fit == 1 ? "" : "s");
    if (seqs_fit)
        snprintf(b, sizeof b, "%" PRIu64 " sequence%s x %u positions", seqs_fit, seqs_fit == 1 ? "" : "s",
                 q->n_ctx);
    if (!ctx_fit && !seqs_fit && room >= pos)
        snprintf(a, sizeof a, "1 sequence x %" PRIu64 " position%s", room / pos, room / pos == 1 ? "" : "s");
    if (!a[0] && !b[0])
        snprintf(buf, cap, "not one position fits");
    else
        snprintf(buf, cap, "%s%s%s would fit", a, a[0] && b[0] ? " or " : "", b);
}

/* The ways out besides smaller sizes: a budget of need bytes, unless the
 * GPU has less free. */
static void kv_way_text(const plan_params *q, uint64_t need, char *buf, size_t cap)
{
    char n[32], f[32];
    fmt_bytes(n, sizeof n, need);
    fmt_bytes(f, sizeof f, q->device_free_bytes);
    if (q->device_free_bytes && need > q->device_free_bytes) {
        snprintf(buf, cap, " (they would need a budget of %s, more than the GPU's %s free)", n, f);
        return;
    }
    char g[32];
    fmt_gib(g, sizeof g, need, 1);
    snprintf(buf, cap, ", or --vram-budget %s or more (%" PRIu64 " bytes)", g, need);
}

/* The error for a KV cache asked for that the room (budget - fixed) cannot
 * hold: the sizes that would fit, and the ways out. */
static int kv_refuse(const pi_model *m, const plan_params *q, uint64_t budget, int from_free, uint64_t fixed,
                     pi_error *err)
{
    uint64_t room = budget - fixed, pos = plan_kv_bytes_elem(m, 1, 1, plan_kv_elem_bytes(q)), kv = kv_of(m, q);
    uint64_t reserve = kv_beside(m, q);
    char need[32], bud[32], left[32], w[32], r[32], f[32], res[96] = "", src[96] = "", fits[160], way[160];
    fmt_bytes(need, sizeof need, kv);
    fmt_bytes(bud, sizeof bud, budget);
    fmt_bytes(left, sizeof left, room);
    fmt_bytes(w, sizeof w, plan_weight_bytes(m));
    fmt_bytes(r, sizeof r, reserve);
    fmt_bytes(f, sizeof f, q->device_free_bytes);
    if (reserve && q->backend)
        snprintf(res, sizeof res, " and %.24s reserve (%s)", q->backend->name, r);
    else if (reserve)
        snprintf(res, sizeof res, " and predictors (%s)", r);
    if (from_free)
        snprintf(src, sizeof src, " (%d%% of the GPU's %s free)", PLAN_FREE_PCT, f);
    kv_fits_text(q, room, pos, fits, sizeof fits);
    kv_way_text(q, fixed + kv, way, sizeof way);
    /* pi_error holds 512 bytes, the caller's context included: kept short */
    return pi_error_set(err, "plan: a KV cache of %u positions x %u sequence%s needs %s, but the VRAM budget %s%s "
                        "leaves %s beside the weights (%s)%s: %s. Give a smaller --ctx-size or --max-seqs%s",
                        q->n_ctx, q->max_seqs, q->max_seqs == 1 ? "" : "s", need, bud, src, left, w, res, fits, way);
}

/* The KV cache within the budget. When the cache asked for does not fit in
 * the room the budget leaves beside the weights and kv_beside (or,
 * with the budget from the free memory, which nobody sized, takes more than
 * half of it), the sizes in q->fit are lowered until it takes half the room,
 * the other half buying hot neurons: sequences first (down to 1), then
 * positions (in steps of PLAN_CTX_STEP). Sizes asked for are kept, and
 * refused when they do not fit. */
static int kv_fit(const pi_model *m, plan_params *q, uint64_t budget, int from_free, pi_error *err)
{
    uint64_t pos = plan_kv_bytes_elem(m, 1, 1, plan_kv_elem_bytes(q));
    uint64_t fixed = plan_weight_bytes(m) + kv_beside(m, q);
    if (budget == 0 || q->max_seqs == 0 || q->n_ctx == 0 || pos == 0 || budget <= fixed)
        return 0; /* plan_base or plan_make's fixed-part check says what is wrong */
    uint64_t room = budget - fixed, half = room / 2;
    if (q->fit && kv_of(m, q) > (from_free ? half : room)) {
        if ((q->fit & PLAN_FIT_SEQS) && kv_of(m, q) > half) {
            uint64_t s = half / ((uint64_t)q->n_ctx * pos); /* < max_seqs here */
            q->max_seqs = s < 1 ? 1 : (uint32_t)s;
        }
        if ((q->fit & PLAN_FIT_CTX) && kv_of(m, q) > half) {
            uint32_t least = q->n_ctx < PLAN_CTX_STEP ? q->n_ctx : PLAN_CTX_STEP;
            uint64_t c = half / ((uint64_t)q->max_seqs * pos) / PLAN_CTX_STEP * PLAN_CTX_STEP; /* < n_ctx */
            q->n_ctx = c < least ? least : (uint32_t)c;
        }
    }
    /* the scratch shrinks with n_ctx: the room only grew */
    fixed = plan_weight_bytes(m) + kv_beside(m, q);
    if (kv_of(m, q) <= budget - fixed)
        return 0;
    return kv_refuse(m, q, budget, from_free, fixed, err);
}

/* Where the budget came from and what became of the KV cache, after the
 * summary (pid's log, pid run's placement line, pictl status). */
static void size_note(pi_plan *out)
{
    char a[32], b[32], c[32];
    size_t n = strlen(out->summary);
    if (out->budget_from_free) {
        fmt_bytes(a, sizeof a, out->budget_bytes);
        fmt_bytes(b, sizeof b, out->device_free_bytes);
        fmt_bytes(c, sizeof c, out->device_total_bytes ? out->device_total_bytes : out->device_free_bytes);
        snprintf(out->summary + n, sizeof out->summary - n,
                 "; budget %s = %d%% of the GPU's %s free (a %d%% margin left free; %s total)", a,
                 PLAN_FREE_PCT, b, 100 - PLAN_FREE_PCT, c);
    } else if (out->device_free_bytes) {
        fmt_bytes(b, sizeof b, out->device_free_bytes);
        fmt_bytes(c, sizeof c, out->device_total_bytes ? out->device_total_bytes : out->device_free_bytes);
        snprintf(out->summary + n, sizeof out->summary - n, "; the GPU has %s free of %s", b, c);
    }
    if (out->asked_seqs == out->max_seqs && out->asked_ctx == out->n_ctx)
        return;
    n = strlen(out->summary);
    snprintf(out->summary + n, sizeof out->summary - n,
             "; KV cache lowered from %u positions x %u sequence%s to fit the budget (--ctx-size and "
             "--max-seqs choose)", out->asked_ctx, out->asked_seqs, out->asked_seqs == 1 ? "" : "s");
}

int plan_make(const pi_model *m, const plan_params *p, pi_plan *out, pi_error *err)
{
    uint64_t budget;
    if (plan_budget(p, &budget, err) < 0)
        return -1;
    /* q: p with the KV cache sizes this budget holds */
    plan_params q = *p;
    q.n_ctx = p->n_ctx ? p->n_ctx : m->n_ctx;
    int from_free = !p->budget_bytes && budget > 0;
    if (kv_fit(m, &q, budget, from_free, err) < 0 || plan_base(m, &q, out, err) < 0)
        return -1;
    out->asked_seqs = p->max_seqs;
    out->asked_ctx = p->n_ctx ? p->n_ctx : m->n_ctx;
    out->budget_from_free = from_free;
    uint32_t n_hot;
    if (budget == 0) {
        /* host backend default: a quarter hot, so the CPU path always runs */
        n_hot = q.n_cpu_workers ? m->n_ff / 4 : m->n_ff;
    } else {
        /* the GPU backend's predictors, scratch and context come out of the budget too */
        uint64_t reserve = plan_reserve_bytes(m, &q), fixed = out->fixed_bytes + reserve;
        if (budget < fixed) {
            char need[32], have[32];
            fmt_bytes(need, sizeof need, fixed);
            fmt_bytes(have, sizeof have, budget);
            return pi_error_set(err, "plan: VRAM budget %" PRIu64 " bytes (%s) is below the fixed GPU part "
                                "%" PRIu64 " bytes (%s: weights %" PRIu64 " + KV cache %" PRIu64 " + %.24s%s"
                                "predictors and scratch %" PRIu64 "); raise the budget to at least %" PRIu64
                                " bytes or lower max_seqs/n_ctx/max_batch",
                                budget, have, fixed, need, out->weight_bytes, out->kv_bytes,
                                q.backend ? q.backend->name : "", q.backend ? " " : "", reserve, fixed);
        }
        uint64_t fit = out->neuron_bytes ? (budget - fixed) / out->neuron_bytes : m->n_ff;
        n_hot = fit >= m->n_ff ? m->n_ff : (uint32_t)fit;
    }
    if (plan_finish(out, n_hot, err) < 0)
        return -1;
    out->budget_bytes = budget;
    reserve_finish(m, &q, out);
    size_note(out);
    return 0;
}

/* ---- plans from a placement ---- */

void plan_release(pi_plan *p)
{
    if (!p)
        return;
    free(p->order);
    free(p->layer_hot);
    free(p->layer_vram);
    free(p->hot_ids);
    p->order = NULL;
    p->layer_hot = NULL;
    p->layer_vram = NULL;
    p->hot_ids = NULL;
}

uint32_t plan_layer_hot(const pi_plan *p, uint32_t l)
{
    return p->layer_hot ? p->layer_hot[l] : p->n_hot;
}

plan_set plan_hot_set(const pi_plan *p, uint32_t l)
{
    if (!p->order)
        return (plan_set){NULL, 0, p->n_hot};
    return (plan_set){p->order + (size_t)l * p->n_ff, 0, p->layer_hot[l]};
}

plan_set plan_shard_set(const pi_plan *p, uint32_t shard, uint32_t l)
{
    if (shard >= p->n_shards)
        return (plan_set){NULL, p->n_ff, 0};
    if (!p->order)
        return (plan_set){NULL, p->shards[shard].begin, p->shards[shard].end - p->shards[shard].begin};
    /* contiguous chunks of the layer's ascending cold list, sizes within one */
    uint64_t cold = p->n_ff - p->layer_hot[l];
    uint32_t b = (uint32_t)(cold * shard / p->n_shards), e = (uint32_t)(cold * (shard + 1) / p->n_shards);
    return (plan_set){p->order + (size_t)l * p->n_ff + p->layer_hot[l] + b, 0, e - b};
}

/* Smallest and largest per-layer count of a side. */
static void count_range(const pi_plan *p, int hot, uint32_t shard, uint32_t *lo, uint32_t *hi)
{
    *lo = UINT32_MAX;
    *hi = 0;
    for (uint32_t l = 0; l < p->n_layers; l++) {
        uint32_t n = hot ? plan_layer_hot(p, l) : plan_shard_set(p, shard, l).n;
        *lo = n < *lo ? n : *lo;
        *hi = n > *hi ? n : *hi;
    }
    if (*lo > *hi)
        *lo = *hi;
}

static const char *source_name(const pi_plan *p)
{
    return p->from_freq ? "from activation frequencies" : "from a uniform placement (no frequencies)";
}

void plan_describe_hot(const pi_plan *p, char *buf, size_t cap)
{
    if (!p->order) {
        snprintf(buf, cap, "hot neurons [0, %u) of %u per layer", p->n_hot, p->n_ff);
        return;
    }
    uint32_t lo, hi;
    count_range(p, 1, 0, &lo, &hi);
    snprintf(buf, cap, "hot sets %s: %u..%u of %u neurons per layer, expected GPU share of activations %.1f%%",
             source_name(p), lo, hi, p->n_ff, 100.0 * p->gpu_share);
}

void plan_describe_shard(const pi_plan *p, uint32_t shard, char *buf, size_t cap)
{
    if (!p->order) {
        plan_shard r = shard < p->n_shards ? p->shards[shard] : (plan_shard){p->n_ff, p->n_ff};
        snprintf(buf, cap, "neurons [%u, %u) of %u per layer", r.begin, r.end, p->n_ff);
        return;
    }
    uint32_t lo, hi;
    count_range(p, 0, shard, &lo, &hi);
    snprintf(buf, cap, "cold chunk %u of %u %s: %u..%u of %u neurons per layer", shard, p->n_shards,
             source_name(p), lo, hi, p->n_ff);
}

/* Moves every cold neuron of o[h, n_ff) (ascending) whose running count
 * crosses a multiple of 1/share into a run right after the hot ones, the
 * rest after it, both still ascending; returns the warm count. Interleaved
 * rather than the first ones, so the warm get about `share` of the cold
 * activations whatever order the frequencies have (the plan keeps no
 * per-neuron frequencies), and every process computes the same split. */
static uint32_t split_warm(int32_t *o, uint32_t h, uint32_t n_ff, double share, int32_t *tmp)
{
    uint32_t nc = n_ff - h, nw = 0;
    for (uint32_t i = 0; i < nc; i++)
        if (floor((double)(i + 1) * share) > floor((double)i * share))
            nw++;
    uint32_t w = 0, c = nw;
    for (uint32_t i = 0; i < nc; i++) {
        if (floor((double)(i + 1) * share) > floor((double)i * share))
            tmp[w++] = o[h + i];
        else
            tmp[c++] = o[h + i];
    }
    memcpy(o + h, tmp, (size_t)nc * sizeof *o);
    return nw;
}

static int from_placement_fail(pi_plan *out, int rc)
{
    plan_release(out);
    return rc;
}

int plan_make_from_placement(const pi_model *m, const plan_params *pp, const placement *pl, pi_plan *out,
                             pi_error *err)
{
    if (plan_base(m, pp, out, err) < 0)
        return -1;
    if (pl->n_layers != m->n_layers || pl->n_ff != m->n_ff)
        return pi_error_set(err, "plan: the placement is for %u layers x %u neurons, the model has %u x %u",
                            pl->n_layers, pl->n_ff, m->n_layers, m->n_ff);
    uint64_t hash = placement_model_hash(m);
    if (pl->model_hash && hash && pl->model_hash != hash)
        return pi_error_set(err, "plan: the placement was made for another model (hash %016" PRIx64 ", this one "
                            "%016" PRIx64 "); re-plan", pl->model_hash, hash);
    for (uint32_t l = 0; l < m->n_layers; l++)
        if (pl->layers[l].neuron_bytes != plan_neuron_bytes_layer(m, l))
            return pi_error_set(err, "plan: the placement counts %" PRIu64 " bytes per neuron in layer %u, the "
                                "model %zu; it was made for another model file: re-plan",
                                pl->layers[l].neuron_bytes, l, plan_neuron_bytes_layer(m, l));
    /* The placement's KV may be fp16 (pid planned for CUDA) while this
     * process counts fp32 (a CPU worker): compare with the least this
     * max_seqs x n_ctx can need on any backend. */
    uint64_t least = out->weight_bytes + plan_kv_bytes_elem(m, out->max_seqs, out->n_ctx, PLAN_KV_ELEM_LEAST);
    if (pl->fixed_bytes < least)
        return pi_error_set(err, "plan: the placement reserved %" PRIu64 " GPU bytes for weights and KV cache, "
                            "this setup needs %" PRIu64 " (a larger max_seqs or n_ctx); re-plan for it",
                            pl->fixed_bytes, least);
    size_t n_ids;
    if (pi_mul_size(m->n_layers, m->n_ff, &n_ids) < 0 || n_ids > SIZE_MAX / sizeof(int32_t))
        return pi_error_set(err, "plan: %u x %u neurons overflow", m->n_layers, m->n_ff);
    uint32_t L = m->n_layers ? m->n_layers : 1;
    out->order = malloc((n_ids ? n_ids : 1) * sizeof *out->order);
    out->layer_hot = calloc(L, sizeof *out->layer_hot);
    out->layer_vram = calloc(L, sizeof *out->layer_vram);
    out->hot_ids = calloc(L, sizeof *out->hot_ids);
    double share = pp->warm_share > 0 && pp->warm_share <= 1 && out->n_shards > 0 ? pp->warm_share : 0;
    int32_t *tmp = share > 0 ? malloc((m->n_ff ? m->n_ff : 1) * sizeof *tmp) : NULL;
    if (!out->order || !out->layer_hot || !out->layer_vram || !out->hot_ids || (share > 0 && !tmp)) {
        free(tmp);
        return from_placement_fail(out, pi_error_set(err, "plan: out of memory for %u x %u neuron ids",
                                                     m->n_layers, m->n_ff));
    }
    uint64_t n_hot_all = 0, n_cold_any = 0, n_warm_all = 0;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const placement_layer *y = &pl->layers[l];
        int32_t *o = out->order + (size_t)l * m->n_ff;
        uint32_t k = 0;
        for (uint32_t i = 0; i < y->n_hot; i++)
            o[k++] = (int32_t)y->hot[i];
        for (uint32_t i = 0; i < m->n_ff; i++)
            if (!y->is_hot[i])
                o[k++] = (int32_t)i;
        if (k != m->n_ff) {
            free(tmp);
            return from_placement_fail(out, pi_error_set(err, "plan: layer %u of the placement lists %u hot "
                                                         "neurons that disagree with its flags", l, y->n_hot));
        }
        uint32_t nw = share > 0 ? split_warm(o, y->n_hot, m->n_ff, share, tmp) : 0;
        out->layer_vram[l] = y->n_hot;
        out->layer_hot[l] = y->n_hot + nw;
        out->hot_ids[l] = o;
        out->n_hot = out->layer_hot[l] > out->n_hot ? out->layer_hot[l] : out->n_hot;
        uint64_t nb = plan_neuron_bytes_layer(m, l);
        out->hot_bytes += y->n_hot * nb;
        out->warm_bytes += (uint64_t)nw * nb;
        out->cold_bytes += (uint64_t)(m->n_ff - y->n_hot - nw) * nb;
        n_hot_all += y->n_hot;
        n_warm_all += nw;
        n_cold_any += m->n_ff - y->n_hot - nw;
    }
    free(tmp);
    if (out->n_shards == 0 && n_cold_any > 0)
        return from_placement_fail(out, pi_error_set(err, "plan: %" PRIu64 " neurons would be cold but there "
                                                     "are no CPU workers; give a larger VRAM budget or at least "
                                                     "one CPU worker", n_cold_any));
    out->gpu_bytes = out->fixed_bytes + out->hot_bytes;
    out->budget_bytes = pl->budget_bytes;
    out->from_freq = !pl->uniform;
    out->gpu_share = placement_share(pl);
    uint64_t n_all = (uint64_t)m->n_layers * m->n_ff;
    uint32_t lo = UINT32_MAX, hi = 0;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        lo = out->layer_vram[l] < lo ? out->layer_vram[l] : lo;
        hi = out->layer_vram[l] > hi ? out->layer_vram[l] : hi;
    }
    lo = lo > hi ? hi : lo;
    char warm[160] = "", wb[32];
    if (n_warm_all > 0) {
        fmt_bytes(wb, sizeof wb, out->warm_bytes);
        snprintf(warm, sizeof warm, "; warm %" PRIu64 " neurons (%.1f%%, %s of pinned host memory, ~%.1f%% of "
                 "activations) read by the GPU over PCIe", n_warm_all, 100.0 * (double)n_warm_all / (double)n_all,
                 wb, 100.0 * share * (1.0 - out->gpu_share));
    }
    char gpu[32], w[32], kv[32], hot[32], cold[32], budget[32];
    fmt_bytes(gpu, sizeof gpu, out->gpu_bytes);
    fmt_bytes(w, sizeof w, out->weight_bytes);
    fmt_bytes(kv, sizeof kv, out->kv_bytes);
    fmt_bytes(hot, sizeof hot, out->hot_bytes);
    fmt_bytes(cold, sizeof cold, out->cold_bytes);
    fmt_bytes(budget, sizeof budget, out->budget_bytes);
    snprintf(out->summary, sizeof out->summary,
             "hot %" PRIu64 "/%" PRIu64 " neurons (%.1f%%; %u..%u of %u per layer) %s, expected GPU share of "
             "activations %.1f%%; GPU %s of budget %s = weights %s + KV cache %s (%u positions x %u sequence%s) + "
             "hot FFN %s%s; cold FFN %s over %u CPU shard%s",
             n_hot_all, n_all, n_all ? 100.0 * (double)n_hot_all / (double)n_all : 0.0, lo, hi, m->n_ff,
             source_name(out), 100.0 * out->gpu_share, gpu, budget, w, kv, out->n_ctx, out->max_seqs,
             out->max_seqs == 1 ? "" : "s", hot, warm, cold, out->n_shards, out->n_shards == 1 ? "" : "s");
    reserve_finish(m, pp, out);
    return 0;
}

/* ---- pid's and the workers' plans ---- */

/* Where pid keeps the plan cache: beside the model when its folder is
 * writable, else in dir (same file name). */
static int cache_path(const char *model_path, uint64_t budget, const char *dir, char *buf, size_t cap,
                      pi_error *err)
{
    if (placement_cache_path(model_path, budget, buf, cap, err) < 0)
        return -1;
    const char *slash = strrchr(buf, '/');
    char folder[4096];
    if (!slash)
        snprintf(folder, sizeof folder, ".");
    else if ((size_t)(slash - buf) < sizeof folder)
        snprintf(folder, sizeof folder, "%.*s", slash == buf ? 1 : (int)(slash - buf), buf);
    else
        folder[0] = 0;
    if (folder[0] && access(folder, W_OK) == 0)
        return 0;
    if (!dir || !dir[0])
        return pi_error_set(err, "plan: the folder of %s is not writable and no run folder was given for the "
                            "plan cache", model_path);
    char name[1024];
    snprintf(name, sizeof name, "%s", slash ? slash + 1 : buf);
    int w = snprintf(buf, cap, "%s/%s", dir, name);
    if (w < 0 || (size_t)w >= cap)
        return pi_error_set(err, "plan: the plan cache path in %s is too long", dir);
    return 0;
}

static void note(pi_plan *out, const char *fmt, const char *a, const char *b)
{
    size_t n = strlen(out->summary);
    snprintf(out->summary + n, sizeof out->summary - n, fmt, a, b);
}

placement_params plan_placement_params(const pi_model *m, const plan_params *pp, uint32_t max_seqs, uint32_t n_ctx,
                                       const pi_sidecar *sc)
{
    placement_params lp = {.max_seqs = max_seqs, .n_ctx = n_ctx, .kv_elem_bytes = plan_kv_elem_bytes(pp),
                           .predictor_bytes = placement_predictor_bytes(m, sc, pp->pred_q8)};
    if (pp->backend) {
        /* a GPU backend: the predictors it uploads (the model's own), its scratch and context */
        uint64_t own = plan_predictor_bytes(m, pp->pred_q8);
        lp.predictor_bytes = own > lp.predictor_bytes ? own : lp.predictor_bytes;
        lp.scratch_bytes = backend_scratch(m, pp, n_ctx ? n_ctx : m->n_ctx, m->n_ff) + pp->backend->context_bytes;
    }
    return lp;
}

int plan_make_for_model(const pi_model *m, const char *model_path, const plan_params *pp,
                        const char *fallback_dir, const char *worker_copy, pi_plan *out, char *plan_path,
                        size_t cap, pi_error *err)
{
    if (cap)
        plan_path[0] = 0;
    if (plan_make(m, pp, out, err) < 0)
        return -1;
    /* The placement and the workers use the sizes plan_make chose. */
    plan_params fp = *pp;
    fp.max_seqs = out->max_seqs;
    fp.n_ctx = out->n_ctx;
    fp.fit = 0;
    pp = &fp;
    uint32_t asked_seqs = out->asked_seqs, asked_ctx = out->asked_ctx;
    int from_free = out->budget_from_free;
    char side[4096];
    if (sidecar_path_for(model_path, side, sizeof side) < 0 || access(side, R_OK) != 0)
        return 0;
    pi_error serr = {{0}};
    pi_sidecar *sc = sidecar_open(side, m, &serr);
    if (!sc) {
        note(out, " (sparse sidecar %s ignored: %s)", side, serr.msg);
        return 0;
    }
    const float **freq = calloc(m->n_layers ? m->n_layers : 1, sizeof *freq);
    if (!freq) {
        sidecar_free(&sc);
        return pi_error_set(err, "plan: out of memory");
    }
    for (uint32_t l = 0; l < m->n_layers; l++)
        freq[l] = sidecar_freq(sc, l);
    placement_params lp = plan_placement_params(m, pp, out->max_seqs, out->n_ctx, sc);
    /* no budget given: buy what the index-order default would hold */
    lp.budget_bytes = out->budget_bytes ? out->budget_bytes
                                        : out->gpu_bytes + lp.predictor_bytes + lp.scratch_bytes;
    placement_key key = {placement_model_hash(m), lp.budget_bytes, placement_fixed_bytes(m, &lp),
                         placement_freq_hash(m->n_layers, m->n_ff, freq)};
    placement *pl = NULL;
    int rc = -1;
    if (cache_path(model_path, lp.budget_bytes, fallback_dir, plan_path, cap, err) < 0)
        goto out;
    if (access(plan_path, R_OK) == 0)
        pl = placement_load(plan_path, &key, &serr);  /* stale or foreign: solved again below */
    if (!pl) {
        if (!(pl = placement_for_model(m, &lp, freq, err)))
            goto out;
        if (placement_save(pl, plan_path, err) < 0)
            goto out;
    }
    if (worker_copy) {
        int w = snprintf(plan_path, cap, "%s", worker_copy);
        if (w < 0 || (size_t)w >= cap) {
            pi_error_set(err, "plan: the path %s is too long", worker_copy);
            goto out;
        }
        if (placement_save(pl, plan_path, err) < 0)
            goto out;
    }
    plan_release(out);
    rc = plan_make_from_placement(m, pp, pl, out, err);
    if (rc == 0) {
        out->asked_seqs = asked_seqs;
        out->asked_ctx = asked_ctx;
        out->budget_from_free = from_free;
        size_note(out);
    }
out:
    if (rc < 0) {
        pi_error_wrap(err, "placement from %s", side);
        if (cap)
            plan_path[0] = 0;
    }
    placement_free(&pl);
    free(freq);
    sidecar_free(&sc);
    return rc;
}

int plan_load_for_model(const pi_model *m, const char *plan_path, const plan_params *pp, pi_plan *out,
                        pi_error *err)
{
    /* The cache names what it was made for; the model hash is the check
     * that matters here (pid solved it for this budget and profile). */
    gguf_file *f = gguf_open(plan_path, err);
    if (!f)
        return pi_error_wrap(err, "--plan");
    placement_key key = {.model_hash = placement_model_hash(m)};
    int rc = gguf_get_u64(f, "pi.plan.budget_bytes", &key.budget_bytes, err) < 0 ||
             gguf_get_u64(f, "pi.plan.fixed_bytes", &key.fixed_bytes, err) < 0 ||
             gguf_get_u64(f, "pi.plan.freq_hash", &key.freq_hash, err) < 0 ? -1 : 0;
    gguf_close(&f);
    if (rc < 0)
        return pi_error_wrap(err, "--plan %s: not a pi plan cache", plan_path);
    placement *pl = placement_load(plan_path, &key, err);
    if (!pl)
        return -1;
    rc = plan_make_from_placement(m, pp, pl, out, err);
    placement_free(&pl);
    return rc < 0 ? pi_error_wrap(err, "--plan %s", plan_path) : 0;
}
