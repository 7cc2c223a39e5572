/* `pid start`, `pid stop`, `pid status`: run the daemon, stop it, ask it how
 * it is. start detaches (unless --foreground) and returns once the RPC
 * endpoint answers Status, or prints the end of the log when startup failed. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "commands.h"
#include "config.h"
#include "daemonize.h"
#include "default_model.h"
#include "endpoint.h"
#include "engine.h"
#include "http_server.h"
#include "rpc_auth.h"
#include "rpc_server.h"
#include "sd_service.h"
#include "wire.h"

#define START_TIMEOUT_S 120.0
#define STOP_TIMEOUT_S 30.0

static void start_usage(FILE *out)
{
    fprintf(out,
            "usage: pid start [--config FILE] [-m MODEL] [--cpu-workers N] [--vram-budget GiB] [--warm-share F]\n"
            "                 [--gpu-backend cuda|host|auto] [--listen ENDPOINT] [--http HOST:PORT]\n"
            "                 [--token T] [--admin-token T] [--max-seqs N] [--max-batch N] [--max-queue N]\n"
            "                 [--solo-batch N] [--solo-min N]\n"
            "                 [-c|--ctx-size|--n-ctx N] [--ffn MODE] [--measure-recall] [--predictor-type T]\n"
            "                 [--log-file F] [--pid-file F] [--foreground] [--timings] [default sampling flags]\n\n"
            "  Each flag but --config and --foreground is also a key of the settings file:\n"
            "  --max-seqs N is max_seqs = N.\n"
            "  A flag's value may follow '=' (--listen=E).\n"
            "  --config FILE         settings file (etc/pid.conf documents every key); flags override it\n"
            "  -m, --model MODEL     GGUF model file\n"
            "  --cpu-workers N       CPU worker processes (default: one per NUMA node)\n"
            "  --vram-budget GiB     GPU memory for weights, KV cache and hot neurons (default: 90%%\n"
            "                        of the GPU's free memory; refused when larger than that)\n"
            "  --warm-share F        CUDA with CPU workers: the share (0..1) of the cold neurons the\n"
            "                        GPU reads from pinned host memory over PCIe (default: 0.4)\n"
            "  --gpu-backend B       cuda, host (plain C, no GPU) or auto (default)\n"
            "  --listen ENDPOINT     ipc:///path/pid.sock or tcp://127.0.0.1:PORT\n"
            "  --http HOST:PORT      also serve the OpenAI-compatible HTTP API there (docs/http.md)\n"
            "  --token T             client token every request must carry (required for tcp)\n"
            "  --admin-token T       token for shutdown and restart-worker (pid.conf keeps both\n"
            "                        out of ps: token = / admin_token =)\n"
            "  --max-seqs N          sequences decoded together, one KV cache slot each (default:\n"
            "                        up to 8, as many as the VRAM budget fits)\n"
            "  --max-batch N         entries (tokens) per step, prefill included (default 32)\n"
            "  --max-queue N         requests that may wait for a slot; more are refused (default 256)\n"
            "  --solo-batch N        most entries of a solo step: a long prompt's step the GPU worker\n"
            "                        runs alone, every FFN neuron on its side (default 512 on cuda,\n"
            "                        none on host; 0 = none;\n"
            "                        the GPU worker may take fewer)\n"
            "  --solo-min N          a step is solo while the oldest prompt being fed has at least N\n"
            "                        tokens left (default 64)\n"
            "  -c, --ctx-size N      KV cache positions per slot (also --n-ctx; default: the\n"
            "                        model's trained context). A KV cache that does not fit the\n"
            "                        VRAM budget: the sizes not given are lowered, sequences first;\n"
            "                        sizes given are refused, saying what would fit\n"
            "  --ffn MODE            auto, dense, exact or predicted (as pid run --help says)\n"
            "  --measure-recall      with predicted: measure the predictor's recall (pictl status)\n"
            "  --predictor-type T    file (default: as the model stores them) or q8_0: the predictors\n"
            "                        held as q8_0, about half of f16's bytes, so the budget keeps more\n"
            "                        hot neurons; a neuron within rounding of the threshold may be\n"
            "                        predicted otherwise\n"
            "  --log-file F          the daemon's log (default: pid.log in the run folder)\n"
            "  --pid-file F          the daemon's pid file (default: pid.pid in the run folder)\n"
            "  --foreground          stay attached; log to stderr\n"
            "  --timings             the GPU worker times its phases every step (pictl status shows\n"
            "                        the last decode step; CPU workers' and pid's parts always)\n"
            "sampling defaults for requests that leave them out:\n%s",
            gen_params_usage());
}

/* pid stop and pid status read the same settings as pid start (so one
 * command line or config serves all three) but need only where pid listens. */
