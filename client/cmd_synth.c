/* pictl model synth: writes a synthetic LLaMA-shaped ReLU model with a
 * chosen activation sparsity (sparse/synth.h, docs/formats.md). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "model.h"
#include "sidecar.h"
#include "synth.h"

static const char usage[] =
    "usage: pictl model synth --shape tiny|7b|13b|40b|70b --type f16|q8_0|q4_0|f32|bf16 -o FILE.gguf\n"
    "                         [--active 0.11] [--skew 1.0] [--seed 1] [--layers N] [--plain] [--threads N]\n"
    "                         [--pred-width R]\n"
    "                         [--sidecar | --no-sidecar]\n"
    "  Writes a LLaMA-shaped model with random weights whose FFN neurons fire with a\n"
    "  power-law skew, for benchmarks at real sizes.\n"
    "  --shape   the layer count and sizes of a known model (tiny: seconds)\n"
    "  --type    tensor type of the weight matrices\n"
    "  -o, --output FILE  the GGUF to write\n"
    "  --seed    random seed; the same seed gives the same bytes\n"
    "  --active  mean fraction of FFN neurons that fire per token\n"
    "  --skew    power-law exponent: neuron of rank r fires with probability ~ r^-skew\n"
    "  --layers  override the shape's layer count (quick benchmarks)\n"
    "  --plain   only llama.cpp's tensors and keys (no predictor, no ffn_down_t, no pi.* keys)\n"
    "  --pred-width R  the predictor's hidden width (default 17); the units past 17 have zero\n"
    "            weights and predict nothing different (32: a width --predictor-type q8_0 takes)\n"
    "  --threads generating threads (default: one per CPU); the bytes do not depend on it\n"
    "  --no-sidecar  do not write the sidecar below\n"
    "  --sidecar also write FILE.pi-sparse.gguf with every neuron's intended firing probability as\n"
    "            its activation frequency (corpus \"synthetic\"), so pid places hot neurons by it;\n"
    "            on by default unless --plain\n";

static int parse_type(const char *s, pi_type *t)
{
    static const pi_type types[] = {PI_TYPE_F32, PI_TYPE_F16, PI_TYPE_BF16, PI_TYPE_Q8_0, PI_TYPE_Q4_0};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(s, pi_type_name((int)types[i]))) {
            *t = types[i];
            return 0;
        }
    return -1;
}

static int parse_float(const char *s, float *out)
{
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end)
        return -1;
    *out = v;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        return -1;
    *out = v;
    return 0;
}

typedef struct progress {
    struct timespec start;
    int last_pct, step;     /* percent shown last; show every step percent */
    int shown;
} progress;

static double since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) * 1e-9;
}

static void show_progress(void *ud, uint64_t done, uint64_t total)
{
    progress *p = ud;
    int pct = total ? (int)(done * 100 / total) : 100;
    if (pct / p->step == p->last_pct / p->step && done != total)
        return;
    p->last_pct = pct;
    p->shown = 1;
    double s = since(&p->start);
    fprintf(stderr, "\rsynth: %6.2f / %.2f GB (%3d%%), %.0f MB/s ", (double)done / 1e9, (double)total / 1e9, pct,
            s > 0 ? (double)done / 1e6 / s : 0.0);
    if (done == total)
        fputc('\n', stderr);
    fflush(stderr);
}

/* The sparse sidecar of the model just written at path: the intended firing
 * probabilities as frequencies, provenance corpus "synthetic". */
static int write_sidecar(const char *path, const synth_options *o, char *side, size_t cap, pi_error *err)
{
    if (sidecar_path_for(path, side, cap) < 0)
        return pi_error_set(err, "the sidecar path of %s is too long", path);
    pi_model *m = model_open(path, err);
    if (!m)
        return -1;
    pi_sidecar *sc = sidecar_new(m, err);
    int rc = sc ? 0 : -1;
    if (sc) {
        snprintf(sc->corpus, sizeof sc->corpus, "synthetic");
        sc->tokens = 0;
        for (uint32_t l = 0; l < m->n_layers && rc == 0; l++)
            rc = synth_neuron_probs(o, l, sc->freq + (size_t)l * m->n_ff, err);
        if (rc == 0)
            rc = sidecar_write(sc, side, err);
    }
    sidecar_free(&sc);
    model_close(&m);
    return rc < 0 ? pi_error_wrap(err, "sidecar %s", side) : 0;
}

