/* The CPU worker loop (worker.h). Per Step, layer l at tick t: wait for the
 * layer counter >= t (giving up when the abort counter passes the Step's
 * epoch), compute this shard's partial FFN output for every entry from the
 * segment's x into this worker's partial buffer, publish done = t; before the
 * last layer's tick, the step's wait and compute times go into this worker's
 * stats line (docs/shm.md). A step of several entries goes through the
 * batched kernels (ffn_sparse_run_batch: each neuron's rows read once for
 * all the entries that need it, each entry's result bit for bit its own
 * call's); a step of one entry through ffn_sparse_run. Waits inside a step
 * spin. A solo step (STEP_CMD_SOLO) is skipped: no ticks, no stats line.
 * The model file is closed once the shard is copied out: the worker
 * keeps only its rows. A step allocates nothing. */
#include "worker.h"
#include "ctl_loop.h"
#include "pi_proc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "ffn_pool.h"
#include "model.h"
#include "plan.h"
#include "segment.h"
#include "seqcount.h"
#include "shard.h"
#include "spin_poll.h"
#include "step_layout.h"
#include "wire.h"

#define HEARTBEAT_MS 500
#define SPIN_MIN_CPUS 8   /* online CPUs from which waits inside a step spin */
/* Entries one batched pass takes: every thread holds a dim-float buffer per
 * entry of a pass (64 x 20 KB at dim 5120) and the worker a list per entry
 * (64 x the largest layer's cold neurons); a larger step goes in several
 * passes, each reading the rows again. */
#define BATCH_PASS_MAX 64

typedef struct cworker {
    const cpu_worker_opts *o;
    char name[32];
    void *zctx, *sock;
    cpu_shard *shard;
    uint32_t n_layers;
    ffn_pool *pool;             /* exact/predicted: the fast kernels' threads */
    ffn_sparse_layer *sparse;   /* per layer: the shard as ffn_sparse rows */
    uint32_t *all;              /* 0..n-1: the exact mode's candidate list */
    uint32_t *local;            /* predicted: a pass's lists of the entries' active neurons in this shard */
    size_t local_stride;        /* room for one entry's list: the largest layer's neuron count */
    uint32_t pass;              /* entries a batched pass takes: min(max_batch, BATCH_PASS_MAX) */
    /* A batched pass's entries (pass each): inputs, lists, counts, outputs. */
    const float **bx;
    const uint32_t **bact;
    size_t *bcount;
    float **bout;
    shm_segment *seg;
    void *base;
    step_layout lay;
    char detail[256];
    double last_sent_ms;
    uint64_t first_step;    /* the command's step_id when it attached (ctl_loop.h) */
} cworker;

int cpu_list_parse(const char *s, cpu_set_t *set, pi_error *err)
{
    CPU_ZERO(set);
    const char *p = s;
    int any = 0;
    while (*p) {
        char *end;
        errno = 0;
        unsigned long a = strtoul(p, &end, 10), b;
        if (errno || end == p || *p == '-' || *p == '+')
            return pi_error_set(err, "CPU list '%s': expected numbers and ranges like 0-3,8", s);
        b = a;
        p = end;
        if (*p == '-') {
            const char *q = p + 1;
            b = strtoul(q, &end, 10);
            if (errno || end == q || *q == '-' || *q == '+' || b < a)
                return pi_error_set(err, "CPU list '%s': bad range near '%s'", s, p);
            p = end;
        }
        if (b >= CPU_SETSIZE)
            return pi_error_set(err, "CPU list '%s': CPU %lu is beyond %d", s, b, CPU_SETSIZE - 1);
        for (unsigned long c = a; c <= b; c++)
            CPU_SET(c, set);
        any = 1;
        if (*p == ',')
            p++;
        else if (*p)
            return pi_error_set(err, "CPU list '%s': unexpected '%c'", s, *p);
    }
    if (!any)
        return pi_error_set(err, "CPU list '%s' is empty", s);
    return 0;
}

static int send_ctl(cworker *c, Pi__Control *m, pi_error *err)
{
    if (wire_send(c->sock, NULL, 0, WIRE_CTL_HEADER, &m->base, err) < 0)
        return pi_error_wrap(err, "%s: sending to pid at %s", c->name, c->o->ctl);
    c->last_sent_ms = pi_now_ms();
    return 0;
}

