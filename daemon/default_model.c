/* default_model.h */
#include "default_model.h"

#include <stdlib.h>

#ifndef PI_DEFAULT_MODEL
#define PI_DEFAULT_MODEL "models/pi-tiny-gutenberg.gguf"
#endif

const char *default_model_path(void)
{
    const char *env = getenv("PI_MODEL");
    return env && *env ? env : PI_DEFAULT_MODEL;
}
