// The CUDA backend of the GPU worker (interface: backend.h). Weights stay on
// the device in the model's own types (cuda_matvec.cuh: Q8_0/Q4_0 split into
// quants and scales, same bytes), so device_bytes equals the plan's count:
// weights outside the FFN, the fp32 KV cache, and per layer the hot neurons'
// gate and up rows and down columns stored as rows (down^T, plan.h's types).
// Products are our own kernels with fp32 accumulation (cuda_matvec.cu); the
// small per-token operations (norms, RoPE, attention) are plain kernels here.
// For --ffn predicted the predictors (fc1, fc2 in their types) are held too
// and the predict op runs them (cuda_predict.cu). Scratch (activations,
// split-K partials, logits, active lists, the hot-set lookup tables, the
// predictor's buffers) is sized at create. device_bytes counts every
// allocation; the plan reserves predictors and scratch beside its own count
// (plan_predictor_bytes, plan_scratch_bytes, mirrored term by term). One
// stream; the host waits on it only where data leaves the GPU (xn after
// attention, predicted lists, logits).
#include <cuda_runtime.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_matvec.cuh"
#include "cuda_predict.cuh"

extern "C" {
#include "plan.h"
}

// plan_scratch_bytes counts with these.
static_assert(CUDA_DOWN_PART_ROWS == PLAN_CUDA_DOWN_PART_ROWS, "plan.h's copy of CUDA_DOWN_PART_ROWS");
static_assert(sizeof(gpu_entry) <= PLAN_CUDA_ENTRY_BYTES, "plan.h's bound of a device entry");

namespace {

struct cuda_layer {
    float *attn_norm, *ffn_norm;    // dim floats
    cuda_mat wq, wk, wv, wo;        // rows = outputs
    cuda_mat gate, up;              // K hot rows, in hot-slot order
    cuda_mat down_t;                // K x dim: the hot columns of down as rows
    int32_t *map;                   // n_ff: global id -> hot slot or -1 (hot sets only)
    cuda_mat fc1;                   // predictor, R x dim (predicting only)
    cuda_pred_fc2 fc2;              // predictor, n_ff x R in the file's layout
};

// What an allocation is, for device_bytes' parts.
enum mem_kind { MEM_SCRATCH, MEM_PLAN, MEM_PRED };

}  // namespace

struct gpu_backend {
    const pi_model *m;
    gpu_backend_config cfg;
    uint32_t kv_dim;
    cudaStream_t stream;
    uint64_t device_bytes;          // what the plan counts (weights, KV, hot rows)
    uint64_t pred_bytes;            // predictors
    uint64_t scratch_bytes;         // everything else
    void **allocs;                  // every device allocation, for destroy
    size_t n_allocs, cap_allocs;

    cuda_mat tok_embd, output;      // output = tok_embd when tied
    float *output_norm;
    cuda_layer *layers;             // host array of device pointers
    uint32_t *hot_count;            // K of each layer
    float *k_cache, *v_cache;       // [slot][layer][pos][kv_dim]

    // Per-step scratch, sized for max_batch entries.
    gpu_entry *d_entries, *h_entries;   // h_entries is pinned host memory
    float *x, *xb, *q, *k, *v, *att, *tmp, *hot, *coef, *part, *logits;
    uint32_t *d_rows, *h_rows;          // rows that want logits
    int32_t *d_lists, *h_lists;         // active lists copied in (h_lists pinned)
    cudaEvent_t lists_done;             // the last copy out of h_lists finished
    int lists_pending;
    char *host_base;                    // the registered step segment, or NULL
    size_t host_size;
    char *host_dev;                     // its device address when mapped, else NULL

    // The layer and entry count of the xn in xb (set by attn; -1: none).
    int xn_layer;
    uint32_t xn_n;
    // --ffn predicted on a model with a predictor: predict's buffers.
    int predicting;
    float *p_hidden;                    // max_batch x R
    uint32_t *p_mask;                   // max_batch x cuda_pred_words(n_ff)
    int32_t *p_lists, *p_counts;        // max_batch x n_ff, max_batch
    int32_t *h_pcounts;                 // pinned, max_batch
    // The lists the last predict wrote (layer pred_layer, -1: none since the
    // last attn), which ffn_hot_active reads from p_lists when given them.
    int pred_layer;
    uint32_t pred_n;
    const int32_t *pred_host[CUDA_MAX_BATCH];
    int32_t pred_count[CUDA_MAX_BATCH];
};

