/* Proves the reference forward pass computes llama2.c's transformer: logits of stories260K
 * imported to GGUF match an independent float64 forward over the original .bin at every one of 64
 * positions, greedy decoding reproduces llama2.c's known output, and the ops do the math by hand. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "forward.h"
#include "llama2c.h"
#include "model.h"
#include "ops.h"

#define N_POS 64
#define REL_TOL 1e-5   /* ||logits - ref||_inf / ||ref||_inf at every position */

static int near(double a, double b, double tol)
{
    return fabs(a - b) <= tol * (fabs(b) > 1.0 ? fabs(b) : 1.0);
}

/* ---------------- ops on hand-computed values ---------------- */

static pi_tensor f32_tensor(const float *data, uint64_t rows, uint64_t cols)
{
    pi_tensor t = {PI_TYPE_F32, cols, rows, cols * sizeof(float), data};
    return t;
}

static void test_ops(void)
{
    /* rmsnorm: mean(x^2) = 30/4 = 7.5 */
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 2, 0.5f}, out[4];
    ops_rmsnorm(out, x, w, 4, 0.0f);
    double s = 0.3651483716701107;
    CHECK(near(out[0], 1 * s, 1e-6) && near(out[1], 2 * s, 1e-6) && near(out[2], 6 * s, 1e-6) &&
          near(out[3], 2 * s, 1e-6), "rmsnorm %g %g %g %g", out[0], out[1], out[2], out[3]);

    /* rope: two heads of 4; pair 0 turns by pos * 1, pair 1 by pos * 10000^(-2/4) = pos * 0.01 */
    float v[8] = {1, 0, 0, 1, 1, 0, 0, 1};
    float v0[8];
    memcpy(v0, v, sizeof v);
    ops_rope(v0, 8, 4, 0, 10000.0f);
    CHECK(!memcmp(v0, v, sizeof v), "rope at position 0 must be the identity");
    ops_rope(v, 8, 4, 1, 10000.0f);
    for (int h = 0; h < 2; h++) {
        float *p = v + 4 * h;
        CHECK(near(p[0], 0.5403023058681398, 1e-6) && near(p[1], 0.8414709848078965, 1e-6),
              "rope head %d pair 0: %g %g", h, p[0], p[1]);
        CHECK(near(p[2], -0.009999833334166664, 1e-6) && near(p[3], 0.9999500004166653, 1e-6),
              "rope head %d pair 1: %g %g", h, p[2], p[3]);
    }
    float r[2] = {3, 4};
    ops_rope(r, 2, 2, 7, 10000.0f);   /* a rotation keeps the length */
    CHECK(near(hypot(r[0], r[1]), 5.0, 1e-6), "rope changed a length: %g", hypot(r[0], r[1]));

    /* softmax */
    float sm[3] = {1, 2, 3};
    ops_softmax(sm, 3);
    double z = exp(1) + exp(2) + exp(3);
    CHECK(near(sm[0], exp(1) / z, 1e-6) && near(sm[2], exp(3) / z, 1e-6), "softmax %g %g %g", sm[0], sm[1], sm[2]);
    float big[2] = {1000, 1000};
    ops_softmax(big, 2);
    CHECK(big[0] == 0.5f && big[1] == 0.5f, "softmax overflowed on large inputs: %g %g", big[0], big[1]);

    /* attention: equal scores average the values; a dominant key selects its value */
    float q[2] = {0, 0}, kv[2 * 3] = {1, 2, 0, 0, 0, 0}, att[2], ao[2];
    float vv[2 * 3] = {1, 3, 0, 5, 7, 0};   /* stride 3: positions at 0 and 3 */
    ops_attention_head(ao, q, kv, vv, 3, 2, 2, att);
    CHECK(near(ao[0], 3, 1e-6) && near(ao[1], 5, 1e-6), "attention average %g %g", ao[0], ao[1]);
    float q2[2] = {100, 0};
    ops_attention_head(ao, q2, kv, vv, 3, 2, 2, att);
    CHECK(near(ao[0], 1, 1e-6) && near(ao[1], 3, 1e-6), "attention select %g %g", ao[0], ao[1]);
}

/* ---------------- FFN on a hand-computed case ---------------- */

