/* The GPU worker loop (worker.h). Per Step, layer l at tick t:
 *   attn → xn into the segment's x buffer → layer counter = t → hot FFN →
 *   wait done[w] >= t for every CPU worker (giving up when the abort counter
 *   passes the Step's epoch) → finish with partial[0..N-1] in that order.
 * After the last layer the logits of the want_logits entries go into the
 * segment and StepDone answers pid. When the backend can drive a whole step
 * itself (run_step: the CUDA backend's graph, which publishes and waits on
 * the device), the worker launches it once per step; otherwise it calls the
 * backend layer by layer. Every buffer is sized at load: a step allocates
 * nothing but the protobuf reply. */
#include "worker.h"
#include "ctl_loop.h"
#include "predictor.h"
#include "pi_proc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "backend.h"
#include "cuda_needs.h"
#include "fd_pass.h"
#include "vram_arena.h"
#include "model.h"
#include "plan.h"
#include "pred_quant.h"
#include "segment.h"
#include "seqcount.h"
#include "sidecar.h"
#include "spin_poll.h"
#include "step_bell.h"
#include "step_layout.h"
#include "wire.h"

#define HEARTBEAT_MS 500
/* With the CUDA backend and no CPU workers (the cores are free), the next
 * Step is awaited spinning for this long after a step: pid samples and sends
 * it within ~0.1 ms in a decode. PI_ZMQ_SPIN_US overrides (spin_poll.h). */
#define GPU_WORKER_SPIN_US 2000

typedef struct gworker {
    const gpu_worker_opts *o;
    void *zctx, *sock;
    pi_model *m;
    const gpu_backend_ops *ops;
    gpu_backend *b;
    uint32_t n_hot;
    pi_plan plan;               /* kept: the backend was given its hot sets */
    shm_segment *seg;
    void *base;
    step_layout lay;
    gpu_entry *entries;         /* cap */
    uint32_t cap;               /* entries the segment holds: max(max_batch, solo_batch) */
    uint64_t solo_host;         /* cuda, solo steps: the pinned host bytes of their rows (warm ones among them) */
    const float **partials;     /* n_cpu_workers, into the segment */
    int32_t **active;           /* predicted: max_batch active lists, into the segment */
    float *pred_hidden;         /* predicted, host predictor: its hidden layer */
    int32_t *true_idx;          /* measure_recall: the true active set, n_ff */
    uint64_t tp, fn, fp;        /* this step's predictor decisions */
    int device_steps;           /* run_step drives whole steps */
    gpu_step_links links;       /* its view of the segment */
    const uint32_t **done_words;    /* the CPU workers' done counter words */
    gpu_step_times times;       /* this step's phases (Step.timings) */
    char detail[768];           /* Ready.detail: placement, shape, ffn mode, kept VRAM */
    uint64_t copied;            /* bytes copied into the backend's memory at load */
    int memory_kept;            /* it took the arena pid kept as it was */
    double last_sent_ms;
    double load_ms;             /* pi_now_ms() when load began */
    uint64_t first_step;        /* the command's step_id when it attached (ctl_loop.h) */
} gworker;

static int send_ctl(gworker *g, Pi__Control *c, pi_error *err)
{
    if (wire_send(g->sock, NULL, 0, WIRE_CTL_HEADER, &c->base, err) < 0)
        return pi_error_wrap(err, "gpu worker: sending to pid at %s", g->o->ctl);
    g->last_sent_ms = pi_now_ms();
    return 0;
}

static int connect_ctl(gworker *g, pi_error *err)
{
    if (!(g->zctx = zmq_ctx_new()) || !(g->sock = zmq_socket(g->zctx, ZMQ_DEALER)))
        return pi_error_set(err, "gpu worker: cannot create a ZeroMQ socket: %s", zmq_strerror(zmq_errno()));
    if (zmq_setsockopt(g->sock, ZMQ_ROUTING_ID, "gpu", 3) != 0 || wire_socket_defaults(g->sock, err) < 0)
        return pi_error_set(err, "gpu worker: socket options: %s", zmq_strerror(zmq_errno()));
    if (zmq_connect(g->sock, g->o->ctl) != 0)
        return pi_error_set(err, "gpu worker: cannot connect to pid's control endpoint %s: %s", g->o->ctl,
                            zmq_strerror(zmq_errno()));
    Pi__Hello h = PI__HELLO__INIT;
    h.name = "gpu";
    h.pid = (uint32_t)getpid();
    Pi__Control c = PI__CONTROL__INIT;
    c.kind_case = PI__CONTROL__KIND_HELLO;
    c.hello = &h;
    return send_ctl(g, &c, err);
}

