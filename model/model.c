/* Model description from GGUF: hyperparameters with llama.cpp's keys and
 * defaults, and a 2-D view of every tensor, each checked against the shape
 * the hyperparameters imply before anything computes with it. What differs
 * between architectures is in arch.c's table. */
#include "model.h"
#include "arch.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *pi_act_name(pi_act a)
{
    switch (a) {
    case PI_ACT_SILU: return "silu";
    case PI_ACT_RELU: return "relu";
    case PI_ACT_RELU_BOTH: return "relu_both";
    case PI_ACT_RELU_SINGLE: return "relu_single";
    }
    return "?";
}

const char *pi_pred_input_name(pi_pred_input p)
{
    switch (p) {
    case PI_PRED_INPUT_NORMED: return "normed";
    case PI_PRED_INPUT_RESIDUAL: return "residual";
    case PI_PRED_INPUT_LAYER: return "layer_input";
    }
    return "?";
}

/* Required u32 hyperparameter "<arch>.<name>", must be > 0. */
static int get_req(const pi_model *m, const char *name, uint32_t *out, pi_error *err)
{
    char key[96];
    snprintf(key, sizeof key, "%s.%s", m->arch, name);
    if (gguf_get_u32(m->file, key, out, err) < 0)
        return pi_error_set(err, "model %s: required key %s is missing or not a 32-bit unsigned integer",
                            gguf_path(m->file), key);
    if (*out == 0)
        return pi_error_set(err, "model %s: key %s is 0", gguf_path(m->file), key);
    return 0;
}

/* Optional hyperparameter: *out keeps its default when the key is absent. */
static int get_opt_u32(const pi_model *m, const char *name, uint32_t *out, pi_error *err)
{
    char key[96];
    snprintf(key, sizeof key, "%s.%s", m->arch, name);
    if (!gguf_find_kv(m->file, key))
        return 0;
    return get_req(m, name, out, err);
}

static int get_opt_f32(const pi_model *m, const char *name, float *out, pi_error *err)
{
    char key[96];
    snprintf(key, sizeof key, "%s.%s", m->arch, name);
    if (!gguf_find_kv(m->file, key))
        return 0;
    if (gguf_get_f32(m->file, key, out, err) < 0)
        return pi_error_set(err, "model %s: key %s is not a number", gguf_path(m->file), key);
    if (!(*out > 0.0f))
        return pi_error_set(err, "model %s: key %s must be > 0", gguf_path(m->file), key);
    return 0;
}

/* rope.scaling.type (none or linear; others are refused) and its factor
 * (rope.scaling.factor, or the older rope.scale_linear) as llama.cpp reads
 * them: the angles are multiplied by 1 / factor. */
static int read_rope_scaling(pi_model *m, pi_error *err)
{
    char key[96], type[32] = "none";
    m->rope_freq_scale = 1.0f;
    snprintf(key, sizeof key, "%s.rope.scaling.type", m->arch);
    if (gguf_find_kv(m->file, key) && gguf_get_cstr(m->file, key, type, sizeof type, err) < 0)
        return pi_error_set(err, "model %s: key %s is not a string", gguf_path(m->file), key);
    if (strcmp(type, "none") != 0 && strcmp(type, "linear") != 0)
        return pi_error_set(err, "model %s: rope scaling '%s' is not supported yet (pi computes none and linear, "
                            "and Llama 3's rope_freqs)", gguf_path(m->file), type);
    float factor = 0.0f;
    if (get_opt_f32(m, "rope.scaling.factor", &factor, err) < 0)
        return -1;
    if (factor == 0.0f && get_opt_f32(m, "rope.scale_linear", &factor, err) < 0)
        return -1;
    if (factor > 0.0f)
        m->rope_freq_scale = 1.0f / factor;
    return 0;
}

/* Blk tensor "blk.<il>.<name>.weight", or NULL. */
static const gguf_tensor *find_blk(const pi_model *m, uint32_t il, const char *name)
{
    char full[64];
    snprintf(full, sizeof full, "blk.%u.%s.weight", il, name);
    return gguf_find_tensor(m->file, full);
}

static int str_ends(gguf_str s, const char *suffix)
{
    size_t k = strlen(suffix);
    return s.len >= k && !memcmp(s.ptr + s.len - k, suffix, k);
}

/* PWRI magic, or any blk tensor that is a predictor or a transposed down.
 * Scans the tensor list (not n_layers, which an untrusted file may make huge). */
