// The CUDA backend of the GPU worker (interface: backend.h). Weights stay on
// the device in the model's own types (cuda_matvec.cuh: Q8_0/Q4_0 and the
// K-quants split into quants and scales, same bytes), so device_bytes equals
// the plan's count: weights outside the FFN, the fp16 KV cache, and per
// layer the hot neurons' gate and up rows and down columns stored as rows
// (down^T, plan.h's types). Products are our own kernels with fp32
// accumulation (cuda_matvec.cu); norms, RoPE (with llama.cpp's rope scaling)
// and split-K attention are in cuda_attn.cu. For --ffn predicted the
// predictors (fc1, fc2 in their types) are held too and the predict op runs
// them (cuda_predict.cu). Scratch is sized at create; device_bytes counts
// every allocation; the plan reserves predictors and scratch beside its own
// count (plan_predictor_bytes; cuda_needs_scratch_bytes, term by term).
//
// Two ways to run a step. Layer by layer (the ops the worker calls per
// layer; the host waits where data leaves the GPU), or run_step: the whole
// step captured once per batch shape as a CUDA graph in which the device
// itself publishes each layer's tick into the mapped step segment and waits
// for the CPU workers' done counters (cuda_step.cu); the host launches once
// and waits once per step.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_attn.cuh"
#include "cuda_matvec.cuh"
#include "cuda_pdl.cuh"
#include "cuda_predict.cuh"
#include "cuda_solo.cuh"
#include "cuda_step.cuh"
#include "cuda_switch.h"
#include "cuda_vmm.cuh"

extern "C" {
#include "cuda_needs.h"
#include "pi_proc.h"
#include "plan.h"
#include "vram_arena.h"
}

// cuda_needs_scratch_bytes (what the plan reserves) counts with these.
static_assert(CUDA_DOWN_PART_ROWS == CUDA_NEEDS_DOWN_PART_ROWS, "cuda_needs.h's copy of CUDA_DOWN_PART_ROWS");
static_assert(CUDA_MAX_BATCH == CUDA_NEEDS_MAX_BATCH, "cuda_needs.h's copy of CUDA_MAX_BATCH");
static_assert(CUDA_ATTN_CHUNK == CUDA_NEEDS_ATTN_CHUNK, "cuda_needs.h's copy of CUDA_ATTN_CHUNK");
static_assert(sizeof(gpu_entry) <= CUDA_NEEDS_ENTRY_BYTES, "cuda_needs.h's bound of a device entry");
static_assert(CUDA_NEEDS_KV_ELEM_BYTES == sizeof(__half), "cuda_needs.h counts an fp16 KV cache");

namespace {

struct cuda_layer {
    float *attn_norm, *ffn_norm;    // dim floats
    cuda_mat wq, wk, wv, wo;        // rows = outputs
    cuda_mat gate, up;              // K hot rows, in hot-slot order
    cuda_mat down_t;                // K x dim: the hot columns of down as rows
    int32_t *map;                   // n_ff: global id -> hot slot or -1 (hot sets only)
    uint32_t *hot_bits;             // predicting: bit j = neuron j is hot (n_ff bits)
    cuda_mat fc1;                   // predictor, R x dim (predicting only)
    cuda_pred_fc2 fc2;              // predictor, n_ff x R in the file's layout (R not aligned)
    cuda_mat fc2m;                  // the same as a cuda_mat when R is aligned (fast kernel)
    // Solo steps: the s_n neurons not in VRAM (the warm ones first, in hot-slot
    // order, then the cold ascending) as F16 gate, up and down^T rows in
    // pinned host memory, device addresses; the warm rows of gate, up and
    // down_t above point into them.
    const __half *s_gate, *s_up, *s_down;
    uint32_t s_n;
};

// What an allocation is, for device_bytes' parts.
// MEM_HOST: pinned host memory the kernels read through its mapping (not VRAM).
enum mem_kind { MEM_SCRATCH, MEM_PLAN, MEM_PRED, MEM_HOST };

// One captured step: a graph per batch shape.
struct step_graph {
    uint32_t n, nrows;
    int predicted, timed;
    cudaGraphExec_t exec;
    uint64_t used;                  // last use (steps), for eviction
};

constexpr int MAX_GRAPHS = 8;
// Stamps per layer (phase starts: attn, predict, publish, hot, wait, finish,
// the end of the wait) and the step's own (embed, logits, end).
constexpr uint32_t STAMPS_PER_LAYER = 8;
enum { ST_ATTN, ST_PRED, ST_PUB, ST_HOT, ST_WAIT, ST_WAITED, ST_END };

}  // namespace

struct gpu_backend {
    const pi_model *m;
    gpu_backend_config cfg;
    uint32_t kv_dim;
    cuda_attn_shape ash;
    cudaStream_t stream;
    uint64_t device_bytes;          // what the plan counts (weights, KV, hot rows)
    uint64_t pred_bytes;            // predictors
    uint64_t scratch_bytes;         // everything else
    void **allocs;                  // every device allocation, for destroy
    size_t n_allocs, cap_allocs;
    void *h_embd;                   // an untied model's token_embd, pinned and mapped
    void **warm;                    // pinned, mapped host allocations of warm rows
    size_t n_warm, cap_warm;
    uint64_t warm_bytes;
    double warm_pin_ms, warm_fill_ms;   // create's time pinning and filling them
    // cfg.warm_bytes > 0 (and not PI_CUDA_KEEP_WARM=0): the warm rows in one
    // region whose descriptor (wr_fd) pid keeps, at wr_base for the CPU and
    // wr_dev for the kernels; wr_taken: a kept one whose manifest matched,
    // its rows already there. wr_vmm: host memory of the virtual memory API
    // (cuda_vmm_open_at, in wvmm), which the driver keeps pinned while pid
    // holds its descriptor; else a memfd pinned by cudaHostRegister.
    int wr_fd, wr_on, wr_taken, wr_vmm;
    cuda_vmm wvmm;
    unsigned char *wr_base;
    const unsigned char *wr_dev;
    uint64_t wr_cap, wr_used;
    // cfg.arena_bytes > 0: weights, predictors, KV and hot rows in one VMM
    // allocation pid can keep (vram_arena.h); attached: a kept one that
    // holds all of it already. copied: bytes uploaded into it (or, with no
    // arena, every upload) at create.
    cuda_vmm vmm;
    int arena_on, attached;
    int kept_fd;                    // attached: our copy of pid's descriptor (an imported
                                    // handle cannot be exported again)
    char *arena;
    uint64_t arena_cap, arena_used, signature, copied;

    cuda_mat tok_embd, output;      // output = tok_embd when tied
    float *output_norm;
    cuda_layer *layers;             // host array of device pointers
    uint32_t *hot_count;            // K of each layer
    __half *k_cache, *v_cache;      // [slot][layer][pos][kv_dim]

    // Per-step scratch, sized for max_batch entries.
    float *x, *xb, *q, *k, *v, *attn_part, *tmp, *hot, *coef, *part, *logits;
    int32_t *d_lists, *h_lists;         // active lists copied in (h_lists pinned)
    cudaEvent_t lists_done;             // the last copy out of h_lists finished
    int lists_pending;
    char *host_base;                    // the registered step segment, or NULL
    size_t host_size;
    char *host_dev;                     // its device address when mapped, else NULL

    // The step block (one allocation, mirrored in pinned h_blk): entries and
    // logit rows, then the step parameters, then the timestamps. Uploaded
    // with one copy before a step.
    char *d_blk, *h_blk;
    size_t blk_bytes, off_rows, off_params, off_stamps, off_peers, off_rope;
    gpu_entry *d_entries;
    uint32_t *d_rows;
    cuda_step_params *d_params;
    unsigned long long *d_stamps;
    // run_step: the CPU workers as the device sees them, set on first use.
    cuda_peers peers;
    gpu_step_links links;
    int linked;
    step_graph graphs[MAX_GRAPHS];
    uint64_t steps;

    // The layer and entry count of the xn in xb (set by attn; -1: none).
    int xn_layer;
    uint32_t xn_n;
    // --ffn predicted on a model with a predictor: predict's buffers.
    int predicting;
    float *p_hidden;                    // max_batch x R
    uint32_t *p_mask;                   // max_batch x cuda_pred_words(n_ff)
    int32_t *p_lists, *p_counts;        // max_batch x n_ff, max_batch
    int32_t *u_list;                    // the step's hot union: n_ff ids, then its count
    int32_t *h_pcounts;                 // pinned, max_batch
    // The lists the last predict wrote (layer pred_layer, -1: none since the
    // last attn), which ffn_hot_active reads from the device when given them.
    int pred_layer;
    uint32_t pred_n;
    const int32_t *pred_host[CUDA_MAX_BATCH];
    int32_t pred_count[CUDA_MAX_BATCH];

    // Solo steps (run_solo) of up to solo_cap entries; solo_on: this model
    // runs them (cuda_needs_solo_ok, cuBLAS, cfg.solo_batch). Buffers are
    // solo_cap rows (cuda_needs_solo_bytes counts them); s_stage: chunks
    // of CUDA_NEEDS_SOLO_CHUNK rows of gate, up and down^T, filled on
    // s_copy while the others are read (s_copied: filled, s_used: read).
    int solo_on;
    uint32_t solo_cap;
    float *s_x, *s_q, *s_k, *s_v, *s_att, *s_g, *s_u;
    __half *s_xh, *s_h, *s_stage[CUDA_NEEDS_SOLO_STAGES];
    gpu_entry *s_entries;
    cuda_blas *blas;
    cudaStream_t s_copy;
    cudaEvent_t s_copied[CUDA_NEEDS_SOLO_STAGES], s_used[CUDA_NEEDS_SOLO_STAGES];
};

#define CU(call)                                                                         \
    do {                                                                                 \
        cudaError_t e_ = (call);                                                         \
        if (e_ != cudaSuccess)                                                           \
            return pi_error_set(err, "cuda backend: %s failed: %s", #call,               \
                                cudaGetErrorString(e_));                                 \
    } while (0)

// ---------------------------------------------------------------- kernels

__global__ void k_add(float *x, const float *y, size_t n)
{
    pdl_begin();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] += y[i];
}

// Row rows[b] of src to row b of dst, b < *nrows... of the launch's grid.
__global__ void k_gather_rows(float *dst, const float *src, const uint32_t *rows, uint32_t dim)
{
    pdl_begin();
    const float *s = src + (size_t)rows[blockIdx.x] * dim;
    for (uint32_t i = threadIdx.x; i < dim; i += blockDim.x)
        dst[(size_t)blockIdx.x * dim + i] = s[i];
}

// ---------------------------------------------------------------- memory

static unsigned blocks_for(size_t n, unsigned threads)
{
    return (unsigned)((n + threads - 1) / threads);
}

