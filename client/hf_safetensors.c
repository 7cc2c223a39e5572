/* safetensors files of a Hugging Face checkpoint (hf_safetensors.h). */
#include "hf_safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hf_json.h"
#include "quant.h"

/* A header longer than this is not a safetensors file (real ones are < 10 MB). */
#define HF_MAX_HEADER (100u << 20)

typedef struct st_file {
    char *path;
    void *map;
    size_t size;
} st_file;

struct hf_st {
    st_file *files;
    size_t n_files;
    hf_tensor *t;
    size_t n, cap;
};

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int dtype_of(const char *s, hf_dtype *d)
{
    if (!strcmp(s, "F32")) *d = HF_F32;
    else if (!strcmp(s, "F16")) *d = HF_F16;
    else if (!strcmp(s, "BF16")) *d = HF_BF16;
    else return -1;
    return 0;
}

static int add_tensor(hf_st *s, const st_file *f, const char *name, const cJSON *info, size_t data_start,
                      pi_error *err)
{
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(info, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(info, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(info, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return pi_error_set(err, "%s: tensor %s: header entry lacks dtype, shape or data_offsets "
                            "(not a safetensors file?)", f->path, name);
    hf_tensor t = {0};
    t.file = f->path;
    if (dtype_of(dt->valuestring, &t.dtype) < 0)
        return pi_error_set(err, "%s: tensor %s has dtype %s; import-hf reads F32, F16 and BF16: save the "
                            "checkpoint in one of those (e.g. torch_dtype=float16)", f->path, name, dt->valuestring);
    int nd = cJSON_GetArraySize(shape);
    if (nd > HF_MAX_DIMS)
        return pi_error_set(err, "%s: tensor %s has %d dimensions (at most %d)", f->path, name, nd, HF_MAX_DIMS);
    t.n_dims = (uint32_t)nd;
    size_t elems = 1, esz = t.dtype == HF_F32 ? 4 : 2;
    for (int i = 0; i < nd; i++) {
        const cJSON *d = cJSON_GetArrayItem(shape, i);
        if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 1e15)
            return pi_error_set(err, "%s: tensor %s: shape entry %d is not a size", f->path, name, i);
        t.shape[i] = (uint64_t)d->valuedouble;
        if (pi_mul_size(elems, (size_t)t.shape[i], &elems) < 0)
            return pi_error_set(err, "%s: tensor %s: shape overflows", f->path, name);
    }
    const cJSON *b = cJSON_GetArrayItem(offs, 0), *e = cJSON_GetArrayItem(offs, 1);
    if (!cJSON_IsNumber(b) || !cJSON_IsNumber(e) || b->valuedouble < 0 || e->valuedouble < b->valuedouble ||
        e->valuedouble > 1e18)
        return pi_error_set(err, "%s: tensor %s: bad data_offsets", f->path, name);
    size_t begin = (size_t)b->valuedouble, end = (size_t)e->valuedouble, want, abs_end;
    if (pi_mul_size(elems, esz, &want) < 0 || end - begin != want)
        return pi_error_set(err, "%s: tensor %s: data_offsets span %zu bytes but dtype %s and its shape need %zu",
                            f->path, name, end - begin, dt->valuestring, want);
    if (pi_add_size(data_start, end, &abs_end) < 0 || abs_end > f->size)
        return pi_error_set(err, "%s: tensor %s ends at byte %zu but the file has %zu: the file is truncated "
                            "(download it again)", f->path, name, data_start + end, f->size);
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        hf_tensor *nt = realloc(s->t, cap * sizeof *nt);
        if (!nt)
            return pi_error_set(err, "%s: out of memory", f->path);
        s->t = nt;
        s->cap = cap;
    }
    t.name = strdup(name);
    if (!t.name)
        return pi_error_set(err, "%s: out of memory", f->path);
    t.data = (const char *)f->map + data_start + begin;
    t.size = want;
    s->t[s->n++] = t;
    return 0;
}

/* Maps one file and indexes its tensors. */
static int load_file(hf_st *s, st_file *f, pi_error *err)
{
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return pi_error_set(err, "%s: %s", f->path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return pi_error_set(err, "%s: %s", f->path, strerror(e));
    }
    f->size = (size_t)st.st_size;
    if (f->size < 8) {
        close(fd);
        return pi_error_set(err, "%s: %zu bytes is shorter than the 8-byte header length: truncated", f->path,
                            f->size);
    }
    void *map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return pi_error_set(err, "%s: mmap: %s", f->path, strerror(errno));
    f->map = map;
    const unsigned char *p = map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | p[i];
    if (hlen > HF_MAX_HEADER || hlen > f->size - 8)
        return pi_error_set(err, "%s: header length %llu does not fit the file's %zu bytes: truncated or not "
                            "a safetensors file", f->path, (unsigned long long)hlen, f->size);
    cJSON *h = cJSON_ParseWithLength((const char *)p + 8, (size_t)hlen);
    if (!cJSON_IsObject(h)) {
        cJSON_Delete(h);
        return pi_error_set(err, "%s: the JSON header does not parse: truncated or not a safetensors file",
                            f->path);
    }
    int rc = 0;
    for (const cJSON *it = h->child; it && rc == 0; it = it->next)
        if (strcmp(it->string, "__metadata__") != 0)
            rc = add_tensor(s, f, it->string, it, 8 + (size_t)hlen, err);
    cJSON_Delete(h);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* File names from the index's weight_map (unique, sorted), or NULL with err. */
static char **names_from_index(const char *dir, const char *index_path, size_t *n, pi_error *err)
{
    cJSON *j = hf_json_load(dir, "model.safetensors.index.json", 0, NULL, err);
    if (!j)
        return NULL;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(j, "weight_map");
    if (!cJSON_IsObject(wm)) {
        cJSON_Delete(j);
        pi_error_set(err, "%s: no weight_map object: not a safetensors index", index_path);
        return NULL;
    }
    size_t cap = (size_t)cJSON_GetArraySize(wm) + 1;
    char **names = calloc(cap, sizeof *names);
    *n = 0;
    for (const cJSON *it = wm->child; names && it; it = it->next) {
        if (!cJSON_IsString(it) || strchr(it->valuestring, '/')) {
            pi_error_set(err, "%s: weight_map entry %s is not a file name in the folder", index_path, it->string);
            goto fail;
        }
        size_t k = 0;
        while (k < *n && strcmp(names[k], it->valuestring))
            k++;
        if (k == *n && !(names[(*n)++] = strdup(it->valuestring)))
            break;
    }
    if (!names || (*n && !names[*n - 1])) {
        pi_error_set(err, "%s: out of memory", index_path);
        goto fail;
    }
    cJSON_Delete(j);
    qsort(names, *n, sizeof *names, cmp_str);
    return names;
fail:
    cJSON_Delete(j);
    for (size_t i = 0; names && i < *n; i++)
        free(names[i]);
    free(names);
    return NULL;
}

/* Every *.safetensors in dir, sorted, or NULL with err. */
static char **names_from_dir(const char *dir, size_t *n, pi_error *err)
{
    DIR *d = opendir(dir);
    if (!d) {
        pi_error_set(err, "%s: %s", dir, strerror(errno));
        return NULL;
    }
    char **names = NULL;
    size_t cap = 0;
    *n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len <= 12 || strcmp(e->d_name + len - 12, ".safetensors"))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn)
                break;
            names = nn;
        }
        if (!(names[*n] = strdup(e->d_name)))
            break;
        (*n)++;
    }
    int oom = e != NULL;
    closedir(d);
    if (oom || *n == 0) {
        for (size_t i = 0; i < *n; i++)
            free(names[i]);
        free(names);
        if (oom)
            pi_error_set(err, "%s: out of memory", dir);
        else
            pi_error_set(err, "%s: no *.safetensors files (import-hf reads safetensors checkpoints; convert "
                         "pytorch_model.bin with transformers' save_pretrained(safe_serialization=True))", dir);
        return NULL;
    }
    qsort(names, *n, sizeof *names, cmp_str);
    return names;
}