static int has_powerinfer_tensors(const pi_model *m)
{
    if (gguf_is_powerinfer(m->file))
        return 1;
    for (size_t i = 0; i < gguf_n_tensors(m->file); i++) {
        gguf_str n = gguf_tensor_at(m->file, i)->name;
        if (n.len > 4 && !memcmp(n.ptr, "blk.", 4) &&
            (str_ends(n, ".fc1.weight") || str_ends(n, ".fc2.weight") || str_ends(n, ".ffn_down_t.weight")))
            return 1;
    }
    return 0;
}

static int read_hparams(pi_model *m, pi_error *err)
{
    const char *path = gguf_path(m->file);
    if (gguf_get_cstr(m->file, "general.architecture", m->arch, sizeof m->arch, err) < 0)
        return pi_error_set(err, "model %s: key general.architecture is missing (not a model file?)", path);
    const pi_arch_info *ai = pi_arch_find(m->arch);
    if (!ai)
        return pi_error_set(err, "model %s: general.architecture is '%s'; pi supports %s", path, m->arch,
                            pi_arch_names());
    m->norm = ai->norm;
    m->rope = ai->rope;
    m->parallel = ai->parallel;
    /* OPT files may leave the context to the position table's size */
    int ctx_rc = ai->pos_embd ? get_opt_u32(m, "context_length", &m->n_ctx, err)
                              : get_req(m, "context_length", &m->n_ctx, err);
    if (ctx_rc < 0 || get_req(m, "embedding_length", &m->dim, err) < 0 ||
        get_req(m, "block_count", &m->n_layers, err) < 0 ||
        get_req(m, "feed_forward_length", &m->n_ff, err) < 0 ||
        get_req(m, "attention.head_count", &m->n_heads, err) < 0)
        return -1;
    m->n_kv_heads = m->n_heads;
    m->norm_eps = 1e-5f;
    m->rope_theta = 10000.0f;
    if (get_opt_u32(m, "attention.head_count_kv", &m->n_kv_heads, err) < 0 ||
        get_opt_f32(m, ai->norm == PI_NORM_RMS ? "attention.layer_norm_rms_epsilon" : "attention.layer_norm_epsilon",
                    &m->norm_eps, err) < 0 ||
        get_opt_f32(m, "rope.freq_base", &m->rope_theta, err) < 0)
        return -1;
    if (read_rope_scaling(m, err) < 0)
        return -1;
    if (m->dim % m->n_heads != 0 || m->n_heads % m->n_kv_heads != 0)
        return pi_error_set(err, "model %s: embedding_length %u, head_count %u, head_count_kv %u: "
                            "dim must divide into heads and heads into kv heads",
                            path, m->dim, m->n_heads, m->n_kv_heads);
    m->head_dim = m->dim / m->n_heads;
    if (m->head_dim % 2 != 0)
        return pi_error_set(err, "model %s: head size %u is odd; rope needs pairs", path, m->head_dim);

    /* PowerInfer's models are ReLU-family; its files carry no activation key. */
    m->act = ai->act == PI_ACT_SILU && has_powerinfer_tensors(m) ? PI_ACT_RELU : ai->act;
    m->sparse_threshold = 0.0f;
    if (gguf_find_kv(m->file, "powerinfer.sparse_threshold")) {
        if (gguf_get_f32(m->file, "powerinfer.sparse_threshold", &m->sparse_threshold, err) < 0 ||
            !isfinite(m->sparse_threshold))
            return pi_error_set(err, "model %s: key powerinfer.sparse_threshold is not a finite number", path);
    }
    if (gguf_find_kv(m->file, "pi.ffn_activation")) {
        char act[32];
        if (gguf_get_cstr(m->file, "pi.ffn_activation", act, sizeof act, err) < 0)
            return pi_error_set(err, "model %s: key pi.ffn_activation is not a short string", path);
        if (!strcmp(act, "silu")) m->act = PI_ACT_SILU;
        else if (!strcmp(act, "relu")) m->act = PI_ACT_RELU;
        else if (!strcmp(act, "relu_both")) m->act = PI_ACT_RELU_BOTH;
        else if (!strcmp(act, "relu_single")) m->act = PI_ACT_RELU_SINGLE;
        else
            return pi_error_set(err, "model %s: pi.ffn_activation '%s' is not silu, relu, relu_both or relu_single",
                                path, act);
        if ((m->act == PI_ACT_RELU_SINGLE) != (ai->single_ffn != 0))
            return pi_error_set(err, "model %s: pi.ffn_activation '%s' does not fit architecture %s, whose FFN %s a "
                                "gate", path, act, m->arch, ai->single_ffn ? "has no" : "has");
    }
    /* Falcon's own checkpoints use GELU, which pi does not compute; PowerInfer's
     * ReluFalcon files (predictor tensors) and files that say relu_single run. */
    if (!strcmp(m->arch, "falcon") && !gguf_find_kv(m->file, "pi.ffn_activation") && !has_powerinfer_tensors(m))
        return pi_error_set(err, "model %s: a falcon file without PowerInfer's predictor is taken to use GELU, which "
                            "pi does not support; ReLU Falcon files carry blk.N.fc1/fc2 or pi.ffn_activation "
                            "'relu_single'", path);
    return 0;
}

