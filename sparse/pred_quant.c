/* Predictors in another type (pred_quant.h). */
#include "pred_quant.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pi_parallel.h"
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

#define REQUANT_MAX_THREADS 16

/* Layers t, t + nt, ... of m, both tensors, into buf at offs[l]; row:
 * scratch of the widest tensor's columns. */
typedef struct requant_job {
    pi_model *m;
    int type;
    unsigned char *buf;
    const uint64_t *offs;
    uint32_t t, nt;
    float *row;
} requant_job;

static void *requant_thread(void *arg)
{
    requant_job *j = arg;
    for (uint32_t l = j->t; l < j->m->n_layers; l += j->nt) {
        pi_tensor *ts[2] = {&j->m->layers[l].pred_fc1, &j->m->layers[l].pred_fc2};
        uint64_t off = j->offs[l];
        for (int k = 0; k < 2; k++) {
            int64_t b = new_bytes(ts[k], j->type);
            if (b > 0) {    /* widths checked before */
                convert(ts[k], j->type, (size_t)b / ts[k]->rows, j->buf + off, j->row);
                off += (uint64_t)b;
            }
        }
    }
    return NULL;
}

int predictor_requant_check(const pi_model *m, int type, pi_error *err)
{
    if (type < 0 || !m->has_predictor)
        return 0;
    if (type != PI_TYPE_Q8_0)
        return pi_error_set(err, "predictor type %d: only q8_0 is supported", type);
    for (uint32_t l = 0; l < m->n_layers; l++)
        for (int k = 0; k < 2; k++) {
            const pi_tensor *t = k ? &m->layers[l].pred_fc2 : &m->layers[l].pred_fc1;
            if (new_bytes(t, type) < 0)
                return pi_error_set(err, "layer %u: the predictor's %s has %llu columns, not a multiple of 32: "
                                         "it cannot be held as q8_0 (use --predictor-type file)", l,
                                    k ? "fc2" : "fc1", (unsigned long long)t->cols);
        }
    return 0;
}

/* 1 when m's predictors are to become type, 0 when nothing is to be done,
 * -1 with err when they cannot (a width) or were converted already. */
static int requant_wanted(const pi_model *m, int type, pi_error *err)
{
    if (predictor_requant_check(m, type, err) < 0)
        return -1;
    if (type < 0 || !m->has_predictor)
        return 0;
    if (m->pred_owned)
        return pi_error_set(err, "the predictors were converted already");
    return 1;
}

/* A sidecar's predictor: the placement counts its tensors, which the layer's copied. */
static void sidecar_follow(pi_model *m)
{
    pi_sidecar *sc = m->sidecar;
    for (uint32_t l = 0; sc && sc->has_predictor && l < m->n_layers && l < sc->n_layers; l++) {
        sc->fc1[l] = m->layers[l].pred_fc1;
        sc->fc2[l] = m->layers[l].pred_fc2;
    }
}

int predictor_requant(pi_model *m, int type, pi_error *err)
{
    int want = requant_wanted(m, type, err);
    if (want <= 0)
        return want;
    /* where each layer's tensors go, in layer order; then the layers over threads (one thread takes ~0.2 s a
     * 13B layer, ~9 s for 40); everything allocated before anything is converted */
    uint64_t *offs = malloc((size_t)(m->n_layers ? m->n_layers : 1) * sizeof *offs);
    if (!offs)
        return pi_error_set(err, "out of memory");
    uint64_t total = 0, widest = 0;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const pi_tensor *ts[2] = {&m->layers[l].pred_fc1, &m->layers[l].pred_fc2};
        offs[l] = total;
        for (int k = 0; k < 2; k++) {
            total += (uint64_t)new_bytes(ts[k], type);  /* >= 0: checked */
            widest = ts[k]->cols > widest ? ts[k]->cols : widest;
        }
    }
    /* the CPUs this process may run on (a pinned GPU worker has 3), not all online */
    uint32_t cpus = pi_cpus_usable();
    uint32_t nt = cpus > REQUANT_MAX_THREADS ? REQUANT_MAX_THREADS : cpus;
    nt = nt > m->n_layers ? (m->n_layers ? m->n_layers : 1) : nt;
    unsigned char *buf = total ? malloc(total) : NULL;
    float *rows = malloc((size_t)nt * widest * sizeof *rows);
    if (total == 0 || !buf || !rows) {
        free(offs);
        free(buf);
        free(rows);
        return total == 0 ? 0 : pi_error_set(err, "out of memory for the q8_0 predictors (%llu bytes)",
                                             (unsigned long long)total);
    }
    requant_job jobs[REQUANT_MAX_THREADS];
    for (uint32_t t = 0; t < nt; t++)
        jobs[t] = (requant_job){m, type, buf, offs, t, nt, rows + (size_t)t * widest};
    pi_parallel(requant_thread, jobs, sizeof jobs[0], nt);
    free(offs);
    free(rows);
    sidecar_follow(m);
    m->pred_owned = buf;
    return 0;
}

int predictor_requant_layout(pi_model *m, int type, pi_error *err)
{
    int want = requant_wanted(m, type, err);
    if (want <= 0)
        return want;
    /* only where the new bytes are no more than the file's: whatever reads them then stays inside the file */
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const pi_tensor *ts[2] = {&m->layers[l].pred_fc1, &m->layers[l].pred_fc2};
        for (int k = 0; k < 2; k++)
            if (new_bytes(ts[k], type) > (int64_t)(ts[k]->rows * ts[k]->row_bytes))
                return 1;
    }
    for (uint32_t l = 0; l < m->n_layers; l++) {
        pi_tensor *ts[2] = {&m->layers[l].pred_fc1, &m->layers[l].pred_fc2};
        for (int k = 0; k < 2; k++) {
            int64_t b = new_bytes(ts[k], type);
            if (b > 0) {
                ts[k]->type = (pi_type)type;
                ts[k]->row_bytes = (size_t)b / ts[k]->rows;
            }
        }
    }
    sidecar_follow(m);
    return 0;
}