static void other_usage(const char *cmd, FILE *out)
{
    fprintf(out,
            "usage: pid %s [--config FILE] [--listen ENDPOINT] [--pid-file F]\n\n"
            "  %s\n"
            "  --config FILE         settings file: its listen = and pid_file = are used\n"
            "  --listen ENDPOINT     where the daemon listens (default: $PI_ENDPOINT, else the\n"
            "                        local socket in $XDG_RUNTIME_DIR/pi, /run/pi or /tmp/pi-$UID)\n"
            "  --pid-file F          the daemon's pid file (default: pid.pid in the run folder)\n"
            "  Every other pid start flag is accepted and ignored, so a start command line also\n"
            "  works here: -m --model --cpu-workers --vram-budget --warm-share --gpu-backend --http --token\n"
            "  --admin-token --max-seqs --max-batch --max-queue --solo-batch --solo-min -c --ctx-size\n"
            "  --n-ctx --ffn --measure-recall --predictor-type --log-file --foreground --timings, and the\n"
            "  sampling flags -n --n-predict --temp --top-k --top-p --min-p --repeat-penalty --repeat-last-n\n"
            "  --seed.\n",
            cmd,
            !strcmp(cmd, "stop") ? "Asks the daemon to shut down and waits until it and its workers are gone."
                                 : "Prints the daemon's status: pid, model, placement, queue, workers.");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* An absolute version of path (relative to the current folder), since the
 * daemon changes to /. */
static int absolutize(char *path, size_t cap)
{
    if (!path[0] || path[0] == '/')
        return 0;
    char cwd[PATH_MAX], tmp[PID_PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return -1;
    int n = snprintf(tmp, sizeof tmp, "%s/%s", cwd, path);
    if (n < 0 || (size_t)n >= cap || (size_t)n >= sizeof tmp)
        return -1;
    memcpy(path, tmp, (size_t)n + 1);
    return 0;
}

/* How load_settings treats the socket's folder. */
enum dir_mode {
    DIR_LOOK,    /* stop, status: create nothing */
    DIR_PREPARE, /* start: create pid's default folder (0700); a folder the user named must exist */
};

/* The folder of an ipc endpoint's socket, else the default run folder.
 * explicit: the endpoint came from --listen / listen= / PI_ENDPOINT. */
static int run_folder(const char *endpoint, int explicit, enum dir_mode mode, char *buf, size_t cap,
                      pi_error *err)
{
    const char *p = endpoint_ipc_path(endpoint);
    if (!p)
        return pid_rundir(buf, cap, err);
    if (mode == DIR_PREPARE &&
        (explicit ? endpoint_check_dir(endpoint, err) : endpoint_prepare_dir(endpoint, err)) < 0)
        return -1;
    const char *slash = strrchr(p, '/');
    size_t n = (size_t)(slash - p);
    if (n == 0)
        n = 1;
    if (n >= cap)
        return pi_error_set(err, "endpoint path too long: %s", endpoint);
    memcpy(buf, p, n);
    buf[n] = 0;
    return 0;
}

/* The token stop/status/start send (the admin one when configured, which pid
 * also takes for every other request); set by load_settings. */
static const char *call_token = "";

/* One request, one reply (the first Response with its id), within timeout_ms. */
static Pi__Response *rpc_call(const char *endpoint, Pi__Request *req, int timeout_ms, pi_error *err)
{
    req->token = (char *)call_token;
    void *ctx = zmq_ctx_new(), *sock = ctx ? zmq_socket(ctx, ZMQ_DEALER) : NULL;
    Pi__Response *out = NULL;
    if (!sock) {
        pi_error_set(err, "zmq: %s", zmq_strerror(zmq_errno()));
        goto done;
    }
    if (wire_socket_defaults(sock, err) < 0)
        goto done;
    if (zmq_connect(sock, endpoint) < 0) {
        pi_error_set(err, "cannot connect to %s: %s", endpoint, zmq_strerror(zmq_errno()));
        goto done;
    }
    if (wire_send(sock, NULL, 0, WIRE_RPC_HEADER, &req->base, err) < 0)
        goto done;
    double until = now_s() + timeout_ms / 1e3;
    for (;;) {
        long left = (long)((until - now_s()) * 1e3);
        if (left <= 0) {
            pi_error_set(err, "no answer from %s within %d ms (is pid running?)", endpoint, timeout_ms);
            goto done;
        }
        zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, left) <= 0)
            continue;
        wire_msg m;
        int r = wire_recv(sock, 0, WIRE_RESPONSE, &m, err);
        if (r == WIRE_OK && m.response->id == req->id) {
            out = m.response;
            m.response = NULL;
            wire_msg_clear(&m);
            goto done;
        }
        wire_msg_clear(&m);
        if (r == WIRE_ERR)
            goto done;
    }
done:
    if (sock)
        zmq_close(sock);
    if (ctx)
        zmq_ctx_term(ctx);
    return out;
}

