/* The table of architectures (arch.h). Adding one is a row here plus, when
 * it computes something new, the op in model/ops.c and its use in the
 * reference forward and the host backend. */
#include "arch.h"

#include <string.h>

static const pi_arch_info archs[] = {
    {.name = "llama", .norm = PI_NORM_RMS, .rope = PI_ROPE_NORM, .act = PI_ACT_SILU},
    /* Qwen2: llama with biases on q, k and v, and NEOX rotation (its
     * converter does not permute q/k as llama's does). */
    {.name = "qwen2", .norm = PI_NORM_RMS, .rope = PI_ROPE_NEOX, .act = PI_ACT_SILU, .qkv_bias = 1},
    /* PowerInfer's Bamboo: llama's graph with dReLU, relu(gate) * relu(up). */
    {.name = "bamboo", .norm = PI_NORM_RMS, .rope = PI_ROPE_NORM, .act = PI_ACT_RELU_BOTH},
    /* OPT as PowerInfer reads it: learned positions (offset 2), LayerNorm
     * with bias, every projection biased, fc1 = ffn_up, fc2 = ffn_down(_t),
     * ReLU without a gate, output tied to the embedding. */
    {.name = "opt", .norm = PI_NORM_LAYER, .rope = PI_ROPE_NONE, .act = PI_ACT_RELU_SINGLE, .qkv_bias = 1,
     .out_bias = 1, .ffn_bias = 1, .single_ffn = 1, .pos_embd = 1},
    /* Falcon: fused qkv (multi-query), LayerNorm with bias, attention and
     * FFN in parallel, no gate (ReLU: PowerInfer's ReluFalcon). */
    {.name = "falcon", .norm = PI_NORM_LAYER, .rope = PI_ROPE_NEOX, .act = PI_ACT_RELU_SINGLE, .parallel = 1,
     .fused_qkv = 1, .single_ffn = 1},
};

const pi_arch_info *pi_arch_find(const char *name)
{
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (!strcmp(archs[i].name, name))
            return &archs[i];
    return NULL;
}

const char *pi_arch_names(void)
{
    return "'llama', 'qwen2', 'bamboo', 'opt' and 'falcon'";
}
