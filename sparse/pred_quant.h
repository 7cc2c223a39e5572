/* The predictors held in another type than the file's: --predictor-type
 * q8_0 turns F16/F32/BF16 fc1 and fc2 into Q8_0 (1.06 bytes a weight, about
 * half of F16), so a GPU budget keeps more hot neurons and the predictor
 * reads fewer bytes a layer. A logit moves by Q8_0's rounding, so a neuron
 * within that of the threshold may be predicted otherwise than with the
 * file's weights: pi's greedy text may part from the F16 predictor's. pid
 * only checks the widths and plans with the Q8_0 bytes (plan_params.pred_q8);
 * the GPU worker, which predicts on either backend, converts. */
#ifndef PI_PRED_QUANT_H
#define PI_PRED_QUANT_H

#include "model.h"
#include "pi_error.h"

/* "file" (as stored) -> -1, "q8_0" -> PI_TYPE_Q8_0; -1 with err otherwise. */
int predictor_type_parse(const char *s, int *type, pi_error *err);

/* 0 when every layer's fc1 and fc2 can be held as type (PI_TYPE_Q8_0, or -1:
 * as stored); else -1 with err naming the layer and tensor whose width is
 * not a multiple of Q8_0's 32. */
int predictor_requant_check(const pi_model *m, int type, pi_error *err);

/* Every layer's fc1 and fc2 (the model file's or its sidecar's) as type
 * (PI_TYPE_Q8_0; -1 does nothing), in one buffer m owns (model_close frees
 * it), converted over threads. Tensors already of that type stay. Checked
 * first (predictor_requant_check): on an error nothing is converted. */
int predictor_requant(pi_model *m, int type, pi_error *err);

/* The shapes predictor_requant gives (each converted tensor's type and
 * row_bytes), its bytes not converted: data still points at the file's,
 * which must then never be read as the new type. For a GPU worker that
 * takes a kept CUDA arena holding the converted predictors already (a
 * restart: seconds of CPU saved); if that arena is not taken after all,
 * the model must be opened again and converted for real. 1 (nothing
 * changed) where a new type would take more bytes than the file's. */
int predictor_requant_layout(pi_model *m, int type, pi_error *err);

#endif
