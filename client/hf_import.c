/* Hugging Face checkpoint folder → GGUF (hf_import.h). Every weight is
 * converted row by row while the GGUF is written (gguf_writer_add_tensor_fn),
 * from the mapped safetensors, so checkpoints larger than RAM convert. */
#include "hf_import.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "hf_json.h"
#include "hf_safetensors.h"
#include "hf_tokenizer.h"

#define HF_MAX_PARAM (1u << 24)

typedef struct hparams {
    const char *arch;
    pi_act act;
    uint32_t dim, n_ff, n_layers, n_heads, n_kv_heads, n_vocab, n_ctx, head_dim;
    float eps, theta;
    float rope_linear;      /* rope_scaling linear: its factor (0: none) */
    float rope_freqs[512];  /* rope_scaling llama3: each pair's frequency divisor (GGUF rope_freqs) */
    int has_rope_freqs;
    int tied;
    int64_t bos, eos;
} hparams;

/* The progress of the whole write, shared by the tensors' fill calls. */
typedef struct progress {
    hf_progress_fn fn;
    void *ctx;
    size_t done, n;
    uint64_t bytes;
} progress;

/* One GGUF tensor: rows x cols of src, rows reordered by permute heads
 * (0: none) from HF's rotate-half layout to GGUF's interleaved pairs. */
typedef struct job {
    char name[64];
    hf_tensor *src;
    uint64_t cols, rows;
    pi_type type;
    uint32_t permute;
    progress *pg;
} job;

/* config.json's rope_scaling: linear (GGUF rope.scaling.type/factor) or
 * llama3, whose per-frequency rule becomes GGUF's rope_freqs divisors: a
 * pair whose wavelength (2 pi / frequency) is shorter than
 * original_max_position_embeddings / high_freq_factor keeps its frequency,
 * one longer than ... / low_freq_factor has it divided by factor, and in
 * between the two are blended by where orig / wavelength lies between the
 * low and high factors. */
static int read_rope_scaling(const cJSON *rs, hparams *h, const char *cfg, pi_error *err)
{
    if (!rs || cJSON_IsNull(rs))
        return 0;
    const char *type = hf_json_str(rs, "rope_type");
    if (!type)
        type = hf_json_str(rs, "type");
    double factor = hf_json_num(rs, "factor", 0.0);
    if (!type || !(factor > 0))
        return pi_error_set(err, "%s: rope_scaling needs a rope_type and a factor > 0", cfg);
    if (!strcmp(type, "linear")) {
        h->rope_linear = (float)factor;
        return 0;
    }
    if (strcmp(type, "llama3") != 0)
        return pi_error_set(err, "%s: rope_scaling type '%s' is not supported (pi converts linear and llama3)",
                            cfg, type);
    double lo = hf_json_num(rs, "low_freq_factor", 0.0), hi = hf_json_num(rs, "high_freq_factor", 0.0);
    double orig = hf_json_num(rs, "original_max_position_embeddings", 0.0);
    if (!(lo > 0) || !(hi > lo) || !(orig > 0) || h->head_dim / 2 > sizeof h->rope_freqs / sizeof h->rope_freqs[0])
        return pi_error_set(err, "%s: rope_scaling llama3 needs 0 < low_freq_factor < high_freq_factor and "
                            "original_max_position_embeddings > 0 (head size at most 1024)", cfg);
    for (uint32_t i = 0; i < h->head_dim / 2; i++) {
        double freq = pow((double)h->theta, -(double)(2 * i) / (double)h->head_dim);
        double wave = 2.0 * M_PI / freq, div;
        if (wave < orig / hi)
            div = 1.0;
        else if (wave > orig / lo)
            div = factor;
        else {
            double t = (orig / wave - lo) / (hi - lo);   /* 0 at the low end, 1 at the high end */
            div = 1.0 / ((1.0 - t) / factor + t);
        }
        h->rope_freqs[i] = (float)div;
    }
    h->has_rope_freqs = 1;
    return 0;
}

