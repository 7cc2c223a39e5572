/* The placement plan respects the VRAM budget, splits the cold neurons [K, n_ff) into contiguous shards that cover them exactly, and refuses impossible budgets with the bytes needed; plans from a frequency placement put every neuron exactly once (hot, or in one balanced cold chunk), hold what the host backend allocates, stay in the budget, and reach the workers through the plan cache; for a CUDA GPU (plan_params.backend, gpu_worker/cuda_needs.h) the backend's scratch is reserved inside the budget too. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "check.h"
#include "ops.h"
#include "quant.h"
#include "cuda_needs.h"
#include "placement.h"
#include "plan.h"
#include "rand_model.h"
#include "sidecar.h"

static void check_shards(const pi_plan *p)
{
    uint32_t at = p->n_hot, lo = UINT32_MAX, hi = 0;
    for (uint32_t i = 0; i < p->n_shards; i++) {
        plan_shard s = p->shards[i];
        CHECK(s.begin == at, "shard %u begins at %u, expected %u", i, s.begin, at);
        CHECK(s.end >= s.begin, "shard %u reversed", i);
        plan_shard again = plan_shard_range(p->n_hot, p->n_ff, i, p->n_shards);
        CHECK(again.begin == s.begin && again.end == s.end, "plan_shard_range disagrees with the plan");
        uint32_t size = s.end - s.begin;
        lo = size < lo ? size : lo;
        hi = size > hi ? size : hi;
        at = s.end;
    }
    if (p->n_shards) {
        CHECK(at == p->n_ff, "shards end at %u, not n_ff %u", at, p->n_ff);
        CHECK(hi - lo <= 1, "shard sizes differ by %u", hi - lo);
    }
}

/* Every neuron of every layer exactly once: in the hot set or in one shard;
 * sets ascending; shards of a layer balanced within one neuron. */
static void check_sets(const pi_model *m, const pi_plan *p, const placement *pl)
{
    uint8_t *seen = malloc(m->n_ff);
    CHECK(seen, "oom");
    uint64_t hot_bytes = 0, cold_bytes = 0;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        memset(seen, 0, m->n_ff);
        plan_set h = plan_hot_set(p, l);
        CHECK(h.ids && h.n == pl->layers[l].n_hot && h.n == plan_layer_hot(p, l) && h.n <= p->n_hot,
              "layer %u: hot set of %u, placement %u", l, h.n, pl->layers[l].n_hot);
        CHECK(p->hot_ids[l] == h.ids && p->layer_hot[l] == h.n, "hot_ids / layer_hot disagree");
        for (uint32_t k = 0; k < h.n; k++) {
            CHECK(h.ids[k] >= 0 && (uint32_t)h.ids[k] < m->n_ff && (k == 0 || h.ids[k] > h.ids[k - 1]),
                  "layer %u hot set not ascending at %u", l, k);
            CHECK((uint32_t)h.ids[k] == pl->layers[l].hot[k], "layer %u: hot %u differs from the placement", l, k);
            seen[h.ids[k]]++;
        }
        uint32_t lo = UINT32_MAX, hi = 0;
        for (uint32_t i = 0; i < p->n_shards; i++) {
            plan_set c = plan_shard_set(p, i, l);
            CHECK(c.ids || c.n == 0, "layer %u shard %u: no ids", l, i);
            for (uint32_t k = 0; k < c.n; k++) {
                CHECK(c.ids[k] >= 0 && (uint32_t)c.ids[k] < m->n_ff && (k == 0 || c.ids[k] > c.ids[k - 1]),
                      "layer %u shard %u not ascending", l, i);
                CHECK(!pl->layers[l].is_hot[c.ids[k]], "layer %u: hot neuron %d in shard %u", l, c.ids[k], i);
                seen[c.ids[k]]++;
            }
            lo = c.n < lo ? c.n : lo;
            hi = c.n > hi ? c.n : hi;
        }
        CHECK(p->n_shards == 0 || hi - lo <= 1, "layer %u: shard sizes %u..%u", l, lo, hi);
        for (uint32_t j = 0; j < m->n_ff; j++)
            CHECK(seen[j] == 1, "layer %u neuron %u placed %u times", l, j, seen[j]);
        hot_bytes += (uint64_t)h.n * plan_neuron_bytes_layer(m, l);
        cold_bytes += (uint64_t)(m->n_ff - h.n) * plan_neuron_bytes_layer(m, l);
    }
    CHECK(p->hot_bytes == hot_bytes && p->cold_bytes == cold_bytes && p->gpu_bytes == p->fixed_bytes + hot_bytes,
          "plan bytes");
    free(seen);
}

