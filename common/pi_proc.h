/* Small process facts every pi process needs: a monotonic clock and the
 * resident memory of a process (for Status and heartbeats). */
#ifndef PI_PROC_H
#define PI_PROC_H

#include <stddef.h>
#include <stdint.h>

/* Milliseconds on CLOCK_MONOTONIC. */
double pi_now_ms(void);

/* Resident set size in bytes of process pid (0 = this process), from
 * /proc/PID/statm; 0 if it cannot be read (the process is gone). */
uint64_t pi_rss_bytes(int pid);

/* Pins every thread of this process (and so the threads it starts later)
 * to the CPUs in set (a cpu_set_t); the number of threads it could not pin,
 * or -1 when /proc/self/task cannot be read. */
int pi_pin_threads(const void *set, size_t set_bytes);

#endif
