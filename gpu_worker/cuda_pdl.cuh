// Programmatic dependent launch (Hopper and later): a kernel put on the
// stream with pdl_launch may be scheduled while the kernel before it still
// runs, so its blocks sit ready on the multiprocessors instead of paying a
// launch and a ramp after the other drains. A decode step is ~14 small
// kernels a layer, so those gaps are a real share of a token.
//
// The contract: every kernel launched this way calls pdl_begin() before it
// reads or writes any memory that kernels earlier on the stream touch.
// pdl_begin() waits until the previous grid has completed and its writes
// are visible (so, kernel by kernel, every earlier one has), then lets the
// next kernel be scheduled. Reading weights, which no kernel writes, may
// come before it (prefetch_l2 below). Elsewhere (older GPUs, PI_CUDA_PDL=0) the launch is an
// ordinary one and pdl_begin() does nothing.
#ifndef PI_CUDA_PDL_CUH
#define PI_CUDA_PDL_CUH

#include <cuda_runtime.h>
#include <utility>

#include "cuda_switch.h"

__device__ __forceinline__ void pdl_begin()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Asks L2 for the bytes [p, p + bytes), a 128-byte line per thread of the
// `threads` that call it with their index t. A hint: loads after pdl_begin()
// read the current data whatever was prefetched, since every multiprocessor
// shares L2 and the prefetch leaves L1 alone. Before pdl_begin() it streams
// data in while the previous kernel finishes. (Tried on the matrix products'
// rows too: QKV 41.6 -> 51.3 us in isolation and no change in a step, so
// only the attention kernel's cache rows use it.)
__device__ __forceinline__ void prefetch_l2(const void *p, size_t bytes, unsigned t, unsigned threads)
{
    const char *c = static_cast<const char *>(p);
    for (size_t off = (size_t)t * 128; off < bytes; off += (size_t)threads * 128)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(c + off));
}

// PI_CUDA_PDL=0 launches every kernel the ordinary way (to measure the
// difference, or to rule PDL out when chasing a wrong result).
static inline int pdl_enabled()
{
    return cuda_switch("PI_CUDA_PDL", 1);
}

template <typename... Params, typename... Args>
cudaError_t pdl_launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                       Args &&...args)
{
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cfg.attrs = attr;
    cfg.numAttrs = pdl_enabled() ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

// Launch, returning the launch's error from the enclosing function.
#define PDL_LAUNCH(...)                                                                                        \
    do {                                                                                                       \
        cudaError_t pdl_e_ = pdl_launch(__VA_ARGS__);                                                          \
        if (pdl_e_ != cudaSuccess)                                                                             \
            return pdl_e_;                                                                                     \
    } while (0)

#endif