/* With a warm share: each layer's GPU set is the placement's hot neurons
 * (VRAM), then floor(share x cold) warm ones, both runs ascending; the CPU
 * shards hold the rest; every neuron once; VRAM bytes unchanged (base: the
 * same plan without warm). */
static void check_warm(const pi_model *m, const pi_plan *p, const pi_plan *base, const placement *pl, double share)
{
    uint8_t *seen = malloc(m->n_ff);
    CHECK(seen && p->layer_vram, "oom / no layer_vram");
    uint64_t warm_bytes = 0;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        memset(seen, 0, m->n_ff);
        uint32_t hot = pl->layers[l].n_hot, cold = m->n_ff - hot, nw = (uint32_t)floor(cold * share);
        plan_set g = plan_hot_set(p, l);
        CHECK(p->layer_vram[l] == hot && g.n == hot + nw && g.n <= p->n_hot,
              "layer %u: %u VRAM + %u on the GPU side, want %u + %u", l, p->layer_vram[l], g.n, hot, nw);
        for (uint32_t k = 0; k < g.n; k++) {
            CHECK(k == 0 || k == hot || g.ids[k] > g.ids[k - 1], "layer %u: GPU set not two ascending runs", l);
            CHECK(k >= hot ? !pl->layers[l].is_hot[g.ids[k]] : (uint32_t)g.ids[k] == pl->layers[l].hot[k],
                  "layer %u: position %u of the GPU set", l, k);
            seen[g.ids[k]]++;
        }
        for (uint32_t i = 0; i < p->n_shards; i++) {
            plan_set c = plan_shard_set(p, i, l);
            for (uint32_t k = 0; k < c.n; k++)
                seen[c.ids[k]]++;
        }
        for (uint32_t j = 0; j < m->n_ff; j++)
            CHECK(seen[j] == 1, "layer %u neuron %u placed %u times with warm", l, j, seen[j]);
        warm_bytes += (uint64_t)nw * plan_neuron_bytes_layer(m, l);
    }
    CHECK(p->hot_bytes == base->hot_bytes && p->gpu_bytes == base->gpu_bytes && p->warm_bytes == warm_bytes &&
          p->warm_bytes + p->cold_bytes == base->cold_bytes, "warm plan bytes");
    CHECK(warm_bytes == 0 || strstr(p->summary, "warm "), "summary without warm: %s", p->summary);
    free(seen);
}

/* The host backend given the plan's hot sets holds exactly the plan's GPU bytes. */
static void check_backend_bytes(const pi_model *m, const pi_plan *p)
{
    pi_error err = {{0}};
    gpu_backend_config cfg = {.n_hot = p->n_hot, .hot = p->hot_ids, .hot_count = p->layer_hot,
                              .max_seqs = p->max_seqs, .n_ctx = p->n_ctx, .max_batch = 2};
    gpu_backend *b = gpu_backend_host.create(m, &cfg, &err);
    CHECK(b, "%s", err.msg);
    CHECK(gpu_backend_host.device_bytes(b) == p->gpu_bytes, "host backend holds %" PRIu64 ", plan %" PRIu64,
          gpu_backend_host.device_bytes(b), p->gpu_bytes);
    gpu_backend_host.destroy(&b);
}

/* Down^T rows of float models, element by element against the down tensor
 * itself (ops_tensor_get): a set in any order and a range, with dim 40 (a
 * band of 32 rows and a short one) and a destination stride beyond a row. */
