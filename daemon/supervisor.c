/* Worker processes: spawn, reap, restart with backoff, hang detection. */
#include "supervisor.h"
#include "pi_proc.h"
#include "fd_pass.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <numa.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* A worker that dies after it was ready is restarted at once (a GPU worker's
 * restart has 2 s, issue 10); one that dies again before it is ready waits
 * 100 ms, then twice as long each time, up to 5 s. */
#define BACKOFF_FIRST_MS 0u
#define BACKOFF_SECOND_MS 100u
#define BACKOFF_MAX_MS 5000u

static uint32_t next_backoff(uint32_t ms)
{
    return !ms ? BACKOFF_SECOND_MS : ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ms * 2;
}

const char *sup_state_name(sup_state st)
{
    switch (st) {
    case SUP_STARTING: return "starting";
    case SUP_READY: return "ready";
    case SUP_DEAD: return "dead";
    case SUP_RESTARTING: return "restarting";
    }
    return "?";
}

int supervisor_bin_dir(char *buf, size_t cap, pi_error *err)
{
    ssize_t n = readlink("/proc/self/exe", buf, cap - 1);
    if (n <= 0 || (size_t)n >= cap - 1)
        return pi_error_set(err, "cannot read /proc/self/exe: %s", strerror(errno));
    buf[n] = 0;
    char *slash = strrchr(buf, '/');
    if (!slash)
        return pi_error_set(err, "/proc/self/exe is not a path: %s", buf);
    *slash = 0;
    return 0;
}

/* Appends a formatted argument to w's argv, inside argbuf. */
#define SUP_SHM_FD 3
#define SUP_VRAM_FD 4       /* the GPU worker's end of the kept-VRAM socket */

static int argf(sup_worker *w, size_t *used, size_t *argc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Appends one formatted argument to the worker's argv (kept in argbuf). */
static int argf(sup_worker *w, size_t *used, size_t *argc, const char *fmt, ...)
{
    if (*argc + 1 >= sizeof w->argv / sizeof w->argv[0])
        return -1;
    char *dst = w->argbuf + *used;
    size_t room = sizeof w->argbuf - *used;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(dst, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room)
        return -1;
    w->argv[(*argc)++] = dst;
    w->argv[*argc] = NULL;
    *used += (size_t)n + 1;
    return 0;
}

/* Formats the set CPUs of mask as "0-3,8". */
static void cpu_list(const int *cpus, int n, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = 0;
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && cpus[j + 1] == cpus[j] + 1)
            j++;
        int w = j > i ? snprintf(out + len, cap - len, "%s%d-%d", len ? "," : "", cpus[i], cpus[j])
                      : snprintf(out + len, cap - len, "%s%d", len ? "," : "", cpus[i]);
        if (w < 0 || (size_t)w >= cap - len)
            break;
        len += (size_t)w;
        i = j + 1;
    }
}

/* CPUs of node 0 (n allowed) the CPU workers leave to the GPU worker and
 * pid: from 12 CPUs 3, where both spin (a CPU each and one for their other
 * threads: on the H200 host at 12.6 GiB this took control + sync from ~17 to
 * 9.7 us a layer and decode from 76-89 to 92 tok/s, session 13), else 1,
 * which they share asleep. PI_HOST_CPUS (0-8) overrides. */
static int host_cpus(int n)
{
    const char *v = getenv("PI_HOST_CPUS");
    if (v && v[0] >= '0' && v[0] <= '8' && !v[1])
        return v[0] - '0';
    return n >= 12 ? 3 : 1;
}

/* The allowed CPUs of node, ascending, into cpus (CPU_SETSIZE); their count. */
static int node_cpus(int node, int *cpus)
{
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof allowed, &allowed) < 0)
        for (int c = 0; c < CPU_SETSIZE; c++)
            CPU_SET(c, &allowed);
    int n = 0;
    struct bitmask *bm = numa_available() >= 0 ? numa_allocate_cpumask() : NULL;
    if (bm && numa_node_to_cpus(node, bm) < 0) {
        numa_free_cpumask(bm);
        bm = NULL;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_CONF);
    for (int c = 0; c < CPU_SETSIZE && c < ncpu; c++)
        if (CPU_ISSET(c, &allowed) && (!bm || numa_bitmask_isbitset(bm, (unsigned)c)))
            cpus[n++] = c;
    if (bm)
        numa_free_cpumask(bm);
    return n;
}

