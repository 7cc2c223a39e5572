/* The predictor reads what its maker fit it to: in a PowerInfer (PWRI) llama file it reads the residual stream h before ffn_norm, as PowerInfer's graph feeds it (ffn_inp), and the host backend's predict op lists, for every layer and entry, exactly the neurons with fc2 . relu(fc1 . h) > threshold computed here in float64 from an independent forward; with ffn_norm weights from 0.2 to 3.0 those sets differ from the normed x's. The same predictor in a GGUF file or in a sidecar reads the normed x. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check.h"
#include "gguf.h"
#include "model.h"
#include "predictor.h"
#include "sidecar.h"

enum {
    DIM = 32, HEADS = 4, KV_HEADS = 2, HD = DIM / HEADS, KV_DIM = KV_HEADS * HD, FF = 64, VOCAB = 40,
    LAYERS = 3, R = 16, CTX = 16, N_SEQ = 2, N_POS = 8, MAX_BATCH = 6
};
#define THRESHOLD 0.0f      /* PowerInfer's default: with it only the input's direction matters */
#define EPS 1e-5            /* llama's default rms epsilon, which the files leave to the loader */
#define ROPE_THETA 10000.0

/* The weights, rows = outputs; the float64 forward reads them from here, not
 * through the model loader. Down only transposed, as PowerInfer writes it. */
typedef struct weights {
    float embd[VOCAB][DIM], out_norm[DIM], out[VOCAB][DIM];
    struct {
        float attn_norm[DIM], wq[DIM][DIM], wk[KV_DIM][DIM], wv[KV_DIM][DIM], wo[DIM][DIM];
        float ffn_norm[DIM], gate[FF][DIM], up[FF][DIM], down_t[FF][DIM];
        float fc1[R][DIM], fc2[FF][R];
    } l[LAYERS];
} weights;

/* The float64 forward's h (after attention, before ffn_norm) and xn (the FFN
 * input) of every (sequence, position, layer). */
typedef struct trace {
    double h[N_SEQ][N_POS][LAYERS][DIM], xn[N_SEQ][N_POS][LAYERS][DIM];
} trace;

static float uniform(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xffffff) / (float)0x1000000 * 2.0f - 1.0f;
}

static void fill(float *p, size_t n, float scale, float bias, uint64_t *s)
{
    for (size_t i = 0; i < n; i++)
        p[i] = bias + scale * uniform(s);
}

static void make_weights(weights *w)
{
    uint64_t s = 12345;
    float ws = 1.0f / sqrtf((float)DIM), fs = 1.0f / sqrtf((float)FF);
    fill(&w->embd[0][0], sizeof w->embd / sizeof(float), 1.0f, 0.0f, &s);
    fill(w->out_norm, DIM, 0.1f, 1.0f, &s);
    fill(&w->out[0][0], sizeof w->out / sizeof(float), ws, 0.0f, &s);
    for (uint32_t l = 0; l < LAYERS; l++) {
        fill(w->l[l].attn_norm, DIM, 0.1f, 1.0f, &s);
        fill(&w->l[l].wq[0][0], DIM * DIM, ws, 0.0f, &s);
        fill(&w->l[l].wk[0][0], KV_DIM * DIM, ws, 0.0f, &s);
        fill(&w->l[l].wv[0][0], KV_DIM * DIM, ws, 0.0f, &s);
        fill(&w->l[l].wo[0][0], DIM * DIM, ws, 0.0f, &s);
        /* 0.2 .. 3.0, in a scrambled order per layer: far from all ones */
        for (uint32_t d = 0; d < DIM; d++)
            w->l[l].ffn_norm[d] = 0.2f + 2.8f * (float)((d * 7 + l * 5) % DIM) / (float)(DIM - 1);
        fill(&w->l[l].gate[0][0], FF * DIM, ws, 0.0f, &s);
        fill(&w->l[l].up[0][0], FF * DIM, ws, 0.0f, &s);
        fill(&w->l[l].down_t[0][0], FF * DIM, fs, 0.0f, &s);
        fill(&w->l[l].fc1[0][0], R * DIM, ws, 0.0f, &s);
        fill(&w->l[l].fc2[0][0], FF * R, 1.0f / sqrtf((float)R), 0.0f, &s);
    }
}

