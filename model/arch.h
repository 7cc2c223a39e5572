/* The architectures pi reads, and what sets each apart from llama: the
 * norm, the rotary embedding, which biases its tensors carry, its FFN's
 * shape, whether attention and FFN run in parallel. Names and keys are
 * those of llama.cpp's and PowerInfer's converters (docs/formats.md). */
#ifndef PI_ARCH_H
#define PI_ARCH_H

#include "model.h"

typedef struct pi_arch_info {
    const char *name;       /* general.architecture, and the key prefix */
    pi_norm norm;
    pi_rope rope;
    pi_act act;             /* the default; pi.ffn_activation overrides a gated one */
    int parallel;           /* falcon */
    int qkv_bias;           /* blk.N.attn_{q,k,v}.bias required (qwen2, opt) */
    int out_bias;           /* blk.N.attn_output.bias required (opt) */
    int ffn_bias;           /* fc1 bias per neuron and fc2 bias per output (opt) */
    int fused_qkv;          /* blk.N.attn_qkv.weight instead of q, k, v (falcon) */
    int single_ffn;         /* no gate: the one input projection is ffn_up (opt, falcon) */
    int pos_embd;           /* position_embd.weight, rows pos + 2 (opt) */
} pi_arch_info;

/* The architecture named name, or NULL. */
const pi_arch_info *pi_arch_find(const char *name);

/* "'llama', 'qwen2', ...": the supported names, quoted, for error messages. */
const char *pi_arch_names(void);

#endif
