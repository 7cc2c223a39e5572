/* The sparse sidecar: a GGUF with general.architecture "pi-sparse"
 * (docs/formats.md, "pi sparse sidecar"). Frequencies are copied out of the
 * file (small, and aligned for any reader); predictor weights stay in the
 * mapping, which the sidecar keeps open. */
#include "sidecar.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HASH_EDGE (1u << 20)   /* bytes hashed at each end of the data section */

/* ---- model hash ---- */

static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

void sidecar_model_hash(const gguf_file *f, char out[17])
{
    const unsigned char *base = gguf_base(f);
    size_t size = gguf_file_size(f), data = size;
    /* the data section starts where any tensor's data minus its offset points */
    if (gguf_n_tensors(f) > 0) {
        const gguf_tensor *t = gguf_tensor_at(f, 0);
        data = (size_t)((const unsigned char *)t->data - base) - (size_t)t->offset;
    }
    uint64_t h = 0xcbf29ce484222325ull;
    h = fnv1a(h, base, data);
    size_t head_end = size - data > HASH_EDGE ? data + HASH_EDGE : size;
    h = fnv1a(h, base + data, head_end - data);
    size_t tail = size - head_end > HASH_EDGE ? size - HASH_EDGE : head_end;
    h = fnv1a(h, base + tail, size - tail);
    unsigned char sz[8];
    for (int i = 0; i < 8; i++)
        sz[i] = (unsigned char)((uint64_t)size >> (8 * i));
    h = fnv1a(h, sz, sizeof sz);
    snprintf(out, 17, "%016" PRIx64, h);
}

int sidecar_path_for(const char *model_path, char *buf, size_t cap)
{
    const char *suffix = ".pi-sparse.gguf";
    size_t n = strlen(model_path);
    if (n >= 5 && !strcmp(model_path + n - 5, ".gguf"))
        n -= 5;
    if (n + strlen(suffix) + 1 > cap)
        return -1;
    memcpy(buf, model_path, n);
    strcpy(buf + n, suffix);
    return 0;
}

/* ---- construction ---- */

static pi_sidecar *alloc_sidecar(uint32_t n_layers, uint32_t n_ff, uint32_t dim, const char *what, pi_error *err)
{
    pi_sidecar *s = calloc(1, sizeof *s);
    size_t n;
    if (!s || pi_mul_size(n_layers, n_ff, &n) < 0 || !(s->freq = calloc(n ? n : 1, sizeof *s->freq)) ||
        !(s->fc1 = calloc(n_layers ? n_layers : 1, sizeof *s->fc1)) ||
        !(s->fc2 = calloc(n_layers ? n_layers : 1, sizeof *s->fc2))) {
        sidecar_free(&s);
        pi_error_set(err, "sidecar %s: out of memory for %u layers x %u neurons", what, n_layers, n_ff);
        return NULL;
    }
    s->n_layers = n_layers;
    s->n_ff = n_ff;
    s->dim = dim;
    return s;
}

pi_sidecar *sidecar_new(const pi_model *m, pi_error *err)
{
    pi_sidecar *s = alloc_sidecar(m->n_layers, m->n_ff, m->dim, gguf_path(m->file), err);
    if (!s)
        return NULL;
    sidecar_model_hash(m->file, s->model_hash);
    snprintf(s->model_path, sizeof s->model_path, "%s", gguf_path(m->file));
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm))
        strftime(s->date, sizeof s->date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return s;
}

void sidecar_free(pi_sidecar **sp)
{
    if (!sp || !*sp)
        return;
    pi_sidecar *s = *sp;
    free(s->freq);
    free(s->fc1);
    free(s->fc2);
    gguf_close(&s->file);
    free(s);
    *sp = NULL;
}

const float *sidecar_freq(const pi_sidecar *s, uint32_t l)
{
    return l < s->n_layers ? s->freq + (size_t)l * s->n_ff : NULL;
}

const pi_tensor *sidecar_fc1(const pi_sidecar *s, uint32_t l)
{
    return l < s->n_layers && s->fc1[l].data ? &s->fc1[l] : NULL;
}

const pi_tensor *sidecar_fc2(const pi_sidecar *s, uint32_t l)
{
    return l < s->n_layers && s->fc2[l].data ? &s->fc2[l] : NULL;
}

/* ---- writing ---- */

/* First frequency outside [0, 1] (or NaN), as an index, or -1. */
static int64_t bad_freq(const float *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(f[i] >= 0.0f && f[i] <= 1.0f))
            return (int64_t)i;
    return -1;
}

