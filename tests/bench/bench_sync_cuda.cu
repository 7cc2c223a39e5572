// The GPU side of bench_sync: the stream itself drives the per-layer
// handshake with the CPU worker processes, with no host thread in its path:
// copy xn to the host-registered segment, write the layer counter
// (cuStreamWriteValue32), wait for every worker's done counter
// (cuStreamWaitValue32 GEQ), copy the partials back. The driver entry points
// are fetched through the runtime, so nothing links libcuda directly.
#include <cuda.h>
#include <cuda_runtime.h>

#include <stdio.h>
#include <time.h>

extern "C" {
#include "bench_sync.h"
}

// Zero-copy variant: the kernel writes xn straight into the mapped segment
// and another reads every worker's partial from it, so no copy-engine
// transfer sits between the counters.
__global__ void k_store(float *dst, const float *src, uint32_t n)
{
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        dst[i] = src[i];
}

__global__ void k_sum_partials(float *acc, const char *base, const size_t *off, uint32_t n_workers, uint32_t n)
{
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float s = acc[i];
        for (uint32_t w = 0; w < n_workers; w++)
            s += ((const float *)(base + off[w]))[i];
        acc[i] = s;
    }
}

typedef CUresult (*write_fn)(CUstream, CUdeviceptr, cuuint32_t, unsigned int);
typedef CUresult (*wait_fn)(CUstream, CUdeviceptr, cuuint32_t, unsigned int);

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#define CK(call)                                                                          \
    do {                                                                                  \
        cudaError_t e_ = (call);                                                          \
        if (e_ != cudaSuccess) {                                                          \
            snprintf(err, err_cap, "%s: %s", #call, cudaGetErrorString(e_));              \
            return -1;                                                                    \
        }                                                                                 \
    } while (0)

extern "C" int bench_gpu_run(const bench_gpu_args *a, int zero_copy, double *us_per_layer, char *err, size_t err_cap)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        snprintf(err, err_cap, "no CUDA device");
        return 1;
    }
    write_fn wr = NULL;
    wait_fn wt = NULL;
    cudaDriverEntryPointQueryResult q;
    CK(cudaGetDriverEntryPointByVersion("cuStreamWriteValue32", (void **)&wr, 12000, cudaEnableDefault, &q));
    CK(cudaGetDriverEntryPointByVersion("cuStreamWaitValue32", (void **)&wt, 12000, cudaEnableDefault, &q));
    if (!wr || !wt) {
        snprintf(err, err_cap, "driver has no stream memory operations");
        return -1;
    }
    CK(cudaHostRegister(a->base, a->size, cudaHostRegisterMapped | cudaHostRegisterPortable));
    char *dbase = NULL;
    CK(cudaHostGetDevicePointer((void **)&dbase, a->base, 0));
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    float *dx = NULL, *dp = NULL;
    size_t xbytes = (size_t)a->dim * sizeof(float);
    CK(cudaMalloc((void **)&dx, xbytes));
    CK(cudaMalloc((void **)&dp, xbytes * (a->n_workers ? a->n_workers : 1)));
    CK(cudaMemset(dx, 0, xbytes));
    size_t *doff = NULL;
    CK(cudaMalloc((void **)&doff, sizeof a->off_partial));
    CK(cudaMemcpy(doff, a->off_partial, sizeof a->off_partial, cudaMemcpyHostToDevice));

    uint32_t tick = a->first_tick;
    double t0 = 0;
    for (uint32_t step = 0; step < a->warmup + a->steps; step++) {
        if (step == a->warmup) {
            CK(cudaStreamSynchronize(s));
            t0 = now_s();
        }
        for (uint32_t l = 0; l < a->layers; l++) {
            tick++;
            if (zero_copy) {
                k_store<<<8, 256, 0, s>>>((float *)(dbase + a->off_x), dx, a->dim);
                CK(cudaGetLastError());
            } else {
                CK(cudaMemcpyAsync((char *)a->base + a->off_x, dx, xbytes, cudaMemcpyDeviceToHost, s));
            }
            if (wr(s, (CUdeviceptr)(dbase + a->off_layer), tick, CU_STREAM_WRITE_VALUE_DEFAULT) != CUDA_SUCCESS) {
                snprintf(err, err_cap, "cuStreamWriteValue32 failed");
                return -1;
            }
            for (uint32_t w = 0; w < a->n_workers; w++) {
                if (wt(s, (CUdeviceptr)(dbase + a->off_done[w]), tick, CU_STREAM_WAIT_VALUE_GEQ) != CUDA_SUCCESS) {
                    snprintf(err, err_cap, "cuStreamWaitValue32 failed");
                    return -1;
                }
                if (!zero_copy)
                    CK(cudaMemcpyAsync(dp + (size_t)w * a->dim, (char *)a->base + a->off_partial[w], xbytes,
                                       cudaMemcpyHostToDevice, s));
            }
            if (zero_copy) {
                k_sum_partials<<<8, 256, 0, s>>>(dx, dbase, doff, a->n_workers, a->dim);
                CK(cudaGetLastError());
            }
        }
    }
    CK(cudaStreamSynchronize(s));
    double t = now_s() - t0;
    *us_per_layer = t * 1e6 / ((double)a->steps * a->layers);
    cudaFree(doff);
    cudaFree(dx);
    cudaFree(dp);
    cudaStreamDestroy(s);
    cudaHostUnregister(a->base);
    return 0;
}