static int connect_ctl(cworker *c, pi_error *err)
{
    if (!(c->zctx = zmq_ctx_new()) || !(c->sock = zmq_socket(c->zctx, ZMQ_DEALER)))
        return pi_error_set(err, "%s: cannot create a ZeroMQ socket: %s", c->name, zmq_strerror(zmq_errno()));
    if (zmq_setsockopt(c->sock, ZMQ_ROUTING_ID, c->name, strlen(c->name)) != 0 ||
        wire_socket_defaults(c->sock, err) < 0)
        return pi_error_set(err, "%s: socket options: %s", c->name, zmq_strerror(zmq_errno()));
    if (zmq_connect(c->sock, c->o->ctl) != 0)
        return pi_error_set(err, "%s: cannot connect to pid's control endpoint %s: %s", c->name, c->o->ctl,
                            zmq_strerror(zmq_errno()));
    Pi__Hello h = PI__HELLO__INIT;
    h.name = c->name;
    h.pid = (uint32_t)getpid();
    Pi__Control m = PI__CONTROL__INIT;
    m.kind_case = PI__CONTROL__KIND_HELLO;
    m.hello = &h;
    return send_ctl(c, &m, err);
}

/* The fast path: the shard's layers as ffn_sparse rows, a pool with one
 * thread per CPU this worker may run on, the best kernels this CPU has, and
 * room for a batched pass of a step of max_batch entries. */
static int make_pool(cworker *c, uint32_t max_batch, pi_error *err)
{
    const cpu_shard *sh = c->shard;
    uint32_t n = 0;     /* the largest layer's neuron count */
    for (uint32_t l = 0; l < sh->n_layers; l++)
        n = sh->layers[l].n > n ? sh->layers[l].n : n;
    cpu_set_t set;
    uint32_t threads = 1;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        threads = (uint32_t)CPU_COUNT(&set);
    const ffn_kernels *k = ffn_kernels_select(err);
    if (!k)
        return pi_error_wrap(err, "%s", c->name);
    c->sparse = calloc(sh->n_layers, sizeof *c->sparse);
    c->all = malloc((n ? n : 1) * sizeof *c->all);
    if (!c->sparse || !c->all)
        return pi_error_set(err, "%s: out of memory", c->name);
    for (uint32_t j = 0; j < n; j++)
        c->all[j] = j;
    c->local_stride = n ? n : 1;
    c->pass = max_batch == 0 ? 1 : max_batch < BATCH_PASS_MAX ? max_batch : BATCH_PASS_MAX;
    c->local = malloc((size_t)c->pass * c->local_stride * sizeof *c->local);
    c->bx = malloc(c->pass * sizeof *c->bx);
    c->bact = malloc(c->pass * sizeof *c->bact);
    c->bcount = malloc(c->pass * sizeof *c->bcount);
    c->bout = malloc(c->pass * sizeof *c->bout);
    if (!c->local || !c->bx || !c->bact || !c->bcount || !c->bout)
        return pi_error_set(err, "%s: out of memory for %u entries a pass of %zu neurons", c->name, c->pass,
                            c->local_stride);
    for (uint32_t l = 0; l < sh->n_layers; l++)
        cpu_shard_sparse_layer(sh, l, &c->sparse[l]);
    c->pool = ffn_pool_new_batch(threads, sh->dim, c->pass, k, err);
    return c->pool ? 0 : pi_error_wrap(err, "%s", c->name);
}