/* Pins cpu worker `rank` of `of` on node to its share of the node's allowed CPUs. */
static void assign_cpus(sup_worker *w, int node, uint32_t rank, uint32_t of)
{
    int cpus[CPU_SETSIZE], n = node_cpus(node, cpus);
    /* The first CPUs of node 0 (host_cpus) are left for the GPU worker and
     * pid, so the CPU workers' pool threads, which spin between layers, never
     * take them from them; only from 4 CPUs up, a small machine needs them all. */
    int *mine = cpus, keep = host_cpus(n);
    if (node == 0 && n >= 4 && keep < n) {
        mine += keep;
        n -= keep;
    }
    /* Contiguous chunks; a worker with no CPU of its own shares the node's. */
    int lo = (int)((uint64_t)n * rank / of), hi = (int)((uint64_t)n * (rank + 1) / of);
    if (hi <= lo) {
        lo = 0;
        hi = n;
    }
    cpu_list(mine + lo, hi - lo, w->cpus, sizeof w->cpus);
    if (!w->cpus[0])
        snprintf(w->cpus, sizeof w->cpus, "0");
}

static int build_argv(sup_worker *w, const sup_config *c, int own_cpus)
{
    size_t used = 0, argc = 0;
    int bad = 0;
    if (w->is_gpu) {
        bad |= argf(w, &used, &argc, "%s/pi-gpu-worker", c->bin_dir);
        bad |= argf(w, &used, &argc, "--backend") | argf(w, &used, &argc, "%s", c->backend);
        bad |= argf(w, &used, &argc, "--max-batch") | argf(w, &used, &argc, "%u", c->max_batch);
        if (c->solo_batch)
            bad |= argf(w, &used, &argc, "--solo-batch") | argf(w, &used, &argc, "%u", c->solo_batch);
        bad |= argf(w, &used, &argc, "--vram-sock") | argf(w, &used, &argc, "%d", SUP_VRAM_FD);
        bad |= argf(w, &used, &argc, "--cpu-workers") | argf(w, &used, &argc, "%u", c->n_cpu);
        if (c->measure_recall)
            bad |= argf(w, &used, &argc, "--measure-recall");
        if (own_cpus)
            bad |= argf(w, &used, &argc, "--own-cpus");
        if (c->pred_q8)
            bad |= argf(w, &used, &argc, "--predictor-type") | argf(w, &used, &argc, "q8_0");
    } else {
        bad |= argf(w, &used, &argc, "%s/pi-cpu-worker", c->bin_dir);
        bad |= argf(w, &used, &argc, "--index") | argf(w, &used, &argc, "%u", w->index);
        bad |= argf(w, &used, &argc, "--of") | argf(w, &used, &argc, "%u", c->n_cpu);
        bad |= argf(w, &used, &argc, "--numa-node") |
               argf(w, &used, &argc, "%d", (int)w->numa_node);
        bad |= argf(w, &used, &argc, "--cpus") | argf(w, &used, &argc, "%s", w->cpus);
    }
    /* Both kinds: a plan file is checked against the KV cache it was made for. */
    bad |= argf(w, &used, &argc, "--max-seqs") | argf(w, &used, &argc, "%u", c->max_seqs);
    bad |= argf(w, &used, &argc, "--n-ctx") | argf(w, &used, &argc, "%u", c->n_ctx);
    bad |= argf(w, &used, &argc, "--model") | argf(w, &used, &argc, "%s", c->model);
    bad |= argf(w, &used, &argc, "--ctl") | argf(w, &used, &argc, "%s", c->ctl);
    if (c->shm_fd > 0)
        bad |= argf(w, &used, &argc, "--shm") | argf(w, &used, &argc, "fd:%d", SUP_SHM_FD);
    else
        bad |= argf(w, &used, &argc, "--shm") | argf(w, &used, &argc, "%s", c->shm_name);
    if (c->plan && c->plan[0])
        bad |= argf(w, &used, &argc, "--plan") | argf(w, &used, &argc, "%s", c->plan);
    else
        bad |= argf(w, &used, &argc, "--hot") | argf(w, &used, &argc, "%u", c->n_hot);
    if (c->ffn)
        bad |= argf(w, &used, &argc, "--ffn") | argf(w, &used, &argc, "%s", c->ffn);
    if (c->warm_share > 0)
        bad |= argf(w, &used, &argc, "--warm-share") | argf(w, &used, &argc, "%.17g", c->warm_share);
    return bad ? -1 : 0;
}