static const gpu_backend_ops *pick_backend(const char *name, pi_error *err)
{
    if (!strcmp(name, "host"))
        return &gpu_backend_host;
    if (!strcmp(name, "cuda")) {
#ifdef PI_HAVE_CUDA
        if (pi_cuda_device_count() <= 0) {
            pi_error_set(err, "gpu worker: --backend cuda but no CUDA device is usable (no GPU, or no driver); "
                         "use --gpu-backend host");
            return NULL;
        }
        return &gpu_backend_cuda;
#else
        pi_error_set(err, "gpu worker: --backend cuda but this build has no CUDA backend (rebuild with "
                     "-DPI_CUDA=ON where the CUDA toolkit is installed); use --gpu-backend host");
        return NULL;
#endif
    }
    pi_error_set(err, "gpu worker: unknown backend '%s': use host or cuda", name);
    return NULL;
}

/* The segment as run_step sees it: the counters' words and the buffers. */
static int link_segment(gworker *g, pi_error *err)
{
    uint32_t nw = g->o->n_cpu_workers;
    g->done_words = calloc(nw ? nw : 1, sizeof *g->done_words);
    if (!g->done_words)
        return pi_error_set(err, "gpu worker: out of memory");
    for (uint32_t w = 0; w < nw; w++)
        g->done_words[w] = (const uint32_t *)&step_done_seq(g->base, &g->lay, w)->value;
    g->links = (gpu_step_links){.xn = step_x(g->base, &g->lay), .active = g->active,
                                .counts = step_active_counts(g->base, &g->lay),
                                .layer_tick = (uint32_t *)&step_layer_seq(g->base, &g->lay)->value,
                                .abort_word = (const uint32_t *)&step_abort_seq(g->base, &g->lay)->value,
                                .done = g->done_words, .partials = g->partials, .n_cpu_workers = nw,
                                .logits = step_logits(g->base, &g->lay)};
    g->device_steps = 1;
    return 0;
}

/* pid's offer (sent before this process started): the arena an earlier GPU
 * worker left, if pid keeps one; and the size of the arena this one needs. */
static int take_kept(gworker *g, gpu_backend_config *cfg, pi_error *err)
{
    const pi_model *m = g->m;
    const pi_plan *p = &g->plan;
    int cuda = !strcmp(g->ops->name, "cuda");
    /* the plan's layout as the backend allocates it (the KV cache in the backend's element, the
     * plan's; cuda: the predictors on the device when it predicts: no arena bytes beyond what it
     * lays out, they would be VRAM held) */
    uint64_t layout = p->weight_bytes + p->hot_bytes + p->kv_bytes;
    if (!cuda)
        layout += p->warm_bytes;    /* the host backend holds warm rows like hot ones */
    else
        layout += g->o->ffn == PI_FFN_PREDICTED && m->has_predictor ? plan_predictor_bytes(m, g->o->pred_q8) : 0;
    cfg->arena_bytes = vram_arena_size(layout, m->n_layers);
    /* cuda: the warm rows' host memory, a region per tensor a layer at most */
    uint64_t warm = g->solo_host ? g->solo_host : p->warm_bytes;
    cfg->warm_bytes = cuda && warm ? vram_arena_size(warm, m->n_layers) : 0;
    /* pid's set: a message a descriptor it keeps, then the end */
    for (;;) {
        fd_pass_msg msg;
        int fd = -1, rc = fd_pass_recv(g->o->vram_sock, 1, &msg, &fd, err);
        if (rc < 0)
            return pi_error_wrap(err, "gpu worker: the kept VRAM");
        if (rc == 0)
            return 0;   /* pid wrote the set before the fork: nothing waiting is its end */
        if (msg.kind == FD_PASS_NONE) {
            if (fd >= 0)
                close(fd);
            return 0;
        }
        int ours = fd >= 0 && !strcmp(msg.backend, g->ops->name);
        if (ours && msg.kind == FD_PASS_VRAM && cfg->kept_fd < 0) {
            cfg->kept_fd = fd;
            cfg->kept_bytes = msg.bytes;
        } else if (ours && msg.kind == FD_PASS_WARM && cfg->kept_warm_fd < 0) {
            cfg->kept_warm_fd = fd;
            cfg->kept_warm_bytes = msg.bytes;
        } else if (fd >= 0) {
            close(fd);
        }
    }
}

