/* The generation flags shared by `pid run` and `pictl generate`, parsed in
 * one place so both accept exactly the same spellings and ranges
 * (docs/sampling.md describes each flag). */
#ifndef PI_GEN_PARAMS_H
#define PI_GEN_PARAMS_H

#include <stdint.h>

#include "pi_error.h"

typedef struct gen_params {
    int32_t n_predict;      /* tokens to generate (not counting the prompt); >= 0 */
    float temperature;      /* 0 = greedy */
    int32_t top_k;          /* 0 = off */
    float top_p;            /* (0, 1]; 1 = off */
    float min_p;            /* [0, 1]; 0 = off */
    float repeat_penalty;   /* > 0; 1 = off */
    int32_t repeat_last_n;  /* >= 0; tokens of history the penalty looks at */
    uint64_t seed;          /* valid when has_seed */
    int has_seed;           /* 0 = pick a random seed and report it */
} gen_params;

/* The defaults: -n 128, temp 0.8, top-k 40, top-p 0.95, min-p 0.05,
 * repeat-penalty 1.0, repeat-last-n 64, no seed. */
void gen_params_default(gen_params *g);

/* If argv[*i] is one of the generation flags (-n/--n-predict, --temp,
 * --top-k, --top-p, --min-p, --repeat-penalty, --repeat-last-n, --seed;
 * "--flag VALUE" or "--flag=VALUE"), stores its value, leaves *i on the
 * last argument it consumed (the value, or the flag itself for --flag=VALUE,
 * so a caller's `for (i = 1; i < argc; i++)` loop moves on) and returns 1. Returns 0 (nothing consumed) for any other argument,
 * and -1 with err naming the flag and its accepted range when the value is
 * missing or bad. */
int gen_params_parse_flag(gen_params *g, int argc, char **argv, int *i, pi_error *err);

/* One line per flag with its default, for usage messages. */
const char *gen_params_usage(void);

#endif
