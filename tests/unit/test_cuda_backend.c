/* Proves the CUDA backend computes the same model as the reference forward:
 * stories260K, 64 positions, all-hot and half-hot (cold half added from
 * ops_ffn_range like a CPU worker), logits within 1e-4 relative and equal
 * greedy tokens, with two sequences interleaved in one batch. Skips without
 * a GPU. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check.h"
#include "forward.h"
#include "llama2c.h"
#include "model.h"
#include "ops.h"

#ifndef PI_HAVE_CUDA
int main(void)
{
    fprintf(stderr, "SKIP: built without CUDA\n");
    return 77;
}
#else

static int argmax(const float *x, uint32_t n)
{
    int best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = (int)i;
    return best;
}

static double rel_err(const float *a, const float *b, uint32_t n)
{
    double num = 0, den = 0;
    for (uint32_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > num)
            num = d;
        if (fabs((double)b[i]) > den)
            den = fabs((double)b[i]);
    }
    return num / (den > 0 ? den : 1);
}

/* Runs two sequences in lockstep (entries of slot 0 and 1 in one batch),
 * each fed by its own greedy choice, and checks against the reference. */
static void run(const pi_model *m, uint32_t n_hot)
{
    enum { N_POS = 64 };
    pi_error err = {{0}};
    gpu_backend_config cfg = {.n_hot = n_hot, .max_seqs = 2, .n_ctx = N_POS, .max_batch = 4, .device = 0};
    gpu_backend *b = gpu_backend_cuda.create(m, &cfg, &err);
    CHECK(b, "create: %s", err.msg);
    forward_state *ref[2] = {forward_new(m, N_POS, &err), forward_new(m, N_POS, &err)};
    CHECK(ref[0] && ref[1], "forward_new: %s", err.msg);

    float *xn = calloc((size_t)2 * m->dim, sizeof(float));
    float *cold = calloc((size_t)2 * m->dim, sizeof(float));
    float *h = calloc(m->n_ff, sizeof(float));
    float *logits = calloc((size_t)2 * m->n_vocab, sizeof(float));
    CHECK(xn && cold && h && logits, "oom");
    int32_t tok[2] = {1, 1};
    double worst = 0;
    for (uint32_t pos = 0; pos < N_POS; pos++) {
        gpu_entry e[2] = {{0, pos, tok[0], 1}, {1, pos, tok[1], 1}};
        CHECK(gpu_backend_cuda.embed(b, e, 2, &err) == 0, "embed: %s", err.msg);
        for (uint32_t l = 0; l < m->n_layers; l++) {
            CHECK(gpu_backend_cuda.attn(b, l, e, 2, xn, &err) == 0, "attn: %s", err.msg);
            CHECK(gpu_backend_cuda.ffn_hot(b, l, 2, &err) == 0, "ffn_hot: %s", err.msg);
            memset(cold, 0, (size_t)2 * m->dim * sizeof(float));
            for (int s = 0; s < 2; s++)
                ops_ffn_range(&m->layers[l], m->act, xn + (size_t)s * m->dim, n_hot, m->n_ff, h,
                              cold + (size_t)s * m->dim);
            const float *parts[1] = {cold};
            CHECK(gpu_backend_cuda.finish(b, l, 2, parts, 1, &err) == 0, "finish: %s", err.msg);
        }
        CHECK(gpu_backend_cuda.logits(b, e, 2, logits, &err) == 0, "logits: %s", err.msg);
        for (int s = 0; s < 2; s++) {
            const float *want = forward_token(ref[s], tok[s], pos);
            CHECK(want, "forward_token failed at %u", pos);
            const float *got = logits + (size_t)s * m->n_vocab;
            double r = rel_err(got, want, m->n_vocab);
            if (r > worst)
                worst = r;
            CHECK(r <= 1e-4, "n_hot %u pos %u seq %d: relative error %.3g > 1e-4", n_hot, pos, s, r);
            CHECK(argmax(got, m->n_vocab) == argmax(want, m->n_vocab), "greedy token differs at pos %u", pos);
            /* Sequence 1 takes the second-best path so the two slots differ. */
            tok[s] = argmax(want, m->n_vocab);
            if (s == 1 && pos % 3 == 0)
                tok[s] = (tok[s] + 7) % (int32_t)m->n_vocab;
        }
    }
    printf("cuda backend, n_hot %u of %u: max relative logit error %.3g over %d positions x 2 sequences\n",
           n_hot, m->n_ff, worst, N_POS);
    printf("device bytes: %llu\n", (unsigned long long)gpu_backend_cuda.device_bytes(b));
    free(xn);
    free(cold);
    free(h);
    free(logits);
    forward_free(&ref[0]);
    forward_free(&ref[1]);
    gpu_backend_cuda.destroy(&b);
    CHECK(b == NULL, "destroy must null the pointer");
}

int main(void)
{
    if (pi_cuda_device_count() <= 0) {
        fprintf(stderr, "SKIP: no CUDA device\n");
        return 77;
    }
    char ck[1024], tk[1024], out[1024];
    test_shared("models/stories260K.bin", ck, sizeof ck);
    test_shared("models/tok512.bin", tk, sizeof tk);
    test_tmp("cuda-stories260K.gguf", out, sizeof out);
    pi_error err = {{0}};
    CHECK(llama2c_import(ck, tk, out, PI_TYPE_F32, PI_ACT_SILU, NULL, &err) == 0, "import: %s", err.msg);
    pi_model *m = model_open(out, &err);
    CHECK(m, "model_open: %s", err.msg);
    run(m, m->n_ff);
    run(m, m->n_ff / 2);
    run(m, 0);
    model_close(&m);
    return 0;
}
#endif