static Pi__Response *call_status(const char *endpoint, int timeout_ms, pi_error *err)
{
    Pi__StatusRequest sr = PI__STATUS_REQUEST__INIT;
    Pi__Request req = PI__REQUEST__INIT;
    req.id = 1;
    req.kind_case = PI__REQUEST__KIND_STATUS;
    req.status = &sr;
    Pi__Response *r = rpc_call(endpoint, &req, timeout_ms, err);
    if (r && r->kind_case != PI__RESPONSE__KIND_STATUS) {
        pi_error_set(err, "%s answered Status with %s", endpoint,
                     r->kind_case == PI__RESPONSE__KIND_ERROR && r->error->message ? r->error->message
                                                                                    : "something else");
        pi__response__free_unpacked(r, NULL);
        return NULL;
    }
    return r;
}

static long file_size(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n > 0 ? n : 0;
}

/* Prints what the daemon logged since offset `from` (its last 16 KiB). */
static void print_log_since(const char *path, long from)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "pid: (no log at %s)\n", path);
        return;
    }
    long size = file_size(path);
    if (size - from > 16384)
        from = size - 16384;
    static char buf[16385];
    fseek(f, from, SEEK_SET);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    fprintf(stderr, "pid: its log (%s) says:\n%s", path, buf);
    if (n && buf[n - 1] != '\n')
        fputc('\n', stderr);
}

/* The daemon's body, in the foreground or after detaching. notify_fd < 0
 * in the foreground. */
