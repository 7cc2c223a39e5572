/* Perplexity through the engine (perplexity.h). The text is tokenized once
 * (no BOS) and cut into chunks of ctx - 1 tokens, or one chunk per line with
 * --lines; each chunk runs as BOS + its tokens and every token of it is
 * scored: NLL = logsumexp(row) - row[token] in double, from the logits the
 * GPU worker returned for the position before it. */
#include "perplexity.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemonize.h"
#include "default_model.h"
#include "engine.h"
#include "req_limits.h"

typedef struct chunk {
    const int32_t *ids;      /* BOS + the chunk's tokens (into ppl.seq) */
    size_t off;              /* ids - seq: seq grows (moves) while chunks are cut */
    uint32_t n;
} chunk;

typedef struct ppl {
    chunk *chunks;
    size_t n_chunks, done, failed;
    uint32_t n_vocab;
    uint32_t score_from;     /* positions before it are run but not scored (--llamacpp) */
    double nll;              /* summed over scored tokens */
    uint64_t n_scored;
    FILE *dump;              /* --dump-logits */
    int dump_err;
    int tty;                 /* stderr is a terminal: progress redrawn in place */
    char msg[512];
} ppl;

static void on_score(void *ud, const void *tag, size_t tag_len, uint64_t id, uint32_t pos, const float *row)
{
    ppl *p = ud;
    (void)tag, (void)tag_len;
    if (id >= p->n_chunks || pos + 1 >= p->chunks[id].n || pos < p->score_from)
        return;
    double mx = row[0];
    for (uint32_t i = 1; i < p->n_vocab; i++)
        mx = row[i] > mx ? row[i] : mx;
    double sum = 0;
    for (uint32_t i = 0; i < p->n_vocab; i++)
        sum += exp((double)row[i] - mx);
    p->nll += mx + log(sum) - (double)row[p->chunks[id].ids[pos + 1]];
    p->n_scored++;
    if (p->dump) {
        uint32_t hdr[2] = {(uint32_t)id, pos};
        if (fwrite(hdr, sizeof hdr, 1, p->dump) != 1 || fwrite(row, sizeof *row, p->n_vocab, p->dump) != p->n_vocab)
            p->dump_err = 1;
    }
}

static int on_chunk(void *ud, const void *tag, size_t tag_len, uint64_t id, int32_t token, const char *text,
                    size_t text_len)
{
    (void)ud, (void)tag, (void)tag_len, (void)id, (void)token, (void)text, (void)text_len;
    return 0; /* the one token sampled after a chunk: not part of the score */
}

static void on_done(void *ud, const void *tag, size_t tag_len, uint64_t id, const sched_stats *st)
{
    ppl *p = ud;
    (void)tag, (void)tag_len, (void)id, (void)st;
    p->done++;
    /* A terminal gets one line redrawn; a log a line per tenth of the chunks. */
    size_t step = p->tty ? 16 : (p->n_chunks + 9) / 10;
    if (p->done % step == 0 || p->done == p->n_chunks)
        fprintf(stderr, "%sperplexity: %zu/%zu chunks, running perplexity %.4f%s", p->tty ? "\r" : "", p->done,
                p->n_chunks, p->n_scored ? exp(p->nll / (double)p->n_scored) : 0.0, p->tty ? "" : "\n");
}

static void on_fail(void *ud, const void *tag, size_t tag_len, uint64_t id, int code, const char *msg)
{
    ppl *p = ud;
    (void)tag, (void)tag_len;
    p->failed++;
    snprintf(p->msg, sizeof p->msg, "chunk %llu failed: %s (code %d)", (unsigned long long)id, msg, code);
}

