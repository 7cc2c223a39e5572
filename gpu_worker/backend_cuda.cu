// The CUDA backend of the GPU worker (interface: backend.h). Weights are
// dequantized to fp32 at load and multiplied with cuBLAS SGEMM, so results
// match the host backend to fp32 rounding; the small per-token operations
// (norms, RoPE, attention, activation) are plain kernels. One stream; the
// host waits on it only where data leaves the GPU (xn after attention,
// logits). Fast paths (f16 weights, stream waits on the shm counters,
// graphs) come with the performance work and must keep this file's results.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "backend.h"
}

namespace {

struct cuda_layer {
    float *attn_norm, *ffn_norm;    // dim
    float *wq, *wk, *wv, *wo;       // rows = outputs, row-major
    float *gate, *up;               // n_hot x dim
    float *down_t;                  // n_hot x dim (hot columns of down, transposed)
};

}  // namespace

struct gpu_backend {
    const pi_model *m;
    gpu_backend_config cfg;
    uint32_t kv_dim;
    cudaStream_t stream;
    cublasHandle_t blas;
    uint64_t device_bytes;

    float *tok_embd, *output_norm, *output;
    cuda_layer *layers;             // host array of device pointers
    float *k_cache, *v_cache;       // [slot][layer][pos][kv_dim]

    // Per-step scratch, sized for max_batch entries.
    gpu_entry *d_entries, *h_entries;   // h_entries is pinned host memory
    float *x, *xb, *q, *k, *v, *att, *tmp, *hot, *g, *u, *logits;
    void *host_base;                    // the registered step segment, or NULL
    uint32_t *d_rows, *h_rows;          // rows that want logits
};

#define CU(call)                                                                         \
    do {                                                                                 \
        cudaError_t e_ = (call);                                                         \
        if (e_ != cudaSuccess)                                                           \
            return pi_error_set(err, "cuda backend: %s failed: %s", #call,               \
                                cudaGetErrorString(e_));                                 \
    } while (0)

#define BLAS(call)                                                                       \
    do {                                                                                 \
        cublasStatus_t s_ = (call);                                                      \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                 \
            return pi_error_set(err, "cuda backend: %s failed: cuBLAS status %d", #call, \
                                (int)s_);                                                \
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

__global__ void k_embed(float *x, const float *table, const gpu_entry *e, uint32_t dim)
{
    const float *row = table + (size_t)e[blockIdx.x].token * dim;
    for (uint32_t i = threadIdx.x; i < dim; i += blockDim.x)
        x[(size_t)blockIdx.x * dim + i] = row[i];
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

// g = act(g) * u (or relu(g) * relu(u)), elementwise.
__global__ void k_act(float *g, const float *u, size_t n, int act)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    float a = g[i], b = u[i];
    if (act == PI_ACT_SILU)
        a = a / (1.0f + expf(-a));
    else
        a = a > 0.0f ? a : 0.0f;
    if (act == PI_ACT_RELU_BOTH)
        b = b > 0.0f ? b : 0.0f;
    g[i] = a * b;
}

__global__ void k_gather_rows(float *dst, const float *src, const uint32_t *rows, uint32_t dim)
{
    const float *s = src + (size_t)rows[blockIdx.x] * dim;
    for (uint32_t i = threadIdx.x; i < dim; i += blockDim.x)
        dst[(size_t)blockIdx.x * dim + i] = s[i];
}

// ---------------------------------------------------------------- helpers

static unsigned blocks_for(size_t n, unsigned threads)
{
    return (unsigned)((n + threads - 1) / threads);
}

static int dev_alloc(gpu_backend *b, float **p, size_t n_floats, pi_error *err)
{
    size_t bytes = n_floats * sizeof(float);
    if (bytes == 0)
        bytes = sizeof(float);
    cudaError_t e = cudaMalloc((void **)p, bytes);
    if (e != cudaSuccess)
        return pi_error_set(err, "cuda backend: cannot allocate %zu bytes of device memory: %s "
                            "(lower --vram-budget or use a smaller model)", bytes, cudaGetErrorString(e));
    b->device_bytes += bytes;
    return 0;
}

// Uploads rows [r0, r0+nr) of t as fp32 (dequantized on the host).
static int upload_rows(gpu_backend *b, float **dst, const pi_tensor *t, uint64_t r0, uint64_t nr,
                       pi_error *err)
{
    size_t n = (size_t)nr * t->cols;
    if (dev_alloc(b, dst, n, err) != 0)
        return -1;
    if (n == 0)
        return 0;
    float *h = (float *)malloc(n * sizeof(float));
    if (!h)
        return pi_error_set(err, "cuda backend: out of host memory staging %zu floats", n);
    for (uint64_t r = 0; r < nr; r++)
        pi_dequantize_row(t->type, pi_tensor_row(t, r0 + r), h + r * t->cols, t->cols);
    cudaError_t e = cudaMemcpy(*dst, h, n * sizeof(float), cudaMemcpyHostToDevice);
    free(h);
    CU(e);
    return 0;
}

// The hot columns [0, n_hot) of down (dim x n_ff), stored transposed: n_hot x dim.
static int upload_down_t(gpu_backend *b, float **dst, const pi_tensor *down, uint32_t n_hot,
                         pi_error *err)
{
    size_t dim = down->rows, n = (size_t)n_hot * dim;
    if (dev_alloc(b, dst, n, err) != 0)
        return -1;
    if (n == 0)
        return 0;
    float *row = (float *)malloc(down->cols * sizeof(float));
    float *h = (float *)malloc(n * sizeof(float));
    if (!row || !h) {
        free(row);
        free(h);
        return pi_error_set(err, "cuda backend: out of host memory staging down");
    }
    for (size_t i = 0; i < dim; i++) {
        pi_dequantize_row(down->type, pi_tensor_row(down, i), row, down->cols);
        for (uint32_t j = 0; j < n_hot; j++)
            h[(size_t)j * dim + i] = row[j];
    }
    cudaError_t e = cudaMemcpy(*dst, h, n * sizeof(float), cudaMemcpyHostToDevice);
    free(row);
    free(h);
    CU(e);
    return 0;
}

// Y (n x out, row-major) = X (n x in, row-major) * W^T, W row-major out x in.
static int gemm_xwt(gpu_backend *b, float *y, const float *x, const float *w, uint32_t n,
                    uint32_t out, uint32_t in, pi_error *err)
{
    const float one = 1.0f, zero = 0.0f;
    BLAS(cublasSgemm(b->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)out, (int)n, (int)in, &one, w, (int)in,
                     x, (int)in, &zero, y, (int)out));
    return 0;
}

