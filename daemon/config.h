/* pid's settings: etc/pid.conf ("key = value" lines, '#' comments), then
 * command-line flags on top. Every key is documented in etc/pid.conf. */
#ifndef PI_DAEMON_CONFIG_H
#define PI_DAEMON_CONFIG_H

#include <stdint.h>

#include "gen_params.h"
#include "pi_error.h"

#define PID_PATH_MAX 1024

typedef struct pid_config {
    char model[PID_PATH_MAX];
    char listen[PID_PATH_MAX];      /* "" = the default endpoint */
    char http[64];                  /* "" = no HTTP API; else HOST:PORT (docs/http.md) */
    char token[256];                /* client token ("" = none; tcp needs one: rpc_auth.h) */
    char admin_token[256];          /* for Shutdown / RestartWorker ("" = none) */
    int cpu_workers;                /* -1 = one per NUMA node */
    double vram_budget_gib;         /* < 0 = automatic (90% of the GPU's free memory; none on
                                       the host backend) */
    double warm_share;              /* < 0 = automatic (engine.h); else the cold share the GPU reads */
    char gpu_backend[16];           /* "auto", "cuda" or "host" */
    char ffn[16];                   /* "auto", "dense", "exact" or "predicted" */
    int measure_recall;             /* predicted: measure the predictor (a dense gate pass) */
    int pred_q8;                    /* --predictor-type q8_0 (sparse/pred_quant.h); 0 = as the file holds it */
    uint32_t max_seqs;              /* 0 = auto: up to 8, as many as the budget fits */
    uint32_t max_batch;
    uint32_t solo_batch;            /* entries of a solo step (engine.h); 0 = no solo steps;
                                       ENGINE_SOLO_BATCH_AUTO: by backend */
    uint32_t solo_min;              /* prompt tokens left that make a step solo, >= 1 */
    uint32_t max_queue;             /* requests waiting for a slot (req_limits.h) */
    uint32_t n_ctx;                 /* 0 = the model's, lowered to fit the budget */
    char log_file[PID_PATH_MAX];    /* "" = <rundir>/pid.log when daemonized */
    char pid_file[PID_PATH_MAX];    /* "" = <rundir>/pid.pid */
    gen_params sampling;            /* defaults for requests that leave them out */
    int foreground;
    int timings;                    /* --timings: the GPU worker measures its phases per step */
} pid_config;

void pid_config_default(pid_config *c);

/* Sets one key from its text value; -1 with a message naming the key and its
 * accepted values. */
int pid_config_set(pid_config *c, const char *key, const char *value, pi_error *err);

/* Reads a config file over c. Errors name "file:line". A missing file is an
 * error only when required. */
int pid_config_load(pid_config *c, const char *path, int required, pi_error *err);

/* Parses `pid start` flags over c (argv[0] is the subcommand); --config is
 * skipped (load it first: pid_config_find_path). Returns 0, 1 for --help,
 * or -1 with err. */
int pid_config_parse_args(pid_config *c, int argc, char **argv, pi_error *err);

/* Finds "--config PATH" in argv, or NULL. */
const char *pid_config_find_path(int argc, char **argv);

#endif