/* The library's message without its own "synth: " prefix. */
static const char *lib_msg(const pi_error *err)
{
    return strncmp(err->msg, "synth: ", 7) ? err->msg : err->msg + 7;
}

int cmd_model_synth(int argc, char **argv)
{
    synth_options o;
    synth_options_default(&o);
    const char *shape = NULL, *type = NULL, *out = NULL;
    uint64_t layers = 0, threads = 0, pred_width = 0;
    int sidecar = -1;   /* -1: on unless --plain */
    pi_error err = {{0}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            return 0;
        }
        if (!strcmp(a, "--plain")) {
            o.plain = 1;
            continue;
        }
        if (!strcmp(a, "--sidecar") || !strcmp(a, "--no-sidecar")) {
            sidecar = !strcmp(a, "--sidecar");
            continue;
        }
        if (!v) {
            fprintf(stderr, "pictl model synth: %s needs a value (see --help)\n", a);
            return 2;
        }
        i++;
        int bad = 0;
        if (!strcmp(a, "--shape")) shape = v;
        else if (!strcmp(a, "--type")) type = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) out = v;
        else if (!strcmp(a, "--active")) bad = parse_float(v, &o.active);
        else if (!strcmp(a, "--skew")) bad = parse_float(v, &o.skew);
        else if (!strcmp(a, "--seed")) bad = parse_u64(v, &o.seed);
        else if (!strcmp(a, "--layers")) bad = parse_u64(v, &layers) || layers == 0 || layers > 1024;
        else if (!strcmp(a, "--threads")) bad = parse_u64(v, &threads) || threads == 0 || threads > SYNTH_MAX_THREADS;
        else if (!strcmp(a, "--pred-width")) bad = parse_u64(v, &pred_width) || pred_width < 17 || pred_width > 4096;
        else {
            fprintf(stderr, "pictl model synth: unknown option %s (see --help)\n", a);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "pictl model synth: %s %s: not a valid value (see --help)\n", a, v);
            return 2;
        }
    }
    if (!shape || !type || !out) {
        fprintf(stderr, "pictl model synth: --shape, --type and -o are required (see --help)\n");
        return 2;
    }
    if (synth_shape_find(shape, &o.shape, &err) < 0) {
        fprintf(stderr, "pictl model synth: %s\n", lib_msg(&err));
        return 2;
    }
    if (parse_type(type, &o.type) < 0) {
        fprintf(stderr, "pictl model synth: --type %s: use f16, q8_0, q4_0, f32 or bf16\n", type);
        return 2;
    }
    if (layers)
        o.shape.n_layers = (uint32_t)layers;
    o.n_threads = (uint32_t)threads;
    o.pred_width = (uint32_t)pred_width;

    progress p = {.last_pct = -100, .step = isatty(2) ? 1 : 10};
    clock_gettime(CLOCK_MONOTONIC, &p.start);
    fprintf(stderr, "synth: %s, %u layers, dim %u, n_ff %u, %s, active %g, skew %g, seed %" PRIu64 "%s -> %s\n",
            o.shape.name, o.shape.n_layers, o.shape.dim, o.shape.n_ff, type, o.active, o.skew, o.seed,
            o.plain ? ", plain" : "", out);
    if (synth_write(out, &o, show_progress, &p, &err) < 0) {
        fprintf(stderr, "%spictl model synth: %s\n", p.shown && p.last_pct < 100 ? "\n" : "", lib_msg(&err));
        return 1;
    }
    printf("wrote %s: %s shape, %u layers, %s weights, %.2f GB of tensors in %.1f s%s\n", out, o.shape.name,
           o.shape.n_layers, type, (double)synth_data_bytes(&o) / 1e9, since(&p.start),
           o.plain ? " (plain: no predictor)" : "");
    if (sidecar < 0 ? !o.plain : sidecar) {
        char side[1100];
        if (write_sidecar(out, &o, side, sizeof side, &err) < 0) {
            fprintf(stderr, "pictl model synth: %s\n", err.msg);
            return 1;
        }
        printf("wrote %s: intended firing probabilities as activation frequencies (corpus synthetic)\n", side);
    }
    return 0;
}
