/* pi-gpu-worker: parses the flags pid passes (docs/architecture.md) and runs
 * the worker loop. Exit codes: 0 after Quit, 1 on a fatal error (printed and
 * sent to pid), 2 on bad flags. With --probe-memory it only reports the
 * device's memory (below) and exits. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "pi_proc.h"
#include "pred_quant.h"
#include "worker.h"

#ifdef PI_HAVE_CUDA
/* cuda_probe.cu: -1 on failure, -2 out of device memory (why says which) */
int pi_cuda_mem_info(int device, uint64_t *free_bytes, uint64_t *total_bytes, char *why, size_t cap);
#endif

/* Stands in for the device's memory, for any backend, in --probe-memory:
 * "FREE" or "FREE,TOTAL" in bytes. Lets tests on machines without a GPU
 * (CI) take pid's free-memory path (docs/architecture.md, "VRAM budget"). */
#define PRETEND_ENV "PI_PRETEND_GPU_MEMORY"

static void usage(FILE *f)
{
    fprintf(f, "usage: pi-gpu-worker --model PATH --ctl ENDPOINT --shm NAME [--backend host|cuda]\n"
               "       [--hot K | --plan FILE] [--warm-share F] [--max-seqs S] [--max-batch B] [--solo-batch P] [--n-ctx C] [--cpu-workers N] [--device D]\n"
               "       [--ffn dense|exact|predicted] [--measure-recall] [--predictor-type file|q8_0] [--vram-sock FD]\n"
               "       [--own-cpus]   (pid pinned it to CPUs no CPU worker uses: it waits spinning)\n"
               "       pi-gpu-worker --probe-memory [--backend host|cuda] [--device D]\n"
               "Started by pid; serves the GPU part of each step (docs/architecture.md).\n"
               "--probe-memory prints 'free F total T source S' (bytes of the device; S = cuda, pretend\n"
               "or none: the host backend has no device), 'error MESSAGE' or 'oom MESSAGE' (no room for\n"
               "a CUDA context; both exit 1); pid runs it to size its VRAM budget without a CUDA context\n"
               "of its own. " PRETEND_ENV "=FREE[,TOTAL] (bytes) stands in for the device.\n");
}

/* PRETEND_ENV's value: FREE, or FREE,TOTAL with TOTAL >= FREE > 0. */
static int parse_pretend(const char *v, uint64_t *free_b, uint64_t *total_b)
{
    char buf[64];
    if (strlen(v) >= sizeof buf)
        return -1;
    memcpy(buf, v, strlen(v) + 1);
    char *comma = strchr(buf, ',');
    if (comma)
        *comma = 0;
    if (pi_parse_u64(buf, UINT64_MAX, free_b) < 0 || *free_b == 0)
        return -1;
    *total_b = *free_b;
    if (comma && (pi_parse_u64(comma + 1, UINT64_MAX, total_b) < 0 || *total_b < *free_b))
        return -1;
    return 0;
}

