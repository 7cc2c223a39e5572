/* pi-bench-sync: the per-layer cost of pi's control and synchronisation with
 * no compute. Real processes and the real step segment: a "GPU" side
 * publishes each layer's xn and tick, N CPU-worker processes wait for the
 * tick, write their partial and publish their done counter, and the GPU side
 * waits for all of them. Also times the per-step ZeroMQ control round trip
 * (Step to every worker, StepDone back) and, with a GPU, the stream-driven
 * handshake. Prints a markdown table (docs/benchmarks.md). */
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "bench_sync.h"
#include "pi.pb-c.h"
#include "segment.h"
#include "seqcount.h"
#include "step_layout.h"

typedef struct bench {
    uint32_t layers, steps, warmup, workers, dim;
    shm_segment *seg;
    step_layout lay;
} bench;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void pin(int cpu)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % (n > 0 ? n : 1), &set);
    sched_setaffinity(0, sizeof set, &set); /* best effort: a benchmark, not a requirement */
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int new_segment(bench *b, pi_error *err)
{
    step_params p = {.n_layers = b->layers, .dim = b->dim, .n_ff = 64, .n_vocab = 32,
                     .max_batch = 1, .n_cpu_workers = b->workers};
    if (step_layout_compute(&p, &b->lay, err) != 0)
        return -1;
    char name[64];
    snprintf(name, sizeof name, "/pi-bench-sync-%d", (int)getpid());
    b->seg = shm_segment_create_flags(name, b->lay.total_bytes, SHM_SEG_NO_HUGE, err);
    if (!b->seg)
        return -1;
    step_header_write(shm_segment_base(b->seg), &b->lay);
    return 0;
}

/* A CPU worker: answers every layer tick until pid's abort counter moves. */
static void worker_loop(bench *b, uint32_t w, uint32_t spin)
{
    pin((int)w + 1);
    void *base = shm_segment_base(b->seg);
    seq_counter *layer = step_layer_seq(base, &b->lay), *done = step_done_seq(base, &b->lay, w);
    const float *x = step_x(base, &b->lay);
    float *part = step_partial(base, &b->lay, w);
    seq_wait_opts o = seq_wait_opts_default();
    o.abort = step_abort_seq(base, &b->lay);
    o.abort_past = 0;
    if (spin)
        o.spin_iters = SEQ_SPIN_FOREVER;
    for (uint32_t t = 1;; t++) {
        if (seq_wait_geq(layer, t, &o) != 0)
            _exit(0);
        float v = x[0];
        for (uint32_t i = 0; i < b->dim; i++)
            part[i] = v;
        seq_publish(done, t);
    }
}

static int spawn_workers(bench *b, pid_t *pids, uint32_t spin)
{
    for (uint32_t w = 0; w < b->workers; w++) {
        pids[w] = fork();
        if (pids[w] < 0)
            return -1;
        if (pids[w] == 0)
            worker_loop(b, w, spin);
    }
    return 0;
}

static void stop_workers(bench *b, pid_t *pids)
{
    seq_publish(step_abort_seq(shm_segment_base(b->seg), &b->lay), 1);
    for (uint32_t w = 0; w < b->workers; w++)
        waitpid(pids[w], NULL, 0);
}

/* Host-driven handshake; returns the median microseconds per layer. */
static double run_host(bench *b, uint32_t spin)
{
    pi_error err = {{0}};
    if (new_segment(b, &err) != 0) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    pid_t pids[BENCH_MAX_WORKERS];
    if (spawn_workers(b, pids, spin) != 0) {
        perror("fork");
        exit(1);
    }
    pin(0);
    void *base = shm_segment_base(b->seg);
    seq_counter *layer = step_layer_seq(base, &b->lay);
    float *x = step_x(base, &b->lay);
    seq_wait_opts o = seq_wait_opts_default();
    if (spin)
        o.spin_iters = SEQ_SPIN_FOREVER;
    o.timeout_ns = 5000000000ull;
    double *per = calloc(b->steps, sizeof(double));
    uint32_t tick = 0;
    for (uint32_t s = 0; s < b->warmup + b->steps; s++) {
        double t0 = now_s();
        for (uint32_t l = 0; l < b->layers; l++) {
            tick++;
            x[0] = (float)tick;
            for (uint32_t i = 1; i < b->dim; i++)
                x[i] = x[0];
            seq_publish(layer, tick);
            for (uint32_t w = 0; w < b->workers; w++)
                if (seq_wait_geq(step_done_seq(base, &b->lay, w), tick, &o) != 0) {
                    fprintf(stderr, "bench: worker %u did not answer\n", w);
                    exit(1);
                }
            const float *p = step_partial(base, &b->lay, 0);
            if (b->workers && p[b->dim - 1] != (float)tick) {
                fprintf(stderr, "bench: torn partial at tick %u\n", tick);
                exit(1);
            }
        }
        if (s >= b->warmup)
            per[s - b->warmup] = (now_s() - t0) * 1e6 / b->layers;
    }
    stop_workers(b, pids);
    shm_segment_destroy(&b->seg);
    qsort(per, b->steps, sizeof(double), cmp_double);
    double med = per[b->steps / 2];
    free(per);
    return med;
}