/* Hands pid what it is to keep (a message a new descriptor: the arena, the
 * warm rows' memory; then the end), and says in out what was copied in at
 * create. */
static int give_kept(gworker *g, char *out, size_t cap, pi_error *err)
{
    uint64_t bytes = 0, wbytes = 0, copied = g->ops->copied_bytes ? g->ops->copied_bytes(g->b) : 0;
    int fd = g->ops->keep_fd ? g->ops->keep_fd(g->b, &bytes) : -1;
    int wfd = fd >= 0 && g->ops->keep_warm_fd ? g->ops->keep_warm_fd(g->b, &wbytes) : -1;
    fd_pass_msg msg = {.magic = FD_PASS_MAGIC, .kind = FD_PASS_VRAM, .bytes = bytes};
    snprintf(msg.backend, sizeof msg.backend, "%s", g->ops->name);
    int rc = fd < 0 ? 0 : fd_pass_send(g->o->vram_sock, &msg, fd, err);
    msg.kind = FD_PASS_WARM;
    msg.bytes = wbytes;
    if (rc == 0 && wfd >= 0)
        rc = fd_pass_send(g->o->vram_sock, &msg, wfd, err);
    fd_pass_msg end = {.magic = FD_PASS_MAGIC, .kind = FD_PASS_NONE};
    if (rc == 0)
        rc = fd_pass_send(g->o->vram_sock, &end, -1, err);
    if (fd >= 0)
        close(fd);
    if (wfd >= 0)
        close(wfd);
    if (rc < 0)
        return pi_error_wrap(err, "gpu worker: handing pid the VRAM to keep");
    g->copied = copied;
    g->memory_kept = fd >= 0 && copied == 0;
    snprintf(out, cap, "; %.1f MiB copied in, %s%s", (double)copied / 1048576.0,
             fd < 0 ? "memory not kept" : copied ? "kept by pid" : "kept memory taken as it was",
             wfd >= 0 ? " (warm rows' host memory too)" : "");
    return 0;
}

/* The CUDA backend holds what it reads (device, warm and pinned memory), but
 * the load mapped gigabytes of the file's pages: their page-table entries
 * would be torn down only when this process exits, and a killed worker's
 * restart waits for that exit. Dropped now (the file's pages stay in the page
 * cache; a later read maps them again). */
static double drop_file_pages(gworker *g)
{
    if (strcmp(g->ops->name, "cuda") != 0)
        return 0;   /* the host backend reads its weights from the mapping at every step */
    double t0 = pi_now_ms();
    const gguf_file *f = g->m->file;
    if (madvise((void *)(uintptr_t)gguf_base(f), gguf_file_size(f), MADV_DONTNEED) != 0)
        fprintf(stderr, "gpu worker: dropping the model file's pages: %s (a killed worker exits slower)\n",
                strerror(errno));
    return pi_now_ms() - t0;
}

/* MemAvailable of /proc/meminfo in bytes; 0 when unknown. */
static uint64_t mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[128];
    unsigned long long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return (uint64_t)kb * 1024;
}

/* The solo steps this worker offers (cfg->solo_batch; Ready.solo_max says
 * what the backend took): the host backend any; CUDA an F16 llama whose rows
 * outside VRAM fit in the host's available memory with room to spare, since
 * they stay pinned (g->solo_host). Why not goes to stderr (pid's log). */
static void solo_setup(gworker *g, gpu_backend_config *cfg)
{
    const gpu_worker_opts *o = g->o;
    const pi_plan *p = &g->plan;
    if (o->solo_batch == 0 || strcmp(g->ops->name, "cuda") != 0) {
        cfg->solo_batch = o->solo_batch;
        return;
    }
    if (!cuda_needs_solo_ok(g->m)) {
        fprintf(stderr, "gpu worker: no solo steps: the CUDA backend runs them for F16 llama models only\n");
        return;
    }
    uint32_t *nv = malloc(g->m->n_layers * sizeof *nv);
    if (!nv)
        return;
    for (uint32_t l = 0; l < g->m->n_layers; l++)
        nv[l] = p->layer_vram ? p->layer_vram[l] : p->layer_hot ? p->layer_hot[l] : p->n_hot;
    uint64_t bytes = cuda_needs_solo_host_bytes(g->m, nv), avail = mem_available();
    free(nv);
    const uint64_t spare = 4ull << 30;     /* for the CPU workers' growth, pid, the page cache */
    if (bytes > p->warm_bytes && avail && bytes - p->warm_bytes + spare > avail) {
        fprintf(stderr, "gpu worker: no solo steps: their rows need %.1f GiB of pinned host memory, %.1f GiB "
                "available (start with --solo-batch 0 to silence this)\n", (double)bytes / 1073741824.0,
                (double)avail / 1073741824.0);
        return;
    }
    cfg->solo_batch = o->solo_batch;
    g->solo_host = bytes;
}