static void test_ffn_tiny(void)
{
    /* x = (1, -1): gate.x = (1, -1, 1), up.x = (3, 1, -2) */
    static const float gate[3 * 2] = {1, 0, 0, 1, 2, 1};
    static const float up[3 * 2] = {3, 0, 1, 0, 0, 2};
    static const float down[2 * 3] = {1, 10, 100, -1, 0, 1};
    pi_layer l;
    memset(&l, 0, sizeof l);
    l.ffn_gate = f32_tensor(gate, 3, 2);
    l.ffn_up = f32_tensor(up, 3, 2);
    l.ffn_down = f32_tensor(down, 2, 3);
    const float x[2] = {1, -1};
    const struct {
        pi_act act;
        double o0, o1;
    } cases[] = {
        {PI_ACT_SILU, -146.7079542038109, -3.6552928931500244},  /* h = silu(g) * u */
        {PI_ACT_RELU, -197, -5},                                  /* h = (3, 0, -2) */
        {PI_ACT_RELU_BOTH, 3, -3},                                /* h = (3, 0, 0) */
    };
    for (size_t c = 0; c < 3; c++) {
        float h[3], whole[2] = {0, 0}, parts[2] = {0, 0}, list[2] = {0, 0};
        ops_ffn_range(&l, cases[c].act, x, 0, 3, h, whole);
        CHECK(near(whole[0], cases[c].o0, 1e-5) && near(whole[1], cases[c].o1, 1e-5),
              "%s ffn = (%g, %g), expected (%g, %g)", pi_act_name(cases[c].act), whole[0], whole[1],
              cases[c].o0, cases[c].o1);
        ops_ffn_range(&l, cases[c].act, x, 0, 1, h, parts);   /* partial outputs add */
        ops_ffn_range(&l, cases[c].act, x, 1, 3, h, parts);
        uint32_t idx[3] = {2, 0, 1};
        ops_ffn_list(&l, cases[c].act, x, idx, 3, list);
        for (int i = 0; i < 2; i++) {
            CHECK(near(parts[i], whole[i], 1e-6), "%s: range partials do not add up", pi_act_name(cases[c].act));
            CHECK(near(list[i], whole[i], 1e-6), "%s: list partial differs", pi_act_name(cases[c].act));
        }
    }
}

/* Partial FFNs over ranges with ragged block edges in a Q8_0 down matrix. */
static void test_ffn_q8_ranges(void)
{
    enum { DIM = 32, FF = 96 };
    static float gate[FF * DIM], up[FF * DIM], down[DIM * FF], downq[DIM * FF];
    static uint8_t dq[DIM * FF * 2];   /* Q8_0: 34 bytes per 32 values */
    float x[DIM];
    uint32_t seed = 12345;
    for (int i = 0; i < FF * DIM; i++) {
        seed = seed * 1664525u + 1013904223u;
        gate[i] = (float)((seed >> 8) % 2001) / 1000.0f - 1.0f;
        up[i] = gate[(i * 7) % (FF * DIM)] * 0.5f + 0.1f;
        down[i] = (float)((seed >> 4) % 1001) / 500.0f - 1.0f;
    }
    for (int i = 0; i < DIM; i++)
        x[i] = (float)(i % 5) - 2.0f;
    size_t rb;
    CHECK(pi_row_bytes(PI_TYPE_Q8_0, FF, &rb) == 0 && rb * DIM <= sizeof dq, "q8_0 row bytes");
    for (int r = 0; r < DIM; r++) {
        pi_quantize_row(PI_TYPE_Q8_0, down + r * FF, dq + r * rb, FF);
        pi_dequantize_row(PI_TYPE_Q8_0, dq + r * rb, downq + r * FF, FF);
    }
    pi_layer l;
    memset(&l, 0, sizeof l);
    l.ffn_gate = f32_tensor(gate, FF, DIM);
    l.ffn_up = f32_tensor(up, FF, DIM);
    l.ffn_down = (pi_tensor){PI_TYPE_Q8_0, FF, DIM, rb, dq};
    pi_layer lf = l;
    lf.ffn_down = f32_tensor(downq, DIM, FF);   /* the same values in f32 */

    const uint32_t cuts[][2] = {{0, 96}, {5, 70}, {33, 40}, {0, 31}, {64, 96}, {7, 7}};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        float h[FF], a[DIM] = {0}, b[DIM] = {0};
        ops_ffn_range(&l, PI_ACT_RELU, x, cuts[c][0], cuts[c][1], h, a);
        ops_ffn_range(&lf, PI_ACT_RELU, x, cuts[c][0], cuts[c][1], h, b);
        for (int i = 0; i < DIM; i++)
            CHECK(near(a[i], b[i], 1e-4), "q8_0 down range [%u,%u) row %d: %g vs %g", cuts[c][0], cuts[c][1],
                  i, a[i], b[i]);
    }
}