static int serve(pid_config *c, const char *endpoint, const char *rundir, int notify_fd)
{
    pi_error err = {{0}};
    int rc = 1, have_pidfile = 0;
    rpc_server *rpc = NULL;
    engine *eng = NULL;
    http_server *http = NULL;
    sd_service *sd = NULL; /* systemd: READY=1 once loaded, watchdog pings */
    if (pidfile_create(c->pid_file, &err) < 0)
        goto out;
    have_pidfile = 1;
    rpc = rpc_server_new(&c->sampling, &err);
    if (!rpc)
        goto out;
    rpc_server_set_tokens(rpc, c->token, c->admin_token);
    sched_sink sink = rpc_server_sink(rpc);
    engine_opts o = {.model_path = c->model, .gpu_backend = c->gpu_backend, .ffn = c->ffn,
                     .measure_recall = c->measure_recall, .timings = c->timings, .pred_q8 = c->pred_q8,
                     .cpu_workers = c->cpu_workers, .vram_budget_gib = c->vram_budget_gib,
                     .warm_share = c->warm_share,
                     .max_seqs = c->max_seqs, .max_batch = c->max_batch, .n_ctx = c->n_ctx,
                     .solo_batch = c->solo_batch, .solo_min = c->solo_min,
                     .max_queue = c->max_queue, .rundir = rundir};
    eng = engine_new(&o, &sink, &err);
    if (!eng)
        goto out;
    if (rpc_server_bind(rpc, eng, endpoint, &err) < 0)
        goto out;
    if (c->http[0]) {
        /* HTTP requests reach the scheduler through the RPC socket (inproc). */
        http_server_opts ho = {.listen = c->http, .zctx = rpc_server_zctx(rpc),
                               .rpc_endpoint = "inproc://pi-rpc", .token = c->token,
                               .model_path = c->model,
                               .defaults = c->sampling};
        if (rpc_server_bind_inproc(rpc, ho.rpc_endpoint, &err) < 0 ||
            !(http = http_server_start(&ho, &err)))
            goto out;
        fprintf(stderr, "pid %d: HTTP API at http://%s\n", (int)getpid(), c->http);
    }
    fprintf(stderr, "pid %d: %s; starting workers\n", (int)getpid(), engine_plan(eng)->summary);
    if (engine_start(eng, START_TIMEOUT_S, &err) < 0)
        goto out;
    fprintf(stderr, "pid %d: ready, listening at %s\n", (int)getpid(), endpoint);
    daemonize_notify(&notify_fd, '1');
    pi_error sderr = {{0}};
    if (sd_service_ready(endpoint, c->token, &sd, &sderr) < 0)
        fprintf(stderr, "pid %d: systemd: %s\n", (int)getpid(), sderr.msg);
    if (engine_run(eng, 0, &err) < 0)
        goto out;
    fprintf(stderr, "pid %d: stopped\n", (int)getpid());
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "pid: %s\n", err.msg);
    sd_service_stopping(&sd); /* its probes use the RPC socket */
    http_server_stop(&http); /* before the RPC socket's context ends */
    engine_free(&eng);
    rpc_server_free(&rpc);
    if (have_pidfile)
        pidfile_remove(c->pid_file);
    daemonize_notify(&notify_fd, '0');
    return rc;
}

/* Whether the user named the endpoint (flag, config key or $PI_ENDPOINT):
 * then stop and status talk to it alone. */
static int pid_endpoint_explicit(const pid_config *c)
{
    const char *env = getenv("PI_ENDPOINT");
    return c->listen[0] || (env && *env);
}

/* Settings from --config, then flags; endpoint and paths resolved. */
static int load_settings(pid_config *c, int argc, char **argv, char *endpoint, char *rundir,
                         const char *cmd, int need_model, enum dir_mode mode)
{
    pi_error err = {{0}};
    pid_config_default(c);
    const char *conf = pid_config_find_path(argc, argv);
    if (conf && pid_config_load(c, conf, 1, &err) < 0) {
        fprintf(stderr, "pid %s: %s\n", cmd, err.msg);
        return 2;
    }
    int r = pid_config_parse_args(c, argc, argv, &err);
    if (r == 1) {
        if (!strcmp(cmd, "start"))
            start_usage(stdout);
        else
            other_usage(cmd, stdout);
        return 0;
    }
    if (r < 0) { /* one line: the usage would bury it */
        fprintf(stderr, "pid %s: %s (see pid %s --help)\n", cmd, err.msg, cmd);
        return 2;
    }
    if (need_model && !c->model[0] && default_model_pick(c->model, sizeof c->model, &err) < 0) {
        fprintf(stderr, "pid %s: %s; or model = in the config\n", cmd, err.msg);
        return 2;
    }
    if (endpoint_resolve(c->listen[0] ? c->listen : NULL, endpoint, ENDPOINT_MAX, &err) < 0 ||
        run_folder(endpoint, pid_endpoint_explicit(c), mode, rundir, PID_PATH_MAX, &err) < 0) {
        fprintf(stderr, "pid %s: %s\n", cmd, err.msg);
        return 2;
    }
    call_token = c->admin_token[0] ? c->admin_token : c->token;
    if (!c->pid_file[0])
        snprintf(c->pid_file, sizeof c->pid_file, "%.900s/pid.pid", rundir);
    if (!c->log_file[0])
        snprintf(c->log_file, sizeof c->log_file, "%.900s/pid.log", rundir);
    if (absolutize(c->model, sizeof c->model) < 0 || absolutize(c->pid_file, sizeof c->pid_file) < 0 ||
        absolutize(c->log_file, sizeof c->log_file) < 0) {
        fprintf(stderr, "pid %s: a path is too long\n", cmd);
        return 2;
    }
    return -1; /* go on */
}