static int load(gworker *g, pi_error *err)
{
    const gpu_worker_opts *o = g->o;
    g->load_ms = pi_now_ms();
    if (!(g->ops = pick_backend(o->backend, err)))
        return -1;
    double t0 = pi_now_ms();
    if (!(g->m = model_open_sparse(o->model_path, err)))
        return -1;
    double t_model = pi_now_ms();
    /* the backend's needs: its KV element sizes the plan's kv_bytes (take_kept) */
    plan_params pp = {.max_seqs = o->max_seqs, .n_ctx = o->n_ctx, .n_cpu_workers = o->n_cpu_workers,
                      .warm_share = o->warm_share, .max_batch = o->max_batch, .solo_batch = o->solo_batch,
                      .pred_q8 = o->pred_q8, .backend = !strcmp(g->ops->name, "cuda") ? cuda_needs() : NULL};
    pi_plan *plan = &g->plan;
    int rc = o->plan_path ? plan_load_for_model(g->m, o->plan_path, &pp, plan, err)
             : o->n_hot < 0 ? plan_make(g->m, &pp, plan, err)
             : o->n_hot > UINT32_MAX ? pi_error_set(err, "--hot %" PRId64 " is too large", o->n_hot)
                                     : plan_make_fixed(g->m, &pp, (uint32_t)o->n_hot, plan, err);
    if (rc < 0)
        return pi_error_wrap(err, "gpu worker");
    g->n_hot = plan->n_hot;
    gpu_backend_config cfg = {.n_hot = plan->n_hot, .hot = plan->hot_ids, .hot_count = plan->layer_hot,
                              .hot_vram = plan->layer_vram,
                              .max_seqs = o->max_seqs, .n_ctx = plan->n_ctx, .max_batch = o->max_batch,
                              .device = o->device, .ffn = o->ffn, .kept_fd = -1, .kept_warm_fd = -1,
                              .spin_wait = o->n_cpu_workers == 0 || o->own_cpus};
    solo_setup(g, &cfg);
    if (o->vram_sock >= 0 && take_kept(g, &cfg, err) < 0)
        return -1;
    double t_plan = pi_now_ms();
    /* q8_0 predictors: converted on the CPU (seconds at 13B), but for a kept
     * CUDA arena, which holds them converted already: their shapes only */
    int layout_only = 0;
    if (o->pred_q8 && cfg.kept_fd >= 0 && !strcmp(g->ops->name, "cuda")) {
        int r = predictor_requant_layout(g->m, PI_TYPE_Q8_0, err);
        if (r < 0)
            return pi_error_wrap(err, "%s: --predictor-type q8_0", o->model_path);
        layout_only = r == 0;
    }
    if (o->pred_q8 && !layout_only && predictor_requant(g->m, PI_TYPE_Q8_0, err) < 0)
        return pi_error_wrap(err, "%s: --predictor-type q8_0", o->model_path);
    double t_pred = pi_now_ms();
    cfg.pred_shapes_only = layout_only;
    g->b = g->ops->create(g->m, &cfg, err);
    if (cfg.kept_fd >= 0)
        close(cfg.kept_fd);         /* the backend mapped what it needed */
    if (cfg.kept_warm_fd >= 0)
        close(cfg.kept_warm_fd);
    if (!g->b && layout_only) {
        /* the kept arena was not taken (or create failed otherwise): converted for real, loaded afresh */
        fprintf(stderr, "gpu worker: %s; converting the predictors and loading afresh\n", err->msg);
        model_close(&g->m);
        if (!(g->m = model_open_sparse(o->model_path, err)))
            return -1;
        if (predictor_requant(g->m, PI_TYPE_Q8_0, err) < 0)
            return pi_error_wrap(err, "%s: --predictor-type q8_0", o->model_path);
        cfg.kept_fd = cfg.kept_warm_fd = -1;
        cfg.kept_bytes = cfg.kept_warm_bytes = 0;
        cfg.pred_shapes_only = layout_only = 0;
        g->b = g->ops->create(g->m, &cfg, err);
    }
    if (!g->b)
        return -1;
    double t_backend = pi_now_ms(), drop_ms = drop_file_pages(g);
    char what[200], kept[96] = "";
    plan_describe_hot(plan, what, sizeof what);
    if (o->vram_sock >= 0 && give_kept(g, kept, sizeof kept, err) < 0)
        return -1;
    /* where the load's time went: a restart should spend little beyond the backend */
    char took[200];
    snprintf(took, sizeof took, "; loaded in %.2f s (model %.2f, plan %.2f, predictor %s %.2f, backend %.2f; "
             "file pages dropped %.2f)", (t_backend - t0) / 1e3, (t_model - t0) / 1e3, (t_plan - t_model) / 1e3,
             !o->pred_q8 ? "as stored" : layout_only ? "q8_0 kept" : "q8_0 converted", (t_pred - t_plan) / 1e3,
             (t_backend - t_pred) / 1e3, drop_ms / 1e3);
    snprintf(g->detail, sizeof g->detail, "%s; %u seqs x %u ctx; ffn %s%s%s%s", what, plan->max_seqs, plan->n_ctx,
             pi_ffn_mode_name(o->ffn),
             o->ffn != PI_FFN_PREDICTED ? ""
             : !strcmp(g->ops->name, "cuda") ? (o->pred_q8 ? " (q8_0 predictor on the GPU)" : " (predictor on the GPU)")
             : o->pred_q8 ? " (q8_0 predictor on the host)" : " (predictor on the host)", kept, took);

    /* The step segment: refuse one made for another shape. */
    if (!(g->seg = shm_segment_attach(o->shm_name, err)))
        return pi_error_wrap(err, "gpu worker");
    g->base = shm_segment_base(g->seg);
    step_params sp = {.n_layers = g->m->n_layers, .dim = g->m->dim, .n_ff = g->m->n_ff,
                      .n_vocab = g->m->n_vocab, .max_batch = g->cap, .n_cpu_workers = o->n_cpu_workers};
    if (step_header_check(g->base, shm_segment_size(g->seg), &sp, &g->lay, err) < 0)
        return pi_error_wrap(err, "gpu worker: segment %s", o->shm_name);
    if (g->ops->map_host && g->ops->map_host(g->b, g->base, shm_segment_size(g->seg), err) < 0)
        return pi_error_wrap(err, "gpu worker: segment %s", o->shm_name);
    g->first_step = step_command(g->base, &g->lay)->step_id;   /* before Ready: pid posts none yet */
    g->entries = calloc(g->cap, sizeof *g->entries);
    g->partials = calloc(o->n_cpu_workers ? o->n_cpu_workers : 1, sizeof *g->partials);
    if (!g->entries || !g->partials)
        return pi_error_set(err, "gpu worker: out of memory");
    for (uint32_t w = 0; w < o->n_cpu_workers; w++)
        g->partials[w] = step_partial(g->base, &g->lay, w);
    if (o->ffn == PI_FFN_PREDICTED) {
        if (!g->m->has_predictor)
            return pi_error_set(err, "gpu worker: --ffn predicted but %s has no predictor (blk.N.fc1/fc2)",
                                o->model_path);
        uint32_t R = 1;
        for (uint32_t l = 0; l < g->m->n_layers; l++)
            if (predictor_hidden(&g->m->layers[l]) > R)
                R = predictor_hidden(&g->m->layers[l]);
        g->active = calloc(o->max_batch, sizeof *g->active);
        /* the backend's predict op needs no host scratch */
        g->pred_hidden = g->ops->predict ? NULL : malloc(R * sizeof *g->pred_hidden);
        g->true_idx = o->measure_recall ? malloc(g->m->n_ff * sizeof *g->true_idx) : NULL;
        if (!g->active || (!g->ops->predict && !g->pred_hidden) || (o->measure_recall && !g->true_idx))
            return pi_error_set(err, "gpu worker: out of memory");
        for (uint32_t i = 0; i < o->max_batch; i++)
            g->active[i] = step_active_idx(g->base, &g->lay, i);
    }
    /* --measure-recall compares every layer's lists on the host: layer by
     * layer. PI_LAYER_STEPS=1 forces that path too (for comparisons). */
    const char *force = getenv("PI_LAYER_STEPS");
    if (g->ops->run_step && !o->measure_recall && !(force && *force == '1'))
        return link_segment(g, err);
    return 0;
}

