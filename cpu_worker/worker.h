/* The CPU worker's life (docs/architecture.md): connect a DEALER with
 * routing id "cpu:I" to pid's control endpoint, Hello, load shard I of N of
 * the cold neurons, map and check the step segment, Ready, then serve Step
 * messages until Quit. Heartbeat every 500 ms when idle. */
#ifndef PI_CPU_WORKER_H
#define PI_CPU_WORKER_H

#include <sched.h>
#include <stdint.h>

#include "ffn_mode.h"
#include "pi_error.h"

typedef struct cpu_worker_opts {
    const char *model_path;
    const char *ctl;            /* pid's control endpoint */
    const char *shm_name;       /* the step segment */
    uint32_t index, of;         /* shard index of of */
    int64_t n_hot;              /* hot neurons per layer; < 0 = the plan's default */
    const char *plan_path;      /* pid's plan cache (--plan): per-layer cold sets; overrides n_hot */
    double warm_share;          /* plan_params.warm_share (--warm-share; pid passes the same to every worker) */
    int numa_node;              /* -1: no NUMA placement */
    uint32_t max_seqs, n_ctx;   /* pid's KV cache shape (a plan file is checked against it);
                                   0 = 1 sequence, the model's context */
    pi_ffn_mode ffn;            /* dense: every neuron's rows; exact: neurons whose ReLU gate
                                   is <= 0 skip up and down; predicted: the GPU worker's lists */
} cpu_worker_opts;

/* Runs until Quit (returns 0) or a fatal error (-1 with err; pid was sent a
 * Control{error} with the same message when the socket was up). */
int cpu_worker_run(const cpu_worker_opts *o, pi_error *err);

/* Parses a CPU list such as "0-3,8,10-11" into set: 0, or -1 with err. */
int cpu_list_parse(const char *s, cpu_set_t *set, pi_error *err);

#endif
