/* Proves the model loader reads llama hyperparameters with their defaults, ties a missing output to
 * the token embedding, and rejects missing tensors/keys, wrong shapes and non-f32 norms by name;
 * and that PowerInfer files (PWRI) expose their predictor, ffn_down_t and threshold, shapes checked, with
 * the predictor reading the residual stream as PowerInfer's does. */
#include <string.h>

#include "check.h"
#include "forward.h"
#include "gguf.h"
#include "model.h"

enum { DIM = 8, HEADS = 2, KV = 1, FF = 12, VOCAB = 10, LAYERS = 2, CTX = 16 };

/* What to break in the tiny model. */
typedef struct variant {
    const char *skip_tensor;    /* leave this tensor out */
    const char *skip_key;       /* leave this key out */
    const char *bad_shape;      /* write this tensor with one row too few */
    const char *f16_norm;       /* write this norm as f16 */
    const char *act;            /* pi.ffn_activation, NULL = absent */
    const char *arch;           /* general.architecture, default "llama" */
    int tied;                   /* no output.weight */
    int optional_keys;          /* write head_count_kv, epsilon and freq_base */
    int pwri;                   /* PowerInfer: magic PWRI, fc1/fc2/ffn_down_t per layer, a threshold */
    const char *skip_tensor2;   /* leave this tensor out too */
} variant;

enum { PRED_R = 4 };   /* predictor hidden size in the PowerInfer variant */

static float weights[VOCAB * 64];

static void add_tensor(gguf_writer *w, const variant *v, const char *name, uint64_t cols, uint64_t rows)
{
    if ((v->skip_tensor && !strcmp(name, v->skip_tensor)) || (v->skip_tensor2 && !strcmp(name, v->skip_tensor2)))
        return;
    uint64_t ne[2] = {cols, rows ? rows : 1};
    pi_type type = PI_TYPE_F32;
    if (v->bad_shape && !strcmp(name, v->bad_shape))
        ne[1]--;
    if (v->f16_norm && !strcmp(name, v->f16_norm))
        type = PI_TYPE_F16;
    CHECK(gguf_writer_add_tensor(w, name, type, rows ? 2 : 1, ne, weights) == 0, "add %s", name);
}

static void add_u32(gguf_writer *w, const variant *v, const char *key, uint32_t val)
{
    if (!v->skip_key || strcmp(key, v->skip_key))
        CHECK(gguf_writer_add_u32(w, key, val) == 0, "add %s", key);
}

static void write_model(const char *path, const variant *v)
{
    for (size_t i = 0; i < sizeof weights / sizeof weights[0]; i++)
        weights[i] = (float)((i * 37) % 17) / 17.0f - 0.5f;
    gguf_writer *w = gguf_writer_new();
    CHECK(w, "writer");
    CHECK(gguf_writer_add_str(w, "general.architecture", v->arch ? v->arch : "llama") == 0, "arch");
    add_u32(w, v, "llama.context_length", CTX);
    add_u32(w, v, "llama.embedding_length", DIM);
    add_u32(w, v, "llama.block_count", LAYERS);
    add_u32(w, v, "llama.feed_forward_length", FF);
    add_u32(w, v, "llama.attention.head_count", HEADS);
    if (v->optional_keys) {
        add_u32(w, v, "llama.attention.head_count_kv", KV);
        CHECK(gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-6f) == 0, "eps");
        CHECK(gguf_writer_add_f32(w, "llama.rope.freq_base", 500000.0f) == 0, "theta");
    }
    if (v->act)
        CHECK(gguf_writer_add_str(w, "pi.ffn_activation", v->act) == 0, "act");
    uint32_t kv = v->optional_keys ? KV : HEADS, hd = DIM / HEADS;
    add_tensor(w, v, "token_embd.weight", DIM, VOCAB);
    add_tensor(w, v, "output_norm.weight", DIM, 0);
    if (!v->tied)
        add_tensor(w, v, "output.weight", DIM, VOCAB);
    for (int l = 0; l < LAYERS; l++) {
        const struct {
            const char *n;
            uint64_t cols, rows;
        } t[] = {{"attn_norm", DIM, 0}, {"attn_q", DIM, DIM}, {"attn_k", DIM, kv * hd},
                 {"attn_v", DIM, kv * hd}, {"attn_output", DIM, DIM}, {"ffn_norm", DIM, 0},
                 {"ffn_gate", DIM, FF}, {"ffn_up", DIM, FF}, {"ffn_down", FF, DIM}};
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, t[i].n);
            add_tensor(w, v, name, t[i].cols, t[i].rows);
        }
        /* PowerInfer's shapes (its loader): fc1 ne [dim, R], fc2 ne [R, n_ff], ffn_down_t ne [dim, n_ff] */
        const struct {
            const char *n;
            uint64_t cols, rows;
        } p[] = {{"fc1", DIM, PRED_R}, {"fc2", PRED_R, FF}, {"ffn_down_t", DIM, FF}};
        for (size_t i = 0; v->pwri && i < sizeof p / sizeof p[0]; i++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, p[i].n);
            add_tensor(w, v, name, p[i].cols, p[i].rows);
        }
    }
    if (v->pwri)
        CHECK(gguf_writer_add_f32(w, "powerinfer.sparse_threshold", 0.25f) == 0, "threshold");
    pi_error err = {{0}};
    CHECK(gguf_writer_write(w, path, v->pwri ? "PWRI" : "GGUF", &err) == 0, "write %s: %s", path, err.msg);
    gguf_writer_free(&w);
    CHECK(w == NULL, "writer_free nulls");
}

