/* Proves pid renders each chat family's published template byte for byte as Jinja2 does (tests/integration/chat_reference.py renders the references live), on both of pid's paths: the HTTP server's (chat_prompt_load + chat_prompt_render) and pictl chat's (GenerateRequest.messages through chat_prompt_from_request). The one allowed difference: a BOS the template writes first is the tokenizer's job in pi (add_bos), so it is stripped from the reference. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "chat_prompt.h"
#include "check.h"
#include "gguf.h"

#define MAX_MSGS 16

/* One "<len>\n<bytes>\n" field: malloc'd, NUL-terminated; NULL at a clean end. */
static char *field(FILE *f)
{
    size_t len;
    if (fscanf(f, "%zu", &len) != 1)
        return NULL;
    CHECK(fgetc(f) == '\n' && len < (1u << 24), "bad record header");
    char *s = malloc(len + 1);
    CHECK(s, "out of memory");
    CHECK(fread(s, 1, len, f) == len && fgetc(f) == '\n', "short record");
    s[len] = 0;
    return s;
}

typedef struct ref_case {
    char *name, *family, *tmpl, *bos, *reference;
    size_t n;
    char *role[MAX_MSGS], *content[MAX_MSGS];
} ref_case;

static bool read_case(FILE *f, ref_case *c)
{
    memset(c, 0, sizeof *c);
    if (!(c->name = field(f)))
        return false;
    c->family = field(f);
    c->tmpl = field(f);
    c->bos = field(f);
    char *n = field(f);
    CHECK(c->family && c->tmpl && c->bos && n, "truncated record %s", c->name);
    c->n = strtoul(n, NULL, 10);
    free(n);
    CHECK(c->n <= MAX_MSGS, "%s: %zu messages", c->name, c->n);
    for (size_t i = 0; i < c->n; i++) {
        c->role[i] = field(f);
        c->content[i] = field(f);
        CHECK(c->role[i] && c->content[i], "truncated record %s", c->name);
    }
    c->reference = field(f);
    CHECK(c->reference, "truncated record %s", c->name);
    return true;
}

static void free_case(ref_case *c)
{
    free(c->name);
    free(c->family);
    free(c->tmpl);
    free(c->bos);
    free(c->reference);
    for (size_t i = 0; i < c->n; i++) {
        free(c->role[i]);
        free(c->content[i]);
    }
}

/* A GGUF holding only the template, as a model's metadata would. */
static void write_model(const char *path, const char *tmpl)
{
    gguf_writer *w = gguf_writer_new();
    CHECK(w, "gguf_writer_new");
    CHECK(gguf_writer_add_str(w, "general.architecture", "llama") == 0 &&
              gguf_writer_add_str(w, "tokenizer.chat_template", tmpl) == 0,
          "gguf writer add");
    pi_error err = {{0}};
    CHECK(gguf_writer_write(w, path, "GGUF", &err) == 0, "write %s: %s", path, err.msg);
    gguf_writer_free(&w);
}

static void show_diff(const char *what, const char *got, const char *want)
{
    size_t i = 0;
    while (got[i] && got[i] == want[i])
        i++;
    fprintf(stderr, "  %s differs at byte %zu:\n    pi:     '%s'\n    jinja2: '%s'\n", what, i, got, want);
}

/* 0 when both of pid's paths render c as Jinja2 did. */
static int check_case(const ref_case *c, const char *path)
{
    write_model(path, c->tmpl);
    pi_error err = {{0}};
    chat_prompt cp;
    CHECK(chat_prompt_load(path, &cp, &err) == 0, "%s: %s", c->name, err.msg);
    if (cp.bad || strcmp(chat_family_name(cp.style.family), c->family)) {
        fprintf(stderr, "FAIL %s: recognised as %s, want %s %s\n", c->name,
                cp.bad ? "nothing" : chat_family_name(cp.style.family), c->family, cp.why);
        return 1;
    }
    const char *want = c->reference;
    size_t bl = strlen(c->bos);
    if (bl && !strncmp(want, c->bos, bl))
        want += bl; /* the tokenizer adds BOS */

    chat_msg msgs[MAX_MSGS];
    Pi__ChatMessage wm[MAX_MSGS], *wp[MAX_MSGS];
    for (size_t i = 0; i < c->n; i++) {
        msgs[i] = (chat_msg){.role = c->role[i], .content = c->content[i]};
        pi__chat_message__init(&wm[i]);
        wm[i].role = c->role[i];
        wm[i].content = c->content[i];
        wp[i] = &wm[i];
    }
    char *http = chat_prompt_render(&cp, msgs, c->n, &err);
    CHECK(http, "%s: %s", c->name, err.msg);
    Pi__GenerateRequest g = PI__GENERATE_REQUEST__INIT;
    g.n_messages = c->n;
    g.messages = wp;
    int special = 0;
    char *chat = chat_prompt_from_request(path, &g, &special, &err);
    CHECK(chat, "%s: %s", c->name, err.msg);
    int bad = 0;
    if (strcmp(http, want)) {
        fprintf(stderr, "FAIL %s (/v1/chat/completions path)\n", c->name);
        show_diff("rendering", http, want);
        bad = 1;
    }
    if (strcmp(chat, want)) {
        fprintf(stderr, "FAIL %s (pictl chat path)\n", c->name);
        show_diff("rendering", chat, want);
        bad = 1;
    }
    CHECK(special == 1, "%s: a template's rendering is tokenized with special tokens", c->name);
    if (!bad)
        printf("ok   %-20s %s (%zu bytes)\n", c->family, c->name, strlen(want));
    free(http);
    free(chat);
    return bad;
}

int main(void)
{
    const char *src = getenv("PI_SRC");
    char cmd[1024], path[512];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/integration/chat_reference.py", src ? src : ".");
    test_tmp("test_chat_reference.gguf", path, sizeof path);
    FILE *f = popen(cmd, "r");
    CHECK(f, "cannot run %s", cmd);
    ref_case c;
    int failed = 0, n = 0;
    char families[512] = "";
    while (read_case(f, &c)) {
        failed += check_case(&c, path);
        n++;
        if (!strstr(families, c.family)) {
            strncat(families, " ", sizeof families - strlen(families) - 1);
            strncat(families, c.family, sizeof families - strlen(families) - 1);
        }
        free_case(&c);
    }
    int st = pclose(f);
    remove(path);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
        printf("SKIP: no reference renderings: %s needs python3-jinja2 (scripts/setup.sh)\n", cmd);
        return 77;
    }
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s failed (status %d)", cmd, st);
    CHECK(n > 0, "no reference cases from %s", cmd);
    CHECK(failed == 0, "%d of %d renderings differ from Jinja2's", failed, n);
    printf("chat reference: %d renderings of the families%s equal Jinja2's byte for byte\n", n, families);
    return 0;
}