/* Binds *t to tensor name, which must have exactly the shape [cols] (rows 0)
 * or [cols, rows]; norms (want_f32) must be F32. */
static int bind(pi_model *m, pi_tensor *t, const char *name, uint64_t cols, uint64_t rows,
                int want_f32, pi_error *err)
{
    const char *path = gguf_path(m->file);
    const gguf_tensor *g = gguf_find_tensor(m->file, name);
    if (!g)
        return pi_error_set(err, "model %s: tensor %s is missing", path, name);
    uint64_t want_rows = rows ? rows : 1;
    if (g->ne[0] != cols || g->ne[1] != want_rows || g->ne[2] != 1 || g->ne[3] != 1) {
        char have[96], want[64];
        int n = snprintf(have, sizeof have, "[%" PRIu64, g->ne[0]);
        for (uint32_t d = 1; d < g->n_dims && d < GGUF_MAX_DIMS; d++)
            n += snprintf(have + n, sizeof have - (size_t)n, ",%" PRIu64, g->ne[d]);
        snprintf(have + n, sizeof have - (size_t)n, "]");
        if (rows)
            snprintf(want, sizeof want, "[%" PRIu64 ",%" PRIu64 "]", cols, rows);
        else
            snprintf(want, sizeof want, "[%" PRIu64 "]", cols);
        return pi_error_set(err, "model %s: tensor %s has shape %s, expected %s", path, name, have, want);
    }
    if (!pi_type_supported((int)g->type)) {
        const char *tn = pi_type_ggml_name((int)g->type);
        return pi_error_set(err, "model %s: tensor %s has type %s (%d), which pi does not support; "
                            "convert it to f32, f16, bf16, q8_0 or q4_0", path, name, tn ? tn : "unknown", (int)g->type);
    }
    if (want_f32 && g->type != PI_TYPE_F32)
        return pi_error_set(err, "model %s: tensor %s has type %s; norms and biases must be f32",
                            path, name, pi_type_name((int)g->type));
    size_t rb;
    if (pi_row_bytes(g->type, cols, &rb) < 0)
        return pi_error_set(err, "model %s: tensor %s: %" PRIu64 " columns do not fit %s blocks",
                            path, name, cols, pi_type_name((int)g->type));
    t->type = g->type;
    t->cols = cols;
    t->rows = want_rows;
    t->row_bytes = rb;
    t->data = g->data;
    return 0;
}

/* PowerInfer's optional tensors of layer il: the predictor (fc1 and fc2
 * together, hidden size R from fc1, may differ between layers) and the
 * transposed down. Shapes as PowerInfer's loader creates them: fc1 ne
 * [dim, R], fc2 ne [R, n_ff], ffn_down_t ne [dim, n_ff]. */
static int bind_powerinfer(pi_model *m, uint32_t il, pi_error *err)
{
    const char *path = gguf_path(m->file);
    pi_layer *l = &m->layers[il];
    char n1[64], n2[64], nd[64];
    snprintf(n1, sizeof n1, "blk.%u.fc1.weight", il);
    snprintf(n2, sizeof n2, "blk.%u.fc2.weight", il);
    snprintf(nd, sizeof nd, "blk.%u.ffn_down_t.weight", il);
    const gguf_tensor *fc1 = gguf_find_tensor(m->file, n1), *fc2 = gguf_find_tensor(m->file, n2);
    if (gguf_find_tensor(m->file, nd) && bind(m, &l->ffn_down_t, nd, m->dim, m->n_ff, 0, err) < 0)
        return -1;
    if (!fc1 != !fc2)
        return pi_error_set(err, "model %s: tensor %s is present but %s is missing; a predictor needs both",
                            path, fc1 ? n1 : n2, fc1 ? n2 : n1);
    if (fc1) {
        uint64_t r = fc1->ne[1];
        if (bind(m, &l->pred_fc1, n1, m->dim, r, 0, err) < 0 || bind(m, &l->pred_fc2, n2, r, m->n_ff, 0, err) < 0)
            return -1;
    }
    /* all layers or none: a runtime must not meet a layer it cannot predict */
    int has = fc1 != NULL;
    if (il == 0)
        m->has_predictor = has;
    else if (has != m->has_predictor)
        return pi_error_set(err, "model %s: layer %u %s a predictor (%s) but layer 0 %s; a predictor must cover "
                            "every layer", path, il, has ? "has" : "lacks", n1, has ? "does not" : "does");
    return 0;
}