/* Opening the variant must fail with a message containing every one of want[]. */
static void expect_error(const variant *v, const char *const *want, size_t n_want)
{
    char path[512];
    test_tmp("test_model_bad.gguf", path, sizeof path);
    write_model(path, v);
    pi_error err = {{0}};
    pi_model *m = model_open(path, &err);
    CHECK(m == NULL, "a broken model was accepted");
    CHECK(strstr(err.msg, path), "error does not name the file: %s", err.msg);
    for (size_t i = 0; i < n_want; i++)
        CHECK(strstr(err.msg, want[i]), "error '%s' lacks '%s'", err.msg, want[i]);
    printf("rejected: %s\n", err.msg);
    remove(path);
}

static void test_good(void)
{
    char path[512];
    test_tmp("test_model_good.gguf", path, sizeof path);
    pi_error err = {{0}};

    variant v = {.optional_keys = 1, .act = "relu_both"};
    write_model(path, &v);
    pi_model *m = model_open(path, &err);
    CHECK(m, "model_open: %s", err.msg);
    CHECK(!strcmp(m->arch, "llama") && m->dim == DIM && m->n_layers == LAYERS && m->n_heads == HEADS &&
          m->n_kv_heads == KV && m->head_dim == DIM / HEADS && m->n_ff == FF && m->n_vocab == VOCAB &&
          m->n_ctx == CTX, "hyperparameters");
    CHECK(m->norm_eps == 1e-6f && m->rope_theta == 500000.0f && m->act == PI_ACT_RELU_BOTH, "optional keys");
    CHECK(!m->tied_output && m->output.data != m->tok_embd.data, "separate output");
    CHECK(m->layers[1].ffn_down.rows == DIM && m->layers[1].ffn_down.cols == FF &&
          m->layers[1].wk.rows == KV * DIM / HEADS && m->layers[0].attn_norm.rows == 1, "tensor views");
    forward_state *s = forward_new(m, 0, &err);   /* GQA with one kv head runs */
    CHECK(s, "forward_new: %s", err.msg);
    for (uint32_t pos = 0; pos < CTX; pos++)
        CHECK(forward_token(s, (int32_t)(pos % VOCAB), pos) != NULL, "forward at %u", pos);
    CHECK(forward_token(s, 0, CTX) == NULL, "n_ctx 0 means the model's context length");
    forward_free(&s);
    model_close(&m);
    CHECK(m == NULL, "model_close nulls");

    variant d = {.tied = 1};   /* defaults and tied output */
    write_model(path, &d);
    m = model_open(path, &err);
    CHECK(m, "model_open: %s", err.msg);
    CHECK(m->n_kv_heads == HEADS && m->norm_eps == 1e-5f && m->rope_theta == 10000.0f && m->act == PI_ACT_SILU,
          "defaults: kv heads %u eps %g theta %g act %d", m->n_kv_heads, m->norm_eps, m->rope_theta, m->act);
    CHECK(m->tied_output && m->output.data == m->tok_embd.data && m->output.rows == VOCAB, "tied output");
    model_close(&m);
    remove(path);
}

static void test_errors(void)
{
    const char *missing[] = {"tensor blk.1.ffn_up.weight", "missing"};
    expect_error(&(variant){.skip_tensor = "blk.1.ffn_up.weight"}, missing, 2);
    const char *embd[] = {"token_embd.weight", "missing"};
    expect_error(&(variant){.skip_tensor = "token_embd.weight"}, embd, 2);
    const char *shape[] = {"tensor blk.1.ffn_up.weight has shape [8,11], expected [8,12]"};
    expect_error(&(variant){.bad_shape = "blk.1.ffn_up.weight"}, shape, 1);
    const char *kshape[] = {"blk.0.attn_k.weight has shape [8,3], expected [8,4]"};
    expect_error(&(variant){.bad_shape = "blk.0.attn_k.weight", .optional_keys = 1}, kshape, 1);   /* GQA shapes */
    const char *key[] = {"llama.block_count"};
    expect_error(&(variant){.skip_key = "llama.block_count"}, key, 1);
    const char *norm[] = {"blk.0.ffn_norm.weight", "f32"};
    expect_error(&(variant){.f16_norm = "blk.0.ffn_norm.weight"}, norm, 2);
    const char *arch[] = {"general.architecture", "gpt2"};
    expect_error(&(variant){.arch = "gpt2"}, arch, 2);
    const char *act[] = {"pi.ffn_activation", "gelu"};
    expect_error(&(variant){.act = "gelu"}, act, 2);
}

