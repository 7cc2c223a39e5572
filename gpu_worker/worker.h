/* The GPU worker's life (docs/architecture.md, "Processes and endpoints"):
 * connect a DEALER with routing id "gpu" to pid's control endpoint, Hello,
 * load the GPU part of the model into the backend, map and check the step
 * segment, Ready, then serve Step messages until Quit. Heartbeat every
 * 500 ms when idle. */
#ifndef PI_GPU_WORKER_H
#define PI_GPU_WORKER_H

#include <stdint.h>

#include "ffn_mode.h"
#include "pi_error.h"

typedef struct gpu_worker_opts {
    const char *model_path;
    const char *ctl;            /* pid's control endpoint */
    const char *shm_name;       /* the step segment */
    const char *backend;        /* "host" or "cuda" */
    int64_t n_hot;              /* hot neurons per layer; < 0 = the plan's default */
    const char *plan_path;      /* pid's plan cache (--plan): per-layer hot sets; overrides n_hot */
    double warm_share;          /* plan_params.warm_share (--warm-share; pid passes the same to every worker) */
    uint32_t max_seqs, max_batch;
    uint32_t solo_batch;        /* --solo-batch: solo steps of up to this many entries (pid's; the segment holds
                                   max(max_batch, solo_batch) entries); 0: none */
    uint32_t n_ctx;             /* 0 = the model's */
    uint32_t n_cpu_workers;
    int device;                 /* CUDA device ordinal */
    pi_ffn_mode ffn;
    int measure_recall;         /* predicted: also find the true active sets, count hits */
    int pred_q8;                /* --predictor-type q8_0 (sparse/pred_quant.h), as pid's plan counted them */
    int vram_sock;              /* >= 0: pid's socket for the kept VRAM (fd_pass.h); -1: none */
    int own_cpus;               /* --own-cpus: no CPU worker runs on its CPUs, so it may spin */
    double started_ms;          /* pi_now_ms() at main's start: Ready says where a start's time went */
} gpu_worker_opts;

/* Runs until Quit (returns 0) or a fatal error (-1 with err; pid was sent a
 * Control{error} with the same message when the socket was up). A failing
 * step is not fatal: it answers StepDone{ok=false, error}. */
int gpu_worker_run(const gpu_worker_opts *o, pi_error *err);

#endif
