/* tokenizer.json → GGUF tokenizer keys (hf_tokenizer.h). */
#include "hf_tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf_json.h"

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

/* Llama 3's and Qwen2's Split expressions (their tokenizer.json), and the
 * llama.cpp pre-tokenizer each is. */
static const struct {
    const char *regex, *pre;
} known_splits[] = {
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
     "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", "llama-bpe"},
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
     "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", "qwen2"},
};

/* Token text → id: open addressing over a power-of-two table. */
typedef struct tok_map {
    uint32_t *slot;   /* id + 1; 0 empty */
    size_t mask;
} tok_map;

static uint64_t fnv(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static int map_build(tok_map *m, const hf_vocab *v)
{
    size_t cap = 16;
    while (cap < 2 * (size_t)v->n)
        cap *= 2;
    m->slot = calloc(cap, sizeof *m->slot);
    m->mask = cap - 1;
    if (!m->slot)
        return -1;
    for (uint32_t i = 0; i < v->n; i++) {
        size_t k = fnv(v->tokens[i], v->lens[i]) & m->mask;
        while (m->slot[k])
            k = (k + 1) & m->mask;
        m->slot[k] = i + 1;
    }
    return 0;
}

static int64_t map_find(const tok_map *m, const hf_vocab *v, const char *s, size_t n)
{
    for (size_t k = fnv(s, n) & m->mask; m->slot[k]; k = (k + 1) & m->mask) {
        uint32_t id = m->slot[k] - 1;
        if (v->lens[id] == n && !memcmp(v->tokens[id], s, n))
            return id;
    }
    return -1;
}

void hf_vocab_free(hf_vocab *v)
{
    for (uint32_t i = 0; v->tokens && i < v->n; i++)
        free(v->tokens[i]);
    for (uint32_t i = 0; v->merges && i < v->n_merges; i++)
        free(v->merges[i]);
    free(v->tokens);
    free(v->lens);
    free(v->scores);
    free(v->types);
    free(v->merges);
    free(v->merge_lens);
    free(v->chat_template);
    memset(v, 0, sizeof *v);
}

static int is_byte_token(const char *s, size_t n)
{
    const char *hex = "0123456789ABCDEFabcdef";
    return n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && strchr(hex, s[3]) && strchr(hex, s[4]);
}

/* The highest id in model.vocab and added_tokens (-1: none), or -2 with err. */
static int64_t max_id(const cJSON *vocab, const cJSON *added, const char *path, pi_error *err)
{
    int64_t top = -1;
    for (const cJSON *it = vocab->child; it; it = it->next) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= (1 << 24))
            return pi_error_set(err, "%s: model.vocab entry %s has no id in 0..2^24", path, it->string) - 1;
        if ((int64_t)it->valuedouble > top)
            top = (int64_t)it->valuedouble;
    }
    for (const cJSON *it = added ? added->child : NULL; it; it = it->next) {
        int64_t id = hf_json_int(it, "id", -1);
        if (id < 0 || id >= (1 << 24) || !hf_json_str(it, "content"))
            return pi_error_set(err, "%s: an added_tokens entry lacks id (0..2^24) or content", path) - 1;
        if (id > top)
            top = id;
    }
    return top;
}

static int set_token(hf_vocab *v, int64_t id, const char *s, int32_t type)
{
    free(v->tokens[id]);
    v->tokens[id] = strdup(s);
    v->lens[id] = strlen(s);
    v->types[id] = type;
    return v->tokens[id] ? 0 : -1;
}

/* A merge as "left right", from either form tokenizer.json uses. */
static char *merge_text(const cJSON *m)
{
    if (cJSON_IsString(m))
        return strdup(m->valuestring);
    if (!cJSON_IsArray(m) || cJSON_GetArraySize(m) != 2)
        return NULL;
    const cJSON *a = cJSON_GetArrayItem(m, 0), *b = cJSON_GetArrayItem(m, 1);
    if (!cJSON_IsString(a) || !cJSON_IsString(b))
        return NULL;
    size_t n = strlen(a->valuestring) + strlen(b->valuestring) + 2;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s %s", a->valuestring, b->valuestring);
    return s;
}

