// Weights on the device in the model's own types, and the kernels that read
// them (cuda_matvec.cu): matrix-vector products for a batch of entries, the
// hot FFN (dense and over active lists) and the embedding lookup. Every
// product accumulates in fp32 over the same dequantized values as the host's
// pi_dot_row, so results differ from it by summation order only.
#ifndef PI_CUDA_MATVEC_CUH
#define PI_CUDA_MATVEC_CUH

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "backend.h"
}

// Entries per step the kernels handle (the active-list argument is passed by
// value with one slot per entry).
#define CUDA_MAX_BATCH 64
// Rows of dim floats of split-K scratch for the down product (cuda_ffn_down).
#define CUDA_DOWN_PART_ROWS 256

// A rows x cols matrix on the device. F32/F16/BF16: rows of cols elements,
// row-major. The block types are split so that every row's quants start
// 16-byte aligned: first the quant part of every row (cuda_mat_quant_bytes a
// row), then the scale part of every row (the rest of the model's row bytes)
// at `scales`. Either way the allocation is rows * the model's row bytes:
// the plan's count. Per 32 elements (a chunk: 16 bytes of nibbles hold
// element t in the low and t + 16 in the high nibble of byte t, for Q4_0 and
// the K-quants alike):
//   Q8_0  quants 32 int8;                  scales fp16 d per 32
//   Q4_0  quants 16 bytes of nibbles;      scales fp16 d per 32
//   Q4_K  quants 16 bytes of nibbles;      scales per 256: the file's 16-byte
//         header (fp16 d, dmin, 12 bytes of packed 6-bit scales and mins)
//   Q5_K  quants as Q4_K, then (after the row's nibbles) 4 bytes per 32 of
//         fifth bits (bit t = element t); scales as Q4_K
//   Q6_K  quants as Q4_K (low 4 bits), then (after the row's nibbles) 8
//         bytes per 32 of top 2 bits (bits 2t, 2t + 1 = element t);
//         scales per 256: the file's 16 int8 scales and fp16 d (18 bytes)
// (cuda_mat_stage_row writes this from the file's blocks.)
//
// Warm rows: when hdata is set, rows [nv, rows) live in pinned, mapped host
// memory (hdata/hscales, laid out as above for rows - nv rows) and the
// kernels read them over PCIe; rows [0, nv) are at data. hdata NULL (a
// zeroed cuda_mat): every row is at data.
struct cuda_mat {
    int type;               // pi_type
    uint32_t rows, cols;
    const unsigned char *data;
    const uint16_t *scales; // block types only: the scale parts (bytes for the K-quants)
    uint32_t nv;            // rows at data when hdata is set
    const unsigned char *hdata;
    const uint16_t *hscales;
};

// The active lists of one step (ffn_hot_active): list[i] is a device-readable
// pointer to count[i] global neuron ids (ascending) of entry i.
struct cuda_active {
    const int32_t *list[CUDA_MAX_BATCH];
    int32_t count[CUDA_MAX_BATCH];
};

// 1 when the kernels support t as a matrix type; cols must then be a
// multiple of cuda_mat_align(t) elements (16-byte loads; a K-quant's 256).
int cuda_mat_type_ok(int t);
uint32_t cuda_mat_align(int t);
// 1 when t can be a down^T matrix (F32, F16, BF16). A block-type model's
// down^T, K-quants included, is held as F32 (plan_down_t_type: what the plan
// counts for it), so down_t never needs a block type's wt<>.
int cuda_down_type_ok(int t);

// Bytes of one row's quant part in the device layout above (all of a float
// type's row); the rest of the model's row bytes is its scale part.
size_t cuda_mat_quant_bytes(int t, uint32_t cols);
// One row of cols elements in the model file's layout (src) into the device
// layout: its quant part at q, its scale part at s (nothing for float types).
void cuda_mat_stage_row(int t, const void *src, uint32_t cols, unsigned char *q, unsigned char *s);

