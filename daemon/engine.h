/* engine: the heart of pid. Owns the model, tokenizer, placement plan, the
 * step segment, the control ROUTER socket, the supervisor and the scheduler,
 * and runs them in one single-threaded poll loop (ZeroMQ sockets + a
 * signalfd for SIGCHLD/SIGTERM/SIGINT). Per step it sends two kinds of
 * messages (Step to every worker, StepDone back), never per layer.
 * Used by `pid start` (with an RPC server attached through
 * engine_add_socket) and usable in-process (engine_submit +
 * engine_run(until_idle)). */
#ifndef PI_DAEMON_ENGINE_H
#define PI_DAEMON_ENGINE_H

#include <stdint.h>

#include "pi_error.h"
#include "ffn_mode.h"
#include "plan.h"
#include "scheduler.h"
#include "supervisor.h"
#include "timings.h"
#include "tokenizer.h"

/* The warm share pid picks for CUDA: the GPU reads that share of the cold
 * rows over PCIe (~36 GB/s on the H200 machine) while the CPU reads the rest
 * (~66 GB/s beside it), so both finish together: measured at the 13B shape,
 * 0.4 left the GPU waiting 0.7 ms a token, 0.3 3.4 ms (docs/benchmarks.md). */
#define ENGINE_WARM_SHARE_CUDA 0.4
#define ENGINE_MAX_SEQS_DEFAULT 8
/* Solo steps (docs/shm.md): a step of up to solo_batch entries the GPU
 * worker runs alone, every FFN neuron on its side, taken once the oldest
 * prefilling prompt has solo_min tokens or more left to feed. */
#define ENGINE_SOLO_BATCH_DEFAULT 512
/* solo_batch not given: ENGINE_SOLO_BATCH_DEFAULT on the CUDA backend, none
 * on the host backend (its GPU worker would compute every neuron on one core
 * while the CPU workers' threads idle; give --solo-batch to have them). */
#define ENGINE_SOLO_BATCH_AUTO UINT32_MAX
#define ENGINE_SOLO_BATCH_MAX 65536
#define ENGINE_SOLO_MIN_DEFAULT 64
#define ENGINE_SOLO_MIN_MAX (1u << 24)

typedef struct engine_opts {
    const char *model_path;
    const char *gpu_backend;    /* "auto", "cuda" or "host" */
    const char *ffn;            /* "auto" (NULL too), "dense", "exact", "predicted" */
    int measure_recall;         /* predicted: the GPU worker also computes the true active
                                   sets and reports recall/precision (costs a dense gate pass) */
    int cpu_workers;            /* -1 = one per NUMA node */
    int pred_q8;                /* the predictors held as q8_0 by pid's plan and the GPU worker
                                   (sparse/pred_quant.h, --predictor-type); 0 = as in the file */
    double vram_budget_gib;     /* < 0 = automatic: PLAN_FREE_PCT% of the GPU's free memory
                                   (pi-gpu-worker --probe-memory), none on the host backend */
    double warm_share;          /* < 0 = automatic: ENGINE_WARM_SHARE_CUDA with a CUDA GPU and CPU
                                   workers, else 0; else this share of each layer's cold neurons
                                   is warm (plan.h, plan_params.warm_share) */
    uint32_t max_seqs;          /* KV cache slots; 0 = up to ENGINE_MAX_SEQS_DEFAULT, as
                                   many as fit the budget (plan.h, PLAN_FIT_SEQS) */
    uint32_t max_batch;
    uint32_t solo_batch;        /* most entries of a solo step, at most ENGINE_SOLO_BATCH_MAX
                                   (the GPU worker's Ready.solo_max may lower it); 0 = none;
                                   ENGINE_SOLO_BATCH_AUTO: by backend.
                                   The step segment holds max(max_batch, solo_batch) entries */
    uint32_t solo_min;          /* prompt tokens left that make a step solo; 0 =
                                   ENGINE_SOLO_MIN_DEFAULT */
    uint32_t max_queue;         /* 0 = REQ_LIMITS_MAX_QUEUE_DEFAULT */
    uint32_t n_ctx;             /* 0 = the model's, lowered to fit the budget (PLAN_FIT_CTX) */
    int n_ctx_bound;            /* n_ctx is only what a run could need: capped at the model's
                                   trained context, silently (pid run without -c) */
    const char *rundir;         /* folder for the control socket */
    int timings;                /* Step.timings: the GPU worker measures its phases (the CPU
                                   workers' stats are read after every step anyway) */
} engine_opts;

