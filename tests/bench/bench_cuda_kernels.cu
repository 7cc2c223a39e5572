// The CUDA backend's kernels one by one at a 13B model's shape (dim 5120,
// 40 heads of 128, n_ff 13824, F16 weights, predictor R 1024), timed with
// events over repeated launches: microseconds per call and the GB/s of the
// bytes each must read, against a device-to-device copy (the ceiling).
// Weights rotate over several copies so the 50 MB L2 does not serve them.
// Run on the GPU machine: build-dev/bin/pi-bench-cuda-kernels [reps].
#include <cuda_fp16.h>
#include <math.h>
#include <vector>
#include <cuda_runtime.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_attn.cuh"
#include "cuda_matvec.cuh"
#include "cuda_predict.cuh"
#include "../cuda_check.cuh"

namespace {

constexpr uint32_t DIM = 5120, HEADS = 40, HD = 128, NFF = 13824, R = 1024, CTX = 4096, COPIES = 3;

__global__ void k_fill_half(__half *p, size_t n, uint32_t seed, float scale)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 15;
        h *= 2246822519u;
        h ^= h >> 13;
        p[i] = __float2half(((float)(h & 0xffff) / 32768.0f - 1.0f) * scale);
    }
}

__global__ void k_fill_float(float *p, size_t n, uint32_t seed, float scale, float bias)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2246822519u ^ seed;
        h ^= h >> 13;
        h *= 2654435761u;
        h ^= h >> 16;
        p[i] = ((float)(h & 0xffff) / 32768.0f - 1.0f) * scale + bias;
    }
}

// A rows x cols matrix of type in the device layout (cuda_matvec.cuh) filled
// with random halves of +-scale (for block types random bytes: only timed,
// never checked; a NaN costs what any float does).
cuda_mat make_typed_mat(int type, uint32_t rows, uint32_t cols, uint32_t seed, float scale)
{
    size_t rb = 0;
    if (pi_row_bytes((pi_type)type, cols, &rb) < 0) {
        fprintf(stderr, "bad shape for type %d\n", type);
        exit(1);
    }
    __half *p;
    CK(cudaMalloc(&p, (size_t)rows * rb));
    k_fill_half<<<1024, 256>>>(p, (size_t)rows * rb / sizeof(__half), seed, scale);
    CK(cudaGetLastError());
    cuda_mat m;
    memset(&m, 0, sizeof m);
    m.type = type;
    m.rows = rows;
    m.cols = cols;
    m.data = (const unsigned char *)p;
    if (type != PI_TYPE_F16)
        m.scales = (const uint16_t *)(m.data + (size_t)rows * cuda_mat_quant_bytes(type, cols));
    return m;
}

cuda_mat make_mat(uint32_t rows, uint32_t cols, uint32_t seed)
{
    return make_typed_mat(PI_TYPE_F16, rows, cols, seed, 0.05f);
}

cuda_mat make_block_mat(int type, uint32_t rows, uint32_t cols, uint32_t seed)
{
    return make_typed_mat(type, rows, cols, seed, 1.0f);
}

// The fused Q, K, V product's set: output k at y + k * per floats, an entry's outputs one matrix's rows apart.
cuda_mv_set qkv_set(const cuda_mat &q, const cuda_mat &k, const cuda_mat &v, float *y, size_t per)
{
    cuda_mv_set s;
    memset(&s, 0, sizeof s);
    s.count = 3;
    s.w[0] = q, s.w[1] = k, s.w[2] = v;
    for (int i = 0; i < 3; i++)
        s.y[i] = y + (size_t)i * per, s.ys[i] = s.w[i].rows;
    return s;
}

float *make_floats(size_t n, uint32_t seed, float scale, float bias)
{
    float *p;
    CK(cudaMalloc(&p, (n ? n : 1) * sizeof(float)));
    k_fill_float<<<256, 256>>>(p, n, seed, scale, bias);
    CK(cudaGetLastError());
    return p;
}

struct timer {
    cudaEvent_t a, b;
    int reps;
};

// Runs fn(rep) reps times after 3 warm-up calls; microseconds per call.
template <typename F> double time_us(timer &t, F fn)
{
    for (int r = 0; r < 3; r++)
        fn(r);
    CK(cudaEventRecord(t.a));
    for (int r = 0; r < t.reps; r++)
        fn(r);
    CK(cudaEventRecord(t.b));
    CK(cudaEventSynchronize(t.b));
    CK(cudaGetLastError());
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, t.a, t.b));
    return 1000.0 * ms / t.reps;
}

void row(const char *name, double us, double bytes)
{
    printf("| %-44s | %9.2f | %8.0f |\n", name, us, bytes > 0 ? bytes / us / 1e3 : 0.0);
}

