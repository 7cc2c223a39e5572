/* Chat templates by family (chat_template.h). The renderings follow each
 * family's published format; for details the Jinja leaves to the data
 * (spaces around [INST], trimming) they match llama.cpp's renderer, so a
 * prompt pi builds tokenizes as llama.cpp's would. */
#include "chat_template.h"

#include <stdlib.h>
#include <string.h>

#define SUPPORTED "llama2, llama3, chatml, mistral, gemma"

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    size_t need;
    if (pi_add_size(b->len, n, &need) < 0 || pi_add_size(need, 1, &need) < 0) {
        b->oom = 1;
        return;
    }
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need)
            if (pi_mul_size(cap, 2, &cap) < 0) {
                b->oom = 1;
                return;
            }
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* s without leading and trailing whitespace (Jinja's trim, Python's strip). */
static void sb_trimmed(sbuf *b, const char *s)
{
    size_t n = strlen(s), i = 0;
    while (i < n && is_space(s[i]))
        i++;
    while (n > i && is_space(s[n - 1]))
        n--;
    sb_put(b, s + i, n - i);
}

static void sb_content(sbuf *b, const char *s, bool trim)
{
    if (trim)
        sb_trimmed(b, s);
    else
        sb_str(b, s);
}

static const char *const family_names[] = {
    [CHAT_PLAIN] = "plain",           [CHAT_LLAMA2] = "llama2",
    [CHAT_LLAMA2_SYS] = "llama2-sys", [CHAT_LLAMA3] = "llama3",
    [CHAT_CHATML] = "chatml",         [CHAT_MISTRAL_V1] = "mistral-v1",
    [CHAT_MISTRAL_V3] = "mistral-v3", [CHAT_MISTRAL_V3_TEKKEN] = "mistral-v3-tekken",
    [CHAT_MISTRAL_V7] = "mistral-v7", [CHAT_GEMMA] = "gemma",
};

const char *chat_family_name(chat_family f)
{
    if ((size_t)f >= sizeof family_names / sizeof family_names[0])
        return "?";
    return family_names[f];
}

static bool has(const char *t, const char *s) { return strstr(t, s) != NULL; }

int chat_template_detect(const char *t, chat_style *out, pi_error *err)
{
    memset(out, 0, sizeof *out);
    out->family = CHAT_PLAIN;
    if (!t || !t[0])
        return 0;
    for (size_t i = 1; i < sizeof family_names / sizeof family_names[0]; i++)
        if (!strcmp(t, family_names[i])) {
            out->family = (chat_family)i;
            return 0;
        }
    /* The order matters: a Mistral template also holds "[INST]", a Phi-4 one
     * "<|im_start|>" (with "<|im_sep|>", a format of its own). */
    if (has(t, "<|im_start|>") && !has(t, "<|im_sep|>")) {
        out->family = CHAT_CHATML;
        return 0;
    }
    if (!has(t, "<|im_start|>") && (!strncmp(t, "mistral", 7) || has(t, "[INST]"))) {
        if (has(t, "[SYSTEM_PROMPT]"))
            out->family = CHAT_MISTRAL_V7;
        else if (has(t, "' [INST] ' + system_message") || has(t, "[AVAILABLE_TOOLS]")) {
            out->family = has(t, " [INST]")       ? CHAT_MISTRAL_V1
                          : has(t, "\"[INST]\"") ? CHAT_MISTRAL_V3_TEKKEN
                                                  : CHAT_MISTRAL_V3;
            out->system_last = has(t, "loop.last and system_message");
        } else {
            out->family = has(t, "<<SYS>>") ? CHAT_LLAMA2_SYS : CHAT_LLAMA2;
            out->strip = has(t, "content.strip()");
            out->bos_in_history = has(t, "bos_token + '[INST]");
            out->reply_spaced = has(t, "' ' + eos_token");
        }
        return 0;
    }
    if (has(t, "<start_of_turn>")) {
        out->family = CHAT_GEMMA;
        return 0;
    }
    if (has(t, "<|start_header_id|>") && has(t, "<|end_header_id|>")) {
        out->family = CHAT_LLAMA3;
        return 0;
    }
    /* The head of the template, on one line and in ASCII (it goes into JSON). */
    char head[61];
    size_t n = 0;
    for (; n < 60 && t[n]; n++) {
        unsigned char c = (unsigned char)t[n];
        head[n] = c < 0x20 ? ' ' : c >= 0x7f ? '?' : (char)c;
    }
    head[n] = 0;
    return pi_error_set(err, "chat template not recognised (first 60 chars: %s); supported families: %s",
                        head, SUPPORTED);
}

