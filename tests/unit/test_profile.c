/* Proves profiling counts FFN neuron activity exactly as a direct recomputation over the reference forward
 * does (windows, BOS, token cap, pairs dump included), and that the sidecar round-trips and refuses a model it
 * was not made for. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "forward.h"
#include "ops.h"
#include "profile.h"
#include "rand_model.h"
#include "sidecar.h"

enum { DIM = 32, HEADS = 4, KVH = 2, FF = 48, VOCAB = 64, LAYERS = 2, CTX = 64, WINDOW = 16, R = 5 };
#define BOS 1

static const char TEXT[] = "Once upon a time there was a small robot who liked to count the stars. "
                           "Every night it climbed the hill and wrote the numbers in a little book.";

/* The recomputation: an observer that checks h against act(gate.x, up.x) computed element by element
 * from x_norm, counts h != 0, and keeps every x_norm and active set in run order for the pairs check. */
typedef struct recount {
    const pi_model *m;
    uint64_t counts[LAYERS][FF];
    float (*xs)[DIM];       /* per observed (token, layer) */
    uint8_t (*bits)[(FF + 7) / 8];
    size_t n_obs, cap_obs;
    double max_err;
} recount;

static void recount_observe(void *ud, uint32_t layer, const float *x, const float *h, uint32_t n_ff)
{
    recount *r = ud;
    const pi_layer *l = &r->m->layers[layer];
    CHECK(n_ff == FF && layer < LAYERS, "observer arguments");
    CHECK(r->n_obs < r->cap_obs, "more observations than expected");
    memcpy(r->xs[r->n_obs], x, sizeof r->xs[0]);
    memset(r->bits[r->n_obs], 0, sizeof r->bits[0]);
    for (uint32_t j = 0; j < n_ff; j++) {
        double g = 0, u = 0;
        for (uint32_t i = 0; i < DIM; i++) {
            g += (double)ops_tensor_get(&l->ffn_gate, j, i) * x[i];
            u += (double)ops_tensor_get(&l->ffn_up, j, i) * x[i];
        }
        double want = (g > 0 ? g : 0) * u;   /* relu(gate) * up */
        double e = fabs(want - h[j]) / (fabs(want) + 1e-3);
        if (e > r->max_err)
            r->max_err = e;
        if (h[j] != 0.0f) {
            r->counts[layer][j]++;
            r->bits[r->n_obs][j >> 3] |= (uint8_t)(1u << (j & 7));
        }
    }
    r->n_obs++;
}

/* Runs the windows the way profile_run is documented to: BOS at position 0, then corpus tokens. */
static uint64_t recount_run(recount *r, const int32_t *ids, size_t n, uint64_t max_tokens)
{
    pi_error err = {{0}};
    forward_state *fs = forward_new(r->m, WINDOW, &err);
    CHECK(fs, "forward_new: %s", err.msg);
    forward_set_ffn_observer(fs, recount_observe, r);
    uint64_t done = 0;
    size_t i = 0;
    while (i < n && (!max_tokens || done < max_tokens)) {
        for (uint32_t pos = 0; pos < WINDOW && (!max_tokens || done < max_tokens); pos++) {
            int32_t t = pos == 0 ? BOS : i < n ? ids[i++] : -1;
            if (t < 0)
                break;
            CHECK(forward_token(fs, t, pos), "forward_token");
            done++;
        }
    }
    forward_free(&fs);
    return done;
}

static void make_ids(int32_t **ids, size_t *n)
{
    *n = sizeof TEXT - 1;
    *ids = malloc(*n * sizeof **ids);
    CHECK(*ids, "oom");
    for (size_t i = 0; i < *n; i++)   /* a stand-in tokenizer: one token per byte */
        (*ids)[i] = 3 + (int32_t)((unsigned char)TEXT[i] % (VOCAB - 3));
}