hf_st *hf_st_open(const char *dir, pi_error *err)
{
    hf_st *s = calloc(1, sizeof *s);
    char *index = join(dir, "model.safetensors.index.json");
    if (!s || !index) {
        free(s);
        free(index);
        pi_error_set(err, "%s: out of memory", dir);
        return NULL;
    }
    size_t n = 0;
    char **names = access(index, F_OK) == 0 ? names_from_index(dir, index, &n, err) : names_from_dir(dir, &n, err);
    free(index);
    if (!names) {
        free(s);
        return NULL;
    }
    s->files = calloc(n, sizeof *s->files);
    int rc = s->files ? 0 : pi_error_set(err, "%s: out of memory", dir);
    for (size_t i = 0; i < n && rc == 0; i++) {
        s->files[i].path = join(dir, names[i]);
        s->n_files = i + 1;
        rc = s->files[i].path ? load_file(s, &s->files[i], err) : pi_error_set(err, "%s: out of memory", dir);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    for (size_t i = 0; rc == 0 && i < s->n; i++)
        for (size_t k = i + 1; k < s->n; k++)
            if (!strcmp(s->t[i].name, s->t[k].name)) {
                rc = pi_error_set(err, "tensor %s is in both %s and %s", s->t[i].name, s->t[i].file, s->t[k].file);
                break;
            }
    if (rc < 0)
        hf_st_close(&s);
    return s;
}

void hf_st_close(hf_st **sp)
{
    hf_st *s = *sp;
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->t[i].name);
    free(s->t);
    for (size_t i = 0; i < s->n_files; i++) {
        if (s->files[i].map)
            munmap(s->files[i].map, s->files[i].size);
        free(s->files[i].path);
    }
    free(s->files);
    free(s);
    *sp = NULL;
}

size_t hf_st_count(const hf_st *s)
{
    return s->n;
}

hf_tensor *hf_st_at(hf_st *s, size_t i)
{
    return &s->t[i];
}

hf_tensor *hf_st_find(hf_st *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->t[i].name, name))
            return &s->t[i];
    return NULL;
}

void hf_tensor_read_f32(const hf_tensor *t, uint64_t first, uint64_t n, float *dst)
{
    const unsigned char *p = (const unsigned char *)t->data + first * (t->dtype == HF_F32 ? 4 : 2);
    for (uint64_t i = 0; i < n; i++) {
        /* memcpy: the mapping gives no alignment guarantee for a tensor's start */
        if (t->dtype == HF_F32) {
            memcpy(&dst[i], p + 4 * i, 4);
        } else {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = t->dtype == HF_F16 ? pi_fp16_to_fp32(h) : pi_bf16_to_fp32(h);
        }
    }
}
