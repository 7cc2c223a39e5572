// The switch and the thread split of the tiled product for several entries
// (cuda_matvec_batch.cuh; its kernel is instantiated in cuda_matvec.cu, where
// the chunk readers live).
#include "cuda_matvec_batch.cuh"
#include "cuda_switch.h"

int cuda_mv_batch_on(void)
{
    return cuda_switch("PI_CUDA_MV_BATCH", 0);
}

uint32_t cuda_mv_batch_groups(uint32_t n)
{
    const uint32_t need = ((n < MVB_ENTRIES ? n : MVB_ENTRIES) + 3) / 4;
    uint32_t g = 1;
    while (g < need)
        g *= 2;
    return g;
}