/* Adds the agreement of a predicted and a true active list (both ascending). */
static void count_hits(gworker *g, const int32_t *pred, uint32_t np, const int32_t *truth, uint32_t nt)
{
    uint32_t i = 0, j = 0;
    while (i < np && j < nt) {
        if (pred[i] == truth[j]) {
            g->tp++;
            i++;
            j++;
        } else if (pred[i] < truth[j]) {
            g->fp++;
            i++;
        } else {
            g->fn++;
            j++;
        }
    }
    g->fp += np - i;
    g->fn += nt - j;
}

/* --ffn predicted: each entry's active neurons of layer l into the segment,
 * before the layer counter tells the CPU workers to read them: by the
 * backend's predict op on the device when it has one (the xn is there
 * already), else by the host predictor over x (the xn in the segment). */
static int predict_layer(gworker *g, uint32_t l, const float *x, uint32_t n, pi_error *err)
{
    const pi_layer *y = &g->m->layers[l];
    int32_t *counts = step_active_counts(g->base, &g->lay);
    if (g->ops->predict) {
        if (g->ops->predict(g->b, l, n, g->active, counts, err) < 0)
            return -1;
    } else {
        for (uint32_t i = 0; i < n; i++)
            counts[i] = (int32_t)predictor_active(y, g->m->sparse_threshold, x + (size_t)i * g->m->dim,
                                                  g->pred_hidden, g->active[i]);
    }
    for (uint32_t i = 0; g->true_idx && i < n; i++) {
        uint32_t nt = predictor_true_active(y, g->m->act, x + (size_t)i * g->m->dim, g->true_idx);
        count_hits(g, g->active[i], (uint32_t)counts[i], g->true_idx, nt);
    }
    return 0;
}

