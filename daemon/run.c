/* `pid run`: generate once in the foreground. By default through the same
 * worker processes as `pid start` (run_workers.c); with --reference on the
 * in-process dense reference forward (the oracle): open the model, encode
 * BOS + prompt, feed it, then sample and stream each token's text to stdout
 * as soon as it is chosen. Statistics go to stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "default_model.h"
#include "engine.h"
#include "forward.h"
#include "gen_params.h"
#include "model.h"
#include "pred_quant.h"
#include "run_workers.h"
#include "sampler.h"
#include "tokenizer.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: pid run -m MODEL [-p PROMPT] [-n N] [--temp T] [--top-k K] [--top-p P]\n"
                 "               [--min-p M] [--repeat-penalty R] [--repeat-last-n N] [--seed S]\n"
                 "               [--cpu-workers N] [--gpu-backend auto|cuda|host] [--vram-budget GIB]\n"
                 "               [--ffn auto|dense|exact|predicted] [--measure-recall] [--timings]\n"
                 "               [-c|--ctx-size N] [--warm-share F] [--predictor-type file|q8_0]\n"
                 "               [--solo-batch N] [--solo-min N] [--reference]\n\n"
                 "  -m, --model MODEL     GGUF model file\n"
                 "  -p, --prompt PROMPT   text to continue (default: empty, BOS only)\n"
                 "  --cpu-workers N       CPU worker processes (default: one per NUMA node)\n"
                 "  --gpu-backend B       the GPU worker's backend (default auto: cuda when usable)\n"
                 "  --vram-budget GIB     device memory for the GPU worker (default: automatic)\n"
                 "  --warm-share F        CUDA with CPU workers: this share (0..1) of the cold neurons\n"
                 "                        is read by the GPU from pinned host memory over PCIe beside\n"
                 "                        the CPU workers (default: 0.4 with cuda and CPU workers)\n"
                 "  --predictor-type T    file: the predictors as the model stores them (default);\n"
                 "                        q8_0: held as q8_0 (about half of f16's bytes: more hot\n"
                 "                        neurons in a budget; a neuron within rounding of the\n"
                 "                        threshold may be predicted otherwise)\n"
                 "  -c, --ctx-size N      KV cache positions (default: what the run needs, at most the\n"
                 "                        model's trained context; more is allowed, with a warning)\n"
                 "  --solo-batch N        most entries of a solo step: a prompt step the GPU worker runs\n"
                 "                        alone, every FFN neuron on its side (default 512 on cuda,\n"
                 "                        none on host; 0 = none)\n"
                 "  --solo-min N          solo steps while the prompt has at least N tokens left to feed\n"
                 "                        (default 64)\n"
                 "  --ffn MODE            dense: every neuron; exact: skip neurons whose ReLU gate\n"
                 "                        is <= 0 (same result); predicted: only the neurons the\n"
                 "                        model's predictor names; auto: predicted if the model has\n"
                 "                        a predictor, else exact for ReLU models, else dense\n"
                 "  --measure-recall      with predicted: report the predictor's recall and precision\n"
                 "  --timings             after the text, a table on stderr of where each decode step's\n"
                 "                        time went: GPU phases, CPU workers, pid, sampling, vs wall\n"
                 "  --reference           compute in-process with the dense reference forward\n"
                 "%s",
            gen_params_usage());
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Everything one run holds, so one cleanup path frees it all. */
typedef struct run_ctx {
    pi_model *model;
    tokenizer *tok;
    forward_state *fwd;
    sampler *smp;
    int32_t *prompt;
    int32_t *history;
    float *logits;
    char *piece;        /* one decoded token's bytes */
    size_t piece_cap;
} run_ctx;

static void run_ctx_free(run_ctx *r)
{
    free(r->piece);
    free(r->logits);
    free(r->history);
    free(r->prompt);
    sampler_free(&r->smp);
    forward_free(&r->fwd);
    tokenizer_free(&r->tok);
    model_close(&r->model);
}

