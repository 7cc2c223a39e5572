/* pictl tokenize -m MODEL [--no-bos] [--special] [--pieces] [--file F | TEXT]
 * Prints the token ids of TEXT (or of file F, or of stdin) on one line,
 * separated by single spaces; --pieces prints "ID<TAB>PIECE" per line instead. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "gguf.h"
#include "tokenizer.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: pictl tokenize -m MODEL.gguf [--no-bos] [--special] [--pieces] [--file F | TEXT]\n"
            "       pictl tokenize [--endpoint E] [--token T] [--no-bos] [--file F | TEXT]   (through pid)\n"
            "  Prints the token ids of TEXT, of file F, or of stdin when neither is given,\n"
            "  on one line separated by spaces. The text is taken byte for byte.\n"
            "  -m, --model MODEL  tokenize locally with MODEL's vocabulary (else through pid)\n"
            "  --file F   read the text from F\n"
            "  --endpoint E, --token T   pid's endpoint and client token (without -m)\n"
            "  --no-bos   do not prepend the BOS token\n"
            "  --special  control tokens written in the text (<|im_start|>, </s>...) become\n"
            "             their ids, as for a prompt rendered from a chat template\n"
            "  --pieces   print one token per line: ID<TAB>PIECE (the vocabulary entry,\n"
            "             bytes below 0x20, 0x7F and '\\' escaped as \\xNN / \\\\)\n");
}

/* Reads all of f; *len bytes into a malloc'd buffer, or NULL on error (errno). */
static char *read_stream(FILE *f, size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    for (;;) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        char *bigger = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
        if (!bigger) {
            free(buf);
            errno = ENOMEM;
            return NULL;
        }
        buf = bigger;
        cap *= 2;
    }
    if (ferror(f)) {
        int e = errno;
        free(buf);
        errno = e ? e : EIO;
        return NULL;
    }
    *len = n;
    return buf;
}

/* Library errors usually name the file already; add it where they do not. */
static void print_model_error(const char *model, const pi_error *err)
{
    if (strstr(err->msg, model))
        fprintf(stderr, "pictl tokenize: %s\n", err->msg);
    else
        fprintf(stderr, "pictl tokenize: %s: %s\n", model, err->msg);
}

static void print_piece(const char *p)
{
    for (; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '\\')
            fputs("\\\\", stdout);
        else if (c < 0x20 || c == 0x7F)
            printf("\\x%02X", c);
        else
            putchar(c);
    }
}

/* 1 when the arguments name a model: tokenize locally, else through pid. */
static int names_model(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--"))
            return 0;
        if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model"))
            return 1;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return 1;
        if (!strcmp(argv[i], "--file") || !strcmp(argv[i], "--endpoint"))
            i++; /* skip the value */
    }
    return 0;
}

int cmd_tokenize(int argc, char **argv)
{
    if (!names_model(argc, argv))
        return client_remote_tokenize(argc, argv);
    const char *model = NULL, *file = NULL, *text = NULL;
    int add_bos = 1, pieces = 0, special = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--no-bos")) {
            add_bos = 0;
        } else if (!strcmp(a, "--special")) {
            special = 1;
        } else if (!strcmp(a, "--pieces")) {
            pieces = 1;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "--file")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "pictl tokenize: %s needs a value (see --help)\n", a);
                return 2;
            }
            if (!strcmp(a, "--file"))
                file = argv[++i];
            else
                model = argv[++i];
        } else if (!strcmp(a, "--")) {
            if (i + 2 != argc || text) {
                fprintf(stderr, "pictl tokenize: give one TEXT after -- (quote it)\n");
                return 2;
            }
            text = argv[++i];
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "pictl tokenize: unknown option '%s' (see --help)\n", a);
            return 2;
        } else if (text) {
            fprintf(stderr, "pictl tokenize: more than one TEXT argument: quote the text\n");
            return 2;
        } else {
            text = a;
        }
    }
    if (!model) {
        fprintf(stderr, "pictl tokenize: no model given: use -m MODEL.gguf (see --help)\n");
        return 2;
    }
    if (file && text) {
        fprintf(stderr, "pictl tokenize: give either --file or TEXT, not both\n");
        return 2;
    }

    pi_error err = {{0}};
    gguf_file *f = gguf_open(model, &err);
    if (!f) {
        print_model_error(model, &err);
        return 1;
    }
    tokenizer *t = tokenizer_from_gguf(f, &err);
    gguf_close(&f);
    if (!t) {
        print_model_error(model, &err);
        return 1;
    }

    char *owned = NULL;
    size_t len = 0;
    if (text) {
        len = strlen(text);
    } else {
        FILE *in = file ? fopen(file, "rb") : stdin;
        if (in)
            owned = read_stream(in, &len);
        if (!in || !owned) {
            fprintf(stderr, "pictl tokenize: cannot read %s: %s\n", file ? file : "stdin", strerror(errno));
            if (in && in != stdin)
                fclose(in);
            tokenizer_free(&t);
            return 1;
        }
        if (in != stdin)
            fclose(in);
        text = owned;
    }

    int32_t *ids = NULL;
    size_t n = 0;
    int rc = 0;
    if ((special ? tokenizer_encode_special : tokenizer_encode)(t, text, len, add_bos, &ids, &n, &err) != 0) {
        fprintf(stderr, "pictl tokenize: %s\n", err.msg);
        rc = 1;
    } else if (pieces) {
        for (size_t i = 0; i < n; i++) {
            printf("%d\t", ids[i]);
            print_piece(tokenizer_piece(t, ids[i]));
            putchar('\n');
        }
    } else {
        for (size_t i = 0; i < n; i++)
            printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
    }
    if (rc == 0 && (fflush(stdout) != 0 || ferror(stdout))) {
        fprintf(stderr, "pictl tokenize: cannot write the output: %s\n", strerror(errno));
        rc = 1;
    }
    free(ids);
    free(owned);
    tokenizer_free(&t);
    return rc;
}