static int send_ready(gworker *g, pi_error *err)
{
    Pi__Ready r = PI__READY__INIT;
    r.rss_bytes = pi_rss_bytes(0);
    r.device_bytes = g->ops->device_bytes(g->b);
    r.backend = (char *)g->ops->name;
    r.numa_node = -1;
    r.detail = g->detail;
    r.copied_bytes = g->copied;
    r.memory_kept = g->memory_kept;
    r.solo_max = g->ops->solo_max ? g->ops->solo_max(g->b) : 0;
    Pi__Control c = PI__CONTROL__INIT;
    c.kind_case = PI__CONTROL__KIND_READY;
    c.ready = &r;
    return send_ctl(g, &c, err);
}

static int send_heartbeat(gworker *g, pi_error *err)
{
    Pi__Heartbeat h = PI__HEARTBEAT__INIT;
    h.rss_bytes = pi_rss_bytes(0);
    h.device_bytes = g->ops->device_bytes(g->b);
    Pi__Control c = PI__CONTROL__INIT;
    c.kind_case = PI__CONTROL__KIND_HEARTBEAT;
    c.heartbeat = &h;
    return send_ctl(g, &c, err);
}

/* Adds the milliseconds since *t0 to *acc and restarts the clock. */
static void lap(double *t0, double *acc)
{
    double t = pi_now_ms();
    *acc += (t - *t0) * 1000.0;  /* microseconds */
    *t0 = t;
}

/* The step layer by layer through the backend's ops (the host backend, or
 * --measure-recall); with timings, each phase on the monotonic clock (the
 * host backend computes synchronously; on CUDA, asynchronous work shows up
 * in the phase that waits for it). */
