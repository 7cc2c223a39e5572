/* A CPU shard holds exactly its neurons' gate/up rows and down columns (bytes as the plan counts them), and its cold FFN partial equals the dequantized reference math for F32, F16, BF16, Q8_0 and Q4_0 weights. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "ffn_cold.h"
#include "ops.h"
#include "plan.h"
#include "rand_model.h"
#include "shard.h"

#define N_ENT 3

static void check_type(pi_type type, pi_act act)
{
    char path[512], name[64];
    snprintf(name, sizeof name, "shard_%s.gguf", pi_type_name(type));
    test_tmp(name, path, sizeof path);
    rand_model_shape sh = {.dim = 64, .n_layers = 2, .n_heads = 4, .n_kv_heads = 4, .n_ff = 128,
                           .n_vocab = 16, .n_ctx = 16, .type = type, .act = act, .seed = 11};
    pi_error err = {{0}};
    CHECK(rand_model_write(path, &sh, &err) == 0, "%s", err.msg);
    pi_model *m = model_open(path, &err);
    CHECK(m, "%s", err.msg);

    /* Ranges not on block boundaries, to cut Q8_0/Q4_0 down rows mid-block. */
    const uint32_t ranges[][2] = {{0, 128}, {5, 71}, {33, 34}, {100, 128}, {40, 40}};
    uint64_t s = 77;
    float x[N_ENT * 64], out[N_ENT * 64], want[64], h[128];
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = rand_model_uniform(&s);
    for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
        uint32_t b = ranges[r][0], e = ranges[r][1];
        cpu_shard *sd = cpu_shard_new(m, b, e, (int)(r % 2) - 1, &err);   /* node -1 and 0 */
        CHECK(sd, "%s", err.msg);
        uint64_t expect = 0;
        for (uint32_t l = 0; l < m->n_layers; l++)
            expect += (uint64_t)(e - b) * plan_neuron_bytes_layer(m, l);
        CHECK(sd->bytes == expect && sd->mem_bytes == expect, "%s [%u,%u): %llu bytes, expected %llu",
              pi_type_name(type), b, e, (unsigned long long)sd->bytes, (unsigned long long)expect);
        for (uint32_t l = 0; l < m->n_layers; l++) {
            const pi_layer *y = &m->layers[l];
            /* Its rows are the model's neurons [b, e): gate and up bytes, down columns by value. */
            for (uint32_t j = b; j < e; j++) {
                CHECK(!memcmp(cpu_shard_gate(sd, l, j), pi_tensor_row(&y->ffn_gate, j), y->ffn_gate.row_bytes),
                      "gate row %u", j);
                CHECK(!memcmp(cpu_shard_up(sd, l, j), pi_tensor_row(&y->ffn_up, j), y->ffn_up.row_bytes),
                      "up row %u", j);
                float col[64];
                pi_dequantize_row(sd->layers[l].down_t_type, cpu_shard_down_t(sd, l, j), col, 64);
                for (uint32_t i = 0; i < 64; i++)
                    CHECK(col[i] == ops_tensor_get(&y->ffn_down, i, j), "down[%u][%u]", i, j);
            }
            ffn_cold(sd, l, x, N_ENT, out);
            for (int en = 0; en < N_ENT; en++) {
                memset(want, 0, sizeof want);
                ops_ffn_range(y, m->act, x + en * 64, b, e, h, want);
                double dmax = 0.0, wmax = 1e-30;
                for (int i = 0; i < 64; i++) {
                    dmax = fmax(dmax, fabs((double)out[en * 64 + i] - want[i]));
                    wmax = fmax(wmax, fabs((double)want[i]));
                }
                CHECK(dmax / wmax <= 1e-5 || (e == b && dmax == 0.0), "%s layer %u [%u,%u) entry %d: rel %.3g",
                      pi_type_name(type), l, b, e, en, dmax / wmax);
            }
        }
        cpu_shard_free(&sd);
        CHECK(sd == NULL, "free nulls");
    }
    CHECK(cpu_shard_new(m, 10, 5, -1, &err) == NULL && strstr(err.msg, "[10, 5)"), "reversed range: %s", err.msg);
    CHECK(cpu_shard_new(m, 0, 129, -1, &err) == NULL, "range past n_ff accepted");
    CHECK(cpu_shard_new(m, 0, 8, 1 << 20, &err) == NULL && strstr(err.msg, "NUMA"), "bogus node: %s", err.msg);
    printf("%s %s: ok\n", pi_type_name(type), pi_act_name(act));
    model_close(&m);
    remove(path);
}

int main(void)
{
    check_type(PI_TYPE_F32, PI_ACT_RELU);
    check_type(PI_TYPE_F16, PI_ACT_SILU);
    check_type(PI_TYPE_BF16, PI_ACT_RELU_BOTH);
    check_type(PI_TYPE_Q8_0, PI_ACT_RELU);
    check_type(PI_TYPE_Q4_0, PI_ACT_SILU);
    return 0;
}
