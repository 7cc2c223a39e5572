// System-scope loads and stores of the counter words the device shares with
// the CPU workers through the mapped step segment (shm/seqcount.h's words):
// the step kernels' wait and publish (cuda_step.cu) and the predictor's
// compaction, which publishes a layer's tick itself (cuda_predict.cu).
#ifndef PI_CUDA_SYS_CUH
#define PI_CUDA_SYS_CUH

#include <stdint.h>

__device__ __forceinline__ uint32_t load_acquire_sys(const uint32_t *p)
{
    uint32_t v;
    asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

__device__ __forceinline__ void store_release_sys(uint32_t *p, uint32_t v)
{
    asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

#endif
