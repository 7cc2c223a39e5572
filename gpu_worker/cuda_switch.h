/* The CUDA backend's measurement switches: environment variables that turn
 * one kernel choice on or off so a device call can compare both in one run
 * (PI_CUDA_PDL, PI_CUDA_MV_BATCH, PI_CUDA_MV_SPLIT, PI_CUDA_QKV_ROPE,
 * PI_CUDA_FFN_FUSED, PI_CUDA_NORM_FOLD, PI_CUDA_PRED_ROWS, PI_CUDA_Q8_NARROW;
 * PI_CUDA_SYNC and PI_CUDA_WARM_VMM are read at create).
 * Read at launch, so a step graph keeps the choice it was captured with. */
#ifndef PI_CUDA_SWITCH_H
#define PI_CUDA_SWITCH_H

#include <stdlib.h>

/* "0" -> 0, "1" -> 1, unset or anything else -> dflt. */
static inline int cuda_switch(const char *name, int dflt)
{
    const char *v = getenv(name);
    if (v && v[0] && !v[1] && (v[0] == '0' || v[0] == '1'))
        return v[0] == '1';
    return dflt;
}

#endif
