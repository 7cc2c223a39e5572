/* The sparse sidecar `<model>.pi-sparse.gguf` (docs/formats.md, "pi sparse
 * sidecar"): per-layer FFN neuron activation frequencies, optional
 * PowerInfer-style predictors (x -> relu(fc1 x) -> fc2 -> logits; a logit
 * > threshold = neuron active) and provenance, tied to one model file by a
 * fast hash of that file. Written by `pictl model profile` and the
 * predictor trainer; read by the placement solver and the workers. */
#ifndef PI_SIDECAR_H
#define PI_SIDECAR_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "model.h"
#include "pi_error.h"

#define SIDECAR_VERSION 1u
#define SIDECAR_ARCH "pi-sparse"

typedef struct pi_sidecar {
    uint32_t n_layers, n_ff, dim;   /* the model's */
    float threshold;                /* predictor logit > threshold = active */
    /* provenance */
    char corpus[256];               /* what was profiled (path or name) */
    uint64_t tokens;                /* tokens profiled */
    char date[32];                  /* ISO 8601 UTC, e.g. 2025-01-31T12:00:00Z */
    char model_hash[17];            /* sidecar_model_hash of the model file, 16 hex digits */
    char model_path[512];
    float *freq;                    /* n_layers x n_ff, in [0, 1]; owned */
    /* predictor per layer: fc1 R x dim, fc2 n_ff x R (R may differ per
     * layer); data NULL when absent. Opened: points into the file. Built by
     * a caller: the caller's memory, which must live until sidecar_write. */
    pi_tensor *fc1, *fc2;           /* n_layers each; owned arrays */
    int has_predictor;              /* every layer has fc1 and fc2 */
    gguf_file *file;                /* the opened sidecar, or NULL; owned */
} pi_sidecar;

/* An empty sidecar for model m: frequencies 0, no predictor, threshold 0,
 * model_hash/model_path of m's file, date = now. Caller owns: sidecar_free. */
pi_sidecar *sidecar_new(const pi_model *m, pi_error *err);
void sidecar_free(pi_sidecar **s);

/* Writes path atomically. Fails naming the layer when a predictor's shapes
 * do not fit (fc1 cols = dim, fc2 cols = fc1 rows, fc2 rows = n_ff) or a
 * frequency is outside [0, 1]. */
int sidecar_write(const pi_sidecar *s, const char *path, pi_error *err);

/* Opens and validates a sidecar. With m, also checks that it was made for
 * m ("sidecar X was made for another model (hash ...)") and that its shapes
 * match; m NULL skips those checks (inspection tools). */
pi_sidecar *sidecar_open(const char *path, const pi_model *m, pi_error *err);

/* Frequencies of layer l (n_ff floats), or NULL when l is out of range. */
const float *sidecar_freq(const pi_sidecar *s, uint32_t l);
/* Predictor tensors of layer l, or NULL when absent or l out of range. */
const pi_tensor *sidecar_fc1(const pi_sidecar *s, uint32_t l);
const pi_tensor *sidecar_fc2(const pi_sidecar *s, uint32_t l);

/* The sidecar path of a model: a trailing ".gguf" is replaced by
 * ".pi-sparse.gguf" (m.gguf -> m.pi-sparse.gguf), else ".pi-sparse.gguf" is
 * appended. 0, or -1 when it does not fit in cap bytes. */
int sidecar_path_for(const char *model_path, char *buf, size_t cap);

/* 64-bit FNV-1a, as 16 lowercase hex digits, over the file's header and
 * tensor infos (everything before the data section), the first and last MiB
 * of the data section and the file size: cheap for 26 GB files, and any
 * re-conversion, re-quantization or different model changes it. */
void sidecar_model_hash(const gguf_file *f, char out[17]);

/* model_open, then, when the file has no predictor but its sparse sidecar
 * (sidecar_path_for) was made for it and holds one (scripts/train_predictor.py
 * writes it there), the sidecar's predictor and threshold are used. A
 * sidecar that is absent, for another model or without a predictor is
 * ignored (pictl model inspect/plan report on it). */
pi_model *model_open_sparse(const char *path, pi_error *err);

#endif
