/* pid's poll loop: workers, steps, recovery (engine.h, docs/architecture.md). */
#include "engine.h"
#include "ffn_mode.h"
#include "pi_proc.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <numa.h>
#include <zmq.h>

#include "cuda_needs.h"
#include "gpu_probe.h"
#include "model.h"
#include "pm_qos.h"
#include "pred_quant.h"
#include "segment.h"
#include "sidecar.h"
#include "spin_poll.h"
#include "step_bell.h"
#include "stale.h"
#include "step_layout.h"
#include "wire.h"

#define WORKER_LOST_MS 30000.0 /* requests wait this long for a worker that will not come back */
#define START_FAILS_LOST 2u    /* its own failed starts in a row that say it cannot come back now */
#define QUIT_WAIT_MS 3000.0
#define GPU_PROBE_MS 30000.0   /* a driver that takes longer is stuck: pid says so */
#define ENGINE_SPIN_US 20000L  /* longer than a decode step (13B all in VRAM: ~6 ms), then asleep */

struct engine {
    char model_path[1024];
    char backend[16];
    pi_model *model;
    tokenizer *tok;
    pi_plan plan;
    char plan_path[1200];       /* the plan cache the workers read (--plan), or "" */
    uint32_t n_ctx, max_batch;
    uint32_t solo_batch, solo_min;  /* as configured (engine_opts) */
    uint32_t solo_now;          /* solo capacity from the GPU worker's last Ready; 0: none */
    int solo_told;              /* pid's log said whether solo steps are on */
    uint64_t solo_steps;        /* solo steps started */
    shm_segment *seg;
    void *base;
    step_layout lay;
    void *zctx, *ctl;
    char ctl_ep[300];
    int sfd;
    sigset_t old_mask;
    supervisor sup;
    scheduler *sched;
    sched_entry *entries;
    /* the step in flight */
    uint64_t step_no;
    pi_ffn_mode ffn;
    uint64_t pred_tp, pred_fn, pred_fp;   /* predictor measurement, summed over steps */
    timings *tm;                /* where the steps' time goes */
    int want_timings;           /* Step.timings */
    int in_flight, aborted;
    uint32_t abort_epoch;
    char fail_why[600];
    /* lifecycle */
    int starting, start_failed, stopping, quitting;
    double stop_deadline, quit_deadline, not_ready_since;
    double t_start;
    char start_err[700];
    void *io_sock;
    engine_io_fn io_fn;
    void *io_ud;
    pm_qos qos;                 /* shallow idle states while requests run */
    long spin_us;               /* a step's answer is awaited spinning this long (spin_poll.h) */
    step_bell *bell;            /* the step bell (step_bell.h); NULL: off (PI_STEP_BELL=0) */
    step_answer answer;         /* what the bell said of the step in flight */
};

static int numa_nodes_or_one(void)
{
    int n = numa_available() >= 0 ? numa_num_configured_nodes() : 1;
    return n > 0 ? n : 1;
}

static const char *pick_backend(const char *want)
{
    if (strcmp(want, "auto"))
        return want;
#ifdef PI_HAVE_CUDA
    if (access("/dev/nvidiactl", F_OK) == 0)
        return "cuda";
#endif
    return "host";
}

/* Refuses "cuda" up front, before any worker starts, where it cannot work. */
static int check_backend(const char *backend, pi_error *err)
{
    if (strcmp(backend, "cuda"))
        return 0;
#ifdef PI_HAVE_CUDA
    if (access("/dev/nvidiactl", F_OK) != 0)
        return pi_error_set(err, "--gpu-backend cuda: no NVIDIA GPU here (/dev/nvidiactl is missing); "
                                 "use --gpu-backend host");
    return 0;
#else
    return pi_error_set(err, "--gpu-backend cuda: this build has no CUDA backend (rebuild with "
                             "-DPI_CUDA=ON where the CUDA toolkit is installed); use --gpu-backend host");
#endif
}

/* The GPU's free memory for the plan (gpu_probe.h). Without it a CUDA run
 * with no budget has nothing to size by; anything else plans without it. */
static int learn_device(const char *backend, const engine_opts *o, const char *bin_dir, gpu_memory *mem,
                        pi_error *err)
{
    pi_error perr = {{0}};
    int rc = gpu_probe_memory(bin_dir, backend, GPU_PROBE_MS, mem, &perr);
    if (rc == 0)
        return 0;
    /* Out of device memory: a budget would not help, the worker's context
     * would not fit either; the probe's message says what to do. */
    if (rc == GPU_PROBE_OOM)
        return pi_error_set(err, "%s", perr.msg);
    if (!strcmp(backend, "cuda") && !(o->vram_budget_gib > 0))
        return pi_error_set(err, "%s; give --vram-budget GiB to start without the GPU's free memory", perr.msg);
    fprintf(stderr, "pid: warning: %s; the VRAM budget is not checked against the GPU\n", perr.msg);
    return 0;
}

/* Entries a step may hold: the step segment's and pid's entries array's
 * capacity (a solo step may hold more than max_batch). */
static uint32_t step_capacity(const engine *e)
{
    return e->solo_batch > e->max_batch ? e->solo_batch : e->max_batch;
}

/* The plan's parameters: the KV cache sizes not asked for may be lowered to
 * fit the budget, which is the one given or comes from the free memory. */