static void check_down_t_float(pi_type type)
{
    char path[512];
    test_tmp("plan_down_t.gguf", path, sizeof path);
    rand_model_shape sh = {.dim = 40, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .n_ff = 72, .n_vocab = 32,
                           .n_ctx = 16, .type = type, .act = PI_ACT_RELU, .seed = 3};
    pi_error err = {{0}};
    CHECK(rand_model_write(path, &sh, &err) == 0, "%s", err.msg);
    pi_model *m = model_open(path, &err);
    CHECK(m, "%s", err.msg);
    const pi_tensor *d = &m->layers[1].ffn_down;
    CHECK(d->data && d->type == type, "down of type %d", (int)d->type);
    const int32_t ids[] = {71, 0, 33, 5, 32, 64, 31};
    uint32_t n = sizeof ids / sizeof ids[0], es = type == PI_TYPE_F32 ? 4 : 2, stride = 48 * es;
    unsigned char *a = calloc(72, stride);
    CHECK(a, "oom");
    for (int pass = 0; pass < 2; pass++) {
        uint32_t cnt = pass ? 72 - 10 : n;
        if (pass)
            plan_write_down_t(m, 1, 10, 72, a, stride);
        else
            CHECK(plan_write_down_t_set(m, 1, (plan_set){ids, 0, n}, a, stride, &err) == 0, "%s", err.msg);
        for (uint32_t k = 0; k < cnt; k++)
            for (uint32_t i = 0; i < m->dim; i++) {
                uint32_t j = pass ? 10 + k : (uint32_t)ids[k];
                const unsigned char *e = a + (size_t)k * stride + (size_t)i * es;
                uint16_t h;
                float got;
                if (es == 4) {
                    memcpy(&got, e, 4);
                } else {
                    memcpy(&h, e, 2);
                    got = type == PI_TYPE_BF16 ? pi_bf16_to_fp32(h) : pi_fp16_to_fp32(h);
                }
                CHECK(got == ops_tensor_get(d, i, j), "%s down^T %s: neuron %u element %u: %g, want %g",
                      pi_type_name(type), pass ? "range" : "set", j, i, got, ops_tensor_get(d, i, j));
            }
    }
    free(a);
    model_close(&m);
    remove(path);
}

/* Sets' down^T rows equal the range writer's, neuron by neuron (Q8_0: dequantized). */
static void check_down_t_set(const pi_model *m)
{
    pi_error err = {{0}};
    const int32_t ids[] = {0, 5, 31, 32, 33, 64, 95};
    uint32_t n = sizeof ids / sizeof ids[0];
    size_t rb = 0;
    CHECK(pi_row_bytes(plan_down_t_type(m->layers[1].ffn_down.type), m->dim, &rb) == 0, "row bytes");
    char *a = malloc(n * rb), *b = malloc(rb);
    CHECK(a && b, "oom");
    CHECK(plan_write_down_t_set(m, 1, (plan_set){ids, 0, n}, a, rb, &err) == 0, "%s", err.msg);
    for (uint32_t k = 0; k < n; k++) {
        plan_write_down_t(m, 1, (uint32_t)ids[k], (uint32_t)ids[k] + 1, b, rb);
        CHECK(!memcmp(a + k * rb, b, rb), "down^T row of neuron %d differs", ids[k]);
    }
    free(a);
    free(b);
}