// Room for one more pointer in the list *a of n (capacity *cap), which
// records allocations for destroy.
static int ptr_room(void ***a, size_t n, size_t *cap, pi_error *err)
{
    if (n < *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 64;
    void **g = (void **)realloc(*a, c * sizeof *g);
    if (!g)
        return pi_error_set(err, "cuda backend: out of host memory");
    *a = g;
    *cap = c;
    return 0;
}

// *p = bytes of device memory (NULL when bytes is 0), counted as kind.
static int dev_alloc(gpu_backend *b, void **p, size_t bytes, mem_kind kind, pi_error *err)
{
    *p = NULL;
    if (bytes == 0)
        return 0;
    if (b->arena_on && (kind == MEM_PLAN || kind == MEM_PRED)) {
        uint64_t off = vram_arena_take(&b->arena_used, b->arena_cap, bytes);
        if (off) {
            *p = b->arena + off;
            (kind == MEM_PLAN ? b->device_bytes : b->pred_bytes) += bytes;
            return 0;
        }
        if (b->attached)
            return pi_error_set(err, "cuda backend: the kept arena (%llu bytes) is too small for its own layout",
                                (unsigned long long)b->arena_cap);
        b->arena_on = 0;            // too small: the rest in plain allocations, nothing kept
        fprintf(stderr, "cuda backend: the arena of %llu bytes is too small for the plan; VRAM will not be kept "
                "across restarts\n", (unsigned long long)b->arena_cap);
    }
    if (kind == MEM_HOST) {         // one such allocation: the embedding table
        CU(cudaHostAlloc(&b->h_embd, bytes, cudaHostAllocMapped | cudaHostAllocWriteCombined));
        CU(cudaHostGetDevicePointer(p, b->h_embd, 0));
        return 0;
    }
    if (ptr_room(&b->allocs, b->n_allocs, &b->cap_allocs, err) != 0)
        return -1;
    cudaError_t e = cudaMalloc(p, bytes);
    if (e != cudaSuccess) {
        *p = NULL;
        (void)cudaGetLastError();
        return pi_error_set(err, "cuda backend: cannot allocate %zu bytes of device memory (%.1f MiB held "
                            "so far): %s; lower --vram-budget (fewer hot neurons), --max-seqs or --n-ctx",
                            bytes, (double)(b->device_bytes + b->pred_bytes + b->scratch_bytes) / 1048576.0,
                            cudaGetErrorString(e));
    }
    b->allocs[b->n_allocs++] = *p;
    if (kind == MEM_PLAN)
        b->device_bytes += bytes;
    else if (kind == MEM_PRED)
        b->pred_bytes += bytes;
    else
        b->scratch_bytes += bytes;
    return 0;
}

static int scratch_floats(gpu_backend *b, float **p, size_t n, pi_error *err)
{
    return dev_alloc(b, (void **)p, (n ? n : 1) * sizeof(float), MEM_SCRATCH, err);
}

// 1 when p lies in a kept arena that already holds its bytes.
static int kept(const gpu_backend *b, const void *p)
{
    return b->attached && (const char *)p >= b->arena && (const char *)p < b->arena + b->arena_cap;
}

// Copies bytes from host memory (pageable or not) to the device, or to
// mapped host memory through its device address; nothing into a kept arena.
static int upload(gpu_backend *b, void *dst, const void *src, size_t bytes, pi_error *err)
{
    if (bytes == 0 || kept(b, dst))
        return 0;
    CU(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
    if (!b->arena || ((char *)dst >= b->arena && (char *)dst < b->arena + b->arena_cap))
        b->copied += bytes;
    return 0;
}

static int upload_norm(gpu_backend *b, float **dst, const pi_tensor *t, const char *what, pi_error *err)
{
    if (t->type != PI_TYPE_F32)
        return pi_error_set(err, "cuda backend: %s has type %d; norms must be f32", what, (int)t->type);
    size_t bytes = (size_t)t->cols * sizeof(float);
    if (dev_alloc(b, (void **)dst, bytes, MEM_PLAN, err) != 0)
        return -1;
    return upload(b, *dst, t->data, bytes, err);
}

// Rows rows[0..nr) of t (rows NULL: [0, nr)) into h in the layout of
// cuda_mat: nr * t->row_bytes bytes (block types: quant parts, then scale parts).
static void stage_rows(const pi_tensor *t, const int32_t *rows, uint32_t nr, unsigned char *h)
{
    size_t qrow = cuda_mat_quant_bytes(t->type, (uint32_t)t->cols), srow = t->row_bytes - qrow;
    for (uint32_t r = 0; r < nr; r++)
        cuda_mat_stage_row(t->type, pi_tensor_row(t, rows ? (uint64_t)rows[r] : r), (uint32_t)t->cols,
                           h + (size_t)r * qrow, h + (size_t)nr * qrow + (size_t)r * srow);
}

// Where the scale parts of a part of nr rows at base start (NULL for float types).
static const uint16_t *scales_of(const pi_tensor *t, const unsigned char *base, uint32_t nr)
{
    size_t qrow = cuda_mat_quant_bytes(t->type, (uint32_t)t->cols);
    return qrow < t->row_bytes ? (const uint16_t *)(base + (size_t)nr * qrow) : NULL;
}

// Warm rows at h are there already: a kept region whose manifest matched.
static int warm_kept(const gpu_backend *b, const unsigned char *h)
{
    return b->wr_taken && h >= b->wr_base && h < b->wr_base + b->wr_cap;
}

// bytes of pinned host memory the kernels read through its mapping (warm
// rows): *h to write it, *dev for the kernels.
static int warm_alloc(gpu_backend *b, unsigned char **h, const unsigned char **dev, size_t bytes, pi_error *err)
{
    uint64_t at;
    if (b->wr_on && (at = vram_arena_take(&b->wr_used, b->wr_cap, bytes)) != 0) {
        *h = b->wr_base + at;
        *dev = b->wr_dev + at;
        b->warm_bytes += bytes;
        return 0;
    }
    if (ptr_room(&b->warm, b->n_warm, &b->cap_warm, err) != 0)
        return -1;
    void *p = NULL;
    double t0 = pi_now_ms();
    cudaError_t e = cudaHostAlloc(&p, bytes, cudaHostAllocMapped | cudaHostAllocWriteCombined);
    b->warm_pin_ms += pi_now_ms() - t0;
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return pi_error_set(err, "cuda backend: cannot pin %zu bytes of host memory for warm rows (%.1f MiB "
                            "pinned so far): %s; lower --warm-share", bytes, (double)b->warm_bytes / 1048576.0,
                            cudaGetErrorString(e));
    }
    b->warm[b->n_warm++] = p;
    b->warm_bytes += bytes;
    void *d = NULL;
    CU(cudaHostGetDevicePointer(&d, p, 0));
    *h = (unsigned char *)p;
    *dev = (const unsigned char *)d;
    return 0;
}

// d's rows [nv, nr) (rows[nv..nr)) into pinned host memory: the GPU reads
// them over PCIe. d already holds rows [0, nv) on the device.
static int attach_warm(gpu_backend *b, cuda_mat *d, const pi_tensor *t, const int32_t *rows, uint32_t nr,
                       uint32_t nv, pi_error *err)
{
    if (nr == nv)
        return 0;
    unsigned char *h;
    const unsigned char *dev;
    if (warm_alloc(b, &h, &dev, (size_t)(nr - nv) * t->row_bytes, err) != 0)
        return -1;
    double t0 = pi_now_ms();
    if (!warm_kept(b, h))
        stage_rows(t, rows ? rows + nv : NULL, nr - nv, h);
    b->warm_fill_ms += pi_now_ms() - t0;
    d->rows = nr;
    d->nv = nv;
    d->hdata = dev;
    d->hscales = scales_of(t, dev, nr - nv);
    return 0;
}

// d = rows rows[0..nr) of t (rows NULL: [0, nr)) in t's type, in the layout
// of cuda_mat: nr * t->row_bytes bytes.
static int upload_mat_as(gpu_backend *b, cuda_mat *d, const pi_tensor *t, const int32_t *rows, uint32_t nr,
                         const char *what, mem_kind kind, pi_error *err)
{
    if (!cuda_mat_type_ok(t->type))
        return pi_error_set(err, "cuda backend: %s has type %d, which the CUDA kernels do not support "
                            "(use f32, f16, bf16, q8_0, q4_0, q4_K, q5_K or q6_K)", what, (int)t->type);
    if (t->cols % cuda_mat_align(t->type) != 0)
        return pi_error_set(err, "cuda backend: %s has %llu columns, not a multiple of %u", what,
                            (unsigned long long)t->cols, cuda_mat_align(t->type));
    memset(d, 0, sizeof *d);
    d->type = t->type;
    d->rows = nr;
    d->cols = (uint32_t)t->cols;
    size_t bytes = (size_t)nr * t->row_bytes;
    void *p;
    if (dev_alloc(b, &p, bytes, kind, err) != 0)
        return -1;
    d->data = (const unsigned char *)p;
    if (nr == 0)
        return 0;
    d->scales = scales_of(t, d->data, nr);
    if (kept(b, p))
        return 0;                   // a kept arena holds these bytes already
    if (!d->scales && !rows)        // a float type's rows as they are
        return upload(b, p, t->data, bytes, err);
    unsigned char *h = (unsigned char *)malloc(bytes);
    if (!h)
        return pi_error_set(err, "cuda backend: out of host memory staging %s (%zu bytes)", what, bytes);
    stage_rows(t, rows, nr, h);
    int rc = upload(b, p, h, bytes, err);
    free(h);
    return rc;
}

static int upload_mat(gpu_backend *b, cuda_mat *d, const pi_tensor *t, const int32_t *rows, uint32_t nr,
                      const char *what, pi_error *err)
{
    return upload_mat_as(b, d, t, rows, nr, what, MEM_PLAN, err);
}

// Hot FFN rows: rows[0..nv) on the device, rows[nv..nr) warm (host): at
// warm_at when given (a solo step's rows, F16, there already), else copied
// into pinned memory of their own.
static int upload_mat_hot(gpu_backend *b, cuda_mat *d, const pi_tensor *t, const int32_t *rows, uint32_t nr,
                          uint32_t nv, const char *what, const __half *warm_at, pi_error *err)
{
    if (upload_mat_as(b, d, t, rows, nv, what, MEM_PLAN, err) != 0)
        return -1;
    if (!warm_at)
        return attach_warm(b, d, t, rows, nr, nv, err);
    if (nr > nv) {
        d->rows = nr;
        d->nv = nv;
        d->hdata = (const unsigned char *)warm_at;
        d->hscales = NULL;
    }
    return 0;
}

// The predictor of layer l: fc1 as a cuda_mat (the matvec kernels); fc2 as
// a cuda_mat too when R fits the kernels' 16-byte loads (a warp per row,
// coalesced: cuda_pred_rows), else as the file's bytes (a thread per row,
// cuda_pred_mask). The same bytes either way.
static int upload_predictor(gpu_backend *b, uint32_t l, pi_error *err)
{
    const pi_model *m = b->m;
    const pi_layer *P = &m->layers[l];
    const pi_tensor *f1 = &P->pred_fc1, *f2 = &P->pred_fc2;
    if (!f1->data || !f2->data || f1->cols != m->dim || f2->rows != m->n_ff || f2->cols != f1->rows ||
        f1->rows == 0)
        return pi_error_set(err, "cuda backend: layer %u: predictor shapes fc1 %llu x %llu, fc2 %llu x %llu do "
                            "not fit dim %u, n_ff %u", l, (unsigned long long)f1->rows,
                            (unsigned long long)f1->cols, (unsigned long long)f2->rows,
                            (unsigned long long)f2->cols, m->dim, m->n_ff);
    int fc2_mat = cuda_mat_type_ok(f2->type) && f2->cols % cuda_mat_align(f2->type) == 0;
    if (!fc2_mat && !cuda_pred_type_ok(f2->type))
        return pi_error_set(err, "cuda backend: layer %u: fc2 has type %d, which the CUDA predictor does not "
                            "support (use f32, f16, bf16, q8_0 or q4_0; a K-quant needs R a multiple of 256)", l,
                            (int)f2->type);
    if (b->cfg.pred_shapes_only && !b->attached)
        return pi_error_set(err, "cuda backend: layer %u: the predictors are not converted and no kept arena "
                            "holds them", l);
    cuda_layer *L = &b->layers[l];
    if (upload_mat_as(b, &L->fc1, f1, NULL, (uint32_t)f1->rows, "fc1", MEM_PRED, err) != 0)
        return -1;
    if (fc2_mat)
        return upload_mat_as(b, &L->fc2m, f2, NULL, (uint32_t)f2->rows, "fc2", MEM_PRED, err);
    size_t bytes = (size_t)f2->rows * f2->row_bytes;
    void *p;
    if (dev_alloc(b, &p, bytes, MEM_PRED, err) != 0)
        return -1;
    L->fc2.type = f2->type;
    L->fc2.rows = (uint32_t)f2->rows;
    L->fc2.cols = (uint32_t)f2->cols;
    L->fc2.row_bytes = f2->row_bytes;
    L->fc2.data = (const unsigned char *)p;
    return upload(b, p, f2->data, bytes, err);
}

// The down columns hot[0..K) (NULL: [0, K)) of layer l as K rows of dim, in
// plan_down_t_type: float types bit-exact, block types dequantized to F32
// (plan_write_down_t_set's values). PowerInfer files hold only ffn_down_t
// (rows already): those rows are gathered as they are.
static int upload_down_t(gpu_backend *b, cuda_mat *d, uint32_t l, const int32_t *hot, uint32_t K, uint32_t nv,
                         const __half *warm_at, pi_error *err)
{
    const pi_model *m = b->m;
    const pi_layer *P = &m->layers[l];
    const pi_tensor *dn = P->ffn_down.data ? &P->ffn_down : &P->ffn_down_t;
    pi_type dt = plan_down_t_type(pi_layer_down_type(P));
    if (!dn->data || !cuda_down_type_ok(dt))
        return pi_error_set(err, "cuda backend: layer %u: ffn_down%s (type %d) cannot be held as down^T (f32, f16 "
                            "or bf16, or a block type held as f32)", l, P->ffn_down.data ? "" : "_t",
                            (int)dn->type);
    size_t es = dt == PI_TYPE_F32 ? 4 : 2, dim = m->dim;
    memset(d, 0, sizeof *d);
    d->type = dt;
    d->rows = K;
    d->cols = (uint32_t)dim;
    if (nv < K && warm_at) {        // warm rows [nv, K): a solo step's, there already
        d->nv = nv;
        d->hdata = (const unsigned char *)warm_at;
    } else if (nv < K) {            // warm rows [nv, K): straight into pinned host memory
        unsigned char *hw;
        const unsigned char *dev;
        if (!hot)
            return pi_error_set(err, "cuda backend: warm rows need hot sets");
        if (warm_alloc(b, &hw, &dev, (size_t)(K - nv) * dim * es, err) != 0)
            return -1;
        double t0 = pi_now_ms();
        if (!warm_kept(b, hw) && plan_write_down_t_set(m, l, (plan_set){hot + nv, 0, K - nv}, hw, dim * es, err) != 0)
            return -1;
        b->warm_fill_ms += pi_now_ms() - t0;
        d->nv = nv;
        d->hdata = dev;
    }
    size_t bytes = (size_t)nv * dim * es;
    void *p;
    if (dev_alloc(b, &p, bytes, MEM_PLAN, err) != 0)
        return -1;
    d->data = (const unsigned char *)p;
    if (nv == 0 || kept(b, p))
        return 0;
    unsigned char *h = (unsigned char *)malloc(bytes);
    if (!h)
        return pi_error_set(err, "cuda backend: out of host memory staging layer %u down^T (%zu bytes)", l, bytes);
    plan_set set = {hot, 0, nv};
    int rc = plan_write_down_t_set(m, l, set, h, dim * es, err);
    if (rc == 0)
        rc = upload(b, p, h, bytes, err);
    free(h);
    return rc;
}

static void free_all(gpu_backend *b)
{
    for (int g = 0; g < MAX_GRAPHS; g++)
        if (b->graphs[g].exec)
            cudaGraphExecDestroy(b->graphs[g].exec);
    cuda_blas_destroy(&b->blas);
    for (int i = 0; i < CUDA_NEEDS_SOLO_STAGES; i++) {
        if (b->s_copied[i])
            cudaEventDestroy(b->s_copied[i]);
        if (b->s_used[i])
            cudaEventDestroy(b->s_used[i]);
    }
    if (b->s_copy)
        cudaStreamDestroy(b->s_copy);
    for (size_t i = 0; i < b->n_allocs; i++)
        cudaFree(b->allocs[i]);
    free(b->allocs);
    free(b->layers);
    free(b->hot_count);
    cudaFreeHost(b->h_embd);
    for (size_t i = 0; i < b->n_warm; i++)
        cudaFreeHost(b->warm[i]);
    free(b->warm);
    cuda_vmm_close(&b->vmm);
    if (b->attached && b->kept_fd >= 0)
        close(b->kept_fd);
    if (b->wr_on && b->wr_vmm) {
        cuda_vmm_close(&b->wvmm);
        close(b->wr_fd);
    } else if (b->wr_on) {
        cudaHostUnregister(b->wr_base);
        munmap(b->wr_base, b->wr_cap);
        close(b->wr_fd);
    }
    cudaFreeHost(b->h_blk);
    cudaFreeHost(b->h_lists);
    cudaFreeHost(b->h_pcounts);
    if (b->lists_done)
        cudaEventDestroy(b->lists_done);
    if (b->host_base)
        cudaHostUnregister(b->host_base);
    if (b->stream)
        cudaStreamDestroy(b->stream);
}

// Of layer l's hot neurons, how many are in VRAM (the rest are warm).
static uint32_t hot_vram(const gpu_backend_config *c, uint32_t l)
{
    uint32_t K = c->hot ? c->hot_count[l] : c->n_hot;
    return c->hot && c->hot_vram ? c->hot_vram[l] : K;
}

// Hot sets, when given, must be ascending ids below n_ff, at most n_hot each.
static int check_hot_sets(const pi_model *m, const gpu_backend_config *c, pi_error *err)
{
    if (!c->hot)
        return 0;
    if (!c->hot_count)
        return pi_error_set(err, "cuda backend: hot sets given without hot_count");
    for (uint32_t l = 0; l < m->n_layers; l++) {
        if (c->hot_count[l] > c->n_hot || (c->hot_count[l] > 0 && !c->hot[l]))
            return pi_error_set(err, "cuda backend: layer %u has %u hot neurons, more than n_hot %u (or no list)",
                                l, c->hot_count[l], c->n_hot);
        uint32_t nv = hot_vram(c, l);
        if (nv > c->hot_count[l])
            return pi_error_set(err, "cuda backend: layer %u: %u of its %u hot neurons in VRAM", l, nv,
                                c->hot_count[l]);
        for (uint32_t s = 0; s < c->hot_count[l]; s++) {   // two ascending runs: VRAM, warm
            int32_t j = c->hot[l][s];
            if (j < 0 || (uint32_t)j >= m->n_ff || (s > 0 && s != nv && j <= c->hot[l][s - 1]))
                return pi_error_set(err, "cuda backend: layer %u hot neuron %u is %d: hot sets must be "
                                    "ascending ids below %u (VRAM, then warm)", l, s, j, m->n_ff);
        }
    }
    return 0;
}

// Layer l's neurons outside VRAM for solo steps: hot[nv..K) (the warm ones,
// in hot-slot order), then those not in hot[0..K) ascending (hot NULL: the
// hot ones are [0, K)), as F16 gate, up and down^T rows in pinned host
// memory (the warm rows' region when there is one, so pid keeps them too).
static int solo_rows(gpu_backend *b, uint32_t l, const int32_t *hot, uint32_t K, uint32_t nv, pi_error *err)
{
    const pi_model *m = b->m;
    const pi_layer *P = &m->layers[l];
    cuda_layer *L = &b->layers[l];
    uint32_t n_ff = m->n_ff, ns = 0;
    int32_t *ids = (int32_t *)malloc(n_ff * sizeof *ids);
    unsigned char *in = (unsigned char *)calloc(n_ff, 1);
    if (!ids || !in) {
        free(ids);
        free(in);
        return pi_error_set(err, "cuda backend: out of host memory");
    }
    for (uint32_t s = 0; s < K; s++)
        in[hot ? hot[s] : s] = 1;
    for (uint32_t s = nv; s < K; s++)
        ids[ns++] = hot ? hot[s] : (int32_t)s;
    for (uint32_t j = 0; j < n_ff; j++)
        if (!in[j])
            ids[ns++] = (int32_t)j;
    free(in);
    size_t bytes = (size_t)ns * m->dim * sizeof(__half);
    unsigned char *h[3] = {NULL, NULL, NULL};
    const unsigned char *dev[3] = {NULL, NULL, NULL};
    int rc = 0;
    for (int t = 0; t < 3 && rc == 0 && ns > 0; t++)
        rc = warm_alloc(b, &h[t], &dev[t], bytes, err);
    double t0 = pi_now_ms();
    if (rc == 0 && ns > 0 && !warm_kept(b, h[0])) {
        stage_rows(&P->ffn_gate, ids, ns, h[0]);
        stage_rows(&P->ffn_up, ids, ns, h[1]);
        rc = plan_write_down_t_set(m, l, (plan_set){ids, 0, ns}, h[2], (size_t)m->dim * sizeof(__half), err);
    }
    b->warm_fill_ms += pi_now_ms() - t0;
    free(ids);
    if (rc != 0)
        return pi_error_wrap(err, "cuda backend: layer %u's rows for solo steps", l);
    L->s_gate = (const __half *)dev[0];
    L->s_up = (const __half *)dev[1];
    L->s_down = (const __half *)dev[2];
    L->s_n = ns;
    return 0;
}

static int load_layer(gpu_backend *b, uint32_t l, pi_error *err)
{
    const pi_model *m = b->m;
    const gpu_backend_config *c = &b->cfg;
    const pi_layer *P = &m->layers[l];
    cuda_layer *L = &b->layers[l];
    const int32_t *hot = c->hot ? c->hot[l] : NULL;
    uint32_t K = c->hot ? c->hot_count[l] : c->n_hot, nv = hot_vram(c, l);
    b->hot_count[l] = K;
    if (b->solo_on && solo_rows(b, l, hot, K, nv, err) != 0)
        return -1;
    if (upload_norm(b, &L->attn_norm, &P->attn_norm, "attn_norm", err) ||
        upload_norm(b, &L->ffn_norm, &P->ffn_norm, "ffn_norm", err) ||
        upload_mat(b, &L->wq, &P->wq, NULL, (uint32_t)P->wq.rows, "attn_q", err) ||
        upload_mat(b, &L->wk, &P->wk, NULL, (uint32_t)P->wk.rows, "attn_k", err) ||
        upload_mat(b, &L->wv, &P->wv, NULL, (uint32_t)P->wv.rows, "attn_v", err) ||
        upload_mat(b, &L->wo, &P->wo, NULL, (uint32_t)P->wo.rows, "attn_output", err) ||
        upload_mat_hot(b, &L->gate, &P->ffn_gate, hot, K, nv, "ffn_gate", L->s_gate, err) ||
        upload_mat_hot(b, &L->up, &P->ffn_up, hot, K, nv, "ffn_up", L->s_up, err) ||
        upload_down_t(b, &L->down_t, l, hot, K, nv, L->s_down, err))
        return -1;
    if (P->ffn_gate.type != P->ffn_up.type)
        return pi_error_set(err, "cuda backend: ffn_gate and ffn_up types differ (%d, %d)",
                            (int)P->ffn_gate.type, (int)P->ffn_up.type);
    if (b->predicting && upload_predictor(b, l, err) != 0)
        return -1;
    int32_t *map = (int32_t *)malloc(m->n_ff * sizeof *map);
    uint32_t words = cuda_pred_words(m->n_ff);
    uint32_t *bits = (uint32_t *)calloc(words, sizeof *bits);
    if (!map || !bits) {
        free(map);
        free(bits);
        return pi_error_set(err, "cuda backend: out of host memory");
    }
    for (uint32_t j = 0; j < m->n_ff; j++)
        map[j] = -1;
    int rc = 0;
    for (uint32_t s = 0; s < K && rc == 0; s++) {
        uint32_t j = hot ? (uint32_t)hot[s] : s;
        if (map[j] >= 0)
            rc = pi_error_set(err, "cuda backend: layer %u lists neuron %u twice (VRAM and warm)", l, j);
        map[j] = (int32_t)s;
        bits[j / 32] |= 1u << (j % 32);
    }
    if (rc == 0 && hot && (rc = dev_alloc(b, (void **)&L->map, m->n_ff * sizeof *map, MEM_SCRATCH, err)) == 0)
        rc = upload(b, L->map, map, m->n_ff * sizeof *map, err);
    if (rc == 0 && b->predicting &&
        (rc = dev_alloc(b, (void **)&L->hot_bits, words * sizeof *bits, MEM_SCRATCH, err)) == 0)
        rc = upload(b, L->hot_bits, bits, words * sizeof *bits, err);
    free(map);
    free(bits);
    return rc;
}

// The arena: the kept allocation when its manifest matches this model and
// config, else a new one the size of cfg.arena_bytes.
static int open_arena(gpu_backend *b, pi_error *err)
{
    const gpu_backend_config *c = &b->cfg;
    b->signature = vram_signature(b->m, c, "cuda");
    if (c->kept_bytes >= VRAM_ARENA_HEADER && c->kept_fd >= 0) {
        pi_error e2 = {{0}};
        vram_manifest h;
        if (cuda_vmm_open(&b->vmm, c->device, c->kept_bytes, c->kept_fd, &e2) == 0) {
            if (cudaMemcpy(&h, (const void *)b->vmm.ptr, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess &&
                b->vmm.size == c->kept_bytes && vram_manifest_ok(&h, b->signature, b->vmm.size - VRAM_ARENA_HEADER)) {
                b->arena = (char *)b->vmm.ptr;
                b->arena_cap = b->vmm.size;
                b->arena_on = b->attached = 1;
                if ((b->kept_fd = fcntl(c->kept_fd, F_DUPFD_CLOEXEC, 0)) < 0)
                    return pi_error_set(err, "cuda backend: dup of the kept VRAM's descriptor: %s", strerror(errno));
                return 0;
            }
            (void)cudaGetLastError();
            cuda_vmm_close(&b->vmm);    // another model or config: start afresh
        } else {
            fprintf(stderr, "cuda backend: the kept VRAM could not be imported (%s); loading afresh\n", e2.msg);
        }
    }
    if (cuda_vmm_open(&b->vmm, c->device, c->arena_bytes, -1, err) != 0) {
        // Out of device memory here: the plan counted on memory that is not
        // free (another process took it since pid's probe, or the budget was
        // given larger than what is free): say what is free and what to do.
        size_t fr = 0, tot = 0;
        if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) {
            (void)cudaGetLastError();
            return pi_error_wrap(err, "cuda backend: an arena of %llu bytes", (unsigned long long)c->arena_bytes);
        }
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        return pi_error_set(err, "cuda backend: no room for the plan's arena of %.1f MiB (weights, KV cache, hot "
                            "neurons): %.1f MiB of the GPU's %.1f MiB are free now (%s); give a smaller --vram-budget, "
                            "or free the GPU (nvidia-smi shows who holds it) and start again",
                            (double)c->arena_bytes / 1048576.0, (double)fr / 1048576.0, (double)tot / 1048576.0,
                            why);
    }
    b->arena = (char *)b->vmm.ptr;
    b->arena_cap = b->vmm.size;
    b->arena_on = 1;
    return 0;
}

// The warm rows' region in host memory of the virtual memory API
// (PI_CUDA_WARM_VMM=0 turns it off): the kept one (a descriptor that is not
// a memfd) when its manifest matches, else a new one. 0 when it holds them;
// -1 (and wr_on 0) to use a memfd: the driver cannot, or the CPU cannot
// reach the mapping. Why: pinning a 5.75 GiB memfd again took a restarted
// 13B worker 0.56-0.98 s, and unpinning it slowed a killed worker's exit.
static int open_warm_vmm(gpu_backend *b, uint64_t cap)
{
    const gpu_backend_config *c = &b->cfg;
    if (!cuda_switch("PI_CUDA_WARM_VMM", 1))
        return -1;
    int numa = 0;   // "0 where NUMA is not available" (cuMemCreate)
    if (cudaDeviceGetAttribute(&numa, cudaDevAttrHostNumaId, c->device) != cudaSuccess || numa < 0) {
        (void)cudaGetLastError();
        numa = 0;
    }
    struct stat st;
    pi_error e = {{0}};
    unsigned char vec;
    if (c->kept_warm_bytes >= VRAM_ARENA_HEADER && c->kept_warm_fd >= 0 && fstat(c->kept_warm_fd, &st) == 0 &&
        !S_ISREG(st.st_mode) && cuda_vmm_open_at(&b->wvmm, c->device, numa, c->kept_warm_bytes, c->kept_warm_fd, &e) == 0) {
        void *p = (void *)b->wvmm.ptr;
        int fd = -1;
        if (b->wvmm.size == c->kept_warm_bytes && mincore(p, 1, &vec) == 0 &&
            vram_manifest_ok((const vram_manifest *)p, b->signature, b->wvmm.size - VRAM_ARENA_HEADER) &&
            (fd = fcntl(c->kept_warm_fd, F_DUPFD_CLOEXEC, 0)) >= 0) {
            b->wr_fd = fd;      // an imported handle cannot be exported again: pid's, duplicated
            b->wr_taken = 1;
        } else {
            cuda_vmm_close(&b->wvmm);   // another model or config: a new one
        }
    }
    if (!b->wr_taken) {
        memset(&e, 0, sizeof e);
        if (cuda_vmm_open_at(&b->wvmm, c->device, numa, cap, -1, &e) != 0) {
            fprintf(stderr, "cuda backend: warm rows in a memfd (%s)\n", e.msg);
            return -1;
        }
        // The CPU writes the rows through the same address; a driver that
        // grants the access without mapping it for the CPU gets a memfd.
        if (mincore((void *)b->wvmm.ptr, 1, &vec) != 0 || cuda_vmm_export(&b->wvmm, &b->wr_fd, &e) != 0 ||
            fcntl(b->wr_fd, F_SETFD, FD_CLOEXEC) != 0) {
            fprintf(stderr, "cuda backend: warm rows in a memfd (%s)\n",
                    e.msg[0] ? e.msg : "the CPU cannot reach the driver's host mapping");
            cuda_vmm_close(&b->wvmm);
            return -1;
        }
        memset((void *)b->wvmm.ptr, 0, VRAM_ARENA_HEADER);  // not complete until write_manifest
    }
    b->wr_base = (unsigned char *)b->wvmm.ptr;
    b->wr_dev = (const unsigned char *)b->wvmm.ptr;
    b->wr_cap = b->wvmm.size;
    b->wr_on = b->wr_vmm = 1;
    return 0;
}

// The warm rows' region (cfg.warm_bytes, with an arena; PI_CUDA_KEEP_WARM=0
// turns it off): the driver's host memory (open_warm_vmm), else the kept
// memfd when its manifest matches, else a new memfd; pinned and mapped for
// the kernels. A failure leaves wr_on 0: the rows then go to cudaHostAlloc
// memory as without it. On by default since a 13B restart measured 1.4-1.8 s
// with it, 5.0-5.7 s without (docs/reliability.md).
static void open_warm(gpu_backend *b)
{
    const gpu_backend_config *c = &b->cfg;
    if (!c->warm_bytes || !b->arena_on || !cuda_switch("PI_CUDA_KEEP_WARM", 1))
        return;
    double t0 = pi_now_ms();
    const uint64_t huge = (uint64_t)2 << 20;    // whole huge pages: what a kernel may back it with
    uint64_t cap = (c->warm_bytes + huge - 1) / huge * huge;
    if (open_warm_vmm(b, cap) == 0) {
        b->warm_pin_ms += pi_now_ms() - t0;
        return;
    }
    int fd = -1;
    void *p = MAP_FAILED;
    if (c->kept_warm_bytes >= VRAM_ARENA_HEADER && c->kept_warm_fd >= 0) {
        p = mmap(NULL, c->kept_warm_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, c->kept_warm_fd, 0);
        if (p != MAP_FAILED &&
            vram_manifest_ok((const vram_manifest *)p, b->signature, c->kept_warm_bytes - VRAM_ARENA_HEADER) &&
            (fd = fcntl(c->kept_warm_fd, F_DUPFD_CLOEXEC, 0)) >= 0) {
            cap = c->kept_warm_bytes;
            b->wr_taken = 1;
        } else if (p != MAP_FAILED) {
            munmap(p, c->kept_warm_bytes);      // another model or config: a new one
            p = MAP_FAILED;
        }
    }
    if (!b->wr_taken) {     // a zero header: not complete until write_manifest
        fd = memfd_create("pi-warm", MFD_CLOEXEC);
        if (fd < 0 || ftruncate(fd, (off_t)cap) != 0 ||
            (p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED) {
            fprintf(stderr, "cuda backend: no memfd of %llu bytes for the warm rows (%s); they will not be kept\n",
                    (unsigned long long)cap, strerror(errno));
            if (fd >= 0)
                close(fd);
            return;
        }
#ifdef MADV_HUGEPAGE
        // Huge pages where the kernel gives them to shmem (shmem_enabled
        // "advise"): fewer pages for the GPU's PCIe reads to translate. A
        // hint: small pages where it says no (the H200 host's shmem: "never").
        (void)madvise(p, cap, MADV_HUGEPAGE);
#endif
    }
    void *d = NULL;
    cudaError_t e = cudaHostRegister(p, cap, cudaHostRegisterPortable | cudaHostRegisterMapped);
    if (e == cudaSuccess && (e = cudaHostGetDevicePointer(&d, p, 0)) != cudaSuccess)
        cudaHostUnregister(p);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        fprintf(stderr, "cuda backend: cannot pin the warm rows' memfd (%s); they will not be kept\n",
                cudaGetErrorString(e));
        munmap(p, cap);
        close(fd);
        b->wr_taken = 0;
        return;
    }
    b->wr_fd = fd;
    b->wr_base = (unsigned char *)p;
    b->wr_dev = (const unsigned char *)d;
    b->wr_cap = cap;
    b->wr_on = 1;
    b->warm_pin_ms += pi_now_ms() - t0;
}

// The rope's pair frequencies with the model's scaling (rope_freq_scale,
// rope_freqs): head_dim / 2 doubles at the step block's end, set once here
// (a step's copies in and out leave them alone; cuda_needs.h's step bytes
// hold them).
static int upload_rope(gpu_backend *b, pi_error *err)
{
    const pi_model *m = b->m;
    double *h = (double *)(b->h_blk + b->off_rope);
    cuda_rope_inv_freqs(h, m->head_dim, m->rope_theta, m->rope_freq_scale, (const float *)m->rope_freqs.data);
    CU(cudaMemcpy(b->d_blk + b->off_rope, h, (size_t)(m->head_dim / 2) * sizeof *h, cudaMemcpyHostToDevice));
    b->ash.rope_inv = (const double *)(b->d_blk + b->off_rope);
    return 0;
}

// How the host waits for a step: spinning when no CPU worker shares the
// cores (c->spin_wait), else asleep until the device's interrupt wakes it.
// PI_CUDA_SYNC=spin|yield|block overrides, to measure the difference.
static unsigned sync_flag(const gpu_backend_config *c)
{
    const char *v = getenv("PI_CUDA_SYNC");
    if (v && !strcmp(v, "spin"))
        return cudaDeviceScheduleSpin;
    if (v && !strcmp(v, "yield"))
        return cudaDeviceScheduleYield;
    if (v && !strcmp(v, "block"))
        return cudaDeviceScheduleBlockingSync;
    return c->spin_wait ? cudaDeviceScheduleSpin : cudaDeviceScheduleBlockingSync;
}

// The threads' stack limit (CUDA_STACK_BYTES, or PI_CUDA_STACK_BYTES=N to
// measure another; the driver grows it for a launch that needs more), set
// before any launch: the driver reserves it for every resident thread, so
// the 1 KiB default held 264 MiB of an H200 the plan can give to hot
// neurons (cuda_needs.h). Writes what the context holds on the device after
// it, the device's memory in use: this process's alone when no other uses it.
static void set_stack_limit(char *out, size_t cap)
{
    size_t fr = 0, tot = 0, before = 0, after = 0;
    out[0] = 0;
    const char *v = getenv("PI_CUDA_STACK_BYTES");
    char *end = NULL;
    unsigned long want = v && *v ? strtoul(v, &end, 10) : CUDA_STACK_BYTES;
    const char *note = "";
    if (v && *v && (*end || want > (1ul << 20))) {
        want = CUDA_STACK_BYTES;
        note = "; PI_CUDA_STACK_BYTES is not a number of bytes up to 1 MiB: ignored";
    }
    (void)cudaDeviceGetLimit(&before, cudaLimitStackSize);
    if (cudaDeviceSetLimit(cudaLimitStackSize, want) != cudaSuccess ||
        cudaDeviceGetLimit(&after, cudaLimitStackSize) != cudaSuccess) {
        (void)cudaGetLastError();
        note = "; the stack limit not set";
        after = before;
    }
    if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) {
        (void)cudaGetLastError();
        return;
    }
    snprintf(out, cap, " (%.0f MiB of the device in use after it, stack limit %zu -> %zu bytes%s)",
             (double)(tot - fr) / 1048576.0, before, after, note);
}

