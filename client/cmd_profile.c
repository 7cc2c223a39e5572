/* pictl model profile -m MODEL --corpus FILE [--tokens N] [--ctx C] [-o SIDECAR]
 *                     [--dump-pairs FILE --pairs-per-layer N]
 * Runs the dense reference forward over the corpus, counts per layer how
 * often each FFN neuron is active and writes the sparse sidecar
 * (docs/formats.md). Progress on stderr: a live bar on a terminal, else a
 * line every 10%. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "model.h"
#include "pi_proc.h"
#include "profile.h"
#include "sidecar.h"
#include "tokenizer.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: pictl model profile -m MODEL.gguf --corpus FILE[.xz] [--tokens N] [--ctx C] [-o SIDECAR]\n"
            "                           [--dump-pairs FILE --pairs-per-layer N]\n"
            "  Runs the model densely over the corpus (windows of C tokens, BOS first, default 256)\n"
            "  and records how often each FFN neuron is active, per layer.\n"
            "  -m, --model MODEL    the GGUF model\n"
            "  --corpus FILE        the text to run (plain, or .xz)\n"
            "  --ctx C              window length in tokens, BOS included (default 256)\n"
            "  --tokens N           stop after N tokens (default: the whole corpus)\n"
            "  -o, --output SIDECAR output (default MODEL.pi-sparse.gguf next to the model)\n"
            "  --dump-pairs FILE    also write (x_norm, active set) pairs for the predictor trainer,\n"
            "  --pairs-per-layer N  for N tokens spread evenly over the run (0 = off)\n"
            "  A .xz corpus is read through `xz -dc`.\n");
}

typedef struct progress {
    int tty;
    double t0, last_ms;
    int last_decile;
} progress;

static void show_progress(void *ud, uint64_t done, uint64_t total)
{
    progress *p = ud;
    double now = pi_now_ms(), secs = (now - p->t0) / 1000.0;
    double rate = secs > 0 ? (double)done / secs : 0.0;
    double eta = rate > 0 ? (double)(total - done) / rate : 0.0;
    int finished = done == total;
    if (p->tty) {
        if (!finished && now - p->last_ms < 100.0)
            return;   /* at most 10 redraws a second */
        p->last_ms = now;
        int width = 30, fill = total ? (int)((double)width * (double)done / (double)total) : width;
        char bar[31];
        for (int i = 0; i < width; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[width] = '\0';
        fprintf(stderr, "\rprofile [%s] %" PRIu64 "/%" PRIu64 " tokens  %.1f tok/s  ETA %.0fs ", bar, done, total,
                rate, eta);
        if (finished)
            fputc('\n', stderr);
        fflush(stderr);
        return;
    }
    int decile = total ? (int)(10 * done / total) : 10;
    if (decile <= p->last_decile)
        return;
    p->last_decile = decile;
    fprintf(stderr, "profile: %3d%%  %" PRIu64 "/%" PRIu64 " tokens  %.1f tok/s  ETA %.0fs\n", decile * 10, done,
            total, rate, eta);
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!s || !*s || *s == '-')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end)
        return -1;
    *out = v;
    return 0;
}

