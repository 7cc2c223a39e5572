/* Activation profiling over the reference forward: an FFN observer counts
 * active neurons per layer and, for sampled tokens, appends (x_norm, active
 * bitmap) records to the pairs file. The corpus is streamed (through
 * `xz -dc` for .xz) and only as much is read as the token budget needs. */
#include "profile.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "forward.h"
#include "pi_parallel.h"

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

/* One window's run: its own forward state, counters and pairs bytes, so
 * windows run on threads at once and merge in window order (the result is
 * the same bytes as one thread's). */
typedef struct prof_ctx {
    pi_act act;
    uint32_t n_ff, dim;
    uint64_t *counts;       /* n_layers x n_ff */
    int dump;               /* pairs are wanted */
    uint8_t *buf;           /* this window's pairs records */
    size_t len, cap;
    uint8_t *bits;          /* (n_ff + 7) / 8 scratch */
    uint32_t pos;           /* position of the token being run */
    int sampled;            /* this token's pairs are written */
    int oom;
} prof_ctx;

static void write_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put(prof_ctx *c, const void *src, size_t n)
{
    if (c->oom)
        return;
    if (c->len + n > c->cap) {
        size_t cap = c->cap ? c->cap : 1 << 16;
        while (cap < c->len + n)
            cap *= 2;
        uint8_t *b = realloc(c->buf, cap);
        if (!b) {
            c->oom = 1;
            return;
        }
        c->buf = b;
        c->cap = cap;
    }
    memcpy(c->buf + c->len, src, n);
    c->len += n;
}