// The context itself did not fit: the GPU's memory is held elsewhere.
static int context_oom(int device, pi_error *err)
{
    (void)cudaGetLastError();
    return pi_error_set(err, "cuda backend: out of device memory for a CUDA context on device %d (about %.2f GiB); "
                        "another process holds the GPU's memory (nvidia-smi shows which): free it and start again",
                        device, (double)CUDA_NEEDS_CONTEXT_BYTES / 1073741824.0);
}

// Solo steps' buffers (cuda_needs_solo_bytes counts them, term by term),
// their copy stream and events, and cuBLAS on the step stream.
static int solo_alloc(gpu_backend *b, pi_error *err)
{
    const pi_model *m = b->m;
    size_t P = b->cfg.solo_batch, dim = m->dim, C = CUDA_NEEDS_SOLO_CHUNK;
    void *ws = NULL;
    if (scratch_floats(b, &b->s_x, P * dim, err) || scratch_floats(b, &b->s_q, P * dim, err) ||
        scratch_floats(b, &b->s_att, P * dim, err) || scratch_floats(b, &b->s_k, P * b->kv_dim, err) ||
        scratch_floats(b, &b->s_v, P * b->kv_dim, err) ||
        dev_alloc(b, (void **)&b->s_xh, P * dim * sizeof(__half), MEM_SCRATCH, err) ||
        scratch_floats(b, &b->s_g, P * C, err) || scratch_floats(b, &b->s_u, P * C, err) ||
        dev_alloc(b, (void **)&b->s_h, P * C * sizeof(__half), MEM_SCRATCH, err) ||
        dev_alloc(b, (void **)&b->s_entries, P * sizeof(gpu_entry), MEM_SCRATCH, err) ||
        dev_alloc(b, &ws, CUDA_NEEDS_SOLO_WORKSPACE, MEM_SCRATCH, err))
        return -1;
    for (int i = 0; i < CUDA_NEEDS_SOLO_STAGES; i++)
        if (dev_alloc(b, (void **)&b->s_stage[i], 3 * C * dim * sizeof(__half), MEM_SCRATCH, err) != 0)
            return -1;
    CU(cudaStreamCreateWithFlags(&b->s_copy, cudaStreamNonBlocking));
    for (int i = 0; i < CUDA_NEEDS_SOLO_STAGES; i++) {
        CU(cudaEventCreateWithFlags(&b->s_copied[i], cudaEventDisableTiming));
        CU(cudaEventCreateWithFlags(&b->s_used[i], cudaEventDisableTiming));
    }
    if (cuda_blas_create(&b->blas, b->stream, ws, CUDA_NEEDS_SOLO_WORKSPACE, err) != 0)
        return -1;
    b->solo_cap = b->cfg.solo_batch;
    // The products' kernels load on first use (lazy module loading): once
    // here, at a full step's shapes, so a first prompt does not pay for it.
    const __half *w = b->s_stage[0];
    uint32_t n = b->solo_cap, c = (uint32_t)C, d = m->dim;
    if (cuda_blas_rows(b->blas, b->s_q, d, (const __half *)b->layers[0].wq.data, d, b->s_xh, n, d, 0.0f, err) ||
        cuda_blas_rows(b->blas, b->s_k, b->kv_dim, (const __half *)b->layers[0].wk.data, b->kv_dim, b->s_xh, n, d,
                       0.0f, err) ||
        cuda_blas_rows(b->blas, b->s_g, c, w, c, b->s_xh, n, d, 0.0f, err) ||
        cuda_blas_down(b->blas, b->s_x, w, b->s_h, c, n, d, err))
        return -1;
    CU(cuda_act_half(b->stream, b->s_h, b->s_g, b->s_u, (size_t)n * c, (int)m->act));
    CU(cuda_to_half(b->stream, b->s_xh, b->s_x, (size_t)n * d));
    CU(cudaStreamSynchronize(b->stream));
    return 0;
}