static void check_from_placement(const pi_model *m, const char *model_path)
{
    pi_error err = {{0}};
    /* Skewed random frequencies, different per layer. */
    float *f = malloc((size_t)m->n_layers * m->n_ff * sizeof *f);
    const float **freq = malloc(m->n_layers * sizeof *freq);
    CHECK(f && freq, "oom");
    uint64_t seed = 5;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        freq[l] = f + (size_t)l * m->n_ff;
        for (uint32_t j = 0; j < m->n_ff; j++) {
            float u = rand_model_uniform(&seed) * 0.5f + 0.5f;   /* [0, 1) */
            f[(size_t)l * m->n_ff + j] = u * u * u * u / (float)(l + 1);
        }
    }
    check_down_t_set(m);
    check_down_t_float(PI_TYPE_F16);
    check_down_t_float(PI_TYPE_BF16);
    check_down_t_float(PI_TYPE_F32);
    uint64_t fixed = plan_weight_bytes(m) + plan_kv_bytes(m, 2, 64);
    uint64_t nb = plan_neuron_bytes_layer(m, 0);
    for (uint32_t shards = 0; shards <= 4; shards++)
        for (uint64_t buy = 0; buy <= 3 * 96; buy += 37) {
            uint64_t budget = fixed + buy * nb + buy % 7;
            if (shards == 0)
                budget = fixed + 3 * 96 * nb;   /* no workers: everything must fit */
            placement_params lp = {.max_seqs = 2, .n_ctx = 64, .budget_bytes = budget};
            placement *pl = placement_for_model(m, &lp, freq, &err);
            CHECK(pl, "%s", err.msg);
            plan_params pp = {.max_seqs = 2, .n_ctx = 64, .n_cpu_workers = shards};
            pi_plan p;
            CHECK(plan_make_from_placement(m, &pp, pl, &p, &err) == 0, "%s", err.msg);
            CHECK(p.gpu_bytes <= budget && p.budget_bytes == budget, "plan %" PRIu64 " over budget %" PRIu64,
                  p.gpu_bytes, budget);
            CHECK(p.gpu_bytes + nb > budget || p.cold_bytes == 0, "a neuron's bytes left unused");
            CHECK(p.from_freq && p.gpu_share == placement_share(pl), "share");
            CHECK(p.hot_bytes == 0 || p.gpu_share * 96 * 3 >= (double)(p.hot_bytes / nb) - 1e-9,
                  "frequency placement serves less than its hot fraction");
            CHECK(strstr(p.summary, "from activation frequencies") && strstr(p.summary, "expected GPU share"),
                  "summary '%s'", p.summary);
            check_sets(m, &p, pl);
            check_backend_bytes(m, &p);
            if (shards > 0) {
                for (int k = 1; k <= 3; k++) {
                    double share = k == 3 ? 1.0 : 0.3 * k;
                    plan_params wp = pp;
                    wp.warm_share = share;
                    pi_plan q;
                    CHECK(plan_make_from_placement(m, &wp, pl, &q, &err) == 0, "%s", err.msg);
                    check_warm(m, &q, &p, pl, share);
                    plan_release(&q);
                }
            }
            /* A second plan over the same struct after release, and release twice. */
            plan_release(&p);
            plan_release(&p);
            /* KV bigger than the placement reserved, even counted at fp16 (the
             * least a backend holds): refused (it would exceed the budget). */
            pp.max_seqs = 5;
            CHECK(plan_make_from_placement(m, &pp, pl, &p, &err) < 0 && strstr(err.msg, "re-plan"),
                  "bigger KV accepted: %s", err.msg);
            placement_free(&pl);
        }
    /* Cold neurons but no CPU workers: refused. */
    placement_params lp = {.max_seqs = 1, .n_ctx = 64, .budget_bytes = fixed + 10 * nb};
    placement *pl = placement_for_model(m, &lp, freq, &err);
    CHECK(pl, "%s", err.msg);
    plan_params pp = {.max_seqs = 1, .n_ctx = 64, .n_cpu_workers = 0};
    pi_plan p;
    CHECK(plan_make_from_placement(m, &pp, pl, &p, &err) < 0 && strstr(err.msg, "CPU worker"), "%s", err.msg);
    placement_free(&pl);

    /* pid without a sidecar: index order, no plan file. */
    char plan_path[1200], side[1024];
    pp = (plan_params){.max_seqs = 2, .n_ctx = 64, .n_cpu_workers = 2, .budget_bytes = fixed + 50 * nb};
    CHECK(sidecar_path_for(model_path, side, sizeof side) == 0, "sidecar path");
    remove(side);
    CHECK(plan_make_for_model(m, model_path, &pp, "/nonexistent", NULL, &p, plan_path, sizeof plan_path,
                              &err) == 0, "%s", err.msg);
    CHECK(!p.order && !p.from_freq && plan_path[0] == 0 && strstr(p.summary, "index order"), "no sidecar: '%s'",
          p.summary);
    plan_release(&p);
    /* With the sidecar: from frequencies, cache written beside the model, read by a worker. */
    pi_sidecar *sc = sidecar_new(m, &err);
    CHECK(sc, "%s", err.msg);
    memcpy(sc->freq, f, (size_t)m->n_layers * m->n_ff * sizeof *f);
    CHECK(sidecar_write(sc, side, &err) == 0, "%s", err.msg);
    sidecar_free(&sc);
    CHECK(plan_make_for_model(m, model_path, &pp, "/nonexistent", NULL, &p, plan_path, sizeof plan_path,
                              &err) == 0, "%s", err.msg);
    CHECK(p.order && p.from_freq && plan_path[0] && access(plan_path, R_OK) == 0, "sidecar: '%s' plan '%s'",
          p.summary, plan_path);
    CHECK(p.gpu_bytes <= pp.budget_bytes, "over budget");
    printf("%s\n", p.summary);
    pi_plan q;
    plan_params wp = {.max_seqs = 1, .n_cpu_workers = 2};   /* a CPU worker's view */
    CHECK(plan_load_for_model(m, plan_path, &wp, &q, &err) == 0, "%s", err.msg);
    for (uint32_t l = 0; l < m->n_layers; l++) {
        CHECK(q.layer_hot[l] == p.layer_hot[l] && !memcmp(q.order + (size_t)l * m->n_ff,
              p.order + (size_t)l * m->n_ff, m->n_ff * sizeof *q.order), "worker's sets differ in layer %u", l);
        for (uint32_t i = 0; i < 2; i++)
            CHECK(plan_shard_set(&q, i, l).n == plan_shard_set(&p, i, l).n, "shard sizes differ");
    }
    plan_release(&q);
    /* The cache is reused (same sets); pid's private copy for its workers holds the same plan. */
    pi_plan r;
    char copy[600], cache[1200];
    snprintf(cache, sizeof cache, "%s", plan_path);
    test_tmp("plan_worker_copy.gguf", copy, sizeof copy);
    CHECK(plan_make_for_model(m, model_path, &pp, NULL, copy, &r, plan_path, sizeof plan_path, &err) == 0, "%s",
          err.msg);
    CHECK(!strcmp(plan_path, copy) && access(cache, R_OK) == 0, "workers' plan '%s', expected %s", plan_path, copy);
    CHECK(!memcmp(r.order, p.order, (size_t)m->n_layers * m->n_ff * sizeof *r.order), "cached plan differs");
    plan_release(&r);
    CHECK(plan_load_for_model(m, copy, &wp, &q, &err) == 0, "%s", err.msg);
    CHECK(!memcmp(q.order, p.order, (size_t)m->n_layers * m->n_ff * sizeof *q.order), "the copy differs");
    plan_release(&q);
    remove(copy);
    remove(cache);
    plan_release(&p);
    /* pid planning for CUDA (fp16 KV, its reserve in the placement's fixed part): the CPU workers,
     * which plan with no backend, and the GPU worker, with the CUDA backend's needs, build its sets. */
    plan_params cp = pp;
    cp.backend = cuda_needs();
    cp.max_batch = 8;
    cp.budget_bytes = fixed + plan_reserve_bytes(m, &cp) + 50 * nb;
    CHECK(plan_make_for_model(m, model_path, &cp, NULL, NULL, &p, plan_path, sizeof plan_path, &err) == 0, "%s",
          err.msg);
    CHECK(p.order && p.reserved_bytes <= cp.budget_bytes && p.kv_bytes == plan_kv_bytes(m, 2, 64) / 2 &&
          strstr(p.summary, "CUDA backend besides"), "CUDA plan: %s", p.summary);
    for (int gpu = 0; gpu < 2; gpu++) {
        plan_params vp = {.max_seqs = 2, .n_ctx = 64, .n_cpu_workers = 2, .backend = gpu ? cuda_needs() : NULL,
                          .max_batch = gpu ? 8 : 0};
        CHECK(plan_load_for_model(m, plan_path, &vp, &q, &err) == 0, "%s", err.msg);
        CHECK(!memcmp(q.order, p.order, (size_t)m->n_layers * m->n_ff * sizeof *q.order) &&
              q.kv_bytes == (gpu ? p.kv_bytes : 2 * p.kv_bytes) &&
              q.reserved_bytes == (gpu ? p.reserved_bytes : q.gpu_bytes),
              "%s worker's plan of pid's CUDA plan differs", gpu ? "the GPU" : "a CPU");
        plan_release(&q);
    }
    remove(plan_path);
    plan_release(&p);
    pp.budget_bytes = 0;   /* host default: the index-order default's bytes, bought by frequency */
    CHECK(plan_make_for_model(m, model_path, &pp, NULL, NULL, &r, plan_path, sizeof plan_path, &err) == 0, "%s",
          err.msg);
    CHECK(r.from_freq && r.hot_bytes == 24ull * 3 * nb, "default budget: %" PRIu64 " hot bytes", r.hot_bytes);
    remove(plan_path);
    plan_release(&r);
    /* A plan cache made for another model is refused by the worker. */
    placement_params lp2 = {.max_seqs = 1, .n_ctx = 64, .budget_bytes = fixed + 10 * nb};
    pl = placement_for_model(m, &lp2, freq, &err);
    CHECK(pl, "%s", err.msg);
    pl->model_hash ^= 1;
    char foreign[600];
    test_tmp("plan_foreign.pi-plan.gguf", foreign, sizeof foreign);
    CHECK(placement_save(pl, foreign, &err) == 0, "%s", err.msg);
    CHECK(plan_load_for_model(m, foreign, &wp, &q, &err) < 0 && strstr(err.msg, "model hash"), "foreign: %s",
          err.msg);
    CHECK(plan_make_from_placement(m, &wp, pl, &q, &err) < 0 && strstr(err.msg, "another model"), "%s", err.msg);
    placement_free(&pl);
    remove(foreign);
    remove(side);
    free(freq);
    free(f);
}