#define CU(call)                                                                         \
    do {                                                                                 \
        cudaError_t e_ = (call);                                                         \
        if (e_ != cudaSuccess)                                                           \
            return pi_error_set(err, "cuda backend: %s failed: %s", #call,               \
                                cudaGetErrorString(e_));                                 \
    } while (0)

#define LAUNCHED()                                                                       \
    do {                                                                                 \
        cudaError_t e_ = cudaGetLastError();                                             \
        if (e_ != cudaSuccess)                                                           \
            return pi_error_set(err, "cuda backend: kernel launch failed: %s",           \
                                cudaGetErrorString(e_));                                 \
    } while (0)

// ---------------------------------------------------------------- kernels

// y[r] = x[r] / rms(x[r]) * w, one block per row.
__global__ void k_rmsnorm(float *y, const float *x, const float *w, uint32_t dim, float eps)
{
    const float *xr = x + (size_t)blockIdx.x * dim;
    float *yr = y + (size_t)blockIdx.x * dim;
    __shared__ float partial[32];
    float ss = 0.0f;
    for (uint32_t i = threadIdx.x; i < dim; i += blockDim.x)
        ss += xr[i] * xr[i];
    for (int o = 16; o > 0; o >>= 1)
        ss += __shfl_down_sync(0xffffffffu, ss, o);
    if ((threadIdx.x & 31) == 0)
        partial[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x < 32) {
        ss = threadIdx.x < (blockDim.x + 31) / 32 ? partial[threadIdx.x] : 0.0f;
        for (int o = 16; o > 0; o >>= 1)
            ss += __shfl_down_sync(0xffffffffu, ss, o);
        if (threadIdx.x == 0)
            partial[0] = ss;
    }
    __syncthreads();
    float scale = 1.0f / sqrtf(partial[0] / (float)dim + eps);
    for (uint32_t i = threadIdx.x; i < dim; i += blockDim.x)
        yr[i] = w[i] * (xr[i] * scale);
}

// Rotates adjacent pairs of q (all heads) and k (kv heads) of one entry, then
// stores k and v into the cache at the entry's slot and position.
__global__ void k_rope_store(float *q, float *k, const float *v, float *k_cache, float *v_cache,
                             const gpu_entry *e, uint32_t layer, uint32_t n_layers, uint32_t n_ctx,
                             uint32_t dim, uint32_t kv_dim, uint32_t head_dim, float theta)
{
    uint32_t n = blockIdx.x;
    uint32_t pos = e[n].pos;
    for (uint32_t i = 2 * threadIdx.x; i < dim; i += 2 * blockDim.x) {
        uint32_t hd = i % head_dim;
        float freq = 1.0f / powf(theta, (float)hd / (float)head_dim);
        float val = (float)pos * freq;
        float fcr = cosf(val), fci = sinf(val);
        float *qv = q + (size_t)n * dim;
        float q0 = qv[i], q1 = qv[i + 1];
        qv[i] = q0 * fcr - q1 * fci;
        qv[i + 1] = q0 * fci + q1 * fcr;
        if (i < kv_dim) {
            float *kvp = k + (size_t)n * kv_dim;
            float k0 = kvp[i], k1 = kvp[i + 1];
            kvp[i] = k0 * fcr - k1 * fci;
            kvp[i + 1] = k0 * fci + k1 * fcr;
        }
    }
    __syncthreads();
    size_t base = (((size_t)e[n].slot * n_layers + layer) * n_ctx + pos) * kv_dim;
    for (uint32_t i = threadIdx.x; i < kv_dim; i += blockDim.x) {
        k_cache[base + i] = k[(size_t)n * kv_dim + i];
        v_cache[base + i] = v[(size_t)n * kv_dim + i];
    }
}

