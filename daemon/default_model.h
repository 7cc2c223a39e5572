/* The model pid and pictl use when no -m is given: $PI_MODEL, else the one
 * committed in the source tree (models/, MODEL_CARD.md there). */
#ifndef PI_DAEMON_DEFAULT_MODEL_H
#define PI_DAEMON_DEFAULT_MODEL_H

const char *default_model_path(void);

#endif
