/* The GPU worker's compute backend: holds what the plan puts on the GPU
 * (embeddings, norms, attention, lm_head, KV cache, the hot neurons [0, n_hot)
 * of every FFN layer) and runs the GPU's part of each layer for a batch of
 * entries. Two implementations: host (plain C over model/ops.h, for machines
 * without a GPU and for CI) and cuda (backend_cuda.cu: weights in the model's
 * own types, matrix-vector kernels with fp32 accumulation, cuda_matvec.cu).
 * The worker loop (worker.c) drives both the same way, per step:
 *   embed; for each layer: attn (writes xn to the shared segment),
 *   [--ffn predicted: predict, or the host predictor], publish,
 *   ffn_hot (or ffn_hot_active), wait for the CPU partials, finish; then logits. */
#ifndef PI_GPU_BACKEND_H
#define PI_GPU_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "ffn_mode.h"
#include "model.h"
#include "pi_error.h"

typedef struct gpu_entry {
    uint32_t slot;          /* KV cache slot (one per active sequence) */
    uint32_t pos;           /* position in that sequence */
    int32_t token;
    uint32_t want_logits;
} gpu_entry;

typedef struct gpu_backend_config {
    uint32_t n_hot;         /* hot neurons per layer: [0, n_hot), unless hot is set */
    /* Optional per-layer hot sets chosen from activation frequencies
     * (sparse/placement.h): hot[l] lists hot_count[l] ascending global neuron
     * ids of layer l, each <= n_hot of them (n_hot is then their maximum).
     * NULL: every layer's hot neurons are [0, n_hot). */
    const int32_t *const *hot;
    const uint32_t *hot_count;
    /* Optional, with hot: hot[l][0 .. hot_vram[l]) are in VRAM; the rest,
     * the warm neurons (a second ascending run), sit in pinned host memory
     * that the GPU reads over PCIe beside the CPU workers (CUDA; the host
     * backend holds them like the others). NULL: all in VRAM. */
    const uint32_t *hot_vram;
    uint32_t max_seqs;      /* KV cache slots */
    uint32_t n_ctx;         /* positions per slot */
    uint32_t max_batch;     /* entries per step */
    int device;             /* CUDA device ordinal */
    pi_ffn_mode ffn;        /* exact: hot neurons with a ReLU gate <= 0 skip up/down
                               in both backends */
    /* Memory that outlives the worker (docs/reliability.md, "VRAM kept by
     * pid"): arena_bytes > 0 puts the weights, predictors, KV cache and hot
     * rows in one arena of about that size that keep_fd can hand to pid;
     * kept_bytes > 0 offers kept_fd, an arena kept from an earlier worker:
     * when its manifest says it holds this model and config, nothing is
     * copied in again (the caller still owns kept_fd). 0: plain allocations. */
    uint64_t arena_bytes;
    uint64_t kept_bytes;
    int kept_fd;
    /* The same for the warm rows' pinned host memory (CUDA with an arena,
     * unless PI_CUDA_KEEP_WARM=0): warm_bytes > 0 puts them in one region of
     * about that size (the driver's host memory, or a memfd) that
     * keep_warm_fd can hand to pid; kept_warm_bytes > 0 offers kept_warm_fd,
     * one kept from an earlier worker, mapped (a memfd: pinned again) as it
     * is when its manifest matches (nothing gathered from the file). */
    uint64_t warm_bytes;
    uint64_t kept_warm_bytes;
    int kept_warm_fd;
    /* 1: the model's predictors have their converted shapes but not their
     * bytes (pred_quant.h, predictor_requant_layout): create fails unless a
     * kept arena holds them (CUDA), and the caller converts and tries again. */
    int pred_shapes_only;
    /* 1: no CPU worker shares the machine's cores, so the host may spin
     * while the device runs a step instead of sleeping until it wakes it
     * (CUDA; measured 0.41 -> 0.10 ms of host control a token). */
    int spin_wait;
    /* > 0: solo steps (run_solo) of up to this many entries; the step
     * segment then holds max(max_batch, solo_batch) entries. */
    uint32_t solo_batch;
} gpu_backend_config;

typedef struct gpu_backend gpu_backend;

/* Where a device-driven step (run_step) meets the CPU workers: pointers into
 * the step segment given to map_host (docs/shm.md), fixed for the backend's
 * life. */
typedef struct gpu_step_links {
    float *xn;                      /* max_batch x dim: the layer's FFN input */
    int32_t *const *active;         /* --ffn predicted: each entry's list (room for n_ff ids) */
    int32_t *counts;                /*   and the counts */
    uint32_t *layer_tick;           /* the layer counter's word (seqcount.h), written by the device */
    const uint32_t *abort_word;     /* pid's abort counter's word */
    const uint32_t *const *done;    /* each CPU worker's done counter word */
    const float *const *partials;   /* each CPU worker's partial output, max_batch x dim */
    uint32_t n_cpu_workers;
    float *logits;                  /* max_batch x n_vocab */
} gpu_step_links;

/* Where a step's time went on the device, microseconds, each phase summed
 * over the layers (proto StepTimings). */
typedef struct gpu_step_times {
    double embed, attn, predict, publish, hot, wait_cpu, finish, logits;
} gpu_step_times;