static int load_merges(hf_vocab *v, const cJSON *merges, const char *path, pi_error *err)
{
    int n = cJSON_GetArraySize(merges);
    v->merges = calloc((size_t)n + 1, sizeof *v->merges);
    v->merge_lens = calloc((size_t)n + 1, sizeof *v->merge_lens);
    if (!v->merges || !v->merge_lens)
        return pi_error_set(err, "%s: out of memory", path);
    for (const cJSON *it = merges->child; it; it = it->next) {
        char *s = merge_text(it);
        if (!s || !strchr(s, ' ')) {
            free(s);
            return pi_error_set(err, "%s: model.merges[%u] is not a pair of tokens", path, v->n_merges);
        }
        v->merge_lens[v->n_merges] = strlen(s);
        v->merges[v->n_merges++] = s;
    }
    return 0;
}

/* llama: the score of a token is minus the rank of the first merge that
 * makes it, so SentencePiece-style merging by score applies the merges in
 * BPE's order; tokens no merge makes rank below every merge, in id order. */
static int llama_scores(hf_vocab *v, const char *path, pi_error *err)
{
    tok_map m;
    if (map_build(&m, v) < 0)
        return pi_error_set(err, "%s: out of memory", path);
    for (uint32_t i = 0; i < v->n; i++)
        v->scores[i] = -(float)v->n_merges - (float)i;
    char buf[1024];
    for (uint32_t r = 0; r < v->n_merges; r++) {
        const char *s = v->merges[r], *sp = strchr(s, ' ');
        size_t a = (size_t)(sp - s), n = v->merge_lens[r] - 1;
        if (n > sizeof buf)
            continue;
        memcpy(buf, s, a);
        memcpy(buf + a, sp + 1, n - a);
        int64_t id = map_find(&m, v, buf, n);
        if (id >= 0 && v->scores[id] < -(float)r)
            v->scores[id] = -(float)r;
    }
    free(m.slot);
    return 0;
}

/* tokenizer.ggml.pre for a byte-level BPE from its pre_tokenizer. */
static int gpt2_pre(hf_vocab *v, const cJSON *tj, const char *path, pi_error *err)
{
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(tj, "pre_tokenizer");
    const char *type = hf_json_str(pt, "type");
    const cJSON *list = pt;
    if (type && !strcmp(type, "Sequence"))
        list = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
    else
        list = NULL;
    const char *regex = NULL;
    int byte_level_regex = type && !strcmp(type, "ByteLevel") && cJSON_IsTrue(cJSON_GetObjectItem(pt, "use_regex"));
    for (const cJSON *it = list ? list->child : NULL; it; it = it->next) {
        const char *t = hf_json_str(it, "type");
        if (t && !strcmp(t, "Split"))
            regex = hf_json_str(cJSON_GetObjectItemCaseSensitive(it, "pattern"), "Regex");
        if (t && !strcmp(t, "ByteLevel") && cJSON_IsTrue(cJSON_GetObjectItem(it, "use_regex")))
            byte_level_regex = 1;
    }
    for (size_t i = 0; regex && !byte_level_regex && i < sizeof known_splits / sizeof known_splits[0]; i++)
        if (!strcmp(regex, known_splits[i].regex)) {
            v->pre = known_splits[i].pre;
            return 0;
        }
    if (!regex && byte_level_regex) {
        v->pre = "gpt-2";   /* ByteLevel's own regex is GPT-2's */
        return 0;
    }
    return pi_error_set(err, "%s: byte-level BPE whose pre_tokenizer %s; import-hf knows GPT-2's (ByteLevel "
                        "use_regex), Llama 3's and Qwen2's Split expressions: convert with llama.cpp's "
                        "convert_hf_to_gguf.py instead", path,
                        regex ? "splits with an expression pi does not know" : "has no known split");
}

/* Id of a special token named in tokenizer_config.json (a string or an
 * AddedToken object), or -1. */
