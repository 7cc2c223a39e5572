// Reports whether a usable CUDA device is present (for --gpu-backend auto).
#include <cuda_runtime.h>

extern "C" int pi_cuda_device_count(void);

extern "C" int pi_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess)
        return 0;
    return n;
}
