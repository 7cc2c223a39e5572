/* The placement plan respects the VRAM budget, splits the cold neurons [K, n_ff) into contiguous shards that cover them exactly, and refuses impossible budgets with the bytes needed. */
#include <inttypes.h>
#include <string.h>

#include "check.h"
#include "plan.h"
#include "rand_model.h"

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
    w += 48 * 68 + 64 * 4 + 48 * 68;                          /* embd, output norm, output */
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

    model_close(&m);
    remove(path);
    return 0;
}
