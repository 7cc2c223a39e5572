/* Activation profiling over the reference forward: an FFN observer counts
 * active neurons per layer and, for sampled tokens, appends (x_norm, active
 * bitmap) records to the pairs file. The corpus is streamed (through
 * `xz -dc` for .xz) and only as much is read as the token budget needs. */
#include "profile.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "forward.h"

extern char **environ;

#define CHUNK_BYTES (1u << 16)

int profile_is_active(pi_act act, float h, float max_abs_h)
{
    if (act == PI_ACT_SILU)
        return fabsf(h) > PROFILE_SILU_REL * max_abs_h;
    return h != 0.0f;
}

/* ---- corpus stream: a file, or xz -dc's stdout ---- */

typedef struct corpus {
    FILE *f;
    pid_t xz;       /* > 0 while the decompressor runs */
} corpus;

static int has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

static int corpus_open(corpus *c, const char *path, pi_error *err)
{
    c->f = NULL;
    c->xz = 0;
    if (!has_suffix(path, ".xz")) {
        if (!(c->f = fopen(path, "rb")))
            return pi_error_set(err, "corpus %s: %s", path, strerror(errno));
        return 0;
    }
    FILE *probe = fopen(path, "rb");   /* a clear error for a missing file before spawning */
    if (!probe)
        return pi_error_set(err, "corpus %s: %s", path, strerror(errno));
    fclose(probe);
    int fd[2];
    if (pipe2(fd, O_CLOEXEC) < 0)   /* no other child inherits it; dup2 gives xz a plain stdout */
        return pi_error_set(err, "corpus %s: pipe: %s", path, strerror(errno));
    posix_spawn_file_actions_t fa;
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc == 0) {
        rc = posix_spawn_file_actions_adddup2(&fa, fd[1], STDOUT_FILENO);
        if (rc == 0)
            rc = posix_spawn_file_actions_addclose(&fa, fd[0]);
        if (rc == 0) {
            char *argv[] = {"xz", "-dc", "--", (char *)path, NULL};
            rc = posix_spawnp(&c->xz, "xz", &fa, NULL, argv, environ);
        }
        posix_spawn_file_actions_destroy(&fa);
    }
    close(fd[1]);
    if (rc != 0) {
        close(fd[0]);
        c->xz = 0;
        if (rc == ENOENT)
            return pi_error_set(err, "corpus %s: xz is not installed (not found on PATH); install xz-utils "
                                "or pass an uncompressed .txt corpus", path);
        return pi_error_set(err, "corpus %s: cannot run xz: %s", path, strerror(rc));
    }
    if (!(c->f = fdopen(fd[0], "rb"))) {
        close(fd[0]);
        kill(c->xz, SIGTERM);
        waitpid(c->xz, NULL, 0);
        c->xz = 0;
        return pi_error_set(err, "corpus %s: fdopen: %s", path, strerror(errno));
    }
    return 0;
}