static int load(cworker *c, pi_error *err)
{
    const cpu_worker_opts *o = c->o;
    if (o->of == 0 || o->index >= o->of)
        return pi_error_set(err, "%s: --index %u --of %u: the index must be below the count", c->name, o->index,
                            o->of);
    pi_model *m = model_open(o->model_path, err);
    if (!m)
        return -1;
    /* The default K is the plan's; max_seqs does not change it. */
    plan_params pp = {.max_seqs = o->max_seqs ? o->max_seqs : 1, .n_ctx = o->n_ctx, .n_cpu_workers = o->of,
                      .warm_share = o->warm_share};
    pi_plan plan;
    int rc = o->plan_path ? plan_load_for_model(m, o->plan_path, &pp, &plan, err)
             : o->n_hot < 0 ? plan_make(m, &pp, &plan, err)
             : o->n_hot > UINT32_MAX ? pi_error_set(err, "--hot %" PRId64 " is too large", o->n_hot)
                                     : plan_make_fixed(m, &pp, (uint32_t)o->n_hot, &plan, err);
    if (rc < 0) {
        model_close(&m);
        return pi_error_wrap(err, "%s", c->name);
    }
    if (plan.order) {
        const int32_t **ids = calloc(m->n_layers ? m->n_layers : 1, sizeof *ids);
        uint32_t *counts = calloc(m->n_layers ? m->n_layers : 1, sizeof *counts);
        if (ids && counts) {
            for (uint32_t l = 0; l < m->n_layers; l++) {
                plan_set set = plan_shard_set(&plan, o->index, l);
                ids[l] = set.ids;
                counts[l] = set.n;
            }
            c->shard = cpu_shard_new_sets(m, ids, counts, o->numa_node, err);
        } else {
            pi_error_set(err, "out of memory");
        }
        free(ids);
        free(counts);
    } else {
        c->shard = cpu_shard_new(m, plan.shards[o->index].begin, plan.shards[o->index].end, o->numa_node, err);
    }
    char what[160];
    plan_describe_shard(&plan, o->index, what, sizeof what);
    plan_release(&plan);
    step_params sp = {.n_layers = m->n_layers, .dim = m->dim, .n_ff = m->n_ff, .n_vocab = m->n_vocab,
                      .n_cpu_workers = o->of};
    c->n_layers = m->n_layers;
    model_close(&m);
    if (!c->shard)
        return pi_error_wrap(err, "%s", c->name);

    /* The step segment. max_batch is pid's choice: take it from the header,
     * then let the check compare everything else with this model. */
    if (!(c->seg = shm_segment_attach(o->shm_name, err)))
        return pi_error_wrap(err, "%s", c->name);
    c->base = shm_segment_base(c->seg);
    if (shm_segment_size(c->seg) >= sizeof(step_header))
        sp.max_batch = step_header_at(c->base)->params.max_batch;
    if (step_header_check(c->base, shm_segment_size(c->seg), &sp, &c->lay, err) < 0)
        return pi_error_wrap(err, "%s: segment %s", c->name, o->shm_name);
    c->first_step = step_command(c->base, &c->lay)->step_id;   /* before Ready: pid posts none yet */
    if (make_pool(c, c->lay.p.max_batch, err) < 0)
        return -1;
    snprintf(c->detail, sizeof c->detail, "%s, %.1f MiB%s%s; ffn %s%s%s", what, (double)c->shard->bytes / (1 << 20),
             c->shard->numa_node >= 0 ? "" : " (no NUMA placement)",
             c->shard->bytes && !c->shard->huge_pages ? " (no huge pages)" : "", pi_ffn_mode_name(o->ffn),
             c->pool ? ", kernels " : "", c->pool ? ffn_pool_kernels(c->pool)->name : "");
    return 0;
}

static int send_ready(cworker *c, pi_error *err)
{
    Pi__Ready r = PI__READY__INIT;
    r.rss_bytes = pi_rss_bytes(0);
    r.backend = "cpu";
    r.numa_node = c->shard->numa_node;
    r.detail = c->detail;
    Pi__Control m = PI__CONTROL__INIT;
    m.kind_case = PI__CONTROL__KIND_READY;
    m.ready = &r;
    return send_ctl(c, &m, err);
}

static int send_heartbeat(cworker *c, pi_error *err)
{
    Pi__Heartbeat h = PI__HEARTBEAT__INIT;
    h.rss_bytes = pi_rss_bytes(0);
    Pi__Control m = PI__CONTROL__INIT;
    m.kind_case = PI__CONTROL__KIND_HEARTBEAT;
    m.heartbeat = &h;
    return send_ctl(c, &m, err);
}

/* --ffn predicted: entry e's active neurons of layer l (the GPU worker's
 * list) that this shard holds, as record indices in room `slot` (< c->pass)
 * of c->local (returned in *list); returns their count. */
static uint32_t shard_active(cworker *c, uint32_t l, uint32_t e, uint32_t slot, const uint32_t **list)
{
    const int32_t *idx = step_active_idx(c->base, &c->lay, e);
    int32_t cnt = step_active_counts(c->base, &c->lay)[e];
    uint32_t n = cnt < 0 ? 0 : cnt > (int32_t)c->lay.p.n_ff ? c->lay.p.n_ff : (uint32_t)cnt;
    uint32_t *local = c->local + slot * c->local_stride;
    *list = local;
    return cpu_shard_local_list(c->shard, l, idx, n, local);
}