static int send_ctl(void *sock, const char *id, const Pi__Control *c)
{
    uint8_t buf[256];
    size_t n = pi__control__pack(c, buf);
    if (id && zmq_send(sock, id, strlen(id), ZMQ_SNDMORE) < 0)
        return -1;
    if (zmq_send(sock, "PICTL01", 7, ZMQ_SNDMORE) < 0 || zmq_send(sock, buf, n, 0) < 0)
        return -1;
    return 0;
}

/* Drains one multi-part message; returns its last frame's size. */
static int recv_all(void *sock)
{
    int more = 1, last = -1;
    size_t sz = sizeof more;
    char buf[512];
    while (more) {
        last = zmq_recv(sock, buf, sizeof buf, 0);
        if (last < 0)
            return -1;
        zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz);
    }
    return last;
}

/* Per-step ZeroMQ control: Step to the GPU worker and every CPU worker,
 * StepDone back from the GPU worker. Median microseconds per step. */
static double run_zmq(bench *b)
{
    char ep[128];
    snprintf(ep, sizeof ep, "ipc:///tmp/pi-bench-sync-%d.sock", (int)getpid());
    uint32_t n_peers = b->workers + 1;
    pid_t pids[BENCH_MAX_WORKERS + 1];
    for (uint32_t w = 0; w < n_peers; w++) {
        pids[w] = fork();
        if (pids[w] == 0) {
            pin((int)w + 1);
            void *ctx = zmq_ctx_new();
            void *d = zmq_socket(ctx, ZMQ_DEALER);
            char id[16];
            snprintf(id, sizeof id, w == 0 ? "gpu" : "cpu:%u", w - 1);
            zmq_setsockopt(d, ZMQ_ROUTING_ID, id, strlen(id));
            zmq_connect(d, ep);
            send_ctl(d, NULL, &(Pi__Control)PI__CONTROL__INIT); /* hello */
            for (;;) {
                if (recv_all(d) <= 0)
                    break; /* an empty body: quit */
                if (w == 0) {
                    Pi__StepDone done = PI__STEP_DONE__INIT;
                    done.ok = 1;
                    Pi__Control c = PI__CONTROL__INIT;
                    c.kind_case = PI__CONTROL__KIND_STEP_DONE;
                    c.step_done = &done;
                    send_ctl(d, NULL, &c);
                }
            }
            zmq_close(d);
            zmq_ctx_term(ctx);
            _exit(0);
        }
    }
    pin(0);
    void *ctx = zmq_ctx_new();
    void *r = zmq_socket(ctx, ZMQ_ROUTER);
    zmq_bind(r, ep);
    for (uint32_t w = 0; w < n_peers; w++)
        recv_all(r);
    double *per = calloc(b->steps, sizeof(double));
    for (uint32_t s = 0; s < b->warmup + b->steps; s++) {
        double t0 = now_s();
        Pi__Step st = PI__STEP__INIT;
        st.step_no = s + 1;
        st.n_entries = 1;
        Pi__Control c = PI__CONTROL__INIT;
        c.kind_case = PI__CONTROL__KIND_STEP;
        c.step = &st;
        for (uint32_t w = 0; w < n_peers; w++) {
            char id[16];
            snprintf(id, sizeof id, w == 0 ? "gpu" : "cpu:%u", w - 1);
            send_ctl(r, id, &c);
        }
        recv_all(r);
        if (s >= b->warmup)
            per[s - b->warmup] = (now_s() - t0) * 1e6;
    }
    for (uint32_t w = 0; w < n_peers; w++) {
        char id[16];
        snprintf(id, sizeof id, w == 0 ? "gpu" : "cpu:%u", w - 1);
        zmq_send(r, id, strlen(id), ZMQ_SNDMORE);
        zmq_send(r, "PICTL01", 7, ZMQ_SNDMORE);
        zmq_send(r, "", 0, 0);
    }
    for (uint32_t w = 0; w < n_peers; w++)
        waitpid(pids[w], NULL, 0);
    zmq_close(r);
    zmq_ctx_term(ctx);
    unlink(ep + 6);
    qsort(per, b->steps, sizeof(double), cmp_double);
    double med = per[b->steps / 2];
    free(per);
    return med;
}