static int act_of(const char *arch, const char *hidden_act, hparams *h, const char *cfg, pi_error *err)
{
    static const char *llama_like[] = {"LlamaForCausalLM", "MistralForCausalLM"};
    h->arch = "llama";
    if (!strcmp(arch, "BambooForCausalLM")) {
        h->arch = "bamboo";   /* PowerInfer's dReLU LLaMA: relu(gate) * relu(up) */
        h->act = PI_ACT_RELU_BOTH;
        return 0;
    }
    int known = 0;
    for (size_t i = 0; i < sizeof llama_like / sizeof llama_like[0]; i++)
        known |= !strcmp(arch, llama_like[i]);
    if (!known)
        return pi_error_set(err, "%s: architectures is %s; import-hf converts LlamaForCausalLM, "
                            "MistralForCausalLM (hidden_act silu or relu) and BambooForCausalLM (dReLU)", cfg, arch);
    if (!hidden_act || !strcmp(hidden_act, "silu"))
        h->act = PI_ACT_SILU;
    else if (!strcmp(hidden_act, "relu"))
        h->act = PI_ACT_RELU;
    else if (!strcmp(hidden_act, "drelu")) {
        h->arch = "bamboo";
        h->act = PI_ACT_RELU_BOTH;
    } else
        return pi_error_set(err, "%s: hidden_act is %s; pi computes silu, relu and drelu (relu on gate and up)",
                            cfg, hidden_act);
    return 0;
}

static int read_config(const char *dir, hparams *h, pi_error *err)
{
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    cJSON *c = hf_json_load(dir, "config.json", 0, NULL, err);
    if (!c)
        return -1;
    int rc = 0;
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(c, "architectures");
    const cJSON *a0 = cJSON_GetArrayItem(archs, 0);
    if (!cJSON_IsString(a0)) {
        rc = pi_error_set(err, "%s: no architectures list: not a transformers checkpoint config", cfg);
        goto done;
    }
    if (act_of(a0->valuestring, hf_json_str(c, "hidden_act"), h, cfg, err) < 0) {
        rc = -1;
        goto done;
    }
    const struct {
        const char *key;
        uint32_t *dst;
        int64_t def;
    } u[] = {
        {"hidden_size", &h->dim, -1}, {"intermediate_size", &h->n_ff, -1},
        {"num_hidden_layers", &h->n_layers, -1}, {"num_attention_heads", &h->n_heads, -1},
        {"num_key_value_heads", &h->n_kv_heads, 0}, {"vocab_size", &h->n_vocab, -1},
        {"max_position_embeddings", &h->n_ctx, 4096}, {"head_dim", &h->head_dim, 0},
    };
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) {
        int64_t v = hf_json_int(c, u[i].key, u[i].def);
        if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(c, u[i].key)))
            v = u[i].def;
        if (v < 0 || v > HF_MAX_PARAM || (v == 0 && u[i].def != 0)) {
            rc = pi_error_set(err, "%s: %s is %s; it must be a positive integer", cfg, u[i].key,
                              v == -1 ? "missing" : "out of range");
            goto done;
        }
        *u[i].dst = (uint32_t)v;
    }
    if (!h->n_kv_heads)
        h->n_kv_heads = h->n_heads;
    if (h->dim % h->n_heads || h->n_heads % h->n_kv_heads || (h->dim / h->n_heads) % 2 ||
        (h->head_dim && h->head_dim != h->dim / h->n_heads)) {
        rc = pi_error_set(err, "%s: hidden_size %u, num_attention_heads %u, num_key_value_heads %u, head_dim %u: "
                          "pi needs an even head size of hidden_size / heads shared by whole kv groups",
                          cfg, h->dim, h->n_heads, h->n_kv_heads, h->head_dim);
        goto done;
    }
    h->head_dim = h->dim / h->n_heads;
    h->eps = (float)hf_json_num(c, "rms_norm_eps", 1e-6);
    h->theta = (float)hf_json_num(c, "rope_theta", 10000.0);
    if (!(h->eps > 0) || !(h->theta > 0)) {
        rc = pi_error_set(err, "%s: rms_norm_eps and rope_theta must be > 0", cfg);
        goto done;
    }
    if ((rc = read_rope_scaling(cJSON_GetObjectItemCaseSensitive(c, "rope_scaling"), h, cfg, err)) < 0)
        goto done;
    h->tied = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "tie_word_embeddings"));
    h->bos = hf_json_int(c, "bos_token_id", -1);
    h->eos = hf_json_int(c, "eos_token_id", -1);