static void add(gguf_writer *g, const char *name, uint64_t cols, uint64_t rows, const void *data)
{
    uint64_t ne[2] = {cols, rows ? rows : 1};
    CHECK(gguf_writer_add_tensor(g, name, PI_TYPE_F32, rows ? 2 : 1, ne, data) == 0, "add %s", name);
}

/* magic PWRI or GGUF; the predictor (fc1/fc2 + threshold) in the file or not. */
static void write_model(const weights *w, const char *path, const char *magic, int predictor)
{
    gguf_writer *g = gguf_writer_new();
    CHECK(g, "oom");
    int rc = gguf_writer_add_str(g, "general.architecture", "llama");
    rc |= gguf_writer_add_u32(g, "llama.context_length", CTX);
    rc |= gguf_writer_add_u32(g, "llama.embedding_length", DIM);
    rc |= gguf_writer_add_u32(g, "llama.block_count", LAYERS);
    rc |= gguf_writer_add_u32(g, "llama.feed_forward_length", FF);
    rc |= gguf_writer_add_u32(g, "llama.attention.head_count", HEADS);
    rc |= gguf_writer_add_u32(g, "llama.attention.head_count_kv", KV_HEADS);
    if (predictor)
        rc |= gguf_writer_add_f32(g, "powerinfer.sparse_threshold", THRESHOLD);
    CHECK(rc == 0, "keys");
    add(g, "token_embd.weight", DIM, VOCAB, w->embd);
    add(g, "output_norm.weight", DIM, 0, w->out_norm);
    add(g, "output.weight", DIM, VOCAB, w->out);
    for (uint32_t l = 0; l < LAYERS; l++) {
        const struct {
            const char *n;
            uint64_t cols, rows;
            const void *d;
        } t[] = {{"attn_norm", DIM, 0, w->l[l].attn_norm}, {"attn_q", DIM, DIM, w->l[l].wq},
                 {"attn_k", DIM, KV_DIM, w->l[l].wk},     {"attn_v", DIM, KV_DIM, w->l[l].wv},
                 {"attn_output", DIM, DIM, w->l[l].wo},   {"ffn_norm", DIM, 0, w->l[l].ffn_norm},
                 {"ffn_gate", DIM, FF, w->l[l].gate},     {"ffn_up", DIM, FF, w->l[l].up},
                 {"ffn_down_t", DIM, FF, w->l[l].down_t}, {"fc1", DIM, R, w->l[l].fc1},
                 {"fc2", R, FF, w->l[l].fc2}};
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
            if (!predictor && (!strcmp(t[i].n, "fc1") || !strcmp(t[i].n, "fc2")))
                continue;
            char name[64];
            snprintf(name, sizeof name, "blk.%u.%s.weight", l, t[i].n);
            add(g, name, t[i].cols, t[i].rows, t[i].d);
        }
    }
    pi_error err = {{0}};
    CHECK(gguf_writer_write(g, path, magic, &err) == 0, "write %s: %s", path, err.msg);
    gguf_writer_free(&g);
}

static void rmsnorm64(double *out, const double *x, const float *w)
{
    double ss = 0.0;
    for (uint32_t i = 0; i < DIM; i++)
        ss += x[i] * x[i];
    double scale = 1.0 / sqrt(ss / DIM + EPS);
    for (uint32_t i = 0; i < DIM; i++)
        out[i] = w[i] * scale * x[i];
}

static void matvec64(double *out, const float *w, const double *x, uint32_t rows, uint32_t cols)
{
    for (uint32_t r = 0; r < rows; r++) {
        double s = 0.0;
        for (uint32_t c = 0; c < cols; c++)
            s += (double)w[(size_t)r * cols + c] * x[c];
        out[r] = s;
    }
}

/* llama's rope on adjacent pairs, the pair's index taken inside its head. */
static void rope64(double *v, uint32_t n, uint32_t pos)
{
    for (uint32_t i = 0; i + 1 < n; i += 2) {
        double ang = pos * pow(ROPE_THETA, -(double)(i % HD) / HD), c = cos(ang), s = sin(ang);
        double a = v[i], b = v[i + 1];
        v[i] = a * c - b * s;
        v[i + 1] = a * s + b * c;
    }
}