// One block per (entry, head): scores over positions 0..pos, softmax, then
// the weighted sum of values. Scores live in att (n x n_heads x n_ctx).
__global__ void k_attention(float *out, const float *q, const float *k_cache, const float *v_cache,
                            float *att, const gpu_entry *e, uint32_t layer, uint32_t n_layers,
                            uint32_t n_ctx, uint32_t n_heads, uint32_t n_kv_heads, uint32_t head_dim)
{
    uint32_t n = blockIdx.x / n_heads, h = blockIdx.x % n_heads;
    uint32_t dim = n_heads * head_dim, kv_dim = n_kv_heads * head_dim;
    uint32_t kvh = h / (n_heads / n_kv_heads);
    uint32_t pos = e[n].pos;
    const float *qh = q + (size_t)n * dim + (size_t)h * head_dim;
    float *sc = att + ((size_t)n * n_heads + h) * n_ctx;
    size_t base = ((size_t)e[n].slot * n_layers + layer) * n_ctx * kv_dim + (size_t)kvh * head_dim;
    float scale = 1.0f / sqrtf((float)head_dim);
    for (uint32_t t = threadIdx.x; t <= pos; t += blockDim.x) {
        const float *kt = k_cache + base + (size_t)t * kv_dim;
        float s = 0.0f;
        for (uint32_t i = 0; i < head_dim; i++)
            s += qh[i] * kt[i];
        sc[t] = s * scale;
    }
    __syncthreads();
    __shared__ float red[2];
    if (threadIdx.x == 0) {
        float mx = sc[0];
        for (uint32_t t = 1; t <= pos; t++)
            mx = fmaxf(mx, sc[t]);
        float sum = 0.0f;
        for (uint32_t t = 0; t <= pos; t++) {
            sc[t] = expf(sc[t] - mx);
            sum += sc[t];
        }
        red[0] = sum;
    }
    __syncthreads();
    float inv = 1.0f / red[0];
    float *oh = out + (size_t)n * dim + (size_t)h * head_dim;
    for (uint32_t i = threadIdx.x; i < head_dim; i += blockDim.x) {
        float acc = 0.0f;
        for (uint32_t t = 0; t <= pos; t++)
            acc += sc[t] * v_cache[base + (size_t)t * kv_dim + i];
        oh[i] = acc * inv;
    }
}

__global__ void k_add(float *x, const float *y, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] += y[i];
}

__global__ void k_gather_rows(float *dst, const float *src, const uint32_t *rows, uint32_t dim)
{
    const float *s = src + (size_t)rows[blockIdx.x] * dim;
    for (uint32_t i = threadIdx.x; i < dim; i += blockDim.x)
        dst[(size_t)blockIdx.x * dim + i] = s[i];
}

// ---------------------------------------------------------------- memory

static unsigned blocks_for(size_t n, unsigned threads)
{
    return (unsigned)((n + threads - 1) / threads);
}

