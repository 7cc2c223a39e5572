// What pid needs to know of the CUDA devices before it plans, asked in a
// process of its own (pi-gpu-worker --probe-memory; pid makes no CUDA
// context): whether one is usable (--gpu-backend auto) and its free memory
// (the default VRAM budget).
#include <stdint.h>
#include <stdio.h>

#include <cuda_runtime.h>

extern "C" int pi_cuda_device_count(void);
extern "C" int pi_cuda_mem_info(int device, uint64_t *free_bytes, uint64_t *total_bytes, char *why, size_t cap);

extern "C" int pi_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess)
        return 0;
    return n;
}

// Free and total bytes of the device, as cudaMemGetInfo sees them from this
// process (whose own context is not in "free"); -1 with why on failure, -2
// when not even a context fits (the device's memory is held elsewhere).
extern "C" int pi_cuda_mem_info(int device, uint64_t *free_bytes, uint64_t *total_bytes, char *why, size_t cap)
{
    int n = pi_cuda_device_count();
    if (device < 0 || device >= n) {
        snprintf(why, cap, "CUDA device %d does not exist (%d usable device%s; no GPU or no driver?)", device, n,
                 n == 1 ? "" : "s");
        return -1;
    }
    cudaError_t e = cudaSetDevice(device);
    size_t f = 0, t = 0;
    if (e == cudaSuccess)
        e = cudaMemGetInfo(&f, &t);
    if (e == cudaErrorMemoryAllocation) {   // not even a context fits
        snprintf(why, cap, "CUDA device %d: out of device memory for a CUDA context; another process holds the "
                 "GPU's memory (nvidia-smi shows which): free it and start again", device);
        return -2;
    }
    if (e != cudaSuccess) {
        snprintf(why, cap, "CUDA device %d: cudaMemGetInfo: %s", device, cudaGetErrorString(e));
        return -1;
    }
    *free_bytes = f;
    *total_bytes = t;
    return 0;
}
