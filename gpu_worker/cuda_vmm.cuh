// One device allocation through CUDA's virtual memory API that another
// process can keep as a POSIX file descriptor (cuMemExportToShareableHandle):
// the GPU worker's arena, kept by pid across the worker's restarts
// (vram_arena.h). The driver API is reached through the runtime's entry
// points, so the binaries need no libcuda where no GPU is (CI).
#ifndef PI_GPU_CUDA_VMM_CUH
#define PI_GPU_CUDA_VMM_CUH

#include <cuda.h>
#include <stddef.h>

extern "C" {
#include "pi_error.h"
}

struct cuda_vmm {
    CUmemGenericAllocationHandle handle;
    CUdeviceptr ptr;
    size_t size;
    int device;
    int mapped, reserved, held;
    void *fn[10];           // the driver's functions (cuda_vmm.cu)
};

// Creates size bytes (rounded up to the granularity; v->size says how many)
// on device, or with fd >= 0 imports the allocation fd names (size: its
// size), and maps it read-write at v->ptr. Errors leave v closed.
int cuda_vmm_open(cuda_vmm *v, int device, size_t size, int fd, pi_error *err);

// A new descriptor of the allocation (close-on-exec is the caller's).
int cuda_vmm_export(cuda_vmm *v, int *fd, pi_error *err);

void cuda_vmm_close(cuda_vmm *v);

#endif
