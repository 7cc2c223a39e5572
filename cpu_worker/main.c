/* pi-cpu-worker: parses the flags pid passes (docs/architecture.md), pins
 * itself to --cpus, and runs the worker loop. Exit codes: 0 after Quit, 1 on
 * a fatal error (printed and sent to pid), 2 on bad flags. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "ffn_mode.h"
#include "worker.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: pi-cpu-worker --model PATH --ctl ENDPOINT --shm NAME --index I --of N\n"
               "       [--hot K | --plan FILE] [--warm-share F] [--numa-node NODE] [--cpus LIST] [--ffn dense|exact|predicted]\n"
               "       [--max-seqs S] [--n-ctx C]\n"
               "Started by pid; computes cold-neuron shard I of N of every FFN layer.\n");
}

/* A whole-number flag value; the message names the flag. */
static int parse_u64(const char *flag, const char *s, uint64_t max, uint64_t *out)
{
    if (pi_parse_u64(s, max, out) == 0)
        return 0;
    fprintf(stderr, "pi-cpu-worker: %s '%s': expected a whole number up to %" PRIu64 "\n", flag, s, max);
    return -1;
}

int main(int argc, char **argv)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);   /* pid gone = nothing left to serve */
    cpu_worker_opts o = {.n_hot = -1, .numa_node = -1};
    const char *cpus = NULL;
    int have_index = 0, have_of = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "pi-cpu-worker: %s needs a value (or is unknown)\n", a);
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
        else if (!strcmp(a, "--cpus"))
            cpus = v;
        else if (!strcmp(a, "--index"))
            bad = parse_u64(a, v, 255, &u), o.index = (uint32_t)u, have_index = 1;
        else if (!strcmp(a, "--of"))
            bad = parse_u64(a, v, 256, &u), o.of = (uint32_t)u, have_of = 1;
        else if (!strcmp(a, "--plan"))
            o.plan_path = v;
        else if (!strcmp(a, "--max-seqs"))
            bad = parse_u64(a, v, UINT32_MAX, &u), o.max_seqs = (uint32_t)u;
        else if (!strcmp(a, "--n-ctx"))
            bad = parse_u64(a, v, UINT32_MAX, &u), o.n_ctx = (uint32_t)u;
        else if (!strcmp(a, "--hot"))
            bad = parse_u64(a, v, UINT32_MAX, &u), o.n_hot = (int64_t)u;
        else if (!strcmp(a, "--warm-share")) {
            if (pi_parse_share(v, &o.warm_share) < 0) {
                fprintf(stderr, "pi-cpu-worker: --warm-share '%s': expected a share from 0 to 1\n", v);
                bad = -1;
            }
        }
        else if (!strcmp(a, "--ffn")) {
            if (pi_ffn_mode_parse(v, &o.ffn) < 0) {
                fprintf(stderr, "pi-cpu-worker: --ffn '%s': expected dense, exact or predicted\n", v);
                bad = -1;
            }
        } else if (!strcmp(a, "--numa-node")) {
            if (!strcmp(v, "-1"))
                o.numa_node = -1;
            else
                bad = parse_u64(a, v, 1023, &u), o.numa_node = (int)u;
        } else {
            fprintf(stderr, "pi-cpu-worker: unknown flag %s\n", a);
            usage(stderr);
            return 2;
        }
        if (bad)
            return 2;
    }
    if (!o.model_path || !o.ctl || !o.shm_name || !have_index || !have_of) {
        fprintf(stderr, "pi-cpu-worker: --model, --ctl, --shm, --index and --of are required\n");
        usage(stderr);
        return 2;
    }
    pi_error err = {{0}};
    if (cpus) {
        cpu_set_t set;
        if (cpu_list_parse(cpus, &set, &err) < 0) {
            fprintf(stderr, "pi-cpu-worker: --cpus: %s\n", err.msg);
            return 2;
        }
        if (sched_setaffinity(0, sizeof set, &set) != 0) {
            fprintf(stderr, "pi-cpu-worker: cannot pin to CPUs %s: %s (are they online and allowed?)\n", cpus,
                    strerror(errno));
            return 1;
        }
    }
    if (cpu_worker_run(&o, &err) < 0) {
        fprintf(stderr, "pi-cpu-worker: %s\n", err.msg);
        return 1;
    }
    return 0;
}