static int check_predictor(const pi_sidecar *s, uint32_t l, const char *path, pi_error *err)
{
    const pi_tensor *a = &s->fc1[l], *b = &s->fc2[l];
    if (!a->data || !b->data)
        return pi_error_set(err, "sidecar %s: layer %u has no predictor (fc1/fc2) but has_predictor is set; "
                            "a predictor must cover every layer", path, l);
    if (a->cols != s->dim || b->cols != a->rows || b->rows != s->n_ff)
        return pi_error_set(err, "sidecar %s: layer %u predictor shapes fc1 %" PRIu64 "x%" PRIu64 ", fc2 %" PRIu64
                            "x%" PRIu64 " do not fit dim %u and n_ff %u (want fc1 R x %u, fc2 %u x R)", path, l,
                            a->rows, a->cols, b->rows, b->cols, s->dim, s->n_ff, s->dim, s->n_ff);
    size_t rb;
    if (pi_row_bytes(a->type, a->cols, &rb) < 0 || rb != a->row_bytes ||
        pi_row_bytes(b->type, b->cols, &rb) < 0 || rb != b->row_bytes)
        return pi_error_set(err, "sidecar %s: layer %u predictor rows are not contiguous %s/%s rows", path, l,
                            pi_type_name((int)a->type), pi_type_name((int)b->type));
    return 0;
}

int sidecar_write(const pi_sidecar *s, const char *path, pi_error *err)
{
    for (uint32_t l = 0; l < s->n_layers; l++) {
        int64_t i = bad_freq(sidecar_freq(s, l), s->n_ff);
        if (i >= 0)
            return pi_error_set(err, "sidecar %s: layer %u neuron %" PRId64 " has frequency %g, outside [0, 1]",
                                path, l, i, (double)s->freq[(size_t)l * s->n_ff + (size_t)i]);
        if (s->has_predictor && check_predictor(s, l, path, err) < 0)
            return -1;
    }
    gguf_writer *w = gguf_writer_new();
    if (!w)
        return pi_error_set(err, "sidecar %s: out of memory", path);
    int rc = 0;
    rc |= gguf_writer_add_str(w, "general.architecture", SIDECAR_ARCH);
    rc |= gguf_writer_add_u32(w, "pi.sparse.version", SIDECAR_VERSION);
    rc |= gguf_writer_add_f32(w, "pi.sparse.threshold", s->threshold);
    rc |= gguf_writer_add_u32(w, "pi.sparse.n_layers", s->n_layers);
    rc |= gguf_writer_add_u32(w, "pi.sparse.n_ff", s->n_ff);
    rc |= gguf_writer_add_u32(w, "pi.sparse.dim", s->dim);
    rc |= gguf_writer_add_str(w, "pi.sparse.corpus", s->corpus);
    rc |= gguf_writer_add_u64(w, "pi.sparse.tokens", s->tokens);
    rc |= gguf_writer_add_str(w, "pi.sparse.date", s->date);
    rc |= gguf_writer_add_str(w, "pi.sparse.model_hash", s->model_hash);
    rc |= gguf_writer_add_str(w, "pi.sparse.model_path", s->model_path);
    for (uint32_t l = 0; l < s->n_layers && !rc; l++) {
        char name[64];
        uint64_t ne[2] = {s->n_ff, 1};
        snprintf(name, sizeof name, "blk.%u.ffn_freq", l);
        rc |= gguf_writer_add_tensor(w, name, PI_TYPE_F32, 1, ne, sidecar_freq(s, l));
        if (!s->has_predictor)
            continue;
        const pi_tensor *a = &s->fc1[l], *b = &s->fc2[l];
        uint64_t ne1[2] = {a->cols, a->rows}, ne2[2] = {b->cols, b->rows};
        snprintf(name, sizeof name, "blk.%u.fc1.weight", l);
        rc |= gguf_writer_add_tensor(w, name, a->type, 2, ne1, a->data);
        snprintf(name, sizeof name, "blk.%u.fc2.weight", l);
        rc |= gguf_writer_add_tensor(w, name, b->type, 2, ne2, b->data);
    }
    /* an add that failed is reported by the write itself */
    rc = gguf_writer_write(w, path, "GGUF", err);
    gguf_writer_free(&w);
    return rc;
}

/* ---- reading ---- */

