/* Fuzzes the GGUF reader: any input either fails with a message or opens
 * into a file whose every key, string and tensor byte can be read in bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy so ASan sees a read one byte past the end. */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    if (size)
        memcpy(copy, data, size);
    pi_error err = {{0}};
    gguf_file *f = gguf_open_memory(copy, size, "fuzz.gguf", &err);
    if (!f) {
        if (err.msg[0] == '\0' || !strstr(err.msg, "fuzz.gguf"))
            abort(); /* every failure must explain itself, naming the file */
        free(copy);
        return 0;
    }
    volatile unsigned sink = 0;
    for (size_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        sink += (unsigned)kv->key.ptr[0] + (unsigned)kv->key.ptr[kv->key.len - 1];
        if (kv->type == GGUF_TYPE_STRING && kv->v.str.len)
            sink += (unsigned)kv->v.str.ptr[kv->v.str.len - 1];
        if (kv->type == GGUF_TYPE_ARRAY) {
            for (uint64_t j = 0; j < kv->v.arr.n; j++) {
                if (kv->v.arr.type == GGUF_TYPE_STRING) {
                    gguf_str s = kv->v.arr.strs[j];
                    if (s.len)
                        sink += (unsigned)s.ptr[0] + (unsigned)s.ptr[s.len - 1];
                } else {
                    double d = gguf_arr_f64(kv, j);
                    uint64_t b;
                    memcpy(&b, &d, sizeof b);
                    sink += (unsigned)gguf_arr_i64(kv, j) + (unsigned)b;
                }
            }
        }
        if (gguf_find_kv(f, "general.alignment") == NULL)
            sink++;
    }
    for (size_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        const uint8_t *p = t->data;
        sink += p[0] + p[t->size - 1] + (unsigned)t->name.ptr[t->name.len - 1];
        char name[128];
        size_t n = t->name.len < sizeof name - 1 ? (size_t)t->name.len : sizeof name - 1;
        memcpy(name, t->name.ptr, n);
        name[n] = '\0';
        if (n == t->name.len && !memchr(name, '\0', n) && gguf_find_tensor(f, name) == NULL)
            abort(); /* every tensor must be findable by its own name */
    }
    uint32_t u;
    (void)gguf_get_u32(f, "llama.block_count", &u, &err);
    char buf[64];
    (void)gguf_get_cstr(f, "general.architecture", buf, sizeof buf, &err);
    (void)sink;
    gguf_close(&f);
    free(copy);
    return 0;
}