/* ---------------- independent float64 llama2.c forward ---------------- */

typedef struct ref {
    int dim, hid, L, nh, nkv, V, S, hs, kvd;
    double *tok, *rms_att, *wq, *wk, *wv, *wo, *rms_ffn, *w1, *w2, *w3, *rms_final, *wcls;
    double *x, *xb, *xb2, *q, *h1, *h3, *att, *kc, *vc;
    double *all;
} ref;

static double *take_d(double **p, size_t n)
{
    double *r = *p;
    *p += n;
    return r;
}

static void ref_load(ref *r, const char *path)
{
    FILE *f = fopen(path, "rb");
    CHECK(f, "open %s", path);
    int32_t h[7];
    CHECK(fread(h, 4, 7, f) == 7, "header");
    r->dim = h[0], r->hid = h[1], r->L = h[2], r->nh = h[3], r->nkv = h[4], r->V = abs(h[5]), r->S = h[6];
    int shared = h[5] > 0;
    r->hs = r->dim / r->nh;
    r->kvd = r->hs * r->nkv;
    fseek(f, 0, SEEK_END);
    size_t n = (size_t)(ftell(f) - 28) / 4;
    fseek(f, 28, SEEK_SET);
    float *buf = malloc(n * 4);
    CHECK(buf && fread(buf, 4, n, f) == n, "read weights");
    fclose(f);
    r->all = malloc(n * sizeof(double));
    CHECK(r->all, "oom");
    for (size_t i = 0; i < n; i++)
        r->all[i] = buf[i];
    free(buf);
    size_t d = (size_t)r->dim, L = (size_t)r->L, kv = (size_t)r->kvd, hid = (size_t)r->hid;
    double *p = r->all;
    r->tok = take_d(&p, (size_t)r->V * d);
    r->rms_att = take_d(&p, L * d);
    r->wq = take_d(&p, L * d * d);
    r->wk = take_d(&p, L * kv * d);
    r->wv = take_d(&p, L * kv * d);
    r->wo = take_d(&p, L * d * d);
    r->rms_ffn = take_d(&p, L * d);
    r->w1 = take_d(&p, L * hid * d);
    r->w2 = take_d(&p, L * d * hid);
    r->w3 = take_d(&p, L * hid * d);
    r->rms_final = take_d(&p, d);
    take_d(&p, (size_t)r->S * r->hs);
    r->wcls = shared ? r->tok : take_d(&p, (size_t)r->V * d);
    r->x = calloc(d, 8), r->xb = calloc(d, 8), r->xb2 = calloc(d, 8), r->q = calloc(d, 8);
    r->h1 = calloc(hid, 8), r->h3 = calloc(hid, 8), r->att = calloc(N_POS, 8);
    r->kc = calloc(L * N_POS * kv, 8), r->vc = calloc(L * N_POS * kv, 8);
    CHECK(r->x && r->xb && r->xb2 && r->q && r->h1 && r->h3 && r->att && r->kc && r->vc, "oom");
}

static void ref_free(ref *r)
{
    free(r->all), free(r->x), free(r->xb), free(r->xb2), free(r->q), free(r->h1), free(r->h3);
    free(r->att), free(r->kc), free(r->vc);
}

static void d_rmsnorm(double *o, const double *x, const double *w, int n)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += x[i] * x[i];
    double s = 1.0 / sqrt(ss / n + 1e-5);
    for (int i = 0; i < n; i++)
        o[i] = w[i] * x[i] * s;
}