// One-entry Q8_0 products (not the QKV with its rope epilogue) and the
// predictor's Q8_0 fc2 read a word of quants a lane, so x is read
// contiguously (PI_CUDA_Q8_NARROW=0: 16 bytes a lane, as the other kernels).

// Up to CUDA_MV_MAX matrices of one type and width that read the same x
// (Q, K and V): one launch computes y[k][i * ys[k] + r] = row r of w[k] . x_i.
#define CUDA_MV_MAX 3
struct cuda_mv_set {
    int count;
    cuda_mat w[CUDA_MV_MAX];
    float *y[CUDA_MV_MAX];
    uint32_t ys[CUDA_MV_MAX];
};
// What a product does with each output: store it, store max(0, .) (the
// predictor's hidden layer), or add it to what y holds (the residual add).
enum { CUDA_MV_STORE = 0, CUDA_MV_RELU = 1, CUDA_MV_ADD = 2 };
cudaError_t cuda_matvec_set(cudaStream_t s, const cuda_mv_set *set, const float *x, uint32_t x_stride, uint32_t n,
                            int mode);

// The rope epilogue of a Q, K, V product (cuda_matvec_qkv_rope).
struct cuda_qkv_rope {
    const gpu_entry *e;         // device: the step's entries (slot, position)
    const double *rope_inv;     // device: head_dim / 2 pair frequencies (cuda_rope_inv_freqs)
    __half *k_cache, *v_cache;  // [slot][layer][pos][kv_dim] fp16
    uint32_t head_dim, n_layers, n_ctx, layer;
};
// 1 when cuda_matvec_qkv_rope takes a step of n entries of this type and
// shape (the one-warp-a-row kernel), unless PI_CUDA_QKV_ROPE=0.
int cuda_qkv_rope_fusable(uint32_t n, int type, uint32_t dim, uint32_t kv_dim, uint32_t head_dim);
// set = {Q, K, V} of one type: cuda_matvec_set's product, then q's and k's
// rows rotated in pairs (2i, 2i + 1 of a head) by each entry's position and
// k's and v's rows stored into the caches at [slot][layer][pos]: what
// cuda_rope_store does after cuda_matvec_set, bit for bit, in one launch.
// cudaErrorNotSupported when not cuda_qkv_rope_fusable (nothing launched).
cudaError_t cuda_matvec_qkv_rope(cudaStream_t s, const cuda_mv_set *set, const float *x, uint32_t x_stride,
                                 uint32_t n, const cuda_qkv_rope *rope);

// y[i * y_stride + r] = row r of w . x[i * x_stride ..], r < w.rows, i < n.
cudaError_t cuda_matvec(cudaStream_t s, float *y, uint32_t y_stride, const cuda_mat *w, const float *x,
                        uint32_t x_stride, uint32_t n);
// The same, added: y[i * y_stride + r] += row r of w . x[..] (one add, as a
// residual add after the product would do it).
cudaError_t cuda_matvec_add(cudaStream_t s, float *y, uint32_t y_stride, const cuda_mat *w, const float *x,
                            uint32_t x_stride, uint32_t n);

// x[i * table.cols ..] = row e[i].token of table, dequantized, i < n.
cudaError_t cuda_embed_rows(cudaStream_t s, float *x, const cuda_mat *table, const gpu_entry *e, uint32_t n);

// coef[i * K + j] = act(gate_j . x_i, up_j . x_i) for every j < K = gate.rows.
// skip_dead (ReLU-family only): up is not read for a row whose gate is <= 0
// in every entry of a group (its activation is 0 anyway).
cudaError_t cuda_ffn_gate_up(cudaStream_t s, float *coef, const cuda_mat *gate, const cuda_mat *up,
                             const float *x, uint32_t n, int act, int skip_dead);

// Same for the active neurons only: coef must be zeroed first; for each
// listed id with a hot slot (map[id] >= 0, or id < K when map is NULL),
// coef[i * K + slot] = act(...), up skipped when the ReLU gate is <= 0.
cudaError_t cuda_ffn_gate_up_active(cudaStream_t s, float *coef, const cuda_mat *gate, const cuda_mat *up,
                                    const float *x, uint32_t n, const cuda_active *lists,
                                    uint32_t max_count, const int32_t *map, uint32_t n_ff, int act);

