/* Synthetic models (sparse/synth.c) load, run stably, and their real FFN activations follow the requested sparsity and power law; the predictor predicts them; --plain has no extras; output is deterministic. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "forward.h"
#include "gguf.h"
#include "model.h"
#include "ops.h"
#include "synth.h"
#include "tokenizer.h"

/* A predictor read straight from the file (the loader may or may not bind it). */
typedef struct pred {
    pi_tensor fc1, fc2;
    float threshold;    /* powerinfer.sparse_threshold */
} pred;

static int bind_raw(const gguf_file *f, const char *name, pi_tensor *t)
{
    const gguf_tensor *g = gguf_find_tensor(f, name);
    if (!g)
        return -1;
    t->type = g->type;
    t->cols = g->ne[0];
    t->rows = g->ne[1];
    t->data = g->data;
    return pi_row_bytes(g->type, g->ne[0], &t->row_bytes);
}

/* What a run measured. */
typedef struct stats {
    uint32_t n_layers, n_ff, n_tok;
    double *freq;                       /* n_layers x n_ff: fraction of tokens active */
    double tp, fp, fn;                  /* predictor, over all layers and tokens */
    double max_logit_diff;              /* against forward_token */
    int finite;
} stats;

static void stats_free(stats *s)
{
    free(s->freq);
}

/* Runs n_tok pseudo-random tokens through the model with the layer math of
 * model/forward.c written out here (ops.h), recording which neurons fire
 * (act(gate.x) * up.x > 0) and what the predictor says; checks the final
 * logits of the first 32 positions against forward_token. */