/* o[i] = sum_j w[i*n + j] x[j], i < d */
static void d_matmul(double *o, const double *x, const double *w, int n, int d)
{
    for (int i = 0; i < d; i++) {
        double s = 0;
        for (int j = 0; j < n; j++)
            s += w[(size_t)i * n + j] * x[j];
        o[i] = s;
    }
}

static void ref_forward(ref *r, int token, int pos, double *logits)
{
    int dim = r->dim, hs = r->hs, kvd = r->kvd, hid = r->hid;
    memcpy(r->x, r->tok + (size_t)token * dim, (size_t)dim * 8);
    for (int l = 0; l < r->L; l++) {
        double *kc = r->kc + (size_t)l * N_POS * kvd, *vc = r->vc + (size_t)l * N_POS * kvd;
        double *k = kc + (size_t)pos * kvd, *v = vc + (size_t)pos * kvd;
        d_rmsnorm(r->xb, r->x, r->rms_att + (size_t)l * dim, dim);
        d_matmul(r->q, r->xb, r->wq + (size_t)l * dim * dim, dim, dim);
        d_matmul(k, r->xb, r->wk + (size_t)l * kvd * dim, dim, kvd);
        d_matmul(v, r->xb, r->wv + (size_t)l * kvd * dim, dim, kvd);
        for (int i = 0; i < dim; i += 2) {
            double ang = pos * pow(10000.0, -(double)(i % hs) / hs), c = cos(ang), s = sin(ang);
            for (int which = 0; which < (i < kvd ? 2 : 1); which++) {
                double *vec = which ? k : r->q, a = vec[i], b = vec[i + 1];
                vec[i] = a * c - b * s;
                vec[i + 1] = a * s + b * c;
            }
        }
        for (int h = 0; h < r->nh; h++) {
            int kh = h / (r->nh / r->nkv);
            double *q = r->q + h * hs, mx = -1e300, sum = 0;
            for (int t = 0; t <= pos; t++) {
                double sc = 0;
                for (int i = 0; i < hs; i++)
                    sc += q[i] * kc[(size_t)t * kvd + kh * hs + i];
                r->att[t] = sc / sqrt((double)hs);
                mx = r->att[t] > mx ? r->att[t] : mx;
            }
            for (int t = 0; t <= pos; t++)
                sum += (r->att[t] = exp(r->att[t] - mx));
            for (int i = 0; i < hs; i++) {
                double o = 0;
                for (int t = 0; t <= pos; t++)
                    o += r->att[t] / sum * vc[(size_t)t * kvd + kh * hs + i];
                r->xb[h * hs + i] = o;
            }
        }
        d_matmul(r->xb2, r->xb, r->wo + (size_t)l * dim * dim, dim, dim);
        for (int i = 0; i < dim; i++)
            r->x[i] += r->xb2[i];
        d_rmsnorm(r->xb, r->x, r->rms_ffn + (size_t)l * dim, dim);
        d_matmul(r->h1, r->xb, r->w1 + (size_t)l * hid * dim, dim, hid);
        d_matmul(r->h3, r->xb, r->w3 + (size_t)l * hid * dim, dim, hid);
        for (int i = 0; i < hid; i++)
            r->h1[i] = r->h1[i] / (1.0 + exp(-r->h1[i])) * r->h3[i];
        d_matmul(r->xb2, r->h1, r->w2 + (size_t)l * dim * hid, hid, dim);
        for (int i = 0; i < dim; i++)
            r->x[i] += r->xb2[i];
    }
    d_rmsnorm(r->x, r->x, r->rms_final, dim);
    d_matmul(logits, r->x, r->wcls, dim, r->V);
}

/* ---------------- llama2.c tokenizer, for decoding only ---------------- */

typedef struct vocab {
    int n;
    char **s;
} vocab;

static void vocab_load(vocab *v, const char *path, int n)
{
    FILE *f = fopen(path, "rb");
    CHECK(f, "open %s", path);
    int32_t maxlen, len;
    float score;
    CHECK(fread(&maxlen, 4, 1, f) == 1, "tokenizer header");
    v->n = n;
    v->s = calloc((size_t)n, sizeof *v->s);
    for (int i = 0; i < n; i++) {
        CHECK(fread(&score, 4, 1, f) == 1 && fread(&len, 4, 1, f) == 1 && len >= 0, "token %d", i);
        v->s[i] = calloc((size_t)len + 1, 1);
        CHECK(fread(v->s[i], 1, (size_t)len, f) == (size_t)len, "token %d bytes", i);
    }
    fclose(f);
}

