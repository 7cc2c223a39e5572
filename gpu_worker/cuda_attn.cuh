// The per-token operations around the matrix products (cuda_attn.cu): RMS
// norm, RoPE with the store into the fp16 KV cache, and split-K attention
// (flash-decoding): the positions of each (entry, head) are cut into chunks
// of CUDA_ATTN_CHUNK, one block each computes its chunk's scores, a local
// softmax and the weighted values; the last block of an (entry, head) to
// finish merges the chunks, in the same launch. Grids depend only on the
// batch size and n_ctx, never on positions (which the kernels read from the
// device's entries), so a captured graph replays for any position.
#ifndef PI_CUDA_ATTN_CUH
#define PI_CUDA_ATTN_CUH

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "backend.h"
#include "cuda_needs.h"
}

// Positions per split (backend_cuda.cu checks cuda_needs.h's copy).
#define CUDA_ATTN_CHUNK 64

// rope_inv: head_dim / 2 doubles in device memory (cuda_rope_inv_freqs), the
// rope's pair frequencies with the model's scaling.
struct cuda_attn_shape {
    uint32_t n_layers, n_ctx, n_heads, n_kv_heads, head_dim;
    const double *rope_inv;
};

// out[i] = freq_scale * theta^(-2i / head_dim) / freqs[i] (freqs NULL: 1),
// i < head_dim / 2, in double: pair i's angle at pos is pos * out[i], the
// host's ops_rope_angle (llama.cpp's linear scaling and Llama 3's
// rope_freqs) to a few double roundings.
void cuda_rope_inv_freqs(double *out, uint32_t head_dim, float theta, float freq_scale, const float *freqs);

// Chunks of n_ctx positions: the splits of one (entry, head).
uint32_t cuda_attn_splits(uint32_t n_ctx);

// The attention scratch (part): first one counter per (entry, head) for
// CUDA_MAX_BATCH entries, which must be zero when the buffer is made (each
// launch leaves them zero), then n x n_heads x splits x (head_dim + 2)
// floats of partial results.
#define CUDA_ATTN_COUNTERS(n_heads) ((size_t)CUDA_NEEDS_MAX_BATCH * (n_heads))
size_t cuda_attn_part_floats(uint32_t n, uint32_t n_heads, uint32_t n_ctx, uint32_t head_dim);

// y[r] = x[r] / rms(x[r]) * w for r < n rows of dim, after x[r] += add[r]
// when add is given (a residual add fused in); when y_host is given (a
// device pointer into mapped host memory) the rows go there too, fenced for
// the CPU (system scope) before the kernel ends.
cudaError_t cuda_rmsnorm(cudaStream_t s, float *y, float *y_host, float *x, const float *add, const float *w,
                         uint32_t dim, float eps, uint32_t n);

// Rotates q (all heads) and k (kv heads) of each entry by its position
// (pairs (2i, 2i + 1) of a head by pos * sh.rope_inv[i]), then stores k and v
// into the caches at [slot][layer][pos].
cudaError_t cuda_rope_store(cudaStream_t s, float *q, float *k, const float *v, __half *k_cache, __half *v_cache,
                            const gpu_entry *e, uint32_t layer, const cuda_attn_shape &sh, uint32_t n);

// out[i] = softmax(q_i . K / sqrt(head_dim)) V over positions 0..pos_i of the
// entry's slot, per head (GQA: heads share kv heads in groups); head_dim
// even, at most 256. part: cuda_attn_part_floats(n, ...) floats.
cudaError_t cuda_attention(cudaStream_t s, float *out, const float *q, const __half *k_cache, const __half *v_cache,
                           float *part, const gpu_entry *e, uint32_t layer, const cuda_attn_shape &sh, uint32_t n);

#endif