int supervisor_init(supervisor *s, const sup_config *c, pi_error *err)
{
    memset(s, 0, sizeof *s);
    s->vram_sock = -1;
    for (uint32_t k = 0; k < FD_PASS_KINDS; k++)
        s->kept[k].fd = -1;
    if (c->n_cpu + 1 > SUP_MAX_WORKERS)
        return pi_error_set(err, "%u CPU workers: at most %d", c->n_cpu, SUP_MAX_WORKERS - 1);
    int nodes = numa_available() >= 0 ? numa_num_configured_nodes() : 1;
    if (nodes < 1)
        nodes = 1;
    s->n = c->n_cpu + 1;
    s->shm_fd = c->shm_fd;
    int cpus0[CPU_SETSIZE], n0 = node_cpus(0, cpus0), keep = host_cpus(n0);
    if (c->n_cpu > 0 && keep >= 2 && n0 >= 4 && keep < n0) {
        s->host_own = 1;
        CPU_ZERO(&s->host_set);
        for (int i = 0; i < keep; i++)
            CPU_SET(cpus0[i], &s->host_set);
    }
    for (uint32_t i = 0; i < s->n; i++) {
        sup_worker *w = &s->w[i];
        w->is_gpu = i == 0;
        w->index = i ? i - 1 : 0;
        w->state = SUP_DEAD;
        w->backoff_ms = BACKOFF_FIRST_MS;
        if (w->is_gpu) {
            snprintf(w->name, sizeof w->name, "gpu");
            snprintf(w->backend, sizeof w->backend, "%s", c->backend);
            w->numa_node = -1;
        } else {
            snprintf(w->name, sizeof w->name, "cpu:%u", w->index);
            snprintf(w->backend, sizeof w->backend, "cpu");
            w->numa_node = (int)(w->index % (uint32_t)nodes);
            uint32_t rank = w->index / (uint32_t)nodes;
            uint32_t of = (c->n_cpu - (uint32_t)w->numa_node + (uint32_t)nodes - 1) / (uint32_t)nodes;
            assign_cpus(w, w->numa_node, rank, of ? of : 1);
        }
        if (build_argv(w, c, w->is_gpu && s->host_own) < 0)
            return pi_error_set(err, "worker %s: command line too long (model path or endpoint)", w->name);
    }
    return 0;
}

/* A new socket to the GPU worker about to start, with pid's offer already
 * in it: what it keeps (the arena, the warm rows' memory), then the end.
 * *child = the worker's end. */
static int vram_offer(supervisor *s, int *child, pi_error *err)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return pi_error_set(err, "worker gpu: socketpair: %s", strerror(errno));
    for (uint32_t k = FD_PASS_VRAM; k < FD_PASS_KINDS; k++) {
        if (s->kept[k].fd < 0)
            continue;
        fd_pass_msg m = {.magic = FD_PASS_MAGIC, .kind = k, .bytes = s->kept[k].bytes};
        snprintf(m.backend, sizeof m.backend, "%s", s->kept[k].backend);
        if (fd_pass_send(sv[0], &m, s->kept[k].fd, err) < 0)
            goto fail;
    }
    fd_pass_msg end = {.magic = FD_PASS_MAGIC, .kind = FD_PASS_NONE};
    if (fd_pass_send(sv[0], &end, -1, err) < 0)
        goto fail;
    if (s->vram_sock >= 0)
        close(s->vram_sock);
    s->vram_sock = sv[0];
    *child = sv[1];
    return 0;
fail:
    close(sv[0]);
    close(sv[1]);
    return -1;
}

static void kept_drop(struct sup_kept *k)
{
    if (k->fd >= 0)
        close(k->fd);
    k->fd = -1;
    k->bytes = 0;
    k->backend[0] = '\0';
}

uint64_t supervisor_take_vram(supervisor *s, uint64_t *warm)
{
    *warm = 0;
    if (s->vram_sock < 0)
        return 0;
    /* the worker's whole set, up to its end: it replaces what was kept (a
     * worker that kept no warm memory lets the old one go) */
    struct sup_kept got[FD_PASS_KINDS];
    for (uint32_t k = 0; k < FD_PASS_KINDS; k++)
        got[k] = (struct sup_kept){.fd = -1};
    int ended = 0;
    for (;;) {
        fd_pass_msg m;
        int fd = -1;
        pi_error e;
        if (fd_pass_recv(s->vram_sock, 1, &m, &fd, &e) != 1)
            break;
        if (m.kind == FD_PASS_NONE) {
            if (fd >= 0)
                close(fd);
            ended = 1;
            break;
        }
        if (m.kind >= FD_PASS_KINDS || fd < 0) {
            if (fd >= 0)
                close(fd);
            continue;
        }
        kept_drop(&got[m.kind]);
        got[m.kind] = (struct sup_kept){.fd = fd, .bytes = m.bytes};
        snprintf(got[m.kind].backend, sizeof got[m.kind].backend, "%s", m.backend);
    }
    if (!ended) {   /* nothing handed over (or a broken set): keep what was kept */
        for (uint32_t k = 0; k < FD_PASS_KINDS; k++)
            kept_drop(&got[k]);
        return 0;
    }
    for (uint32_t k = 0; k < FD_PASS_KINDS; k++) {
        kept_drop(&s->kept[k]);
        s->kept[k] = got[k];
    }
    *warm = s->kept[FD_PASS_WARM].bytes;
    return s->kept[FD_PASS_VRAM].bytes;
}

