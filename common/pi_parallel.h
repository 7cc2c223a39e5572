/* Jobs run side by side, one a thread: the work splitting that model
 * conversion (sparse/pred_quant.c) and synthetic models (sparse/synth.c)
 * share. A job whose thread cannot start runs on the caller's, so the work
 * is always done. */
#ifndef PI_PARALLEL_H
#define PI_PARALLEL_H

#include <stddef.h>
#include <stdint.h>

/* Runs fn on each of n jobs (job i at (char *)jobs + i * size), each on a
 * thread of its own but the last, which runs on the caller's thread (as do
 * those whose thread could not start); returns when all are done. */
void pi_parallel(void *(*fn)(void *), void *jobs, size_t size, uint32_t n);

/* The CPUs this process may run on (its affinity), at least 1. */
uint32_t pi_cpus_usable(void);

#endif