int pid_cmd_start(int argc, char **argv)
{
    pid_config c;
    char endpoint[ENDPOINT_MAX], rundir[PID_PATH_MAX];
    int r = load_settings(&c, argc, argv, endpoint, rundir, "start", 1, DIR_PREPARE);
    if (r >= 0)
        return r;
    rpc_auth auth;
    pi_error aerr = {{0}};
    if (rpc_auth_init(&auth, c.token, c.admin_token, endpoint, &aerr) < 0) {
        fprintf(stderr, "pid start: %s\n", aerr.msg);
        return 2;
    }
    if (c.http[0] && !http_server_available()) {
        fprintf(stderr, "pid start: --http: %s\n", HTTP_UNAVAILABLE_MSG);
        return 1;
    }
    if (access(c.model, R_OK) < 0) {
        fprintf(stderr, "pid start: model file %s: %s\n", c.model, strerror(errno));
        return 1;
    }
    if (rpc_endpoint_in_use(endpoint)) {
        fprintf(stderr, "pid start: another pid is already listening at %s; stop it with "
                        "`pid stop --listen %s` or choose another --listen\n", endpoint, endpoint);
        return 1;
    }
    pid_t other = pidfile_read_live(c.pid_file);
    if (other > 0) {
        fprintf(stderr, "pid start: another pid (process %d) is already running with pidfile %s\n",
                (int)other, c.pid_file);
        return 1;
    }
    if (c.foreground)
        return serve(&c, endpoint, rundir, -1);

    pi_error err = {{0}};
    int fd = -1;
    long log_from = file_size(c.log_file);
    int d = daemonize(c.log_file, &fd, &err);
    if (d < 0) {
        fprintf(stderr, "pid start: %s\n", err.msg);
        return 1;
    }
    if (d == 0)
        exit(serve(&c, endpoint, rundir, fd) ? 1 : 0); /* exit: LSan checks the daemon too */

    /* The starter: wait for the daemon's word, then for its Status. */
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char status = 0;
    int pr = poll(&p, 1, (int)(START_TIMEOUT_S * 1e3 + 5000));
    if (pr > 0 && read(fd, &status, 1) != 1)
        status = 0;
    close(fd);
    if (status != '1') {
        fprintf(stderr, "pid start: pid failed to start%s\n", pr == 0 ? " (timed out)" : "");
        print_log_since(c.log_file, log_from);
        return 1;
    }
    Pi__Response *resp = call_status(endpoint, 5000, &err);
    if (!resp) {
        fprintf(stderr, "pid start: pid started but does not answer: %s\n", err.msg);
        print_log_since(c.log_file, log_from);
        return 1;
    }
    printf("pid started (process %u), listening at %s; log %s\n", resp->status->pid, endpoint,
           c.log_file);
    pi__response__free_unpacked(resp, NULL);
    return 0;
}

static int wait_gone(pid_t p, double timeout_s)
{
    double until = now_s() + timeout_s;
    while (!process_gone(p)) {
        if (now_s() > until)
            return -1;
        usleep(20000);
    }
    return 0;
}

