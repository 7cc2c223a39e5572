// The switch and the thread split of the tiled product for several entries
// (cuda_matvec_batch.cuh; its kernel is instantiated in cuda_matvec.cu, where
// the chunk readers live).
#include "cuda_matvec_batch.cuh"
#include "cuda_switch.h"

int cuda_mv_batch_use(uint32_t n, int kquant)
{
    if (n < 2)
        return 0;
    int sw = cuda_switch("PI_CUDA_MV_BATCH", -1);
    if (sw >= 0)
        return sw;
    // Measured on the H200 (QKV of the 13B shape, F16): tiled 176 us vs 119 at
    // 4 entries, 278 vs 604 at 16, 691 vs 2207 at 64; q4_K at 16 entries 183 vs
    // 1352 (its one-warp expansion is compute-bound).
    return n >= (kquant ? MVB_MIN_KQUANT : MVB_MIN);
}

uint32_t cuda_mv_batch_groups(uint32_t n)
{
    const uint32_t need = ((n < MVB_ENTRIES ? n : MVB_ENTRIES) + 3) / 4;
    uint32_t g = 1;
    while (g < need)
        g *= 2;
    return g;
}
