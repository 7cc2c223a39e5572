// RoPE's device arithmetic, shared by the rope kernel (cuda_attn.cu) and the
// QKV product's rope epilogue (cuda_matvec.cu), so both give the same bits.
#ifndef PI_CUDA_ROPE_CUH
#define PI_CUDA_ROPE_CUH

#include <cuda_runtime.h>

// cos and sin of a rope angle (radians, >= 0) as floats. The angle is taken
// in double, as the host takes it, and reduced to [-pi, pi] there, so a long
// position keeps its digits; the float sincos of the rest agrees with the
// host's double cos and sin to ~1e-7.
__device__ __forceinline__ void rope_cos_sin(double ang, float &c, float &s)
{
    constexpr double TWO_PI = 6.283185307179586;
    const double r = fma(-rint(ang * (1.0 / TWO_PI)), TWO_PI, ang);
    sincosf((float)r, &s, &c);
}

// The pair (a, b) rotated by the angle whose cos and sin are (c, s), rounded
// op by op (no contraction into fma, which the compiler may choose
// differently in different kernels).
__device__ __forceinline__ float2 rope_rotate(float a, float b, float c, float s)
{
    return make_float2(__fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s)), __fadd_rn(__fmul_rn(a, s), __fmul_rn(b, c)));
}

#endif
