/* `pid run` through the workers: echoes the prompt as the model sees it,
 * streams each sampled token's text as the engine produces it, and prints the
 * statistics line that the in-process path prints. */
#include "run_workers.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemonize.h"
#include "engine.h"
#include "sampler.h"

typedef struct run_sink {
    int failed, finished, out_err;
    char msg[512];
    sched_stats st;
} run_sink;

static int on_chunk(void *ud, const void *tag, size_t tag_len, uint64_t id, int32_t token,
                    const char *text, size_t text_len)
{
    run_sink *s = ud;
    (void)tag, (void)tag_len, (void)id, (void)token;
    if (text_len && fwrite(text, 1, text_len, stdout) != text_len)
        s->out_err = 1;
    if (fflush(stdout) != 0)
        s->out_err = 1;
    return 0;
}

static void on_done(void *ud, const void *tag, size_t tag_len, uint64_t id, const sched_stats *st)
{
    run_sink *s = ud;
    (void)tag, (void)tag_len, (void)id;
    s->st = *st;
    s->finished = 1;
}

static void on_fail(void *ud, const void *tag, size_t tag_len, uint64_t id, int code, const char *msg)
{
    run_sink *s = ud;
    (void)tag, (void)tag_len, (void)id;
    snprintf(s->msg, sizeof s->msg, "%s (code %d)", msg, code);
    s->failed = 1;
}

/* The prompt's text as the tokenizer sees it (BOS prints nothing). */
static int echo_prompt(const tokenizer *tok, const char *prompt, pi_error *err)
{
    int32_t *ids = NULL;
    size_t n = 0;
    if (tokenizer_encode(tok, prompt, strlen(prompt), 1, &ids, &n, err) < 0)
        return -1;
    size_t cap = tokenizer_max_piece_len(tok) + 8;
    char *piece = malloc(cap);
    if (!piece) {
        free(ids);
        return pi_error_set(err, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        int len = tokenizer_decode_piece(tok, i ? ids[i - 1] : -1, ids[i], piece, cap);
        if (len > 0)
            fwrite(piece, 1, (size_t)len < cap ? (size_t)len : cap, stdout);
    }
    fflush(stdout);
    free(piece);
    free(ids);
    return 0;
}

/* The KV cache only needs the positions this run can reach: a prompt
 * never has more tokens than bytes (+ BOS). The engine caps it at the
 * model's context. */
static uint32_t ctx_needed(const run_workers_opts *o)
{
    uint64_t n = (uint64_t)strlen(o->prompt) + (uint64_t)o->gen.n_predict + 2;
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

int run_on_workers(const run_workers_opts *o)
{
    pi_error err = {{0}};
    char rundir[1024];
    if (pid_rundir(rundir, sizeof rundir, &err) < 0) {
        fprintf(stderr, "pid run: %s\n", err.msg);
        return 1;
    }
    run_sink rs = {0};
    sched_sink sink = {.ud = &rs, .chunk = on_chunk, .done = on_done, .fail = on_fail};
    engine_opts eo = {.model_path = o->model_path, .gpu_backend = o->gpu_backend, .ffn = o->ffn,
                      .measure_recall = o->measure_recall, .pred_q8 = o->pred_q8,
                      .cpu_workers = o->cpu_workers, .vram_budget_gib = o->vram_budget_gib,
                      .warm_share = o->warm_share,
                      .max_seqs = 1, .max_batch = 64, .solo_batch = o->solo_batch, .solo_min = o->solo_min,
                      .n_ctx = o->ctx_size ? o->ctx_size : ctx_needed(o),
                      .n_ctx_bound = !o->ctx_size, .rundir = rundir,
                      .timings = o->timings};
    int rc = 1;
    engine *e = engine_new(&eo, &sink, &err);
    if (!e)
        goto fail;
    fprintf(stderr, "pid run: placement: %s\n", engine_plan(e)->summary);
    if (engine_start(e, 120.0, &err) < 0)
        goto fail;
    if (echo_prompt(engine_tokenizer(e), o->prompt, &err) < 0)
        goto fail;
    sched_request req = {.tag = "run", .tag_len = 3, .id = 1, .prompt = o->prompt,
                         .prompt_len = strlen(o->prompt), .max_tokens = (uint32_t)o->gen.n_predict};
    sampler_params_from_gen(&req.sampling, &o->gen);
    int code = engine_submit(e, &req, &err);
    if (code != SCHED_OK)
        goto fail;
    if (engine_run(e, 1, &err) < 0)
        goto fail;
    if (fputc('\n', stdout) == EOF || fflush(stdout) != 0 || rs.out_err) {
        snprintf(err.msg, sizeof err.msg, "writing to stdout failed");
        goto fail;
    }
    if (rs.failed || !rs.finished) {
        snprintf(err.msg, sizeof err.msg, "%s", rs.failed ? rs.msg : "the request did not finish");
        goto fail;
    }
    double tps = rs.st.tokens_per_second;
    fprintf(stderr, "pid run: prompt %u tokens, generated %u tokens in %.3f s (%.1f tok/s), seed %llu%s\n",
            rs.st.prompt_tokens, rs.st.generated_tokens, tps > 0 ? rs.st.generated_tokens / tps : 0.0, tps,
            (unsigned long long)rs.st.seed, rs.st.retried_steps ? " (steps retried after a worker restart)" : "");
    if (engine_solo_steps(e))
        fprintf(stderr, "pid run: %llu solo steps (the GPU worker alone, up to %u entries each)\n",
                (unsigned long long)engine_solo_steps(e), engine_solo_batch(e));
    if (o->timings)
        timings_print(engine_timings(e), stderr, "pid run: ");
    uint64_t tp, fn, fp;
    engine_predictor_stats(e, &tp, &fn, &fp);
    if (tp + fn + fp > 0)
        fprintf(stderr, "pid run: predictor recall %.4f, precision %.4f (%llu neurons fired, %llu of them "
                        "predicted; %llu predicted in vain)\n",
                tp + fn ? (double)tp / (double)(tp + fn) : 1.0, tp + fp ? (double)tp / (double)(tp + fp) : 1.0,
                (unsigned long long)(tp + fn), (unsigned long long)tp, (unsigned long long)fp);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "pid run: %s\n", err.msg);
out:
    engine_free(&e);
    return rc;
}