static int create_inner(gpu_backend *b, pi_error *err)
{
    const pi_model *m = b->m;
    const gpu_backend_config *c = &b->cfg;
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        (void)cudaGetLastError();
        return pi_error_set(err, "cuda backend: no usable CUDA device (use --gpu-backend host)");
    }
    if (c->device < 0 || c->device >= n_dev)
        return pi_error_set(err, "cuda backend: device %d does not exist (%d present)", c->device, n_dev);
    double t0 = pi_now_ms();
    cudaError_t ce = cudaSetDevice(c->device);
    if (ce == cudaErrorMemoryAllocation)
        return context_oom(c->device, err);
    CU(ce);
    // With CPU workers a step's wait sleeps: their pinned threads own the
    // other cores, and a spinning waiter there would stall their per-layer
    // barrier for a whole scheduler tick (measured on the H200 with the
    // cores busy: 22.8 -> 10.8 tok/s). (Fails harmlessly when the context is
    // already active, e.g. a second backend in a test.)
    if (cudaSetDeviceFlags(sync_flag(c)) != cudaSuccess)
        (void)cudaGetLastError();
    ce = cudaStreamCreateWithFlags(&b->stream, cudaStreamNonBlocking);     // the context, if not made yet
    if (ce == cudaErrorMemoryAllocation)
        return context_oom(c->device, err);
    CU(ce);
    double t_ctx = pi_now_ms();
    char ctx_mem[160];
    set_stack_limit(ctx_mem, sizeof ctx_mem);
    if (c->arena_bytes && open_arena(b, err) != 0)
        return -1;
    open_warm(b);
    double t_arena = pi_now_ms();
    CU(cudaEventCreateWithFlags(&b->lists_done, cudaEventDisableTiming));
    // The predictor only where the worker will call predict.
    b->predicting = c->ffn == PI_FFN_PREDICTED && m->has_predictor;
    b->solo_on = c->solo_batch > 0 && cuda_blas_available() && cuda_needs_solo_ok(m);

    // An untied model reads one embedding row per token: the table stays in
    // host memory (mapped, read over the bus, as llama.cpp keeps it on the
    // CPU) and its VRAM goes to hot neurons (plan_weight_bytes leaves it out).
    if (upload_mat_as(b, &b->tok_embd, &m->tok_embd, NULL, m->n_vocab, "token_embd",
                      m->tied_output ? MEM_PLAN : MEM_HOST, err) ||
        upload_norm(b, &b->output_norm, &m->output_norm, "output_norm", err))
        return -1;
    if (m->tied_output)
        b->output = b->tok_embd;
    else if (upload_mat(b, &b->output, &m->output, NULL, (uint32_t)m->output.rows, "output", err))
        return -1;
    b->layers = (cuda_layer *)calloc(m->n_layers, sizeof(cuda_layer));
    b->hot_count = (uint32_t *)calloc(m->n_layers, sizeof(uint32_t));
    if (!b->layers || !b->hot_count)
        return pi_error_set(err, "cuda backend: out of host memory");
    for (uint32_t l = 0; l < m->n_layers; l++)
        if (load_layer(b, l, err) != 0)
            return pi_error_wrap(err, "layer %u", l);
    // Where a start's time goes (pid's log): a restart that takes a kept
    // arena should spend it on the context and the warm rows alone.
    fprintf(stderr, "cuda backend: context %.0f ms%s, arena %.0f ms (%s), layers %.0f ms (warm rows: %.1f MiB "
            "pinned in %.0f ms, filled in %.0f ms%s)\n", t_ctx - t0, ctx_mem, t_arena - t_ctx,
            b->attached ? "kept, taken as it was" : c->arena_bytes ? "new" : "none", pi_now_ms() - t_arena,
            (double)b->warm_bytes / 1048576.0, b->warm_pin_ms, b->warm_fill_ms,
            !b->wr_on ? "" : b->wr_vmm ? (b->wr_taken ? "; driver-pinned memory pid keeps, taken as it was"
                                                       : "; in driver-pinned memory pid keeps")
                        : b->wr_taken ? "; kept, taken as they were" : "; in a memfd pid keeps");
    size_t kv = (size_t)c->max_seqs * m->n_layers * c->n_ctx * b->kv_dim * sizeof(__half);
    if (dev_alloc(b, (void **)&b->k_cache, kv, MEM_PLAN, err) ||
        dev_alloc(b, (void **)&b->v_cache, kv, MEM_PLAN, err))
        return -1;
    size_t nb = c->max_batch;
    size_t attn_part = cuda_attn_part_floats(nb, m->n_heads, c->n_ctx, m->head_dim);
    if (scratch_floats(b, &b->x, nb * m->dim, err) || scratch_floats(b, &b->xb, nb * m->dim, err) ||
        scratch_floats(b, &b->q, nb * m->dim, err) || scratch_floats(b, &b->k, nb * b->kv_dim, err) ||
        scratch_floats(b, &b->v, nb * b->kv_dim, err) || scratch_floats(b, &b->attn_part, attn_part, err) ||
        scratch_floats(b, &b->tmp, nb * m->dim, err) || scratch_floats(b, &b->hot, nb * m->dim, err) ||
        scratch_floats(b, &b->coef, nb * c->n_hot, err) ||
        scratch_floats(b, &b->part, (size_t)CUDA_DOWN_PART_ROWS * m->dim, err) ||
        scratch_floats(b, &b->logits, nb * m->n_vocab, err) ||
        dev_alloc(b, (void **)&b->d_lists, nb * m->n_ff * sizeof(int32_t), MEM_SCRATCH, err))
        return -1;
    CU(cudaMemset(b->attn_part, 0, attn_part * sizeof(float)));    // its split counters start at zero
    // The step block: entries, logit rows | parameters | stamps | peers | rope.
    b->off_rows = nb * sizeof(gpu_entry);
    b->off_params = (b->off_rows + nb * sizeof(uint32_t) + 63) / 64 * 64;
    b->off_stamps = b->off_params + 64;
    b->off_peers = b->off_stamps + ((size_t)m->n_layers * STAMPS_PER_LAYER + 8) * sizeof(unsigned long long);
    size_t n_peers = PLAN_MAX_SHARDS;
    b->off_rope = b->off_peers + 2 * n_peers * sizeof(void *);
    b->blk_bytes = b->off_rope + (size_t)(m->head_dim / 2) * sizeof(double);
    if (b->blk_bytes > nb * CUDA_NEEDS_ENTRY_BYTES + nb * sizeof(uint32_t) + CUDA_NEEDS_STEP_BYTES(m->n_layers))
        return pi_error_set(err, "cuda backend: the step block (%zu bytes) outgrew cuda_needs.h's reservation",
                            b->blk_bytes);
    if (dev_alloc(b, (void **)&b->d_blk, b->blk_bytes, MEM_SCRATCH, err))
        return -1;
    CU(cudaMemset(b->d_blk, 0, b->blk_bytes));
    CU(cudaMallocHost((void **)&b->h_blk, b->blk_bytes));
    memset(b->h_blk, 0, b->blk_bytes);
    if (upload_rope(b, err) != 0)
        return -1;
    b->d_entries = (gpu_entry *)b->d_blk;
    b->d_rows = (uint32_t *)(b->d_blk + b->off_rows);
    b->d_params = (cuda_step_params *)(b->d_blk + b->off_params);
    b->d_stamps = (unsigned long long *)(b->d_blk + b->off_stamps);
    CU(cudaMallocHost((void **)&b->h_lists, nb * m->n_ff * sizeof(int32_t)));
    if (b->solo_on && solo_alloc(b, err) != 0)
        return -1;
    if (!b->predicting)
        return 0;
    uint32_t R = 0;
    for (uint32_t l = 0; l < m->n_layers; l++)
        R = b->layers[l].fc1.rows > R ? b->layers[l].fc1.rows : R;
    if (scratch_floats(b, &b->p_hidden, nb * R, err) ||
        dev_alloc(b, (void **)&b->p_mask, nb * cuda_pred_words(m->n_ff) * sizeof(uint32_t), MEM_SCRATCH, err) ||
        dev_alloc(b, (void **)&b->p_lists, nb * m->n_ff * sizeof(int32_t), MEM_SCRATCH, err) ||
        dev_alloc(b, (void **)&b->p_counts, nb * sizeof(int32_t), MEM_SCRATCH, err) ||
        dev_alloc(b, (void **)&b->u_list, (m->n_ff + 1) * sizeof(int32_t), MEM_SCRATCH, err))
        return -1;
    CU(cudaMallocHost((void **)&b->h_pcounts, nb * sizeof(int32_t)));
    return 0;
}