static stats run_model(const pi_model *m, const pred *pr, uint32_t n_tok, uint64_t seed)
{
    stats st = {.n_layers = m->n_layers, .n_ff = m->n_ff, .n_tok = n_tok, .finite = 1};
    uint32_t dim = m->dim, hd = m->head_dim, kv_dim = m->n_kv_heads * hd, group = m->n_heads / m->n_kv_heads;
    size_t cache = (size_t)m->n_layers * n_tok * kv_dim;
    float *x = calloc(dim, 4), *xb = calloc(dim, 4), *xb2 = calloc(dim, 4), *q = calloc(dim, 4);
    float *h = calloc(m->n_ff, 4), *att = calloc(n_tok, 4), *logits = calloc(m->n_vocab, 4);
    float *kc = calloc(cache, 4), *vc = calloc(cache, 4), *hid = calloc(64, 4);
    st.freq = calloc((size_t)m->n_layers * m->n_ff, sizeof *st.freq);
    CHECK(x && xb && xb2 && q && h && att && logits && kc && vc && hid && st.freq, "out of memory");
    pi_error err = {{0}};
    forward_state *fs = forward_new(m, n_tok, &err);
    CHECK(fs, "%s", err.msg);
    uint64_t s = seed;
    for (uint32_t pos = 0; pos < n_tok; pos++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        int32_t tok = (int32_t)((s >> 33) % m->n_vocab);
        pi_dequantize_row(m->tok_embd.type, pi_tensor_row(&m->tok_embd, (uint64_t)tok), x, dim);
        for (uint32_t il = 0; il < m->n_layers; il++) {
            const pi_layer *l = &m->layers[il];
            float *lk = kc + (size_t)il * n_tok * kv_dim, *lv = vc + (size_t)il * n_tok * kv_dim;
            ops_rmsnorm(xb, x, l->attn_norm.data, dim, m->norm_eps);
            ops_matvec(q, &l->wq, xb, 0, l->wq.rows);
            ops_matvec(lk + (size_t)pos * kv_dim, &l->wk, xb, 0, kv_dim);
            ops_matvec(lv + (size_t)pos * kv_dim, &l->wv, xb, 0, kv_dim);
            ops_rope(q, m->n_heads * hd, hd, pos, m->rope_theta);
            ops_rope(lk + (size_t)pos * kv_dim, kv_dim, hd, pos, m->rope_theta);
            for (uint32_t hh = 0; hh < m->n_heads; hh++)
                ops_attention_head(xb + (size_t)hh * hd, q + (size_t)hh * hd, lk + (size_t)(hh / group) * hd,
                                   lv + (size_t)(hh / group) * hd, kv_dim, hd, pos + 1, att);
            ops_matvec(xb2, &l->wo, xb, 0, dim);
            for (uint32_t i = 0; i < dim; i++)
                x[i] += xb2[i];
            ops_rmsnorm(xb, x, l->ffn_norm.data, dim, m->norm_eps);
            memset(xb2, 0, dim * sizeof *xb2);
            ops_ffn_range(l, m->act, xb, 0, m->n_ff, h, xb2);
            const pi_tensor *fc1 = pr ? &pr[il].fc1 : NULL, *fc2 = pr ? &pr[il].fc2 : NULL;
            if (fc1) {
                ops_matvec(hid, fc1, xb, 0, fc1->rows);
                for (uint64_t r = 0; r < fc1->rows; r++)
                    hid[r] = hid[r] > 0.0f ? hid[r] : 0.0f;
            }
            for (uint32_t j = 0; j < m->n_ff; j++) {
                int on = h[j] > 0.0f;
                st.freq[(size_t)il * m->n_ff + j] += on;
                if (fc1) {
                    int said = pi_dot_row(fc2->type, pi_tensor_row(fc2, j), hid, (size_t)fc2->cols) >
                               pr[il].threshold;
                    st.tp += on && said;
                    st.fp += !on && said;
                    st.fn += on && !said;
                }
            }
            for (uint32_t i = 0; i < dim; i++)
                x[i] += xb2[i];
        }
        ops_rmsnorm(x, x, m->output_norm.data, dim, m->norm_eps);
        ops_matvec(logits, &m->output, x, 0, m->n_vocab);
        for (uint32_t v = 0; v < m->n_vocab; v++)
            if (!isfinite(logits[v]))
                st.finite = 0;
        if (pos >= 32)
            continue;   /* the replay is proven equal on the first positions; the rest is statistics */
        const float *ref = forward_token(fs, tok, pos);
        CHECK(ref, "forward_token failed at %u", pos);
        for (uint32_t v = 0; v < m->n_vocab; v++) {
            if (!isfinite(logits[v]) || !isfinite(ref[v]))
                st.finite = 0;
            double d = fabs((double)logits[v] - ref[v]) / (1.0 + fabs(ref[v]));
            if (d > st.max_logit_diff)
                st.max_logit_diff = d;
        }
    }
    for (size_t i = 0; i < (size_t)m->n_layers * m->n_ff; i++)
        st.freq[i] /= n_tok;
    forward_free(&fs);
    free(x), free(xb), free(xb2), free(q), free(h), free(att), free(logits), free(kc), free(vc), free(hid);
    return st;
}

static double layer_mean(const stats *st, uint32_t l)
{
    double s = 0.0;
    for (uint32_t j = 0; j < st->n_ff; j++)
        s += st->freq[(size_t)l * st->n_ff + j];
    return s / st->n_ff;
}

static const double *sort_key;
static int by_key(const void *a, const void *b)
{
    double x = sort_key[*(const uint32_t *)a], y = sort_key[*(const uint32_t *)b];
    return x < y ? -1 : x > y;
}

/* Average ranks (ties share their mean rank). */
static void ranks(const double *v, uint32_t n, double *r)
{
    uint32_t *idx = malloc(n * sizeof *idx);
    CHECK(idx, "out of memory");
    for (uint32_t i = 0; i < n; i++)
        idx[i] = i;
    sort_key = v;
    qsort(idx, n, sizeof *idx, by_key);
    for (uint32_t i = 0; i < n;) {
        uint32_t e = i;
        while (e + 1 < n && v[idx[e + 1]] == v[idx[i]])
            e++;
        for (uint32_t k = i; k <= e; k++)
            r[idx[k]] = 0.5 * (i + e);
        i = e + 1;
    }
    free(idx);
}