/* The dense forward of every sequence in float64 (llama2.c's step), recording h and xn. */
static void forward64(const weights *w, const int32_t tok[N_SEQ][N_POS], trace *t)
{
    double kc[LAYERS][N_POS][KV_DIM], vc[LAYERS][N_POS][KV_DIM];
    double x[DIM], xb[DIM], q[DIM], att[N_POS], o[DIM], xn[DIM];
    for (int s = 0; s < N_SEQ; s++)
        for (uint32_t pos = 0; pos < N_POS; pos++) {
            for (uint32_t i = 0; i < DIM; i++)
                x[i] = w->embd[tok[s][pos]][i];
            for (uint32_t l = 0; l < LAYERS; l++) {
                rmsnorm64(xb, x, w->l[l].attn_norm);
                matvec64(q, &w->l[l].wq[0][0], xb, DIM, DIM);
                matvec64(kc[l][pos], &w->l[l].wk[0][0], xb, KV_DIM, DIM);
                matvec64(vc[l][pos], &w->l[l].wv[0][0], xb, KV_DIM, DIM);
                rope64(q, DIM, pos);
                rope64(kc[l][pos], KV_DIM, pos);
                for (uint32_t hh = 0; hh < HEADS; hh++) {
                    uint32_t kvh = hh / (HEADS / KV_HEADS);
                    double max = -INFINITY, sum = 0.0;
                    for (uint32_t p = 0; p <= pos; p++) {
                        double d = 0.0;
                        for (uint32_t i = 0; i < HD; i++)
                            d += q[hh * HD + i] * kc[l][p][kvh * HD + i];
                        att[p] = d / sqrt((double)HD);
                        max = fmax(max, att[p]);
                    }
                    for (uint32_t p = 0; p <= pos; p++)
                        sum += att[p] = exp(att[p] - max);
                    for (uint32_t i = 0; i < HD; i++) {
                        double a = 0.0;
                        for (uint32_t p = 0; p <= pos; p++)
                            a += att[p] / sum * vc[l][p][kvh * HD + i];
                        o[hh * HD + i] = a;
                    }
                }
                matvec64(xb, &w->l[l].wo[0][0], o, DIM, DIM);
                for (uint32_t i = 0; i < DIM; i++)
                    x[i] += xb[i];
                rmsnorm64(xn, x, w->l[l].ffn_norm);
                memcpy(t->h[s][pos][l], x, sizeof x);
                memcpy(t->xn[s][pos][l], xn, sizeof xn);
                for (uint32_t j = 0; j < FF; j++) {   /* relu(gate) * up, down from its transposed rows */
                    double g = 0.0, u = 0.0;
                    for (uint32_t i = 0; i < DIM; i++) {
                        g += (double)w->l[l].gate[j][i] * xn[i];
                        u += (double)w->l[l].up[j][i] * xn[i];
                    }
                    double a = (g > 0.0 ? g : 0.0) * u;
                    for (uint32_t i = 0; i < DIM; i++)
                        x[i] += a * w->l[l].down_t[j][i];
                }
            }
        }
}

/* Layer l's predictor on x in float64: want[j] = 1 predicted active, 0 not,
 * -1 too close to the threshold to call (float32 sums may land either side). */
static void predict64(const weights *w, uint32_t l, const double *x, int8_t want[FF])
{
    double hid[R], logit[FF], span = 0.0;
    matvec64(hid, &w->l[l].fc1[0][0], x, R, DIM);
    for (uint32_t r = 0; r < R; r++)
        hid[r] = hid[r] > 0.0 ? hid[r] : 0.0;
    matvec64(logit, &w->l[l].fc2[0][0], hid, FF, R);
    for (uint32_t j = 0; j < FF; j++)
        span = fmax(span, fabs(logit[j] - THRESHOLD));
    for (uint32_t j = 0; j < FF; j++)
        want[j] = fabs(logit[j] - THRESHOLD) <= 1e-4 * span ? -1 : logit[j] > THRESHOLD;
}

