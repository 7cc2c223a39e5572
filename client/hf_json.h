/* JSON files of a Hugging Face checkpoint folder, parsed with cJSON. */
#ifndef PI_HF_JSON_H
#define PI_HF_JSON_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "pi_error.h"

/* Parses dir/name. A missing file gives NULL with err unless optional, then
 * NULL with err untouched (tell the cases apart with *missing). The caller
 * frees the result with cJSON_Delete. */
cJSON *hf_json_load(const char *dir, const char *name, int optional, int *missing, pi_error *err);
/* Integer member key of obj, or def when absent or not a number. */
int64_t hf_json_int(const cJSON *obj, const char *key, int64_t def);
double hf_json_num(const cJSON *obj, const char *key, double def);
/* String member, or NULL. */
const char *hf_json_str(const cJSON *obj, const char *key);

#endif
