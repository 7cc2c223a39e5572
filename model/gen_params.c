#include "gen_params.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void gen_params_default(gen_params *g)
{
    g->n_predict = 128;
    g->temperature = 0.8f;
    g->top_k = 40;
    g->top_p = 0.95f;
    g->min_p = 0.05f;
    g->repeat_penalty = 1.0f;
    g->repeat_last_n = 64;
    g->seed = 0;
    g->has_seed = 0;
}

const char *gen_params_usage(void)
{
    return "  -n, --n-predict N     tokens to generate, not counting the prompt (default 128)\n"
           "  --temp T              temperature; 0 = greedy (default 0.8)\n"
           "  --top-k K             keep the K most likely tokens; 0 = off (default 40)\n"
           "  --top-p P             keep the smallest set with probability >= P; 1 = off (default 0.95)\n"
           "  --min-p M             drop tokens with p < M * p_max; 0 = off (default 0.05)\n"
           "  --repeat-penalty R    penalise tokens seen recently; 1 = off (default 1.0)\n"
           "  --repeat-last-n N     how many recent tokens the penalty sees (default 64)\n"
           "  --seed S              random seed, 0..2^64-1 (default: random, reported)\n";
}

enum kind { K_INT, K_FLOAT, K_SEED };

typedef struct flag_def {
    const char *name, *alias;
    enum kind kind;
    double lo, hi;          /* inclusive range */
    int lo_open;            /* lo itself is excluded */
    const char *range;      /* for the error message */
} flag_def;

static const flag_def flags[] = {
    {"--n-predict", "-n", K_INT, 0, 1e9, 0, "an integer >= 0"},
    {"--temp", NULL, K_FLOAT, 0, 1e6, 0, "a number >= 0 (0 = greedy)"},
    {"--top-k", NULL, K_INT, 0, 2147483647.0, 0, "an integer >= 0 (0 = off)"},
    {"--top-p", NULL, K_FLOAT, 0, 1, 1, "a number in (0, 1]"},
    {"--min-p", NULL, K_FLOAT, 0, 1, 0, "a number in [0, 1]"},
    {"--repeat-penalty", NULL, K_FLOAT, 0, 1e6, 1, "a number > 0 (1 = off)"},
    {"--repeat-last-n", NULL, K_INT, 0, 2147483647.0, 0, "an integer >= 0"},
    {"--seed", NULL, K_SEED, 0, 0, 0, "an integer in 0..18446744073709551615"},
};

static void store(gen_params *g, size_t which, double d, uint64_t u)
{
    switch (which) {
    case 0: g->n_predict = (int32_t)d; break;
    case 1: g->temperature = (float)d; break;
    case 2: g->top_k = (int32_t)d; break;
    case 3: g->top_p = (float)d; break;
    case 4: g->min_p = (float)d; break;
    case 5: g->repeat_penalty = (float)d; break;
    case 6: g->repeat_last_n = (int32_t)d; break;
    case 7: g->seed = u; g->has_seed = 1; break;
    }
}

/* Parses value for flag f into *d / *u; 0 or -1. */
static int parse_value(const flag_def *f, const char *value, double *d, uint64_t *u)
{
    char *end = NULL;
    if (!*value)
        return -1;
    errno = 0;
    if (f->kind == K_SEED) {
        if (value[0] == '-' || value[0] == '+' || value[0] == ' ')
            return -1;
        unsigned long long v = strtoull(value, &end, 10);
        if (errno || *end)
            return -1;
        *u = (uint64_t)v;
        return 0;
    }
    if (f->kind == K_INT) {
        long long v = strtoll(value, &end, 10);
        if (errno || *end)
            return -1;
        *d = (double)v;
    } else {
        *d = strtod(value, &end);
        if (errno || *end || !isfinite(*d))
            return -1;
    }
    if (*d < f->lo || *d > f->hi || (f->lo_open && *d == f->lo))
        return -1;
    return 0;
}

int gen_params_parse_flag(gen_params *g, int argc, char **argv, int *i, pi_error *err)
{
    const char *arg = argv[*i];
    for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++) {
        const flag_def *f = &flags[k];
        size_t n = strlen(f->name);
        const char *value = NULL;
        int inline_value = 0;
        if (!strcmp(arg, f->name) || (f->alias && !strcmp(arg, f->alias))) {
            if (*i + 1 >= argc)
                return pi_error_set(err, "%s needs a value: %s", arg, f->range);
            value = argv[*i + 1];
        } else if (!strncmp(arg, f->name, n) && arg[n] == '=') {
            value = arg + n + 1;
            inline_value = 1;
        } else {
            continue;
        }
        double d = 0;
        uint64_t u = 0;
        if (parse_value(f, value, &d, &u) < 0)
            return pi_error_set(err, "%s: bad value '%s': expected %s",
                                inline_value ? f->name : arg, value, f->range);
        store(g, k, d, u);
        if (!inline_value)
            *i += 1;
        return 1;
    }
    return 0;
}