static void observe(void *ud, uint32_t layer, const float *x_norm, const float *h, uint32_t n_ff)
{
    prof_ctx *c = ud;
    float mx = 0.0f;
    if (c->act == PI_ACT_SILU)
        for (uint32_t j = 0; j < n_ff; j++)
            mx = fmaxf(mx, fabsf(h[j]));
    uint64_t *cnt = c->counts + (size_t)layer * n_ff;
    int dump = c->dump && c->sampled;
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
        put(c, head, sizeof head);
        put(c, x_norm, (size_t)c->dim * sizeof *x_norm);
        put(c, c->bits, (n_ff + 7) / 8);
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

/* A window: n tokens (BOS first when the options say so) starting at the
 * run's token index first. */
typedef struct prof_job {
    const pi_model *m;
    forward_state *fs;
    prof_ctx c;
    int32_t bos;
    const int32_t *ids;     /* the window's corpus tokens */
    uint32_t n;             /* forward passes in the window */
    uint64_t first, n_pairs, total;
    int bad_pos;            /* >= 0: that position's token is out of range */
    pthread_t thread;
} prof_job;

static void *run_window(void *arg)
{
    prof_job *j = arg;
    j->bad_pos = -1;
    j->c.len = 0;
    uint32_t k = 0;
    for (uint32_t pos = 0; pos < j->n; pos++) {
        int32_t t = pos == 0 && j->bos >= 0 ? j->bos : j->ids[k++];
        j->c.pos = pos;
        j->c.sampled = is_sampled(j->first + pos, j->n_pairs, j->total);
        if (!forward_token(j->fs, t, pos)) {
            j->bad_pos = (int)pos;
            break;
        }
    }
    return NULL;
}

static uint32_t profile_threads(const profile_opts *o)
{
    uint32_t n = o->threads ? o->threads : pi_cpus_usable();
    return n < 1 ? 1u : n > 64 ? 64u : n;
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

    uint32_t n_threads = profile_threads(o);
    uint64_t n_windows = (total + window - 1) / window;
    if (n_threads > n_windows)
        n_threads = (uint32_t)n_windows;
    size_t n_counts;
    int rc = 0;
    FILE *pairs = NULL;
    uint64_t *counts = NULL;
    prof_job *jobs = calloc(n_threads, sizeof *jobs);
    if (!jobs || pi_mul_size(m->n_layers, m->n_ff, &n_counts) < 0 || !(counts = calloc(n_counts, sizeof *counts))) {
        rc = pi_error_set(err, "profile %s: out of memory for the counters", path);
        goto done;
    }
    uint64_t n_pairs = 0;
    if (o->pairs_path && o->pairs_per_layer) {
        n_pairs = o->pairs_per_layer < total ? o->pairs_per_layer : total;
        if (!(pairs = fopen(o->pairs_path, "wb")) || write_pairs_header(pairs, m, n_pairs) < 0) {
            rc = pi_error_set(err, "profile: pairs file %s: %s", o->pairs_path, strerror(errno));
            goto done;
        }
    }
    for (uint32_t t = 0; t < n_threads; t++) {
        prof_job *j = &jobs[t];
        j->c = (prof_ctx){.act = m->act, .n_ff = m->n_ff, .dim = m->dim, .dump = pairs != NULL};
        if (!(j->c.counts = calloc(n_counts, sizeof *j->c.counts)) || !(j->c.bits = calloc((m->n_ff + 7) / 8, 1))) {
            rc = pi_error_set(err, "profile %s: out of memory for the counters", path);
            goto done;
        }
        if (!(j->fs = forward_new(m, window, err))) {
            rc = pi_error_wrap(err, "profile %s", path);
            goto done;
        }
        forward_set_ffn_observer(j->fs, observe, &j->c);
        *j = (prof_job){.m = m, .fs = j->fs, .c = j->c, .bos = o->bos, .n_pairs = n_pairs, .total = total};
    }

    /* Batches of n_threads windows: run at once, merged in window order. */
    uint64_t done_tokens = 0;
    size_t next_id = 0;
    while (done_tokens < total && rc == 0) {
        uint32_t started = 0;
        uint64_t first = done_tokens;
        for (uint32_t t = 0; t < n_threads && first < total; t++) {
            prof_job *j = &jobs[t];
            uint64_t n = total - first < window ? total - first : window;
            size_t avail = n_ids - next_id;
            if (avail == 0)
                break;   /* a window starts only while the corpus lasts */
            uint64_t corpus_n = o->bos >= 0 ? n - 1 : n;   /* 0: the budget ends after a BOS */
            if (corpus_n > avail)
                corpus_n = avail;
            j->n = (uint32_t)(corpus_n + (o->bos >= 0 ? 1 : 0));
            j->ids = ids + next_id;
            j->first = first;
            next_id += corpus_n;
            first += j->n;
            int e = pthread_create(&j->thread, NULL, run_window, j);
            if (e != 0) {
                rc = pi_error_set(err, "profile: starting a thread: %s", strerror(e));
                break;
            }
            started++;
        }
        for (uint32_t t = 0; t < started; t++)
            pthread_join(jobs[t].thread, NULL);
        for (uint32_t t = 0; t < started && rc == 0; t++) {
            prof_job *j = &jobs[t];
            if (j->bad_pos >= 0) {
                int32_t bad = j->bad_pos == 0 && o->bos >= 0 ? o->bos : j->ids[j->bad_pos - (o->bos >= 0)];
                rc = pi_error_set(err, "profile %s: token %d at position %d is out of range (vocabulary %u)", path,
                                  bad, j->bad_pos, m->n_vocab);
            } else if (j->c.oom) {
                rc = pi_error_set(err, "profile %s: out of memory for a window's pairs", path);
            } else if (pairs && j->c.len && fwrite(j->c.buf, 1, j->c.len, pairs) != j->c.len) {
                rc = pi_error_set(err, "profile: writing pairs file %s failed (disk full?)", o->pairs_path);
            } else {
                done_tokens += j->n;
                if (o->progress)
                    o->progress(o->progress_ud, done_tokens, total);
            }
        }
        if (started == 0)
            break;   /* the corpus ran out (total counts it exactly; this guards the loop) */
    }
    if (rc == 0) {
        for (uint32_t t = 0; t < n_threads; t++)
            for (size_t k = 0; k < n_counts; k++)
                counts[k] += jobs[t].c.counts[k];
        for (size_t k = 0; k < n_counts; k++)
            sc->freq[k] = (float)((double)counts[k] / (double)done_tokens);
        sc->tokens = done_tokens;
    }
done:
    if (pairs) {
        if (fclose(pairs) != 0 && rc == 0)
            rc = pi_error_set(err, "profile: closing pairs file %s: %s", o->pairs_path, strerror(errno));
        if (rc < 0)
            remove(o->pairs_path);
    }
    for (uint32_t t = 0; jobs && t < n_threads; t++) {
        forward_free(&jobs[t].fs);
        free(jobs[t].c.counts);
        free(jobs[t].c.bits);
        free(jobs[t].c.buf);
    }
    free(jobs);
    free(counts);
    return rc;
}