static plan_params plan_params_for(const engine_opts *o, uint32_t n_ctx, uint32_t n_cpu, int cuda,
                                   const gpu_memory *mem, uint32_t solo_batch)
{
    return (plan_params){
        .max_seqs = o->max_seqs ? o->max_seqs : ENGINE_MAX_SEQS_DEFAULT,
        .n_ctx = n_ctx,
        .n_cpu_workers = n_cpu,
        .budget_bytes = o->vram_budget_gib > 0 ? (uint64_t)(o->vram_budget_gib * (double)(1ull << 30)) : 0,
        .device_free_bytes = mem->free_bytes,
        .device_total_bytes = mem->total_bytes,
        /* CUDA: its fp16 KV cache, and its predictors, scratch and context out of the budget too */
        .backend = cuda ? cuda_needs() : NULL,
        .max_batch = cuda ? o->max_batch : 0,
        .solo_batch = cuda ? solo_batch : 0,
        .pred_q8 = o->pred_q8,
        .fit = (o->max_seqs ? 0 : PLAN_FIT_SEQS) | (o->n_ctx ? 0 : PLAN_FIT_CTX),
        .warm_share = o->warm_share >= 0 ? o->warm_share : cuda && n_cpu > 0 ? ENGINE_WARM_SHARE_CUDA : 0,
    };
}

