/* Special tokens cut out of a text (tok_partition.h). */
#include "tok_partition.h"

#include <stdlib.h>
#include <string.h>

static int frag_push(tok_frags *v, tok_frag f)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        tok_frag *a = realloc(v->a, cap * sizeof *a);
        if (!a)
            return -1;
        v->a = a;
        v->cap = cap;
    }
    v->a[v->n++] = f;
    return 0;
}

int tok_partition(const tok_pieces *p, const char *text, size_t len, tok_frags *v)
{
    tok_frags next = {0};
    if (frag_push(v, (tok_frag){0, len, -1}) != 0)
        return -1;
    for (uint32_t u = 0; u < p->n_user; u++) {
        int32_t id = p->user[u];
        const char *piece = p->arena + p->off[id];
        size_t pl = p->len[id];
        next.n = 0;
        for (size_t i = 0; i < v->n; i++) {
            tok_frag f = v->a[i];
            while (f.tok < 0 && f.len >= pl) {
                const char *m = memmem(text + f.off, f.len, piece, pl);
                if (!m)
                    break;
                size_t at = (size_t)(m - text);
                if ((at > f.off && frag_push(&next, (tok_frag){f.off, at - f.off, -1}) != 0) ||
                    frag_push(&next, (tok_frag){at, pl, id}) != 0)
                    goto oom;
                f.len -= at + pl - f.off;
                f.off = at + pl;
            }
            if ((f.tok >= 0 || f.len > 0) && frag_push(&next, f) != 0)
                goto oom;
        }
        tok_frags t = *v;
        *v = next;
        next = t;
    }
    free(next.a);
    return 0;
oom:
    free(next.a);
    return -1;
}

typedef struct len_id {
    uint32_t len;
    int32_t id;
} len_id;

static int cmp_len_id(const void *a, const void *b)
{
    const len_id *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

int tok_partition_list(const uint32_t *len, const uint8_t *type, uint32_t n, unsigned mask,
                       int32_t **out, uint32_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++)
        k += type[i] < 32 && (mask & TOK_TYPE_BIT(type[i])) && len[i] > 0;
    if (k == 0)
        return 0;
    len_id *tmp = malloc(k * sizeof *tmp);
    int32_t *ids = malloc(k * sizeof *ids);
    if (!tmp || !ids) {
        free(tmp);
        free(ids);
        return -1;
    }
    k = 0;
    for (uint32_t i = 0; i < n; i++)
        if (type[i] < 32 && (mask & TOK_TYPE_BIT(type[i])) && len[i] > 0)
            tmp[k++] = (len_id){len[i], (int32_t)i};
    qsort(tmp, k, sizeof *tmp, cmp_len_id);
    for (uint32_t i = 0; i < k; i++)
        ids[i] = tmp[i].id;
    free(tmp);
    *out = ids;
    *n_out = k;
    return 0;
}