static double spearman(const double *a, const double *b, uint32_t n)
{
    double *ra = malloc(n * sizeof *ra), *rb = malloc(n * sizeof *rb);
    CHECK(ra && rb, "out of memory");
    ranks(a, n, ra);
    ranks(b, n, rb);
    double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
    for (uint32_t i = 0; i < n; i++)
        ma += ra[i] / n, mb += rb[i] / n;
    for (uint32_t i = 0; i < n; i++) {
        sab += (ra[i] - ma) * (rb[i] - mb);
        saa += (ra[i] - ma) * (ra[i] - ma);
        sbb += (rb[i] - mb) * (rb[i] - mb);
    }
    free(ra);
    free(rb);
    return sab / sqrt(saa * sbb);
}

static void write_model(const char *name, const synth_options *o, char *path, size_t cap)
{
    pi_error err = {{0}};
    test_tmp(name, path, cap);
    CHECK(synth_write(path, o, NULL, NULL, &err) == 0, "synth_write %s: %s", name, err.msg);
}

static pi_model *open_model(const char *path, pred **pr)
{
    pi_error err = {{0}};
    pi_model *m = model_open(path, &err);
    CHECK(m, "model_open %s: %s", path, err.msg);
    CHECK(m->act == PI_ACT_RELU, "%s: activation %s, want relu", path, pi_act_name(m->act));
    *pr = calloc(m->n_layers, sizeof **pr);
    CHECK(*pr, "out of memory");
    float threshold;
    CHECK(gguf_get_f32(m->file, "powerinfer.sparse_threshold", &threshold, &err) == 0, "%s", err.msg);
    for (uint32_t l = 0; l < m->n_layers; l++) {
        char n1[64], n2[64];
        snprintf(n1, sizeof n1, "blk.%u.fc1.weight", l);
        snprintf(n2, sizeof n2, "blk.%u.fc2.weight", l);
        CHECK(bind_raw(m->file, n1, &(*pr)[l].fc1) == 0 && bind_raw(m->file, n2, &(*pr)[l].fc2) == 0,
              "%s: predictor of layer %u missing", path, l);
        (*pr)[l].threshold = threshold;
        CHECK((*pr)[l].fc1.cols == m->dim && (*pr)[l].fc2.rows == m->n_ff &&
              (*pr)[l].fc2.cols == (*pr)[l].fc1.rows, "%s: predictor shapes of layer %u", path, l);
    }
    return m;
}

/* Every type, two sparsities: the measured mean active fraction per layer
 * over 64 tokens is within 0.03 of the request, with no NaN. */
static void test_active_fraction(void)
{
    static const pi_type types[] = {PI_TYPE_F32, PI_TYPE_F16, PI_TYPE_Q8_0, PI_TYPE_Q4_0};
    static const float actives[] = {0.11f, 0.3f};
    for (size_t ti = 0; ti < 4; ti++)
        for (size_t ai = 0; ai < 2; ai++) {
            synth_options o;
            synth_options_default(&o);
            o.type = types[ti];
            o.active = actives[ai];
            o.seed = 11;
            char name[64], path[512];
            snprintf(name, sizeof name, "synth_%s_%.2f.gguf", pi_type_name((int)o.type), o.active);
            write_model(name, &o, path, sizeof path);
            pred *pr;
            pi_model *m = open_model(path, &pr);
            stats st = run_model(m, pr, 64, 5);
            CHECK(st.finite, "%s: non-finite logits", name);
            CHECK(st.max_logit_diff < 1e-4, "%s: the ops replay differs from forward_token by %g", name,
                  st.max_logit_diff);
            printf("%-5s active %.2f:", pi_type_name((int)o.type), o.active);
            for (uint32_t l = 0; l < m->n_layers; l++) {
                double a = layer_mean(&st, l);
                printf(" layer %u %.4f", l, a);
                CHECK(fabs(a - o.active) <= 0.03, "%s layer %u: measured active %.4f, want %.2f +- 0.03", name,
                      l, a, o.active);
            }
            double rec = st.tp / (st.tp + st.fn), prec = st.tp / (st.tp + st.fp);
            printf("; predictor recall %.3f precision %.3f\n", rec, prec);
            CHECK(rec >= 0.9 && prec >= 0.6, "%s: predictor recall %.3f precision %.3f", name, rec, prec);
            stats_free(&st);
            free(pr);
            model_close(&m);
            remove(path);
        }
}