typedef struct ppl_opts {
    const char *model, *file, *ffn, *gpu_backend, *dump;
    uint64_t max_tokens;     /* 0 = the whole file */
    uint32_t ctx;            /* 0 = the model's context (at most 512) */
    int lines, llamacpp, cpu_workers;
    double vram_budget_gib;
} ppl_opts;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: pictl perplexity [-m MODEL] --file F [--tokens N] [--ctx C] [--ffn MODE] [--lines | --llamacpp]\n"
            "                        [--gpu-backend B] [--cpu-workers N] [--vram-budget GIB]\n"
            "                        [--dump-logits OUT]\n"
            "Runs the text through pid's workers and prints its perplexity (last line 'perplexity: X').\n"
            "  -m, --model MODEL     GGUF model (default: %s)\n"
            "  -f, --file F          the text (- = standard input)\n"
            "  --tokens N            score at most the first N tokens of the text (default: all)\n"
            "  -c, --ctx C           chunk length in positions, BOS included (default: the model's\n"
            "                        context, at most 512); every chunk starts from an empty cache\n"
            "  --lines               one chunk per line instead (cut at C positions)\n"
            "  --llamacpp            llama.cpp's perplexity protocol, to compare figures with it: the text\n"
            "                        after a BOS cut into whole chunks of C tokens, each chunk's first\n"
            "                        token replaced by BOS, only its second half scored\n"
            "  --ffn MODE            auto, dense, exact or predicted (as pid run)\n"
            "  --gpu-backend B       auto, cuda or host\n"
            "  --cpu-workers N       CPU worker processes (default: one per NUMA node)\n"
            "  --vram-budget GIB     device memory for the GPU worker (default: automatic)\n"
            "  --dump-logits OUT     also write every scored position's logits: records of u32 chunk,\n"
            "                        u32 position, n_vocab float32 (little-endian), in completion order\n",
            default_model_path());
}

static int parse_u64(const char *flag, const char *v, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (!*v || *end || *v == '-' || errno || n < lo || n > hi) {
        fprintf(stderr, "pictl perplexity: %s '%s' is not a number in %llu..%llu\n", flag, v,
                (unsigned long long)lo, (unsigned long long)hi);
        return -1;
    }
    *out = n;
    return 0;
}