static int64_t config_token(const cJSON *tc, const char *key, const tok_map *m, const hf_vocab *v)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(tc, key);
    const char *s = cJSON_IsString(t) ? t->valuestring : hf_json_str(t, "content");
    return s ? map_find(m, v, s, strlen(s)) : -1;
}

/* tokenizer_config.json: special tokens, add_bos_token, chat_template. */
static int read_config(hf_vocab *v, const cJSON *tj, const cJSON *tc, int64_t cfg_bos, int64_t cfg_eos,
                       const char *dir, pi_error *err)
{
    tok_map m;
    if (map_build(&m, v) < 0)
        return pi_error_set(err, "%s: out of memory", dir);
    v->bos = tc ? config_token(tc, "bos_token", &m, v) : -1;
    v->eos = tc ? config_token(tc, "eos_token", &m, v) : -1;
    v->pad = tc ? config_token(tc, "pad_token", &m, v) : -1;
    free(m.slot);
    if (v->bos < 0)
        v->bos = cfg_bos;
    if (v->eos < 0)
        v->eos = cfg_eos;
    if (v->bos >= (int64_t)v->n || v->eos >= (int64_t)v->n)
        return pi_error_set(err, "%s/config.json: bos_token_id %lld or eos_token_id %lld is not below the "
                            "vocabulary's %u tokens", dir, (long long)v->bos, (long long)v->eos, v->n);
    /* add_bos_token: the config's word, else whether the post-processor puts BOS first */
    const cJSON *ab = cJSON_GetObjectItemCaseSensitive(tc, "add_bos_token");
    if (cJSON_IsBool(ab)) {
        v->add_bos = cJSON_IsTrue(ab);
    } else {
        const cJSON *pp = cJSON_GetObjectItemCaseSensitive(tj, "post_processor");
        char *s = pp ? cJSON_PrintUnformatted(pp) : NULL;
        v->add_bos = !strcmp(v->model, "llama");
        if (s && v->bos >= 0)
            v->add_bos = strstr(s, v->tokens[v->bos]) != NULL;
        free(s);
    }
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(tc, "chat_template");
    const char *tmpl = cJSON_IsString(ct) ? ct->valuestring : NULL;
    for (const cJSON *it = cJSON_IsArray(ct) ? ct->child : NULL; it && !tmpl; it = it->next) {
        const char *name = hf_json_str(it, "name");
        if (name && !strcmp(name, "default"))
            tmpl = hf_json_str(it, "template");
    }
    if (tmpl && !(v->chat_template = strdup(tmpl)))
        return pi_error_set(err, "%s: out of memory", dir);
    return 0;
}

/* add_space_prefix: SentencePiece's leading ▁, from a Prepend normalizer or
 * a Metaspace pre-tokenizer that prepends. */
static int space_prefix(const cJSON *tj)
{
    char *n = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(tj, "normalizer"));
    char *p = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(tj, "pre_tokenizer"));
    int yes = (n && strstr(n, "\"Prepend\"")) ||
              (p && strstr(p, "\"Metaspace\"") && !strstr(p, "\"prepend_scheme\":\"never\"") &&
               !strstr(p, "\"add_prefix_space\":false"));
    free(n);
    free(p);
    return yes;
}