void supervisor_close(supervisor *s)
{
    if (!s->n)
        return;     /* never initialised: its fds are not set */
    if (s->vram_sock >= 0)
        close(s->vram_sock);
    s->vram_sock = -1;
    for (uint32_t k = 0; k < FD_PASS_KINDS; k++)
        kept_drop(&s->kept[k]);
}

int supervisor_spawn(supervisor *s, sup_worker *w, double now, pi_error *err)
{
    pid_t parent = getpid();
    int vram_child = -1;
    if (w->is_gpu && vram_offer(s, &vram_child, err) < 0)
        return -1;
    pid_t p = fork();
    if (p < 0) {
        if (vram_child >= 0)
            close(vram_child);
        return pi_error_set(err, "worker %s: fork: %s", w->name, strerror(errno));
    }
    if (p == 0) {
        /* Only async-signal-safe calls here: pid has ZeroMQ threads. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        /* Out of the way of fd 3 first; dup2 onto fd 4 below drops close-on-exec. */
        int vram = vram_child >= 0 ? fcntl(vram_child, F_DUPFD_CLOEXEC, 10) : -1;
        if (vram_child >= 0 && vram < 0)
            _exit(126);
        /* The step segment (a huge-page memfd has no name) stays open
         * across exec as fd SUP_SHM_FD; every other fd is close-on-exec. */
        if (s->shm_fd > 0) {
            if (s->shm_fd != SUP_SHM_FD && dup2(s->shm_fd, SUP_SHM_FD) < 0)
                _exit(126);
            if (fcntl(SUP_SHM_FD, F_SETFD, 0) < 0)
                _exit(126);
        }
        if (vram >= 0 && dup2(vram, SUP_VRAM_FD) < 0)
            _exit(126);
        if (w->is_gpu && s->host_own)   /* a plain syscall; unpinned on failure */
            (void)sched_setaffinity(0, sizeof s->host_set, &s->host_set);
        execv(w->argv[0], w->argv);
        static const char m1[] = "pid: cannot exec ", m2[] = " (the worker binaries belong next to pid)\n";
        ssize_t r = write(2, m1, sizeof m1 - 1);
        r = write(2, w->argv[0], strlen(w->argv[0]));
        r = write(2, m2, sizeof m2 - 1);
        (void)r;
        _exit(127);
    }
    if (vram_child >= 0)
        close(vram_child);
    w->pid = p;
    w->state = SUP_STARTING;
    w->last_seen_ms = w->main_seen_ms = w->spawned_ms = now;
    w->rss_bytes = w->device_bytes = 0;
    return 0;
}

sup_worker *supervisor_reap(supervisor *s, pid_t pid, int status, double now, int stopping)
{
    for (uint32_t i = 0; i < s->n; i++) {
        sup_worker *w = &s->w[i];
        if (w->pid != pid)
            continue;
        char how[128];
        if (WIFEXITED(status))
            snprintf(how, sizeof how, "exited with status %d%s", WEXITSTATUS(status),
                     WEXITSTATUS(status) == 127 ? " (could not exec the worker binary)" : "");
        else if (WIFSIGNALED(status))
            snprintf(how, sizeof how, "killed by signal %d (%s)", WTERMSIG(status),
                     strsignal(WTERMSIG(status)));
        else
            snprintf(how, sizeof how, "stopped");
        size_t len = strlen(w->last_error);
        if (len && len + 3 < sizeof w->last_error && !strstr(w->last_error, "; ")) {
            snprintf(w->last_error + len, sizeof w->last_error - len, "; %s", how);
        } else if (!len) {
            snprintf(w->last_error, sizeof w->last_error, "%s", how);
        }
        /* its own exit while starting (not a kill: a fault or the hang check) */
        if (w->state == SUP_STARTING && WIFEXITED(status))
            w->failed_starts++;
        w->pid = 0;
        w->rss_bytes = 0;
        if (stopping) {
            w->state = SUP_DEAD;
        } else {
            w->state = SUP_RESTARTING;
            w->restart_at_ms = now + w->backoff_ms;
            w->backoff_ms = next_backoff(w->backoff_ms);
        }
        return w;
    }
    return NULL;
}

