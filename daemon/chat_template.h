/* chat_template: renders OpenAI chat messages into a model's prompt text.
 * pi runs no Jinja: a GGUF's tokenizer.chat_template is RECOGNISED by
 * substrings distinctive of each family's published template (as
 * llama.cpp's llama_chat_apply_template does) and the family is rendered in
 * C. Supported: llama2 (with or without a <<SYS>> block), llama3, chatml,
 * mistral (v1, v3, v3-tekken, v7) and gemma. No template at all: the plain
 * "role: content" lines pid has always used. A template that is present but
 * not recognised is an error (chat_template_detect), never a guess.
 * BOS is not rendered: the tokenizer adds it. */
#ifndef PI_DAEMON_CHAT_TEMPLATE_H
#define PI_DAEMON_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "pi_error.h"

typedef enum chat_family {
    CHAT_PLAIN = 0,        /* no template: "role: content\n" lines, then "assistant: " */
    CHAT_LLAMA2,           /* [INST] ... [/INST]; a system message is a plain line */
    CHAT_LLAMA2_SYS,       /* + <<SYS>> block for the system message */
    CHAT_LLAMA3,           /* <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> */
    CHAT_CHATML,           /* <|im_start|>role\ncontent<|im_end|>\n */
    CHAT_MISTRAL_V1,       /* " [INST] ... [/INST]" */
    CHAT_MISTRAL_V3,       /* "[INST] ...[/INST]", assistant replies trimmed */
    CHAT_MISTRAL_V3_TEKKEN,/* "[INST]...[/INST]" */
    CHAT_MISTRAL_V7,       /* [SYSTEM_PROMPT] ... [/SYSTEM_PROMPT][INST] ...[/INST] */
    CHAT_GEMMA,            /* <start_of_turn>user\n...<end_of_turn>\n, "model" for assistant */
} chat_family;

/* Llama-2 details a template may ask for (ignored by other families). */
typedef struct chat_style {
    chat_family family;
    bool strip;            /* llama2: content.strip() */
    bool bos_in_history;   /* llama2: "<s>" before each later [INST] */
    bool reply_spaced;     /* llama2: " reply </s>" (the template writes ' ' + ... + ' ' + eos_token) */
    bool system_last;      /* mistral v3: the system text opens the last user turn (loop.last) */
} chat_style;

typedef struct chat_msg {
    const char *role;      /* system, developer (= system), user or assistant */
    const char *content;
} chat_msg;

/* The family of tmpl (the Jinja source, NUL-terminated; NULL or "" when the
 * model has none: CHAT_PLAIN). A family name ("chatml", "llama3"...) is also
 * accepted. 0, or -1 with err "chat template not recognised (first 60
 * chars: ...); supported families: ...". */
int chat_template_detect(const char *tmpl, chat_style *out, pi_error *err);

/* The family's name: "plain", "llama2", "llama3", "chatml", "mistral-v1"... */
const char *chat_family_name(chat_family f);

/* Renders n messages; add_generation_prompt appends the opening of the
 * assistant's turn where the family has one. Returns a malloc'd C string
 * (caller frees) or NULL with err (an unknown role, out of memory). */
char *chat_template_render(const chat_style *st, const chat_msg *msgs, size_t n,
                           bool add_generation_prompt, pi_error *err);

#endif
