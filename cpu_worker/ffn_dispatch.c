/* Picks the sparse FFN variant once at start-up: the widest one this CPU
 * (and its OS: __builtin_cpu_supports checks the saved vector state) runs,
 * or the one PI_CPU_KERNEL names. Nothing is cached here; the caller keeps
 * the pointer (ffn_pool_new takes it). */
#include <stdlib.h>
#include <string.h>

#include "ffn_sparse.h"

#if defined(__x86_64__)
#include <cpuid.h>

/* F16C through cpuid: not every compiler's __builtin_cpu_supports knows it. */
static int has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

static int cpu_has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
}

static int cpu_has_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && cpu_has_avx2();
}
#else
static int cpu_has_avx2(void) { return 0; }
static int cpu_has_avx512(void) { return 0; }
#endif

const ffn_kernels *ffn_kernels_by_name(const char *name, pi_error *err)
{
    if (strcmp(name, "plain") == 0)
        return ffn_kernels_plain();
    if (strcmp(name, "avx2") == 0) {
        if (!ffn_kernels_avx2() || !cpu_has_avx2())
            goto lacks;
        return ffn_kernels_avx2();
    }
    if (strcmp(name, "avx512") == 0) {
        if (!ffn_kernels_avx512() || !cpu_has_avx512())
            goto lacks;
        return ffn_kernels_avx512();
    }
    pi_error_set(err, "CPU kernel '%s' is unknown: use plain, avx2 or avx512", name);
    return NULL;
lacks:
    pi_error_set(err, "CPU kernel '%s' needs instructions this CPU (or this build) lacks "
                 "(avx2: AVX2+FMA+F16C; avx512: also AVX-512F/BW/VL); unset PI_CPU_KERNEL "
                 "or choose plain", name);
    return NULL;
}

const ffn_kernels *ffn_kernels_select(pi_error *err)
{
    const char *forced = getenv("PI_CPU_KERNEL");
    if (forced && *forced) {
        const ffn_kernels *k = ffn_kernels_by_name(forced, err);
        if (!k)
            pi_error_wrap(err, "PI_CPU_KERNEL=%s", forced);
        return k;
    }
    if (ffn_kernels_avx512() && cpu_has_avx512())
        return ffn_kernels_avx512();
    if (ffn_kernels_avx2() && cpu_has_avx2())
        return ffn_kernels_avx2();
    return ffn_kernels_plain();
}