typedef enum role { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT } role;

static int role_of(const char *r, role *out)
{
    if (!strcmp(r, "system") || !strcmp(r, "developer"))
        *out = ROLE_SYSTEM;
    else if (!strcmp(r, "user"))
        *out = ROLE_USER;
    else if (!strcmp(r, "assistant"))
        *out = ROLE_ASSISTANT;
    else
        return -1;
    return 0;
}

static const char *const role_names[] = {"system", "user", "assistant"};

static void render_llama2(sbuf *b, const chat_style *st, const chat_msg *m, const role *r, size_t n)
{
    /* The first [INST] follows the tokenizer's BOS; later turns open with
     * "<s>[INST] " only where the template writes bos_token there. */
    bool inside = true;
    sb_str(b, "[INST] ");
    for (size_t i = 0; i < n; i++) {
        if (!inside) {
            sb_str(b, st->bos_in_history ? "<s>[INST] " : "[INST] ");
            inside = true;
        }
        if (r[i] == ROLE_SYSTEM && st->family == CHAT_LLAMA2_SYS) {
            sb_str(b, "<<SYS>>\n");
            sb_content(b, m[i].content, st->strip);
            sb_str(b, "\n<</SYS>>\n\n");
        } else if (r[i] == ROLE_SYSTEM) {
            sb_content(b, m[i].content, st->strip);
            sb_str(b, "\n");
        } else if (r[i] == ROLE_USER) {
            sb_content(b, m[i].content, st->strip);
            sb_str(b, " [/INST]");
        } else {
            sb_str(b, st->reply_spaced ? " " : "");
            sb_content(b, m[i].content, st->strip);
            sb_str(b, st->reply_spaced ? " </s>" : "</s>");
            inside = false;
        }
    }
}

static void render_mistral(sbuf *b, const chat_style *st, const chat_msg *m, const role *r, size_t n)
{
    /* v1: " [INST] x [/INST] y</s>"; v3: "[INST] x[/INST] y</s>" (y trimmed);
     * v3-tekken: "[INST]x[/INST]y</s>". A system message opens the turn,
     * or with system_last the last message when it is the user's (loop.last:
     * a chat that ends with a reply shows no system text at all). */
    chat_family f = st->family;
    const char *lead = f == CHAT_MISTRAL_V1 ? " " : "";
    const char *trail = f == CHAT_MISTRAL_V3_TEKKEN ? "" : " ";
    const char *sys = NULL;
    bool inside = false;
    for (size_t i = 0; i < n; i++) {
        if (st->system_last && r[i] == ROLE_SYSTEM) {
            sys = m[i].content;
            continue;
        }
        if (!inside) {
            sb_str(b, lead);
            sb_str(b, "[INST]");
            sb_str(b, trail);
            inside = true;
        }
        if (r[i] == ROLE_SYSTEM) {
            sb_str(b, m[i].content);
            sb_str(b, "\n\n");
        } else if (r[i] == ROLE_USER) {
            if (sys && i + 1 == n) {
                sb_str(b, sys);
                sb_str(b, "\n\n");
            }
            sb_str(b, m[i].content);
            sb_str(b, lead);
            sb_str(b, "[/INST]");
        } else {
            sb_str(b, trail);
            sb_content(b, m[i].content, f == CHAT_MISTRAL_V3);
            sb_str(b, "</s>");
            inside = false;
        }
    }
}