/* 256 tokens: stable, and per-neuron frequencies rank like the intended
 * power law (Spearman > 0.5 per layer); also over 128 tokens at 8 layers of
 * a wider custom shape, so the calibration holds with depth. */
static void test_power_law(void)
{
    for (int deep = 0; deep < 2; deep++) {
        synth_options o;
        synth_options_default(&o);
        o.seed = 3;
        if (deep)
            o.shape = (synth_shape){"deep", 128, 8, 512, 4, 2, 512, 256};
        char path[512];
        write_model(deep ? "synth_deep.gguf" : "synth_law.gguf", &o, path, sizeof path);
        pred *pr;
        pi_model *m = open_model(path, &pr);
        uint32_t n_tok = deep ? 128 : 256;
        stats st = run_model(m, pr, n_tok, 9);
        CHECK(st.finite, "non-finite logits over %u tokens", n_tok);
        double *want = malloc(m->n_ff * sizeof *want);
        float *p = malloc(m->n_ff * sizeof *p);
        CHECK(want && p, "out of memory");
        pi_error err = {{0}};
        for (uint32_t l = 0; l < m->n_layers; l++) {
            CHECK(synth_neuron_probs(&o, l, p, &err) == 0, "%s", err.msg);
            double mean = 0.0, hot = 0.0, all = 0.0;
            for (uint32_t j = 0; j < m->n_ff; j++) {
                want[j] = p[j];
                mean += p[j] / m->n_ff;
                all += st.freq[(size_t)l * m->n_ff + j];
                if (p[j] >= 0.2f)
                    hot += st.freq[(size_t)l * m->n_ff + j];
            }
            double rho = spearman(want, st.freq + (size_t)l * m->n_ff, m->n_ff);
            double a = layer_mean(&st, l);
            printf("%s layer %u: %u tokens, intended mean %.4f, measured %.4f, Spearman %.3f, "
                   "neurons with p >= 0.2 serve %.1f%% of activations\n",
                   deep ? "deep (dim 128, n_ff 512)" : "tiny f16", l, n_tok, mean, a, rho, 100.0 * hot / all);
            CHECK(fabs(mean - o.active) < 1e-3, "intended mean %.4f", mean);
            CHECK(fabs(a - o.active) <= 0.03, "layer %u: measured %.4f", l, a);
            CHECK(rho > 0.5, "layer %u: Spearman %.3f", l, rho);
        }
        free(want);
        free(p);
        stats_free(&st);
        free(pr);
        model_close(&m);
        remove(path);
    }
}

static int has_prefix(gguf_str s, const char *p)
{
    size_t n = strlen(p);
    return s.len >= n && !memcmp(s.ptr, p, n);
}

static void read_file(const char *path, char **buf, size_t *n)
{
    FILE *f = fopen(path, "rb");
    CHECK(f, "open %s", path);
    CHECK(fseek(f, 0, SEEK_END) == 0, "seek");
    long len = ftell(f);
    CHECK(len > 0 && fseek(f, 0, SEEK_SET) == 0, "size of %s", path);
    *buf = malloc((size_t)len);
    CHECK(*buf && fread(*buf, 1, (size_t)len, f) == (size_t)len, "read %s", path);
    *n = (size_t)len;
    fclose(f);
}

/* --plain: llama.cpp's tensors only, no pi.* / powerinfer.* keys, the same
 * standard tensors as the full file; same seed = same bytes; ffn_down_t is
 * exactly down transposed even when quantized. */