/* *t = rows [r0, r0 + n) of whole: a view, nothing copied. */
static void view_rows(pi_tensor *t, const pi_tensor *whole, uint64_t r0, uint64_t n)
{
    *t = *whole;
    t->rows = n;
    t->data = (const char *)whole->data + r0 * whole->row_bytes;
}

/* "blk.<il>.<suffix>" into buf. */
static const char *blk_name(char *buf, size_t size, uint32_t il, const char *suffix)
{
    snprintf(buf, size, "blk.%u.%s", il, suffix);
    return buf;
}

/* The norm weight, and its bias for LayerNorm architectures. */
static int bind_norm(pi_model *m, pi_tensor *w, pi_tensor *b, uint32_t il, const char *norm, pi_error *err)
{
    char name[96], base[64];
    snprintf(base, sizeof base, "%s.weight", norm);
    if (bind(m, w, blk_name(name, sizeof name, il, base), m->dim, 0, 1, err) < 0)
        return -1;
    if (m->norm != PI_NORM_LAYER)
        return 0;
    snprintf(base, sizeof base, "%s.bias", norm);
    return bind(m, b, blk_name(name, sizeof name, il, base), m->dim, 0, 1, err);
}

static int bind_attn(pi_model *m, const pi_arch_info *ai, uint32_t il, pi_error *err)
{
    pi_layer *l = &m->layers[il];
    uint64_t dim = m->dim, q = (uint64_t)m->n_heads * m->head_dim, kv = (uint64_t)m->n_kv_heads * m->head_dim;
    char name[96];
    if (ai->fused_qkv) {
        pi_tensor qkv;
        if (bind(m, &qkv, blk_name(name, sizeof name, il, "attn_qkv.weight"), dim, q + 2 * kv, 0, err) < 0)
            return -1;
        view_rows(&l->wq, &qkv, 0, q);
        view_rows(&l->wk, &qkv, q, kv);
        view_rows(&l->wv, &qkv, q + kv, kv);
    } else if (bind(m, &l->wq, blk_name(name, sizeof name, il, "attn_q.weight"), dim, q, 0, err) < 0 ||
               bind(m, &l->wk, blk_name(name, sizeof name, il, "attn_k.weight"), dim, kv, 0, err) < 0 ||
               bind(m, &l->wv, blk_name(name, sizeof name, il, "attn_v.weight"), dim, kv, 0, err) < 0) {
        return -1;
    }
    if (ai->qkv_bias &&
        (bind(m, &l->bq, blk_name(name, sizeof name, il, "attn_q.bias"), q, 0, 1, err) < 0 ||
         bind(m, &l->bk, blk_name(name, sizeof name, il, "attn_k.bias"), kv, 0, 1, err) < 0 ||
         bind(m, &l->bv, blk_name(name, sizeof name, il, "attn_v.bias"), kv, 0, 1, err) < 0))
        return -1;
    if (bind(m, &l->wo, blk_name(name, sizeof name, il, "attn_output.weight"), q, dim, 0, err) < 0)
        return -1;
    if (ai->out_bias && bind(m, &l->bo, blk_name(name, sizeof name, il, "attn_output.bias"), dim, 0, 1, err) < 0)
        return -1;
    return 0;
}

