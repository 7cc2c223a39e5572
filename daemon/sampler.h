/* Token sampler: repetition penalty, top-k, temperature softmax, top-p,
 * min-p, then a draw from a seeded PRNG the sampler owns (xoshiro256**), in
 * that order (docs/sampling.md). Temperature 0 is greedy. Every buffer is
 * allocated at sampler_new; sampling a token allocates nothing. */
#ifndef PI_SAMPLER_H
#define PI_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "gen_params.h"
#include "pi_error.h"

typedef struct sampler_params {
    float temperature;      /* 0 = greedy (argmax, lowest id on ties) */
    int32_t top_k;          /* 0 (or >= n_vocab) = off */
    float top_p;            /* (0, 1]; 1 = off */
    float min_p;            /* [0, 1]; 0 = off */
    float repeat_penalty;   /* > 0; 1 = off; applied in greedy mode too */
    int32_t repeat_last_n;  /* >= 0 */
    uint64_t seed;
    int has_seed;           /* 0 = seed from getrandom (or the clock) */
} sampler_params;

typedef struct sampler sampler;

/* The sampling part of the shared generation flags. */
void sampler_params_from_gen(sampler_params *p, const gen_params *g);

/* Validates p (ranges as in gen_params) and allocates for n_vocab tokens.
 * Caller owns the result: sampler_free. */
sampler *sampler_new(const sampler_params *p, uint32_t n_vocab, pi_error *err);
void sampler_free(sampler **s);

/* The seed in use (the given one, or the one picked), to report. */
uint64_t sampler_seed(const sampler *s);

/* Picks the next token from n_vocab logits, which it modifies in place
 * (penalty applied). history holds the tokens so far (prompt included),
 * oldest first; the penalty looks at its last repeat_last_n entries and
 * ignores ids out of range. NaN logits count as -inf. */
int32_t sampler_sample(sampler *s, float *logits, const int32_t *history, size_t n_history);

#endif
