// The activation predictor's second layer on the device and the ordered
// compaction of its decisions into active lists (cuda_predict.cu), for the
// CUDA backend's predict op. The first layer (fc1 . xn, R rows) is an
// ordinary cuda_matvec; fc2 (n_ff rows of R, R small) stays in the model
// file's own layout, one thread per row.
#ifndef PI_CUDA_PREDICT_CUH
#define PI_CUDA_PREDICT_CUH

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "cuda_matvec.cuh"
#include "cuda_norm.cuh"

// fc2 on the device, rows x cols (cols = R), row r at data + r * row_bytes:
// the model file's bytes (Q8_0/Q4_0 blocks unsplit).
struct cuda_pred_fc2 {
    int type;               // pi_type
    uint32_t rows, cols;
    size_t row_bytes;
    const unsigned char *data;
};

// Extra destinations of the lists, device-writable (mapped host memory) or
// NULL: list[i] has room for `rows` ids, counts for one count per entry.
struct cuda_pred_out {
    int32_t *list[CUDA_MAX_BATCH];
    int32_t *counts;
    // The layer tick, when given (tick != NULL): once every block of the
    // compaction has written and fenced its lists and norm rows, the last to
    // finish stores *tick_base + tick_add into *tick (release, system scope),
    // so the CPU workers start without a publish kernel after it. arrive: a
    // device word that is 0 between launches (the last block resets it).
    uint32_t *tick;
    const uint32_t *tick_base;
    uint32_t tick_add;
    uint32_t *arrive;
};

// 1 when fc2 may have type t (f32, f16, bf16, q8_0, q4_0).
int cuda_pred_type_ok(int t);

// Words of one entry's bit mask: (rows + 31) / 32.
uint32_t cuda_pred_words(uint32_t rows);

// Bit b of mask[i * words + w] = (fc2_{32w+b} . relu(hidden[i * R ..]) > threshold),
// i < n: the host's predictor_active test on the same hidden layer (each dot
// summed in row order, unfused, as pi_dot_row does). Bits past rows are 0.
cudaError_t cuda_pred_mask(cudaStream_t s, uint32_t *mask, const cuda_pred_fc2 *fc2, const float *hidden,
                           uint32_t n, float threshold);

// For each entry i < n: lists[i * rows ..] = the ids of mask row i's set bits
// in ascending order, counts[i] = their number; the same into out's host
// pointers where given. One block per entry: each thread takes a contiguous
// run of mask words, a block-wide exclusive scan of their bit counts gives
// each run its place.
// norm, when given: n more blocks of the same launch compute its rows'
// norm (norm_row, the bits cuda_rmsnorm gives), so a norm that only later
// kernels read costs no launch of its own.
cudaError_t cuda_pred_compact(cudaStream_t s, int32_t *lists, int32_t *counts, const uint32_t *mask,
                              uint32_t rows, uint32_t n, const cuda_pred_out *out, const cuda_norm_job *norm);

// list[0..*count) = the ascending ids j < rows whose bit is set in some
// entry's mask (n entries, cuda_pred_words(rows) words each) and in hot
// (one word array of the layer's hot neurons): the step's hot union.
cudaError_t cuda_pred_union(cudaStream_t s, int32_t *list, int32_t *count, const uint32_t *mask, uint32_t n,
                            const uint32_t *hot, uint32_t rows);

#endif