// *p = bytes of device memory (NULL when bytes is 0), counted as kind.
static int dev_alloc(gpu_backend *b, void **p, size_t bytes, mem_kind kind, pi_error *err)
{
    *p = NULL;
    if (bytes == 0)
        return 0;
    if (b->n_allocs == b->cap_allocs) {
        size_t cap = b->cap_allocs ? b->cap_allocs * 2 : 64;
        void **a = (void **)realloc(b->allocs, cap * sizeof *a);
        if (!a)
            return pi_error_set(err, "cuda backend: out of host memory");
        b->allocs = a;
        b->cap_allocs = cap;
    }
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

// Copies bytes from host memory (pageable or not) to the device.
static int upload(void *dst, const void *src, size_t bytes, pi_error *err)
{
    if (bytes > 0)
        CU(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
    return 0;
}

static int upload_norm(gpu_backend *b, float **dst, const pi_tensor *t, const char *what, pi_error *err)
{
    if (t->type != PI_TYPE_F32)
        return pi_error_set(err, "cuda backend: %s has type %d; norms must be f32", what, (int)t->type);
    size_t bytes = (size_t)t->cols * sizeof(float);
    if (dev_alloc(b, (void **)dst, bytes, MEM_PLAN, err) != 0)
        return -1;
    return upload(*dst, t->data, bytes, err);
}

// d = rows rows[0..nr) of t (rows NULL: [0, nr)) in t's type, in the layout
// of cuda_mat: nr * t->row_bytes bytes.
static int upload_mat_as(gpu_backend *b, cuda_mat *d, const pi_tensor *t, const int32_t *rows, uint32_t nr,
                         const char *what, mem_kind kind, pi_error *err)
{
    if (!cuda_mat_type_ok(t->type))
        return pi_error_set(err, "cuda backend: %s has type %d, which the CUDA kernels do not support "
                            "(use f32, f16, bf16, q8_0 or q4_0)", what, (int)t->type);
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
    int blocks = t->type == PI_TYPE_Q8_0 || t->type == PI_TYPE_Q4_0;
    if (!blocks && !rows)
        return upload(p, t->data, bytes, err);
    unsigned char *h = (unsigned char *)malloc(bytes);
    if (!h)
        return pi_error_set(err, "cuda backend: out of host memory staging %s (%zu bytes)", what, bytes);
    size_t nb = t->cols / 32, qb = t->type == PI_TYPE_Q8_0 ? 32 : 16, bb = qb + 2, qrow = nb * qb;
    for (uint32_t r = 0; r < nr; r++) {
        const unsigned char *src = (const unsigned char *)pi_tensor_row(t, rows ? (uint64_t)rows[r] : r);
        if (!blocks) {
            memcpy(h + (size_t)r * t->row_bytes, src, t->row_bytes);
            continue;
        }
        for (size_t k = 0; k < nb; k++) {
            memcpy(h + (size_t)r * qrow + k * qb, src + k * bb + 2, qb);
            memcpy(h + (size_t)nr * qrow + ((size_t)r * nb + k) * 2, src + k * bb, 2);
        }
    }
    if (blocks)
        d->scales = (const uint16_t *)(d->data + (size_t)nr * qrow);
    int rc = upload(p, h, bytes, err);
    free(h);
    return rc;
}

static int upload_mat(gpu_backend *b, cuda_mat *d, const pi_tensor *t, const int32_t *rows, uint32_t nr,
                      const char *what, pi_error *err)
{
    return upload_mat_as(b, d, t, rows, nr, what, MEM_PLAN, err);
}

// The predictor of layer l: fc1 as a cuda_mat (the matvec kernels), fc2 as
// the file's bytes (one thread per row reads it, cuda_predict.cu).
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
    if (!cuda_pred_type_ok(f2->type))
        return pi_error_set(err, "cuda backend: layer %u: fc2 has type %d, which the CUDA predictor does not "
                            "support (use f32, f16, bf16, q8_0 or q4_0)", l, (int)f2->type);
    cuda_layer *L = &b->layers[l];
    if (upload_mat_as(b, &L->fc1, f1, NULL, (uint32_t)f1->rows, "fc1", MEM_PRED, err) != 0)
        return -1;
    size_t bytes = (size_t)f2->rows * f2->row_bytes;
    void *p;
    if (dev_alloc(b, &p, bytes, MEM_PRED, err) != 0)
        return -1;
    L->fc2.type = f2->type;
    L->fc2.rows = (uint32_t)f2->rows;
    L->fc2.cols = (uint32_t)f2->cols;
    L->fc2.row_bytes = f2->row_bytes;
    L->fc2.data = (const unsigned char *)p;
    return upload(p, f2->data, bytes, err);
}

// The down columns hot[0..K) (NULL: [0, K)) of layer l as K rows of dim, in
// plan_down_t_type: float types bit-exact, block types dequantized to F32
// (plan_write_down_t's values, gathered for an arbitrary hot list).
static int upload_down_t(gpu_backend *b, cuda_mat *d, uint32_t l, const int32_t *hot, uint32_t K, pi_error *err)
{
    const pi_tensor *dn = &b->m->layers[l].ffn_down;
    pi_type dt = plan_down_t_type(dn->type);
    if (!cuda_down_type_ok(dt) || dn->cols != b->m->n_ff || dn->rows != b->m->dim)
        return pi_error_set(err, "cuda backend: layer %u: ffn_down (type %d) cannot be held as down^T", l,
                            (int)dn->type);
    size_t es = dt == PI_TYPE_F32 ? 4 : 2, dim = dn->rows;
    memset(d, 0, sizeof *d);
    d->type = dt;
    d->rows = K;
    d->cols = (uint32_t)dim;
    size_t bytes = (size_t)K * dim * es;
    void *p;
    if (dev_alloc(b, &p, bytes, MEM_PLAN, err) != 0)
        return -1;
    d->data = (const unsigned char *)p;
    if (K == 0)
        return 0;
    int floats = dn->type == PI_TYPE_F32 || dn->type == PI_TYPE_F16 || dn->type == PI_TYPE_BF16;
    unsigned char *h = (unsigned char *)malloc(bytes);
    float *row = floats ? NULL : (float *)malloc(dn->cols * sizeof(float));
    if (!h || (!floats && !row)) {
        free(h);
        free(row);
        return pi_error_set(err, "cuda backend: out of host memory staging layer %u down^T (%zu bytes)", l, bytes);
    }
    for (size_t i = 0; i < dim; i++) {
        const unsigned char *src = (const unsigned char *)pi_tensor_row(dn, i);
        if (!floats)
            pi_dequantize_row(dn->type, src, row, dn->cols);
        for (uint32_t s = 0; s < K; s++) {
            size_t j = hot ? (size_t)hot[s] : s;
            unsigned char *o = h + ((size_t)s * dim + i) * es;
            if (floats)
                memcpy(o, src + j * es, es);
            else
                memcpy(o, &row[j], sizeof(float));
        }
    }
    int rc = upload(p, h, bytes, err);
    free(h);
    free(row);
    return rc;
}

static void free_all(gpu_backend *b)
{
    for (size_t i = 0; i < b->n_allocs; i++)
        cudaFree(b->allocs[i]);
    free(b->allocs);
    free(b->layers);
    free(b->hot_count);
    cudaFreeHost(b->h_entries);
    cudaFreeHost(b->h_rows);
    cudaFreeHost(b->h_lists);
    cudaFreeHost(b->h_pcounts);
    if (b->lists_done)
        cudaEventDestroy(b->lists_done);
    if (b->host_base)
        cudaHostUnregister(b->host_base);
    if (b->stream)
        cudaStreamDestroy(b->stream);
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
        for (uint32_t s = 0; s < c->hot_count[l]; s++) {
            int32_t j = c->hot[l][s];
            if (j < 0 || (uint32_t)j >= m->n_ff || (s > 0 && j <= c->hot[l][s - 1]))
                return pi_error_set(err, "cuda backend: layer %u hot neuron %u is %d: hot sets must be "
                                    "ascending ids below %u", l, s, j, m->n_ff);
        }
    }
    return 0;
}

