// Can the GPU read cold rows from pinned host memory over PCIe while the CPU reads its own rows from RAM?
// (The warm tier, sparse/plan.h warm_share.) GB/s of 10 KiB rows (an F16 row of dim 5120) read at random:
// the GPU alone (a warp per row, rows per launch and grid varied), the CPU alone (N threads, each row summed
// with a 2 KiB prefetch ahead, as the cold kernels read), then both at once.
// Usage: pi-bench-pcie-rows [GPU_GIB [CPU_GIB [THREADS]]]   (defaults 4, 8, nproc - 1). GPU machine only.
#include <cuda_runtime.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <atomic>

#include "../cuda_check.cuh"

namespace {

constexpr size_t ROW = 10240;

double now_s()
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

// Warp per listed row, 4 x 16 bytes a lane in flight; the sums only keep the loads alive.
__global__ void k_rows(const uint4 *base, const uint32_t *ids, int n, unsigned long long *sink)
{
    const int warp = (int)((blockIdx.x * blockDim.x + threadIdx.x) / 32), lane = (int)(threadIdx.x & 31u);
    const int nw = (int)(gridDim.x * blockDim.x / 32), per_row = (int)(ROW / 16);
    uint32_t acc = 0;
    for (int r = warp; r < n; r += nw) {
        const uint4 *row = base + (size_t)ids[r] * per_row;
        for (int c = lane; c < per_row; c += 128) {
            uint4 v[4];
#pragma unroll
            for (int u = 0; u < 4; u++)
                v[u] = c + u * 32 < per_row ? row[c + u * 32] : make_uint4(0, 0, 0, 0);
#pragma unroll
            for (int u = 0; u < 4; u++)
                acc ^= v[u].x + v[u].y + v[u].z + v[u].w;
        }
    }
    if (acc == 0x12345678u)
        atomicAdd(sink, 1ull);
}

struct cpu_arg {
    const uint8_t *buf;
    size_t nrows;
    double secs;
    std::atomic<int> *go;
    double bytes_per_s;
    uint64_t seed, sink;
};

void *cpu_reader(void *p)
{
    cpu_arg *a = (cpu_arg *)p;
    while (!a->go->load())
        ;
    uint64_t s = a->seed, acc = 0;
    size_t rows = 0, next = (s >> 17) % a->nrows;
    const double t0 = now_s();
    while (now_s() - t0 < a->secs) {
        for (int k = 0; k < 64; k++, rows++) {
            const size_t cur = next;
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            next = (s >> 17) % a->nrows;
            const uint64_t *r = (const uint64_t *)(a->buf + cur * ROW);
            const uint8_t *nr = a->buf + next * ROW;
            uint64_t x[8] = {0};
            for (size_t i = 0; i < ROW / 8; i += 8) {
                const size_t ahead = i * 8 + 2048;
                __builtin_prefetch(ahead < ROW ? (const uint8_t *)r + ahead : nr + (ahead - ROW));
                for (int j = 0; j < 8; j++)
                    x[j] += r[i + j];
            }
            for (int j = 0; j < 8; j++)
                acc ^= x[j];
        }
    }
    a->bytes_per_s = (double)rows * ROW / (now_s() - t0);
    a->sink = acc;
    return NULL;
}

double gpu_rows(const uint4 *dev, const uint32_t *d_ids, int n, double secs, unsigned long long *sink, int blocks)
{
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    const double t0 = now_s();
    long iters = 0;
    double ms_total = 0;
    while (now_s() - t0 < secs) {
        CK(cudaEventRecord(e0));
        k_rows<<<blocks, 256>>>(dev, d_ids, n, sink);
        CK(cudaGetLastError());
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        ms_total += ms;
        iters++;
    }
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    return (double)iters * n * ROW / (ms_total * 1e-3);
}

} // namespace