static void test_plain_and_determinism(void)
{
    synth_options o;
    synth_options_default(&o);
    o.type = PI_TYPE_Q4_0;
    char full[512], plain[512], again[512], other[512];
    write_model("synth_full.gguf", &o, full, sizeof full);
    o.n_threads = 3;   /* rows split differently: the same bytes */
    write_model("synth_again.gguf", &o, again, sizeof again);
    o.n_threads = 0;
    o.seed = 2;
    write_model("synth_other.gguf", &o, other, sizeof other);
    o.seed = 1;
    o.plain = 1;
    write_model("synth_plain.gguf", &o, plain, sizeof plain);

    char *a, *b, *c;
    size_t na, nb, nc;
    read_file(full, &a, &na);
    read_file(again, &b, &nb);
    read_file(other, &c, &nc);
    CHECK(na == nb && !memcmp(a, b, na), "same seed gave different bytes");
    CHECK(na == nc && memcmp(a, c, na), "another seed gave the same bytes");
    printf("determinism: two writes with seed 1 (default and 3 threads) identical (%zu bytes); seed 2 differs\n", na);
    free(a), free(b), free(c);

    pi_error err = {{0}};
    gguf_file *fp = gguf_open(plain, &err), *ff = gguf_open(full, &err);
    CHECK(fp && ff, "%s", err.msg);
    for (size_t i = 0; i < gguf_n_kv(fp); i++) {
        gguf_str k = gguf_kv_at(fp, i)->key;
        CHECK(!has_prefix(k, "pi.") && !has_prefix(k, "powerinfer."), "plain file has key %.*s", (int)k.len, k.ptr);
    }
    size_t extra = 0;
    for (size_t i = 0; i < gguf_n_tensors(ff); i++) {
        const gguf_tensor *t = gguf_tensor_at(ff, i);
        char name[96];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        const gguf_tensor *tp = gguf_find_tensor(fp, name);
        int is_extra = strstr(name, ".fc1.") || strstr(name, ".fc2.") || strstr(name, "ffn_down_t");
        extra += is_extra;
        CHECK(is_extra == !tp, "tensor %s: extra %d, in plain %d", name, is_extra, tp != NULL);
        if (tp)
            CHECK(tp->size == t->size && !memcmp(tp->data, t->data, t->size), "plain %s differs", name);
    }
    CHECK(gguf_n_tensors(fp) + extra == gguf_n_tensors(ff) && extra == 6, "tensor counts");
    printf("plain: %zu tensors (full %zu), no pi.*/powerinfer.* keys, standard tensors identical\n",
           gguf_n_tensors(fp), gguf_n_tensors(ff));
    gguf_close(&fp);
    gguf_close(&ff);

    pi_model *mp = model_open(plain, &err);
    CHECK(mp, "%s", err.msg);
    model_close(&mp);

    /* down_t == down^T, element for element, through q4_0 */
    pi_model *m = model_open(full, &err);
    CHECK(m, "%s", err.msg);
    for (uint32_t l = 0; l < m->n_layers; l++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%u.ffn_down_t.weight", l);
        pi_tensor dt;
        CHECK(bind_raw(m->file, name, &dt) == 0 && dt.rows == m->n_ff && dt.cols == m->dim, "%s", name);
        for (uint32_t j = 0; j < m->n_ff; j++)
            for (uint32_t i = 0; i < m->dim; i++)
                CHECK(ops_tensor_get(&dt, j, i) == ops_tensor_get(&m->layers[l].ffn_down, i, j),
                      "layer %u: down_t[%u][%u] != down[%u][%u]", l, j, i, i, j);
    }
    model_close(&m);
    remove(full), remove(again), remove(other), remove(plain);
}