/* -1 to go on, else the exit code. */
static int parse(int argc, char **argv, ppl_opts *o)
{
    *o = (ppl_opts){.ffn = "auto", .gpu_backend = "auto", .cpu_workers = -1, .vram_budget_gib = -1.0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--lines") || !strcmp(a, "--llamacpp")) {
            if (!strcmp(a, "--lines"))
                o->lines = 1;
            else
                o->llamacpp = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "pictl perplexity: %s\n", a[0] == '-' ? "a flag needs a value" : "unexpected argument");
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        uint64_t n = 0;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            o->model = v;
        } else if (!strcmp(a, "--file") || !strcmp(a, "-f")) {
            o->file = v;
        } else if (!strcmp(a, "--ffn")) {
            o->ffn = v;
        } else if (!strcmp(a, "--gpu-backend")) {
            if (strcmp(v, "auto") && strcmp(v, "cuda") && strcmp(v, "host")) {
                fprintf(stderr, "pictl perplexity: --gpu-backend '%s' is not one of auto, cuda, host\n", v);
                return 2;
            }
            o->gpu_backend = v;
        } else if (!strcmp(a, "--dump-logits")) {
            o->dump = v;
        } else if (!strcmp(a, "--tokens")) {
            if (parse_u64(a, v, 1, UINT64_MAX, &o->max_tokens) < 0)
                return 2;
        } else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) {
            if (parse_u64(a, v, 2, 1u << 20, &n) < 0)
                return 2;
            o->ctx = (uint32_t)n;
        } else if (!strcmp(a, "--cpu-workers")) {
            if (parse_u64(a, v, 0, 256, &n) < 0)
                return 2;
            o->cpu_workers = (int)n;
        } else if (!strcmp(a, "--vram-budget")) {
            char *end = NULL;
            o->vram_budget_gib = strtod(v, &end);
            if (!*v || *end || !(o->vram_budget_gib >= 0)) {
                fprintf(stderr, "pictl perplexity: --vram-budget '%s' is not a size in GiB (e.g. 12.6)\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "pictl perplexity: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (o->lines && o->llamacpp) {
        fprintf(stderr, "pictl perplexity: --lines and --llamacpp cut the text differently; give one\n");
        return 2;
    }
    if (!o->file) {
        fprintf(stderr, "pictl perplexity: no text given (--file F)\n");
        usage(stderr);
        return 2;
    }
    if (!o->model)
        o->model = default_model_path();
    return -1;
}

static char *read_all(const char *path, size_t *len, pi_error *err)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        pi_error_set(err, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        char *nb = cap < ((size_t)1 << 31) ? realloc(buf, cap * 2) : NULL;
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    int bad = ferror(f);
    if (f != stdin)
        fclose(f);
    if (!buf || bad) {
        free(buf);
        pi_error_set(err, "%s: %s", path, bad ? "read error" : "out of memory (or larger than 2 GiB)");
        return NULL;
    }
    *len = n;
    return buf;
}

/* Cuts the text into chunks; seq receives BOS-led copies. */
static int make_chunks(const tokenizer *tok, const char *text, size_t len, const ppl_opts *o, uint32_t ctx,
                       int32_t **seq, chunk **chunks, size_t *n_chunks, pi_error *err)
{
    int32_t bos = tokenizer_bos(tok);
    if (bos < 0)
        return pi_error_set(err, "the model's tokenizer has no BOS token to start chunks from");
    /* The pieces of text that become chunks: every line, or the whole text. */
    size_t cap_seq = 0, n_seq = 0, cap_ch = 0;
    uint64_t budget = o->max_tokens ? o->max_tokens : UINT64_MAX;
    size_t at = 0;
    while (at < len && budget > 0) {
        size_t end = len;
        if (o->lines) {
            const char *nl = memchr(text + at, '\n', len - at);
            end = nl ? (size_t)(nl - text) : len;
        }
        int32_t *ids = NULL;
        size_t n = 0;
        if (end > at && tokenizer_encode(tok, text + at, end - at, 0, &ids, &n, err) < 0)
            return -1;
        at = end + 1;
        for (size_t i = 0; i < n && budget > 0;) {
            size_t take = n - i < ctx - 1 ? n - i : ctx - 1;
            if (take > budget)
                take = (size_t)budget;
            if (n_seq + take + 1 > cap_seq || *n_chunks == cap_ch) {
                size_t ns = (n_seq + take + 1) * 2, nc = cap_ch ? cap_ch * 2 : 64;
                int32_t *s2 = realloc(*seq, ns * sizeof *s2);
                if (s2)
                    *seq = s2;
                chunk *c2 = s2 ? realloc(*chunks, nc * sizeof *c2) : NULL;
                if (!c2) {
                    free(ids);
                    return pi_error_set(err, "out of memory");
                }
                *chunks = c2;
                cap_seq = ns;
                cap_ch = nc;
            }
            (*seq)[n_seq] = bos;
            memcpy(*seq + n_seq + 1, ids + i, take * sizeof *ids);
            (*chunks)[*n_chunks] = (chunk){.off = n_seq, .n = (uint32_t)take + 1};
            (*n_chunks)++;
            n_seq += take + 1;
            i += take;
            budget -= take;
            if (o->lines)
                break; /* a line longer than the chunk is cut */
        }
        free(ids);
    }
    for (size_t i = 0; i < *n_chunks; i++)
        (*chunks)[i].ids = *seq + (*chunks)[i].off;
    if (*n_chunks == 0)
        return pi_error_set(err, "the text has no tokens to score");
    return 0;
}

/* llama.cpp's protocol (its perplexity tool): BOS + the text's tokens, cut
 * into whole chunks of ctx tokens; each chunk's first token becomes BOS. */
static int make_llamacpp_chunks(const tokenizer *tok, const char *text, size_t len, uint32_t ctx, int32_t **seq,
                                chunk **chunks, size_t *n_chunks, pi_error *err)
{
    int32_t *ids = NULL;
    size_t n = 0;
    if (tokenizer_encode(tok, text, len, 1, &ids, &n, err) < 0)
        return -1;
    *n_chunks = n / ctx;
    if (*n_chunks < 2) {
        free(ids);
        return pi_error_set(err, "the text is %zu tokens; llama.cpp's protocol needs at least 2 chunks of %u", n, ctx);
    }
    *chunks = malloc(*n_chunks * sizeof **chunks);
    if (!*chunks) {
        free(ids);
        return pi_error_set(err, "out of memory");
    }
    for (size_t c = 0; c < *n_chunks; c++) {
        ids[c * ctx] = tokenizer_bos(tok);
        (*chunks)[c] = (chunk){.ids = ids + c * ctx, .n = ctx};
    }
    *seq = ids;
    return 0;
}

int perplexity_main(int argc, char **argv)
{
    ppl_opts o;
    int rc = parse(argc, argv, &o);
    if (rc >= 0)
        return rc;
    pi_error err = {{0}};
    char rundir[1024];
    ppl p = {0};
    int32_t *seq = NULL;
    char *text = NULL;
    engine *e = NULL;
    rc = 1;
    size_t len = 0;
    if (pid_rundir(rundir, sizeof rundir, &err) < 0 || !(text = read_all(o.file, &len, &err)))
        goto fail;
    /* The engine opens the model; its tokenizer cuts the chunks. KV slots:
     * as many chunks as run at once (one position each per step). */
    sched_sink sink = {.ud = &p, .chunk = on_chunk, .done = on_done, .fail = on_fail, .score = on_score};
    enum { SEQS = 4 };
    engine_opts eo = {.model_path = o.model, .gpu_backend = o.gpu_backend, .ffn = o.ffn,
                      .cpu_workers = o.cpu_workers, .vram_budget_gib = o.vram_budget_gib, .max_seqs = SEQS,
                      .max_batch = SEQS, .max_queue = REQ_LIMITS_MAX_QUEUE_MAX, .n_ctx = o.ctx ? o.ctx : 512, .n_ctx_bound = !o.ctx, .rundir = rundir, .warm_share = -1.0};
    e = engine_new(&eo, &sink, &err);
    if (!e)
        goto fail;
    uint32_t ctx = engine_max_tokens_limit(e);
    p.n_vocab = engine_n_vocab(e);
    if (o.llamacpp) {
        p.score_from = ctx / 2;
        if (make_llamacpp_chunks(engine_tokenizer(e), text, len, ctx, &seq, &p.chunks, &p.n_chunks, &err) < 0)
            goto fail;
    } else if (make_chunks(engine_tokenizer(e), text, len, &o, ctx, &seq, &p.chunks, &p.n_chunks, &err) < 0) {
        goto fail;
    }
    if (o.dump && !(p.dump = fopen(o.dump, "wb"))) {
        pi_error_set(&err, "cannot write %s: %s", o.dump, strerror(errno));
        goto fail;
    }
    p.tty = isatty(STDERR_FILENO);
    uint64_t n_tok = 0;
    for (size_t i = 0; i < p.n_chunks; i++)
        n_tok += p.chunks[i].n - 1;
    fprintf(stderr, "perplexity: %s, %llu tokens in %zu chunks of at most %u positions, ffn %s\n", o.model,
            (unsigned long long)n_tok, p.n_chunks, ctx, pi_ffn_mode_name(engine_ffn(e)));
    if (engine_start(e, 120.0, &err) < 0)
        goto fail;
    if (p.n_chunks > REQ_LIMITS_MAX_QUEUE_MAX) {
        pi_error_set(&err, "%zu chunks are more than can be queued (%u); score fewer --tokens or use a "
                     "larger --ctx", p.n_chunks, REQ_LIMITS_MAX_QUEUE_MAX);
        goto fail;
    }
    /* Every chunk is queued now; the scheduler runs SEQS at a time. */
    for (size_t i = 0; i < p.n_chunks; i++) {
        sched_request r = {.tag = "ppl", .tag_len = 3, .id = i, .tokens = p.chunks[i].ids,
                           .n_tokens = p.chunks[i].n, .max_tokens = 1, .score = 1,
                           .sampling = {.top_p = 1.0f, .repeat_penalty = 1.0f, .has_seed = 1}};
        if (engine_submit(e, &r, &err) != SCHED_OK)
            goto fail;
    }
    if (engine_run(e, 1, &err) < 0)
        goto fail;
    if (p.tty)
        fputc('\n', stderr);
    if (p.failed) {
        pi_error_set(&err, "%zu chunks failed; the last: %s", p.failed, p.msg);
        goto fail;
    }
    if (p.dump && (p.dump_err || fclose(p.dump) != 0)) {
        p.dump = NULL;
        pi_error_set(&err, "writing %s failed", o.dump);
        goto fail;
    }
    p.dump = NULL;
    printf("tokens: %llu\nnll: %.6f\nperplexity: %.4f\n", (unsigned long long)p.n_scored,
           p.n_scored ? p.nll / (double)p.n_scored : 0.0, p.n_scored ? exp(p.nll / (double)p.n_scored) : 0.0);
    rc = fflush(stdout) == 0 ? 0 : 1;
    goto out;
fail:
    fprintf(stderr, "pictl perplexity: %s\n", err.msg);
out:
    if (p.dump)
        fclose(p.dump);
    engine_free(&e);
    free(p.chunks);
    free(seq);
    free(text);
    return rc;
}
