/* default_model.h */
#include "default_model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef PI_DEFAULT_MODEL
#define PI_DEFAULT_MODEL "models/pi-tiny-gutenberg.gguf"
#endif

const char *default_model_path(void)
{
    const char *env = getenv("PI_MODEL");
    return env && *env ? env : PI_DEFAULT_MODEL;
}

int default_model_pick(char *out, size_t cap, pi_error *err)
{
    const char *p = default_model_path();
    if (access(p, R_OK) != 0)
        return pi_error_set(err, "no model given (-m MODEL) and the default model %s cannot be read (%s); "
                                 "give -m, set PI_MODEL, or make the default with scripts/train/all.sh "
                                 "(models/MODEL_CARD.md)", p, strerror(errno));
    if ((size_t)snprintf(out, cap, "%s", p) >= cap)
        return pi_error_set(err, "the default model's path %s is longer than %zu bytes", p, cap - 1);
    return 0;
}