/* The vocabulary encodes and decodes text. */
static void test_vocab(void)
{
    synth_options o;
    synth_options_default(&o);
    char path[512];
    write_model("synth_vocab.gguf", &o, path, sizeof path);
    pi_error err = {{0}};
    gguf_file *f = gguf_open(path, &err);
    CHECK(f, "%s", err.msg);
    tokenizer *t = tokenizer_from_gguf(f, &err);
    CHECK(t, "%s", err.msg);
    CHECK(tokenizer_n_vocab(t) == 512, "vocab %u", tokenizer_n_vocab(t));
    const char *text = "Hello world, the synthetic model says: 42 (ok)!";
    int32_t *ids;
    size_t n;
    CHECK(tokenizer_encode(t, text, strlen(text), 1, &ids, &n, &err) == 0, "%s", err.msg);
    char out[256] = "", piece[64];
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        int k = tokenizer_decode_piece(t, i ? ids[i - 1] : -1, ids[i], piece, sizeof piece);
        CHECK(k >= 0 && (size_t)k < sizeof piece && at + (size_t)k < sizeof out, "piece %zu", i);
        memcpy(out + at, piece, (size_t)k);
        at += (size_t)k;
    }
    out[at] = '\0';
    printf("vocab: \"%s\" -> %zu tokens -> \"%s\"\n", text, n, out);
    CHECK(!strcmp(out, text), "round trip gave \"%s\"", out);
    CHECK(n < strlen(text), "no merges happened (%zu tokens)", n);
    free(ids);
    tokenizer_free(&t);
    gguf_close(&f);
    remove(path);
}

static int desc_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x > y ? -1 : x < y;
}

/* Bad names and unwritable outputs fail with a message; large shapes are
 * calibrated (without writing them). */
static void test_errors_and_shapes(void)
{
    pi_error err = {{0}};
    synth_shape s;
    CHECK(synth_shape_find("huge", &s, &err) < 0 && strstr(err.msg, "huge") && strstr(err.msg, "13b"), "%s",
          err.msg);
    synth_options o;
    synth_options_default(&o);
    CHECK(synth_write("/nonexistent-dir/m.gguf", &o, NULL, NULL, &err) < 0 &&
          strstr(err.msg, "/nonexistent-dir/m.gguf"), "unwritable: %s", err.msg);
    char never[512];
    test_tmp("synth_never.gguf", never, sizeof never);
    o.active = 0.95f;
    CHECK(synth_write(never, &o, NULL, NULL, &err) < 0 && strstr(err.msg, "active"), "%s", err.msg);
    o.active = 0.11f;
    o.type = (pi_type)12;
    CHECK(synth_write(never, &o, NULL, NULL, &err) < 0 && strstr(err.msg, "type"), "%s", err.msg);
    FILE *nf = fopen(never, "rb");
    CHECK(!nf, "a rejected synth_write left %s behind", never);
    o.type = PI_TYPE_F16;

    const char *names[] = {"7b", "13b", "40b", "70b"};
    for (size_t i = 0; i < 4; i++) {
        CHECK(synth_shape_find(names[i], &o.shape, &err) == 0, "%s", err.msg);
        float *p = malloc(o.shape.n_ff * sizeof *p);
        CHECK(p && synth_neuron_probs(&o, 0, p, &err) == 0, "%s", err.msg);
        double mean = 0.0, top = 0.0, all = 0.0;
        for (uint32_t j = 0; j < o.shape.n_ff; j++)
            mean += p[j];
        /* share of activations carried by the hottest 20% of neurons */
        qsort(p, o.shape.n_ff, sizeof *p, desc_float);
        for (uint32_t j = 0; j < o.shape.n_ff; j++) {
            all += p[j];
            if (j < o.shape.n_ff / 5)
                top += p[j];
        }
        mean /= o.shape.n_ff;
        printf("shape %s: dim %u, %u layers, n_ff %u: intended mean active %.4f, top 20%% of neurons carry "
               "%.1f%% of activations, %.2f GB as f16\n", names[i], o.shape.dim, o.shape.n_layers, o.shape.n_ff,
               mean, 100.0 * top / all, (double)synth_data_bytes(&o) / 1e9);
        CHECK(fabs(mean - 0.11) < 1e-3, "%s: mean %.4f", names[i], mean);
        free(p);
    }
}

int main(void)
{
    test_errors_and_shapes();
    test_vocab();
    test_active_fraction();
    test_power_law();
    test_plain_and_determinism();
    printf("test_synth: ok\n");
    return 0;
}
