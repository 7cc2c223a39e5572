/* The host backend's solo step (run_solo: every layer and every FFN neuron on its side, in parts of max_batch) gives the reference forward's logits and greedy tokens for two slots' long prompts in one step, its KV cache serves the ordinary steps that follow and they serve it; solo_max is cfg.solo_batch, and a step beyond it, or any without solo_batch, is refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check.h"
#include "forward.h"
#include "greedy_oracle.h"
#include "rand_model.h"

#define N_TOK 64
#define MAX_BATCH 8
#define SOLO 80

static const uint32_t slot_of_seq[2] = {0, 2};   /* slot 1 stays unused */

typedef struct oracle {
    int32_t tok[2][N_TOK + 1];
    float *logits;  /* [seq][pos][n_vocab] */
} oracle;

/* Greedy continuation of each start token by the reference forward. */
static void make_oracle(const pi_model *m, oracle *o)
{
    const int32_t start[2] = {1, 7};
    CHECK(o->logits = malloc((size_t)2 * N_TOK * m->n_vocab * sizeof(float)), "oom");
    for (int s = 0; s < 2; s++)
        greedy_oracle(m, start[s], N_TOK, o->tok[s], o->logits + (size_t)s * N_TOK * m->n_vocab);
}

/* Appends positions [p0, p1) of sequence s to e (teacher-forced tokens); some want no logits. */
static uint32_t add(gpu_entry *e, uint32_t n, const oracle *o, int s, uint32_t p0, uint32_t p1)
{
    for (uint32_t p = p0; p < p1; p++)
        e[n++] = (gpu_entry){.slot = slot_of_seq[s], .pos = p, .token = o->tok[s][p], .want_logits = p % 5 != 2};
    return n;
}

/* Every want_logits row of out against the oracle: the worst relative error. */
static double compare(const pi_model *m, const oracle *o, const gpu_entry *e, uint32_t n, const float *out,
                      const char *label)
{
    uint32_t V = m->n_vocab, row = 0;
    double worst = 0.0;
    for (uint32_t i = 0; i < n; i++) {
        if (!e[i].want_logits)
            continue;
        int s = e[i].slot == slot_of_seq[0] ? 0 : 1;
        const float *a = out + (size_t)row++ * V, *b = o->logits + ((size_t)s * N_TOK + e[i].pos) * V;
        double dmax = 0.0, bmax = 0.0;
        for (uint32_t v = 0; v < V; v++) {
            dmax = fmax(dmax, fabs((double)a[v] - b[v]));
            bmax = fmax(bmax, fabs((double)b[v]));
        }
        CHECK(dmax / bmax <= 1e-4, "%s: seq %d pos %u: relative error %.3g", label, s, e[i].pos, dmax / bmax);
        CHECK((int32_t)test_argmax(a, V) == o->tok[s][e[i].pos + 1], "%s: seq %d pos %u: greedy token %u, want %d",
              label, s, e[i].pos, test_argmax(a, V), o->tok[s][e[i].pos + 1]);
        worst = fmax(worst, dmax / bmax);
    }
    return worst;
}

/* An ordinary step through the ops, every neuron hot (no CPU partials). */
static void plain_step(gpu_backend *b, const pi_model *m, const gpu_entry *e, uint32_t n, float *x, float *out)
{
    pi_error err = {{0}};
    const gpu_backend_ops *ops = &gpu_backend_host;
    CHECK(ops->embed(b, e, n, &err) == 0, "%s", err.msg);
    for (uint32_t l = 0; l < m->n_layers; l++) {
        CHECK(ops->attn(b, l, e, n, x, &err) == 0, "%s", err.msg);
        CHECK(ops->ffn_hot(b, l, n, &err) == 0, "%s", err.msg);
        CHECK(ops->finish(b, l, n, NULL, 0, &err) == 0, "%s", err.msg);
    }
    CHECK(ops->logits(b, e, n, out, &err) == 0, "%s", err.msg);
}