/* Writes the text of tok (after prev) to stdout now; 0 or -1 if stdout failed. */
static int emit(run_ctx *r, int32_t prev, int32_t tok)
{
    int n = tokenizer_decode_piece(r->tok, prev, tok, r->piece, r->piece_cap);
    if (n < 0)
        return 0; /* an id the tokenizer does not know: print nothing */
    if ((size_t)n > r->piece_cap)
        n = (int)r->piece_cap; /* cannot happen: piece_cap >= the longest piece */
    if (n > 0 && fwrite(r->piece, 1, (size_t)n, stdout) != (size_t)n)
        return -1;
    return fflush(stdout) == 0 ? 0 : -1;
}

/* --solo-batch (0..ENGINE_SOLO_BATCH_MAX) or --solo-min (>= 1): 0, or 2 after saying why. */
static int parse_solo(run_workers_opts *o, const char *a, const char *v)
{
    int batch = !strcmp(a, "--solo-batch");
    uint64_t lo = batch ? 0 : 1, hi = batch ? ENGINE_SOLO_BATCH_MAX : ENGINE_SOLO_MIN_MAX, n = 0;
    if (pi_parse_u64(v, hi, &n) < 0 || n < lo) {
        fprintf(stderr, "pid run: %s '%s' is not a number in %llu..%llu%s\n", a, v, (unsigned long long)lo,
                (unsigned long long)hi, batch ? " (0: no solo steps)" : "");
        return 2;
    }
    *(batch ? &o->solo_batch : &o->solo_min) = (uint32_t)n;
    return 0;
}

/* A flag with a value (--cpu-workers, --gpu-backend, --vram-budget, --ffn):
 * 0, or 2 after saying why. */
static int parse_value_flag(run_workers_opts *o, const char *a, const char *v)
{
    char *end = NULL;
    if (!strcmp(a, "--ffn")) {
        o->ffn = v;
    } else if (!strcmp(a, "--gpu-backend")) {
        if (strcmp(v, "auto") && strcmp(v, "cuda") && strcmp(v, "host")) {
            fprintf(stderr, "pid run: --gpu-backend '%s' is not one of auto, cuda, host\n", v);
            return 2;
        }
        o->gpu_backend = v;
    } else if (!strcmp(a, "--cpu-workers")) {
        long n = strtol(v, &end, 10);
        if (!*v || *end || n < 0 || n > 256) {
            fprintf(stderr, "pid run: --cpu-workers '%s' is not a number in 0..256\n", v);
            return 2;
        }
        o->cpu_workers = (int)n;
    } else if (!strcmp(a, "--ctx-size") || !strcmp(a, "-c")) {
        unsigned long n = strtoul(v, &end, 10);
        if (!*v || *end || *v == '-' || n == 0 || n > (1ul << 24)) {
            fprintf(stderr, "pid run: %s '%s' is not a number of positions in 1..%lu\n", a, v, 1ul << 24);
            return 2;
        }
        o->ctx_size = (uint32_t)n;
    } else if (!strcmp(a, "--solo-batch") || !strcmp(a, "--solo-min")) {
        return parse_solo(o, a, v);
    } else if (!strcmp(a, "--predictor-type")) {
        pi_error err = {{0}};
        int t;
        if (predictor_type_parse(v, &t, &err) < 0) {
            fprintf(stderr, "pid run: --predictor-type: %s\n", err.msg);
            return 2;
        }
        o->pred_q8 = t >= 0;
    } else if (!strcmp(a, "--warm-share")) {
        if (pi_parse_share(v, &o->warm_share) < 0) {
            fprintf(stderr, "pid run: --warm-share '%s' is not a share from 0 to 1\n", v);
            return 2;
        }
    } else {
        o->vram_budget_gib = strtod(v, &end);
        if (!*v || *end || !(o->vram_budget_gib >= 0)) {
            fprintf(stderr, "pid run: --vram-budget '%s' is not a size in GiB (e.g. 12.6)\n", v);
            return 2;
        }
    }
    return 0;
}