done:
    cJSON_Delete(c);
    return rc;
}

static int fill(void *ctx, void *dst, size_t size, pi_error *err)
{
    job *j = ctx;
    size_t rb;
    if (pi_row_bytes(j->type, j->cols, &rb) < 0 || rb * j->rows != size)
        return pi_error_set(err, "import-hf: tensor %s: size mismatch (%zu bytes asked)", j->name, size);
    float *row = malloc((size_t)j->cols * sizeof *row);
    if (!row)
        return pi_error_set(err, "import-hf: tensor %s: out of memory for a row", j->name);
    uint64_t hd = j->permute ? j->rows / j->permute : 0;
    for (uint64_t r = 0; r < j->rows; r++) {
        uint64_t src = r;
        if (j->permute) {
            /* GGUF row (head, pair i, half k) is HF row (head, half k, i): llama.cpp's permute */
            uint64_t head = r / hd, w = r % hd;
            src = head * hd + (w % 2) * (hd / 2) + w / 2;
        }
        hf_tensor_read_f32(j->src, src * j->cols, j->cols, row);
        pi_quantize_row(j->type, row, (char *)dst + r * rb, (size_t)j->cols);
    }
    free(row);
    progress *pg = j->pg;
    pg->bytes += size;
    pg->done++;
    if (pg->fn)
        pg->fn(pg->ctx, pg->done, pg->n, j->name, pg->bytes);
    return 0;
}

/* Finds HF tensor hf_name with shape [rows, cols] (rows 0: [cols]) and
 * queues it as gguf_name. */
static int add(gguf_writer *w, hf_st *st, job *jobs, size_t *n, const char *hf_name, const char *gguf_name,
               uint64_t cols, uint64_t rows, pi_type type, uint32_t permute, hf_import_info *info,
               const char *dir, pi_error *err)
{
    hf_tensor *t = hf_st_find(st, hf_name);
    if (!t)
        return pi_error_set(err, "%s: tensor %s is missing from the safetensors files (an incomplete download, "
                            "or not a plain LLaMA checkpoint?)", dir, hf_name);
    int ok = rows ? t->n_dims == 2 && t->shape[0] == rows && t->shape[1] == cols
                  : t->n_dims == 1 && t->shape[0] == cols;
    if (!ok) {
        char have[96] = "[";
        for (uint32_t d = 0; d < t->n_dims; d++)
            snprintf(have + strlen(have), sizeof have - strlen(have), "%s%llu", d ? "," : "",
                     (unsigned long long)t->shape[d]);
        strcat(have, "]");
        if (rows)
            return pi_error_set(err, "%s: tensor %s has shape %s but config.json implies [%llu,%llu]; the "
                                "config and weights do not match", t->file, hf_name, have, (unsigned long long)rows,
                                (unsigned long long)cols);
        return pi_error_set(err, "%s: tensor %s has shape %s but config.json implies [%llu]; the config and "
                            "weights do not match", t->file, hf_name, have, (unsigned long long)cols);
    }
    t->used = 1;
    job *j = &jobs[*n];
    snprintf(j->name, sizeof j->name, "%s", gguf_name);
    j->src = t;
    j->cols = cols;
    j->rows = rows ? rows : 1;
    j->type = rows ? type : PI_TYPE_F32;
    j->permute = permute;
    size_t rb;
    if (pi_row_bytes(j->type, cols, &rb) < 0) {
        j->type = PI_TYPE_F16;   /* as llama.cpp: rows that are not whole blocks stay f16 */
        info->n_fallback++;
    }
    uint64_t ne[2] = {cols, j->rows};
    (*n)++;
    if (gguf_writer_add_tensor_fn(w, j->name, j->type, rows ? 2 : 1, ne, fill, j) != 0)
        return pi_error_set(err, "import-hf: out of memory queueing %s", gguf_name);
    return 0;
}

