/* pi_parallel.h: pthreads, joined before returning. */
#include "pi_parallel.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

void pi_parallel(void *(*fn)(void *), void *jobs, size_t size, uint32_t n)
{
    char *base = jobs;
    pthread_t *tid = n > 1 ? malloc((n - 1) * sizeof *tid) : NULL;
    unsigned char *started = n > 1 ? calloc(n - 1, 1) : NULL;
    for (uint32_t i = 0; tid && started && i + 1 < n; i++)
        started[i] = pthread_create(&tid[i], NULL, fn, base + i * size) == 0;
    for (uint32_t i = 0; i < n; i++)
        if (i + 1 == n || !started || !started[i])
            fn(base + i * size);
    for (uint32_t i = 0; started && i + 1 < n; i++)
        if (started[i] && pthread_join(tid[i], NULL) != 0)
            abort();    /* a joinable thread we started: cannot fail; its job would be half done */
    free(tid);
    free(started);
}

uint32_t pi_cpus_usable(void)
{
    cpu_set_t set;
    long n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (uint32_t)n;
}