static int load_layer(gpu_backend *b, uint32_t l, pi_error *err)
{
    const pi_model *m = b->m;
    const gpu_backend_config *c = &b->cfg;
    const pi_layer *P = &m->layers[l];
    cuda_layer *L = &b->layers[l];
    const int32_t *hot = c->hot ? c->hot[l] : NULL;
    uint32_t K = c->hot ? c->hot_count[l] : c->n_hot;
    b->hot_count[l] = K;
    if (upload_norm(b, &L->attn_norm, &P->attn_norm, "attn_norm", err) ||
        upload_norm(b, &L->ffn_norm, &P->ffn_norm, "ffn_norm", err) ||
        upload_mat(b, &L->wq, &P->wq, NULL, (uint32_t)P->wq.rows, "attn_q", err) ||
        upload_mat(b, &L->wk, &P->wk, NULL, (uint32_t)P->wk.rows, "attn_k", err) ||
        upload_mat(b, &L->wv, &P->wv, NULL, (uint32_t)P->wv.rows, "attn_v", err) ||
        upload_mat(b, &L->wo, &P->wo, NULL, (uint32_t)P->wo.rows, "attn_output", err) ||
        upload_mat(b, &L->gate, &P->ffn_gate, hot, K, "ffn_gate", err) ||
        upload_mat(b, &L->up, &P->ffn_up, hot, K, "ffn_up", err) ||
        upload_down_t(b, &L->down_t, l, hot, K, err))
        return -1;
    if (P->ffn_gate.type != P->ffn_up.type)
        return pi_error_set(err, "cuda backend: ffn_gate and ffn_up types differ (%d, %d)",
                            (int)P->ffn_gate.type, (int)P->ffn_up.type);
    if (b->predicting && upload_predictor(b, l, err) != 0)
        return -1;
    if (!hot)
        return 0;
    int32_t *map = (int32_t *)malloc(m->n_ff * sizeof *map);
    if (!map)
        return pi_error_set(err, "cuda backend: out of host memory");
    for (uint32_t j = 0; j < m->n_ff; j++)
        map[j] = -1;
    for (uint32_t s = 0; s < K; s++)
        map[hot[s]] = (int32_t)s;
    int rc = dev_alloc(b, (void **)&L->map, m->n_ff * sizeof *map, MEM_SCRATCH, err);
    if (rc == 0)
        rc = upload(L->map, map, m->n_ff * sizeof *map, err);
    free(map);
    return rc;
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
    CU(cudaSetDevice(c->device));
    CU(cudaStreamCreateWithFlags(&b->stream, cudaStreamNonBlocking));
    CU(cudaEventCreateWithFlags(&b->lists_done, cudaEventDisableTiming));
    // The predictor only where the worker will call predict.
    b->predicting = c->ffn == PI_FFN_PREDICTED && m->has_predictor;

    if (upload_mat(b, &b->tok_embd, &m->tok_embd, NULL, m->n_vocab, "token_embd", err) ||
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
    size_t kv = (size_t)c->max_seqs * m->n_layers * c->n_ctx * b->kv_dim * sizeof(float);
    if (dev_alloc(b, (void **)&b->k_cache, kv, MEM_PLAN, err) ||
        dev_alloc(b, (void **)&b->v_cache, kv, MEM_PLAN, err))
        return -1;
    size_t nb = c->max_batch;
    if (scratch_floats(b, &b->x, nb * m->dim, err) || scratch_floats(b, &b->xb, nb * m->dim, err) ||
        scratch_floats(b, &b->q, nb * m->dim, err) || scratch_floats(b, &b->k, nb * b->kv_dim, err) ||
        scratch_floats(b, &b->v, nb * b->kv_dim, err) ||
        scratch_floats(b, &b->att, nb * m->n_heads * c->n_ctx, err) ||
        scratch_floats(b, &b->tmp, nb * m->dim, err) || scratch_floats(b, &b->hot, nb * m->dim, err) ||
        scratch_floats(b, &b->coef, nb * c->n_hot, err) ||
        scratch_floats(b, &b->part, (size_t)CUDA_DOWN_PART_ROWS * m->dim, err) ||
        scratch_floats(b, &b->logits, nb * m->n_vocab, err) ||
        dev_alloc(b, (void **)&b->d_entries, nb * sizeof(gpu_entry), MEM_SCRATCH, err) ||
        dev_alloc(b, (void **)&b->d_rows, nb * sizeof(uint32_t), MEM_SCRATCH, err) ||
        dev_alloc(b, (void **)&b->d_lists, nb * m->n_ff * sizeof(int32_t), MEM_SCRATCH, err))
        return -1;
    CU(cudaMallocHost((void **)&b->h_entries, nb * sizeof(gpu_entry)));
    CU(cudaMallocHost((void **)&b->h_rows, nb * sizeof(uint32_t)));
    CU(cudaMallocHost((void **)&b->h_lists, nb * m->n_ff * sizeof(int32_t)));
    if (!b->predicting)
        return 0;
    uint32_t R = 0;
    for (uint32_t l = 0; l < m->n_layers; l++)
        R = b->layers[l].fc1.rows > R ? b->layers[l].fc1.rows : R;
    if (scratch_floats(b, &b->p_hidden, nb * R, err) ||
        dev_alloc(b, (void **)&b->p_mask, nb * cuda_pred_words(m->n_ff) * sizeof(uint32_t), MEM_SCRATCH, err) ||
        dev_alloc(b, (void **)&b->p_lists, nb * m->n_ff * sizeof(int32_t), MEM_SCRATCH, err) ||
        dev_alloc(b, (void **)&b->p_counts, nb * sizeof(int32_t), MEM_SCRATCH, err))
        return -1;
    CU(cudaMallocHost((void **)&b->h_pcounts, nb * sizeof(int32_t)));
    return 0;
}

// ---------------------------------------------------------------- ops

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
    gpu_backend *b = (gpu_backend *)calloc(1, sizeof *b);
    if (!b) {
        pi_error_set(err, "cuda backend: out of memory");
        return NULL;
    }
    b->m = m;
    b->cfg = *cfg;
    b->kv_dim = m->n_kv_heads * m->head_dim;
    b->xn_layer = -1;
    b->pred_layer = -1;
    if (create_inner(b, err) != 0) {
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

static int cuda_embed(gpu_backend *b, const gpu_entry *e, uint32_t n, pi_error *err)
{
    if (check_entries(b, e, n, err) != 0)
        return -1;
    b->xn_layer = -1;
    b->pred_layer = -1;
    // h_entries is free: every step's attn and logits end with a synchronisation.
    memcpy(b->h_entries, e, n * sizeof *e);
    CU(cudaMemcpyAsync(b->d_entries, b->h_entries, n * sizeof *e, cudaMemcpyHostToDevice, b->stream));
    CU(cuda_embed_rows(b->stream, b->x, &b->tok_embd, b->d_entries, n));
    return 0;
}

static int cuda_attn(gpu_backend *b, uint32_t l, const gpu_entry *e, uint32_t n, float *xn_out, pi_error *err)
{
    (void)e; // uploaded by embed
    if (check_step(b, l, n, err) != 0)
        return -1;
    b->xn_layer = -1;   // xb is rewritten below
    b->pred_layer = -1;
    const pi_model *m = b->m;
    const cuda_layer *L = &b->layers[l];
    uint32_t dim = m->dim;
    k_rmsnorm<<<n, 256, 0, b->stream>>>(b->xb, b->x, L->attn_norm, dim, m->norm_eps);
    LAUNCHED();
    CU(cuda_matvec(b->stream, b->q, dim, &L->wq, b->xb, dim, n));
    CU(cuda_matvec(b->stream, b->k, b->kv_dim, &L->wk, b->xb, dim, n));
    CU(cuda_matvec(b->stream, b->v, b->kv_dim, &L->wv, b->xb, dim, n));
    k_rope_store<<<n, 128, 0, b->stream>>>(b->q, b->k, b->v, b->k_cache, b->v_cache, b->d_entries, l,
                                           m->n_layers, b->cfg.n_ctx, dim, b->kv_dim, m->head_dim,
                                           m->rope_theta);
    LAUNCHED();
    k_attention<<<n * m->n_heads, 64, 0, b->stream>>>(b->tmp, b->q, b->k_cache, b->v_cache, b->att,
                                                      b->d_entries, l, m->n_layers, b->cfg.n_ctx,
                                                      m->n_heads, m->n_kv_heads, m->head_dim);
    LAUNCHED();
    CU(cuda_matvec(b->stream, b->q, dim, &L->wo, b->tmp, dim, n));
    k_add<<<blocks_for((size_t)n * dim, 256), 256, 0, b->stream>>>(b->x, b->q, (size_t)n * dim);
    LAUNCHED();
    k_rmsnorm<<<n, 256, 0, b->stream>>>(b->xb, b->x, L->ffn_norm, dim, m->norm_eps);
    LAUNCHED();
    // Straight into the shared segment (registered by map_host, so the copy
    // engine writes it directly); the CPU workers read it once we publish.
    CU(cudaMemcpyAsync(xn_out, b->xb, (size_t)n * dim * sizeof(float), cudaMemcpyDeviceToHost, b->stream));
    CU(cudaStreamSynchronize(b->stream));
    b->xn_layer = (int)l;
    b->xn_n = n;
    return 0;
}

static int cuda_ffn_hot(gpu_backend *b, uint32_t l, uint32_t n, pi_error *err)
{
    if (check_step(b, l, n, err) != 0)
        return -1;
    const cuda_layer *L = &b->layers[l];
    // exact/predicted on a ReLU-family model: up rows whose gate is <= 0 in
    // every entry are skipped, and zero activations skip their down rows.
    int skip = b->cfg.ffn != PI_FFN_DENSE;
    CU(cuda_ffn_gate_up(b->stream, b->coef, &L->gate, &L->up, b->xb, n, (int)b->m->act, skip));
    CU(cuda_ffn_down(b->stream, b->hot, b->part, &L->down_t, b->coef, n));
    return 0;
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
    // The lists predict just wrote for this layer are on the device already;
    // lists inside the mapped step segment are read in place by the kernel;
    // others are packed into pinned memory and copied in one transfer.
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
    if (from_pred) {
        for (uint32_t i = 0; i < n; i++)
            lists.list[i] = b->p_lists + (size_t)i * m->n_ff;
    } else if (in_place) {
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
    CU(cuda_ffn_down(b->stream, b->hot, b->part, &L->down_t, b->coef, n));
    return 0;
}

// 1 when [p, p + bytes) lies inside the mapped step segment.
static int in_mapped(const gpu_backend *b, const void *p, size_t bytes)
{
    const char *c = (const char *)p;
    return b->host_dev && c >= b->host_base && bytes <= b->host_size &&
           (size_t)(c - b->host_base) <= b->host_size - bytes;
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
    const cuda_layer *L = &b->layers[l];
    size_t list_bytes = (size_t)m->n_ff * sizeof(int32_t);
    // Zero-copy when every destination is in the mapped segment: the
    // compaction kernel writes the lists and counts there itself.
    cuda_pred_out out;
    memset(&out, 0, sizeof out);
    int mapped = in_mapped(b, counts, n * sizeof *counts);
    for (uint32_t i = 0; i < n && mapped; i++)
        mapped = in_mapped(b, active[i], list_bytes);
    if (mapped) {
        out.counts = (int32_t *)(b->host_dev + ((char *)counts - b->host_base));
        for (uint32_t i = 0; i < n; i++)
            out.list[i] = (int32_t *)(b->host_dev + ((char *)active[i] - b->host_base));
    }
    CU(cuda_matvec(b->stream, b->p_hidden, L->fc1.rows, &L->fc1, b->xb, m->dim, n));
    CU(cuda_pred_mask(b->stream, b->p_mask, &L->fc2, b->p_hidden, n, m->sparse_threshold));
    CU(cuda_pred_compact(b->stream, b->p_lists, b->p_counts, b->p_mask, m->n_ff, n, &out));
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
        k_add<<<grid, 256, 0, b->stream>>>(b->tmp, b->q, len);
        LAUNCHED();
    }
    k_add<<<grid, 256, 0, b->stream>>>(b->x, b->tmp, len);
    LAUNCHED();
    return 0;
}

static int cuda_logits(gpu_backend *b, const gpu_entry *e, uint32_t n, float *out, pi_error *err)
{
    if (check_step(b, 0, n, err) != 0)
        return -1;
    b->xn_layer = -1;   // xb is reused below
    b->pred_layer = -1;
    const pi_model *m = b->m;
    uint32_t rows = 0;
    for (uint32_t i = 0; i < n; i++)
        if (e[i].want_logits)
            b->h_rows[rows++] = i;
    if (rows == 0)
        return 0;
    CU(cudaMemcpyAsync(b->d_rows, b->h_rows, rows * sizeof(uint32_t), cudaMemcpyHostToDevice, b->stream));
    k_gather_rows<<<rows, 128, 0, b->stream>>>(b->tmp, b->x, b->d_rows, m->dim);
    LAUNCHED();
    k_rmsnorm<<<rows, 256, 0, b->stream>>>(b->xb, b->tmp, b->output_norm, m->dim, m->norm_eps);
    LAUNCHED();
    CU(cuda_matvec(b->stream, b->logits, m->n_vocab, &b->output, b->xb, m->dim, rows));
    CU(cudaMemcpyAsync(out, b->logits, (size_t)rows * m->n_vocab * sizeof(float), cudaMemcpyDeviceToHost,
                       b->stream));
    CU(cudaStreamSynchronize(b->stream));
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

extern "C" const gpu_backend_ops gpu_backend_cuda = {
    "cuda", cuda_create, cuda_destroy, cuda_device_bytes, cuda_embed,
    cuda_attn, cuda_ffn_hot, cuda_finish, cuda_logits, cuda_ffn_hot_active, cuda_map_host, cuda_predict,
};