int pid_cmd_stop(int argc, char **argv)
{
    pid_config c;
    char endpoint[ENDPOINT_MAX], rundir[PID_PATH_MAX];
    int r = load_settings(&c, argc, argv, endpoint, rundir, "stop", 0, DIR_LOOK);
    if (r >= 0)
        return r;
    pi_error err = {{0}};
    pid_t target = 0;
    Pi__Response *st = call_status(endpoint, 2000, &err);
    if (st) {
        target = (pid_t)st->status->pid;
        pi__response__free_unpacked(st, NULL);
        Pi__ShutdownRequest sr = PI__SHUTDOWN_REQUEST__INIT;
        Pi__Request req = PI__REQUEST__INIT;
        req.id = 2;
        req.kind_case = PI__REQUEST__KIND_SHUTDOWN;
        req.shutdown = &sr;
        Pi__Response *resp = rpc_call(endpoint, &req, 5000, &err);
        if (resp && resp->kind_case == PI__RESPONSE__KIND_ERROR) {
            fprintf(stderr, "pid stop: pid at %s refused: %s\n", endpoint,
                    resp->error->message ? resp->error->message : "an error");
            pi__response__free_unpacked(resp, NULL);
            return 1;
        }
        if (resp)
            pi__response__free_unpacked(resp, NULL);
        else if (target > 0)
            kill(target, SIGTERM);
    } else if (pid_endpoint_explicit(&c)) {
        /* Never the pidfile here: it may belong to a daemon at another endpoint. */
        fprintf(stderr, "pid stop: no pid is listening at %s (%s)\n", endpoint, err.msg);
        return 1;
    } else {
        target = pidfile_read_live(c.pid_file);
        if (target <= 0) {
            fprintf(stderr, "pid stop: no pid is running at %s (%s)\n", endpoint, err.msg);
            return 1;
        }
        kill(target, SIGTERM);
    }
    if (target > 0 && wait_gone(target, STOP_TIMEOUT_S) < 0) {
        fprintf(stderr, "pid stop: pid (process %d) did not stop within %.0f s\n", (int)target,
                STOP_TIMEOUT_S);
        return 1;
    }
    printf("pid stopped (process %d)\n", (int)target);
    return 0;
}

static void fmt_bytes(uint64_t b, char *out, size_t cap)
{
    if (b >= (1ull << 30))
        snprintf(out, cap, "%.2f GiB", (double)b / (double)(1ull << 30));
    else if (b >= (1ull << 20))
        snprintf(out, cap, "%.1f MiB", (double)b / (double)(1ull << 20));
    else
        snprintf(out, cap, "%.1f KiB", (double)b / 1024.0);
}

int pid_cmd_status(int argc, char **argv)
{
    pid_config c;
    char endpoint[ENDPOINT_MAX], rundir[PID_PATH_MAX];
    int r = load_settings(&c, argc, argv, endpoint, rundir, "status", 0, DIR_LOOK);
    if (r >= 0)
        return r;
    pi_error err = {{0}};
    Pi__Response *resp = call_status(endpoint, 3000, &err);
    if (!resp) {
        fprintf(stderr, "pid status: no pid is listening at %s (%s)\n", endpoint, err.msg);
        return 1;
    }
    const Pi__StatusReply *s = resp->status;
    printf("pid %u at %s, up %.1f s\n", s->pid, s->endpoint ? s->endpoint : endpoint,
           (double)s->uptime_ms / 1e3);
    printf("model: %s\n", s->model ? s->model : "?");
    printf("placement: %s\n", s->placement ? s->placement : "?");
    printf("requests: %u active, %u queued\n", s->active, s->queue_length);
    printf("%-8s %8s %-10s %8s %10s %10s %-7s %s\n", "WORKER", "PID", "STATE", "RESTARTS", "RSS",
           "DEVICE", "BACKEND", "DETAIL");
    for (size_t i = 0; i < s->n_workers; i++) {
        const Pi__WorkerInfo *w = s->workers[i];
        char rss[32], dev[32];
        fmt_bytes(w->rss_bytes, rss, sizeof rss);
        fmt_bytes(w->device_bytes, dev, sizeof dev);
        printf("%-8s %8u %-10s %8u %10s %10s %-7s %s\n", w->name, w->pid, w->state, w->restarts, rss,
               dev, w->backend, w->detail ? w->detail : "");
    }
    pi__response__free_unpacked(resp, NULL);
    return 0;
}