static void render_gemma(sbuf *b, const chat_msg *m, const role *r, size_t n, bool gen)
{
    /* Gemma has no system role: the system text opens the next user turn. */
    const char *sys = NULL;
    for (size_t i = 0; i < n; i++) {
        if (r[i] == ROLE_SYSTEM) {
            sys = m[i].content;
            continue;
        }
        sb_str(b, r[i] == ROLE_ASSISTANT ? "<start_of_turn>model\n" : "<start_of_turn>user\n");
        if (sys && r[i] == ROLE_USER) {
            size_t before = b->len;
            sb_trimmed(b, sys);
            if (b->len > before)
                sb_str(b, "\n\n");
            sys = NULL;
        }
        sb_trimmed(b, m[i].content);
        sb_str(b, "<end_of_turn>\n");
    }
    if (gen)
        sb_str(b, "<start_of_turn>model\n");
}

char *chat_template_render(const chat_style *st, const chat_msg *m, size_t n, bool gen, pi_error *err)
{
    role *r = calloc(n ? n : 1, sizeof *r);
    if (!r) {
        pi_error_set(err, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (!m[i].role || !m[i].content || role_of(m[i].role, &r[i]) < 0) {
            pi_error_set(err, "messages[%zu].role '%.40s' is not system, developer, user or assistant", i,
                         m[i].role ? m[i].role : "(null)");
            free(r);
            return NULL;
        }
    sbuf b = {0};
    sb_str(&b, ""); /* an empty conversation still yields a string */
    switch (st->family) {
    case CHAT_PLAIN:
        /* pid's rendering before templates: the role as the client wrote it. */
        for (size_t i = 0; i < n; i++) {
            sb_str(&b, m[i].role);
            sb_str(&b, ": ");
            sb_str(&b, m[i].content);
            sb_str(&b, "\n");
        }
        if (gen)
            sb_str(&b, "assistant: ");
        break;
    case CHAT_CHATML:
        for (size_t i = 0; i < n; i++) {
            sb_str(&b, "<|im_start|>");
            sb_str(&b, role_names[r[i]]);
            sb_str(&b, "\n");
            sb_str(&b, m[i].content);
            sb_str(&b, "<|im_end|>\n");
        }
        if (gen)
            sb_str(&b, "<|im_start|>assistant\n");
        break;
    case CHAT_LLAMA3:
        for (size_t i = 0; i < n; i++) {
            sb_str(&b, "<|start_header_id|>");
            sb_str(&b, role_names[r[i]]);
            sb_str(&b, "<|end_header_id|>\n\n");
            sb_trimmed(&b, m[i].content);
            sb_str(&b, "<|eot_id|>");
        }
        if (gen)
            sb_str(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case CHAT_LLAMA2:
    case CHAT_LLAMA2_SYS:
        render_llama2(&b, st, m, r, n);
        break;
    case CHAT_MISTRAL_V1:
    case CHAT_MISTRAL_V3:
    case CHAT_MISTRAL_V3_TEKKEN:
        render_mistral(&b, st, m, r, n);
        break;
    case CHAT_MISTRAL_V7:
        for (size_t i = 0; i < n; i++) {
            if (r[i] == ROLE_SYSTEM) {
                sb_str(&b, "[SYSTEM_PROMPT] ");
                sb_str(&b, m[i].content);
                sb_str(&b, "[/SYSTEM_PROMPT]");
            } else if (r[i] == ROLE_USER) {
                sb_str(&b, "[INST] ");
                sb_str(&b, m[i].content);
                sb_str(&b, "[/INST]");
            } else {
                sb_str(&b, " ");
                sb_str(&b, m[i].content);
                sb_str(&b, "</s>");
            }
        }
        break;
    case CHAT_GEMMA:
        render_gemma(&b, m, r, n, gen);
        break;
    default:
        free(r);
        free(b.p);
        pi_error_set(err, "chat template family %d is unknown", (int)st->family);
        return NULL;
    }
    free(r);
    if (b.oom) {
        free(b.p);
        pi_error_set(err, "out of memory rendering the chat messages");
        return NULL;
    }
    return b.p;
}