// ---------------------------------------------------------------- ops

// Last at create, once the arena holds everything: what a restarted worker
// checks before it takes the arena as it is.
static int write_manifest(gpu_backend *b, pi_error *err)
{
    if (b->wr_on && !b->wr_taken)
        vram_manifest_fill((vram_manifest *)b->wr_base, b->signature, b->wr_used);
    if (!b->arena_on || b->attached)
        return 0;
    vram_manifest h;
    vram_manifest_fill(&h, b->signature, b->arena_used);
    CU(cudaMemcpy(b->arena, &h, sizeof h, cudaMemcpyHostToDevice));
    return 0;
}

static gpu_backend *cuda_create(const pi_model *m, const gpu_backend_config *cfg, pi_error *err)
{
    if (cfg->n_hot > m->n_ff || cfg->max_batch == 0 || cfg->max_batch > CUDA_MAX_BATCH || cfg->max_seqs == 0 ||
        cfg->n_ctx == 0) {
        pi_error_set(err, "cuda backend: bad configuration (n_hot %u of %u, max_batch %u of at most %d, "
                     "max_seqs %u, n_ctx %u)", cfg->n_hot, m->n_ff, cfg->max_batch, CUDA_MAX_BATCH,
                     cfg->max_seqs, cfg->n_ctx);
        return NULL;
    }
    if (m->dim % 8 != 0 || m->n_heads * m->head_dim != m->dim || m->head_dim % 2 != 0) {
        pi_error_set(err, "cuda backend: model shape not supported (dim %u must be a multiple of 8 and "
                     "n_heads %u x head_dim %u, head_dim even)", m->dim, m->n_heads, m->head_dim);
        return NULL;
    }
    if (check_hot_sets(m, cfg, err) != 0)
        return NULL;
    /* The kernels compute llama's graph only (model/arch.h lists the rest),
     * its rope scaling included (cuda_rope_inv_freqs). */
    if (const char *beyond = model_beyond_llama(m)) {
        pi_error_set(err, "cuda backend: architecture %s needs %s, which the CUDA backend does not compute yet; "
                     "run it with --gpu-backend host", m->arch, beyond);
        return NULL;
    }
    gpu_backend *b = (gpu_backend *)calloc(1, sizeof *b);
    if (!b) {
        pi_error_set(err, "cuda backend: out of memory");
        return NULL;
    }
    b->m = m;
    b->cfg = *cfg;
    b->kv_dim = m->n_kv_heads * m->head_dim;
    b->ash = {m->n_layers, cfg->n_ctx, m->n_heads, m->n_kv_heads, m->head_dim, NULL};   // rope_inv: upload_rope
    b->xn_layer = -1;
    b->pred_layer = -1;
    if (create_inner(b, err) != 0 || write_manifest(b, err) != 0) {
        free_all(b);
        free(b);
        return NULL;
    }
    // The caller's hot sets need not outlive create: what is kept is on the
    // device (rows, lookup tables) and in hot_count.
    b->cfg.hot = NULL;
    b->cfg.hot_count = NULL;
    return b;
}

static void cuda_destroy(gpu_backend **bp)
{
    if (!bp || !*bp)
        return;
    free_all(*bp);
    free(*bp);
    *bp = NULL;
}

static uint64_t cuda_device_bytes(const gpu_backend *b)
{
    return b->device_bytes + b->pred_bytes + b->scratch_bytes;
}

extern "C" void gpu_backend_cuda_bytes(const gpu_backend *b, uint64_t *plan_part, uint64_t *predictors,
                                       uint64_t *scratch)
{
    *plan_part = b->device_bytes;
    *predictors = b->pred_bytes;
    *scratch = b->scratch_bytes;
}

static int check_step(const gpu_backend *b, uint32_t l, uint32_t n, pi_error *err)
{
    if (n == 0 || n > b->cfg.max_batch)
        return pi_error_set(err, "cuda backend: %u entries in a step (1..%u allowed)", n, b->cfg.max_batch);
    if (l >= b->m->n_layers)
        return pi_error_set(err, "cuda backend: layer %u of %u", l, b->m->n_layers);
    return 0;
}

static int check_entries(const gpu_backend *b, const gpu_entry *e, uint32_t n, pi_error *err)
{
    if (check_step(b, 0, n, err) != 0)
        return -1;
    for (uint32_t i = 0; i < n; i++)
        if (e[i].slot >= b->cfg.max_seqs || e[i].pos >= b->cfg.n_ctx || e[i].token < 0 ||
            (uint32_t)e[i].token >= b->m->n_vocab)
            return pi_error_set(err, "cuda backend: entry %u out of range (slot %u, pos %u, token %d)", i,
                                e[i].slot, e[i].pos, e[i].token);
    return 0;
}

// ---------------------------------------------------------------- enqueued work
// Each enq_* puts one phase of a step on the stream without waiting: the
// layer-by-layer ops and the captured step (run_step) share them.

static int enq_embed(gpu_backend *b, uint32_t n, pi_error *err)
{
    CU(cuda_embed_rows(b->stream, b->x, &b->tok_embd, b->d_entries, n));
    return 0;
}

// 1 when a predicted step's FFN norm runs in the predictor's compaction
// launch (norm_folded): the predictor reads the residual (PowerInfer's LLaMA
// files), so nothing needs xb before the hot FFN. wo then adds straight into
// x, the same add the norm kernel did, so x and xb keep their bits; one
// launch a layer goes. On by default (session 11 on the H200: 176.1 ->
// 178.9 tok/s all in VRAM, 85.0 -> 85.6 at 12.6 GiB, the same text;
// docs/benchmarks.md); PI_CUDA_NORM_FOLD=0 turns it off.
static int norm_folded(const gpu_backend *b, int predicted)
{
    return predicted && b->m->pred_input == PI_PRED_INPUT_RESIDUAL && cuda_switch("PI_CUDA_NORM_FOLD", 1);
}