/* llama2.c's decode: drop the leading space after BOS; <0xXX> is the raw byte. */
static void decode_append(const vocab *v, int prev, int tok, char *out, size_t cap)
{
    const char *p = v->s[tok];
    char byte[2] = {0, 0};
    unsigned b;
    if (prev == 1 && p[0] == ' ')
        p++;
    if (sscanf(p, "<0x%02X>", &b) == 1) {
        byte[0] = (char)b;
        p = byte;
    }
    strncat(out, p, cap - strlen(out) - 1);
}

static void vocab_free(vocab *v)
{
    for (int i = 0; i < v->n; i++)
        free(v->s[i]);
    free(v->s);
}

static int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* Max over positions of ||logits - ref||_inf / ||ref||_inf for the model at gguf, run on the
 * tokens of toks (which it fills greedily when greedy is set). */
static double compare_run(const char *gguf, ref *r, int *toks, int greedy)
{
    pi_error err = {{0}};
    pi_model *m = model_open(gguf, &err);
    CHECK(m, "model_open: %s", err.msg);
    CHECK(m->dim == 64 && m->n_layers == 5 && m->n_heads == 8 && m->n_kv_heads == 4 && m->n_vocab == 512 &&
          m->n_ff == 172 && m->tied_output && m->act == PI_ACT_SILU, "hparams of the imported model");
    forward_state *s = forward_new(m, N_POS, &err);
    CHECK(s, "forward_new: %s", err.msg);
    double *want = malloc(512 * sizeof(double)), worst = 0;
    CHECK(want, "oom");
    memset(r->kc, 0, (size_t)r->L * N_POS * r->kvd * 8);
    for (int pos = 0; pos < N_POS; pos++) {
        const float *got = forward_token(s, toks[pos], (uint32_t)pos);
        CHECK(got, "forward_token at %d", pos);
        ref_forward(r, toks[pos], pos, want);
        double diff = 0, norm = 0;
        for (int i = 0; i < 512; i++) {
            diff = fmax(diff, fabs(got[i] - want[i]));
            norm = fmax(norm, fabs(want[i]));
        }
        worst = fmax(worst, diff / norm);
        if (greedy && pos + 1 < N_POS)
            toks[pos + 1] = argmax(got, 512);
    }
    CHECK(forward_token(s, 1, N_POS) == NULL, "a position past n_ctx must be refused");
    CHECK(forward_token(s, 512, 0) == NULL && forward_token(s, -1, 0) == NULL, "bad token ids must be refused");
    free(want);
    forward_free(&s);
    CHECK(s == NULL, "forward_free nulls");
    model_close(&m);
    return worst;
}

/* An unshared classifier (negative vocab_size, wcls appended) becomes output.weight; with wcls a
 * copy of the embedding the logits equal the tied model's exactly. */
