/* Proves a Q4_K_M-style model (Q4_K weights, Q6_K ffn_down and output)
 * loads and runs on the CPU paths: the reference forward gives finite
 * logits, and one layer's sparse FFN through every CPU kernel variant this
 * machine has equals the reference FFN (ops_ffn_range). With --write PATH it
 * only writes that model (tokenizer of stories260K) for
 * tests/integration/test_kquant_model.sh, which runs pid run on it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ffn_sparse.h"
#include "forward.h"
#include "llama2c.h"
#include "ops.h"
#include "plan.h"
#include "rand_model.h"

#define DIM 256
#define N_FF 512

/* Writes the K-quant model to path, with tok512's 512 tokens. */
static void write_model(const char *path)
{
    char ckpt[512], tok[512], tmp[600];
    test_shared("models/stories260K.bin", ckpt, sizeof ckpt);
    test_shared("models/tok512.bin", tok, sizeof tok);
    snprintf(tmp, sizeof tmp, "%s.tok.gguf", path);
    pi_error err = {{0}};
    CHECK(llama2c_import(ckpt, tok, tmp, PI_TYPE_F32, PI_ACT_RELU, NULL, &err) == 0, "%s", err.msg);
    gguf_file *t = gguf_open(tmp, &err);
    CHECK(t, "%s", err.msg);
    rand_model_shape sh = {.dim = DIM, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .n_ff = N_FF,
                           .n_vocab = 512, .n_ctx = 128, .type = PI_TYPE_Q4_K, .act = PI_ACT_RELU,
                           .seed = 11, .has_down_type = 1, .down_type = PI_TYPE_Q6_K, .tokenizer = t};
    CHECK(rand_model_write(path, &sh, &err) == 0, "%s", err.msg);
    gguf_close(&t);
    remove(tmp);
}

static void check_forward(const pi_model *m)
{
    pi_error err = {{0}};
    forward_state *s = forward_new(m, 16, &err);
    CHECK(s, "%s", err.msg);
    int32_t tok = 1;
    for (uint32_t pos = 0; pos < 8; pos++) {
        const float *lg = forward_token(s, tok, pos);
        CHECK(lg, "forward_token at %u", pos);
        for (uint32_t i = 0; i < m->n_vocab; i++)
            CHECK(isfinite(lg[i]), "logit %u at position %u is %g", i, pos, (double)lg[i]);
        tok = (int32_t)test_argmax(lg, m->n_vocab);
    }
    forward_free(&s);
}

/* Layer l's FFN on x through the sparse kernels (gate/up rows Q4_K as they
 * are, down^T rows as plan writes them for the CPU shards) against
 * ops_ffn_range, the reference forward's FFN. */
static void check_sparse_ffn(const pi_model *m, uint32_t l)
{
    const pi_layer *y = &m->layers[l];
    pi_type dt = plan_down_t_type(pi_layer_down_type(y));
    CHECK(dt == PI_TYPE_F32, "down^T of q6_K rows is f32, got %s", pi_type_name((int)dt));
    float *down_t = malloc((size_t)N_FF * DIM * sizeof *down_t);
    float *x = malloc(DIM * sizeof *x), *want = calloc(DIM, sizeof *want), *got = malloc(DIM * sizeof *got);
    float *h = malloc(N_FF * sizeof *h);
    uint32_t *active = malloc(N_FF * sizeof *active);
    CHECK(down_t && x && want && got && h && active, "oom");
    plan_write_down_t(m, l, 0, N_FF, down_t, DIM * sizeof *down_t);
    uint64_t seed = 5;
    for (int i = 0; i < DIM; i++)
        x[i] = rand_model_uniform(&seed);
    for (uint32_t j = 0; j < N_FF; j++)
        active[j] = j;
    ops_ffn_range(y, PI_ACT_RELU, x, 0, N_FF, h, want);
    ffn_sparse_layer sl = {.dim = DIM, .n_neurons = N_FF, .gate_type = y->ffn_gate.type,
                           .up_type = y->ffn_up.type, .down_t_type = dt, .gate = y->ffn_gate.data,
                           .up = y->ffn_up.data, .down_t = down_t, .gate_stride = y->ffn_gate.row_bytes,
                           .up_stride = y->ffn_up.row_bytes, .down_t_stride = DIM * sizeof *down_t};
    pi_error err = {{0}};
    CHECK(ffn_sparse_layer_check(&sl, &err) == 0, "%s", err.msg);
    double mag = 0;
    for (int i = 0; i < DIM; i++)
        mag = fmax(mag, fabs((double)want[i]));
    CHECK(mag > 0, "the layer's FFN is all zero: no test");
    static const char *const names[] = {"plain", "avx2", "avx512"};
    for (int k = 0; k < 3; k++) {
        const ffn_kernels *kern = ffn_kernels_by_name(names[k], &err);
        if (!kern) {
            printf("test_kquant_model: kernel %s not on this machine (%s)\n", names[k], err.msg);
            continue;
        }
        for (int dense = 0; dense < 2; dense++) {
            memset(got, 0, DIM * sizeof *got);
            if (dense)
                ffn_dense_accum(kern, &sl, PI_ACT_RELU, x, active, N_FF, got);
            else
                ffn_sparse_accum(kern, &sl, PI_ACT_RELU, x, active, N_FF, got);
            for (int i = 0; i < DIM; i++)
                CHECK(fabs((double)got[i] - want[i]) <= 1e-5 * mag, "layer %u %s %s [%d]: %g vs %g", l, names[k],
                      dense ? "dense" : "sparse", i, (double)got[i], (double)want[i]);
        }
        printf("test_kquant_model: layer %u sparse and dense FFN through %s = reference\n", l, names[k]);
    }
    free(down_t);
    free(x);
    free(want);
    free(got);
    free(h);
    free(active);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write") == 0) {
        write_model(argv[2]);
        return 0;
    }
    char path[512];
    test_tmp("kquant_model.gguf", path, sizeof path);
    write_model(path);
    pi_error err = {{0}};
    pi_model *m = model_open(path, &err);
    CHECK(m, "%s", err.msg);
    CHECK(m->layers[0].ffn_gate.type == PI_TYPE_Q4_K && m->layers[1].ffn_down.type == PI_TYPE_Q6_K &&
          m->output.type == PI_TYPE_Q6_K && m->tok_embd.type == PI_TYPE_Q4_K, "tensor types as written");
    check_forward(m);
    for (uint32_t l = 0; l < m->n_layers; l++)
        check_sparse_ffn(m, l);
    model_close(&m);
    remove(path);
    printf("test_kquant_model: ok\n");
    return 0;
}
