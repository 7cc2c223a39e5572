/* What the CUDA backend (backend_cuda.cu) needs from a VRAM budget beyond
 * weights + KV cache + hot neurons, described for the planner
 * (sparse/plan.h, plan_backend). Plain C over the model's shapes that
 * touches no CUDA runtime: pid, which makes no CUDA context and links no
 * libcudart, plans with it (the library pi_gpu_needs). The constants below
 * are the backend's; backend_cuda.cu checks them against its kernels' own
 * at compile time (CUDA_MAX_BATCH, CUDA_DOWN_PART_ROWS, CUDA_ATTN_CHUNK,
 * sizeof(gpu_entry), the fp16 KV element). */
#ifndef PI_CUDA_NEEDS_H
#define PI_CUDA_NEEDS_H

#include <stdint.h>

#include "model.h"
#include "plan.h"

/* Split-K rows of the down product; bytes of one step entry on the device. */
#define CUDA_NEEDS_DOWN_PART_ROWS 256
#define CUDA_NEEDS_ENTRY_BYTES 16
/* Its KV cache holds fp16 (accumulation stays fp32); attention splits the
 * positions into chunks of this many (split-K, flash-decoding). */
#define CUDA_NEEDS_KV_ELEM_BYTES 2
#define CUDA_NEEDS_ATTN_CHUNK 64
/* The most entries a step may have (the kernels' CUDA_MAX_BATCH). */
#define CUDA_NEEDS_MAX_BATCH 64
/* What the GPU worker's process holds beyond its allocations: the CUDA
 * context, the loaded kernels and the step graphs. With the driver's default
 * stack limit (1 KiB a thread) that measured 0.62 GiB on an H200 with CUDA 13
 * (nvidia-smi's figure for the process minus device_bytes), 264 MiB of it the
 * threads' stacks (1 KiB x 132 SMs x 2048 threads); the backend sets the
 * limit to CUDA_STACK_BYTES (the kernels' deepest frame is 264 bytes), which
 * gives back ~180 MiB of that (session 16: 527 MiB in use after the context
 * was made with 1 KiB, 263 with none, 329 with 256 bytes). Reserved inside
 * the budget, so the process stays within --vram-budget. */
#define CUDA_NEEDS_CONTEXT_BYTES (544ull << 20)
#define CUDA_STACK_BYTES 320
/* Its per-step parameter block, status word and phase timestamps, the CPU
 * workers' addresses and the rope's frequencies (head_dim / 2 doubles: 1 KiB
 * at the attention kernel's largest head_dim, 256). */
#define CUDA_NEEDS_STEP_BYTES(n_layers) (8192u + (uint64_t)(n_layers) * 8u * sizeof(uint64_t))

/* An upper bound of the CUDA backend's scratch (activations, attention
 * scores, split-K partials, logits, active lists, hot-set lookup tables, the
 * predictor's hidden layer, masks and lists) for steps of max_batch entries,
 * n_ctx positions and at most n_hot hot neurons in a layer; 0 when
 * max_batch is 0. */
uint64_t cuda_needs_scratch_bytes(const pi_model *m, uint32_t max_batch, uint32_t n_ctx, uint32_t n_hot);

/* Solo steps (gpu_backend_ops.run_solo): the FFN neurons not in VRAM are
 * streamed to the device CUDA_NEEDS_SOLO_CHUNK at a time (gate, up and down^T
 * rows), CUDA_NEEDS_SOLO_STAGES chunks in flight; cuBLAS gets a workspace of
 * its own. */
#define CUDA_NEEDS_SOLO_CHUNK 1024
#define CUDA_NEEDS_SOLO_STAGES 3
#define CUDA_NEEDS_SOLO_WORKSPACE (16ull << 20)

/* 1 when the CUDA backend runs solo steps for m: every layer's attention and
 * FFN weights F16 (cuBLAS products over them), a gated FFN, the llama graph. */
int cuda_needs_solo_ok(const pi_model *m);

/* Device scratch of solo steps of solo_batch entries (0 when solo_batch is
 * 0 or cuda_needs_solo_ok is not). */
uint64_t cuda_needs_solo_bytes(const pi_model *m, uint32_t solo_batch);

/* Pinned host memory of the neurons a solo step streams: per layer those of
 * its n_ff not in VRAM (hot_vram[l] of them are; NULL: none), as F16 gate,
 * up and down^T rows. The warm rows are among them (read there by decode
 * steps), so this replaces the plan's warm bytes. */
uint64_t cuda_needs_solo_host_bytes(const pi_model *m, const uint32_t *hot_vram);

/* The CUDA backend's description for plan_params.backend (static, never
 * freed): "CUDA", fp16 KV, cuda_needs_scratch_bytes, CUDA_NEEDS_CONTEXT_BYTES. */
const plan_backend *cuda_needs(void);

#endif