engine *engine_new(const engine_opts *o, const sched_sink *sink, pi_error *err)
{
    engine *e = calloc(1, sizeof *e);
    if (!e) {
        pi_error_set(err, "out of memory");
        return NULL;
    }
    e->sfd = -1;
    e->t_start = pi_now_ms();
    snprintf(e->model_path, sizeof e->model_path, "%s", o->model_path);
    snprintf(e->backend, sizeof e->backend, "%s", pick_backend(o->gpu_backend));
    /* Held only while requests run (loop_once); with CUDA the host's wake-ups
     * are a measurable part of a token, with the host backend they are not. */
    pm_qos_init(&e->qos, !strcmp(e->backend, "cuda"));
    if (check_backend(e->backend, err) < 0) {
        free(e);
        return NULL;
    }

    /* Signals are read from a signalfd in the loop: block them before
     * ZeroMQ starts its threads so they inherit the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (sigprocmask(SIG_BLOCK, &set, &e->old_mask) < 0) {
        pi_error_set(err, "sigprocmask: %s", strerror(errno));
        free(e);
        return NULL;
    }
    signal(SIGPIPE, SIG_IGN);
    e->sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (e->sfd < 0) {
        pi_error_set(err, "signalfd: %s", strerror(errno));
        goto fail;
    }

    e->model = model_open_sparse(o->model_path, err);
    if (!e->model)
        goto fail;
    /* the GPU worker converts them (pid never predicts); the plan counts them as it will hold them */
    if (o->pred_q8 && predictor_requant_check(e->model, PI_TYPE_Q8_0, err) < 0) {
        pi_error_wrap(err, "%s: --predictor-type q8_0", o->model_path);
        goto fail;
    }
    e->tok = tokenizer_from_gguf(e->model->file, err);
    if (!e->tok) {
        pi_error_wrap(err, "tokenizer of %s", o->model_path);
        goto fail;
    }
    if (tokenizer_n_vocab(e->tok) != e->model->n_vocab) {
        pi_error_set(err, "%s: tokenizer has %u tokens but the model's output has %u; re-import it",
                     o->model_path, tokenizer_n_vocab(e->tok), e->model->n_vocab);
        goto fail;
    }
    /* As llama.cpp: a context beyond the trained one is allowed (RoPE goes on),
     * with a warning, since quality past it is not what the model learned. */
    e->n_ctx = o->n_ctx ? o->n_ctx : e->model->n_ctx;
    if (o->n_ctx_bound && e->n_ctx > e->model->n_ctx)
        e->n_ctx = e->model->n_ctx;
    if (e->n_ctx > e->model->n_ctx)
        fprintf(stderr, "pid: warning: --n-ctx %u is larger than the model's trained context (%u); "
                        "text past %u tokens may degrade\n", e->n_ctx, e->model->n_ctx, e->model->n_ctx);
    e->max_batch = o->max_batch;
    if (o->solo_batch > ENGINE_SOLO_BATCH_MAX && o->solo_batch != ENGINE_SOLO_BATCH_AUTO) {
        pi_error_set(err, "--solo-batch %u: at most %u entries (0 turns solo steps off)", o->solo_batch,
                     ENGINE_SOLO_BATCH_MAX);
        goto fail;
    }
    e->solo_batch = o->solo_batch != ENGINE_SOLO_BATCH_AUTO ? o->solo_batch
                    : !strcmp(e->backend, "cuda")   ? ENGINE_SOLO_BATCH_DEFAULT
                                                     : 0;
    e->solo_min = o->solo_min ? o->solo_min : ENGINE_SOLO_MIN_DEFAULT;
    /* auto: predicted when the model has a predictor, else exact for
     * ReLU-family models (their zeros are free to skip), else dense. */
    pi_ffn_mode ffn = e->model->has_predictor ? PI_FFN_PREDICTED
                      : e->model->act == PI_ACT_SILU ? PI_FFN_DENSE : PI_FFN_EXACT;
    if (o->ffn && strcmp(o->ffn, "auto") && pi_ffn_mode_parse(o->ffn, &ffn) < 0) {
        pi_error_set(err, "--ffn '%s': expected auto, dense, exact or predicted", o->ffn);
        goto fail;
    }
    if (ffn == PI_FFN_PREDICTED && !e->model->has_predictor) {
        pi_error_set(err, "--ffn predicted: %s has no activation predictor (blk.N.fc1/fc2 tensors); "
                     "use a PowerInfer GGUF or --ffn exact (ReLU models) / dense", o->model_path);
        goto fail;
    }
    e->ffn = ffn;
    uint32_t n_cpu = o->cpu_workers >= 0 ? (uint32_t)o->cpu_workers
                                         : (uint32_t)(numa_nodes_or_one());
    char bin_dir[1024];
    gpu_memory mem;
    if (supervisor_bin_dir(bin_dir, sizeof bin_dir, err) < 0 || learn_device(e->backend, o, bin_dir, &mem, err) < 0)
        goto fail;
    plan_params pp = plan_params_for(o, e->n_ctx, n_cpu, !strcmp(e->backend, "cuda"), &mem, e->solo_batch);
    /* The workers read a copy of the plan private to this pid: the cache
     * beside the model may be rewritten (another budget setup) while
     * workers restart. */
    char copy[1100];
    snprintf(copy, sizeof copy, "%s/plan-%d.gguf", o->rundir, (int)getpid());
    if (plan_make_for_model(e->model, o->model_path, &pp, o->rundir, copy, &e->plan, e->plan_path,
                            sizeof e->plan_path, err) < 0) {
        pi_error_wrap(err, "placement for %s", o->model_path);
        goto fail;
    }
    /* Every neuron in VRAM: CPU workers would compute nothing, yet every
     * layer of every step would still publish to them and wait for their
     * done counters (0.5 ms of a 6.6 ms token on the 13B shape, H200).
     * PI_KEEP_IDLE_CPU_WORKERS=1 keeps them, to measure the difference. */
    const char *keep = getenv("PI_KEEP_IDLE_CPU_WORKERS");
    if (n_cpu > 0 && e->plan.cold_bytes == 0 && e->plan.warm_bytes == 0 && !(keep && !strcmp(keep, "1"))) {
        fprintf(stderr, "pid: every neuron fits in the VRAM budget: no CPU workers started (they would hold "
                "no cold neurons)\n");
        plan_release(&e->plan);
        n_cpu = 0;
        pp = plan_params_for(o, e->n_ctx, n_cpu, !strcmp(e->backend, "cuda"), &mem, e->solo_batch);
        if (plan_make_for_model(e->model, o->model_path, &pp, o->rundir, copy, &e->plan, e->plan_path,
                                sizeof e->plan_path, err) < 0) {
            pi_error_wrap(err, "placement for %s", o->model_path);
            goto fail;
        }
    }
    e->n_ctx = e->plan.n_ctx; /* the KV cache as the plan sized it */
    uint32_t max_seqs = e->plan.max_seqs;
    if (o->warm_share > 0 && !e->plan.layer_vram)   /* asked for, but an index-order plan has none */
        fprintf(stderr, "pid: warning: --warm-share %g has no effect: warm neurons need a placement from "
                "activation frequencies (a sparse sidecar for this model: pictl model profile)\n", o->warm_share);
    else if (o->warm_share > 0 && n_cpu == 0)
        fprintf(stderr, "pid: warning: --warm-share %g has no effect without CPU workers (every neuron is hot)\n",
                o->warm_share);

    step_params sp = {.n_layers = e->model->n_layers, .dim = e->model->dim, .n_ff = e->model->n_ff,
                      .n_vocab = e->model->n_vocab, .max_batch = step_capacity(e), .n_cpu_workers = n_cpu};
    if (step_layout_compute(&sp, &e->lay, err) < 0)
        goto fail;
    /* An earlier pid killed with SIGKILL left its segment and control socket. */
    int swept = stale_sweep("/dev/shm", o->rundir, err);
    if (swept < 0)
        goto fail;
    if (swept > 0)
        fprintf(stderr, "pid: removed %d stale file%s of earlier pids (step segments, control sockets)\n",
                swept, swept == 1 ? "" : "s");
    char seg_name[64];
    snprintf(seg_name, sizeof seg_name, "/pi-step-%d", (int)getpid());
    /* Huge pages when the kernel has them; workers inherit the fd. */
    e->seg = shm_segment_create(seg_name, e->lay.total_bytes, err);
    if (!e->seg)
        goto fail;
    e->base = shm_segment_base(e->seg);
    step_header_write(e->base, &e->lay);
    /* Steps start and end through the bell wherever a side spins; PI_STEP_BELL=0
     * leaves only the ZeroMQ messages (a measurement switch). */
    const char *bell = getenv("PI_STEP_BELL");
    e->bell = bell && !strcmp(bell, "0") ? NULL : step_bell_at(e->base, &e->lay);

    e->zctx = zmq_ctx_new();
    e->ctl = e->zctx ? zmq_socket(e->zctx, ZMQ_ROUTER) : NULL;
    if (!e->ctl) {
        pi_error_set(err, "zmq: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    int zero = 0;
    if (wire_socket_defaults(e->ctl, err) < 0 ||
        zmq_setsockopt(e->ctl, ZMQ_RCVTIMEO, &zero, sizeof zero) < 0)
        goto fail;
    snprintf(e->ctl_ep, sizeof e->ctl_ep, "ipc://%s/ctl-%d.sock", o->rundir, (int)getpid());
    unlink(e->ctl_ep + 6);
    if (zmq_bind(e->ctl, e->ctl_ep) < 0) {
        pi_error_set(err, "control socket %s: %s", e->ctl_ep, zmq_strerror(zmq_errno()));
        e->ctl_ep[0] = 0;
        goto fail;
    }

    sup_config sc = {.bin_dir = bin_dir, .model = e->model_path, .ctl = e->ctl_ep,
                     .shm_name = shm_segment_name(e->seg), .shm_fd = shm_segment_fd(e->seg),
                     .backend = e->backend,
                     .n_hot = e->plan.n_hot, .plan = e->plan_path,
                     .max_seqs = max_seqs, .max_batch = o->max_batch, .solo_batch = e->solo_batch,
                     .n_ctx = e->n_ctx, .n_cpu = n_cpu, .ffn = pi_ffn_mode_name(ffn),
                     .measure_recall = o->measure_recall, .warm_share = pp.warm_share,
                     .pred_q8 = o->pred_q8};
    if (supervisor_init(&e->sup, &sc, err) < 0)
        goto fail;
    /* CPUs of its own (supervisor.h): pid goes there with every thread it has
     * (libzmq's too); the GPU worker is started there. */
    if (e->sup.host_own) {
        int bad = pi_pin_threads(&e->sup.host_set, sizeof e->sup.host_set);
        if (bad)
            fprintf(stderr, "pid: warning: %d of its threads could not be moved to the CPUs left to it\n", bad);
    }
    /* CUDA where no CPU worker shares its CPUs (none run, or it has its own):
     * a decode step takes a few ms, so pid awaits its end spinning. */
    e->spin_us = spin_poll_us(!strcmp(e->backend, "cuda") && (n_cpu == 0 || e->sup.host_own) ? ENGINE_SPIN_US : 0);
    e->sched = scheduler_new(e->tok, e->model->n_vocab, max_seqs, o->max_batch, e->n_ctx, sink, err);
    if (e->sched && o->max_queue)
        scheduler_set_max_queue(e->sched, o->max_queue);
    e->entries = calloc(step_capacity(e), sizeof *e->entries);
    if (!e->sched || !e->entries) {
        if (e->sched)
            pi_error_set(err, "out of memory");
        goto fail;
    }
    e->want_timings = o->timings;
    if (!(e->tm = timings_new(n_cpu, err)))
        goto fail;
    return e;
fail:
    engine_free(&e);
    return NULL;
}

static void send_ctl(engine *e, sup_worker *w, Pi__Control *c)
{
    pi_error err;
    if (w->pid > 0 && wire_send(e->ctl, w->name, strlen(w->name), WIRE_CTL_HEADER, &c->base, &err) < 0)
        fprintf(stderr, "pid: sending to worker %s: %s\n", w->name, err.msg);
}

static void send_quit(engine *e)
{
    Pi__Quit q = PI__QUIT__INIT;
    Pi__Control c = PI__CONTROL__INIT;
    c.kind_case = PI__CONTROL__KIND_QUIT;
    c.quit = &q;
    for (uint32_t i = 0; i < e->sup.n; i++)
        send_ctl(e, &e->sup.w[i], &c);
}

static void reap_children(engine *e);

void engine_free(engine **ep)
{
    engine *e = *ep;
    if (!e)
        return;
    pm_qos_set(&e->qos, 0);
    if (e->ctl && supervisor_running(&e->sup)) {
        send_quit(e);
        double until = pi_now_ms() + QUIT_WAIT_MS;
        e->stopping = e->quitting = 1;
        while (supervisor_running(&e->sup) && pi_now_ms() < until) {
            reap_children(e);
            usleep(10000);
        }
        supervisor_kill_all(&e->sup);
        for (uint32_t i = 0; i < e->sup.n; i++)
            if (e->sup.w[i].pid > 0) {
                waitpid(e->sup.w[i].pid, NULL, 0);
                e->sup.w[i].pid = 0;
            }
    }
    supervisor_close(&e->sup);
    if (e->ctl)
        zmq_close(e->ctl);
    if (e->zctx)
        zmq_ctx_term(e->zctx);
    if (e->ctl_ep[0])
        unlink(e->ctl_ep + 6);
    scheduler_free(&e->sched);
    timings_free(&e->tm);
    free(e->entries);
    shm_segment_destroy(&e->seg);
    tokenizer_free(&e->tok);
    plan_release(&e->plan);
    if (e->plan_path[0])
        unlink(e->plan_path);
    model_close(&e->model);
    if (e->sfd >= 0) {
        close(e->sfd);
        sigprocmask(SIG_SETMASK, &e->old_mask, NULL);
    }
    free(e);
    *ep = NULL;
}

void engine_add_socket(engine *e, void *sock, engine_io_fn fn, void *ud)
{
    e->io_sock = sock;
    e->io_fn = fn;
    e->io_ud = ud;
}

int engine_submit(engine *e, const sched_request *r, pi_error *err)
{
    if (e->stopping) {
        pi_error_set(err, "pid is shutting down; request %llu refused", (unsigned long long)r->id);
        return SCHED_E_UNAVAILABLE;
    }
    return scheduler_submit(e->sched, r, err);
}

int engine_cancel(engine *e, const void *tag, size_t tag_len, uint64_t id)
{
    return scheduler_cancel(e->sched, tag, tag_len, id);
}

/* Peers blocked in a wait on the dead worker give up (seq_wait_geq -2). */
static void bump_abort(engine *e)
{
    e->abort_epoch++;
    seq_publish(step_abort_seq(e->base, &e->lay), e->abort_epoch);
}

static void step_failed(engine *e, const char *why)
{
    e->in_flight = 0;
    e->aborted = 0;
    timings_abandon(e->tm);
    scheduler_step_failed(e->sched, why);
}

static void on_worker_exit(engine *e, pid_t pid, int status)
{
    double now = pi_now_ms();
    sup_worker *w = supervisor_reap(&e->sup, pid, status, now, e->quitting);
    if (!w)
        return;
    if (e->quitting)
        return;
    fprintf(stderr, "pid: worker %s (pid %d) %s\n", w->name, (int)pid, w->last_error);
    if (e->starting && !w->ever_ready) {
        snprintf(e->start_err, sizeof e->start_err, "worker %s failed to start: %s", w->name,
                 w->last_error);
        e->start_failed = 1;
        return;
    }
    bump_abort(e);
    timings_abandon(e->tm); /* the next step waits for the restart: not a token period */
    if (w->is_gpu) {
        /* Its KV cache is gone: every sequence replays its history. The
         * step in flight is abandoned (no StepDone will come). */
        if (e->in_flight) {
            snprintf(e->fail_why, sizeof e->fail_why, "worker gpu %s", w->last_error);
            step_failed(e, e->fail_why);
        }
        scheduler_reset_kv(e->sched);
    } else if (e->in_flight) {
        /* The GPU worker's wait is aborted and answers StepDone{ok=false}. */
        e->aborted = 1;
        snprintf(e->fail_why, sizeof e->fail_why, "worker %s %s", w->name, w->last_error);
    }
}

static void reap_children(engine *e)
{
    int st;
    pid_t p;
    while ((p = waitpid(-1, &st, WNOHANG)) > 0)
        on_worker_exit(e, p, st);
}

static void on_signals(engine *e)
{
    struct signalfd_siginfo si;
    while (read(e->sfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
            fprintf(stderr, "pid: %s: stopping\n", strsignal((int)si.ssi_signo));
            engine_stop(e, 10.0);
        }
    }
    reap_children(e); /* SIGCHLDs coalesce: always reap them all */
}

/* StepDone{ok} for the step in flight (received at now): sample, and note
 * where the step's time went. */
static void step_complete(engine *e, const Pi__StepDone *d, double now)
{
    e->in_flight = 0;
    e->pred_tp += d->pred_true_pos;
    e->pred_fn += d->pred_false_neg;
    e->pred_fp += d->pred_false_pos;
    timings_done(e->tm, now, d->timings);
    for (uint32_t w = 0; w < e->lay.p.n_cpu_workers; w++)
        timings_cpu_stats(e->tm, w, step_cpu_stats_at(e->base, &e->lay, w));
    timings_sampling(e->tm, pi_now_ms());
    scheduler_complete(e->sched, step_logits(e->base, &e->lay), e->model->n_vocab);
    timings_end(e->tm, pi_now_ms());
}

/* The GPU worker's Ready said how many entries its solo steps take (0:
 * none): solo steps of at most that and the configured solo_batch. */
static void apply_solo(engine *e, uint32_t solo_max)
{
    uint32_t solo = e->solo_batch < solo_max ? e->solo_batch : solo_max;
    if (e->solo_batch && (solo != e->solo_now || !e->solo_told))
        fprintf(stderr, "pid: solo steps %s (solo_batch %u, the GPU worker takes %u)\n",
                solo ? "on" : "off", e->solo_batch, solo_max);
    e->solo_told = 1;
    e->solo_now = solo;
    scheduler_set_solo(e->sched, solo, e->solo_min);
}

/* A worker's in-step heartbeat thread speaks as "NAME/hb" (ctl_heartbeat.h):
 * proof that its process runs, nothing more. Returns 1 when m was one. */
static int on_step_heartbeat(engine *e, const wire_msg *m)
{
    const char *id = m->routing_id;
    size_t n = m->routing_id_len;
    if (n < 4 || memcmp(id + n - 3, "/hb", 3) != 0)
        return 0;
    sup_worker *w = supervisor_find(&e->sup, id, n - 3);
    if (w && w->pid > 0 && m->control->kind_case == PI__CONTROL__KIND_HEARTBEAT)
        supervisor_seen_hb(w, pi_now_ms());
    return 1;
}

static void on_control(engine *e, const wire_msg *m)
{
    if (on_step_heartbeat(e, m))
        return;
    sup_worker *w = supervisor_find(&e->sup, m->routing_id, m->routing_id_len);
    if (!w || w->pid <= 0)
        return; /* a stranger, or a dead worker's last words */
    double now = pi_now_ms();
    supervisor_seen(w, now);
    const Pi__Control *c = m->control;
    switch (c->kind_case) {
    case PI__CONTROL__KIND_HELLO:
        break;
    case PI__CONTROL__KIND_READY: {
        const Pi__Ready *r = c->ready;
        supervisor_ready(w, now);
        w->rss_bytes = r->rss_bytes;
        w->device_bytes = r->device_bytes;
        if (r->backend && *r->backend)
            snprintf(w->backend, sizeof w->backend, "%s", r->backend);
        if (!w->is_gpu)
            w->numa_node = r->numa_node;
        snprintf(w->detail, sizeof w->detail, "%s", r->detail ? r->detail : "");
        fprintf(stderr, "pid: worker %s ready (pid %d%s%s), %.0f ms after its start\n", w->name, (int)w->pid,
                w->detail[0] ? ", " : "", w->detail, now - w->spawned_ms);
        uint64_t warm = 0, kept = w->is_gpu ? supervisor_take_vram(&e->sup, &warm) : 0;
        if (kept && warm)
            fprintf(stderr, "pid: keeping the GPU worker's memory (%.1f MiB, and %.1f MiB of host memory for its "
                    "warm rows) for its restarts\n", (double)kept / 1048576.0, (double)warm / 1048576.0);
        else if (kept)
            fprintf(stderr, "pid: keeping the GPU worker's memory (%.1f MiB) for its restarts\n",
                    (double)kept / 1048576.0);
        if (w->is_gpu)
            apply_solo(e, r->solo_max);
        /* Its KV cache survived with the rest: no replay. */
        uint32_t resumed = w->is_gpu && r->memory_kept ? scheduler_restore_kv(e->sched) : 0;
        if (resumed)
            fprintf(stderr, "pid: %u sequence%s resume from the kept KV cache (no replay)\n", resumed,
                    resumed == 1 ? "" : "s");
        break;
    }
    case PI__CONTROL__KIND_HEARTBEAT:
        w->rss_bytes = c->heartbeat->rss_bytes;
        w->device_bytes = c->heartbeat->device_bytes;
        break;
    case PI__CONTROL__KIND_ERROR:
        snprintf(w->last_error, sizeof w->last_error, "%s",
                 c->error->message ? c->error->message : "error");
        fprintf(stderr, "pid: worker %s: %s\n", w->name, w->last_error);
        break;
    case PI__CONTROL__KIND_STEP_DONE: {
        const Pi__StepDone *d = c->step_done;
        if (!w->is_gpu || !e->in_flight || d->step_no != e->step_no)
            break; /* stale: a step already given up, or one the bell ended */
        if (d->ok && !e->aborted) {
            step_complete(e, d, now);
        } else {
            if (!e->aborted)
                snprintf(e->fail_why, sizeof e->fail_why, "gpu worker: %s",
                         d->error && *d->error ? d->error : "step failed");
            step_failed(e, e->fail_why);
        }
        break;
    }
    default:
        break;
    }
}

static void drain_control(engine *e)
{
    for (int i = 0; i < 256; i++) {
        wire_msg m;
        pi_error err;
        int r = wire_recv(e->ctl, 1, WIRE_CONTROL, &m, &err);
        if (r == WIRE_OK)
            on_control(e, &m);
        else if (r == WIRE_BAD || r == WIRE_VERSION)
            fprintf(stderr, "pid: bad control message: %s\n", err.msg);
        wire_msg_clear(&m);
        if (r == WIRE_AGAIN || r == WIRE_ERR)
            break;
    }
}

/* 1 when every entry is a generated token fed back: a decode step. */
static int is_decode(const sched_entry *en, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (!en[i].decode)
            return 0;
    return n > 0;
}

static void start_step(engine *e)
{
    double t0 = pi_now_ms();
    uint32_t n = scheduler_build(e->sched, e->entries);
    if (!n)
        return;
    int solo = scheduler_built_solo(e->sched);
    timings_begin(e->tm, t0, e->step_no + 1, n, is_decode(e->entries, n));
    if (solo) {     /* the CPU workers sit it out: no stats lines to read */
        timings_solo(e->tm);
        e->solo_steps++;
    }
    step_cmd *cmd = step_command(e->base, &e->lay);
    e->step_no++;
    cmd->step_id = e->step_no;
    cmd->n_seq = n;
    cmd->abort_epoch = e->abort_epoch;
    cmd->flags = (e->want_timings ? STEP_CMD_TIMINGS : 0) | (solo ? STEP_CMD_SOLO : 0);
    for (uint32_t i = 0; i < n; i++)
        cmd->seq[i] = (step_seq){.slot = e->entries[i].slot, .token = e->entries[i].token,
                                 .pos = e->entries[i].pos, .want_logits = e->entries[i].want_logits};
    Pi__Step st = PI__STEP__INIT;
    st.step_no = e->step_no;
    st.n_entries = n;
    st.abort_epoch = e->abort_epoch;
    st.timings = e->want_timings != 0;
    Pi__Control c = PI__CONTROL__INIT;
    c.kind_case = PI__CONTROL__KIND_STEP;
    c.step = &st;
    e->in_flight = 1;
    e->aborted = 0;
    if (e->bell)   /* a spinning worker starts now; the messages follow */
        step_bell_post(e->bell, e->step_no);
    /* The step is out from here: a worker may start it from the bell while
     * the messages are sent, so their sending counts in the round trip. */
    timings_sent(e->tm, pi_now_ms());
    /* The GPU worker last: CPU workers are then already waiting. */
    for (uint32_t i = 1; i < e->sup.n; i++)
        send_ctl(e, &e->sup.w[i], &c);
    send_ctl(e, &e->sup.w[0], &c);
}

/* Requests cannot wait forever for a worker that keeps failing to start. */
static void check_lost_workers(engine *e, double now)
{
    if (supervisor_all_ready(&e->sup)) {
        e->not_ready_since = 0;
        return;
    }
    if (!e->not_ready_since)
        e->not_ready_since = now;
    /* A worker whose own starts keep failing (its binary gone, its load
     * failing) will not be back soon: its requests fail now, with its error,
     * not after WORKER_LOST_MS, which is sized for a slow load. pid goes on
     * restarting it (back-off up to 5 s), so it serves again once it can. */
    const sup_worker *failing = NULL;
    for (uint32_t i = 0; i < e->sup.n && !failing; i++)
        if (e->sup.w[i].state != SUP_READY && e->sup.w[i].failed_starts >= START_FAILS_LOST)
            failing = &e->sup.w[i];
    if ((!failing && now - e->not_ready_since < WORKER_LOST_MS) ||
        scheduler_active(e->sched) + scheduler_queued(e->sched) == 0)
        return;
    char msg[700] = "workers unavailable";
    if (failing)
        snprintf(msg, sizeof msg, "worker %s cannot start (%u starts in a row failed): %s", failing->name,
                 failing->failed_starts, failing->last_error[0] ? failing->last_error : "no reason given");
    for (uint32_t i = 0; i < e->sup.n && !failing; i++)
        if (e->sup.w[i].state != SUP_READY) {
            snprintf(msg, sizeof msg, "worker %s is not running: %s", e->sup.w[i].name,
                     e->sup.w[i].last_error[0] ? e->sup.w[i].last_error : "still starting");
            break;
        }
    scheduler_fail_all(e->sched, SCHED_E_UNAVAILABLE, msg);
    e->in_flight = 0;
    timings_abandon(e->tm);
    e->not_ready_since = now;
}

void engine_stop(engine *e, double grace_s)
{
    if (e->stopping)
        return;
    e->stopping = 1;
    e->stop_deadline = pi_now_ms() + grace_s * 1e3;
}

int engine_stopping(const engine *e) { return e->stopping; }

/* spin_poll_until's look at the bell: 1 when the step in flight is over and
 * went well (a failed or aborted step is left to StepDone, which says why). */
static int bell_answered(void *ud)
{
    engine *e = ud;
    return e->in_flight && !e->aborted && step_bell_answered(e->bell, e->step_no, &e->answer) && e->answer.ok;
}

/* The step in flight, ended through the bell: as its StepDone would end it
 * (which, when it comes, is stale). */
static void bell_complete(engine *e, double now)
{
    const step_answer *a = &e->answer;
    Pi__StepTimings tm = PI__STEP_TIMINGS__INIT;
    double *f[STEP_ANSWER_TIMINGS] = {&tm.embed_us, &tm.attn_us, &tm.predict_us, &tm.publish_us, &tm.hot_us,
                                      &tm.wait_cpu_us, &tm.finish_us, &tm.logits_us, &tm.control_us,
                                      &tm.gpu_step_us};
    for (int i = 0; i < STEP_ANSWER_TIMINGS; i++)
        *f[i] = a->timings[i];
    Pi__StepDone d = PI__STEP_DONE__INIT;
    d.step_no = a->step_no;
    d.ok = 1;
    d.pred_true_pos = a->pred_true_pos;
    d.pred_false_neg = a->pred_false_neg;
    d.pred_false_pos = a->pred_false_pos;
    d.timings = a->has_timings ? &tm : NULL;
    timings_bell(e->tm);
    step_complete(e, &d, now);
}

/* One pass of the loop: wait up to timeout_ms, handle what arrived. */
static int loop_once(engine *e, long timeout_ms, pi_error *err)
{
    zmq_pollitem_t items[3] = {
        {.socket = e->ctl, .events = ZMQ_POLLIN},
        {.fd = e->sfd, .events = ZMQ_POLLIN},
        {.socket = e->io_sock, .events = ZMQ_POLLIN},
    };
    int n_items = e->io_sock ? 3 : 2;
    double due = supervisor_next_due(&e->sup, pi_now_ms());
    if (due >= 0 && due < (double)timeout_ms)
        timeout_ms = (long)due + 1;
    int r = spin_poll_until(items, n_items, timeout_ms, e->in_flight ? e->spin_us : 0,
                            e->bell ? bell_answered : NULL, e);
    if (r == SPIN_POLL_READY) {
        bell_complete(e, pi_now_ms());
        r = 0;
    }
    if (r < 0 && zmq_errno() != EINTR)
        return pi_error_set(err, "zmq_poll: %s", zmq_strerror(zmq_errno()));
    if (r > 0) {
        if (items[1].revents & ZMQ_POLLIN)
            on_signals(e);
        if (items[0].revents & ZMQ_POLLIN)
            drain_control(e);
        if (n_items > 2 && (items[2].revents & ZMQ_POLLIN))
            e->io_fn(e->io_ud);
    }
    reap_children(e);
    double now = pi_now_ms();
    supervisor_tick(&e->sup, now);
    if (!e->starting && !e->quitting) {
        check_lost_workers(e, now);
        if (!e->in_flight && supervisor_all_ready(&e->sup))
            start_step(e);
    }
    pm_qos_set(&e->qos, scheduler_active(e->sched) + scheduler_queued(e->sched) > 0);
    return 0;
}

int engine_start(engine *e, double timeout_s, pi_error *err)
{
    double now = pi_now_ms(), until = now + timeout_s * 1e3;
    e->starting = 1;
    for (uint32_t i = 0; i < e->sup.n; i++)
        if (supervisor_spawn(&e->sup, &e->sup.w[i], now, err) < 0) {
            e->starting = 0;
            return -1;
        }
    while (!supervisor_all_ready(&e->sup)) {
        if (loop_once(e, 50, err) < 0)
            break;
        if (e->start_failed) {
            pi_error_set(err, "%s (its messages are in pid's log)", e->start_err);
            break;
        }
        if (e->stopping) {
            pi_error_set(err, "stopped by a signal while starting the workers");
            break;
        }
        if (pi_now_ms() > until) {
            for (uint32_t i = 0; i < e->sup.n; i++)
                if (e->sup.w[i].state != SUP_READY) {
                    pi_error_set(err, "worker %s did not become ready within %.0f s%s%s",
                                 e->sup.w[i].name, timeout_s,
                                 e->sup.w[i].last_error[0] ? ": " : "", e->sup.w[i].last_error);
                    break;
                }
            break;
        }
    }
    e->starting = 0;
    return supervisor_all_ready(&e->sup) ? 0 : -1;
}

int engine_run(engine *e, int until_idle, pi_error *err)
{
    for (;;) {
        double now = pi_now_ms();
        if (until_idle && !e->in_flight && !scheduler_active(e->sched) && !scheduler_queued(e->sched))
            return 0;
        if (e->stopping && !e->quitting) {
            int idle = !e->in_flight && !scheduler_active(e->sched) && !scheduler_queued(e->sched);
            if (idle || now >= e->stop_deadline) {
                if (!idle)
                    scheduler_fail_all(e->sched, SCHED_E_UNAVAILABLE,
                                       "pid is shutting down: the request did not finish in time");
                e->in_flight = 0;
                e->quitting = 1;
                e->quit_deadline = now + QUIT_WAIT_MS;
                send_quit(e);
            }
        }
        if (e->quitting) {
            if (!supervisor_running(&e->sup))
                return 0;
            if (now >= e->quit_deadline) {
                supervisor_kill_all(&e->sup);
                e->quit_deadline = now + 1e9;
            }
        }
        if (loop_once(e, e->quitting ? 20 : 200, err) < 0)
            return -1;
    }
}

int engine_restart_worker(engine *e, const char *name, uint32_t *new_pid, pi_error *err)
{
    sup_worker *w = supervisor_find(&e->sup, name, strlen(name));
    if (!w)
        return pi_error_set(err, "no worker named '%s' (names: gpu, cpu:0..cpu:%u)", name,
                            e->sup.n - 2);
    if (e->stopping)
        return pi_error_set(err, "pid is shutting down");
    if (w->pid > 0) {
        pid_t p = w->pid;
        int st = 0;
        kill(p, SIGKILL);
        while (waitpid(p, &st, 0) < 0 && errno == EINTR)
            ;
        on_worker_exit(e, p, st);
    }
    snprintf(w->last_error, sizeof w->last_error, "restarted on request");
    w->restart_at_ms = 0;
    supervisor_tick(&e->sup, pi_now_ms());
    if (w->pid <= 0)
        return pi_error_set(err, "worker %s: could not be started again: %s", name, w->last_error);
    *new_pid = (uint32_t)w->pid;
    return 0;
}

const tokenizer *engine_tokenizer(const engine *e) { return e->tok; }
const pi_plan *engine_plan(const engine *e) { return &e->plan; }
supervisor *engine_supervisor(engine *e) { return &e->sup; }
const char *engine_model_path(const engine *e) { return e->model_path; }
uint32_t engine_queue_length(const engine *e) { return scheduler_queued(e->sched); }
uint32_t engine_active(const engine *e) { return scheduler_active(e->sched); }
uint64_t engine_uptime_ms(const engine *e) { return (uint64_t)(pi_now_ms() - e->t_start); }
uint32_t engine_max_tokens_limit(const engine *e) { return e->n_ctx; }

uint32_t engine_n_vocab(const engine *e) { return e->model->n_vocab; }

pi_ffn_mode engine_ffn(const engine *e)
{
    return e->ffn;
}

void engine_predictor_stats(const engine *e, uint64_t *tp, uint64_t *fn, uint64_t *fp)
{
    *tp = e->pred_tp;
    *fn = e->pred_fn;
    *fp = e->pred_fp;
}

uint64_t engine_solo_steps(const engine *e) { return e->solo_steps; }
uint32_t engine_solo_batch(const engine *e) { return e->solo_now; }

const timings *engine_timings(const engine *e) { return e->tm; }
int engine_timings_asked(const engine *e) { return e->want_timings; }