/* pid run's flags into o and *reference: -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, run_workers_opts *o, int *reference)
{
    *o = (run_workers_opts){.prompt = "", .gpu_backend = "auto", .ffn = "auto", .cpu_workers = -1,
                            .vram_budget_gib = -1.0, .warm_share = -1.0,
                            .solo_batch = ENGINE_SOLO_BATCH_AUTO, .solo_min = ENGINE_SOLO_MIN_DEFAULT};
    gen_params_default(&o->gen);
    pi_error err = {{0}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        int *flag = !strcmp(a, "--reference") ? reference
                    : !strcmp(a, "--measure-recall") ? &o->measure_recall
                    : !strcmp(a, "--timings") ? &o->timings : NULL;
        if (flag) {
            *flag = 1;
            continue;
        }
        int valued = !strcmp(a, "--cpu-workers") || !strcmp(a, "--gpu-backend") ||
                     !strcmp(a, "--vram-budget") || !strcmp(a, "--ffn") || !strcmp(a, "--ctx-size") ||
                     !strcmp(a, "-c") || !strcmp(a, "--warm-share") || !strcmp(a, "--predictor-type") ||
                     !strcmp(a, "--solo-batch") || !strcmp(a, "--solo-min");
        int is_model = !strcmp(a, "-m") || !strcmp(a, "--model");
        if (valued || is_model || !strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "pid run: %s needs a value (see pid run --help)\n", a);
                return 2;
            }
            const char *v = argv[++i];
            if (valued && parse_value_flag(o, a, v) != 0)
                return 2;
            if (!valued)
                *(is_model ? &o->model_path : &o->prompt) = v;
            continue;
        }
        int r = gen_params_parse_flag(&o->gen, argc, argv, &i, &err);
        if (r <= 0) {
            if (r < 0)
                fprintf(stderr, "pid run: %s\n", err.msg);
            else
                fprintf(stderr, "pid run: unknown argument '%s' (see pid run --help)\n", a);
            return 2;
        }
    }
    if (*reference && o->timings) {
        fprintf(stderr, "pid run: --timings measures the worker processes; leave out --reference\n");
        return 2;
    }
    return -1;
}

/* --reference: the in-process dense forward, token by token. */
static int run_reference(const char *model_path, const char *prompt, const gen_params *gp, uint32_t ctx_size)
{
    const gen_params g = *gp;
    pi_error err = {{0}};
    run_ctx r = {0};
    int rc = 1;
    r.model = model_open(model_path, &err);
    if (!r.model) {
        fprintf(stderr, "pid run: %s\n", err.msg);
        goto out;
    }
    r.tok = tokenizer_from_gguf(r.model->file, &err);
    if (!r.tok) {
        fprintf(stderr, "pid run: tokenizer of %s: %s\n", model_path, err.msg);
        goto out;
    }
    uint32_t n_vocab = r.model->n_vocab;
    if (tokenizer_n_vocab(r.tok) > n_vocab) {
        fprintf(stderr, "pid run: %s: tokenizer has %u tokens but the model's output only %u; "
                        "the file is inconsistent, re-import it\n",
                model_path, tokenizer_n_vocab(r.tok), n_vocab);
        goto out;
    }
    size_t n_prompt = 0;
    if (tokenizer_encode(r.tok, prompt, strlen(prompt), 1, &r.prompt, &n_prompt, &err) < 0) {
        fprintf(stderr, "pid run: encoding the prompt: %s\n", err.msg);
        goto out;
    }
    /* -c sets the context, past the trained one too (as on the workers, with a warning). */
    uint32_t n_ctx_model = ctx_size ? ctx_size : r.model->n_ctx;
    if (ctx_size > r.model->n_ctx)
        fprintf(stderr, "pid run: warning: -c %u is past %s's trained context of %u positions; quality may drop\n",
                ctx_size, model_path, r.model->n_ctx);
    if (n_prompt == 0) {
        fprintf(stderr, "pid run: the prompt encoded to no tokens and the model has no BOS token\n");
        goto out;
    }
    if (n_prompt > n_ctx_model) {
        fprintf(stderr, "pid run: the prompt is %zu tokens but %s has a context of %u; shorten the prompt\n",
                n_prompt, model_path, n_ctx_model);
        goto out;
    }
    /* The KV cache only needs the positions this run can reach (the last
     * generated token is never fed back). */
    size_t want = n_prompt + (g.n_predict > 0 ? (size_t)g.n_predict - 1 : 0);
    uint32_t n_ctx = want < n_ctx_model ? (uint32_t)want : n_ctx_model;
    r.fwd = forward_new(r.model, n_ctx, &err);
    if (!r.fwd) {
        fprintf(stderr, "pid run: %s: %s\n", model_path, err.msg);
        goto out;
    }
    sampler_params sp;
    sampler_params_from_gen(&sp, &g);
    r.smp = sampler_new(&sp, n_vocab, &err);
    if (!r.smp) {
        fprintf(stderr, "pid run: %s\n", err.msg);
        goto out;
    }
    /* Generation stops once position n_ctx would be needed: at most n_ctx + 1 tokens. */
    size_t n_hist_max = n_prompt + (size_t)g.n_predict;
    if (n_hist_max > (size_t)n_ctx + 1)
        n_hist_max = (size_t)n_ctx + 1;
    r.history = malloc(n_hist_max * sizeof *r.history);
    r.logits = malloc((size_t)n_vocab * sizeof *r.logits);
    r.piece_cap = tokenizer_max_piece_len(r.tok) + 8;
    r.piece = malloc(r.piece_cap);
    if (!r.history || !r.logits || !r.piece) {
        fprintf(stderr, "pid run: out of memory\n");
        goto out;
    }
    memcpy(r.history, r.prompt, n_prompt * sizeof *r.prompt);
    size_t n_hist = n_prompt;

    /* The prompt, echoed as the model sees it (BOS prints nothing). */
    const float *lg = NULL;
    for (size_t i = 0; i < n_prompt; i++) {
        lg = forward_token(r.fwd, r.prompt[i], (uint32_t)i);
        if (!lg) {
            fprintf(stderr, "pid run: prompt token %zu (id %d) could not be run\n", i, r.prompt[i]);
            goto out;
        }
        if (emit(&r, i ? r.prompt[i - 1] : -1, r.prompt[i]) < 0)
            goto stdout_failed;
    }
    double t1 = now_s();

    int32_t eos = tokenizer_eos(r.tok);
    size_t n_gen = 0;
    int hit_ctx = 0;
    while (n_gen < (size_t)g.n_predict) {
        memcpy(r.logits, lg, (size_t)n_vocab * sizeof *r.logits);
        int32_t next = sampler_sample(r.smp, r.logits, r.history, n_hist);
        if (next == eos)
            break;
        if (emit(&r, r.history[n_hist - 1], next) < 0)
            goto stdout_failed;
        r.history[n_hist++] = next;
        n_gen++;
        if (n_gen == (size_t)g.n_predict)
            break;
        if (n_hist - 1 >= n_ctx) {
            hit_ctx = 1;
            break;
        }
        lg = forward_token(r.fwd, next, (uint32_t)(n_hist - 1));
        if (!lg) {
            fprintf(stderr, "pid run: token id %d at position %zu could not be run\n", next, n_hist - 1);
            goto out;
        }
    }
    double t2 = now_s();
    if (fputc('\n', stdout) == EOF || fflush(stdout) != 0)
        goto stdout_failed;
    if (hit_ctx)
        fprintf(stderr, "pid run: stopped at the context length (%u tokens)\n", n_ctx);
    double gen_s = t2 - t1;
    fprintf(stderr, "pid run: prompt %zu tokens, generated %zu tokens in %.3f s (%.1f tok/s), seed %llu\n",
            n_prompt, n_gen, gen_s, gen_s > 0 ? (double)n_gen / gen_s : 0.0,
            (unsigned long long)sampler_seed(r.smp));
    rc = 0;
    goto out;

stdout_failed:
    fprintf(stderr, "pid run: writing to stdout failed\n");
out:
    run_ctx_free(&r);
    return rc;
}

int pid_cmd_run(int argc, char **argv)
{
    run_workers_opts o;
    int reference = 0;
    int rc = parse_args(argc, argv, &o, &reference);
    if (rc >= 0)
        return rc;
    char picked[4096];
    pi_error err = {{0}};
    if (!o.model_path && default_model_pick(picked, sizeof picked, &err) < 0) {
        fprintf(stderr, "pid run: %s\n", err.msg);
        return 2;
    }
    if (!o.model_path)
        o.model_path = picked;
    return reference ? run_reference(o.model_path, o.prompt, &o.gen, o.ctx_size) : run_on_workers(&o);
}
