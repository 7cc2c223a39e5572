/* Bytes over a model's shapes that the placement plan (plan.h) and the
 * placement solver (placement.h) both count: the GPU's fixed part, the
 * predictors and one neuron's rows. Split out of plan.h so that placement
 * needs no plan.h: plan builds on placement, not the other way round. */
#ifndef PI_PLAN_BYTES_H
#define PI_PLAN_BYTES_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* GPU bytes of the fixed part alone (weights + KV), for messages and tests. */
uint64_t plan_weight_bytes(const pi_model *m);
uint64_t plan_kv_bytes(const pi_model *m, uint32_t max_seqs, uint32_t n_ctx);     /* fp32 (host backend) */
uint64_t plan_kv_bytes_elem(const pi_model *m, uint32_t max_seqs, uint32_t n_ctx, uint32_t elem_bytes);

/* Bytes of one predictor tensor as the GPU worker holds it: in its type,
 * or with q8 (--predictor-type q8_0, sparse/pred_quant.h) as Q8_0 when
 * its width allows (predictor_requant_check refuses the others before). */
uint64_t plan_pred_tensor_bytes(const pi_tensor *t, int q8);
/* Bytes of the model's predictors (fc1 + fc2 of every layer, as
 * plan_pred_tensor_bytes counts them), which the CUDA backend holds for
 * --ffn predicted; 0 without. */
uint64_t plan_predictor_bytes(const pi_model *m, int q8);

/* ---- the neuron layout (shared by the host backend and the CPU shards) ---- */

/* Type of a down^T row for a down tensor of type t. */
pi_type plan_down_t_type(pi_type t);
/* Bytes of the gate row, up row and down^T row of one neuron of layer l. */
size_t plan_neuron_bytes_layer(const pi_model *m, uint32_t l);

#endif
