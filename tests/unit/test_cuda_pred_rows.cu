// The predictor's fc2 kernels (cuda_pred_rows) on the device: the one-entry
// kernel that takes several rows a warp (the default) sets the same mask bits
// as warp per row (PI_CUDA_PRED_ROWS=0), bit for bit, for every fc2 type and
// for row counts that end inside a block; and they (and Q8_0 read 16 bytes a
// lane, PI_CUDA_Q8_NARROW=0) agree with a float64 sum over the same
// dequantized weights except within rounding of the threshold.
// Skipped (77) with no CUDA device.
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#include "cuda_matvec.cuh"
#include "cuda_predict.cuh"
#include "../cuda_check.cuh"

extern "C" {
#include "quant.h"
}

namespace {

int failures = 0;

#define CHECK(cond, ...)                                  \
    do {                                                  \
        if (!(cond)) {                                    \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                 \
            fprintf(stderr, "\n");                        \
            failures++;                                   \
        }                                                 \
    } while (0)

uint32_t rng_state = 12345u;
float frand(void)   // [-1, 1)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / 8388608.0f - 1.0f;
}

// One case: rows x R fc2 of type t, one hidden vector (ReLU'd), threshold thr.
void run_case(int t, uint32_t rows, uint32_t R, float thr)
{
    size_t rb = 0;
    if (pi_row_bytes((pi_type)t, R, &rb) < 0) {
        CHECK(0, "type %d cannot hold rows of %u", t, R);
        return;
    }
    // The file's rows: random weights quantized to the type, as a model holds them.
    std::vector<unsigned char> file((size_t)rows * rb);
    std::vector<float> w(R), deq((size_t)rows * R);
    for (uint32_t r = 0; r < rows; r++) {
        for (uint32_t c = 0; c < R; c++)
            w[c] = frand() * 0.05f;
        pi_quantize_row((pi_type)t, w.data(), file.data() + (size_t)r * rb, R);
        pi_dequantize_row((pi_type)t, file.data() + (size_t)r * rb, deq.data() + (size_t)r * R, R);
    }
    std::vector<float> hid(R);
    for (uint32_t c = 0; c < R; c++)
        hid[c] = fmaxf(0.0f, frand());
    // The device layout: every row's quant part, then every row's scale part.
    const size_t qb = cuda_mat_quant_bytes(t, R);
    std::vector<unsigned char> dev((size_t)rows * rb);
    for (uint32_t r = 0; r < rows; r++)
        cuda_mat_stage_row(t, file.data() + (size_t)r * rb, R, dev.data() + (size_t)r * qb,
                           dev.data() + (size_t)rows * qb + (size_t)r * (rb - qb));
    unsigned char *d_w;
    float *d_h;
    uint32_t *d_mask;
    const uint32_t words = cuda_pred_words(rows);
    CK(cudaMalloc(&d_w, dev.size()));
    CK(cudaMalloc(&d_h, R * sizeof(float)));
    CK(cudaMalloc(&d_mask, words * sizeof(uint32_t)));
    CK(cudaMemcpy(d_w, dev.data(), dev.size(), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_h, hid.data(), R * sizeof(float), cudaMemcpyHostToDevice));
    cuda_mat m;
    memset(&m, 0, sizeof m);
    m.type = t;
    m.rows = rows;
    m.cols = R;
    m.data = d_w;
    if (qb < rb)
        m.scales = (const uint16_t *)(d_w + (size_t)rows * qb);
    // 0: warp per row, 1: rows a warp (the default); Q8_0 also 2: rows a warp reading 16 bytes of quants a
    // lane (PI_CUDA_Q8_NARROW=0; 0 and 1 read a word a lane), which sums in another order.
    const int variants = t == PI_TYPE_Q8_0 ? 3 : 2;
    std::vector<uint32_t> mask[3];
    for (int v = 0; v < variants; v++) {
        CK(setenv("PI_CUDA_PRED_ROWS", v ? "1" : "0", 1) == 0 ? cudaSuccess : cudaErrorUnknown);
        CK(setenv("PI_CUDA_Q8_NARROW", v == 2 ? "0" : "1", 1) == 0 ? cudaSuccess : cudaErrorUnknown);
        CK(cudaMemset(d_mask, 0xa5, words * sizeof(uint32_t)));
        CK(cuda_pred_rows(0, d_mask, &m, d_h, 1, thr));
        CK(cudaDeviceSynchronize());
        mask[v].resize(words);
        CK(cudaMemcpy(mask[v].data(), d_mask, words * sizeof(uint32_t), cudaMemcpyDeviceToHost));
    }
    unsetenv("PI_CUDA_PRED_ROWS");
    unsetenv("PI_CUDA_Q8_NARROW");
    uint32_t differ = 0, wrong = 0, borderline = 0, set = 0;
    for (uint32_t j = 0; j < rows; j++) {
        const int a = (int)(mask[0][j / 32] >> (j % 32) & 1u), b = (int)(mask[1][j / 32] >> (j % 32) & 1u);
        const int c = variants > 2 ? (int)(mask[2][j / 32] >> (j % 32) & 1u) : b;
        differ += a != b;
        double s = 0, mag = 0;
        for (uint32_t c = 0; c < R; c++) {
            s += (double)deq[(size_t)j * R + c] * hid[c];
            mag += fabs((double)deq[(size_t)j * R + c] * hid[c]);
        }
        const int want = s > thr;
        set += want;
        // fp32 sums in another order: within R * 2^-23 of the magnitudes' sum.
        if (fabs(s - thr) <= mag * R * 1.2e-7)
            borderline++;
        else
            wrong += (b != want) + (c != want);
    }
    // Bits past the last row of a partial word are 0 in both.
    const uint32_t tail = rows % 32 ? ~0u << (rows % 32) : 0u;
    CHECK((mask[0][words - 1] & tail) == 0 && (mask[1][words - 1] & tail) == 0,
          "type %d rows %u: bits set past the last row", t, rows);
    printf("%-5s rows %5u R %4u: %5u of %5u set, rows-a-warp vs warp-per-row differ in %u, "
           "%u against float64 (%u borderline)\n", pi_type_name(t), rows, R, set, rows, differ, wrong, borderline);
    CHECK(differ == 0, "type %d rows %u R %u: the two kernels differ in %u bits", t, rows, R, differ);
    CHECK(wrong == 0, "type %d rows %u R %u: %u decisions differ from float64", t, rows, R, wrong);
    CHECK(set > rows / 10 && set < rows - rows / 10, "type %d: %u of %u set: the threshold tests nothing", t, set,
          rows);
    CK(cudaFree(d_w));
    CK(cudaFree(d_h));
    CK(cudaFree(d_mask));
}

} // namespace

int main(void)
{
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        printf("SKIP: no CUDA device (the fc2 kernels run on the GPU machine: scripts/device_check.sh)\n");
        return 77;
    }
    const int types[] = {PI_TYPE_F32, PI_TYPE_F16, PI_TYPE_BF16, PI_TYPE_Q8_0, PI_TYPE_Q4_0};
    for (int t : types) {
        run_case(t, 13824, 1024, 0.0f);    // a 13B layer at PowerInfer's R
        run_case(t, 1000, 96, 0.01f);      // a partial last word, a short row
        run_case(t, 37, 512, -0.01f);
    }
    if (failures) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    printf("all fc2 mask checks passed\n");
    return 0;
}