static void write_model(const char *path, uint32_t seed)
{
    rand_model_shape sh = {.dim = DIM, .n_layers = LAYERS, .n_heads = HEADS, .n_kv_heads = KVH, .n_ff = FF,
                           .n_vocab = VOCAB, .n_ctx = CTX, .type = PI_TYPE_F32, .act = PI_ACT_RELU, .seed = seed};
    pi_error err = {{0}};
    CHECK(rand_model_write(path, &sh, &err) == 0, "rand_model_write: %s", err.msg);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The pairs file holds exactly the recomputed (x_norm, active set) of every observed token and layer. */
static void check_pairs(const char *path, const recount *r, uint64_t tokens)
{
    FILE *f = fopen(path, "rb");
    CHECK(f, "open %s", path);
    uint8_t h[32];
    CHECK(fread(h, 1, 32, f) == 32 && !memcmp(h, PROFILE_PAIRS_MAGIC, 8), "pairs header");
    uint64_t n = 0;
    for (int i = 0; i < 8; i++)
        n |= (uint64_t)h[24 + i] << (8 * i);
    CHECK(rd32(h + 8) == 1 && rd32(h + 12) == LAYERS && rd32(h + 16) == DIM && rd32(h + 20) == FF && n == tokens,
          "pairs header fields: n_tokens %llu want %llu", (unsigned long long)n, (unsigned long long)tokens);
    for (size_t k = 0; k < r->n_obs; k++) {
        uint8_t head[8], bits[(FF + 7) / 8];
        float x[DIM];
        CHECK(fread(head, 1, 8, f) == 8 && fread(x, sizeof(float), DIM, f) == DIM &&
              fread(bits, 1, sizeof bits, f) == sizeof bits, "record %zu truncated", k);
        CHECK(rd32(head) == k % LAYERS, "record %zu layer %u", k, rd32(head));
        CHECK(rd32(head + 4) == (k / LAYERS) % WINDOW, "record %zu position %u", k, rd32(head + 4));
        CHECK(!memcmp(x, r->xs[k], sizeof x) && !memcmp(bits, r->bits[k], sizeof bits), "record %zu content", k);
    }
    CHECK(fgetc(f) == EOF, "pairs file has trailing bytes");
    fclose(f);
}

static void test_profile_matches_recount(const char *model_path, const char *pairs_path)
{
    pi_error err = {{0}};
    pi_model *m = model_open(model_path, &err);
    CHECK(m, "model_open: %s", err.msg);
    int32_t *ids;
    size_t n;
    make_ids(&ids, &n);

    profile_opts o = {.window = WINDOW, .bos = BOS, .pairs_path = pairs_path, .pairs_per_layer = 100000};
    uint64_t total = profile_total_tokens(n, &o);
    size_t windows = (n + WINDOW - 2) / (WINDOW - 1);
    CHECK(total == n + windows, "total %llu for %zu tokens in %zu windows", (unsigned long long)total, n, windows);
    pi_sidecar *sc = sidecar_new(m, &err);
    CHECK(sc, "sidecar_new: %s", err.msg);
    CHECK(profile_run(m, ids, n, &o, sc, &err) == 0, "profile_run: %s", err.msg);
    CHECK(sc->tokens == total, "tokens %llu", (unsigned long long)sc->tokens);

    recount r = {.m = m, .cap_obs = (size_t)total * LAYERS};
    r.xs = calloc(r.cap_obs, sizeof *r.xs);
    r.bits = calloc(r.cap_obs, sizeof *r.bits);
    CHECK(r.xs && r.bits, "oom");
    CHECK(recount_run(&r, ids, n, 0) == total, "recount ran another number of tokens");
    CHECK(r.max_err < 1e-4, "observer's h differs from act(gate.x)*up.x: %g", r.max_err);
    int some_mid = 0;
    for (uint32_t l = 0; l < LAYERS; l++)
        for (uint32_t j = 0; j < FF; j++) {
            float f = sidecar_freq(sc, l)[j], want = (float)((double)r.counts[l][j] / (double)total);
            CHECK(f >= 0.0f && f <= 1.0f, "frequency %g outside [0,1]", f);
            CHECK(f == want, "layer %u neuron %u: profile %g, recount %g", l, j, f, want);
            some_mid |= f > 0.05f && f < 0.95f;
        }
    CHECK(some_mid, "a random ReLU model should have neurons that fire sometimes");
    check_pairs(pairs_path, &r, total);
    printf("profile: %llu tokens, %zu windows, layer 0 neuron 0 freq %.3f, h max rel err %.2g\n",
           (unsigned long long)total, windows, sidecar_freq(sc, 0)[0], r.max_err);

    /* a token cap stops mid-window; the counts still match; sampling picks exactly N tokens */
    memset(r.counts, 0, sizeof r.counts);
    r.n_obs = 0;
    profile_opts cap = {.window = WINDOW, .bos = BOS, .max_tokens = 21, .pairs_path = pairs_path, .pairs_per_layer = 5};
    CHECK(profile_run(m, ids, n, &cap, sc, &err) == 0 && sc->tokens == 21, "capped run: %s", err.msg);
    CHECK(recount_run(&r, ids, n, 21) == 21, "capped recount");
    for (uint32_t j = 0; j < FF; j++)
        CHECK(sidecar_freq(sc, 1)[j] == (float)((double)r.counts[1][j] / 21.0), "capped neuron %u", j);
    FILE *f = fopen(pairs_path, "rb");
    CHECK(f && fseek(f, 0, SEEK_END) == 0, "pairs");
    long want = 32 + 5L * LAYERS * (8 + DIM * 4 + (FF + 7) / 8);
    CHECK(ftell(f) == want, "5 sampled tokens: %ld bytes, want %ld", ftell(f), want);
    fclose(f);

    profile_opts bad = {.window = CTX + 1, .bos = BOS};
    CHECK(profile_run(m, ids, n, &bad, sc, &err) < 0 && strstr(err.msg, "window"), "window > n_ctx: %s", err.msg);
    free(r.xs);
    free(r.bits);
    free(ids);
    sidecar_free(&sc);
    CHECK(sc == NULL, "sidecar_free nulls");
    model_close(&m);
}

static void test_sidecar(const char *model_path, const char *other_path, const char *sc_path)
{
    pi_error err = {{0}};
    pi_model *m = model_open(model_path, &err), *other = model_open(other_path, &err);
    CHECK(m && other, "model_open: %s", err.msg);
    pi_sidecar *sc = sidecar_new(m, &err);
    CHECK(sc, "sidecar_new: %s", err.msg);
    CHECK(strlen(sc->model_hash) == 16 && strlen(sc->date) == 20 && sc->date[19] == 'Z', "hash %s date %s",
          sc->model_hash, sc->date);
    for (size_t k = 0; k < (size_t)LAYERS * FF; k++)
        sc->freq[k] = (float)(k % 7) / 7.0f;
    static float fc1[LAYERS][R * DIM], fc2[LAYERS][FF * R];
    for (uint32_t l = 0; l < LAYERS; l++) {
        for (size_t i = 0; i < R * DIM; i++)
            fc1[l][i] = (float)(i % 11) - 5.0f + (float)l;
        for (size_t i = 0; i < FF * R; i++)
            fc2[l][i] = (float)(i % 13) * 0.5f - (float)l;
        sc->fc1[l] = (pi_tensor){PI_TYPE_F32, DIM, R, DIM * sizeof(float), fc1[l]};
        sc->fc2[l] = (pi_tensor){PI_TYPE_F32, R, FF, R * sizeof(float), fc2[l]};
    }
    sc->has_predictor = 1;
    sc->threshold = 0.5f;
    sc->tokens = 12345;
    snprintf(sc->corpus, sizeof sc->corpus, "unit-test corpus");
    CHECK(sidecar_write(sc, sc_path, &err) == 0, "sidecar_write: %s", err.msg);

    pi_sidecar *rd = sidecar_open(sc_path, m, &err);
    CHECK(rd, "sidecar_open: %s", err.msg);
    CHECK(rd->n_layers == LAYERS && rd->n_ff == FF && rd->dim == DIM && rd->threshold == 0.5f &&
          rd->tokens == 12345 && !strcmp(rd->corpus, "unit-test corpus") && !strcmp(rd->date, sc->date) &&
          !strcmp(rd->model_hash, sc->model_hash) && !strcmp(rd->model_path, model_path), "keys round trip");
    CHECK(!memcmp(rd->freq, sc->freq, (size_t)LAYERS * FF * sizeof(float)), "frequencies round trip");
    CHECK(rd->has_predictor, "predictor flag");
    for (uint32_t l = 0; l < LAYERS; l++) {
        const pi_tensor *a = sidecar_fc1(rd, l), *b = sidecar_fc2(rd, l);
        CHECK(a && b && a->rows == R && a->cols == DIM && b->rows == FF && b->cols == R, "predictor shapes");
        CHECK(!memcmp(a->data, fc1[l], sizeof fc1[l]) && !memcmp(b->data, fc2[l], sizeof fc2[l]), "predictor data");
    }
    CHECK(!sidecar_fc1(rd, LAYERS) && !sidecar_freq(rd, LAYERS), "out-of-range layer gives NULL");
    sidecar_free(&rd);

    rd = sidecar_open(sc_path, other, &err);
    CHECK(!rd && strstr(err.msg, "was made for another model (hash") && strstr(err.msg, sc_path),
          "another model's sidecar accepted: %s", err.msg);
    printf("rejected: %s\n", err.msg);
    rd = sidecar_open(sc_path, NULL, &err);   /* no model: inspection */
    CHECK(rd, "sidecar_open without a model: %s", err.msg);
    sidecar_free(&rd);
    CHECK(!sidecar_open(model_path, NULL, &err) && strstr(err.msg, "not a pi sparse sidecar"), "a model is no sidecar: %s",
          err.msg);

    sc->fc2[1].cols = R - 1;   /* a predictor that does not fit is refused, naming the layer */
    CHECK(sidecar_write(sc, sc_path, &err) < 0 && strstr(err.msg, "layer 1 predictor"), "bad predictor: %s", err.msg);
    sc->fc2[1].cols = R;
    sc->freq[3] = 1.5f;
    CHECK(sidecar_write(sc, sc_path, &err) < 0 && strstr(err.msg, "outside [0, 1]"), "bad frequency: %s", err.msg);

    char buf[64];
    CHECK(sidecar_path_for("m/x.gguf", buf, sizeof buf) == 0 && !strcmp(buf, "m/x.pi-sparse.gguf"), "%s", buf);
    CHECK(sidecar_path_for("x.bin", buf, sizeof buf) == 0 && !strcmp(buf, "x.bin.pi-sparse.gguf"), "%s", buf);
    CHECK(sidecar_path_for("x.gguf", buf, 10) < 0, "too small a buffer");

    CHECK(profile_is_active(PI_ACT_SILU, 2e-3f, 1.0f) && !profile_is_active(PI_ACT_SILU, -0.5e-3f, 1.0f) &&
          profile_is_active(PI_ACT_RELU, -1e-30f, 0) && !profile_is_active(PI_ACT_RELU_BOTH, 0.0f, 1.0f),
          "activity rule");
    sidecar_free(&sc);
    model_close(&m);
    model_close(&other);
}

int main(void)
{
    char model_path[512], other_path[512], sc_path[512], pairs_path[512];
    test_tmp("test_profile.gguf", model_path, sizeof model_path);
    test_tmp("test_profile_other.gguf", other_path, sizeof other_path);
    test_tmp("test_profile.pi-sparse.gguf", sc_path, sizeof sc_path);
    test_tmp("test_profile.pairs", pairs_path, sizeof pairs_path);
    write_model(model_path, 7);
    write_model(other_path, 8);
    test_profile_matches_recount(model_path, pairs_path);
    test_sidecar(model_path, other_path, sc_path);
    remove(model_path);
    remove(other_path);
    remove(sc_path);
    remove(pairs_path);
    printf("test_profile: ok\n");
    return 0;
}