static int bind_ffn(pi_model *m, const pi_arch_info *ai, uint32_t il, pi_error *err)
{
    pi_layer *l = &m->layers[il];
    uint64_t dim = m->dim, ff = m->n_ff;
    char name[96];
    if (ai->single_ffn) {
        /* the one input projection (fc1) acts as the gate; see PI_ACT_RELU_SINGLE */
        if (bind(m, &l->ffn_gate, blk_name(name, sizeof name, il, "ffn_up.weight"), dim, ff, 0, err) < 0)
            return -1;
        l->ffn_up = l->ffn_gate;
    } else if (bind(m, &l->ffn_gate, blk_name(name, sizeof name, il, "ffn_gate.weight"), dim, ff, 0, err) < 0 ||
               bind(m, &l->ffn_up, blk_name(name, sizeof name, il, "ffn_up.weight"), dim, ff, 0, err) < 0) {
        return -1;
    }
    /* PowerInfer's converter writes down only transposed (ffn_down_t, bound
     * in bind_powerinfer); every user of down reads it through pi_layer_down_*. */
    blk_name(name, sizeof name, il, "ffn_down.weight");
    if ((gguf_find_tensor(m->file, name) || !find_blk(m, il, "ffn_down_t")) &&
        bind(m, &l->ffn_down, name, ff, dim, 0, err) < 0)
        return -1;
    if (!ai->ffn_bias)
        return 0;
    if (bind(m, &l->ffn_gate_b, blk_name(name, sizeof name, il, "ffn_up.bias"), ff, 0, 1, err) < 0)
        return -1;
    /* fc2's bias: beside ffn_down, or beside ffn_down_t as PowerInfer names it */
    blk_name(name, sizeof name, il, "ffn_down.bias");
    if (!gguf_find_tensor(m->file, name))
        blk_name(name, sizeof name, il, "ffn_down_t.bias");
    return bind(m, &l->ffn_down_b, name, dim, 0, 1, err);
}

static int bind_layer(pi_model *m, const pi_arch_info *ai, uint32_t il, pi_error *err)
{
    pi_layer *l = &m->layers[il];
    if (bind_norm(m, &l->attn_norm, &l->attn_norm_b, il, "attn_norm", err) < 0 || bind_attn(m, ai, il, err) < 0)
        return -1;
    if (ai->parallel) {
        /* Falcon: the FFN reads attn_norm's output. 7B's attention reads it
         * too; 40B's converter names its attention's own norm (ln_attn)
         * attn_norm_2 and its MLP's (ln_mlp) attn_norm. */
        char name[96];
        l->ffn_norm = l->attn_norm;
        l->ffn_norm_b = l->attn_norm_b;
        if (gguf_find_tensor(m->file, blk_name(name, sizeof name, il, "attn_norm_2.weight")) &&
            bind_norm(m, &l->attn_norm, &l->attn_norm_b, il, "attn_norm_2", err) < 0)
            return -1;
    } else if (bind_norm(m, &l->ffn_norm, &l->ffn_norm_b, il, "ffn_norm", err) < 0) {
        return -1;
    }
    if (bind_ffn(m, ai, il, err) < 0)
        return -1;
    return bind_powerinfer(m, il, err);
}

/* OPT's learned positions: position p reads row p + 2 (the offset OPT was
 * trained with), so the context is the table's rows - 2 at most. */
static int bind_positions(pi_model *m, pi_error *err)
{
    const char *path = gguf_path(m->file);
    const gguf_tensor *g = gguf_find_tensor(m->file, "position_embd.weight");
    if (!g)
        return pi_error_set(err, "model %s: tensor position_embd.weight is missing (architecture %s has learned "
                            "positions)", path, m->arch);
    m->pos_offset = 2;
    if (g->ne[1] <= m->pos_offset || g->ne[1] > INT32_MAX)
        return pi_error_set(err, "model %s: tensor position_embd.weight has %" PRIu64 " rows; it needs more than %u",
                            path, g->ne[1], m->pos_offset);
    uint32_t max_ctx = (uint32_t)g->ne[1] - m->pos_offset;
    if (m->n_ctx == 0)
        m->n_ctx = max_ctx;
    if (m->n_ctx > max_ctx)
        return pi_error_set(err, "model %s: key %s.context_length is %u but position_embd.weight holds %u positions",
                            path, m->arch, m->n_ctx, max_ctx);
    return bind(m, &m->pos_embd, "position_embd.weight", m->dim, g->ne[1], 0, err);
}

