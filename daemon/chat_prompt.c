/* A model's chat template loaded and rendered (chat_prompt.h). */
#include "chat_prompt.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"

int chat_prompt_load(const char *model_path, chat_prompt *out, pi_error *err)
{
    memset(out, 0, sizeof *out);
    gguf_file *f = gguf_open(model_path, err);
    if (!f)
        return pi_error_wrap(err, "reading the chat template");
    const gguf_kv *kv = gguf_find_kv(f, "tokenizer.chat_template");
    int not_string = kv && kv->type != GGUF_TYPE_STRING; /* kv dies with f */
    char *tmpl = NULL;
    if (kv && !not_string && kv->v.str.len > 0) {
        if (kv->v.str.len >= SIZE_MAX || !(tmpl = malloc((size_t)kv->v.str.len + 1))) {
            gguf_close(&f);
            return pi_error_set(err, "out of memory reading %s's chat template", model_path);
        }
        memcpy(tmpl, kv->v.str.ptr, (size_t)kv->v.str.len);
        tmpl[kv->v.str.len] = 0;
    }
    gguf_close(&f);
    const char *slash = strrchr(model_path, '/');
    const char *name = slash ? slash + 1 : model_path;
    pi_error terr = {{0}};
    if (not_string) {
        out->bad = 1;
        snprintf(out->why, sizeof out->why, "%.200s: tokenizer.chat_template is not a string", name);
    } else if (chat_template_detect(tmpl, &out->style, &terr) < 0) {
        out->bad = 1;
        snprintf(out->why, sizeof out->why, "%.200s: %.300s", name, terr.msg);
    }
    free(tmpl);
    return 0;
}

char *chat_prompt_render(const chat_prompt *cp, const chat_msg *msgs, size_t n, pi_error *err)
{
    if (cp->bad) {
        pi_error_set(err, "%s", cp->why);
        return NULL;
    }
    return chat_template_render(&cp->style, msgs, n, true, err);
}

char *chat_prompt_from_request(const char *model_path, const Pi__GenerateRequest *g,
                               int *parse_special, pi_error *err)
{
    *parse_special = 0;
    if (g->prompt && g->prompt[0]) {
        pi_error_set(err, "a chat request carries messages and no prompt (it has both)");
        return NULL;
    }
    /* Loaded per request: a chat turn is rare next to its tokens, and the
     * RPC server then needs no state of its own for it. */
    chat_prompt cp;
    if (chat_prompt_load(model_path, &cp, err) < 0)
        return NULL;
    chat_msg *msgs = calloc(g->n_messages ? g->n_messages : 1, sizeof *msgs);
    if (!msgs) {
        pi_error_set(err, "out of memory for %zu chat messages", g->n_messages);
        return NULL;
    }
    for (size_t i = 0; i < g->n_messages; i++) {
        const Pi__ChatMessage *m = g->messages[i];
        msgs[i] = (chat_msg){.role = m->role ? m->role : "", .content = m->content ? m->content : ""};
    }
    char *out = chat_prompt_render(&cp, msgs, g->n_messages, err);
    free(msgs);
    *parse_special = out && cp.style.family != CHAT_PLAIN;
    return out;
}