// Attention of layer l and its residual add; unless fold (norm_folded), xb =
// the FFN's input (rmsnorm(x) * ffn_norm), also written to xn_host (a device
// pointer into the mapped segment) when given.
static int enq_attn(gpu_backend *b, uint32_t l, uint32_t n, float *xn_host, int fold, pi_error *err)
{
    const pi_model *m = b->m;
    const cuda_layer *L = &b->layers[l];
    uint32_t dim = m->dim;
    CU(cuda_rmsnorm(b->stream, b->xb, NULL, b->x, NULL, L->attn_norm, dim, m->norm_eps, n));
    cuda_mv_set qkv;
    memset(&qkv, 0, sizeof qkv);
    qkv.count = 3;
    qkv.w[0] = L->wq, qkv.y[0] = b->q, qkv.ys[0] = dim;
    qkv.w[1] = L->wk, qkv.y[1] = b->k, qkv.ys[1] = b->kv_dim;
    qkv.w[2] = L->wv, qkv.y[2] = b->v, qkv.ys[2] = b->kv_dim;
    const int one_type = L->wq.type == L->wk.type && L->wq.type == L->wv.type;
    if (one_type && cuda_qkv_rope_fusable(n, L->wq.type, dim, b->kv_dim, m->head_dim)) {
        // the product, the rope and the cache store in one launch
        cuda_qkv_rope rp = {b->d_entries, b->ash.rope_inv, b->k_cache, b->v_cache, m->head_dim, m->n_layers,
                            b->cfg.n_ctx, l};
        CU(cuda_matvec_qkv_rope(b->stream, &qkv, b->xb, dim, n, &rp));
    } else {
        if (!one_type) {    // not one launch: one each
            CU(cuda_matvec(b->stream, b->q, dim, &L->wq, b->xb, dim, n));
            CU(cuda_matvec(b->stream, b->k, b->kv_dim, &L->wk, b->xb, dim, n));
            CU(cuda_matvec(b->stream, b->v, b->kv_dim, &L->wv, b->xb, dim, n));
        } else {
            CU(cuda_matvec_set(b->stream, &qkv, b->xb, dim, n, 0));
        }
        CU(cuda_rope_store(b->stream, b->q, b->k, b->v, b->k_cache, b->v_cache, b->d_entries, l, b->ash, n));
    }
    CU(cuda_attention(b->stream, b->tmp, b->q, b->k_cache, b->v_cache, b->attn_part, b->d_entries, l, b->ash, n));
    if (fold) {
        CU(cuda_matvec_add(b->stream, b->x, dim, &L->wo, b->tmp, dim, n));   // x += wo . attention
        return 0;
    }
    CU(cuda_matvec(b->stream, b->q, dim, &L->wo, b->tmp, dim, n));
    // x += wo . attention (fused into the norm), then the FFN's input
    CU(cuda_rmsnorm(b->stream, b->xb, xn_host, b->x, b->q, L->ffn_norm, dim, m->norm_eps, n));
    return 0;
}

// The predictor of layer l over the FFN input (or, for PowerInfer's own
// LLaMA files, the residual stream before ffn_norm, as PowerInfer reads it):
// each entry's mask, its ascending list (into p_lists, and out's mapped
// destinations when given), and the step's hot union for the hot FFN. fold
// (norm_folded): the FFN norm too, in the compaction's launch (xb, and
// xn_host when given).
static int enq_predict(gpu_backend *b, uint32_t l, uint32_t n, const cuda_pred_out *out, int fold, float *xn_host,
                       pi_error *err)
{
    const pi_model *m = b->m;
    const cuda_layer *L = &b->layers[l];
    const float *in = m->pred_input == PI_PRED_INPUT_RESIDUAL ? b->x : b->xb;
    cuda_mv_set fc1;
    memset(&fc1, 0, sizeof fc1);
    fc1.count = 1;
    fc1.w[0] = L->fc1, fc1.y[0] = b->p_hidden, fc1.ys[0] = L->fc1.rows;
    CU(cuda_matvec_set(b->stream, &fc1, in, m->dim, n, 1));
    if (L->fc2m.data)
        CU(cuda_pred_rows(b->stream, b->p_mask, &L->fc2m, b->p_hidden, n, m->sparse_threshold));
    else
        CU(cuda_pred_mask(b->stream, b->p_mask, &L->fc2, b->p_hidden, n, m->sparse_threshold));
    const cuda_norm_job nj = {b->xb, xn_host, b->x, L->ffn_norm, m->dim, m->norm_eps};
    CU(cuda_pred_compact(b->stream, b->p_lists, b->p_counts, b->p_mask, m->n_ff, n, out, fold ? &nj : NULL));
    if (n > 1)      // one entry: its own list is the union (step_union), cold ids skipped by the kernels
        CU(cuda_pred_union(b->stream, b->u_list, b->u_list + m->n_ff, b->p_mask, n, L->hot_bits, m->n_ff));
    return 0;
}

static cuda_union step_union(const gpu_backend *b, uint32_t n)
{
    cuda_union u = {b->u_list, b->u_list + b->m->n_ff, b->p_mask, cuda_pred_words(b->m->n_ff)};
    if (n == 1) {
        u.list = b->p_lists;
        u.count = b->p_counts;
    }
    return u;
}

// hot = the hot neurons' FFN output: the predicted union (after enq_predict)
// or every hot neuron (exact: dead ReLU rows skipped; dense: all). into_x:
// added to x instead (the residual add, when no CPU worker has a part).
static int enq_hot(gpu_backend *b, uint32_t l, uint32_t n, int predicted, int into_x, pi_error *err)
{
    const cuda_layer *L = &b->layers[l];
    float *out = into_x ? b->x : b->hot;
    if (predicted) {
        cuda_union u = step_union(b, n);
        if (cuda_ffn_union_fusable(n, &L->gate, &L->up, &L->down_t)) {
            CU(cuda_ffn_union_fused(b->stream, out, b->part, &L->gate, &L->up, &L->down_t, b->xb, &u, L->map,
                                    (int)b->m->act, into_x));
            return 0;
        }
        CU(cuda_ffn_gate_up_union(b->stream, b->coef, &L->gate, &L->up, b->xb, n, &u, L->map, (int)b->m->act));
        CU(cuda_ffn_down_union(b->stream, out, b->part, &L->down_t, b->coef, n, &u, L->map, into_x));
        return 0;
    }
    int skip = b->cfg.ffn != PI_FFN_DENSE;
    CU(cuda_ffn_gate_up(b->stream, b->coef, &L->gate, &L->up, b->xb, n, (int)b->m->act, skip));
    CU(cuda_ffn_down(b->stream, out, b->part, &L->down_t, b->coef, n, into_x));
    return 0;
}

// Final norm + lm_head of the nrows rows of src (n x dim residuals) listed
// in d_rows, into logits.
static int enq_logits_of(gpu_backend *b, const float *src, uint32_t nrows, pi_error *err)
{
    const pi_model *m = b->m;
    if (nrows == 0)
        return 0;
    CU(pdl_launch(k_gather_rows, nrows, 128, 0, b->stream, b->tmp, src, b->d_rows, m->dim));
    CU(cuda_rmsnorm(b->stream, b->xb, NULL, b->tmp, NULL, b->output_norm, m->dim, m->norm_eps, nrows));
    CU(cuda_matvec(b->stream, b->logits, m->n_vocab, &b->output, b->xb, m->dim, nrows));
    return 0;
}

static int enq_logits(gpu_backend *b, uint32_t nrows, pi_error *err)
{
    return enq_logits_of(b, b->x, nrows, err);
}

// ---------------------------------------------------------------- layer-by-layer ops

static int cuda_embed(gpu_backend *b, const gpu_entry *e, uint32_t n, pi_error *err)
{
    if (check_entries(b, e, n, err) != 0)
        return -1;
    b->xn_layer = -1;
    b->pred_layer = -1;
    // h_blk is free: every step's attn and logits end with a synchronisation.
    memcpy(b->h_blk, e, n * sizeof *e);
    CU(cudaMemcpyAsync(b->d_entries, b->h_blk, n * sizeof *e, cudaMemcpyHostToDevice, b->stream));
    return enq_embed(b, n, err);
}

static int cuda_attn(gpu_backend *b, uint32_t l, const gpu_entry *e, uint32_t n, float *xn_out, pi_error *err)
{
    (void)e; // uploaded by embed
    if (check_step(b, l, n, err) != 0)
        return -1;
    b->xn_layer = -1;   // xb is rewritten below
    b->pred_layer = -1;
    if (enq_attn(b, l, n, NULL, 0, err) != 0)
        return -1;
    // Straight into the shared segment (registered by map_host, so the copy
    // engine writes it directly); the CPU workers read it once we publish.
    CU(cudaMemcpyAsync(xn_out, b->xb, (size_t)n * b->m->dim * sizeof(float), cudaMemcpyDeviceToHost, b->stream));
    CU(cudaStreamSynchronize(b->stream));
    b->xn_layer = (int)l;
    b->xn_n = n;
    return 0;
}

static int cuda_ffn_hot(gpu_backend *b, uint32_t l, uint32_t n, pi_error *err)
{
    if (check_step(b, l, n, err) != 0)
        return -1;
    return enq_hot(b, l, n, 0, 0, err);
}

static int cuda_ffn_hot_active(gpu_backend *b, uint32_t l, uint32_t n, const int32_t *const *active,
                               const int32_t *counts, pi_error *err)
{
    if (check_step(b, l, n, err) != 0)
        return -1;
    const pi_model *m = b->m;
    const cuda_layer *L = &b->layers[l];
    uint32_t K = b->hot_count[l], max_count = 0;
    cuda_active lists;
    memset(&lists, 0, sizeof lists);
    // The lists predict just wrote for this layer are on the device already,
    // with their hot union; lists inside the mapped step segment are read in
    // place by the kernel; others are packed into pinned memory and copied.
    int from_pred = b->pred_layer == (int)l && b->pred_n == n;
    int in_place = b->host_dev != NULL;
    for (uint32_t i = 0; i < n; i++) {
        if (counts[i] < 0 || (uint32_t)counts[i] > m->n_ff || (counts[i] > 0 && !active[i]))
            return pi_error_set(err, "cuda backend: entry %u has %d active neurons (0..%u allowed)", i,
                                counts[i], m->n_ff);
        lists.count[i] = counts[i];
        if ((uint32_t)counts[i] > max_count)
            max_count = (uint32_t)counts[i];
        if (from_pred && (active[i] != b->pred_host[i] || counts[i] != b->pred_count[i]))
            from_pred = 0;
        const char *p = (const char *)active[i];
        if (counts[i] > 0 && (!b->host_base || p < b->host_base ||
                              p + (size_t)counts[i] * sizeof(int32_t) > b->host_base + b->host_size))
            in_place = 0;
    }
    if (from_pred)
        return enq_hot(b, l, n, 1, 0, err);
    if (in_place) {
        for (uint32_t i = 0; i < n; i++)
            if (counts[i] > 0)
                lists.list[i] = (const int32_t *)(b->host_dev + ((const char *)active[i] - b->host_base));
    } else if (max_count > 0) {
        if (b->lists_pending)
            CU(cudaEventSynchronize(b->lists_done)); // h_lists is free again
        size_t off = 0;
        for (uint32_t i = 0; i < n; i++) {
            memcpy(b->h_lists + off, active[i], (size_t)counts[i] * sizeof(int32_t));
            lists.list[i] = b->d_lists + off;
            off += (size_t)counts[i];
        }
        CU(cudaMemcpyAsync(b->d_lists, b->h_lists, off * sizeof(int32_t), cudaMemcpyHostToDevice, b->stream));
        CU(cudaEventRecord(b->lists_done, b->stream));
        b->lists_pending = 1;
    }
    if (K > 0)
        CU(cudaMemsetAsync(b->coef, 0, (size_t)n * K * sizeof(float), b->stream));
    CU(cuda_ffn_gate_up_active(b->stream, b->coef, &L->gate, &L->up, b->xb, n, &lists, max_count, L->map,
                               m->n_ff, (int)m->act));
    CU(cuda_ffn_down(b->stream, b->hot, b->part, &L->down_t, b->coef, n, 0));
    return 0;
}

// 1 when [p, p + bytes) lies inside the mapped step segment.
static int in_mapped(const gpu_backend *b, const void *p, size_t bytes)
{
    const char *c = (const char *)p;
    return b->host_dev && c >= b->host_base && bytes <= b->host_size &&
           (size_t)(c - b->host_base) <= b->host_size - bytes;
}

// Device address of host pointer p inside the mapped segment.
template <typename T> static T *dev_of(const gpu_backend *b, T *p)
{
    return (T *)(b->host_dev + ((const char *)p - b->host_base));
}

static int cuda_predict(gpu_backend *b, uint32_t l, uint32_t n, int32_t *const *active, int32_t *counts,
                        pi_error *err)
{
    if (check_step(b, l, n, err) != 0)
        return -1;
    const pi_model *m = b->m;
    if (!b->predicting)
        return pi_error_set(err, "cuda backend: predict, but the backend holds no predictor (created for --ffn "
                            "%s, model %s one)", pi_ffn_mode_name(b->cfg.ffn),
                            m->has_predictor ? "with" : "without");
    if (b->xn_layer != (int)l || b->xn_n != n)
        return pi_error_set(err, "cuda backend: predict for layer %u with %u entries, but the last attn was "
                            "layer %d with %u (predict reads its xn)", l, n, b->xn_layer, b->xn_n);
    if (!counts)
        return pi_error_set(err, "cuda backend: predict without a counts array");
    for (uint32_t i = 0; i < n; i++)
        if (!active[i])
            return pi_error_set(err, "cuda backend: predict: entry %u has no list", i);
    b->pred_layer = -1;
    size_t list_bytes = (size_t)m->n_ff * sizeof(int32_t);
    // Zero-copy when every destination is in the mapped segment: the
    // compaction kernel writes the lists and counts there itself.
    cuda_pred_out out;
    memset(&out, 0, sizeof out);
    int mapped = in_mapped(b, counts, n * sizeof *counts);
    for (uint32_t i = 0; i < n && mapped; i++)
        mapped = in_mapped(b, active[i], list_bytes);
    if (mapped) {
        out.counts = dev_of(b, counts);
        for (uint32_t i = 0; i < n; i++)
            out.list[i] = dev_of(b, active[i]);
    }
    if (enq_predict(b, l, n, &out, 0, NULL, err) != 0)
        return -1;
    if (!mapped) {
        // The counts first, then exactly the listed ids of each entry.
        CU(cudaMemcpyAsync(b->h_pcounts, b->p_counts, n * sizeof(int32_t), cudaMemcpyDeviceToHost, b->stream));
        CU(cudaStreamSynchronize(b->stream));
        for (uint32_t i = 0; i < n; i++) {
            if (b->h_pcounts[i] < 0 || (uint32_t)b->h_pcounts[i] > m->n_ff)
                return pi_error_set(err, "cuda backend: predict: entry %u got %d active neurons", i,
                                    b->h_pcounts[i]);
            if (b->h_pcounts[i] > 0)
                CU(cudaMemcpyAsync(active[i], b->p_lists + (size_t)i * m->n_ff,
                                   (size_t)b->h_pcounts[i] * sizeof(int32_t), cudaMemcpyDeviceToHost, b->stream));
        }
    }
    // The lists are in host memory once the stream is idle; the worker
    // publishes the layer counter right after we return.
    CU(cudaStreamSynchronize(b->stream));
    if (!mapped)
        memcpy(counts, b->h_pcounts, n * sizeof *counts);
    for (uint32_t i = 0; i < n; i++) {
        if (counts[i] < 0 || (uint32_t)counts[i] > m->n_ff)
            return pi_error_set(err, "cuda backend: predict: entry %u got %d active neurons", i, counts[i]);
        b->pred_host[i] = active[i];
        b->pred_count[i] = counts[i];
    }
    b->pred_layer = (int)l;
    b->pred_n = n;
    return 0;
}

