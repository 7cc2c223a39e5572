/* Activation profiling (`pictl model profile`): runs the dense reference
 * forward over a corpus and counts, per layer, how often each FFN neuron is
 * active; optionally dumps (x_norm, active set) pairs for the predictor
 * trainer. docs/formats.md ("pi sparse sidecar", "predictor training
 * pairs") describes what it writes.
 *
 * "Active": for ReLU-family models (relu, relu_both) a neuron is active when
 * its activation h = act(gate.x) * up.x is non-zero, i.e. its ReLU fired
 * (h may be negative when up.x < 0; it still has to be computed). For SiLU
 * models no activation is exactly zero, so a neuron counts as active when
 * |h| > 1e-3 * max_j |h_j| over the same token's layer. */
#ifndef PI_PROFILE_H
#define PI_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "pi_error.h"
#include "sidecar.h"
#include "tokenizer.h"

#define PROFILE_SILU_REL 1e-3f
#define PROFILE_DEFAULT_WINDOW 256u
#define PROFILE_PAIRS_MAGIC "PIPAIRS1"

/* 1 if activation h of a neuron counts as active, given max |h| of its token's layer. */
int profile_is_active(pi_act act, float h, float max_abs_h);

/* Reads the corpus at path (a ".xz" name is decompressed through `xz -dc`;
 * a clear error when xz cannot be run) in line-aligned chunks, tokenizes
 * each chunk without BOS and stops once max_tokens tokens are collected
 * (0 = the whole corpus). *ids is malloc'd, caller frees. */
int profile_tokenize_corpus(const char *path, const tokenizer *tok, uint64_t max_tokens, int32_t **ids,
                            size_t *n_ids, pi_error *err);

/* Called after every window with the tokens done and the total. */
typedef void (*profile_progress_fn)(void *ud, uint64_t done, uint64_t total);

typedef struct profile_opts {
    uint32_t window;            /* positions per window, BOS included; the KV restarts each window; 0 = 256 */
    int32_t bos;                /* token put at position 0 of every window; < 0 = none */
    uint64_t max_tokens;        /* forward passes (BOS included) to run; 0 = every corpus token */
    const char *pairs_path;     /* training pairs file, NULL = none */
    uint32_t pairs_per_layer;   /* tokens sampled evenly over the run for pairs; 0 = none */
    uint32_t threads;           /* windows run at once, each on its own thread; 0 = the CPUs it may use.
                                   The result does not depend on it. */
    profile_progress_fn progress;
    void *progress_ud;
} profile_opts;

/* Runs m over ids (windows as opts say), writes frequencies (active count /
 * tokens) into sc->freq and the token count into sc->tokens; the caller
 * sets the other provenance and writes the sidecar. */
int profile_run(const pi_model *m, const int32_t *ids, size_t n_ids, const profile_opts *opts, pi_sidecar *sc,
                pi_error *err);

/* Forward passes profile_run makes for n_ids corpus tokens under opts. */
uint64_t profile_total_tokens(size_t n_ids, const profile_opts *opts);

#endif