typedef struct gpu_backend_ops {
    const char *name;       /* "host" or "cuda" */
    /* Copies the GPU part of m into backend memory (m must outlive it). */
    gpu_backend *(*create)(const pi_model *m, const gpu_backend_config *cfg, pi_error *err);
    void (*destroy)(gpu_backend **b);
    /* Bytes of device memory held, every allocation (host backend: the bytes
     * it would hold, the plan's gpu_bytes). */
    uint64_t (*device_bytes)(const gpu_backend *b);
    /* Starts a step: the residual stream of each entry = its token's embedding. */
    int (*embed)(gpu_backend *b, const gpu_entry *e, uint32_t n, pi_error *err);
    /* Attention of layer l for every entry (KV written at each entry's slot/pos,
     * entries of one slot in position order), residual add, then
     * xn = rmsnorm(h, ffn_norm) written to xn_out (n x dim floats, host memory). */
    int (*attn)(gpu_backend *b, uint32_t l, const gpu_entry *e, uint32_t n, float *xn_out, pi_error *err);
    /* Partial FFN output of the hot neurons of layer l for the xn just computed. */
    int (*ffn_hot)(gpu_backend *b, uint32_t l, uint32_t n, pi_error *err);
    /* h += hot + partials[0] + ... + partials[n_partials-1] (each n x dim, host
     * memory), added in that order so results do not depend on timing. */
    int (*finish)(gpu_backend *b, uint32_t l, uint32_t n, const float *const *partials,
                  uint32_t n_partials, pi_error *err);
    /* Final norm + lm_head for the entries with want_logits, rows written to
     * out in entry order (n_vocab floats each). */
    int (*logits)(gpu_backend *b, const gpu_entry *e, uint32_t n, float *out, pi_error *err);
    /* Optional: the hot part of layer l for --ffn predicted: only the neurons
     * j < n_hot of each entry's active list (ascending, counts[i] indices,
     * cold ones included and ignored). NULL: the worker calls ffn_hot, which
     * computes every hot neuron (a superset, slower, at least as exact). */
    int (*ffn_hot_active)(gpu_backend *b, uint32_t l, uint32_t n, const int32_t *const *active,
                          const int32_t *counts, pi_error *err);
    /* Optional (NULL when not needed): the shared step segment, so the
     * device copies to and from it directly (cudaHostRegister). Called once,
     * before the first step; the memory stays mapped until destroy. */
    int (*map_host)(gpu_backend *b, void *base, size_t size, pi_error *err);
    /* Optional (NULL: the worker runs sparse/predictor.h on the host): the
     * predictor of layer l for --ffn predicted, on the attn call just made
     * for these n entries (its input: predictor_input(m, h_i, xn_i), the
     * residual for PowerInfer's llama files): active[i] = the ascending ids j
     * with fc2_j . relu(fc1 . input_i) > the model's sparse_threshold (room for n_ff
     * ids each), counts[i] = their number, in host memory (normally the
     * map_host segment, written there by the device). Visible to other
     * processes when it returns. A following ffn_hot_active of layer l given
     * the same, unchanged lists reads the device's copy of them. */
    int (*predict)(gpu_backend *b, uint32_t l, uint32_t n, int32_t *const *active, int32_t *counts,
                   pi_error *err);
    /* Optional (NULL: the worker drives the step layer by layer with the ops
     * above): the whole step driven by the device. Embeddings, every layer
     * (xn and, predicted, the active lists written into the segment; layer
     * l's tick tick0 + l published; the CPU workers' done counters awaited
     * and their partials summed by the device itself), then the logits of
     * the want_logits entries into links->logits; the host launches once and
     * waits once (a CUDA graph per batch shape). A wait gives up when the
     * abort counter passes abort_past: -1 with "aborted". times (optional)
     * gets device timestamps of the phases (slightly slower: extra nodes).
     * Requires map_host's mapping; links must not change between calls. */
    int (*run_step)(gpu_backend *b, const gpu_step_links *links, const gpu_entry *e, uint32_t n, uint32_t tick0,
                    uint32_t abort_past, int predicted, gpu_step_times *times, pi_error *err);
    /* Optional: a new descriptor of the arena (cfg.arena_bytes) for pid to
     * keep, *bytes its size; -1 when there is none to keep. */
    int (*keep_fd)(gpu_backend *b, uint64_t *bytes);
    /* Optional: bytes copied into the arena at create; 0 when a kept arena
     * was taken as it was. */
    uint64_t (*copied_bytes)(const gpu_backend *b);
    /* Optional: like keep_fd, for the warm rows' host memory
     * (cfg.warm_bytes); -1 when they are not in one. */
    int (*keep_warm_fd)(gpu_backend *b, uint64_t *bytes);
    /* Optional: a solo step (STEP_CMD_SOLO, docs/shm.md): every layer of the
     * n entries (n <= solo_max) with every FFN neuron computed by this
     * backend alone, no CPU worker involved; then the logits of the
     * want_logits entries into logits (host memory, n_vocab floats a row, in
     * entry order). Entries of one slot in position order, as in a step. */
    int (*run_solo)(gpu_backend *b, const gpu_entry *e, uint32_t n, float *logits, pi_error *err);
    /* Optional: the most entries run_solo takes; 0 when it takes none (no
     * cfg.solo_batch, or a model whose FFN it cannot run alone). */
    uint32_t (*solo_max)(const gpu_backend *b);
} gpu_backend_ops;

extern const gpu_backend_ops gpu_backend_host;
#ifdef PI_HAVE_CUDA
extern const gpu_backend_ops gpu_backend_cuda;
/* Number of usable CUDA devices (0 when none or no driver). */
int pi_cuda_device_count(void);
/* device_bytes of a CUDA backend in parts: what the plan counts as gpu_bytes
 * (weights, KV cache, hot rows), the predictors, and all the rest (scratch). */
void gpu_backend_cuda_bytes(const gpu_backend *b, uint64_t *plan_part, uint64_t *predictors, uint64_t *scratch);
#endif

#endif