static int cuda_finish(gpu_backend *b, uint32_t l, uint32_t n, const float *const *partials,
                       uint32_t n_partials, pi_error *err)
{
    if (check_step(b, l, n, err) != 0)
        return -1;
    size_t len = (size_t)n * b->m->dim;
    unsigned grid = blocks_for(len, 256);
    // tmp = hot + p0 + p1 + ...; then x += tmp: the host backend's order.
    CU(cudaMemcpyAsync(b->tmp, b->hot, len * sizeof(float), cudaMemcpyDeviceToDevice, b->stream));
    // Each partial comes straight from the segment; the stream orders the
    // reuse of b->q between one copy's add and the next copy.
    for (uint32_t i = 0; i < n_partials; i++) {
        CU(cudaMemcpyAsync(b->q, partials[i], len * sizeof(float), cudaMemcpyHostToDevice, b->stream));
        CU(pdl_launch(k_add, grid, 256, 0, b->stream, b->tmp, b->q, len));
    }
    CU(pdl_launch(k_add, grid, 256, 0, b->stream, b->x, b->tmp, len));
    return 0;
}

static int cuda_logits(gpu_backend *b, const gpu_entry *e, uint32_t n, float *out, pi_error *err)
{
    if (check_step(b, 0, n, err) != 0)
        return -1;
    b->xn_layer = -1;   // xb is reused below
    b->pred_layer = -1;
    uint32_t *h_rows = (uint32_t *)(b->h_blk + b->off_rows);
    uint32_t rows = 0;
    for (uint32_t i = 0; i < n; i++)
        if (e[i].want_logits)
            h_rows[rows++] = i;
    if (rows == 0)
        return 0;
    CU(cudaMemcpyAsync(b->d_rows, h_rows, rows * sizeof(uint32_t), cudaMemcpyHostToDevice, b->stream));
    if (enq_logits(b, rows, err) != 0)
        return -1;
    CU(cudaMemcpyAsync(out, b->logits, (size_t)rows * b->m->n_vocab * sizeof(float), cudaMemcpyDeviceToHost,
                       b->stream));
    CU(cudaStreamSynchronize(b->stream));
    return 0;
}

// ---------------------------------------------------------------- solo steps
// A long prompt's step, run here alone: every neuron of every layer, the
// ones outside VRAM streamed in once per step (chunks of gate, up and down^T
// rows from pinned host memory on s_copy, two in flight) instead of read
// from host memory once per entry as the CPU workers and warm kernels do;
// products on tensor cores (cuBLAS, fp16 in, fp32 accumulation), attention
// by the step kernels in groups of max_batch entries. Stages beyond two keep
// the copy engine busy through each layer's attention.

// Chunk k of the step's streamed rows: layer and first row, in step order.
struct solo_chunk {
    uint32_t l, r0, n;
};

static solo_chunk solo_chunk_at(const gpu_backend *b, uint64_t k)
{
    const uint32_t C = CUDA_NEEDS_SOLO_CHUNK;
    for (uint32_t l = 0; l < b->m->n_layers; l++) {
        uint32_t nk = (b->layers[l].s_n + C - 1) / C;
        if (k < nk) {
            uint32_t r0 = (uint32_t)k * C, left = b->layers[l].s_n - r0;
            return {l, r0, left < C ? left : C};
        }
        k -= nk;
    }
    return {0, 0, 0};
}

// Copies chunk k into its stage once the products reading it before are done.
static int solo_fetch(gpu_backend *b, uint64_t k, pi_error *err)
{
    solo_chunk c = solo_chunk_at(b, k);
    if (c.n == 0)
        return 0;
    const cuda_layer *L = &b->layers[c.l];
    size_t dim = b->m->dim, C = CUDA_NEEDS_SOLO_CHUNK, bytes = (size_t)c.n * dim * sizeof(__half);
    int i = (int)(k % CUDA_NEEDS_SOLO_STAGES);
    __half *st = b->s_stage[i];
    CU(cudaStreamWaitEvent(b->s_copy, b->s_used[i], 0));
    CU(cudaMemcpyAsync(st, L->s_gate + (size_t)c.r0 * dim, bytes, cudaMemcpyDefault, b->s_copy));
    CU(cudaMemcpyAsync(st + C * dim, L->s_up + (size_t)c.r0 * dim, bytes, cudaMemcpyDefault, b->s_copy));
    CU(cudaMemcpyAsync(st + 2 * C * dim, L->s_down + (size_t)c.r0 * dim, bytes, cudaMemcpyDefault, b->s_copy));
    CU(cudaEventRecord(b->s_copied[i], b->s_copy));
    return 0;
}

// s_x += the FFN of k neurons whose rows are gate, up and down (k x dim each,
// device memory), for the n entries' input s_xh; in pieces of the chunk size.
static int solo_ffn_rows(gpu_backend *b, const __half *gate, const __half *up, const __half *down, uint32_t k,
                         uint32_t n, pi_error *err)
{
    const pi_model *m = b->m;
    const uint32_t C = CUDA_NEEDS_SOLO_CHUNK, dim = m->dim;
    for (uint32_t r0 = 0; r0 < k; r0 += C) {
        uint32_t c = k - r0 < C ? k - r0 : C;
        size_t off = (size_t)r0 * dim;
        if (cuda_blas_rows(b->blas, b->s_g, c, gate + off, c, b->s_xh, n, dim, 0.0f, err) ||
            cuda_blas_rows(b->blas, b->s_u, c, up + off, c, b->s_xh, n, dim, 0.0f, err))
            return -1;
        CU(cuda_act_half(b->stream, b->s_h, b->s_g, b->s_u, (size_t)n * c, (int)m->act));
        if (cuda_blas_down(b->blas, b->s_x, down + off, b->s_h, c, n, dim, err) != 0)
            return -1;
    }
    return 0;
}

// Layer l's attention for the n entries, its residual add, then s_xh = the
// FFN's input in fp16.
static int solo_attn(gpu_backend *b, uint32_t l, uint32_t n, pi_error *err)
{
    const pi_model *m = b->m;
    const cuda_layer *L = &b->layers[l];
    uint32_t dim = m->dim, kvd = b->kv_dim;
    size_t nd = (size_t)n * dim;
    CU(cuda_rmsnorm(b->stream, b->s_att, NULL, b->s_x, NULL, L->attn_norm, dim, m->norm_eps, n));
    CU(cuda_to_half(b->stream, b->s_xh, b->s_att, nd));
    const __half *wq = (const __half *)L->wq.data, *wk = (const __half *)L->wk.data;
    const __half *wv = (const __half *)L->wv.data, *wo = (const __half *)L->wo.data;
    if (cuda_blas_rows(b->blas, b->s_q, dim, wq, dim, b->s_xh, n, dim, 0.0f, err) ||
        cuda_blas_rows(b->blas, b->s_k, kvd, wk, kvd, b->s_xh, n, dim, 0.0f, err) ||
        cuda_blas_rows(b->blas, b->s_v, kvd, wv, kvd, b->s_xh, n, dim, 0.0f, err))
        return -1;
    CU(cuda_rope_store(b->stream, b->s_q, b->s_k, b->s_v, b->k_cache, b->v_cache, b->s_entries, l, b->ash, n));
    // every entry's K and V are stored: each group attends over its own prefix
    for (uint32_t i0 = 0; i0 < n; i0 += b->cfg.max_batch) {
        uint32_t g = n - i0 < b->cfg.max_batch ? n - i0 : b->cfg.max_batch;
        CU(cuda_attention(b->stream, b->s_att + (size_t)i0 * dim, b->s_q + (size_t)i0 * dim, b->k_cache,
                          b->v_cache, b->attn_part, b->s_entries + i0, l, b->ash, g));
    }
    CU(cuda_to_half(b->stream, b->s_xh, b->s_att, nd));
    if (cuda_blas_rows(b->blas, b->s_x, dim, wo, dim, b->s_xh, n, dim, 1.0f, err) != 0)   // x += wo . attention
        return -1;
    CU(cuda_rmsnorm(b->stream, b->s_att, NULL, b->s_x, NULL, L->ffn_norm, dim, m->norm_eps, n));
    CU(cuda_to_half(b->stream, b->s_xh, b->s_att, nd));
    return 0;
}

// The logits of the want_logits entries, max_batch rows at a time through
// the step's own buffers (x, d_rows, logits), into out in entry order.
static int solo_logits(gpu_backend *b, const gpu_entry *e, uint32_t n, float *out, pi_error *err)
{
    const pi_model *m = b->m;
    uint32_t *h_rows = (uint32_t *)(b->h_blk + b->off_rows), rows = 0, done = 0;
    for (uint32_t i = 0; i <= n; i++) {
        if (i < n && e[i].want_logits)
            h_rows[rows++] = i;
        if (rows == 0 || (rows < b->cfg.max_batch && i < n))
            continue;
        CU(cudaMemcpyAsync(b->d_rows, h_rows, rows * sizeof(uint32_t), cudaMemcpyHostToDevice, b->stream));
        if (enq_logits_of(b, b->s_x, rows, err) != 0)
            return -1;
        CU(cudaMemcpyAsync(out + (size_t)done * m->n_vocab, b->logits, (size_t)rows * m->n_vocab * sizeof(float),
                           cudaMemcpyDeviceToHost, b->stream));
        CU(cudaStreamSynchronize(b->stream));   // h_rows is reused
        done += rows;
        rows = 0;
    }
    return 0;
}

static int cuda_run_solo(gpu_backend *b, const gpu_entry *e, uint32_t n, float *logits, pi_error *err)
{
    const pi_model *m = b->m;
    if (!b->solo_on || n == 0 || n > b->solo_cap)
        return pi_error_set(err, "cuda backend: a solo step of %u entries (this backend runs %u at most)", n,
                            b->solo_on ? b->solo_cap : 0);
    for (uint32_t i = 0; i < n; i++)
        if (e[i].slot >= b->cfg.max_seqs || e[i].pos >= b->cfg.n_ctx || e[i].token < 0 ||
            (uint32_t)e[i].token >= m->n_vocab)
            return pi_error_set(err, "cuda backend: entry %u out of range (slot %u, pos %u, token %d)", i,
                                e[i].slot, e[i].pos, e[i].token);
    b->xn_layer = -1;
    b->pred_layer = -1;
    CU(cudaMemcpyAsync(b->s_entries, e, n * sizeof *e, cudaMemcpyHostToDevice, b->stream));
    CU(cuda_embed_rows(b->stream, b->s_x, &b->tok_embd, b->s_entries, n));
    uint64_t chunks = 0;
    for (uint32_t l = 0; l < m->n_layers; l++)
        chunks += (b->layers[l].s_n + CUDA_NEEDS_SOLO_CHUNK - 1) / CUDA_NEEDS_SOLO_CHUNK;
    // the copy engine starts on the first chunks while attention runs
    for (uint64_t k = 0; k < CUDA_NEEDS_SOLO_STAGES; k++)
        if (solo_fetch(b, k, err) != 0)
            return -1;
    uint64_t k = 0;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const cuda_layer *L = &b->layers[l];
        if (solo_attn(b, l, n, err) != 0)
            return pi_error_wrap(err, "solo step, layer %u", l);
        const uint32_t nv = L->gate.hdata ? L->gate.nv : L->gate.rows;
        if (solo_ffn_rows(b, (const __half *)L->gate.data, (const __half *)L->up.data,
                          (const __half *)L->down_t.data, nv, n, err) != 0)
            return pi_error_wrap(err, "solo step, layer %u", l);
        for (; k < chunks && solo_chunk_at(b, k).l == l; k++) {
            int i = (int)(k % CUDA_NEEDS_SOLO_STAGES);
            solo_chunk c = solo_chunk_at(b, k);
            const __half *st = b->s_stage[i];
            const size_t C = CUDA_NEEDS_SOLO_CHUNK, dim = m->dim;
            CU(cudaStreamWaitEvent(b->stream, b->s_copied[i], 0));
            if (solo_ffn_rows(b, st, st + C * dim, st + 2 * C * dim, c.n, n, err) != 0)
                return pi_error_wrap(err, "solo step, layer %u", l);
            CU(cudaEventRecord(b->s_used[i], b->stream));
            if (solo_fetch(b, k + CUDA_NEEDS_SOLO_STAGES, err) != 0)
                return -1;
        }
    }
    if (solo_logits(b, e, n, logits, err) != 0)
        return -1;
    CU(cudaStreamSynchronize(b->stream));
    return 0;
}