typedef struct engine engine;

/* Called when sock (a ZeroMQ socket) is readable. */
typedef void (*engine_io_fn)(void *ud);

/* Opens and validates the model, learns the GPU's free memory
 * (pi-gpu-worker --probe-memory), makes the plan, creates the step segment
 * and binds the control socket. Blocks SIGCHLD/SIGTERM/SIGINT in the calling
 * thread (call before starting other threads). Results of requests go to
 * sink. Caller owns the result: engine_free. Starts no worker yet. */
engine *engine_new(const engine_opts *o, const sched_sink *sink, pi_error *err);

/* Quits (or kills) the workers still running, unlinks the control socket
 * and the step segment. NULLs *e. */
void engine_free(engine **e);

/* Spawns every worker and runs the loop until all sent Ready. -1 with a
 * message naming the worker and why when one fails before it gets there. */
int engine_start(engine *e, double timeout_s, pi_error *err);

/* Polls sock alongside the engine's own. At most one. */
void engine_add_socket(engine *e, void *sock, engine_io_fn fn, void *ud);

/* Queues a generation (SCHED_OK or an error code with err): refused with
 * SCHED_E_UNAVAILABLE once stopping. */
int engine_submit(engine *e, const sched_request *r, pi_error *err);

/* Cancels the request (tag, id) (scheduler_cancel): 1 found, 0 not. */
int engine_cancel(engine *e, const void *tag, size_t tag_len, uint64_t id);

/* Runs the loop: until the engine stopped (engine_stop, SIGTERM/SIGINT)
 * and its workers quit, or, with until_idle, until no request is left. */
int engine_run(engine *e, int until_idle, pi_error *err);

/* Begins a graceful stop: new requests are refused, running ones get up to
 * grace_s to finish, then fail with UNAVAILABLE; then the workers Quit. */
void engine_stop(engine *e, double grace_s);
int engine_stopping(const engine *e);

/* Kills worker `name` and starts it again at once: its new pid, or -1. */
int engine_restart_worker(engine *e, const char *name, uint32_t *new_pid, pi_error *err);

/* Read-only views for Status. */
const tokenizer *engine_tokenizer(const engine *e);
const pi_plan *engine_plan(const engine *e);
supervisor *engine_supervisor(engine *e);
const char *engine_model_path(const engine *e);
uint32_t engine_queue_length(const engine *e);
uint32_t engine_active(const engine *e);
uint64_t engine_uptime_ms(const engine *e);
uint32_t engine_max_tokens_limit(const engine *e); /* n_ctx */
uint32_t engine_n_vocab(const engine *e);          /* the model's logits per row */
pi_ffn_mode engine_ffn(const engine *e);
/* Predictor decisions measured since start (all 0 unless measure_recall). */
void engine_predictor_stats(const engine *e, uint64_t *tp, uint64_t *fn, uint64_t *fp);
/* Solo steps run since start (STEP_CMD_SOLO), and the solo capacity now
 * (min(solo_batch, the GPU worker's Ready.solo_max); 0: none). */
uint64_t engine_solo_steps(const engine *e);
uint32_t engine_solo_batch(const engine *e);
/* Where the steps' time went: the last decode step, the decode steps summed. */
const timings *engine_timings(const engine *e);
int engine_timings_asked(const engine *e);  /* Step.timings is set (--timings) */

#endif
