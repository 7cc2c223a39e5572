/* The model pid and pictl use when no -m is given: $PI_MODEL, else the one
 * committed in the source tree (models/, MODEL_CARD.md there). */
#ifndef PI_DAEMON_DEFAULT_MODEL_H
#define PI_DAEMON_DEFAULT_MODEL_H

#include <stddef.h>

#include "pi_error.h"

const char *default_model_path(void);

/* The default model's path into out (cap bytes); -1 with what to do when
 * the file is not there (or the path does not fit). */
int default_model_pick(char *out, size_t cap, pi_error *err);

#endif
