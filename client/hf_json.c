/* JSON files of a checkpoint folder (hf_json.h). */
#include "hf_json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whole file into a NUL-terminated buffer, or NULL with err. */
static char *slurp(const char *path, int *missing, pi_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *missing = errno == ENOENT;
        pi_error_set(err, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                pi_error_set(err, "%s: out of memory", path);
                return NULL;
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        pi_error_set(err, "%s: read error", path);
        return NULL;
    }
    buf[len] = 0;
    return buf;
}

cJSON *hf_json_load(const char *dir, const char *name, int optional, int *missing, pi_error *err)
{
    char path[4096];
    int miss = 0;
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) {
        pi_error_set(err, "%s: path too long", dir);
        return NULL;
    }
    pi_error tmp = {{0}};
    char *text = slurp(path, &miss, optional ? &tmp : err);
    if (missing)
        *missing = miss;
    if (!text) {
        if (optional && !miss)
            *err = tmp;
        if (!optional && miss)
            pi_error_set(err, "%s is missing: give a Hugging Face checkpoint folder (config.json, "
                         "*.safetensors, tokenizer.json)", path);
        return NULL;
    }
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j) {
        if (missing)
            *missing = 0;
        pi_error_set(err, "%s: not valid JSON", path);
    }
    return j;
}

int64_t hf_json_int(const cJSON *obj, const char *key, int64_t def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > 9e15)
        return def;
    return (int64_t)v->valuedouble;
}

double hf_json_num(const cJSON *obj, const char *key, double def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

const char *hf_json_str(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}
