/* pi-gpu-worker: parses the flags pid passes (docs/architecture.md) and runs
 * the worker loop. Exit codes: 0 after Quit, 1 on a fatal error (printed and
 * sent to pid), 2 on bad flags. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "worker.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: pi-gpu-worker --model PATH --ctl ENDPOINT --shm NAME [--backend host|cuda]\n"
               "       [--hot K | --plan FILE] [--max-seqs S] [--max-batch B] [--n-ctx C] [--cpu-workers N] [--device D]\n"
               "       [--ffn dense|exact|predicted] [--measure-recall] [--vram-sock FD]\n"
               "Started by pid; serves the GPU part of each step (docs/architecture.md).\n");
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
    gpu_worker_opts o = {.backend = "host", .n_hot = -1, .max_seqs = 1, .max_batch = 1, .vram_sock = -1};
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
        else if (!strcmp(a, "--ffn")) {
            if (pi_ffn_mode_parse(v, &o.ffn) < 0) {
                fprintf(stderr, "pi-gpu-worker: --ffn '%s': expected dense, exact or predicted\n", v);
                bad = -1;
            }
        } else if (!strcmp(a, "--max-seqs"))
            bad = parse_u64(a, v, UINT32_MAX, &u), o.max_seqs = (uint32_t)u;
        else if (!strcmp(a, "--max-batch"))
            bad = parse_u64(a, v, UINT32_MAX, &u), o.max_batch = (uint32_t)u;
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