int cmd_model_profile(int argc, char **argv)
{
    const char *model_path = NULL, *corpus = NULL, *out = NULL, *pairs = NULL;
    uint64_t tokens = 0, ctx = PROFILE_DEFAULT_WINDOW, per_layer = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "pictl model profile: %s needs a value (see --help)\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "--corpus")) corpus = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) out = v;
        else if (!strcmp(a, "--dump-pairs")) pairs = v;
        else if (!strcmp(a, "--tokens") || !strcmp(a, "--ctx") || !strcmp(a, "--pairs-per-layer")) {
            uint64_t *dst = !strcmp(a, "--tokens") ? &tokens : !strcmp(a, "--ctx") ? &ctx : &per_layer;
            if (parse_u64(v, dst) < 0 || (dst == &ctx && (ctx < 2 || ctx > UINT32_MAX)) ||
                (dst == &per_layer && per_layer > UINT32_MAX)) {
                fprintf(stderr, "pictl model profile: %s %s: expected a non-negative integer%s\n", a, v,
                        dst == &ctx ? " >= 2" : "");
                return 2;
            }
        } else {
            fprintf(stderr, "pictl model profile: unknown option %s (see --help)\n", a);
            return 2;
        }
    }
    if (!model_path || !corpus) {
        fprintf(stderr, "pictl model profile: -m MODEL and --corpus FILE are required (see --help)\n");
        return 2;
    }
    if (!pairs != !per_layer) {
        fprintf(stderr, "pictl model profile: --dump-pairs and --pairs-per-layer go together\n");
        return 2;
    }
    char out_buf[4096];
    if (!out) {
        if (sidecar_path_for(model_path, out_buf, sizeof out_buf) < 0) {
            fprintf(stderr, "pictl model profile: model path too long; pass -o\n");
            return 2;
        }
        out = out_buf;
    }

    pi_error err = {{0}};
    int rc = 1;
    pi_model *m = NULL;
    tokenizer *tok = NULL;
    pi_sidecar *sc = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (!(m = model_open(model_path, &err)) || !(tok = tokenizer_from_gguf(m->file, &err)) ||
        !(sc = sidecar_new(m, &err))) {
        fprintf(stderr, "pictl model profile: %s\n", err.msg);
        goto done;
    }
    if (ctx > m->n_ctx) {
        fprintf(stderr, "pictl model profile: --ctx %" PRIu64 " exceeds the model's context length %u\n", ctx,
                m->n_ctx);
        rc = 2;
        goto done;
    }
    if (profile_tokenize_corpus(corpus, tok, tokens, &ids, &n_ids, &err) < 0) {
        fprintf(stderr, "pictl model profile: %s\n", err.msg);
        goto done;
    }
    progress pr = {.tty = isatty(STDERR_FILENO), .t0 = pi_now_ms()};
    profile_opts o = {.window = (uint32_t)ctx, .bos = tokenizer_bos(tok), .max_tokens = tokens,
                      .pairs_path = pairs, .pairs_per_layer = (uint32_t)per_layer,
                      .progress = show_progress, .progress_ud = &pr};
    fprintf(stderr, "profile: %s, %s activation, %" PRIu64 " tokens from %s in windows of %" PRIu64 "\n", model_path,
            pi_act_name(m->act), profile_total_tokens(n_ids, &o), corpus, ctx);
    if (profile_run(m, ids, n_ids, &o, sc, &err) < 0) {
        fprintf(stderr, "pictl model profile: %s\n", err.msg);
        goto done;
    }
    snprintf(sc->corpus, sizeof sc->corpus, "%s", corpus);
    if (sidecar_write(sc, out, &err) < 0) {
        fprintf(stderr, "pictl model profile: %s\n", err.msg);
        goto done;
    }
    double secs = (pi_now_ms() - pr.t0) / 1000.0;
    printf("wrote %s: %u layers x %u neurons, %" PRIu64 " tokens in %.1f s (%.1f tok/s), model hash %s\n", out,
           sc->n_layers, sc->n_ff, sc->tokens, secs, secs > 0 ? (double)sc->tokens / secs : 0.0, sc->model_hash);
    printf("layer  mean active  neurons never active  neurons active > 50%%\n");
    for (uint32_t l = 0; l < sc->n_layers; l++) {
        const float *f = sidecar_freq(sc, l);
        double sum = 0;
        uint32_t never = 0, often = 0;
        for (uint32_t j = 0; j < sc->n_ff; j++) {
            sum += f[j];
            never += f[j] == 0.0f;
            often += f[j] > 0.5f;
        }
        printf("%5u  %10.4f  %20u  %21u\n", l, sum / sc->n_ff, never, often);
    }
    if (pairs)
        printf("pairs: %s\n", pairs);
    rc = 0;
done:
    free(ids);
    sidecar_free(&sc);
    tokenizer_free(&tok);
    model_close(&m);
    return rc;
}