typedef struct tally {
    uint64_t decided;       /* neuron decisions compared */
    uint64_t borderline;    /* skipped: within 1e-4 of the threshold */
    uint64_t active;        /* predicted active */
    uint64_t differ;        /* decisions that the other input makes differently */
    uint64_t other_decided;
} tally;

/* Entries of step k: 1-3 consecutive positions of each sequence, interleaved. */
static uint32_t build_step(uint32_t k, uint32_t next[N_SEQ], const int32_t tok[N_SEQ][N_POS], gpu_entry *e)
{
    uint32_t n = 0;
    for (uint32_t s = 0; s < N_SEQ; s++)
        for (uint32_t q = 0; q < 1 + (k + s) % 3 && next[s] < N_POS; q++, next[s]++)
            e[n++] = (gpu_entry){.slot = s, .pos = next[s], .token = tok[s][next[s]], .want_logits = 0};
    return n;
}

/* Runs the host backend (every neuron hot, the FFN dense so its h follows
 * the float64 forward) and checks each layer's predict lists against
 * predict64 over the input m->pred_input names; counts how often the other
 * input would decide otherwise. */
static void check_backend(const pi_model *m, const weights *w, const trace *t, const int32_t tok[N_SEQ][N_POS],
                          tally *ty, const char *label)
{
    pi_error err = {{0}};
    gpu_backend_config cfg = {.n_hot = FF, .max_seqs = N_SEQ, .n_ctx = CTX, .max_batch = MAX_BATCH,
                              .ffn = PI_FFN_PREDICTED};
    gpu_backend *b = gpu_backend_host.create(m, &cfg, &err);
    CHECK(b, "%s: create: %s", label, err.msg);
    CHECK(gpu_backend_host.predict, "the host backend has a predict op");
    int32_t counts[MAX_BATCH], *lists[MAX_BATCH];
    float xn[MAX_BATCH * DIM];
    for (uint32_t i = 0; i < MAX_BATCH; i++)
        CHECK(lists[i] = malloc(FF * sizeof(int32_t)), "oom");
    int residual = m->pred_input == PI_PRED_INPUT_RESIDUAL;
    memset(ty, 0, sizeof *ty);
    uint32_t next[N_SEQ] = {0, 0}, n, k = 0;
    gpu_entry e[MAX_BATCH];
    while ((n = build_step(k++, next, tok, e)) > 0) {
        CHECK(gpu_backend_host.embed(b, e, n, &err) == 0, "%s: embed: %s", label, err.msg);
        CHECK(gpu_backend_host.predict(b, 0, n, lists, counts, &err) < 0 && strstr(err.msg, "attn"),
              "%s: predict before attn: '%s'", label, err.msg);
        for (uint32_t l = 0; l < LAYERS; l++) {
            CHECK(gpu_backend_host.attn(b, l, e, n, xn, &err) == 0, "%s: attn: %s", label, err.msg);
            if (l + 1 < LAYERS)
                CHECK(gpu_backend_host.predict(b, l + 1, n, lists, counts, &err) < 0 && strstr(err.msg, "attn"),
                      "%s: predict of another layer: '%s'", label, err.msg);
            memset(counts, 0xff, sizeof counts);
            CHECK(gpu_backend_host.predict(b, l, n, lists, counts, &err) == 0, "%s: predict: %s", label, err.msg);
            for (uint32_t i = 0; i < n; i++) {
                const double *h = t->h[e[i].slot][e[i].pos][l], *x = t->xn[e[i].slot][e[i].pos][l];
                /* the oracle follows the backend: its xn agrees with attn's */
                for (uint32_t d = 0; d < DIM; d++)
                    CHECK(fabs(xn[i * DIM + d] - x[d]) <= 1e-4 * (1.0 + fabs(x[d])),
                          "%s: layer %u seq %u pos %u: xn[%u] %g, float64 forward %g", label, l, e[i].slot,
                          e[i].pos, d, xn[i * DIM + d], x[d]);
                int8_t want[FF], other[FF], got[FF] = {0};
                predict64(w, l, residual ? h : x, want);
                predict64(w, l, residual ? x : h, other);
                CHECK(counts[i] >= 0 && counts[i] <= FF, "%s: count %d", label, counts[i]);
                for (int32_t c = 0; c < counts[i]; c++) {
                    CHECK(lists[i][c] >= 0 && lists[i][c] < FF && (c == 0 || lists[i][c] > lists[i][c - 1]),
                          "%s: layer %u entry %u: list[%d] = %d (out of range or not ascending)", label, l, i, c,
                          lists[i][c]);
                    got[lists[i][c]] = 1;
                }
                for (uint32_t j = 0; j < FF; j++) {
                    if (want[j] < 0) {
                        ty->borderline++;
                        continue;
                    }
                    CHECK(got[j] == want[j], "%s: layer %u seq %u pos %u neuron %u: predicted %d, fc2.relu(fc1.%s) "
                          "says %d", label, l, e[i].slot, e[i].pos, j, got[j], residual ? "h" : "xn", want[j]);
                    ty->decided++;
                    ty->active += (uint64_t)want[j];
                    if (other[j] >= 0) {
                        ty->other_decided++;
                        ty->differ += other[j] != want[j];
                    }
                }
            }
            CHECK(gpu_backend_host.ffn_hot(b, l, n, &err) == 0, "%s: ffn_hot: %s", label, err.msg);
            CHECK(gpu_backend_host.finish(b, l, n, NULL, 0, &err) == 0, "%s: finish: %s", label, err.msg);
            /* finish moved h on: this layer's predict input is gone */
            CHECK(gpu_backend_host.predict(b, l, n, lists, counts, &err) < 0 && strstr(err.msg, "attn"),
                  "%s: predict after finish: '%s'", label, err.msg);
        }
    }
    CHECK(ty->decided > 0 && ty->active > 0 && ty->active < ty->decided, "%s: lists empty or full", label);
    CHECK(ty->borderline * 100 < ty->decided, "%s: %llu borderline decisions of %llu", label,
          (unsigned long long)ty->borderline, (unsigned long long)ty->decided);
    printf("%-34s input %-8s %4llu decisions equal to fc2.relu(fc1.%s) (%.0f%% active, %llu borderline); "
           "%llu of %llu (%.1f%%) differ from the %s input\n",
           label, pi_pred_input_name(m->pred_input), (unsigned long long)ty->decided, residual ? "h" : "xn",
           100.0 * (double)ty->active / (double)ty->decided, (unsigned long long)ty->borderline,
           (unsigned long long)ty->differ, (unsigned long long)ty->other_decided,
           100.0 * (double)ty->differ / (double)ty->other_decided, residual ? "normed" : "residual");
    for (uint32_t i = 0; i < MAX_BATCH; i++)
        free(lists[i]);
    gpu_backend_host.destroy(&b);
    CHECK(b == NULL, "destroy nulls");
}