static void free_all(gpu_backend *b)
{
    if (b->layers) {
        for (uint32_t l = 0; l < b->m->n_layers; l++) {
            cuda_layer *L = &b->layers[l];
            float *ps[] = {L->attn_norm, L->ffn_norm, L->wq, L->wk, L->wv, L->wo, L->gate, L->up, L->down_t};
            for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
                cudaFree(ps[i]);
        }
        free(b->layers);
    }
    float *ps[] = {b->tok_embd, b->output_norm, b->output, b->k_cache, b->v_cache, b->x, b->xb, b->q,
                   b->k, b->v, b->att, b->tmp, b->hot, b->g, b->u, b->logits};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        cudaFree(ps[i]);
    cudaFree(b->d_entries);
    cudaFree(b->d_rows);
    cudaFreeHost(b->h_entries);
    cudaFreeHost(b->h_rows);
    if (b->host_base)
        cudaHostUnregister(b->host_base);
    if (b->blas)
        cublasDestroy(b->blas);
    if (b->stream)
        cudaStreamDestroy(b->stream);
}

static int create_inner(gpu_backend *b, pi_error *err)
{
    const pi_model *m = b->m;
    const gpu_backend_config *c = &b->cfg;
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0)
        return pi_error_set(err, "cuda backend: no usable CUDA device (use --gpu-backend host)");
    if (c->device < 0 || c->device >= n_dev)
        return pi_error_set(err, "cuda backend: device %d does not exist (%d present)", c->device, n_dev);
    CU(cudaSetDevice(c->device));
    CU(cudaStreamCreateWithFlags(&b->stream, cudaStreamNonBlocking));
    BLAS(cublasCreate(&b->blas));
    BLAS(cublasSetStream(b->blas, b->stream));
    // Plain fp32 arithmetic: no TF32, so results track the host backend.
    BLAS(cublasSetMathMode(b->blas, CUBLAS_PEDANTIC_MATH));

    if (upload_rows(b, &b->tok_embd, &m->tok_embd, 0, m->tok_embd.rows, err) ||
        upload_rows(b, &b->output_norm, &m->output_norm, 0, 1, err))
        return -1;
    if (m->tied_output) {
        b->output = NULL;
    } else if (upload_rows(b, &b->output, &m->output, 0, m->output.rows, err)) {
        return -1;
    }
    b->layers = (cuda_layer *)calloc(m->n_layers, sizeof(cuda_layer));
    if (!b->layers)
        return pi_error_set(err, "cuda backend: out of host memory");
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const pi_layer *P = &m->layers[l];
        cuda_layer *L = &b->layers[l];
        if (upload_rows(b, &L->attn_norm, &P->attn_norm, 0, 1, err) ||
            upload_rows(b, &L->ffn_norm, &P->ffn_norm, 0, 1, err) ||
            upload_rows(b, &L->wq, &P->wq, 0, P->wq.rows, err) ||
            upload_rows(b, &L->wk, &P->wk, 0, P->wk.rows, err) ||
            upload_rows(b, &L->wv, &P->wv, 0, P->wv.rows, err) ||
            upload_rows(b, &L->wo, &P->wo, 0, P->wo.rows, err) ||
            upload_rows(b, &L->gate, &P->ffn_gate, 0, c->n_hot, err) ||
            upload_rows(b, &L->up, &P->ffn_up, 0, c->n_hot, err) ||
            upload_down_t(b, &L->down_t, &P->ffn_down, c->n_hot, err))
            return pi_error_wrap(err, "layer %u", l);
    }
    size_t kv = (size_t)c->max_seqs * m->n_layers * c->n_ctx * b->kv_dim;
    size_t nb = c->max_batch;
    if (dev_alloc(b, &b->k_cache, kv, err) || dev_alloc(b, &b->v_cache, kv, err) ||
        dev_alloc(b, &b->x, nb * m->dim, err) || dev_alloc(b, &b->xb, nb * m->dim, err) ||
        dev_alloc(b, &b->q, nb * m->dim, err) || dev_alloc(b, &b->k, nb * b->kv_dim, err) ||
        dev_alloc(b, &b->v, nb * b->kv_dim, err) ||
        dev_alloc(b, &b->att, nb * m->n_heads * c->n_ctx, err) ||
        dev_alloc(b, &b->tmp, nb * m->dim, err) || dev_alloc(b, &b->hot, nb * m->dim, err) ||
        dev_alloc(b, &b->g, nb * (c->n_hot ? c->n_hot : 1), err) ||
        dev_alloc(b, &b->u, nb * (c->n_hot ? c->n_hot : 1), err) ||
        dev_alloc(b, &b->logits, nb * m->n_vocab, err))
        return -1;
    CU(cudaMalloc((void **)&b->d_entries, nb * sizeof(gpu_entry)));
    CU(cudaMalloc((void **)&b->d_rows, nb * sizeof(uint32_t)));
    b->device_bytes += nb * (sizeof(gpu_entry) + sizeof(uint32_t));
    CU(cudaMallocHost((void **)&b->h_entries, nb * sizeof(gpu_entry)));
    CU(cudaMallocHost((void **)&b->h_rows, nb * sizeof(uint32_t)));
    return 0;
}

