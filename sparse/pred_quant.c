/* Predictors in another type (pred_quant.h). */
#include "pred_quant.h"

#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "sidecar.h"

int predictor_type_parse(const char *s, int *type, pi_error *err)
{
    if (!strcmp(s, "file"))
        *type = -1;
    else if (!strcmp(s, "q8_0"))
        *type = PI_TYPE_Q8_0;
    else
        return pi_error_set(err, "predictor type '%s': expected 'file' (as the model stores it) or 'q8_0'", s);
    return 0;
}

const char *predictor_type_name(int type)
{
    return type == PI_TYPE_Q8_0 ? "q8_0" : "file";
}

/* Bytes of t as type, 0 when it stays as it is; -1 when its width does not fit. */
static int64_t new_bytes(const pi_tensor *t, int type)
{
    size_t rb;
    if (!t->data || (int)t->type == type)
        return 0;
    if (pi_row_bytes((pi_type)type, t->cols, &rb) < 0)
        return -1;
    return (int64_t)(rb * t->rows);
}

/* t's rows dequantized and quantized as type (rows of rb bytes) into dst;
 * t then points there. */
static void convert(pi_tensor *t, int type, size_t rb, unsigned char *dst, float *row)
{
    for (uint64_t r = 0; r < t->rows; r++) {
        pi_dequantize_row(t->type, pi_tensor_row(t, r), row, (size_t)t->cols);
        pi_quantize_row((pi_type)type, row, dst + r * rb, (size_t)t->cols);
    }
    t->type = (pi_type)type;
    t->row_bytes = rb;
    t->data = dst;
}

int predictor_requant(pi_model *m, int type, pi_error *err)
{
    if (type < 0 || !m->has_predictor)
        return 0;
    if (type != PI_TYPE_Q8_0)
        return pi_error_set(err, "predictor type %d: only q8_0 is supported", type);
    if (m->pred_owned)
        return pi_error_set(err, "the predictors were converted already");
    uint64_t total = 0, widest = 0;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const pi_tensor *ts[2] = {&m->layers[l].pred_fc1, &m->layers[l].pred_fc2};
        for (int k = 0; k < 2; k++) {
            int64_t b = new_bytes(ts[k], type);
            if (b < 0)
                return pi_error_set(err, "layer %u: the predictor's %s has %llu columns, not a multiple of 32: "
                                         "it cannot be held as q8_0 (use --predictor-type file)", l,
                                    k ? "fc2" : "fc1", (unsigned long long)ts[k]->cols);
            total += (uint64_t)b;
            widest = ts[k]->cols > widest ? ts[k]->cols : widest;
        }
    }
    if (total == 0)
        return 0;
    unsigned char *buf = malloc(total);
    float *row = malloc((widest ? widest : 1) * sizeof *row);
    if (!buf || !row) {
        free(buf);
        free(row);
        return pi_error_set(err, "out of memory for the q8_0 predictors (%llu bytes)", (unsigned long long)total);
    }
    pi_sidecar *sc = m->sidecar;
    uint64_t off = 0;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        pi_tensor *ts[2] = {&m->layers[l].pred_fc1, &m->layers[l].pred_fc2};
        for (int k = 0; k < 2; k++) {
            int64_t b = new_bytes(ts[k], type);
            if (b > 0) {    /* widths checked above */
                convert(ts[k], type, (size_t)b / ts[k]->rows, buf + off, row);
                off += (uint64_t)b;
            }
        }
        /* a sidecar's predictor: the placement counts its tensors, which the layer's copied */
        if (sc && sc->has_predictor && l < sc->n_layers) {
            sc->fc1[l] = m->layers[l].pred_fc1;
            sc->fc2[l] = m->layers[l].pred_fc2;
        }
    }
    free(row);
    m->pred_owned = buf;
    return 0;
}