static uint32_t cuda_solo_max(const gpu_backend *b)
{
    return b->solo_on ? b->solo_cap : 0;
}

// ---------------------------------------------------------------- the device-driven step

static int stamp(gpu_backend *b, int timed, uint32_t idx, pi_error *err)
{
    if (timed)
        CU(cuda_stamp(b->stream, b->d_stamps + idx));
    return 0;
}

// The whole step for n entries, nrows of which want logits, onto the stream
// (being captured). Stamps: layer l's phases at l * STAMPS_PER_LAYER + ST_*,
// then embed, logits and end at L * STAMPS_PER_LAYER + 0, 1, 2.
static int enq_step(gpu_backend *b, uint32_t n, uint32_t nrows, int predicted, int timed, pi_error *err)
{
    const pi_model *m = b->m;
    const uint32_t L = m->n_layers, S = STAMPS_PER_LAYER, W = b->peers.count;
    const gpu_step_links *k = &b->links;
    if (stamp(b, timed, L * S, err) || enq_embed(b, n, err))
        return -1;
    cuda_pred_out out;
    memset(&out, 0, sizeof out);
    if (predicted && W > 0) {
        out.counts = dev_of(b, k->counts);
        for (uint32_t i = 0; i < n; i++)
            out.list[i] = dev_of(b, k->active[i]);
    }
    const int fold = norm_folded(b, predicted);
    float *xn_host = W > 0 ? dev_of(b, k->xn) : NULL;
    // Predicted with CPU workers: the compaction's last block publishes the
    // tick (cuda_pred_out.tick) instead of a kernel after it (session 18:
    // predict + publish 1.008 -> 1.033 ms a 13B token at 12.6 GiB, no gain).
    const int pub_fused = predicted && W > 0;
    if (pub_fused) {
        out.tick = dev_of(b, k->layer_tick);
        out.tick_base = &b->d_params->tick0;
        out.arrive = &b->d_params->pub_arrive;
    }
    for (uint32_t l = 0; l < L; l++) {
        unsigned long long *st = b->d_stamps + (size_t)l * S;
        if (stamp(b, timed, l * S + ST_ATTN, err) || enq_attn(b, l, n, xn_host, fold, err))
            return -1;
        out.tick_add = l;
        if (predicted &&
            (stamp(b, timed, l * S + ST_PRED, err) || enq_predict(b, l, n, &out, fold, xn_host, err)))
            return -1;
        if (!pub_fused && stamp(b, timed, l * S + ST_PUB, err))
            return -1;
        if (W > 0 && !pub_fused)
            CU(cuda_publish(b->stream, dev_of(b, k->layer_tick), b->d_params, l));
        // No CPU workers: the hot output goes straight into x (the same sum, one kernel fewer).
        if (stamp(b, timed, l * S + ST_HOT, err) || enq_hot(b, l, n, predicted, W == 0, err) ||
            stamp(b, timed, l * S + ST_WAIT, err))
            return -1;
        // With CPU workers the finish kernel stamps the wait's end and its
        // own (a stamp kernel after it would count its launch as finish).
        if (W > 0)
            CU(cuda_wait_finish(b->stream, b->x, b->hot, &b->peers, b->d_params, l, (size_t)n * m->dim,
                                timed ? st + ST_WAITED : NULL, timed ? st + ST_END : NULL));
        else if (stamp(b, timed, l * S + ST_WAITED, err) || stamp(b, timed, l * S + ST_END, err))
            return -1;
    }
    if (stamp(b, timed, L * S + 1, err) || enq_logits(b, nrows, err) || stamp(b, timed, L * S + 2, err))
        return -1;
    return 0;
}

// The graph for this shape, captured on first use (the least recently used
// one is replaced when all slots are taken).
static int step_exec(gpu_backend *b, uint32_t n, uint32_t nrows, int predicted, int timed, cudaGraphExec_t *exec,
                     pi_error *err)
{
    step_graph *slot = &b->graphs[0];
    for (int g = 0; g < MAX_GRAPHS; g++) {
        step_graph *c = &b->graphs[g];
        if (c->exec && c->n == n && c->nrows == nrows && c->predicted == predicted && c->timed == timed) {
            c->used = ++b->steps;
            *exec = c->exec;
            return 0;
        }
        if (!c->exec || (slot->exec && c->used < slot->used))
            slot = c;
    }
    if (slot->exec) {
        CU(cudaGraphExecDestroy(slot->exec));
        slot->exec = NULL;
    }
    cudaGraph_t graph;
    CU(cudaStreamBeginCapture(b->stream, cudaStreamCaptureModeThreadLocal));
    pi_error inner = {{0}};
    int rc = enq_step(b, n, nrows, predicted, timed, &inner);
    cudaError_t e = cudaStreamEndCapture(b->stream, &graph);
    if (rc != 0)
        return pi_error_set(err, "%s (while capturing the step graph)", inner.msg);
    if (e != cudaSuccess)
        return pi_error_set(err, "cuda backend: capturing the step graph failed: %s", cudaGetErrorString(e));
    e = cudaGraphInstantiate(&slot->exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) {
        slot->exec = NULL;
        return pi_error_set(err, "cuda backend: instantiating the step graph failed: %s", cudaGetErrorString(e));
    }
    *slot = {n, nrows, predicted, timed, slot->exec, ++b->steps};
    *exec = slot->exec;
    return 0;
}

// Keeps the links and puts the peers' device pointers into the step block.
static int link_peers(gpu_backend *b, const gpu_step_links *k, pi_error *err)
{
    if (b->linked) {
        if (memcmp(&b->links, k, sizeof *k) != 0)
            return pi_error_set(err, "cuda backend: run_step's links changed (the step graphs bake them)");
        return 0;
    }
    if (k->n_cpu_workers > PLAN_MAX_SHARDS)
        return pi_error_set(err, "cuda backend: %u CPU workers (at most %d)", k->n_cpu_workers, PLAN_MAX_SHARDS);
    const size_t seg_bytes = b->m->dim * sizeof(float) * b->cfg.max_batch;
    int ok = in_mapped(b, k->xn, seg_bytes) && in_mapped(b, k->layer_tick, 4) && in_mapped(b, k->abort_word, 4) &&
             in_mapped(b, k->logits, (size_t)b->cfg.max_batch * b->m->n_vocab * sizeof(float));
    for (uint32_t w = 0; w < k->n_cpu_workers && ok; w++)
        ok = in_mapped(b, k->done[w], 4) && in_mapped(b, k->partials[w], seg_bytes);
    if (!ok)
        return pi_error_set(err, "cuda backend: run_step needs the step segment mapped into the device "
                            "(map_host) and every link inside it");
    const void **h_peers = (const void **)(b->h_blk + b->off_peers);
    const void **d_peers = (const void **)(b->d_blk + b->off_peers);
    for (uint32_t w = 0; w < k->n_cpu_workers; w++) {
        h_peers[w] = dev_of(b, k->done[w]);
        h_peers[PLAN_MAX_SHARDS + w] = dev_of(b, k->partials[w]);
    }
    CU(cudaMemcpy(d_peers, h_peers, 2 * PLAN_MAX_SHARDS * sizeof(void *), cudaMemcpyHostToDevice));
    b->peers.done = (const uint32_t *const *)d_peers;
    b->peers.partial = (const float *const *)(d_peers + PLAN_MAX_SHARDS);
    b->peers.abort_word = dev_of(b, k->abort_word);
    b->peers.count = k->n_cpu_workers;
    b->links = *k;
    b->linked = 1;
    return 0;
}

static double span_us(const unsigned long long *t, uint32_t a, uint32_t z)
{
    return t[z] > t[a] ? (double)(t[z] - t[a]) / 1000.0 : 0.0;
}

// pub_fused: the compaction published the tick (no ST_PUB stamp): predict
// runs to ST_HOT and publish is inside it.
static void step_times(const gpu_backend *b, int predicted, int pub_fused, gpu_step_times *o)
{
    const unsigned long long *t = (const unsigned long long *)(b->h_blk + b->off_stamps);
    const uint32_t L = b->m->n_layers, S = STAMPS_PER_LAYER;
    memset(o, 0, sizeof *o);
    o->embed = span_us(t, L * S, 0);
    for (uint32_t l = 0; l < L; l++) {
        const unsigned long long *y = t + (size_t)l * S;
        o->attn += span_us(y, ST_ATTN, predicted ? ST_PRED : ST_PUB);
        if (predicted)
            o->predict += span_us(y, ST_PRED, pub_fused ? ST_HOT : ST_PUB);
        if (!pub_fused)
            o->publish += span_us(y, ST_PUB, ST_HOT);
        o->hot += span_us(y, ST_HOT, ST_WAIT);
        o->wait_cpu += span_us(y, ST_WAIT, ST_WAITED);
        o->finish += span_us(y, ST_WAITED, ST_END);
        // the gap to the next layer's first stamp belongs to that layer's attention
        if (l + 1 < L)
            o->attn += (double)(y[S + ST_ATTN] > y[ST_END] ? y[S + ST_ATTN] - y[ST_END] : 0) / 1000.0;
    }
    o->logits = span_us(t, (L - 1) * S + ST_END, L * S + 2);
}

static int cuda_run_step(gpu_backend *b, const gpu_step_links *k, const gpu_entry *e, uint32_t n, uint32_t tick0,
                         uint32_t abort_past, int predicted, gpu_step_times *times, pi_error *err)
{
    if (check_entries(b, e, n, err) != 0)
        return -1;
    if (predicted && !b->predicting)
        return pi_error_set(err, "cuda backend: a predicted step, but the backend holds no predictor");
    if (link_peers(b, k, err) != 0)
        return -1;
    b->xn_layer = -1;
    b->pred_layer = -1;
    // Entries, logit rows and parameters: one upload.
    memcpy(b->h_blk, e, n * sizeof *e);
    uint32_t *rows = (uint32_t *)(b->h_blk + b->off_rows), nrows = 0;
    for (uint32_t i = 0; i < n; i++)
        if (e[i].want_logits)
            rows[nrows++] = i;
    cuda_step_params *p = (cuda_step_params *)(b->h_blk + b->off_params);
    *p = {tick0, abort_past, 0, 0, 0};
    int timed = times != NULL;
    cudaGraphExec_t exec;
    if (step_exec(b, n, nrows, predicted, timed, &exec, err) != 0)
        return -1;
    CU(cudaMemcpyAsync(b->d_blk, b->h_blk, b->off_stamps, cudaMemcpyHostToDevice, b->stream));
    CU(cudaGraphLaunch(exec, b->stream));
    if (nrows)
        CU(cudaMemcpyAsync(k->logits, b->logits, (size_t)nrows * b->m->n_vocab * sizeof(float),
                           cudaMemcpyDeviceToHost, b->stream));
    size_t back = timed ? b->off_peers - b->off_params : sizeof *p;
    CU(cudaMemcpyAsync(b->h_blk + b->off_params, b->d_blk + b->off_params, back, cudaMemcpyDeviceToHost,
                       b->stream));
    CU(cudaStreamSynchronize(b->stream));
    if (p->status != 0)
        return pi_error_set(err, "aborted waiting for the CPU workers (a worker died)");
    if (timed)
        step_times(b, predicted, predicted && b->peers.count > 0, times);
    return 0;
}

static int cuda_map_host(gpu_backend *b, void *base, size_t size, pi_error *err)
{
    if (b->host_base)
        return pi_error_set(err, "cuda backend: a segment is already registered");
    // Mapped, so kernels can read the active lists in place; copies work
    // either way, so a device that cannot map falls back to plain pinning.
    char *dev = NULL;
    if (cudaHostRegister(base, size, cudaHostRegisterPortable | cudaHostRegisterMapped) == cudaSuccess) {
        if (cudaHostGetDevicePointer((void **)&dev, base, 0) != cudaSuccess) {
            (void)cudaGetLastError();
            dev = NULL;
        }
    } else {
        (void)cudaGetLastError();
        CU(cudaHostRegister(base, size, cudaHostRegisterPortable));
    }
    b->host_base = (char *)base;
    b->host_size = size;
    b->host_dev = dev;
    return 0;
}

static int cuda_keep_fd(gpu_backend *b, uint64_t *bytes)
{
    *bytes = b->arena_cap;
    int fd = -1;
    pi_error e = {{0}};
    if (b->attached)
        return fcntl(b->kept_fd, F_DUPFD_CLOEXEC, 0);
    if (!b->arena_on || cuda_vmm_export(&b->vmm, &fd, &e) != 0) {
        if (b->arena_on)
            fprintf(stderr, "cuda backend: %s; VRAM will not be kept across restarts\n", e.msg);
        return -1;
    }
    return fd;
}

static uint64_t cuda_copied_bytes(const gpu_backend *b)
{
    return b->copied;
}

static int cuda_keep_warm_fd(gpu_backend *b, uint64_t *bytes)
{
    if (!b->wr_on)
        return -1;
    *bytes = b->wr_cap;
    return fcntl(b->wr_fd, F_DUPFD_CLOEXEC, 0);
}

extern "C" const gpu_backend_ops gpu_backend_cuda = {
    "cuda", cuda_create, cuda_destroy, cuda_device_bytes, cuda_embed,
    cuda_attn, cuda_ffn_hot, cuda_finish, cuda_logits, cuda_ffn_hot_active, cuda_map_host, cuda_predict,
    cuda_run_step, cuda_keep_fd, cuda_copied_bytes, cuda_keep_warm_fd, cuda_run_solo, cuda_solo_max,
};
