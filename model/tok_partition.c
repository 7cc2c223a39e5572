/* User-defined tokens cut out of a text (tok_partition.h). */
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
