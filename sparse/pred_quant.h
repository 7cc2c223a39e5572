/* The predictors held in another type than the file's: --predictor-type
 * q8_0 turns F16/F32/BF16 fc1 and fc2 into Q8_0 (1.06 bytes a weight, about
 * half of F16), so a GPU budget keeps more hot neurons and the predictor
 * reads fewer bytes a layer. A logit moves by Q8_0's rounding, so a neuron
 * within that of the threshold may be predicted otherwise than with the
 * file's weights: pi's greedy text may part from the F16 predictor's. Every
 * process that plans or predicts (pid, the GPU worker) converts the same
 * way, so the plan's bytes and both backends agree. */
#ifndef PI_PRED_QUANT_H
#define PI_PRED_QUANT_H

#include "model.h"
#include "pi_error.h"

/* "file" (as stored) -> -1, "q8_0" -> PI_TYPE_Q8_0; -1 with err otherwise. */
int predictor_type_parse(const char *s, int *type, pi_error *err);
/* The name predictor_type_parse takes for type. */
const char *predictor_type_name(int type);

/* Every layer's fc1 and fc2 (the model file's or its sidecar's) as type
 * (PI_TYPE_Q8_0; -1 does nothing), in one buffer m owns (model_close frees
 * it). Tensors already of that type stay. The predictor's widths must be
 * multiples of Q8_0's 32: an error names the layer otherwise. */
int predictor_requant(pi_model *m, int type, pi_error *err);

#endif