/* A PowerInfer file loads with its predictor, transposed down and threshold; ReLU by default. */
static void test_powerinfer(void)
{
    char path[512];
    test_tmp("test_model_pwri.gguf", path, sizeof path);
    pi_error err = {{0}};
    write_model(path, &(variant){.pwri = 1});
    pi_model *m = model_open(path, &err);
    CHECK(m, "model_open PWRI: %s", err.msg);
    CHECK(gguf_is_powerinfer(m->file), "PWRI magic");
    CHECK(m->act == PI_ACT_RELU, "PowerInfer default activation is relu, got %s", pi_act_name(m->act));
    CHECK(m->sparse_threshold == 0.25f && m->has_predictor == 1, "threshold %g, has_predictor %d",
          m->sparse_threshold, m->has_predictor);
    CHECK(m->pred_input == PI_PRED_INPUT_RESIDUAL, "PowerInfer's llama predictor reads the residual, not %s",
          pi_pred_input_name(m->pred_input));
    for (uint32_t l = 0; l < LAYERS; l++) {
        const pi_layer *y = &m->layers[l];
        CHECK(y->pred_fc1.data && y->pred_fc1.rows == PRED_R && y->pred_fc1.cols == DIM, "fc1 of layer %u", l);
        CHECK(y->pred_fc2.data && y->pred_fc2.rows == FF && y->pred_fc2.cols == PRED_R, "fc2 of layer %u", l);
        CHECK(y->ffn_down_t.data && y->ffn_down_t.rows == FF && y->ffn_down_t.cols == DIM &&
              y->ffn_down_t.row_bytes == DIM * sizeof(float), "ffn_down_t of layer %u", l);
        CHECK(y->pred_fc1.data != y->pred_fc2.data && y->ffn_down.data, "distinct views, dense down kept");
    }
    model_close(&m);

    write_model(path, &(variant){.pwri = 1, .act = "relu_both"});   /* the key wins */
    m = model_open(path, &err);
    CHECK(m && m->act == PI_ACT_RELU_BOTH, "pi.ffn_activation overrides the PowerInfer default: %s", err.msg);
    model_close(&m);

    write_model(path, &(variant){0});   /* a plain file: nothing PowerInfer */
    m = model_open(path, &err);
    CHECK(m, "model_open: %s", err.msg);
    CHECK(!m->has_predictor && m->sparse_threshold == 0.0f && !m->layers[0].pred_fc1.data &&
          !m->layers[0].pred_fc2.data && !m->layers[0].ffn_down_t.data && m->act == PI_ACT_SILU &&
          m->pred_input == PI_PRED_INPUT_NORMED, "plain model");
    model_close(&m);
    remove(path);

    const char *fc2[] = {"tensor blk.0.fc2.weight has shape [4,11], expected [4,12]"};
    expect_error(&(variant){.pwri = 1, .bad_shape = "blk.0.fc2.weight"}, fc2, 1);
    /* fc1's R is free; one row fewer in fc1 makes fc2 the tensor that does not fit */
    const char *fc1r[] = {"tensor blk.1.fc2.weight has shape [4,12], expected [3,12]"};
    expect_error(&(variant){.pwri = 1, .bad_shape = "blk.1.fc1.weight"}, fc1r, 1);
    const char *downt[] = {"tensor blk.1.ffn_down_t.weight has shape [8,11], expected [8,12]"};
    expect_error(&(variant){.pwri = 1, .bad_shape = "blk.1.ffn_down_t.weight"}, downt, 1);
    const char *half[] = {"blk.1.fc2.weight is present but blk.1.fc1.weight is missing"};
    expect_error(&(variant){.pwri = 1, .skip_tensor = "blk.1.fc1.weight"}, half, 1);
    const char *partial[] = {"layer 1 lacks a predictor (blk.1.fc1.weight)", "every layer"};
    expect_error(&(variant){.pwri = 1, .skip_tensor = "blk.1.fc1.weight", .skip_tensor2 = "blk.1.fc2.weight"},
                 partial, 2);
    /* PowerInfer's converter writes down only transposed: that loads, and
     * the layer's users read ffn_down_t (tests/unit/test_split_forward.c). */
    char tpath[512];
    test_tmp("test_model_only_down_t.gguf", tpath, sizeof tpath);
    write_model(tpath, &(variant){.pwri = 1, .skip_tensor = "blk.0.ffn_down.weight"});
    pi_model *pm = model_open(tpath, &err);
    CHECK(pm, "a PowerInfer file without ffn_down was refused: %s", err.msg);
    CHECK(!pm->layers[0].ffn_down.data && pm->layers[0].ffn_down_t.data && pm->layers[1].ffn_down.data,
          "layer 0 must have only ffn_down_t");
    CHECK(pi_layer_down_type(&pm->layers[0]) == pm->layers[0].ffn_down_t.type, "down type from ffn_down_t");
    model_close(&pm);
    remove(tpath);
    /* Neither form: the message names the missing down. */
    const char *nodown[] = {"blk.0.ffn_down.weight is missing"};
    expect_error(&(variant){.skip_tensor = "blk.0.ffn_down.weight"}, nodown, 1);
}

int main(void)
{
    test_good();
    test_errors();
    test_powerinfer();
    printf("test_model: ok\n");
    return 0;
}