#ifdef PI_HAVE_CUDA
static int run_gpu(bench *b, int zero_copy, double *us)
{
    pi_error err = {{0}};
    if (new_segment(b, &err) != 0) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return -1;
    }
    pid_t pids[BENCH_MAX_WORKERS];
    if (spawn_workers(b, pids, 1) != 0)
        return -1;
    void *base = shm_segment_base(b->seg);
    bench_gpu_args a = {.base = base, .size = shm_segment_size(b->seg), .dim = b->dim,
                        .layers = b->layers, .steps = b->steps, .warmup = b->warmup,
                        .n_workers = b->workers, .first_tick = 0};
    a.off_x = (size_t)((char *)step_x(base, &b->lay) - (char *)base);
    a.off_layer = (size_t)((char *)step_layer_seq(base, &b->lay) - (char *)base);
    for (uint32_t w = 0; w < b->workers; w++) {
        a.off_done[w] = (size_t)((char *)step_done_seq(base, &b->lay, w) - (char *)base);
        a.off_partial[w] = (size_t)((char *)step_partial(base, &b->lay, w) - (char *)base);
    }
    char msg[256] = "";
    int rc = bench_gpu_run(&a, zero_copy, us, msg, sizeof msg);
    stop_workers(b, pids);
    shm_segment_destroy(&b->seg);
    if (rc != 0)
        fprintf(stderr, "bench: gpu handshake: %s\n", msg);
    return rc;
}
#endif

int main(int argc, char **argv)
{
    bench b = {.layers = 40, .steps = 300, .warmup = 30, .workers = 2, .dim = 5120};
    int gpu = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--gpu"))
            gpu = 1;
        else if (i + 1 < argc && !strcmp(argv[i], "--layers"))
            b.layers = (uint32_t)atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--steps"))
            b.steps = (uint32_t)atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--workers"))
            b.workers = (uint32_t)atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--dim"))
            b.dim = (uint32_t)atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: pi-bench-sync [--layers L] [--steps S] [--workers N] [--dim D] [--gpu]\n");
            return 2;
        }
    }
    if (b.layers == 0 || b.steps == 0 || b.dim == 0 || b.workers == 0 || b.workers > BENCH_MAX_WORKERS) {
        fprintf(stderr, "pi-bench-sync: layers, steps, dim must be > 0 and workers 1..%d\n", BENCH_MAX_WORKERS);
        return 2;
    }
    printf("pi-bench-sync: %u layers, %u steps (+%u warm-up), %u CPU workers, dim %u, %ld CPUs\n\n",
           b.layers, b.steps, b.warmup, b.workers, b.dim, sysconf(_SC_NPROCESSORS_ONLN));
    printf("| path | median us per layer |\n|---|---|\n");
    printf("| host: xn publish + %u workers answer (spin waits) | %.2f |\n", b.workers, run_host(&b, 1));
    fflush(stdout);
    printf("| host: same, spin then futex sleep | %.2f |\n", run_host(&b, 0));
    fflush(stdout);
    double z = run_zmq(&b);
    printf("| ZeroMQ Step to %u workers + StepDone, once per step (%.1f us), per layer | %.2f |\n",
           b.workers + 1, z, z / b.layers);
    fflush(stdout);
    if (gpu) {
#ifdef PI_HAVE_CUDA
        for (int zc = 0; zc < 2; zc++) {
            double us = 0;
            int rc = run_gpu(&b, zc, &us);
            if (rc == 0 && !zc)
                printf("| GPU stream: xn D2H copy + write tick + wait %u done + partials H2D copies | %.2f |\n", b.workers, us);
            else if (rc == 0)
                printf("| GPU stream, zero-copy: kernel stores xn + write tick + wait %u done + kernel sums mapped partials | %.2f |\n", b.workers, us);
            else
                printf("| GPU stream handshake | %s |\n", rc > 0 ? "no device" : "failed");
            fflush(stdout);
        }
#else
        printf("| GPU stream handshake | not built (no CUDA) |\n");
#endif
    }
    return 0;
}