/* The state letter of /proc/PID/stat ('R', 'S', 'T' stopped...), 0 if unknown. */
static char proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *rp = strrchr(buf, ')'); /* the name may hold spaces and parentheses */
    return rp && rp[1] == ' ' ? rp[2] : 0;
}

/* Why w counts as hung now, or NULL. A starting worker may load for
 * minutes without a word: only a stopped one is hung then. */
static const char *hung(const sup_worker *w, double now, char *why, size_t cap)
{
    double silent = now - w->last_seen_ms, main_silent = now - w->main_seen_ms;
    if (silent > SUP_STOPPED_MS && proc_state(w->pid) == 'T')
        snprintf(why, cap, "stopped (SIGSTOP?) and silent for %.0f ms: killed as hung", silent);
    else if (w->state != SUP_READY)
        return NULL;
    else if (silent > SUP_HANG_MS)
        snprintf(why, cap, "no heartbeat for %.0f ms: killed as hung", silent);
    else if (main_silent > SUP_STEP_MAX_MS)
        snprintf(why, cap, "its main thread sent nothing for %.0f s while its heartbeat thread "
                           "beat (one step that long): killed as hung", main_silent / 1e3);
    else
        return NULL;
    return why;
}

void supervisor_tick(supervisor *s, double now)
{
    for (uint32_t i = 0; i < s->n; i++) {
        sup_worker *w = &s->w[i];
        if (w->state == SUP_RESTARTING && now >= w->restart_at_ms) {
            pi_error e;
            w->restarts++;
            w->last_error[0] = 0;
            if (supervisor_spawn(s, w, now, &e) < 0) {
                w->failed_starts++;
                snprintf(w->last_error, sizeof w->last_error, "%s", e.msg);
                w->backoff_ms = next_backoff(w->backoff_ms);    /* never 0 here: no tight loop of failing forks */
                w->restart_at_ms = now + w->backoff_ms;
            }
        } else if ((w->state == SUP_READY || w->state == SUP_STARTING) && w->pid > 0 &&
                   hung(w, now, w->last_error, sizeof w->last_error)) {
            kill(w->pid, SIGKILL);
            /* One kill; SIGCHLD does the rest. SIGCONT lets a stopped
             * process take the SIGKILL at once. */
            kill(w->pid, SIGCONT);
            w->last_seen_ms = w->main_seen_ms = now;
        }
    }
}

double supervisor_next_due(const supervisor *s, double now)
{
    double best = -1;
    for (uint32_t i = 0; i < s->n; i++)
        if (s->w[i].state == SUP_RESTARTING) {
            double d = s->w[i].restart_at_ms - now;
            if (d < 0)
                d = 0;
            if (best < 0 || d < best)
                best = d;
        }
    return best;
}

void supervisor_seen(sup_worker *w, double now) { w->last_seen_ms = w->main_seen_ms = now; }

void supervisor_seen_hb(sup_worker *w, double now) { w->last_seen_ms = now; }

void supervisor_ready(sup_worker *w, double now)
{
    w->state = SUP_READY;
    w->ever_ready = 1;
    w->failed_starts = 0;
    w->backoff_ms = BACKOFF_FIRST_MS;
    w->last_seen_ms = w->main_seen_ms = now;
    w->last_error[0] = 0;
}

sup_worker *supervisor_find(supervisor *s, const char *name, size_t len)
{
    for (uint32_t i = 0; i < s->n; i++)
        if (strlen(s->w[i].name) == len && !memcmp(s->w[i].name, name, len))
            return &s->w[i];
    return NULL;
}

int supervisor_all_ready(const supervisor *s)
{
    for (uint32_t i = 0; i < s->n; i++)
        if (s->w[i].state != SUP_READY)
            return 0;
    return 1;
}

void supervisor_kill(sup_worker *w)
{
    if (w->pid > 0)
        kill(w->pid, SIGKILL);
}

void supervisor_kill_all(supervisor *s)
{
    for (uint32_t i = 0; i < s->n; i++)
        supervisor_kill(&s->w[i]);
}

uint32_t supervisor_running(const supervisor *s)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->n; i++)
        n += s->w[i].pid > 0;
    return n;
}

uint64_t supervisor_rss(pid_t pid)
{
    return pi_rss_bytes((int)pid);
}