static int run_layers(gworker *g, const Pi__Step *st, uint32_t n, gpu_step_times *tm, pi_error *err)
{
    uint32_t L = g->m->n_layers;
    seq_wait_opts wo = seq_wait_opts_default();
    wo.abort = step_abort_seq(g->base, &g->lay);
    wo.abort_past = st->abort_epoch;
    seq_counter *layer_seq = step_layer_seq(g->base, &g->lay);
    float *x = step_x(g->base, &g->lay);
    double t0 = pi_now_ms();
    if (g->ops->embed(g->b, g->entries, n, err) < 0)
        return -1;
    lap(&t0, &tm->embed);
    for (uint32_t l = 0; l < L; l++) {
        uint32_t t = step_tick(st->step_no, L, l);
        if (g->ops->attn(g->b, l, g->entries, n, x, err) < 0)
            return -1;
        lap(&t0, &tm->attn);
        int predicted = g->o->ffn == PI_FFN_PREDICTED;
        if (predicted && predict_layer(g, l, x, n, err) < 0)
            return -1;
        lap(&t0, &tm->predict);
        seq_publish(layer_seq, t);
        lap(&t0, &tm->publish);
        if (predicted && g->ops->ffn_hot_active) {
            if (g->ops->ffn_hot_active(g->b, l, n, (const int32_t *const *)g->active,
                                       step_active_counts(g->base, &g->lay), err) < 0)
                return -1;
        } else if (g->ops->ffn_hot(g->b, l, n, err) < 0) {
            return -1;
        }
        lap(&t0, &tm->hot);
        for (uint32_t w = 0; w < g->o->n_cpu_workers; w++) {
            int r = seq_wait_geq(step_done_seq(g->base, &g->lay, w), t, &wo);
            if (r == -2)
                return pi_error_set(err, "step %" PRIu64 " aborted at layer %u waiting for cpu:%u (a worker died)",
                                    st->step_no, l, w);
            if (r != 0)
                return pi_error_set(err, "step %" PRIu64 ": wait for cpu:%u failed", st->step_no, w);
        }
        lap(&t0, &tm->wait_cpu);
        if (g->ops->finish(g->b, l, n, g->partials, g->o->n_cpu_workers, err) < 0)
            return -1;
        lap(&t0, &tm->finish);
    }
    int rc = g->ops->logits(g->b, g->entries, n, step_logits(g->base, &g->lay), err);
    lap(&t0, &tm->logits);
    return rc;
}

/* Runs one step; 0, or -1 with err (the step failed or was aborted). */
static int run_step(gworker *g, const Pi__Step *st, pi_error *err)
{
    const step_cmd *cmd = step_command(g->base, &g->lay);
    uint32_t n = cmd->n_seq, L = g->m->n_layers;
    memset(&g->times, 0, sizeof g->times);
    if (cmd->step_id != st->step_no)
        return pi_error_set(err, "step %" PRIu64 ": the segment holds step %" PRIu64 "'s entries", st->step_no,
                            cmd->step_id);
    int solo = (cmd->flags & STEP_CMD_SOLO) != 0;
    uint32_t most = solo ? (g->ops->solo_max ? g->ops->solo_max(g->b) : 0) : g->o->max_batch;
    if (n != st->n_entries || n > most)
        return pi_error_set(err, "step %" PRIu64 ": %u entries in the segment, %u in the message, %s %u",
                            st->step_no, n, st->n_entries, solo ? "solo steps of at most" : "max_batch", most);
    for (uint32_t i = 0; i < n; i++)
        g->entries[i] = (gpu_entry){.slot = cmd->seq[i].slot, .pos = cmd->seq[i].pos,
                                    .token = cmd->seq[i].token, .want_logits = cmd->seq[i].want_logits};
    if (solo) {     /* every neuron here; the CPU workers skip the step */
        double t0 = pi_now_ms();
        int rc = g->ops->run_solo(g->b, g->entries, n, step_logits(g->base, &g->lay), err);
        g->times.hot = (pi_now_ms() - t0) * 1000.0;
        return rc;
    }
    if (!g->device_steps) {
        return run_layers(g, st, n, &g->times, err);
    }
    int predicted = g->o->ffn == PI_FFN_PREDICTED;
    return g->ops->run_step(g->b, &g->links, g->entries, n, step_tick(st->step_no, L, 0), st->abort_epoch,
                            predicted, st->timings ? &g->times : NULL, err);
}

