/* chat_prompt: a model's chat template as pid uses it, loaded once from the
 * GGUF's tokenizer.chat_template and recognised by chat_template.c; renders a
 * chat into the prompt text for tokenizer_encode_special. Shared by the RPC
 * server (GenerateRequest.messages: pictl chat) and the HTTP server
 * (/v1/chat/completions), so both render a chat the same way. */
#ifndef PI_DAEMON_CHAT_PROMPT_H
#define PI_DAEMON_CHAT_PROMPT_H

#include <stddef.h>

#include "chat_template.h"
#include "pi.pb-c.h"
#include "pi_error.h"

typedef struct chat_prompt {
    chat_style style;
    int bad;            /* the template is present but unusable: why says so */
    char why[512];
} chat_prompt;

/* Reads model_path's tokenizer.chat_template. A template pi does not
 * recognise is not an error here (completions still work): out->bad is set
 * and every render fails with out->why. -1 only when the file cannot be read. */
int chat_prompt_load(const char *model_path, chat_prompt *out, pi_error *err);

/* The prompt of a chat with the assistant's turn opened: malloc'd (caller
 * frees), or NULL with err (bad template, unknown role, out of memory). */
char *chat_prompt_render(const chat_prompt *cp, const chat_msg *msgs, size_t n, pi_error *err);

/* The prompt of g's chat (g->messages, g->prompt empty) rendered with the
 * template of the model at model_path; *parse_special says whether its
 * markers are control tokens (not for the plain "role: content" fallback).
 * malloc'd (caller frees), or NULL with err naming what to fix. */
char *chat_prompt_from_request(const char *model_path, const Pi__GenerateRequest *g,
                               int *parse_special, pi_error *err);

#endif
