/* Proves how pid splits node 0's CPUs between the CPU workers and itself with
 * the GPU worker (daemon/supervisor.h): from 12 CPUs the first 3 are left to
 * them (PI_HOST_CPUS=k sets k), the GPU worker is told it may spin
 * (--own-cpus) only then, and no CPU worker is pinned to a CPU left to them.
 * Needs 4 CPUs on node 0 (below that the workers take them all): skipped,
 * saying so, on smaller machines (the CI's); the GPU machine runs it. */
#include <numa.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "supervisor.h"

/* 1 when CPU c is in the list "a,b-c,..." (supervisor's cpu_list format). */
static int in_list(const char *list, int c)
{
    const char *p = list;
    while (*p) {
        char *end;
        long lo = strtol(p, &end, 10), hi = lo;
        if (*end == '-')
            hi = strtol(end + 1, &end, 10);
        if (c >= lo && c <= hi)
            return 1;
        p = *end == ',' ? end + 1 : end;
        if (end == p && *p)
            break;
    }
    return 0;
}

static int has_arg(const sup_worker *w, const char *a)
{
    for (int i = 0; w->argv[i]; i++)
        if (!strcmp(w->argv[i], a))
            return 1;
    return 0;
}

/* supervisor_init with 2 CPU workers and PI_HOST_CPUS = env (NULL: unset):
 * checks the split; returns how many CPUs were left to pid and the GPU worker
 * when it confines them, else 0. */
static int check_split(const char *env, int want_left)
{
    if (env)
        CHECK(setenv("PI_HOST_CPUS", env, 1) == 0, "setenv");
    else
        CHECK(unsetenv("PI_HOST_CPUS") == 0, "unsetenv");
    sup_config c = {.bin_dir = "/nonexistent", .model = "m.gguf", .ctl = "ipc:///tmp/x", .shm_name = "/x",
                    .backend = "cuda", .n_cpu = 2, .max_seqs = 1, .max_batch = 1};
    supervisor s;
    pi_error err;
    CHECK(supervisor_init(&s, &c, &err) == 0, "%s", err.msg);
    int left = s.host_own ? CPU_COUNT(&s.host_set) : 0;
    CHECK(left == want_left, "PI_HOST_CPUS=%s: %d CPUs left to pid and the GPU worker, want %d", env ? env : "(unset)",
          left, want_left);
    CHECK(has_arg(&s.w[0], "--own-cpus") == (left > 0), "PI_HOST_CPUS=%s: --own-cpus %s", env ? env : "(unset)",
          left ? "missing" : "given without CPUs of its own");
    for (uint32_t i = 1; i < s.n; i++)
        for (int cpu = 0; cpu < CPU_SETSIZE && left; cpu++)
            CHECK(!(CPU_ISSET(cpu, &s.host_set) && in_list(s.w[i].cpus, cpu)),
                  "cpu worker %s is pinned to CPU %d, left to pid (its list %s)", s.w[i].name, cpu, s.w[i].cpus);
    printf("PI_HOST_CPUS=%s: %d CPUs left; cpu:0 on %s, cpu:1 on %s\n", env ? env : "(unset)", left, s.w[1].cpus,
           s.w[2].cpus);
    supervisor_close(&s);
    return left;
}

int main(void)
{
    cpu_set_t all;
    CHECK(sched_getaffinity(0, sizeof all, &all) == 0, "sched_getaffinity");
    int n = CPU_COUNT(&all);
    if (n < 4) {
        printf("SKIP: %d CPUs allowed here; pid leaves CPUs to itself and the GPU worker from 4 (12 for the default "
               "of 3), so there is nothing to check\n", n);
        return 77;
    }
    int nodes = numa_available() >= 0 ? numa_num_configured_nodes() : 1;
    if (nodes > 1) {
        printf("SKIP: %d NUMA nodes; this test takes the allowed CPUs for node 0's, as on one-node machines "
               "(the GPU machine's)\n", nodes);
        return 77;
    }
    check_split(NULL, n >= 12 ? 3 : 0);
    check_split("1", 0);
    check_split("2", 2 < n ? 2 : 0);
    check_split("3", 3 < n ? 3 : 0);
    printf("test_host_cpus: ok\n");
    return 0;
}