static int bind_all(pi_model *m, pi_error *err)
{
    const char *path = gguf_path(m->file);
    const gguf_tensor *te = gguf_find_tensor(m->file, "token_embd.weight");
    if (!te)
        return pi_error_set(err, "model %s: tensor token_embd.weight is missing", path);
    if (te->ne[1] == 0 || te->ne[1] > INT32_MAX)
        return pi_error_set(err, "model %s: tensor token_embd.weight has %" PRIu64 " rows (vocabulary size)",
                            path, te->ne[1]);
    m->n_vocab = (uint32_t)te->ne[1];
    uint32_t vocab = m->n_vocab;
    if (get_opt_u32(m, "vocab_size", &vocab, err) < 0)
        return -1;
    if (vocab != m->n_vocab)
        return pi_error_set(err, "model %s: key %s.vocab_size is %u but token_embd.weight has %u rows",
                            path, m->arch, vocab, m->n_vocab);
    const pi_arch_info *ai = pi_arch_find(m->arch);   /* known: read_hparams checked it */
    if (bind(m, &m->tok_embd, "token_embd.weight", m->dim, m->n_vocab, 0, err) < 0 ||
        bind(m, &m->output_norm, "output_norm.weight", m->dim, 0, 1, err) < 0 ||
        (m->norm == PI_NORM_LAYER && bind(m, &m->output_norm_b, "output_norm.bias", m->dim, 0, 1, err) < 0))
        return -1;
    if (ai->pos_embd && bind_positions(m, err) < 0)
        return -1;
    /* Llama 3.x: per-pair divisors of the rope frequencies */
    if (gguf_find_tensor(m->file, "rope_freqs.weight") &&
        bind(m, &m->rope_freqs, "rope_freqs.weight", m->head_dim / 2, 0, 1, err) < 0)
        return -1;
    m->tied_output = gguf_find_tensor(m->file, "output.weight") == NULL;
    if (m->tied_output)
        m->output = m->tok_embd;
    else if (bind(m, &m->output, "output.weight", m->dim, m->n_vocab, 0, err) < 0)
        return -1;
    m->layers = calloc(m->n_layers, sizeof *m->layers);
    if (!m->layers)
        return pi_error_set(err, "model %s: out of memory for %u layers", path, m->n_layers);
    for (uint32_t il = 0; il < m->n_layers; il++)
        if (bind_layer(m, ai, il, err) < 0)
            return -1;
    return 0;
}

pi_model *model_from_gguf(gguf_file *f, pi_error *err)
{
    if (!f) {
        pi_error_set(err, "model: no file");
        return NULL;
    }
    pi_model *m = calloc(1, sizeof *m);
    if (!m) {
        pi_error_set(err, "model %s: out of memory", gguf_path(f));
        gguf_close(&f);
        return NULL;
    }
    m->file = f;
    if (read_hparams(m, err) < 0 || bind_all(m, err) < 0) {
        model_close(&m);
        return NULL;
    }
    /* PowerInfer's llama, bamboo and opt graphs pass ffn_inp (before
     * ffn_norm) to the predictor, its falcon graph the layer's input; its
     * files say so only by their magic. */
    m->pred_input = PI_PRED_INPUT_NORMED;
    if (m->has_predictor && gguf_is_powerinfer(f))
        m->pred_input = m->parallel ? PI_PRED_INPUT_LAYER : PI_PRED_INPUT_RESIDUAL;
    return m;
}

const char *model_beyond_llama(const pi_model *m)
{
    if (m->norm != PI_NORM_RMS)
        return "LayerNorm with bias";
    if (m->rope != PI_ROPE_NORM)
        return m->rope == PI_ROPE_NEOX ? "NEOX rotary embedding" : "learned positions";
    if (m->parallel)
        return "parallel attention and FFN";
    if (m->pos_embd.data)
        return "learned positions";
    if (m->act == PI_ACT_RELU_SINGLE)
        return "an FFN without a gate";
    if (m->output_norm_b.data)
        return "an output norm bias";
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const pi_layer *y = &m->layers[l];
        if (y->bq.data || y->bk.data || y->bv.data)
            return "Q/K/V biases";
        if (y->bo.data || y->attn_norm_b.data || y->ffn_norm_b.data || y->ffn_gate_b.data || y->ffn_down_b.data)
            return "biases";
    }
    return NULL;
}

pi_model *model_open(const char *path, pi_error *err)
{
    gguf_file *f = gguf_open(path, err);
    if (!f)
        return NULL;
    return model_from_gguf(f, err);
}

void model_close(pi_model **mp)
{
    if (!mp || !*mp)
        return;
    pi_model *m = *mp;
    if (m->sidecar_free)
        m->sidecar_free(&m->sidecar);
    gguf_close(&m->file);
    free(m->pred_owned);
    free(m->layers);
    free(m);
    *mp = NULL;
}
