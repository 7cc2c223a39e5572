/* supervisor: the worker processes of one pid. Spawns them (fork + exec from
 * the folder of pid's own binary, flags of docs/architecture.md), tracks
 * their state, restarts the dead with backoff (at once, then 100 ms doubling
 * to 5 s, reset once a worker is ready) and kills the hung: SUP_HANG_MS without a word
 * (workers beat every 500 ms, from a second thread during a step, so a long
 * step is not a hang), SUP_STOPPED_MS when /proc says the process is stopped
 * (SIGSTOP; also while it starts), or SUP_STEP_MAX_MS without a word from its main thread while its
 * heartbeat thread still beats (a step stuck for that long). Reaping is the caller's: it reads SIGCHLD and calls
 * supervisor_reap. Time is passed in (milliseconds, monotonic). */
#ifndef PI_DAEMON_SUPERVISOR_H
#define PI_DAEMON_SUPERVISOR_H

#include <sched.h>
#include <stdint.h>
#include <sys/types.h>

#include "fd_pass.h"

#include "pi_error.h"

#define SUP_MAX_WORKERS 65
#define SUP_HANG_MS 5000.0        /* silence (no message at all) that means hung */
#define SUP_STOPPED_MS 1000.0     /* silence after which a stopped process is killed */
#define SUP_STEP_MAX_MS 1800000.0 /* 30 min: the main thread's silence inside one step */

typedef enum sup_state { SUP_STARTING, SUP_READY, SUP_DEAD, SUP_RESTARTING } sup_state;

typedef struct sup_worker {
    char name[16];          /* "gpu", "cpu:I" (the ZeroMQ routing id) */
    int is_gpu;
    uint32_t index;
    pid_t pid;              /* 0 when not running */
    sup_state state;
    uint32_t restarts;
    uint32_t failed_starts; /* starts in a row that ended in its own exit before Ready (exec or load failed) */
    int ever_ready;
    uint64_t rss_bytes, device_bytes;
    char backend[16];
    int numa_node;
    char cpus[256];         /* CPU list it is pinned to (cpu workers) */
    char detail[640];       /* from Ready */
    char last_error[512];   /* its Error message or how it exited */
    double last_seen_ms;    /* its last message of any kind */
    double main_seen_ms;    /* its last message from its main thread */
    double restart_at_ms;
    double spawned_ms;      /* when it was last started (pid's log: how long until Ready) */
    uint32_t backoff_ms;
    char *argv[40];         /* built once, before any fork */
    char argbuf[4096];
} sup_worker;

typedef struct sup_config {
    const char *bin_dir;    /* folder of pi-gpu-worker / pi-cpu-worker */
    const char *model, *ctl, *shm_name, *backend;
    int shm_fd;             /* > 0: handed to workers as fd 3 ("--shm fd:3"); else by name */
    uint32_t n_hot, max_seqs, max_batch, n_ctx, n_cpu;
    uint32_t solo_batch;    /* > 0: --solo-batch for the GPU worker (solo steps; the step
                               segment holds max(max_batch, solo_batch) entries) */
    double warm_share;      /* --warm-share for every worker (plan.h), 0 = none */
    const char *plan;       /* plan cache with per-layer sets: --plan for every worker
                               instead of --hot; NULL or "" = --hot n_hot */
    const char *ffn;        /* --ffn for every worker; NULL = the workers' default (dense) */
    int measure_recall;     /* --measure-recall for the GPU worker */
    int pred_q8;            /* --predictor-type q8_0 for the GPU worker */
} sup_config;

typedef struct supervisor {
    uint32_t n;             /* workers[0] is "gpu", then "cpu:0".."cpu:N-1" */
    int shm_fd;             /* from sup_config */
    /* The GPU worker's memory kept across its restarts (docs/reliability.md):
     * pid's end of the socket to the current GPU worker (-1: none), and what
     * it last handed over, by fd_pass kind (VRAM, WARM; fd -1: none), each
     * with its size and backend. */
    int vram_sock;
    struct sup_kept {
        int fd;
        uint64_t bytes;
        char backend[16];
    } kept[FD_PASS_KINDS];
    /* With CPU workers on a node 0 of 12 CPUs or more (or PI_HOST_CPUS=k >=
     * 2): the CPUs they leave (host_set, 3 by default) hold the GPU worker,
     * pinned there, and pid (engine.c), so both may spin without preempting
     * the CPU workers' pinned threads. */
    int host_own;
    cpu_set_t host_set;
    sup_worker w[SUP_MAX_WORKERS];
} supervisor;

/* Fills s (does not start anything): CPU workers spread over the NUMA nodes
 * round-robin, each node's allowed CPUs split among its workers. */
int supervisor_init(supervisor *s, const sup_config *c, pi_error *err);

/* Closes the kept VRAM and the socket (the memory is freed with the last fd). */
void supervisor_close(supervisor *s);

/* After the GPU worker's Ready: takes what it handed over (then kept, what
 * was kept before let go). Returns the VRAM arena's bytes (0: none) and, in
 * *warm, the warm rows' host memory's. */
uint64_t supervisor_take_vram(supervisor *s, uint64_t *warm);

/* The folder of the running binary (/proc/self/exe). */
int supervisor_bin_dir(char *buf, size_t cap, pi_error *err);

/* Starts worker w now. -1 with err when fork fails. */
int supervisor_spawn(supervisor *s, sup_worker *w, double now, pi_error *err);

/* Called for every child reaped (waitpid): marks its worker dead and
 * schedules a restart (unless stopping). Returns the worker, or NULL if pid
 * was not one of ours. */
sup_worker *supervisor_reap(supervisor *s, pid_t pid, int status, double now, int stopping);

/* Restarts those whose backoff has passed; SIGKILLs the silent, stopped
 * and stuck ones (the header comment's limits). */
void supervisor_tick(supervisor *s, double now);

/* Milliseconds until the next restart is due (or -1 for none). */
double supervisor_next_due(const supervisor *s, double now);

/* A message arrived from w's main thread: it is alive. */
void supervisor_seen(sup_worker *w, double now);
/* A heartbeat arrived from w's in-step heartbeat thread ("NAME/hb"). */
void supervisor_seen_hb(sup_worker *w, double now);
/* w sent Ready. */
void supervisor_ready(sup_worker *w, double now);

sup_worker *supervisor_find(supervisor *s, const char *name, size_t len);
int supervisor_all_ready(const supervisor *s);
/* Kills w (SIGKILL) so that it is restarted. */
void supervisor_kill(sup_worker *w);
/* SIGKILLs every running worker (shutdown after Quit timed out). */
void supervisor_kill_all(supervisor *s);
/* Live workers remaining. */
uint32_t supervisor_running(const supervisor *s);
/* RSS from /proc/PID/statm, 0 if unknown. */
uint64_t supervisor_rss(pid_t pid);
const char *sup_state_name(sup_state st);

#endif