static int get_str_opt(const gguf_file *f, const char *key, char *buf, size_t cap, pi_error *err)
{
    buf[0] = '\0';
    if (!gguf_find_kv(f, key))
        return 0;
    if (gguf_get_cstr(f, key, buf, cap, err) < 0)
        return pi_error_set(err, "sidecar %s: key %s is not a string of at most %zu bytes", gguf_path(f), key, cap - 1);
    return 0;
}

static int get_u32_req(const gguf_file *f, const char *key, uint32_t *out, pi_error *err)
{
    if (gguf_get_u32(f, key, out, err) < 0 || *out == 0)
        return pi_error_set(err, "sidecar %s: key %s is missing, 0 or not a 32-bit unsigned integer", gguf_path(f), key);
    return 0;
}

/* Binds a 2-D predictor tensor with ne [cols, rows]; rows 0 = take the file's. */
static int bind_pred(const gguf_file *f, const gguf_tensor *g, pi_tensor *t, uint64_t cols, uint64_t rows,
                     pi_error *err)
{
    if (!rows)
        rows = g->ne[1];
    if (g->n_dims != 2 || g->ne[0] != cols || g->ne[1] != rows)
        return pi_error_set(err, "sidecar %s: tensor %.*s has shape [%" PRIu64 ",%" PRIu64 "] (%u dims), expected [%"
                            PRIu64 ",%" PRIu64 "]", gguf_path(f), (int)g->name.len, g->name.ptr, g->ne[0], g->ne[1],
                            g->n_dims, cols, rows);
    size_t rb;
    if (pi_row_bytes(g->type, cols, &rb) < 0)
        return pi_error_set(err, "sidecar %s: tensor %.*s: %" PRIu64 " columns do not fit %s blocks", gguf_path(f),
                            (int)g->name.len, g->name.ptr, cols, pi_type_name((int)g->type));
    t->type = g->type;
    t->cols = cols;
    t->rows = rows;
    t->row_bytes = rb;
    t->data = g->data;
    return 0;
}

static int read_layer(pi_sidecar *s, uint32_t l, pi_error *err)
{
    const gguf_file *f = s->file;
    const char *path = gguf_path(f);
    char name[64], n1[64], n2[64];
    snprintf(name, sizeof name, "blk.%u.ffn_freq", l);
    const gguf_tensor *g = gguf_find_tensor(f, name);
    if (!g)
        return pi_error_set(err, "sidecar %s: tensor %s is missing", path, name);
    if (g->type != PI_TYPE_F32 || g->n_dims != 1 || g->ne[0] != s->n_ff)
        return pi_error_set(err, "sidecar %s: tensor %s must be f32 [%u] (n_ff), has %s [%" PRIu64 "] in %u dims",
                            path, name, s->n_ff, pi_type_name((int)g->type), g->ne[0], g->n_dims);
    float *dst = s->freq + (size_t)l * s->n_ff;
    memcpy(dst, g->data, (size_t)s->n_ff * sizeof *dst);
    int64_t bad = bad_freq(dst, s->n_ff);
    if (bad >= 0)
        return pi_error_set(err, "sidecar %s: tensor %s neuron %" PRId64 " has frequency %g, outside [0, 1]", path, name,
                            bad, (double)dst[bad]);

    snprintf(n1, sizeof n1, "blk.%u.fc1.weight", l);
    snprintf(n2, sizeof n2, "blk.%u.fc2.weight", l);
    const gguf_tensor *a = gguf_find_tensor(f, n1), *b = gguf_find_tensor(f, n2);
    if (!a != !b)
        return pi_error_set(err, "sidecar %s: tensor %s is present but %s is missing; a predictor needs both", path,
                            a ? n1 : n2, a ? n2 : n1);
    int has = a != NULL;
    if (l == 0)
        s->has_predictor = has;
    else if (has != s->has_predictor)
        return pi_error_set(err, "sidecar %s: layer %u %s a predictor (%s) but layer 0 %s; a predictor must cover "
                            "every layer", path, l, has ? "has" : "lacks", n1, has ? "does not" : "does");
    if (has && (bind_pred(f, a, &s->fc1[l], s->dim, 0, err) < 0 ||
                bind_pred(f, b, &s->fc2[l], s->fc1[l].rows, s->n_ff, err) < 0))
        return -1;
    return 0;
}