static int add_keys(gguf_writer *w, const hparams *h, const char *dir)
{
    char path[256], key[96];
    snprintf(path, sizeof path, "%s", dir);
    size_t nl = strlen(path);
    while (nl > 1 && path[nl - 1] == '/')
        path[--nl] = 0;
    const char *base = strrchr(path, '/');
    const char *name = base && base[1] ? base + 1 : path;   /* the folder's name, as llama.cpp does */
    int rc = gguf_writer_add_str(w, "general.architecture", h->arch);
    rc |= gguf_writer_add_str(w, "general.name", name);
    const struct {
        const char *k;
        uint32_t v;
    } u[] = {
        {"context_length", h->n_ctx}, {"embedding_length", h->dim}, {"block_count", h->n_layers},
        {"feed_forward_length", h->n_ff}, {"attention.head_count", h->n_heads},
        {"attention.head_count_kv", h->n_kv_heads}, {"rope.dimension_count", h->head_dim},
        {"vocab_size", h->n_vocab},
    };
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) {
        snprintf(key, sizeof key, "%s.%s", h->arch, u[i].k);
        rc |= gguf_writer_add_u32(w, key, u[i].v);
    }
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", h->arch);
    rc |= gguf_writer_add_f32(w, key, h->eps);
    snprintf(key, sizeof key, "%s.rope.freq_base", h->arch);
    rc |= gguf_writer_add_f32(w, key, h->theta);
    if (h->rope_linear > 0) {
        snprintf(key, sizeof key, "%s.rope.scaling.type", h->arch);
        rc |= gguf_writer_add_str(w, key, "linear");
        snprintf(key, sizeof key, "%s.rope.scaling.factor", h->arch);
        rc |= gguf_writer_add_f32(w, key, h->rope_linear);
    }
    /* llama's default is silu: ReluLLaMA/ProSparse say relu here (model/model.c reads it) */
    rc |= gguf_writer_add_str(w, "pi.ffn_activation", pi_act_name(h->act));
    return rc;
}

static int add_tensors(gguf_writer *w, hf_st *st, job *jobs, size_t *n, const hparams *h, pi_type type,
                       hf_import_info *info, const char *dir, pi_error *err)
{
    uint64_t dim = h->dim, ff = h->n_ff, kv = (uint64_t)h->head_dim * h->n_kv_heads;
    if (add(w, st, jobs, n, "model.embed_tokens.weight", "token_embd.weight", dim, h->n_vocab, type, 0, info,
            dir, err) < 0)
        return -1;
    uint64_t nf = h->head_dim / 2;
    if (h->has_rope_freqs && gguf_writer_add_tensor(w, "rope_freqs.weight", PI_TYPE_F32, 1, &nf, h->rope_freqs) != 0)
        return pi_error_set(err, "import-hf: out of memory queueing rope_freqs.weight");
    for (uint32_t l = 0; l < h->n_layers; l++) {
        const struct {
            const char *hf, *gguf;
            uint64_t cols, rows;
            uint32_t permute;
        } t[] = {
            {"input_layernorm", "attn_norm", dim, 0, 0},
            {"self_attn.q_proj", "attn_q", dim, dim, h->n_heads},
            {"self_attn.k_proj", "attn_k", dim, kv, h->n_kv_heads},
            {"self_attn.v_proj", "attn_v", dim, kv, 0},
            {"self_attn.o_proj", "attn_output", dim, dim, 0},
            {"post_attention_layernorm", "ffn_norm", dim, 0, 0},
            {"mlp.gate_proj", "ffn_gate", dim, ff, 0},
            {"mlp.up_proj", "ffn_up", dim, ff, 0},
            {"mlp.down_proj", "ffn_down", ff, dim, 0},
        };
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
            char hn[128], gn[64];
            snprintf(hn, sizeof hn, "model.layers.%u.%s.weight", l, t[i].hf);
            snprintf(gn, sizeof gn, "blk.%u.%s.weight", l, t[i].gguf);
            if (add(w, st, jobs, n, hn, gn, t[i].cols, t[i].rows, type, t[i].permute, info, dir, err) < 0)
                return -1;
        }
    }
    if (add(w, st, jobs, n, "model.norm.weight", "output_norm.weight", dim, 0, type, 0, info, dir, err) < 0)
        return -1;
    hf_tensor *head = hf_st_find(st, "lm_head.weight");
    info->tied = h->tied || !head;
    if (head && h->tied)
        head->used = 1;   /* a tied checkpoint may still store the copy */
    else if (head && add(w, st, jobs, n, "lm_head.weight", "output.weight", dim, h->n_vocab, type, 0, info, dir,
                         err) < 0)
        return -1;
    for (size_t i = 0; i < hf_st_count(st); i++) {
        hf_tensor *t = hf_st_at(st, i);
        size_t len = strlen(t->name);
        if (!t->used && !(len >= 19 && !strcmp(t->name + len - 19, "rotary_emb.inv_freq")))
            return pi_error_set(err, "%s: tensor %s has no GGUF name (biases or extra modules are not a plain "
                                "LLaMA layer; pi cannot compute them)", t->file, t->name);
    }
    return 0;
}