static void test_unshared(const char *bin, const char *tok, const char *tied_gguf)
{
    char ubin[512], ugguf[512];
    test_tmp("test_forward_unshared.bin", ubin, sizeof ubin);
    test_tmp("test_forward_unshared.gguf", ugguf, sizeof ugguf);
    FILE *f = fopen(bin, "rb");
    CHECK(f, "open %s", bin);
    static unsigned char buf[2 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    int32_t h[7];
    memcpy(h, buf, sizeof h);
    size_t embd = (size_t)h[5] * (size_t)h[0] * 4;
    CHECK(n < sizeof buf && n > 28 + embd, "checkpoint size");
    h[5] = -h[5];
    memcpy(buf, h, sizeof h);
    memcpy(buf + n, buf + 28, embd);   /* wcls = token embedding */
    f = fopen(ubin, "wb");
    CHECK(f && fwrite(buf, 1, n + embd, f) == n + embd && fclose(f) == 0, "write %s", ubin);

    pi_error err = {{0}};
    llama2c_info info;
    CHECK(llama2c_import(ubin, tok, ugguf, PI_TYPE_F32, PI_ACT_SILU, &info, &err) == 0, "import: %s", err.msg);
    CHECK(!info.shared_classifier, "unshared classifier not detected");
    pi_model *mu = model_open(ugguf, &err), *mt = model_open(tied_gguf, &err);
    CHECK(mu && mt, "model_open: %s", err.msg);
    CHECK(!mu->tied_output && mu->output.data != mu->tok_embd.data && mt->tied_output, "output binding");
    forward_state *su = forward_new(mu, 8, &err), *st = forward_new(mt, 8, &err);
    CHECK(su && st, "forward_new: %s", err.msg);
    for (uint32_t pos = 0; pos < 8; pos++) {
        const float *a = forward_token(su, (int32_t)(pos * 37 % 512), pos);
        const float *b = forward_token(st, (int32_t)(pos * 37 % 512), pos);
        CHECK(a && b && !memcmp(a, b, 512 * sizeof *a), "untied logits differ at %u", pos);
    }
    forward_free(&su);
    forward_free(&st);
    model_close(&mu);
    model_close(&mt);
    remove(ubin);
    remove(ugguf);
}

static void test_stories(void)
{
    char bin[512], tok[512], exp_path[512], out[512];
    test_shared("models/stories260K.bin", bin, sizeof bin);
    test_shared("models/tok512.bin", tok, sizeof tok);
    test_shared("models/stories260K.expected.txt", exp_path, sizeof exp_path);
    test_tmp("test_forward_stories.gguf", out, sizeof out);
    pi_error err = {{0}};
    llama2c_info info;
    CHECK(llama2c_import(bin, tok, out, PI_TYPE_F32, PI_ACT_SILU, &info, &err) == 0, "import: %s", err.msg);
    CHECK(info.n_fallback == 0 && info.shared_classifier, "f32 import info");
    test_unshared(bin, tok, out);

    ref r;
    ref_load(&r, bin);
    int toks[N_POS];
    toks[0] = 1;   /* BOS */
    double worst = compare_run(out, &r, toks, 1);
    printf("f32: max relative logit error over %d positions: %.3g (tolerance %g)\n", N_POS, worst, REL_TOL);
    CHECK(worst <= REL_TOL, "f32 forward differs from the float64 reference: %g", worst);

    /* the first 20 greedy tokens are llama2.c's own output */
    vocab v;
    vocab_load(&v, tok, 512);
    char text[1024] = "", expected[1024] = "";
    for (int i = 1; i <= 20; i++)
        decode_append(&v, toks[i - 1], toks[i], text, sizeof text);
    FILE *f = fopen(exp_path, "rb");
    CHECK(f, "open %s", exp_path);
    size_t n = fread(expected, 1, sizeof expected - 1, f);
    fclose(f);
    CHECK(strlen(text) > 40 && strlen(text) <= n, "decoded %zu bytes", strlen(text));
    CHECK(!strncmp(text, expected, strlen(text)), "greedy text '%s' is not the start of the expected output", text);
    printf("greedy: \"%s\"\n", text);
    vocab_free(&v);

    /* quantized imports stay close on the same tokens; 4 bits on a 260K-parameter model is
     * coarse, so q4_0's bound only catches a broken path, not lost precision */
    const struct {
        pi_type type;
        double tol;
    } q[] = {{PI_TYPE_F16, 1e-2}, {PI_TYPE_Q8_0, 5e-2}, {PI_TYPE_Q4_0, 0.7}};
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        CHECK(llama2c_import(bin, tok, out, q[i].type, PI_ACT_SILU, &info, &err) == 0, "import: %s", err.msg);
        double e = compare_run(out, &r, toks, 0);
        printf("%s: max relative logit error %.3g (tolerance %g, %u tensors kept f16)\n",
               pi_type_name((int)q[i].type), e, q[i].tol, info.n_fallback);
        CHECK(e <= q[i].tol, "%s forward too far from the reference: %g", pi_type_name((int)q[i].type), e);
    }
    ref_free(&r);
    remove(out);
}

int main(void)
{
    test_ops();
    test_ffn_tiny();
    test_ffn_q8_ranges();
    test_stories();
    printf("test_forward: ok\n");
    return 0;
}
