/* Proves pi_pin_threads (common/pi_proc.h) moves every thread of the process
 * to the given CPUs, threads started before it and after it alike: what pid
 * does to stay off the CPU workers' cores (PI_HOST_CPUS, daemon/supervisor.h). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>

#include "check.h"
#include "pi_proc.h"

static atomic_int go;

static void *waiter(void *arg)
{
    (void)arg;
    while (!atomic_load(&go))
        sched_yield();
    return NULL;
}

static void check_on(pthread_t t, const cpu_set_t *want, const char *which)
{
    cpu_set_t got;
    CHECK(pthread_getaffinity_np(t, sizeof got, &got) == 0, "pthread_getaffinity_np (%s)", which);
    CHECK(CPU_EQUAL(&got, want), "%s: on %d CPUs, not the %d it was pinned to", which, CPU_COUNT(&got),
          CPU_COUNT(want));
}

int main(void)
{
    cpu_set_t all, one;
    CHECK(sched_getaffinity(0, sizeof all, &all) == 0, "sched_getaffinity");
    int first = -1;
    for (int c = 0; c < CPU_SETSIZE && first < 0; c++)
        if (CPU_ISSET(c, &all))
            first = c;
    CHECK(first >= 0, "no allowed CPU");
    CPU_ZERO(&one);
    CPU_SET(first, &one);

    pthread_t before, after;
    CHECK(pthread_create(&before, NULL, waiter, NULL) == 0, "pthread_create");
    CHECK(pi_pin_threads(&one, sizeof one) == 0, "some threads could not be pinned");
    check_on(pthread_self(), &one, "the calling thread");
    check_on(before, &one, "a thread started before");
    CHECK(pthread_create(&after, NULL, waiter, NULL) == 0, "pthread_create");
    check_on(after, &one, "a thread started after");
    atomic_store(&go, 1);
    CHECK(pthread_join(before, NULL) == 0 && pthread_join(after, NULL) == 0, "join");
    /* Back to every allowed CPU (the set pid had before). */
    CHECK(pi_pin_threads(&all, sizeof all) == 0, "unpin");
    check_on(pthread_self(), &all, "the calling thread, unpinned");
    printf("test_pin_threads: 3 threads moved to CPU %d and back to %d CPUs\n", first, CPU_COUNT(&all));
    return 0;
}