int hf_import(const char *dir, const char *out_path, pi_type type, hf_progress_fn progress_fn, void *progress_ctx,
              hf_import_info *info, pi_error *err)
{
    hf_import_info local;
    if (!info)
        info = &local;
    memset(info, 0, sizeof *info);
    if (!pi_type_supported((int)type))
        return pi_error_set(err, "import-hf: unsupported output type %d", (int)type);
    hparams h = {0};
    if (read_config(dir, &h, err) < 0)
        return -1;
    hf_vocab v;
    if (hf_vocab_load(&v, dir, h.n_vocab, h.bos, h.eos, err) < 0)
        return -1;
    if (v.n != h.n_vocab) {
        pi_error_set(err, "%s/tokenizer.json: %u tokens but config.json's vocab_size is %u; the tokenizer and "
                     "weights do not match", dir, v.n, h.n_vocab);
        hf_vocab_free(&v);
        return -1;
    }
    hf_st *st = hf_st_open(dir, err);
    if (!st) {
        hf_vocab_free(&v);
        return -1;
    }
    size_t n = 0, n_max = 3 + 9 * (size_t)h.n_layers;
    job *jobs = calloc(n_max, sizeof *jobs);
    gguf_writer *w = gguf_writer_new();
    progress pg = {progress_fn, progress_ctx, 0, 0, 0};
    int rc = 0;
    if (!jobs || !w)
        rc = pi_error_set(err, "import-hf: out of memory");
    else if (add_keys(w, &h, dir) != 0 || hf_vocab_add(&v, w) != 0)
        rc = pi_error_set(err, "import-hf: out of memory queueing keys");
    else
        rc = add_tensors(w, st, jobs, &n, &h, type, info, dir, err);
    for (size_t i = 0; i < n; i++)
        jobs[i].pg = &pg;
    pg.n = n;
    if (rc == 0)
        rc = gguf_writer_write(w, out_path, "GGUF", err);
    if (rc == 0) {
        info->arch = h.arch;
        info->act = h.act;
        info->dim = h.dim;
        info->n_ff = h.n_ff;
        info->n_layers = h.n_layers;
        info->n_heads = h.n_heads;
        info->n_kv_heads = h.n_kv_heads;
        info->n_vocab = h.n_vocab;
        info->n_ctx = h.n_ctx;
        info->tok_model = v.model;   /* a string literal, outlives v */
        info->bytes = pg.bytes;
    }
    gguf_writer_free(&w);
    free(jobs);
    hf_st_close(&st);
    hf_vocab_free(&v);
    return rc;
}
