// One device (or host) allocation through CUDA's virtual memory API that
// another process can keep as a POSIX file descriptor
// (cuMemExportToShareableHandle): the GPU worker's arena and its warm rows'
// host memory, kept by pid across the worker's restarts (vram_arena.h). The driver API is reached through the runtime's entry
// points, so the binaries need no libcuda where no GPU is (CI).
#ifndef PI_GPU_CUDA_VMM_CUH
#define PI_GPU_CUDA_VMM_CUH

#include <cuda.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "pi_error.h"

// C linkage: the CUDA tests (C) reach kept host memory through it too.
typedef struct cuda_vmm {
    CUmemGenericAllocationHandle handle;
    CUdeviceptr ptr;
    size_t size;
    int device;
    int mapped, reserved, held;
    void *fn[10];           // the driver's functions (cuda_vmm.cu)
} cuda_vmm;

// Creates size bytes (rounded up to the granularity; v->size says how many)
// on device, or with fd >= 0 imports the allocation fd names (size: its
// size), and maps it read-write at v->ptr. Errors leave v closed.
int cuda_vmm_open(cuda_vmm *v, int device, size_t size, int fd, pi_error *err);

// The same in host memory of NUMA node host_numa (>= 0; -1: on device, as
// cuda_vmm_open), pinned by the driver for as long as a handle or a
// descriptor of it lives, mapped at v->ptr for the device and the CPU both.
// A restarted worker imports it without pinning a page again.
int cuda_vmm_open_at(cuda_vmm *v, int device, int host_numa, size_t size, int fd, pi_error *err);

// A new descriptor of the allocation (close-on-exec is the caller's).
int cuda_vmm_export(cuda_vmm *v, int *fd, pi_error *err);

void cuda_vmm_close(cuda_vmm *v);

#ifdef __cplusplus
}
#endif

#endif