int main(int argc, char **argv)
{
    const size_t gpu_gib = argc > 1 ? strtoul(argv[1], NULL, 10) : 4, cpu_gib = argc > 2 ? strtoul(argv[2], NULL, 10) : 8;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nthr = argc > 3 ? atoi(argv[3]) : (int)(ncpu > 1 ? ncpu - 1 : 1);
    if (gpu_gib == 0 || cpu_gib == 0 || nthr < 1 || nthr > 256) {
        fprintf(stderr, "usage: pi-bench-pcie-rows [GPU_GIB [CPU_GIB [THREADS (1..256)]]]\n");
        return 2;
    }
    const size_t gn = (gpu_gib << 30) / ROW, cn = (cpu_gib << 30) / ROW;
    uint8_t *hg = NULL;
    CK(cudaHostAlloc((void **)&hg, gn * ROW, cudaHostAllocMapped));   // (the warm tier adds write-combining)
    memset(hg, 1, gn * ROW);
    uint8_t *hc = (uint8_t *)aligned_alloc(4096, cn * ROW);
    if (!hc) {
        fprintf(stderr, "out of memory for %zu GiB of CPU rows\n", cpu_gib);
        return 1;
    }
    memset(hc, 2, cn * ROW);
    uint4 *dev = NULL;
    CK(cudaHostGetDevicePointer((void **)&dev, hg, 0));
    unsigned long long *sink = NULL;
    CK(cudaMalloc(&sink, sizeof *sink));
    const int maxn = 8192;
    uint32_t ids[maxn], *d_ids = NULL;
    uint64_t s = 7;
    for (int i = 0; i < maxn; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (uint32_t)((s >> 20) % gn);
    }
    CK(cudaMalloc(&d_ids, sizeof ids));
    CK(cudaMemcpy(d_ids, ids, sizeof ids, cudaMemcpyHostToDevice));
    void *dbuf = NULL;
    CK(cudaMalloc(&dbuf, 1ull << 30));
    double t0 = now_s();
    CK(cudaMemcpy(dbuf, hg, 1ull << 30, cudaMemcpyHostToDevice));
    printf("pi-bench-pcie-rows: rows of %zu bytes, %zu GiB pinned for the GPU, %zu GiB for %d CPU threads\n\n", ROW,
           gpu_gib, cpu_gib, nthr);
    printf("cudaMemcpy of 1 GiB pinned host -> device: %.1f GB/s\n\n", (double)(1ull << 30) / (now_s() - t0) / 1e9);
    printf("| rows per launch | blocks x 256 | GPU alone GB/s |\n|---|---|---|\n");
    const int rowsets[] = {128, 400, 1000, 2000, 8192}, blocksets[] = {132, 264, 528};
    for (int b : blocksets)
        for (int r : rowsets)
            printf("| %d (%.1f MB) | %d | %.1f |\n", r, r * ROW / 1e6, b, gpu_rows(dev, d_ids, r, 0.5, sink, b) / 1e9);
    std::atomic<int> go(0);
    printf("\n| run | CPU GB/s | GPU GB/s | sum |\n|---|---|---|---|\n");
    for (int both = 0; both < 2; both++) {
        pthread_t th[256];
        cpu_arg a[256];
        go.store(0);
        for (int t = 0; t < nthr; t++) {
            a[t] = cpu_arg{hc, cn, 2.0, &go, 0.0, 1000u + 77u * (uint64_t)t + (uint64_t)both, 0};
            if (pthread_create(&th[t], NULL, cpu_reader, &a[t]) != 0) {
                fprintf(stderr, "pthread_create failed\n");
                return 1;
            }
        }
        go.store(1);
        double g = both ? gpu_rows(dev, d_ids, 2000, 1.8, sink, 264) : 0.0;
        double c = 0;
        for (int t = 0; t < nthr; t++) {
            pthread_join(th[t], NULL);
            c += a[t].bytes_per_s;
        }
        printf("| %s | %.1f | %.1f | %.1f |\n", both ? "both at once" : "CPU alone", c / 1e9, g / 1e9, (c + g) / 1e9);
    }
    CK(cudaFree(dbuf));
    CK(cudaFree(d_ids));
    CK(cudaFree(sink));
    CK(cudaFreeHost(hg));
    free(hc);
    return 0;
}