static int answer_step(gworker *g, const Pi__Step *st, pi_error *err)
{
    double started = pi_now_ms();
    pi_error step_err = {{0}};
    Pi__StepDone d = PI__STEP_DONE__INIT;
    d.step_no = st->step_no;
    g->tp = g->fn = g->fp = 0;
    d.ok = run_step(g, st, &step_err) == 0;
    d.pred_true_pos = g->tp;
    d.pred_false_neg = g->fn;
    d.pred_false_pos = g->fp;
    if (!d.ok)
        d.error = step_err.msg;
    Pi__StepTimings tm = PI__STEP_TIMINGS__INIT;
    if (st->timings) {
        const gpu_step_times *t = &g->times;
        tm.embed_us = t->embed;
        tm.attn_us = t->attn;
        tm.predict_us = t->predict;
        tm.publish_us = t->publish;
        tm.hot_us = t->hot;
        tm.wait_cpu_us = t->wait_cpu;
        tm.finish_us = t->finish;
        tm.logits_us = t->logits;
        tm.gpu_step_us = (pi_now_ms() - started) * 1000.0;
        /* the rest of the worker's time: message, entries, launch, answer */
        tm.control_us = tm.gpu_step_us - (t->embed + t->attn + t->predict + t->publish + t->hot + t->wait_cpu +
                                          t->finish + t->logits);
        d.timings = &tm;
    }
    /* The bell first: pid, spinning, takes the step's end from it. */
    step_answer a = {.step_no = d.step_no, .ok = d.ok, .has_timings = d.timings != NULL,
                     .pred_true_pos = d.pred_true_pos, .pred_false_neg = d.pred_false_neg,
                     .pred_false_pos = d.pred_false_pos,
                     .timings = {tm.embed_us, tm.attn_us, tm.predict_us, tm.publish_us, tm.hot_us, tm.wait_cpu_us,
                                 tm.finish_us, tm.logits_us, tm.control_us, tm.gpu_step_us}};
    step_bell_answer(step_bell_at(g->base, &g->lay), &a);
    Pi__Control c = PI__CONTROL__INIT;
    c.kind_case = PI__CONTROL__KIND_STEP_DONE;
    c.step_done = &d;
    return send_ctl(g, &c, err);
}

static int on_heartbeat(void *ud, pi_error *err)
{
    return send_heartbeat(ud, err);
}

static int on_step(void *ud, const Pi__Step *st, pi_error *err)
{
    return answer_step(ud, st, err);
}

/* Serves until Quit: 0; -1 on a socket failure. */
static int serve(gworker *g, pi_error *err)
{
    ctl_loop loop = {.sock = g->sock, .name = "gpu worker", .heartbeat_ms = HEARTBEAT_MS,
                     .last_sent_ms = &g->last_sent_ms, .heartbeat = on_heartbeat, .on_step = on_step, .ud = g,
                     .bell = step_bell_at(g->base, &g->lay), .cmd = step_command(g->base, &g->lay),
                     .first_step = g->first_step,
                     .zctx = g->zctx, .ctl_endpoint = g->o->ctl, .routing_id = "gpu",
                     .spin_us = spin_poll_us(g->ops != &gpu_backend_host &&
                                             (g->o->n_cpu_workers == 0 || g->o->own_cpus) ? GPU_WORKER_SPIN_US : 0)};
    return ctl_loop_run(&loop, err);
}

static void cleanup(gworker *g)
{
    free(g->entries);
    free(g->partials);
    free(g->active);
    free(g->pred_hidden);
    free(g->true_idx);
    free(g->done_words);
    /* The backend first: it unregisters the segment before it is unmapped. */
    if (g->b)
        g->ops->destroy(&g->b);
    shm_segment_destroy(&g->seg);
    plan_release(&g->plan);
    model_close(&g->m);
    if (g->sock) {
        int linger = 1000;   /* let a last Error reach pid */
        zmq_setsockopt(g->sock, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close(g->sock);
    }
    if (g->zctx)
        zmq_ctx_term(g->zctx);
}

int gpu_worker_run(const gpu_worker_opts *o, pi_error *err)
{
    gworker g = {.o = o, .cap = o->solo_batch > o->max_batch ? o->solo_batch : o->max_batch};
    int rc = -1;
    if (connect_ctl(&g, err) < 0)
        goto out;
    int loaded = load(&g, err);
    if (loaded == 0 && o->started_ms > 0) {
        /* the rest of a start: ZeroMQ and Hello before the load, the device
         * probe, then the step segment's mapping and registration after it */
        size_t len = strlen(g.detail);
        double now = pi_now_ms();
        snprintf(g.detail + len, sizeof g.detail - len, "; ready %.2f s after main (%.2f before the load)",
                 (now - o->started_ms) / 1e3, (g.load_ms - o->started_ms) / 1e3);
    }
    if (loaded < 0 || send_ready(&g, err) < 0) {
        /* Tell pid why before exiting; the load error is what matters. */
        Pi__Error e = PI__ERROR__INIT;
        e.code = PI__ERROR__CODE__INTERNAL;
        e.message = err->msg;
        Pi__Control c = PI__CONTROL__INIT;
        c.kind_case = PI__CONTROL__KIND_ERROR;
        c.error = &e;
        pi_error ignored;
        (void)send_ctl(&g, &c, &ignored);
        goto out;
    }
    rc = serve(&g, err);
out:
    cleanup(&g);
    return rc;
}