/* CUDA: the backend's scratch (cuda_needs.h) term by term for the q8_0
 * test model (no predictor), and the budget buys neurons only after
 * weights + KV + it; the host backend reserves nothing. */
static void check_reserve(const pi_model *m, uint64_t w, uint64_t kv)
{
    pi_error err = {{0}};
    const plan_backend *cuda = cuda_needs();
    /* n_ctx 100 in splits of CUDA_NEEDS_ATTN_CHUNK positions; head_dim 16 */
    const uint64_t splits = (100 + CUDA_NEEDS_ATTN_CHUNK - 1) / CUDA_NEEDS_ATTN_CHUNK;
    uint64_t scr = 5 * 8 * 64 * 4 + 2 * 8 * 32 * 4 /* x xb q tmp hot, k v */ +
                   (CUDA_NEEDS_MAX_BATCH * 4 + 8 * 4 * splits * (16 + 2)) * 4 /* attention counters, partials */ +
                   8 * 10 * 4 /* coef */ +
                   256 * 64 * 4 /* split-K */ + 8 * 48 * 4 /* logits */ + 8 * 16 + 8 * 4 /* entries, rows */ +
                   8 * 96 * 4 /* lists */ + 3 * 96 * 4 /* lookup tables */ + CUDA_NEEDS_STEP_BYTES(3);
    CHECK(cuda->scratch_bytes(m, 8, 100, 10) == scr, "scratch %" PRIu64 " != %" PRIu64,
          cuda->scratch_bytes(m, 8, 100, 10), scr);
    CHECK(cuda->scratch_bytes(m, 0, 100, 10) == 0 && plan_predictor_bytes(m, 0) == 0, "no steps: no scratch");
    plan_params pp = {.max_seqs = 4, .n_ctx = 100, .n_cpu_workers = 3, .max_batch = 8};
    CHECK(plan_reserve_bytes(m, &pp) == 0 && plan_kv_elem_bytes(&pp) == 4, "host: nothing reserved, fp32 KV");
    pp.backend = cuda;
    CHECK(plan_kv_elem_bytes(&pp) == 2, "CUDA: fp16 KV");
    uint64_t reserve = plan_reserve_bytes(m, &pp);
    CHECK(reserve == cuda->scratch_bytes(m, 8, 100, 96) + CUDA_NEEDS_CONTEXT_BYTES, "reserve %" PRIu64, reserve);
    pi_plan p;
    CHECK(plan_make_fixed(m, &pp, 0, &p, &err) == 0, "%s", err.msg);
    for (uint64_t extra = 0; extra < 3000; extra += 97) {
        pp.budget_bytes = w + kv + reserve + 10 * p.neuron_bytes + extra;
        CHECK(plan_make(m, &pp, &p, &err) == 0, "%s", err.msg);
        CHECK(p.n_hot == 10 + extra / p.neuron_bytes, "K %u for %" PRIu64 " extra bytes", p.n_hot, extra);
        CHECK(p.scratch_bytes == cuda->scratch_bytes(m, 8, 100, p.n_hot) && p.predictor_bytes == 0 &&
              p.context_bytes == CUDA_NEEDS_CONTEXT_BYTES &&
              p.reserved_bytes == p.gpu_bytes + p.scratch_bytes + p.context_bytes && p.reserved_bytes <= pp.budget_bytes,
              "reserved %" PRIu64 " (scratch %" PRIu64 ") over budget %" PRIu64, p.reserved_bytes, p.scratch_bytes,
              pp.budget_bytes);
        CHECK(strstr(p.summary, "scratch"), "summary '%s' does not say what is reserved", p.summary);
    }
    pp.budget_bytes = w + kv + reserve - 1;
    char need[32];
    snprintf(need, sizeof need, "%" PRIu64, w + kv + reserve);
    CHECK(plan_make(m, &pp, &p, &err) < 0 && strstr(err.msg, need), "budget below fixed + reserve: '%s'", err.msg);
}