static void run_model(pi_type type, pi_act act, uint32_t seed)
{
    char name[64], path[600];
    snprintf(name, sizeof name, "host_solo_%s_%s.gguf", pi_type_name(type), pi_act_name(act));
    test_tmp(name, path, sizeof path);
    rand_model_shape sh = {.dim = 64, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2, .n_ff = 96,
                           .n_vocab = 48, .n_ctx = 128, .type = type, .act = act, .seed = seed};
    pi_error err = {{0}};
    CHECK(rand_model_write(path, &sh, &err) == 0, "%s", err.msg);
    pi_model *m = model_open(path, &err);
    CHECK(m, "%s", err.msg);
    oracle o;
    make_oracle(m, &o);

    const gpu_backend_ops *ops = &gpu_backend_host;
    gpu_backend_config cfg = {.n_hot = m->n_ff, .max_seqs = 3, .n_ctx = N_TOK, .max_batch = MAX_BATCH,
                              .ffn = PI_FFN_DENSE, .solo_batch = SOLO};
    gpu_backend *b = ops->create(m, &cfg, &err);
    CHECK(b, "%s", err.msg);
    CHECK(ops->run_solo && ops->solo_max && ops->solo_max(b) == SOLO, "solo_max is not cfg.solo_batch");
    gpu_entry e[SOLO + 1];
    float *out = malloc((size_t)(SOLO + 1) * m->n_vocab * sizeof *out), *x = malloc(MAX_BATCH * m->dim * sizeof *x);
    CHECK(out && x, "oom");

    /* 1. Both prompts in one solo step: 70 entries, parts of 8 that cross from one slot to the other. */
    uint32_t n = add(e, add(e, 0, &o, 0, 0, 40), &o, 1, 0, 30);
    CHECK(ops->run_solo(b, e, n, out, &err) == 0, "%s", err.msg);
    double worst = compare(m, &o, e, n, out, "solo step of both prompts");
    /* 2. Ordinary steps read the solo step's KV cache; 3. a solo step reads theirs. */
    n = add(e, 0, &o, 0, 40, 44);
    plain_step(b, m, e, n, x, out);
    worst = fmax(worst, compare(m, &o, e, n, out, "ordinary step after it"));
    n = add(e, add(e, 0, &o, 0, 44, N_TOK), &o, 1, 30, N_TOK);
    CHECK(ops->run_solo(b, e, n, out, &err) == 0, "%s", err.msg);
    worst = fmax(worst, compare(m, &o, e, n, out, "solo step after an ordinary one"));
    /* 4. More than solo_batch entries: refused, saying so. */
    for (uint32_t i = 0; i <= SOLO; i++)
        e[i] = (gpu_entry){.slot = 1, .pos = i % N_TOK, .token = 1};
    CHECK(ops->run_solo(b, e, SOLO + 1, out, &err) < 0 && strstr(err.msg, "solo_batch"), "%u entries taken: %s",
          SOLO + 1, err.msg);
    ops->destroy(&b);

    /* 5. No solo_batch: solo_max 0 and run_solo refuses. */
    cfg.solo_batch = 0;
    b = ops->create(m, &cfg, &err);
    CHECK(b, "%s", err.msg);
    CHECK(ops->solo_max(b) == 0, "solo_max %u without solo_batch", ops->solo_max(b));
    CHECK(ops->run_solo(b, e, 1, out, &err) < 0, "a solo step ran without solo_batch");
    ops->destroy(&b);

    printf("host solo %s %s: every logits row as the reference forward's (worst relative error %.2e)\n",
           pi_type_name(type), pi_act_name(act), worst);
    free(out);
    free(x);
    free(o.logits);
    model_close(&m);
    remove(path);
}

int main(void)
{
    run_model(PI_TYPE_F32, PI_ACT_SILU, 11);
    run_model(PI_TYPE_Q8_0, PI_ACT_RELU, 12);
    return 0;
}
