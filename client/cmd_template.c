/* `pictl model set-template`: a copy of a GGUF with tokenizer.chat_template
 * set to a file's text (models imported from llama2.c have none; a model's
 * template may need fixing). Every other key and every tensor is copied as
 * it is. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "gguf.h"
#include "rpc.h"

static const char usage[] =
    "usage: pictl model set-template MODEL.gguf --file TEMPLATE -o OUT.gguf\n"
    "  Writes a copy of MODEL.gguf whose tokenizer.chat_template is the text of TEMPLATE\n"
    "  (a Jinja chat template as published with the model; pid recognises its family when\n"
    "  it starts: docs/http.md, \"Chat templates\"). Other keys and the tensors are unchanged.\n"
    "  --file TEMPLATE   the template text (- = stdin)\n"
    "  -o, --output OUT  the GGUF to write (not MODEL.gguf itself)\n";

static int copy_with_template(const char *in, const char *tmpl, const char *out, pi_error *err)
{
    gguf_file *f = gguf_open(in, err);
    if (!f)
        return -1;
    gguf_writer *w = gguf_writer_new();
    int rc = w ? 0 : pi_error_set(err, "out of memory");
    for (size_t i = 0; rc == 0 && i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        if (!gguf_str_eq(kv->key, "tokenizer.chat_template") && gguf_writer_add_kv(w, kv) != 0)
            rc = pi_error_set(err, "copying key %.*s", (int)kv->key.len, kv->key.ptr);
    }
    if (rc == 0 && gguf_writer_add_str(w, "tokenizer.chat_template", tmpl) != 0)
        rc = pi_error_set(err, "out of memory");
    for (size_t i = 0; rc == 0 && i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char name[256];
        if (t->name.len >= sizeof name) {
            rc = pi_error_set(err, "%s: a tensor name of %llu bytes is too long", in,
                              (unsigned long long)t->name.len);
            break;
        }
        memcpy(name, t->name.ptr, (size_t)t->name.len);
        name[t->name.len] = 0;
        if (gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data) != 0)
            rc = pi_error_set(err, "copying tensor %s", name);
    }
    if (rc == 0)
        rc = gguf_writer_write(w, out, gguf_is_powerinfer(f) ? "PWRI" : "GGUF", err);
    gguf_writer_free(&w);
    gguf_close(&f); /* after the write: the tensors' bytes live in its mapping */
    return rc;
}

int cmd_model_set_template(int argc, char **argv)
{
    const char *in = NULL, *file = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            return 0;
        }
        if (!strcmp(a, "--file") || !strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "pictl model set-template: %s needs a value (see --help)\n", a);
                return 2;
            }
            *(!strcmp(a, "--file") ? &file : &out) = argv[++i];
        } else if (a[0] == '-' || in) {
            fprintf(stderr, "pictl model set-template: unexpected argument '%s' (see --help)\n", a);
            return 2;
        } else {
            in = a;
        }
    }
    if (!in || !file || !out) {
        fprintf(stderr, "pictl model set-template: MODEL.gguf, --file and -o are required (see --help)\n");
        return 2;
    }
    if (!strcmp(in, out)) {
        fprintf(stderr, "pictl model set-template: -o must name another file than %s\n", in);
        return 2;
    }
    pi_error err = {{0}};
    char *tmpl = rpc_read_text(strcmp(file, "-") ? file : NULL, &err);
    if (!tmpl) {
        fprintf(stderr, "pictl model set-template: %s\n", err.msg);
        return 1;
    }
    int rc = copy_with_template(in, tmpl, out, &err);
    free(tmpl);
    if (rc != 0) {
        fprintf(stderr, "pictl model set-template: %s\n", err.msg);
        return 1;
    }
    return 0;
}