static int load(hf_vocab *v, const cJSON *tj, const cJSON *tc, const char *dir, uint32_t n_min,
                int64_t cfg_bos, int64_t cfg_eos, pi_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(tj, "model");
    const char *type = hf_json_str(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(tj, "added_tokens");
    if (!type || strcmp(type, "BPE") || !cJSON_IsObject(vocab) || !cJSON_IsArray(merges))
        return pi_error_set(err, "%s: model.type is %s; import-hf converts BPE tokenizers (Llama, Mistral, "
                            "Llama 3) with model.vocab and model.merges", path, type ? type : "missing");
    v->model = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback")) ? "llama" : "gpt2";
    int64_t top = max_id(vocab, cJSON_IsArray(added) ? added : NULL, path, err);
    if (top < -1)
        return -1;
    if (top < 0 && n_min == 0)
        return pi_error_set(err, "%s: the vocabulary is empty", path);
    v->n = (uint32_t)(top + 1) > n_min ? (uint32_t)(top + 1) : n_min;
    v->tokens = calloc(v->n, sizeof *v->tokens);
    v->lens = calloc(v->n, sizeof *v->lens);
    v->scores = calloc(v->n, sizeof *v->scores);
    v->types = calloc(v->n, sizeof *v->types);
    if (!v->tokens || !v->lens || !v->scores || !v->types)
        return pi_error_set(err, "%s: out of memory", path);
    int oom = 0;
    for (const cJSON *it = vocab->child; it; it = it->next) {
        int64_t id = (int64_t)it->valuedouble;
        int byte = !strcmp(v->model, "llama") && is_byte_token(it->string, strlen(it->string));
        oom |= set_token(v, id, it->string, byte ? TT_BYTE : TT_NORMAL);
    }
    for (const cJSON *it = cJSON_IsArray(added) ? added->child : NULL; it; it = it->next)
        oom |= set_token(v, hf_json_int(it, "id", 0), hf_json_str(it, "content"),
                         cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "special")) ? TT_CONTROL : TT_USER);
    for (uint32_t i = 0; i < v->n; i++)
        if (!v->tokens[i]) {
            char pad[32];
            snprintf(pad, sizeof pad, "[PAD%u]", i);
            oom |= set_token(v, i, pad, TT_UNUSED);
        }
    if (oom)
        return pi_error_set(err, "%s: out of memory", path);
    v->unk = -1;
    const char *unk = hf_json_str(model, "unk_token");
    for (uint32_t i = 0; unk && i < v->n; i++)
        if (!strcmp(v->tokens[i], unk)) {
            v->unk = i;
            v->types[i] = TT_UNKNOWN;
        }
    if (load_merges(v, merges, path, err) < 0)
        return -1;
    if (!strcmp(v->model, "llama")) {
        if (llama_scores(v, path, err) < 0)
            return -1;
        v->add_space_prefix = space_prefix(tj);
    } else if (gpt2_pre(v, tj, path, err) < 0) {
        return -1;
    }
    return read_config(v, tj, tc, cfg_bos, cfg_eos, dir, err);
}

int hf_vocab_load(hf_vocab *v, const char *dir, uint32_t n_min, int64_t cfg_bos, int64_t cfg_eos,
                  pi_error *err)
{
    memset(v, 0, sizeof *v);
    cJSON *tj = hf_json_load(dir, "tokenizer.json", 0, NULL, err);
    if (!tj)
        return -1;
    int missing = 0;
    cJSON *tc = hf_json_load(dir, "tokenizer_config.json", 1, &missing, err);
    int rc = !tc && !missing ? -1 : load(v, tj, tc, dir, n_min, cfg_bos, cfg_eos, err);
    cJSON_Delete(tj);
    cJSON_Delete(tc);
    if (rc < 0)
        hf_vocab_free(v);
    return rc;
}

int hf_vocab_add(const hf_vocab *v, gguf_writer *w)
{
    int rc = 0;
    rc |= gguf_writer_add_str(w, "tokenizer.ggml.model", v->model);
    if (v->pre)
        rc |= gguf_writer_add_str(w, "tokenizer.ggml.pre", v->pre);
    rc |= gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->tokens, v->lens, v->n);
    if (!strcmp(v->model, "llama"))
        rc |= gguf_writer_add_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, v->scores, v->n);
    rc |= gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, v->types, v->n);
    if (!strcmp(v->model, "gpt2"))
        rc |= gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v->merges, v->merge_lens,
                                      v->n_merges);
    if (v->bos >= 0)
        rc |= gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos);
    if (v->eos >= 0)
        rc |= gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v->eos);
    if (v->unk >= 0)
        rc |= gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)v->unk);
    if (v->pad >= 0)
        rc |= gguf_writer_add_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)v->pad);
    rc |= gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", v->add_bos);
    if (!strcmp(v->model, "llama"))
        rc |= gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", v->add_space_prefix);
    if (v->chat_template)
        rc |= gguf_writer_add_str(w, "tokenizer.chat_template", v->chat_template);
    return rc;
}