// out[i * dim + d] = sum_j coef[i * K + j] * down_t[j][d] (K = down_t.rows,
// dim = down_t.cols), skipping j whose coefficients are all 0; split over
// slices of j into part (CUDA_DOWN_PART_ROWS x dim floats), then summed in
// a fixed order (groups of 32 slices in order, then the groups in order), so
// results do not depend on scheduling. add: out += that sum
// (the residual add, when no CPU worker's part joins it).
cudaError_t cuda_ffn_down(cudaStream_t s, float *out, float *part, const cuda_mat *down_t, const float *coef,
                          uint32_t n, int add);

// The predictor's second layer, fc2 held as a cuda_mat (R = fc2.cols a
// multiple of cuda_mat_align): bit b of mask[i * words + w] =
// (fc2_{32w+b} . hidden_i > threshold), hidden (n x R) already ReLU'd. A
// warp reads each row once, coalesced (fast at PowerInfer's R = 1024);
// sums are in warp order, so a logit within rounding of the threshold may
// decide differently from the host's row-order sum. One entry: a warp takes
// several rows with all their loads in flight (the same bits;
// PI_CUDA_PRED_ROWS=0 gives warp per row).
cudaError_t cuda_pred_rows(cudaStream_t s, uint32_t *mask, const cuda_mat *fc2, const float *hidden, uint32_t n,
                           float threshold);

// The hot neurons of one --ffn predicted step as device-side data (so a
// captured graph replays for any prediction): list[0..*count) = ascending
// global ids that some entry predicted, every hot one among them (ids
// without a hot slot may be listed too: the kernels skip them; a one-entry
// step passes the entry's own list); mask = each entry's predicted bits
// (n x words).
struct cuda_union {
    const int32_t *list;
    const int32_t *count;
    const uint32_t *mask;
    uint32_t words;
};

// For every listed id with a hot slot and every entry i < n:
// coef[i * K + slot] = act(gate . x_i, up . x_i) when entry i predicted it
// (and, ReLU, its gate is > 0), else 0. Slots not listed are not written.
cudaError_t cuda_ffn_gate_up_union(cudaStream_t s, float *coef, const cuda_mat *gate, const cuda_mat *up,
                                   const float *x, uint32_t n, const cuda_union *u, const int32_t *map, int act);

// out[i * dim ..] = sum over the listed ids of coef[i * K + slot] * down_t[slot],
// split over a fixed number of slices of the list into part, summed in slice order
// (add: out += that sum, as cuda_ffn_down).
cudaError_t cuda_ffn_down_union(cudaStream_t s, float *out, float *part, const cuda_mat *down_t, const float *coef,
                                uint32_t n, const cuda_union *u, const int32_t *map, int add);

// The same FFN for one entry in one launch (then the slices' sum): each
// block computes the coefficients of its run of the list and adds their
// down^T rows at once (k_ffn_union1). The coefficients are
// cuda_ffn_gate_up_union's; the down sums are grouped in other slices, so
// out equals the two launches' to rounding. It takes gate, up and down^T of
// one type among F32, F16 and BF16 (cudaErrorNotSupported, nothing
// launched, otherwise); the step uses it when cuda_ffn_union_fusable: that,
// n = 1 unless PI_CUDA_FFN_FUSED=0 (measured on the H200, session 9: the hot
// FFN phase 1.34 -> 1.10 ms a token all in VRAM).
int cuda_ffn_union_fusable(uint32_t n, const cuda_mat *gate, const cuda_mat *up, const cuda_mat *down_t);
cudaError_t cuda_ffn_union_fused(cudaStream_t s, float *out, float *part, const cuda_mat *gate, const cuda_mat *up,
                                 const cuda_mat *down_t, const float *x, const cuda_union *u, const int32_t *map,
                                 int act, int add);

#endif
