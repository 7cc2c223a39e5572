/* gpu_probe: the GPU's free and total memory, for the default VRAM budget,
 * asked of `pi-gpu-worker --probe-memory` in a child process. pid makes no
 * CUDA context of its own: it would hold VRAM for pid's whole life, and a
 * CUDA context does not survive fork. The worker binary answers for either
 * backend: cuda reads cudaMemGetInfo, host has no device (0 0), and
 * PI_PRETEND_GPU_MEMORY stands in for the device in both (gpu_worker/main.c). */
#ifndef PI_DAEMON_GPU_PROBE_H
#define PI_DAEMON_GPU_PROBE_H

#include <stdint.h>

#include "pi_error.h"

typedef struct gpu_memory {
    uint64_t free_bytes, total_bytes; /* 0 0: no device (host backend) */
    char source[16];                  /* "cuda", "pretend" or "none" */
} gpu_memory;

/* Runs bin_dir/pi-gpu-worker --probe-memory --backend backend and reads its
 * line, waiting at most timeout_ms. -1 with err naming what went wrong (the
 * probe's own message when it gave one); GPU_PROBE_OOM when the device has
 * not even the memory for a CUDA context (held by another process). */
#define GPU_PROBE_OOM (-2)
int gpu_probe_memory(const char *bin_dir, const char *backend, double timeout_ms, gpu_memory *out, pi_error *err);

#endif