/* Entry e of layer l: this shard's partial FFN output into pe. */
static int shard_ffn(cworker *c, uint32_t l, const float *xe, float *pe, uint32_t e, pi_error *err)
{
    if (c->o->ffn == PI_FFN_DENSE)
        return ffn_dense_run(c->pool, &c->sparse[l], c->shard->act, xe, c->all, pe, err);
    if (c->o->ffn == PI_FFN_PREDICTED) {
        const uint32_t *list;
        uint32_t na = shard_active(c, l, e, 0, &list);
        return ffn_sparse_run(c->pool, &c->sparse[l], c->shard->act, xe, list, na, pe, err);
    }
    return ffn_sparse_run(c->pool, &c->sparse[l], c->shard->act, xe, c->all, c->shard->layers[l].n, pe, err);
}

/* Entries e0 .. e0 + n of layer l (n <= c->pass) in one batched call, each
 * entry's partial bit for bit what shard_ffn gives it. The GPU worker writes
 * ascending lists, so the shard-local ones are ascending too; should one
 * not be (the merge needs them sorted), the pass goes entry by entry with
 * the same lists. */
static int shard_ffn_pass(cworker *c, uint32_t l, uint32_t e0, uint32_t n, const float *x, float *partial,
                          pi_error *err)
{
    const ffn_sparse_layer *fl = &c->sparse[l];
    uint32_t dim = c->shard->dim;
    int sorted = 1;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t e = e0 + i;
        c->bx[i] = x + (size_t)e * dim;
        c->bout[i] = partial + (size_t)e * dim;
        if (c->o->ffn == PI_FFN_PREDICTED) {
            c->bcount[i] = shard_active(c, l, e, i, &c->bact[i]);
            sorted = sorted && ffn_list_ascending(c->bact[i], c->bcount[i]);
        } else {
            c->bact[i] = c->all;   /* exact and dense: every neuron of the shard */
            c->bcount[i] = fl->n_neurons;
        }
    }
    if (!sorted) {
        for (uint32_t i = 0; i < n; i++)
            if (ffn_sparse_run(c->pool, fl, c->shard->act, c->bx[i], c->bact[i], c->bcount[i], c->bout[i], err) < 0)
                return -1;
        return 0;
    }
    ffn_batch b = {.n = n, .x = c->bx, .active = c->bact, .n_active = c->bcount, .out = c->bout};
    if (c->o->ffn == PI_FFN_DENSE)
        return ffn_dense_run_batch(c->pool, fl, c->shard->act, &b, err);
    return ffn_sparse_run_batch(c->pool, fl, c->shard->act, &b, err);
}

/* All n entries of layer l, c->pass at a time. */
static int shard_ffn_batch(cworker *c, uint32_t l, uint32_t n, const float *x, float *partial, pi_error *err)
{
    for (uint32_t e0 = 0; e0 < n; e0 += c->pass)
        if (shard_ffn_pass(c, l, e0, n - e0 < c->pass ? n - e0 : c->pass, x, partial, err) < 0)
            return -1;
    return 0;
}

static uint64_t ms_to_ns(double ms) { return ms > 0 ? (uint64_t)(ms * 1e6 + 0.5) : 0; }

/* One step: 0 when done or aborted (pid re-synchronises by message); -1 with
 * err when the segment is inconsistent, which is fatal (pid restarts us and
 * the GPU worker's wait is aborted). Its time waiting for the GPU and
 * computing goes into this worker's stats line before the last done tick. */
