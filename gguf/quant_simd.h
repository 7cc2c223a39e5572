/* AVX2 paths of quant.c's row kernels for the unquantized types (F32, F16),
 * chosen at run time when the CPU has AVX2, FMA and F16C. The reference
 * forward, the host backend and the profiler spend their time here.
 * quant_simd_dot sums in 32 lanes (not in order): results differ from the
 * scalar loop in the last bits. quant_simd_axpy is element-wise with the
 * same roundings as the scalar loop (a * w, then + y): bit-identical. */
#ifndef PI_QUANT_SIMD_H
#define PI_QUANT_SIMD_H

#include <stddef.h>

#include "quant.h"

/* 1 with *out set when this type and CPU have a fast path, else 0. */
int quant_simd_dot(pi_type type, const void *row, const float *x, size_t n, float *out);
int quant_simd_axpy(pi_type type, float a, const void *row, float *y, size_t n);

#endif