/* Closes; with complete set (the whole stream was read) a failing xz is an error. */
static int corpus_close(corpus *c, const char *path, int complete, pi_error *err)
{
    int rc = 0;
    if (c->f)
        fclose(c->f);   /* an xz still writing now gets SIGPIPE */
    c->f = NULL;
    if (c->xz > 0) {
        int st = 0;
        if (waitpid(c->xz, &st, 0) < 0)
            rc = pi_error_set(err, "corpus %s: waiting for xz: %s", path, strerror(errno));
        else if (complete && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
            rc = pi_error_set(err, "corpus %s: xz -dc failed (%s %d): is it a valid .xz file?", path,
                              WIFEXITED(st) ? "exit status" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        c->xz = 0;
    }
    return rc;
}

/* Appends src[0..n) to the growing array *dst. */
static int append_ids(int32_t **dst, size_t *n, size_t *cap, const int32_t *src, size_t k)
{
    if (*n + k > *cap) {
        size_t nc = *cap ? *cap : 4096;
        while (nc < *n + k)
            nc *= 2;
        int32_t *p = realloc(*dst, nc * sizeof *p);
        if (!p)
            return -1;
        *dst = p;
        *cap = nc;
    }
    memcpy(*dst + *n, src, k * sizeof *src);
    *n += k;
    return 0;
}

/* Length of the chunk to tokenize out of buf[0..len): up to the last newline,
 * or (no newline, not at EOF) up to a UTF-8 character boundary. */
static size_t chunk_cut(const char *buf, size_t len, int eof)
{
    if (eof)
        return len;
    for (size_t i = len; i > 0; i--)
        if (buf[i - 1] == '\n')
            return i;
    size_t i = len;
    while (i > 0 && ((unsigned char)buf[i - 1] & 0xC0) == 0x80)
        i--;   /* back over continuation bytes ... */
    if (i > 0 && ((unsigned char)buf[i - 1] & 0x80))
        i--;   /* ... and the lead byte of the cut character */
    return i ? i : len;
}

int profile_tokenize_corpus(const char *path, const tokenizer *tok, uint64_t max_tokens, int32_t **ids,
                            size_t *n_ids, pi_error *err)
{
    *ids = NULL;
    *n_ids = 0;
    corpus c;
    if (corpus_open(&c, path, err) < 0)
        return -1;
    char *buf = malloc(CHUNK_BYTES);
    size_t have = 0, cap = 0;
    int eof = 0, rc = 0;
    if (!buf)
        rc = pi_error_set(err, "corpus %s: out of memory", path);
    while (rc == 0 && !eof && (max_tokens == 0 || *n_ids < max_tokens)) {
        size_t got = fread(buf + have, 1, CHUNK_BYTES - have, c.f);
        have += got;
        if (have < CHUNK_BYTES) {
            if (ferror(c.f)) {
                rc = pi_error_set(err, "corpus %s: read error", path);
                break;
            }
            eof = feof(c.f);
        }
        size_t cut = chunk_cut(buf, have, eof);
        if (cut == 0)
            continue;
        int32_t *t = NULL;
        size_t nt = 0;
        if (tokenizer_encode(tok, buf, cut, 0, &t, &nt, err) < 0) {
            rc = pi_error_wrap(err, "corpus %s", path);
            break;
        }
        if (append_ids(ids, n_ids, &cap, t, nt) < 0)
            rc = pi_error_set(err, "corpus %s: out of memory for %zu tokens", path, *n_ids + nt);
        free(t);
        memmove(buf, buf + cut, have - cut);
        have -= cut;
    }
    free(buf);
    if (corpus_close(&c, path, eof, rc ? NULL : err) < 0)
        rc = -1;
    if (rc == 0 && *n_ids == 0)
        rc = pi_error_set(err, "corpus %s: no text (0 tokens)", path);
    if (rc < 0) {
        free(*ids);
        *ids = NULL;
        *n_ids = 0;
        return -1;
    }
    if (max_tokens && *n_ids > max_tokens)
        *n_ids = (size_t)max_tokens;
    return 0;
}

/* ---- the run ---- */

typedef struct prof_ctx {
    pi_act act;
    uint32_t n_ff, dim;
    uint64_t *counts;       /* n_layers x n_ff */
    FILE *pairs;            /* NULL = no dump */
    uint8_t *bits;          /* (n_ff + 7) / 8 scratch */
    uint32_t pos;           /* position of the token being run */
    int sampled;            /* this token's pairs are written */
    int io_failed;
} prof_ctx;

static void write_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void observe(void *ud, uint32_t layer, const float *x_norm, const float *h, uint32_t n_ff)
{
    prof_ctx *c = ud;
    float mx = 0.0f;
    if (c->act == PI_ACT_SILU)
        for (uint32_t j = 0; j < n_ff; j++)
            mx = fmaxf(mx, fabsf(h[j]));
    uint64_t *cnt = c->counts + (size_t)layer * n_ff;
    int dump = c->pairs && c->sampled;
    if (dump)
        memset(c->bits, 0, (n_ff + 7) / 8);
    for (uint32_t j = 0; j < n_ff; j++)
        if (profile_is_active(c->act, h[j], mx)) {
            cnt[j]++;
            if (dump)
                c->bits[j >> 3] |= (uint8_t)(1u << (j & 7));
        }
    if (dump) {
        uint8_t head[8];
        write_u32(head, layer);
        write_u32(head + 4, c->pos);
        /* x_norm as little-endian f32: the host order on every machine pi builds for */
        if (fwrite(head, 1, sizeof head, c->pairs) != sizeof head ||
            fwrite(x_norm, sizeof *x_norm, c->dim, c->pairs) != c->dim ||
            fwrite(c->bits, 1, (n_ff + 7) / 8, c->pairs) != (n_ff + 7) / 8)
            c->io_failed = 1;
    }
}

/* The pairs header (32 bytes, docs/formats.md): magic, version, n_layers,
 * dim, n_ff, u64 sampled tokens. */
static int write_pairs_header(FILE *f, const pi_model *m, uint64_t n_tokens)
{
    uint8_t h[32];
    memcpy(h, PROFILE_PAIRS_MAGIC, 8);
    write_u32(h + 8, 1);
    write_u32(h + 12, m->n_layers);
    write_u32(h + 16, m->dim);
    write_u32(h + 20, m->n_ff);
    for (int i = 0; i < 8; i++)
        h[24 + i] = (uint8_t)(n_tokens >> (8 * i));
    return fseek(f, 0, SEEK_SET) == 0 && fwrite(h, 1, sizeof h, f) == sizeof h ? 0 : -1;
}

uint64_t profile_total_tokens(size_t n_ids, const profile_opts *o)
{
    uint32_t window = o->window ? o->window : PROFILE_DEFAULT_WINDOW;
    uint64_t per = window - (o->bos >= 0 ? 1u : 0u);
    if (per == 0)
        return 0;
    uint64_t windows = (n_ids + per - 1) / per;
    uint64_t total = n_ids + (o->bos >= 0 ? windows : 0);
    return o->max_tokens && o->max_tokens < total ? o->max_tokens : total;
}

/* Token t of total is sampled: n evenly spread picks (all when n >= total). */
static int is_sampled(uint64_t t, uint64_t n, uint64_t total)
{
    if (n >= total)
        return 1;
    return (t + 1) * n / total > t * n / total;
}

int profile_run(const pi_model *m, const int32_t *ids, size_t n_ids, const profile_opts *o, pi_sidecar *sc,
                pi_error *err)
{
    uint32_t window = o->window ? o->window : PROFILE_DEFAULT_WINDOW;
    const char *path = gguf_path(m->file);
    if (sc->n_layers != m->n_layers || sc->n_ff != m->n_ff)
        return pi_error_set(err, "profile %s: the sidecar has %u layers x %u neurons, the model %u x %u", path,
                            sc->n_layers, sc->n_ff, m->n_layers, m->n_ff);
    if (window > m->n_ctx || window < (o->bos >= 0 ? 2u : 1u))
        return pi_error_set(err, "profile %s: window of %u tokens: use 2..%u (the model's context length)", path,
                            window, m->n_ctx);
    uint64_t total = profile_total_tokens(n_ids, o);
    if (total == 0)
        return pi_error_set(err, "profile %s: no tokens to run", path);

    prof_ctx c = {.act = m->act, .n_ff = m->n_ff, .dim = m->dim};
    size_t n_counts;
    int rc = 0;
    forward_state *fs = NULL;
    if (pi_mul_size(m->n_layers, m->n_ff, &n_counts) < 0 || !(c.counts = calloc(n_counts, sizeof *c.counts)) ||
        !(c.bits = calloc((m->n_ff + 7) / 8, 1))) {
        rc = pi_error_set(err, "profile %s: out of memory for the counters", path);
        goto done;
    }
    if (!(fs = forward_new(m, window, err))) {
        rc = pi_error_wrap(err, "profile %s", path);
        goto done;
    }
    uint64_t n_pairs = 0;
    if (o->pairs_path && o->pairs_per_layer) {
        n_pairs = o->pairs_per_layer < total ? o->pairs_per_layer : total;
        if (!(c.pairs = fopen(o->pairs_path, "wb")) || write_pairs_header(c.pairs, m, n_pairs) < 0) {
            rc = pi_error_set(err, "profile: pairs file %s: %s", o->pairs_path, strerror(errno));
            goto done;
        }
    }
    forward_set_ffn_observer(fs, observe, &c);

    uint64_t done_tokens = 0;
    size_t i = 0;
    while (done_tokens < total) {
        for (uint32_t pos = 0; pos < window && done_tokens < total; pos++) {
            int32_t t;
            if (pos == 0 && o->bos >= 0)
                t = o->bos;
            else if (i < n_ids)
                t = ids[i++];
            else
                break;
            c.pos = pos;
            c.sampled = is_sampled(done_tokens, n_pairs, total);
            if (!forward_token(fs, t, pos)) {
                rc = pi_error_set(err, "profile %s: token %d at position %u is out of range (vocabulary %u)", path,
                                  t, pos, m->n_vocab);
                goto done;
            }
            if (c.io_failed) {
                rc = pi_error_set(err, "profile: writing pairs file %s failed (disk full?)", o->pairs_path);
                goto done;
            }
            done_tokens++;
            if (o->progress)
                o->progress(o->progress_ud, done_tokens, total);
        }
        if (i >= n_ids)
            break;   /* the corpus ran out (total counts it exactly; this guards the loop) */
    }
    for (size_t k = 0; k < n_counts; k++)
        sc->freq[k] = (float)((double)c.counts[k] / (double)done_tokens);
    sc->tokens = done_tokens;
done:
    if (c.pairs) {
        if (fclose(c.pairs) != 0 && rc == 0)
            rc = pi_error_set(err, "profile: closing pairs file %s: %s", o->pairs_path, strerror(errno));
        if (rc < 0)
            remove(o->pairs_path);
    }
    forward_free(&fs);
    free(c.counts);
    free(c.bits);
    return rc;
}