static int run_step(cworker *c, const Pi__Step *st, pi_error *err)
{
    const step_cmd *cmd = step_command(c->base, &c->lay);
    uint32_t n = cmd->n_seq, L = c->n_layers;
    if (cmd->step_id != st->step_no || n != st->n_entries || n > c->lay.p.max_batch)
        return pi_error_set(err, "%s: step %" PRIu64 ": the segment holds step %" PRIu64 " with %u entries "
                            "(message: %u, max_batch %u)", c->name, st->step_no, cmd->step_id, n,
                            st->n_entries, c->lay.p.max_batch);
    /* A solo step is the GPU worker's alone: no layer tick comes for it and
     * none is awaited from us; the next step's ticks are its own (step_tick). */
    if (cmd->flags & STEP_CMD_SOLO)
        return 0;
    /* Spin where cores are to spare: the GPU may store the layer counter
     * without a futex wake, and a hand-off should cost a cache-line transfer,
     * not a wake-up. On a small machine spinning workers would take the
     * cores the GPU worker and pid need: spin briefly, then sleep in short
     * slices (which also notice a store that woke nobody). */
    seq_wait_opts wo = seq_wait_opts_default();
    if (sysconf(_SC_NPROCESSORS_ONLN) >= SPIN_MIN_CPUS)
        wo.spin_iters = SEQ_SPIN_FOREVER;
    wo.abort = step_abort_seq(c->base, &c->lay);
    wo.abort_past = st->abort_epoch;
    seq_counter *layer_seq = step_layer_seq(c->base, &c->lay);
    seq_counter *done = step_done_seq(c->base, &c->lay, c->o->index);
    const float *x = step_x(c->base, &c->lay);
    float *partial = step_partial(c->base, &c->lay, c->o->index);
    double wait_ms = 0, cold_ms = 0;
    for (uint32_t l = 0; l < L; l++) {
        uint32_t t = step_tick(st->step_no, L, l);
        double t0 = pi_now_ms();
        int r = seq_wait_geq(layer_seq, t, &wo);
        if (r == -2)
            return 0;   /* aborted: a peer died; pid sends the next Step */
        if (r != 0)
            return pi_error_set(err, "%s: step %" PRIu64 ": waiting for layer %u failed", c->name, st->step_no, l);
        double t1 = pi_now_ms();
        int rc = n == 1 ? shard_ffn(c, l, x, partial, 0, err) : n > 1 ? shard_ffn_batch(c, l, n, x, partial, err) : 0;
        if (rc < 0)
            return pi_error_wrap(err, "%s: layer %u", c->name, l);
        double t2 = pi_now_ms();
        wait_ms += t1 - t0;
        cold_ms += t2 - t1;
        if (l + 1 == L)
            *step_cpu_stats_at(c->base, &c->lay, c->o->index) = (step_cpu_stats){
                .step_no = st->step_no, .cold_ns = ms_to_ns(cold_ms), .wait_ns = ms_to_ns(wait_ms), .layers = L};
        seq_publish(done, t);
    }
    return 0;
}

static int on_heartbeat(void *ud, pi_error *err)
{
    return send_heartbeat(ud, err);
}

static int on_step(void *ud, const Pi__Step *st, pi_error *err)
{
    return run_step(ud, st, err);
}

/* Serves until Quit: 0; -1 on a socket failure or a bad step. */
static int serve(cworker *c, pi_error *err)
{
    ctl_loop loop = {.sock = c->sock, .name = c->name, .heartbeat_ms = HEARTBEAT_MS,
                     .last_sent_ms = &c->last_sent_ms, .heartbeat = on_heartbeat, .on_step = on_step, .ud = c,
                     .bell = step_bell_at(c->base, &c->lay), .cmd = step_command(c->base, &c->lay),
                     .first_step = c->first_step, .zctx = c->zctx, .ctl_endpoint = c->o->ctl, .routing_id = c->name,
                     /* its cores spin inside a step; between steps only when asked (PI_ZMQ_SPIN_US) */
                     .spin_us = spin_poll_us(0)};
    return ctl_loop_run(&loop, err);
}

static void send_error(cworker *c, const char *msg)
{
    Pi__Error e = PI__ERROR__INIT;
    e.code = PI__ERROR__CODE__INTERNAL;
    e.message = (char *)msg;
    Pi__Control m = PI__CONTROL__INIT;
    m.kind_case = PI__CONTROL__KIND_ERROR;
    m.error = &e;
    pi_error ignored;
    (void)send_ctl(c, &m, &ignored);
}

int cpu_worker_run(const cpu_worker_opts *o, pi_error *err)
{
    cworker c = {.o = o};
    snprintf(c.name, sizeof c.name, "cpu:%u", o->index);
    int rc = -1;
    if (connect_ctl(&c, err) < 0)
        goto out;
    if (load(&c, err) < 0 || send_ready(&c, err) < 0) {
        send_error(&c, err->msg);
        goto out;
    }
    rc = serve(&c, err);
    if (rc < 0)
        send_error(&c, err->msg);
out:
    ffn_pool_free(&c.pool);
    free(c.sparse);
    free(c.all);
    free(c.local);
    free((void *)c.bx);
    free((void *)c.bact);
    free(c.bcount);
    free(c.bout);
    cpu_shard_free(&c.shard);
    shm_segment_destroy(&c.seg);
    if (c.sock) {
        int linger = 1000;   /* let a last Error reach pid */
        zmq_setsockopt(c.sock, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close(c.sock);
    }
    if (c.zctx)
        zmq_ctx_term(c.zctx);
    return rc;
}
