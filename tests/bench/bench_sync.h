/* The GPU variant of bench_sync (bench_sync_cuda.cu). */
#ifndef PI_BENCH_SYNC_H
#define PI_BENCH_SYNC_H

#include <stddef.h>
#include <stdint.h>

#define BENCH_MAX_WORKERS 16

typedef struct bench_gpu_args {
    void *base;                 /* the step segment */
    size_t size;
    size_t off_x, off_layer;
    size_t off_done[BENCH_MAX_WORKERS], off_partial[BENCH_MAX_WORKERS];
    uint32_t dim, layers, steps, warmup, n_workers, first_tick;
} bench_gpu_args;

/* 0 ok, 1 no device (skip), -1 error (message in err). zero_copy: kernels
 * write xn to / read partials from the mapped segment instead of copies. */
int bench_gpu_run(const bench_gpu_args *a, int zero_copy, double *us_per_layer, char *err, size_t err_cap);

#endif