int main(void)
{
    char path[512];
    test_tmp("plan_model.gguf", path, sizeof path);
    rand_model_shape sh = {.dim = 64, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2, .n_ff = 96,
                           .n_vocab = 48, .n_ctx = 128, .type = PI_TYPE_Q8_0, .act = PI_ACT_RELU, .seed = 9};
    pi_error err = {{0}};
    CHECK(rand_model_write(path, &sh, &err) == 0, "%s", err.msg);
    pi_model *m = model_open(path, &err);
    CHECK(m, "%s", err.msg);

    /* Byte counts from first principles. */
    uint64_t kv = 4ull * 3 * 100 * (2 * 16) * 2 * sizeof(float);
    CHECK(plan_kv_bytes(m, 4, 100) == kv, "kv bytes %" PRIu64 " != %" PRIu64, plan_kv_bytes(m, 4, 100), kv);
    /* q8_0: gate/up rows 2 blocks of 34 bytes; down^T dequantized to f32 (64 x 4) */
    CHECK(plan_neuron_bytes_layer(m, 0) == 68 + 68 + 256, "neuron bytes %zu", plan_neuron_bytes_layer(m, 0));
    CHECK(plan_down_t_type(PI_TYPE_Q8_0) == PI_TYPE_F32 && plan_down_t_type(PI_TYPE_F16) == PI_TYPE_F16 &&
          plan_down_t_type(PI_TYPE_BF16) == PI_TYPE_BF16, "down^T types");
    uint64_t w = 0;
    w += 64 * 4 + 48 * 68;               /* output norm, output (an untied token_embd stays in host memory) */
    w += 3 * (64 * 4 * 2 + 64 * 68 + 32 * 68 * 2 + 64 * 68); /* norms, q, k, v, o */
    CHECK(plan_weight_bytes(m) == w, "weight bytes %" PRIu64 " != %" PRIu64, plan_weight_bytes(m), w);

    pi_plan p;
    plan_params pp = {.max_seqs = 4, .n_ctx = 100, .n_cpu_workers = 3};
    /* Default with no device: a quarter hot. */
    CHECK(plan_make(m, &pp, &p, &err) == 0, "%s", err.msg);
    CHECK(p.n_hot == 24 && p.fixed_bytes == w + kv, "default K %u", p.n_hot);
    CHECK(p.neuron_bytes == 3 * (68 + 68 + 256), "neuron bytes over layers");
    CHECK(strstr(p.summary, "24/96") != NULL, "summary '%s'", p.summary);
    check_shards(&p);

    /* A budget buys exactly as many neurons as fit, never more. */
    for (uint64_t extra = 0; extra < 3000; extra += 97) {
        pp.budget_bytes = w + kv + 10 * p.neuron_bytes + extra;
        CHECK(plan_make(m, &pp, &p, &err) == 0, "%s", err.msg);
        CHECK(p.gpu_bytes <= pp.budget_bytes, "plan %" PRIu64 " over budget %" PRIu64, p.gpu_bytes, pp.budget_bytes);
        CHECK(p.gpu_bytes + p.neuron_bytes > pp.budget_bytes, "plan leaves a whole neuron unused");
        CHECK(p.gpu_bytes == p.fixed_bytes + p.hot_bytes && p.hot_bytes == p.n_hot * p.neuron_bytes, "sums");
        CHECK(p.cold_bytes == (96 - p.n_hot) * p.neuron_bytes, "cold bytes");
        check_shards(&p);
    }
    /* A huge budget: everything hot, shards empty. */
    pp.budget_bytes = UINT64_C(1) << 40;
    CHECK(plan_make(m, &pp, &p, &err) == 0 && p.n_hot == 96, "all hot");
    check_shards(&p);
    /* CUDA default: 90% of free memory. */
    pp.budget_bytes = 0;
    pp.device_free_bytes = (w + kv + 20 * p.neuron_bytes) * 10 / 9 + 10;
    CHECK(plan_make(m, &pp, &p, &err) == 0, "%s", err.msg);
    CHECK(p.n_hot == 20 && p.budget_bytes <= pp.device_free_bytes / 10 * 9, "cuda default K %u", p.n_hot);
    pp.device_free_bytes = 0;

    /* Below the fixed part: an error naming the bytes needed. */
    pp.budget_bytes = w + kv - 1;
    CHECK(plan_make(m, &pp, &p, &err) < 0, "budget below fixed accepted");
    char need[32];
    snprintf(need, sizeof need, "%" PRIu64, w + kv);
    CHECK(strstr(err.msg, need) && strstr(err.msg, "budget"), "message '%s' lacks %s", err.msg, need);
    /* No CPU workers: every neuron must be hot. */
    pp.n_cpu_workers = 0;
    pp.budget_bytes = w + kv + 10 * p.neuron_bytes;
    CHECK(plan_make(m, &pp, &p, &err) < 0 && strstr(err.msg, "CPU worker"), "no workers, cold neurons: '%s'",
          err.msg);
    pp.budget_bytes = 0;
    CHECK(plan_make(m, &pp, &p, &err) == 0 && p.n_hot == 96 && p.n_shards == 0, "no workers, default: all hot");
    pp.max_seqs = 0;
    CHECK(plan_make(m, &pp, &p, &err) < 0 && strstr(err.msg, "max_seqs"), "max_seqs 0 accepted");
    pp.max_seqs = 1;

    /* Fixed K: every split of every K covers [K, n_ff) exactly, empty shards included. */
    for (uint32_t n = 1; n <= 7; n++) {
        pp.n_cpu_workers = n;
        for (uint32_t k = 0; k <= 96; k += (k < 90 ? 13 : 1)) {
            CHECK(plan_make_fixed(m, &pp, k, &p, &err) == 0, "%s", err.msg);
            CHECK(p.n_hot == k && p.n_shards == n, "fixed plan");
            check_shards(&p);
        }
    }
    CHECK(plan_make_fixed(m, &pp, 97, &p, &err) < 0, "K > n_ff accepted");
    pp.n_cpu_workers = PLAN_MAX_SHARDS + 1;
    CHECK(plan_make(m, &pp, &p, &err) < 0, "too many shards accepted");
    /* n_ctx 0 = the model's. */
    pp.n_cpu_workers = 1;
    pp.n_ctx = 0;
    CHECK(plan_make(m, &pp, &p, &err) == 0 && p.n_ctx == 128 && p.kv_bytes == plan_kv_bytes(m, 1, 128), "n_ctx 0");
    printf("%s\n", p.summary);

    check_reserve(m, w, kv / 2); /* CUDA: fp16 KV */
    printf("CUDA reserve: ok\n");
    check_from_placement(m, path);
    printf("plans from placements: ok\n");
    model_close(&m);
    remove(path);
    return 0;
}
