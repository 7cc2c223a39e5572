/* The plain cold-FFN kernel of a CPU worker: the shard's share of one
 * layer's FFN for every entry of a step. The reference every faster variant
 * is compared with. */
#ifndef PI_CPU_FFN_COLD_H
#define PI_CPU_FFN_COLD_H

#include <stdint.h>

#include "shard.h"

/* For each entry e < n: out[e] = sum over the shard's neurons j of
 * act(gate_j . x[e], up_j . x[e]) * downT_j, where x and out hold n rows of
 * dim floats (out is overwritten). One thread; allocates nothing. */
void ffn_cold(const cpu_shard *s, uint32_t l, const float *x, uint32_t n, float *out);

#endif
