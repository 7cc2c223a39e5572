/* pictl model plan -m MODEL --vram-budget GIB [--freq SIDECAR] [--max-seqs S] [--n-ctx C]
 *                  [--gpu-backend host|cuda] [--max-batch B] [--solo-batch P] [--no-cache]
 * Solves the placement (sparse/placement.h) for a VRAM budget, with the fixed
 * part the chosen backend needs as pid counts it (plan_placement_params: the
 * CUDA backend's fp16 KV cache, its scratch and context), and prints per
 * layer the hot count, the expected share of activations served by the GPU
 * and the bytes on each side, then totals. Frequencies come from the sparse
 * sidecar (--freq, else MODEL.pi-sparse.gguf when it exists), else every
 * neuron counts as equally likely (said in the output). The plan is read
 * from / written to the cache next to the model (docs/formats.md). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "cuda_needs.h"
#include "model.h"
#include "placement.h"
#include "plan.h"
#include "sidecar.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: pictl model plan -m MODEL.gguf --vram-budget GIB [--freq SIDECAR] [--max-seqs S] [--n-ctx C]\n"
            "                        [--gpu-backend host|cuda] [--max-batch B] [--solo-batch P] [--no-cache]\n"
            "  Chooses the hot FFN neurons of every layer that maximise the expected share of\n"
            "  activations served by the GPU within the budget (weights outside the FFN, predictors\n"
            "  and the KV cache first), and prints per layer the hot count, GPU share and bytes.\n"
            "  -m, --model MODEL  the GGUF model\n"
            "  --vram-budget GIB  device memory to fill, in GiB (e.g. 12.6)\n"
            "  --freq SIDECAR   activation frequencies (default MODEL.pi-sparse.gguf when present,\n"
            "                   else uniform: every neuron equally likely)\n"
            "  --max-seqs S     KV cache slots (default 8, as pid start)\n"
            "  --n-ctx C        positions per slot (default: the model's context)\n"
            "  --gpu-backend B  the backend to plan for, as pid run/start --gpu-backend (default host:\n"
            "                   fp32 KV cache; cuda: fp16 KV cache, and its predictors, scratch and\n"
            "                   CUDA context inside the budget, as pid plans it)\n"
            "  --max-batch B    entries per step the CUDA scratch is sized for (default 32, as pid start)\n"
            "  --solo-batch P   entries of a solo step the CUDA scratch is sized for too (default 512,\n"
            "                   as pid start; 0: no solo steps)\n"
            "  --no-cache       neither read nor write MODEL.pi-plan-<MiB>.gguf\n");
}

static void fmt_bytes(char *buf, size_t cap, uint64_t b)
{
    if (b >= ((uint64_t)1 << 30))
        snprintf(buf, cap, "%.2f GiB", (double)b / (double)((uint64_t)1 << 30));
    else if (b >= ((uint64_t)1 << 20))
        snprintf(buf, cap, "%.2f MiB", (double)b / (double)((uint64_t)1 << 20));
    else
        snprintf(buf, cap, "%.1f KiB", (double)b / 1024.0);
}

static int parse_u32(const char *v, uint32_t min, uint32_t *out)
{
    char *end = NULL;
    unsigned long long n = strtoull(v, &end, 10);
    if (!*v || *end || v[0] == '-' || n < min || n > UINT32_MAX)
        return -1;
    *out = (uint32_t)n;
    return 0;
}

static void print_plan(const placement *p, const pi_model *m, const placement_params *pp)
{
    char b1[32], b2[32], b3[32], b4[32], b5[32];
    uint64_t kv = plan_kv_bytes_elem(m, pp->max_seqs, pp->n_ctx ? pp->n_ctx : m->n_ctx,
                                     pp->kv_elem_bytes ? pp->kv_elem_bytes : (uint32_t)sizeof(float));
    fmt_bytes(b1, sizeof b1, p->budget_bytes);
    fmt_bytes(b2, sizeof b2, p->fixed_bytes);
    fmt_bytes(b3, sizeof b3, plan_weight_bytes(m));
    fmt_bytes(b4, sizeof b4, kv);
    fmt_bytes(b5, sizeof b5, pp->predictor_bytes);
    printf("budget  %s (%" PRIu64 " bytes); fixed GPU part %s = weights %s + KV cache %s (%u seqs x %u ctx, "
           "%s) + predictors %s", b1, p->budget_bytes, b2, b3, b4, pp->max_seqs, pp->n_ctx ? pp->n_ctx : m->n_ctx,
           pp->kv_elem_bytes == 2 ? "fp16" : "fp32", b5);
    if (pp->scratch_bytes) {
        fmt_bytes(b1, sizeof b1, pp->scratch_bytes);
        printf(" + backend scratch and context %s", b1);
    }
    printf("\n");
    printf("%5s %8s %8s %7s %10s %12s %12s\n", "layer", "hot", "of", "hot%", "GPU share", "GPU bytes", "CPU bytes");
    uint64_t n_hot = 0;
    for (uint32_t l = 0; l < p->n_layers; l++) {
        const placement_layer *y = &p->layers[l];
        fmt_bytes(b1, sizeof b1, y->gpu_bytes);
        fmt_bytes(b2, sizeof b2, y->cpu_bytes);
        printf("%5u %8u %8u %6.1f%% %9.2f%% %12s %12s\n", l, y->n_hot, p->n_ff, 100.0 * y->n_hot / p->n_ff,
               100.0 * placement_layer_share(p, l), b1, b2);
        n_hot += y->n_hot;
    }
    uint64_t n_all = (uint64_t)p->n_layers * p->n_ff;
    fmt_bytes(b1, sizeof b1, p->hot_bytes);
    fmt_bytes(b2, sizeof b2, p->cold_bytes);
    printf("%5s %8" PRIu64 " %8" PRIu64 " %6.1f%% %9.2f%% %12s %12s\n", "total", n_hot, n_all,
           100.0 * (double)n_hot / (double)n_all, 100.0 * placement_share(p), b1, b2);
    fmt_bytes(b1, sizeof b1, p->gpu_bytes);
    fmt_bytes(b2, sizeof b2, p->budget_bytes - p->gpu_bytes);
    fmt_bytes(b3, sizeof b3, p->cold_bytes);
    printf("GPU     %s = fixed + hot FFN, %s of the budget unused; CPU workers hold %s of FFN\n", b1, b2, b3);
    if (p->freq_all > 0 && p->upper_bound >= 0)
        printf("GPU share of activations %.2f%%; no placement in this budget can exceed %.2f%% "
               "(gap to the optimum <= %.4f%%)\n", 100.0 * placement_share(p), 100.0 * p->upper_bound / p->freq_all,
               p->upper_bound > 0 ? 100.0 * (p->upper_bound - p->freq_hot) / p->upper_bound : 0.0);
}

int cmd_model_plan(int argc, char **argv)
{
    const char *model_path = NULL, *freq_path = NULL, *budget_s = NULL, *backend = "host";
    placement_params pp = {.max_seqs = 8};
    uint32_t max_batch = 32, solo_batch = 512;  /* pid start's defaults */
    int use_cache = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--no-cache")) {
            use_cache = 0;
            continue;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "pictl model plan: %s needs a value (see --help)\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "--freq")) freq_path = v;
        else if (!strcmp(a, "--vram-budget")) budget_s = v;
        else if (!strcmp(a, "--gpu-backend")) {
            if (strcmp(v, "host") && strcmp(v, "cuda")) {
                fprintf(stderr, "pictl model plan: --gpu-backend '%s': expected host or cuda\n", v);
                return 2;
            }
            backend = v;
        } else if (!strcmp(a, "--max-batch")) {
            if (parse_u32(v, 1, &max_batch) < 0 || max_batch > CUDA_NEEDS_MAX_BATCH) {
                fprintf(stderr, "pictl model plan: --max-batch '%s' is not a number from 1 to %d\n", v,
                        CUDA_NEEDS_MAX_BATCH);
                return 2;
            }
        }
        else if (!strcmp(a, "--solo-batch")) {
            if (parse_u32(v, 0, &solo_batch) < 0 || solo_batch > 65536) {
                fprintf(stderr, "pictl model plan: --solo-batch '%s' is not a number from 0 to 65536\n", v);
                return 2;
            }
        }
        else if (!strcmp(a, "--max-seqs")) {
            if (parse_u32(v, 1, &pp.max_seqs) < 0) {
                fprintf(stderr, "pictl model plan: --max-seqs '%s' is not a number >= 1\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--n-ctx")) {
            if (parse_u32(v, 1, &pp.n_ctx) < 0) {
                fprintf(stderr, "pictl model plan: --n-ctx '%s' is not a number >= 1\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "pictl model plan: unknown option %s (see --help)\n", a);
            return 2;
        }
    }
    if (!model_path || !budget_s) {
        fprintf(stderr, "pictl model plan: -m MODEL and --vram-budget GIB are required (see --help)\n");
        return 2;
    }
    char *end = NULL;
    double gib = strtod(budget_s, &end);
    if (!*budget_s || *end || !(gib > 0) || gib > 1e9) {
        fprintf(stderr, "pictl model plan: --vram-budget '%s' is not a size in GiB (e.g. 12.6)\n", budget_s);
        return 2;
    }
    pp.budget_bytes = (uint64_t)(gib * (double)(1ull << 30)); /* as pid converts it */

    pi_error err = {{0}};
    pi_model *m = model_open(model_path, &err);
    if (!m) {
        fprintf(stderr, "pictl model plan: %s\n", err.msg);
        return 1;
    }
    if (pp.n_ctx > m->n_ctx)
        pp.n_ctx = m->n_ctx; /* pid caps it the same way */
    int rc = 1;
    pi_sidecar *sc = NULL;
    const float **freq = NULL;
    placement *p = NULL;
    char side_default[1024] = "", cache[1100] = "";
    if (!freq_path && sidecar_path_for(model_path, side_default, sizeof side_default) == 0 &&
        access(side_default, R_OK) == 0)
        freq_path = side_default;
    if (freq_path) {
        sc = sidecar_open(freq_path, m, &err);
        if (!sc) {
            fprintf(stderr, "pictl model plan: %s\n", err.msg);
            goto out;
        }
        freq = calloc(m->n_layers ? m->n_layers : 1, sizeof *freq);
        if (!freq) {
            fprintf(stderr, "pictl model plan: out of memory\n");
            goto out;
        }
        for (uint32_t l = 0; l < m->n_layers; l++)
            freq[l] = sidecar_freq(sc, l);
    }
    /* The fixed part as pid plans it for this backend (engine.c's plan_params). */
    int cuda = !strcmp(backend, "cuda");
    plan_params qp = {.max_seqs = pp.max_seqs, .n_ctx = pp.n_ctx, .backend = cuda ? cuda_needs() : NULL,
                      .max_batch = cuda ? max_batch : 0, .solo_batch = cuda ? solo_batch : 0};
    uint64_t budget = pp.budget_bytes;
    pp = plan_placement_params(m, &qp, pp.max_seqs, pp.n_ctx, sc);
    pp.budget_bytes = budget;
    uint64_t model_hash = placement_model_hash(m);
    printf("model   %s: %u layers x %u FFN neurons, hash %016" PRIx64 "\n", model_path, m->n_layers, m->n_ff,
           model_hash);
    printf("backend %s\n", cuda ? "cuda: fp16 KV cache; its predictors, scratch and CUDA context inside the budget"
                                 : "host: fp32 KV cache (--gpu-backend cuda plans as pid does for a GPU)");
    if (sc)
        printf("profile %s: %" PRIu64 " tokens of %s (%s)\n", freq_path, sc->tokens, sc->corpus, sc->date);
    else
        printf("profile none: no sparse sidecar (%s absent), so every neuron counts as equally likely and the\n"
               "        GPU share below is just the hot fraction; run `pictl model profile` for a real plan\n",
               side_default);

    placement_key key = {model_hash, pp.budget_bytes, placement_fixed_bytes(m, &pp),
                         placement_freq_hash(m->n_layers, m->n_ff, freq)};
    const char *cache_note = "not used (--no-cache)";
    if (use_cache) {
        if (placement_cache_path(model_path, pp.budget_bytes, cache, sizeof cache, &err) < 0) {
            fprintf(stderr, "pictl model plan: %s\n", err.msg);
            goto out;
        }
        if (access(cache, F_OK) == 0) {
            p = placement_load(cache, &key, &err);
            if (p)
                cache_note = "read";
            else
                printf("note    ignoring the plan cache: %s\n", err.msg);
        }
    }
    if (!p) {
        p = placement_for_model(m, &pp, freq, &err);
        if (!p) {
            fprintf(stderr, "pictl model plan: %s\n", err.msg);
            goto out;
        }
        if (use_cache) {
            if (placement_save(p, cache, &err) == 0)
                cache_note = "written";
            else
                printf("note    plan cache not written: %s\n", err.msg);
        }
    }
    print_plan(p, m, &pp);
    if (use_cache)
        printf("cache   %s: %s\n", cache, cache_note);
    rc = 0;
out:
    placement_free(&p);
    free(freq);
    sidecar_free(&sc);
    model_close(&m);
    return rc;
}