/* A backend made for --ffn dense, or for a model without a predictor, has nothing to predict with. */
static void check_refusals(const pi_model *with, const pi_model *without)
{
    pi_error err = {{0}};
    gpu_backend_config cfg = {.n_hot = FF, .max_seqs = 1, .n_ctx = CTX, .max_batch = 1, .ffn = PI_FFN_DENSE};
    const pi_model *ms[2] = {with, without};
    for (int k = 0; k < 2; k++) {
        cfg.ffn = k == 0 ? PI_FFN_DENSE : PI_FFN_PREDICTED;
        gpu_backend *b = gpu_backend_host.create(ms[k], &cfg, &err);
        CHECK(b, "create: %s", err.msg);
        gpu_entry e = {.slot = 0, .pos = 0, .token = 1};
        float xn[DIM];
        int32_t c[1], l0[FF], *ls[1] = {l0};
        CHECK(gpu_backend_host.embed(b, &e, 1, &err) == 0 && gpu_backend_host.attn(b, 0, &e, 1, xn, &err) == 0,
              "%s", err.msg);
        CHECK(gpu_backend_host.predict(b, 0, 1, ls, c, &err) < 0 && strstr(err.msg, "no predictor"),
              "predict without a predictor: '%s'", err.msg);
        gpu_backend_host.destroy(&b);
    }
}