pi_sidecar *sidecar_open(const char *path, const pi_model *m, pi_error *err)
{
    gguf_file *f = gguf_open(path, err);
    if (!f)
        return NULL;
    char arch[32] = "";
    uint32_t version = 0, n_layers = 0, n_ff = 0, dim = 0;
    if (gguf_find_kv(f, "general.architecture"))
        (void)gguf_get_cstr(f, "general.architecture", arch, sizeof arch, NULL);
    if (strcmp(arch, SIDECAR_ARCH) != 0) {
        pi_error_set(err, "sidecar %s: general.architecture is '%s', not '%s': not a pi sparse sidecar", path, arch,
                     SIDECAR_ARCH);
        gguf_close(&f);
        return NULL;
    }
    if (gguf_get_u32(f, "pi.sparse.version", &version, err) < 0 || version != SIDECAR_VERSION) {
        pi_error_set(err, "sidecar %s: pi.sparse.version is %u (or missing); this pi reads version %u: "
                     "re-run pictl model profile", path, version, SIDECAR_VERSION);
        gguf_close(&f);
        return NULL;
    }
    if (get_u32_req(f, "pi.sparse.n_layers", &n_layers, err) < 0 || get_u32_req(f, "pi.sparse.n_ff", &n_ff, err) < 0 ||
        get_u32_req(f, "pi.sparse.dim", &dim, err) < 0) {
        gguf_close(&f);
        return NULL;
    }
    pi_sidecar *s = alloc_sidecar(n_layers, n_ff, dim, path, err);
    if (!s) {
        gguf_close(&f);
        return NULL;
    }
    s->file = f;
    if (gguf_get_f32(f, "pi.sparse.threshold", &s->threshold, err) < 0 || !isfinite(s->threshold)) {
        pi_error_set(err, "sidecar %s: key pi.sparse.threshold is missing or not a finite number", path);
        goto fail;
    }
    if (get_str_opt(f, "pi.sparse.corpus", s->corpus, sizeof s->corpus, err) < 0 ||
        get_str_opt(f, "pi.sparse.date", s->date, sizeof s->date, err) < 0 ||
        get_str_opt(f, "pi.sparse.model_hash", s->model_hash, sizeof s->model_hash, err) < 0 ||
        get_str_opt(f, "pi.sparse.model_path", s->model_path, sizeof s->model_path, err) < 0)
        goto fail;
    if (gguf_find_kv(f, "pi.sparse.tokens") && gguf_get_u64(f, "pi.sparse.tokens", &s->tokens, err) < 0) {
        pi_error_set(err, "sidecar %s: key pi.sparse.tokens is not an unsigned integer", path);
        goto fail;
    }
    if (m) {
        char want[17];
        sidecar_model_hash(m->file, want);
        if (strcmp(want, s->model_hash) != 0) {
            pi_error_set(err, "sidecar %s was made for another model (hash %s, from %s); model %s has hash %s: "
                         "re-run pictl model profile for it", path, s->model_hash[0] ? s->model_hash : "none",
                         s->model_path[0] ? s->model_path : "an unnamed file", gguf_path(m->file), want);
            goto fail;
        }
        if (m->n_layers != n_layers || m->n_ff != n_ff || m->dim != dim) {
            pi_error_set(err, "sidecar %s: %u layers x %u neurons, dim %u, but model %s has %u x %u, dim %u", path,
                         n_layers, n_ff, dim, gguf_path(m->file), m->n_layers, m->n_ff, m->dim);
            goto fail;
        }
    }
    for (uint32_t l = 0; l < n_layers; l++)
        if (read_layer(s, l, err) < 0)
            goto fail;
    return s;
fail:
    sidecar_free(&s);
    return NULL;
}

pi_model *model_open_sparse(const char *path, pi_error *err)
{
    pi_model *m = model_open(path, err);
    if (!m || m->has_predictor)
        return m;
    char sp[4096];
    if (sidecar_path_for(path, sp, sizeof sp) < 0)
        return m;
    pi_error ignored;
    pi_sidecar *s = sidecar_open(sp, m, &ignored);
    if (!s || !s->has_predictor) {
        sidecar_free(&s);
        return m;
    }
    for (uint32_t l = 0; l < m->n_layers; l++) {
        m->layers[l].pred_fc1 = *sidecar_fc1(s, l);
        m->layers[l].pred_fc2 = *sidecar_fc2(s, l);
    }
    m->sparse_threshold = s->threshold;
    m->has_predictor = 1;
    m->pred_input = PI_PRED_INPUT_NORMED;   /* the trainer's pairs hold x_norm */
    m->sidecar = s;
    m->sidecar_free = sidecar_free;
    return m;
}
