/* `pid run` on the worker processes: the same engine as `pid start`
 * (GPU worker + CPU workers, step segment, ZeroMQ control), without the RPC
 * server: one request, streamed to stdout, then the workers quit. */
#ifndef PI_DAEMON_RUN_WORKERS_H
#define PI_DAEMON_RUN_WORKERS_H

#include "gen_params.h"

typedef struct run_workers_opts {
    const char *model_path;
    const char *prompt;
    gen_params gen;
    const char *gpu_backend;    /* "auto", "cuda", "host" */
    int cpu_workers;            /* -1 = one per NUMA node */
    double vram_budget_gib;     /* < 0 = automatic */
    double warm_share;          /* < 0 = automatic (engine.h) */
    const char *ffn;            /* "auto", "dense", "exact", "predicted" */
    int measure_recall;         /* predicted: report the predictor's recall and precision */
    int pred_q8;                /* --predictor-type q8_0 (engine.h) */
    int timings;                /* print where each decode step's time went (stderr) */
    uint32_t solo_batch;        /* most entries of a solo step (engine.h); 0 = none */
    uint32_t solo_min;          /* prompt tokens left that make a step solo */
    uint32_t ctx_size;          /* -c: KV positions; 0 = what the run needs, at most the
                                   model's trained context */
} run_workers_opts;

/* The process exit code: 0, or 1 with the reason on stderr. */
int run_on_workers(const run_workers_opts *o);

#endif