int main(void)
{
    weights *w = malloc(sizeof *w);
    trace *t = malloc(sizeof *t);
    CHECK(w && t, "oom");
    make_weights(w);
    int32_t tok[N_SEQ][N_POS];
    for (uint32_t s = 0; s < N_SEQ; s++)
        for (uint32_t p = 0; p < N_POS; p++)
            tok[s][p] = (int32_t)((7 * s + 13 * p + 1) % VOCAB);
    forward64(w, tok, t);

    char pwri[512], gguf[512], bare[512], side[512];
    test_tmp("test_predictor_pwri.gguf", pwri, sizeof pwri);
    test_tmp("test_predictor_gguf.gguf", gguf, sizeof gguf);
    test_tmp("test_predictor_bare.gguf", bare, sizeof bare);
    CHECK(sidecar_path_for(bare, side, sizeof side) == 0, "sidecar path");
    write_model(w, pwri, "PWRI", 1);
    write_model(w, gguf, "GGUF", 1);
    write_model(w, bare, "PWRI", 0);
    pi_error err = {{0}};
    tally ty;

    /* PowerInfer's own file: the predictor reads h, as ffn_inp in its llama graph. */
    pi_model *m = model_open_sparse(pwri, &err);
    CHECK(m, "%s", err.msg);
    CHECK(m->has_predictor && m->pred_input == PI_PRED_INPUT_RESIDUAL && !m->layers[0].ffn_down.data &&
          m->layers[0].ffn_down_t.data, "PWRI llama file with fc1/fc2: residual input, down only transposed (%s)",
          pi_pred_input_name(m->pred_input));
    check_backend(m, w, t, tok, &ty, "PWRI file, predictor in it");
    CHECK(ty.differ > 0, "the normed x predicts the same sets: the test cannot tell the inputs apart");
    pi_model *keep = m;

    /* The same tensors in a GGUF file (pi's convention, synth's): xn. */
    m = model_open_sparse(gguf, &err);
    CHECK(m, "%s", err.msg);
    CHECK(m->has_predictor && m->pred_input == PI_PRED_INPUT_NORMED, "GGUF file: normed input");
    check_backend(m, w, t, tok, &ty, "GGUF file, predictor in it");
    CHECK(ty.differ > 0, "GGUF file: the residual predicts the same sets");
    model_close(&m);

    /* A PWRI file without a predictor and a sidecar holding the same one:
     * the sidecar's contract (trained on x_norm pairs) wins. */
    m = model_open(bare, &err);
    CHECK(m && !m->has_predictor && m->pred_input == PI_PRED_INPUT_NORMED, "bare PWRI file: %s", err.msg);
    check_refusals(keep, m);
    pi_sidecar *sc = sidecar_new(m, &err);
    CHECK(sc, "%s", err.msg);
    for (uint32_t l = 0; l < LAYERS; l++) {
        sc->fc1[l] = (pi_tensor){PI_TYPE_F32, DIM, R, DIM * sizeof(float), w->l[l].fc1};
        sc->fc2[l] = (pi_tensor){PI_TYPE_F32, R, FF, R * sizeof(float), w->l[l].fc2};
    }
    sc->has_predictor = 1;
    sc->threshold = THRESHOLD;
    CHECK(sidecar_write(sc, side, &err) == 0, "%s", err.msg);
    sidecar_free(&sc);
    model_close(&m);
    m = model_open_sparse(bare, &err);
    CHECK(m && m->sidecar && m->has_predictor && m->pred_input == PI_PRED_INPUT_NORMED,
          "PWRI file + sidecar predictor: normed input (%s)", m ? pi_pred_input_name(m->pred_input) : err.msg);
    check_backend(m, w, t, tok, &ty, "PWRI file, predictor in sidecar");
    CHECK(ty.differ > 0, "sidecar: the residual predicts the same sets");
    model_close(&m);
    model_close(&keep);

    remove(pwri);
    remove(gguf);
    remove(bare);
    remove(side);
    free(w);
    free(t);
    printf("test_predictor: ok\n");
    return 0;
}