// ---------------------------------------------------------------- ops

static gpu_backend *cuda_create(const pi_model *m, const gpu_backend_config *cfg, pi_error *err)
{
    if (cfg->n_hot > m->n_ff || cfg->max_batch == 0 || cfg->max_seqs == 0 || cfg->n_ctx == 0) {
        pi_error_set(err, "cuda backend: bad configuration (n_hot %u of %u, max_batch %u, max_seqs %u, n_ctx %u)",
                     cfg->n_hot, m->n_ff, cfg->max_batch, cfg->max_seqs, cfg->n_ctx);
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
    if (create_inner(b, err) != 0) {
        free_all(b);
        free(b);
        return NULL;
    }
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
    return b->device_bytes;
}

static int check_entries(const gpu_backend *b, const gpu_entry *e, uint32_t n, pi_error *err)
{
    if (n == 0 || n > b->cfg.max_batch)
        return pi_error_set(err, "cuda backend: %u entries in a step (1..%u allowed)", n, b->cfg.max_batch);
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
    memcpy(b->h_entries, e, n * sizeof *e);
    CU(cudaMemcpyAsync(b->d_entries, b->h_entries, n * sizeof *e, cudaMemcpyHostToDevice, b->stream));
    k_embed<<<n, 128, 0, b->stream>>>(b->x, b->tok_embd, b->d_entries, b->m->dim);
    LAUNCHED();
    return 0;
}

static int cuda_attn(gpu_backend *b, uint32_t l, const gpu_entry *e, uint32_t n, float *xn_out, pi_error *err)
{
    (void)e; // uploaded by embed
    const pi_model *m = b->m;
    const cuda_layer *L = &b->layers[l];
    uint32_t dim = m->dim;
    k_rmsnorm<<<n, 256, 0, b->stream>>>(b->xb, b->x, L->attn_norm, dim, m->norm_eps);
    LAUNCHED();
    if (gemm_xwt(b, b->q, b->xb, L->wq, n, dim, dim, err) ||
        gemm_xwt(b, b->k, b->xb, L->wk, n, b->kv_dim, dim, err) ||
        gemm_xwt(b, b->v, b->xb, L->wv, n, b->kv_dim, dim, err))
        return -1;
    k_rope_store<<<n, 128, 0, b->stream>>>(b->q, b->k, b->v, b->k_cache, b->v_cache, b->d_entries, l,
                                           m->n_layers, b->cfg.n_ctx, dim, b->kv_dim, m->head_dim,
                                           m->rope_theta);
    LAUNCHED();
    k_attention<<<n * m->n_heads, 64, 0, b->stream>>>(b->tmp, b->q, b->k_cache, b->v_cache, b->att,
                                                      b->d_entries, l, m->n_layers, b->cfg.n_ctx,
                                                      m->n_heads, m->n_kv_heads, m->head_dim);
    LAUNCHED();
    if (gemm_xwt(b, b->q, b->tmp, L->wo, n, dim, dim, err))
        return -1;
    k_add<<<blocks_for((size_t)n * dim, 256), 256, 0, b->stream>>>(b->x, b->q, (size_t)n * dim);
    LAUNCHED();
    k_rmsnorm<<<n, 256, 0, b->stream>>>(b->xb, b->x, L->ffn_norm, dim, m->norm_eps);
    LAUNCHED();
    // Straight into the shared segment (registered by map_host, so the copy
    // engine writes it directly); the CPU workers read it once we publish.
    CU(cudaMemcpyAsync(xn_out, b->xb, (size_t)n * dim * sizeof(float), cudaMemcpyDeviceToHost, b->stream));
    CU(cudaStreamSynchronize(b->stream));
    return 0;
}

static int cuda_ffn_hot(gpu_backend *b, uint32_t l, uint32_t n, pi_error *err)
{
    const pi_model *m = b->m;
    const cuda_layer *L = &b->layers[l];
    uint32_t K = b->cfg.n_hot;
    if (K == 0) {
        CU(cudaMemsetAsync(b->hot, 0, (size_t)n * m->dim * sizeof(float), b->stream));
        return 0;
    }
    if (gemm_xwt(b, b->g, b->xb, L->gate, n, K, m->dim, err) ||
        gemm_xwt(b, b->u, b->xb, L->up, n, K, m->dim, err))
        return -1;
    k_act<<<blocks_for((size_t)n * K, 256), 256, 0, b->stream>>>(b->g, b->u, (size_t)n * K, (int)m->act);
    LAUNCHED();
    // hot (n x dim) = g (n x K) * down_t (K x dim)
    const float one = 1.0f, zero = 0.0f;
    BLAS(cublasSgemm(b->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)m->dim, (int)n, (int)K, &one, L->down_t,
                     (int)m->dim, b->g, (int)K, &zero, b->hot, (int)m->dim));
    return 0;
}

static int cuda_finish(gpu_backend *b, uint32_t l, uint32_t n, const float *const *partials,
                       uint32_t n_partials, pi_error *err)
{
    (void)l;
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
    const float *w = m->tied_output ? b->tok_embd : b->output;
    if (gemm_xwt(b, b->logits, b->xb, w, rows, m->n_vocab, m->dim, err))
        return -1;
    CU(cudaMemcpyAsync(out, b->logits, (size_t)rows * m->n_vocab * sizeof(float), cudaMemcpyDeviceToHost,
                       b->stream));
    CU(cudaStreamSynchronize(b->stream));
    return 0;
}

static int cuda_map_host(gpu_backend *b, void *base, size_t size, pi_error *err)
{
    if (b->host_base)
        return pi_error_set(err, "cuda backend: a segment is already registered");
    CU(cudaHostRegister(base, size, cudaHostRegisterPortable));
    b->host_base = base;
    return 0;
}

extern "C" const gpu_backend_ops gpu_backend_cuda = {
    "cuda", cuda_create, cuda_destroy, cuda_device_bytes, cuda_embed,
    cuda_attn, cuda_ffn_hot, cuda_finish, cuda_logits, NULL, cuda_map_host,
};