// The largest |a - b| over count floats of two device arrays, and in *big the largest |a|. A value that is not
// finite on either side makes the difference infinite, so a check "worst <= 1e-5 * big" fails on it.
double device_diff(const float *da, const float *db, size_t count, double *big)
{
    CK(cudaDeviceSynchronize());
    std::vector<float> a(count), b(count);
    CK(cudaMemcpy(a.data(), da, count * sizeof(float), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(b.data(), db, count * sizeof(float), cudaMemcpyDeviceToHost));
    double worst = 0;
    *big = 0;
    for (size_t i = 0; i < count; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i]))
            worst = INFINITY;
        else
            worst = fmax(worst, fabs((double)a[i] - b[i])), *big = fmax(*big, fabs((double)a[i]));
    }
    return worst;
}

// The tiled product for several entries (PI_CUDA_MV_BATCH=1, cuda_matvec_batch.cuh) against the one-warp-a-row
// kernel (=0): fn(y) runs the same product with the switch off into ya and on into yb (count floats, zeroed
// first); exits 1 unless they agree to 1e-5 of the largest magnitude (they differ by summation order only).
template <typename F> void batch_check(const char *name, uint32_t n, size_t count, float *ya, float *yb, F fn)
{
    CK(cudaMemset(ya, 0, count * sizeof(float)));
    CK(cudaMemset(yb, 0, count * sizeof(float)));
    setenv("PI_CUDA_MV_BATCH", "0", 1);
    fn(ya);
    setenv("PI_CUDA_MV_BATCH", "1", 1);
    fn(yb);
    setenv("PI_CUDA_MV_BATCH", "0", 1);
    double amax, dmax = device_diff(ya, yb, count, &amax);
    printf("tiled matvec check, %s, %u entries: largest difference %.2e of largest value %.3g\n", name, n, dmax, amax);
    if (!(dmax <= 1e-5 * amax)) {
        fprintf(stderr, "tiled matvec (PI_CUDA_MV_BATCH=1) differs from the default kernel: %s, %u entries\n", name, n);
        exit(1);
    }
}

} // namespace