/* --probe-memory: one line on stdout for pid (daemon/gpu_probe.c). */
static int probe_memory(const char *backend, int device)
{
    uint64_t f = 0, t = 0;
    const char *source = "none", *pretend = getenv(PRETEND_ENV);
    if (pretend && *pretend) {
        if (parse_pretend(pretend, &f, &t) < 0) {
            printf("error %s='%s': expected FREE or FREE,TOTAL in bytes (TOTAL >= FREE > 0)\n", PRETEND_ENV,
                   pretend);
            return 1;
        }
        source = "pretend";
    } else if (!strcmp(backend, "cuda")) {
#ifdef PI_HAVE_CUDA
        char why[300];
        int rc = pi_cuda_mem_info(device, &f, &t, why, sizeof why);
        if (rc < 0) {
            printf("%s %s\n", rc == -2 ? "oom" : "error", why);
            return 1;
        }
        source = "cuda";
#else
        (void)device;
        printf("error this build has no CUDA backend (rebuild with -DPI_CUDA=ON)\n");
        return 1;
#endif
    } else if (strcmp(backend, "host")) {
        printf("error unknown backend '%s': use host or cuda\n", backend);
        return 1;
    }
    printf("free %" PRIu64 " total %" PRIu64 " source %s\n", f, t, source);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* A whole-number flag value; the message names the flag. */
static int parse_u64(const char *flag, const char *s, uint64_t max, uint64_t *out)
{
    if (pi_parse_u64(s, max, out) == 0)
        return 0;
    fprintf(stderr, "pi-gpu-worker: %s '%s': expected a whole number up to %" PRIu64 "\n", flag, s, max);
    return -1;
}

int main(int argc, char **argv)
{
    /* pid gone = nothing left to serve */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    gpu_worker_opts o = {.backend = "host", .n_hot = -1, .max_seqs = 1, .max_batch = 1, .vram_sock = -1,
                         .started_ms = pi_now_ms()};
    int probe = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--measure-recall")) {
            o.measure_recall = 1;
            continue;
        }
        if (!strcmp(a, "--own-cpus")) {
            o.own_cpus = 1;
            continue;
        }
        if (!strcmp(a, "--probe-memory")) {
            probe = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "pi-gpu-worker: %s needs a value (or is unknown)\n", a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        uint64_t u = 0;
        int bad = 0;
        if (!strcmp(a, "--model"))
            o.model_path = v;
        else if (!strcmp(a, "--ctl"))
            o.ctl = v;
        else if (!strcmp(a, "--shm"))
            o.shm_name = v;
        else if (!strcmp(a, "--backend"))
            o.backend = v;
        else if (!strcmp(a, "--plan"))
            o.plan_path = v;
        else if (!strcmp(a, "--hot"))
            bad = parse_u64(a, v, UINT32_MAX, &u), o.n_hot = (int64_t)u;
        else if (!strcmp(a, "--predictor-type")) {
            pi_error perr = {{0}};
            int t = -1;
            if (predictor_type_parse(v, &t, &perr) < 0) {
                fprintf(stderr, "pi-gpu-worker: --predictor-type: %s\n", perr.msg);
                bad = -1;
            }
            o.pred_q8 = t >= 0;
        }
        else if (!strcmp(a, "--warm-share")) {
            if (pi_parse_share(v, &o.warm_share) < 0) {
                fprintf(stderr, "pi-gpu-worker: --warm-share '%s': expected a share from 0 to 1\n", v);
                bad = -1;
            }
        }
        else if (!strcmp(a, "--ffn")) {
            if (pi_ffn_mode_parse(v, &o.ffn) < 0) {
                fprintf(stderr, "pi-gpu-worker: --ffn '%s': expected dense, exact or predicted\n", v);
                bad = -1;
            }
        } else if (!strcmp(a, "--max-seqs"))
            bad = parse_u64(a, v, UINT32_MAX, &u), o.max_seqs = (uint32_t)u;
        else if (!strcmp(a, "--max-batch"))
            bad = parse_u64(a, v, UINT32_MAX, &u), o.max_batch = (uint32_t)u;
        else if (!strcmp(a, "--solo-batch"))
            bad = parse_u64(a, v, 65536, &u), o.solo_batch = (uint32_t)u;
        else if (!strcmp(a, "--n-ctx"))
            bad = parse_u64(a, v, UINT32_MAX, &u), o.n_ctx = (uint32_t)u;
        else if (!strcmp(a, "--cpu-workers"))
            bad = parse_u64(a, v, 256, &u), o.n_cpu_workers = (uint32_t)u;
        else if (!strcmp(a, "--device"))
            bad = parse_u64(a, v, 1024, &u), o.device = (int)u;
        else if (!strcmp(a, "--vram-sock"))
            bad = parse_u64(a, v, 65535, &u), o.vram_sock = (int)u;
        else {
            fprintf(stderr, "pi-gpu-worker: unknown flag %s\n", a);
            usage(stderr);
            return 2;
        }
        if (bad)
            return 2;
    }
    if (probe)
        return probe_memory(o.backend, o.device);
    if (!o.model_path || !o.ctl || !o.shm_name) {
        fprintf(stderr, "pi-gpu-worker: --model, --ctl and --shm are required\n");
        usage(stderr);
        return 2;
    }
    if (o.max_seqs == 0 || o.max_batch == 0) {
        fprintf(stderr, "pi-gpu-worker: --max-seqs and --max-batch must be at least 1\n");
        return 2;
    }
    pi_error err = {{0}};
    if (gpu_worker_run(&o, &err) < 0) {
        fprintf(stderr, "pi-gpu-worker: %s\n", err.msg);
        return 1;
    }
    return 0;
}