int main(int argc, char **argv)
{
    timer t;
    t.reps = argc > 1 ? atoi(argv[1]) : 50;
    if (t.reps < 1)
        t.reps = 50;
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        fprintf(stderr, "pi-bench-cuda-kernels: no CUDA device\n");
        return 1;
    }
    CK(cudaEventCreate(&t.a));
    CK(cudaEventCreate(&t.b));
    setenv("PI_CUDA_MV_BATCH", "0", 1);     // the one-warp-per-row rows; the tiled ones switch it on

    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("pi-bench-cuda-kernels: %s, %d SMs, L2 %d MiB; %d reps; GB/s = bytes the kernel must read / time\n\n",
           prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20, t.reps);
    printf("| kernel | us per call | GB/s |\n|---|---|---|\n");

    // The ceiling: a 1 GiB device-to-device copy (read + write counted).
    size_t big = (size_t)1 << 30;
    void *src, *dst;
    CK(cudaMalloc(&src, big));
    CK(cudaMalloc(&dst, big));
    CK(cudaMemset(src, 1, big));
    row("copy 1 GiB device to device (read + write)", time_us(t, [&](int) { CK(cudaMemcpyAsync(dst, src, big, cudaMemcpyDeviceToDevice)); }), 2.0 * big);
    CK(cudaFree(src));
    CK(cudaFree(dst));

    float *x = make_floats(16 * DIM, 1, 1.0f, 0.0f), *y = make_floats(3 * 16 * DIM, 2, 0.0f, 0.0f);
    cuda_mat wq[COPIES], wk[COPIES], wv[COPIES], wo[COPIES];
    for (uint32_t c = 0; c < COPIES; c++) {
        wq[c] = make_mat(DIM, DIM, 10 + c);
        wk[c] = make_mat(DIM, DIM, 20 + c);
        wv[c] = make_mat(DIM, DIM, 30 + c);
        wo[c] = make_mat(DIM, DIM, 40 + c);
    }
    double mat = (double)DIM * DIM * 2;
    for (uint32_t n : {1u, 4u, 16u}) {
        char name[64];
        snprintf(name, sizeof name, "QKV fused matvec, %u entr%s", n, n == 1 ? "y" : "ies");
        row(name, time_us(t, [&](int r) {
                cuda_mv_set s = qkv_set(wq[r % COPIES], wk[r % COPIES], wv[r % COPIES], y, 16 * DIM);
                CK(cuda_matvec_set(0, &s, x, DIM, n, 0));
            }), 3 * mat);
    }
    // The same at up to 64 entries, with the tiled kernel (PI_CUDA_MV_BATCH=1) beside the default one.
    float *x64 = make_floats(64 * DIM, 14, 1.0f, 0.0f), *ya = make_floats(3 * 64 * DIM, 15, 0.0f, 0.0f),
          *yb = make_floats(3 * 64 * DIM, 16, 0.0f, 0.0f);
    auto qkv64 = [&](float *yy, uint32_t n, int r) {
        cuda_mv_set s = qkv_set(wq[r % COPIES], wk[r % COPIES], wv[r % COPIES], yy, 64 * DIM);
        CK(cuda_matvec_set(0, &s, x64, DIM, n, 0));
    };
    for (uint32_t n : {2u, 3u, 5u, 8u, 17u, 64u})
        batch_check("QKV F16", n, 3 * 64 * DIM, ya, yb, [&](float *yy) { qkv64(yy, n, 0); });
    row("QKV fused matvec, 64 entries", time_us(t, [&](int r) { qkv64(ya, 64, r); }), 3 * mat);
    setenv("PI_CUDA_MV_BATCH", "1", 1);
    for (uint32_t n : {4u, 16u, 64u}) {
        char name[64];
        snprintf(name, sizeof name, "QKV fused matvec tiled, %u entries", n);
        row(name, time_us(t, [&](int r) { qkv64(ya, n, r); }), 3 * mat);
    }
    setenv("PI_CUDA_MV_BATCH", "0", 1);
    // A row split over several warps (wo: 4) against one warp a row (PI_CUDA_MV_SPLIT=0): the same sums but
    // for their order (exits 1 beyond 1e-5 of the largest), then both timed.
    {
        float *ya = make_floats(DIM, 0, 0.0f, 0.0f), *yb = make_floats(DIM, 0, 0.0f, 0.0f);
        setenv("PI_CUDA_MV_SPLIT", "0", 1);
        CK(cuda_matvec(0, ya, DIM, &wo[0], x, DIM, 1));
        row("wo matvec, 1 entry, one warp a row", time_us(t, [&](int r) { CK(cuda_matvec(0, y, DIM, &wo[r % COPIES], x, DIM, 1)); }), mat);
        setenv("PI_CUDA_MV_SPLIT", "1", 1);
        CK(cudaMemset(yb, 0xff, DIM * sizeof(float)));
        CK(cuda_matvec(0, yb, DIM, &wo[0], x, DIM, 1));
        double big, worst = device_diff(ya, yb, DIM, &big);
        printf("wo split over warps vs one warp a row: largest difference %.2e of %.2e\n", worst, big);
        if (!(worst <= 1e-5 * big)) {
            fprintf(stderr, "FAIL: the split-row product differs from one warp a row\n");
            return 1;
        }
        CK(cudaFree(ya));
        CK(cudaFree(yb));
    }
    row("wo matvec, 1 entry, rows split over warps", time_us(t, [&](int r) { CK(cuda_matvec(0, y, DIM, &wo[r % COPIES], x, DIM, 1)); }), mat);
    setenv("PI_CUDA_MV_SPLIT", "0", 1);
    // The K-quants' chunks (a Q4_K_M file's two types) against F16's: the same products, fewer bytes.
    for (int type : {(int)PI_TYPE_Q4_K, (int)PI_TYPE_Q6_K}) {
        cuda_mat kq[COPIES];
        for (uint32_t c = 0; c < COPIES; c++)
            kq[c] = make_block_mat(type, 3 * DIM, DIM, 100 + c);
        double kbytes = (double)3 * DIM * (double)(DIM / 256) * (type == PI_TYPE_Q4_K ? 144 : 210);
        for (uint32_t n : {1u, 16u}) {
            char name[64];
            snprintf(name, sizeof name, "QKV-sized %s matvec, %u entr%s", pi_type_name(type), n, n == 1 ? "y" : "ies");
            row(name, time_us(t, [&](int r) { CK(cuda_matvec(0, y, 3 * DIM, &kq[r % COPIES], x, DIM, n)); }), kbytes);
        }
        for (uint32_t n : {5u, 17u, 64u})
            batch_check(pi_type_name(type), n, 3 * 64 * DIM, ya, yb,
                        [&](float *yy) { CK(cuda_matvec(0, yy, 3 * DIM, &kq[0], x64, DIM, n)); });
        setenv("PI_CUDA_MV_BATCH", "1", 1);
        for (uint32_t n : {16u, 64u}) {
            char name[64];
            snprintf(name, sizeof name, "QKV-sized %s matvec tiled, %u entries", pi_type_name(type), n);
            row(name, time_us(t, [&](int r) { CK(cuda_matvec(0, ya, 3 * DIM, &kq[r % COPIES], x64, DIM, n)); }),
                kbytes);
        }
        setenv("PI_CUDA_MV_BATCH", "0", 1);
        for (uint32_t c = 0; c < COPIES; c++)
            CK(cudaFree((void *)kq[c].data));
    }

    float *w = make_floats(DIM, 3, 0.1f, 1.0f), *h = make_floats(DIM, 4, 1.0f, 0.0f), *xb = make_floats(DIM, 5, 0, 0);
    row("rmsnorm + residual add, 1 row", time_us(t, [&](int) { CK(cuda_rmsnorm(0, xb, NULL, h, y, w, DIM, 1e-5f, 1)); }), 3.0 * DIM * 4);

    double inv[HD / 2], *d_inv;
    cuda_rope_inv_freqs(inv, HD, 10000.0f, 1.0f, NULL);
    CK(cudaMalloc(&d_inv, sizeof inv));
    CK(cudaMemcpy(d_inv, inv, sizeof inv, cudaMemcpyHostToDevice));
    cuda_attn_shape sh = {1, CTX, HEADS, HEADS, HD, d_inv};
    __half *kc, *vc;
    CK(cudaMalloc(&kc, (size_t)CTX * DIM * sizeof(__half)));
    CK(cudaMalloc(&vc, (size_t)CTX * DIM * sizeof(__half)));
    k_fill_half<<<1024, 256>>>(kc, (size_t)CTX * DIM, 7, 1.0f);
    k_fill_half<<<1024, 256>>>(vc, (size_t)CTX * DIM, 8, 1.0f);
    gpu_entry *e;
    CK(cudaMalloc(&e, sizeof(gpu_entry)));
    float *part = make_floats(cuda_attn_part_floats(1, HEADS, CTX, HD), 9, 0, 0);   // zero: the split counters
    float *q = make_floats(DIM, 11, 1.0f, 0.0f), *k = make_floats(DIM, 12, 1.0f, 0.0f), *v = make_floats(DIM, 13, 1.0f, 0.0f);
    // Correct at any position: against a float64 reference over the same fp16 cache, twice (the split
    // counters must come back to zero), before any timing.
    {
        std::vector<__half> hk((size_t)CTX * DIM), hv((size_t)CTX * DIM);
        std::vector<float> hq(DIM), got(DIM);
        CK(cudaMemcpy(hk.data(), kc, hk.size() * sizeof(__half), cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(hv.data(), vc, hv.size() * sizeof(__half), cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(hq.data(), q, DIM * sizeof(float), cudaMemcpyDeviceToHost));
        for (uint32_t pos : {0u, 63u, 64u, 127u, 1023u, 4000u, CTX - 1}) {
            gpu_entry he = {0, pos, 1, 1};
            CK(cudaMemcpy(e, &he, sizeof he, cudaMemcpyHostToDevice));
            double worst = 0;
            for (int rep = 0; rep < 2; rep++) {
                CK(cudaMemset(y, 0xff, DIM * sizeof(float)));     // NaN: every output must be written
                CK(cuda_attention(0, y, q, kc, vc, part, e, 0, sh, 1));
                CK(cudaDeviceSynchronize());
                CK(cudaMemcpy(got.data(), y, DIM * sizeof(float), cudaMemcpyDeviceToHost));
                for (uint32_t h = 0; h < HEADS; h++) {
                    std::vector<double> sc(pos + 1), o(HD, 0.0);
                    double mx = -1e300, sum = 0, num = 0, den = 0;
                    for (uint32_t j = 0; j <= pos; j++) {
                        double a = 0;
                        for (uint32_t d = 0; d < HD; d++)
                            a += (double)hq[h * HD + d] * (double)__half2float(hk[(size_t)j * DIM + h * HD + d]);
                        sc[j] = a / sqrt((double)HD);
                        mx = sc[j] > mx ? sc[j] : mx;
                    }
                    for (uint32_t j = 0; j <= pos; j++) {
                        double p = exp(sc[j] - mx);
                        sum += p;
                        for (uint32_t d = 0; d < HD; d++)
                            o[d] += p * (double)__half2float(hv[(size_t)j * DIM + h * HD + d]);
                    }
                    for (uint32_t d = 0; d < HD; d++) {
                        double r = o[d] / sum, g = got[h * HD + d];
                        num += (g - r) * (g - r);
                        den += r * r;
                        if (!(g == g))
                            num = 1e300;   // NaN: not written
                    }
                    double rel = sqrt(num / (den > 0 ? den : 1));
                    worst = rel > worst ? rel : worst;
                }
            }
            printf("attention check, position %u: worst relative error per head %.2e (two launches)\n", pos, worst);
            if (!(worst < 1e-5)) {
                fprintf(stderr, "FAIL: attention at position %u: relative error %.2e > 1e-5\n", pos, worst);
                return 1;
            }
        }
    }
    // The QKV product with its rope epilogue (cuda_matvec_qkv_rope) against the product then rope_store: the
    // same q, k, v and the same cache rows, bit for bit, for 1 and 3 entries (exits 1 otherwise).
    {
        gpu_entry *e3;
        CK(cudaMalloc(&e3, 3 * sizeof(gpu_entry)));
        const gpu_entry he3[3] = {{0, 4000, 1, 1}, {0, 5, 2, 1}, {0, 300, 3, 1}};
        CK(cudaMemcpy(e3, he3, sizeof he3, cudaMemcpyHostToDevice));
        __half *kc2, *vc2;
        CK(cudaMalloc(&kc2, (size_t)CTX * DIM * sizeof(__half)));
        CK(cudaMalloc(&vc2, (size_t)CTX * DIM * sizeof(__half)));
        float *ya = make_floats(3 * 3 * DIM, 0, 0.0f, 0.0f), *yb = make_floats(3 * 3 * DIM, 0, 0.0f, 0.0f);
        cuda_qkv_rope rp = {e3, d_inv, kc2, vc2, HD, 1, CTX, 0};
        for (uint32_t n : {1u, 3u}) {
            CK(cudaMemcpy(kc2, kc, (size_t)CTX * DIM * sizeof(__half), cudaMemcpyDeviceToDevice));
            CK(cudaMemcpy(vc2, vc, (size_t)CTX * DIM * sizeof(__half), cudaMemcpyDeviceToDevice));
            cuda_mv_set sa = qkv_set(wq[0], wk[0], wv[0], ya, 3 * DIM), sb = qkv_set(wq[0], wk[0], wv[0], yb, 3 * DIM);
            CK(cuda_matvec_set(0, &sa, x, DIM, n, 0));
            CK(cuda_rope_store(0, ya, ya + 3 * DIM, ya + 6 * DIM, kc, vc, e3, 0, sh, n));
            CK(cuda_matvec_qkv_rope(0, &sb, x, DIM, n, &rp));
            CK(cudaDeviceSynchronize());
            std::vector<float> a(9 * DIM), b(9 * DIM);
            CK(cudaMemcpy(a.data(), ya, a.size() * sizeof(float), cudaMemcpyDeviceToHost));
            CK(cudaMemcpy(b.data(), yb, b.size() * sizeof(float), cudaMemcpyDeviceToHost));
            int same = 1;
            for (uint32_t k = 0; k < 3; k++)    // rows past n entries are not written by either
                same &= memcmp(a.data() + (size_t)k * 3 * DIM, b.data() + (size_t)k * 3 * DIM, n * DIM * sizeof(float)) == 0;
            std::vector<__half> ra(DIM), rb(DIM);
            for (uint32_t i = 0; i < n; i++)
                for (__half *c2 : {kc2, vc2}) {
                    const __half *c1 = c2 == kc2 ? kc : vc;
                    CK(cudaMemcpy(ra.data(), c1 + (size_t)he3[i].pos * DIM, DIM * sizeof(__half), cudaMemcpyDeviceToHost));
                    CK(cudaMemcpy(rb.data(), c2 + (size_t)he3[i].pos * DIM, DIM * sizeof(__half), cudaMemcpyDeviceToHost));
                    same &= memcmp(ra.data(), rb.data(), DIM * sizeof(__half)) == 0;
                }
            printf("QKV with rope and store in one launch, %u entr%s: q, k, v and cache rows %s\n", n, n == 1 ? "y" : "ies",
                   same ? "identical to product + rope_store" : "DIFFERENT");
            if (!same) {
                fprintf(stderr, "FAIL: cuda_matvec_qkv_rope differs from cuda_matvec_set + cuda_rope_store (%u entries)\n", n);
                return 1;
            }
        }
        CK(cudaMemcpy(e3, he3 + 1, sizeof(gpu_entry), cudaMemcpyHostToDevice));    // position 5, as below
        row("QKV + rope + KV store in one launch, 1 entry", time_us(t, [&](int r) {
                cuda_mv_set st = qkv_set(wq[r % COPIES], wk[r % COPIES], wv[r % COPIES], yb, 3 * DIM);
                CK(cuda_matvec_qkv_rope(0, &st, x, DIM, 1, &rp));
            }), 3 * mat);
        CK(cudaFree(e3));
        CK(cudaFree(kc2));
        CK(cudaFree(vc2));
        CK(cudaFree(ya));
        CK(cudaFree(yb));
    }
    for (uint32_t pos : {127u, 1023u, 4000u}) {
        gpu_entry he = {0, pos, 1, 1};
        CK(cudaMemcpy(e, &he, sizeof he, cudaMemcpyHostToDevice));
        char name[64];
        if (pos == 127)
            row("rope + KV store, 1 entry", time_us(t, [&](int) { CK(cuda_rope_store(0, q, k, v, kc, vc, e, 0, sh, 1)); }), 0);
        snprintf(name, sizeof name, "attention (one launch, split-K), position %u", pos);
        row(name, time_us(t, [&](int) { CK(cuda_attention(0, y, q, kc, vc, part, e, 0, sh, 1)); }),
            2.0 * (pos + 1) * DIM * sizeof(__half));
    }

    // The predictor: fc1 (R x dim) with ReLU, fc2 (n_ff x R) thresholded.
    cuda_mat fc1[COPIES], fc2[COPIES];
    for (uint32_t c = 0; c < COPIES; c++) {
        fc1[c] = make_mat(R, DIM, 50 + c);
        fc2[c] = make_mat(NFF, R, 60 + c);
    }
    float *hid = make_floats(R, 14, 0, 0);
    uint32_t *mask;
    CK(cudaMalloc(&mask, cuda_pred_words(NFF) * sizeof(uint32_t)));
    // fc1 (F16, or Q8_0 below): one warp a row, then rows split over warps.
    auto fc1_rows = [&](const cuda_mat *w, const char *type, double bytes) {
        for (const char *split : {"0", "1"}) {
            setenv("PI_CUDA_MV_SPLIT", split, 1);
            char name[96];
            snprintf(name, sizeof name, "predictor fc1%s (1024 x 5120) + ReLU, %s", type,
                     split[0] == '0' ? "one warp a row" : "rows split over warps");
            row(name, time_us(t, [&](int r) {
                    cuda_mv_set s;
                    memset(&s, 0, sizeof s);
                    s.count = 1, s.w[0] = w[r % COPIES], s.y[0] = hid, s.ys[0] = R;
                    CK(cuda_matvec_set(0, &s, x, DIM, 1, 1));
                }), bytes);
        }
        setenv("PI_CUDA_MV_SPLIT", "0", 1);
    };
    fc1_rows(fc1, "", (double)R * DIM * 2);
    // fc2 (F16, or Q8_0 below): warp per row, then several rows a warp (PI_CUDA_PRED_ROWS).
    auto fc2_rows = [&](const cuda_mat *w, const char *type, double bytes) {
        for (const char *rows : {"0", "1"}) {
            setenv("PI_CUDA_PRED_ROWS", rows, 1);
            char name[96];
            snprintf(name, sizeof name, "predictor fc2%s (13824 x 1024), %s", type,
                     rows[0] == '0' ? "warp per row" : "rows a warp");
            row(name, time_us(t, [&](int r) { CK(cuda_pred_rows(0, mask, &w[r % COPIES], hid, 1, 0.0f)); }), bytes);
        }
        unsetenv("PI_CUDA_PRED_ROWS");
    };
    fc2_rows(fc2, "", (double)NFF * R * 2);
    {   // The same predictor held as Q8_0 (--predictor-type q8_0): 34 bytes a 32 weights. In a step on the H200 its
        // phase took longer than F16's (session 12: 0.98 against 0.84 ms a token all in VRAM): these rows say which.
        cuda_mat q1[COPIES], q2[COPIES];
        for (uint32_t c = 0; c < COPIES; c++) {
            q1[c] = make_block_mat(PI_TYPE_Q8_0, R, DIM, 55 + c);
            q2[c] = make_block_mat(PI_TYPE_Q8_0, NFF, R, 65 + c);
        }
        // 16 bytes of quants a lane (PI_CUDA_Q8_NARROW=0), then a word a lane (the default), and a wo-sized
        // Q8_0 product (rows split over warps) both ways.
        cuda_mat qw[COPIES];
        for (uint32_t c = 0; c < COPIES; c++)
            qw[c] = make_block_mat(PI_TYPE_Q8_0, DIM, DIM, 75 + c);
        for (const char *narrow : {"0", "1"}) {
            setenv("PI_CUDA_Q8_NARROW", narrow, 1);
            const char *how = narrow[0] == '0' ? " q8_0 16 B a lane" : " q8_0 a word a lane";
            fc1_rows(q1, how, (double)R * DIM * 34 / 32);
            fc2_rows(q2, how, (double)NFF * R * 34 / 32);
            setenv("PI_CUDA_MV_SPLIT", "1", 1);
            char name[96];
            snprintf(name, sizeof name, "wo-sized%s matvec, 1 entry, split", how);
            row(name, time_us(t, [&](int r) { CK(cuda_matvec(0, y, DIM, &qw[r % COPIES], x, DIM, 1)); }),
                (double)DIM * DIM * 34 / 32);
            setenv("PI_CUDA_MV_SPLIT", "0", 1);
        }
        unsetenv("PI_CUDA_Q8_NARROW");
        for (uint32_t c = 0; c < COPIES; c++) {
            CK(cudaFree((void *)q1[c].data));
            CK(cudaFree((void *)q2[c].data));
            CK(cudaFree((void *)qw[c].data));
        }
    }
    // fc2 then the compaction of its mask into lists: the predictor's tail as the step runs it. (Session 7's
    // one-launch tail, fc2's last block compacting and storing the tick, took 16.5 us against these two
    // launches' 12.7 on the H200, session 8: removed.)
    {
        float *hid3 = make_floats(3 * R, 17, 1.0f, 0.0f);
        uint32_t *ma;
        int32_t *la, *ca;
        CK(cudaMalloc(&ma, 3 * cuda_pred_words(NFF) * 4));
        CK(cudaMalloc(&la, 3 * NFF * 4));
        CK(cudaMalloc(&ca, 3 * 4));
        cuda_pred_out none;
        memset(&none, 0, sizeof none);
        const float thr = 0.6f;     // ~13% of the rows: sums of 1024 products of +-0.05 and +-1
        row("predictor fc2 + compaction (two launches)", time_us(t, [&](int r) {
                CK(cuda_pred_rows(0, ma, &fc2[r % COPIES], hid3, 1, thr));
                CK(cuda_pred_compact(0, la, ca, ma, NFF, 1, &none, NULL));
            }), (double)NFF * R * 2);
        // The FFN norm as the step runs it when the predictor reads the residual: in the compaction's launch
        // (PI_CUDA_NORM_FOLD, on by default), against its own kernel after the two.
        const cuda_norm_job nj = {xb, NULL, h, w, DIM, 1e-5f};
        {   // the same bits as the norm kernel's (exit 1 otherwise)
            std::vector<float> a(DIM), b(DIM);
            CK(cuda_rmsnorm(0, xb, NULL, h, NULL, w, DIM, 1e-5f, 1));
            CK(cudaMemcpy(a.data(), xb, DIM * sizeof(float), cudaMemcpyDeviceToHost));
            CK(cudaMemset(xb, 0xff, DIM * sizeof(float)));
            CK(cuda_pred_compact(0, la, ca, ma, NFF, 1, &none, &nj));
            CK(cudaMemcpy(b.data(), xb, DIM * sizeof(float), cudaMemcpyDeviceToHost));
            const bool same = memcmp(a.data(), b.data(), DIM * sizeof(float)) == 0;
            printf("FFN norm in the compaction's launch vs the norm kernel: %s\n", same ? "same bits" : "DIFFERENT");
            if (!same) {
                fprintf(stderr, "FAIL: the folded FFN norm differs from cuda_rmsnorm\n");
                return 1;
            }
        }
        row("fc2 + compaction, then the FFN norm (three launches)", time_us(t, [&](int r) {
                CK(cuda_pred_rows(0, ma, &fc2[r % COPIES], hid3, 1, thr));
                CK(cuda_pred_compact(0, la, ca, ma, NFF, 1, &none, NULL));
                CK(cuda_rmsnorm(0, xb, NULL, h, NULL, w, DIM, 1e-5f, 1));
            }), (double)NFF * R * 2);
        row("fc2 + compaction with the FFN norm in its launch", time_us(t, [&](int r) {
                CK(cuda_pred_rows(0, ma, &fc2[r % COPIES], hid3, 1, thr));
                CK(cuda_pred_compact(0, la, ca, ma, NFF, 1, &none, &nj));
            }), (double)NFF * R * 2);
        for (void *p : {(void *)hid3, (void *)ma, (void *)la, (void *)ca})
            CK(cudaFree(p));
    }

    // The hot FFN over a union of ~11% of 2200 hot neurons: compaction, gate/up, down.
    const uint32_t K = 2200, words = cuda_pred_words(NFF);
    uint32_t *hmask = (uint32_t *)calloc(words, 4), *hot = (uint32_t *)calloc(words, 4);
    int32_t *map = (int32_t *)malloc(NFF * sizeof(int32_t));
    uint32_t seed = 1, active = 0;
    for (uint32_t j = 0; j < NFF; j++) {
        map[j] = j < K ? (int32_t)j : -1;
        if (j < K)
            hot[j / 32] |= 1u << (j % 32);
        seed = seed * 1664525u + 1013904223u;
        if ((seed >> 8) % 1000 < 490 && j < K) {   // the hot neurons fire often: ~49% of them
            hmask[j / 32] |= 1u << (j % 32);
            active++;
        }
    }
    uint32_t *d_mask, *d_hot;
    int32_t *d_map, *ulist;
    CK(cudaMalloc(&d_mask, words * 4));
    CK(cudaMalloc(&d_hot, words * 4));
    CK(cudaMalloc(&d_map, NFF * 4));
    CK(cudaMalloc(&ulist, (NFF + 1) * 4));
    CK(cudaMemcpy(d_mask, hmask, words * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_hot, hot, words * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_map, map, NFF * 4, cudaMemcpyHostToDevice));
    row("hot union compaction (13824 ids)", time_us(t, [&](int) { CK(cuda_pred_union(0, ulist, ulist + NFF, d_mask, 1, d_hot, NFF)); }), 0);
    cuda_mat gate[COPIES], up[COPIES], down_t[COPIES];
    for (uint32_t c = 0; c < COPIES; c++) {
        gate[c] = make_mat(K, DIM, 70 + c);
        up[c] = make_mat(K, DIM, 80 + c);
        down_t[c] = make_mat(K, DIM, 90 + c);
    }
    float *coef = make_floats(K, 15, 0, 0), *hotout = make_floats(DIM, 16, 0, 0);
    float *dpart = make_floats((size_t)CUDA_DOWN_PART_ROWS * DIM, 17, 0, 0);
    cuda_union u = {ulist, ulist + NFF, d_mask, words};
    char name[96];
    snprintf(name, sizeof name, "hot gate+up over the union (%u of %u)", active, K);
    row(name, time_us(t, [&](int r) { CK(cuda_ffn_gate_up_union(0, coef, &gate[r % COPIES], &up[r % COPIES], x, 1, &u, d_map, PI_ACT_RELU)); }),
        2.0 * active * DIM * 2);
    snprintf(name, sizeof name, "hot down over the union (%u of %u; ~half live)", active, K);
    row(name, time_us(t, [&](int r) { CK(cuda_ffn_down_union(0, hotout, dpart, &down_t[r % COPIES], coef, 1, &u, d_map, 0)); }),
        0.5 * active * DIM * 2);
    // The same FFN in one launch (k_ffn_union1; the step takes it unless PI_CUDA_FFN_FUSED=0): the coefficients
    // are the two launches', the down sums grouped in other slices, so the outputs agree to rounding (checked:
    // 1e-5 of the largest output, exit 1 otherwise), then both timed with their slices' sum.
    {
        float *fused = make_floats(DIM, 18, 0, 0);
        CK(cuda_ffn_gate_up_union(0, coef, &gate[0], &up[0], x, 1, &u, d_map, PI_ACT_RELU));
        CK(cuda_ffn_down_union(0, hotout, dpart, &down_t[0], coef, 1, &u, d_map, 0));
        CK(cuda_ffn_union_fused(0, fused, dpart, &gate[0], &up[0], &down_t[0], x, &u, d_map, PI_ACT_RELU, 0));
        double big, worst = device_diff(hotout, fused, DIM, &big);
        const bool same = big > 0 && worst <= 1e-5 * big;
        printf("hot FFN in one launch vs two: worst difference %.2e of the largest output %.3g: %s\n", worst, big,
               same ? "the same to rounding" : "DIFFERENT");
        if (!same) {
            fprintf(stderr, "FAIL: cuda_ffn_union_fused differs from cuda_ffn_gate_up_union + cuda_ffn_down_union\n");
            return 1;
        }
        row("hot FFN over the union, one launch + slices' sum", time_us(t, [&](int r) {
                CK(cuda_ffn_union_fused(0, fused, dpart, &gate[r % COPIES], &up[r % COPIES], &down_t[r % COPIES], x,
                                        &u, d_map, PI_ACT_RELU, 0));
            }), 2.5 * active * DIM * 2);
        row("hot FFN over the union, two launches + slices' sum", time_us(t, [&](int r) {
                CK(cuda_ffn_gate_up_union(0, coef, &gate[r % COPIES], &up[r % COPIES], x, 1, &u, d_map, PI_ACT_RELU));
                CK(cuda_ffn_down_union(0, hotout, dpart, &down_t[r % COPIES], coef, 1, &u, d_map, 0));
            }), 2.5 * active * DIM * 2);
        CK(cudaFree(fused));
    }
    printf("\n(rows of 0 GB/s: latency-bound steps with no weight bytes to speak of)\n");
    return 0;
}
