/* Tokenizing through pid: `pictl tokenize` without -m (client_remote_tokenize,
 * called from cmd_tokenize.c) and `pictl detokenize IDS...`, over pid's
 * Tokenize / Detokenize RPCs, so the client needs no model file. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "rpc.h"
#include "wire.h"

#define TOKENIZE_TIMEOUT_MS 60000

static int on_tokens(const Pi__Response *r, void *user, pi_error *err)
{
    (void)user;
    if (r->kind_case != PI__RESPONSE__KIND_TOKENIZE)
        return pi_error_set(err, "pid answered tokenize with an unexpected message (case %d)",
                            (int)r->kind_case);
    for (size_t i = 0; i < r->tokenize->n_tokens; i++)
        printf("%s%d", i ? " " : "", (int)r->tokenize->tokens[i]);
    printf("\n");
    return 0;
}

static int on_text(const Pi__Response *r, void *user, pi_error *err)
{
    (void)user;
    if (r->kind_case != PI__RESPONSE__KIND_DETOKENIZE)
        return pi_error_set(err, "pid answered detokenize with an unexpected message (case %d)",
                            (int)r->kind_case);
    const ProtobufCBinaryData *t = &r->detokenize->text;
    if (t->len && fwrite(t->data, 1, t->len, stdout) != t->len)
        return pi_error_set(err, "writing to stdout failed");
    printf("\n");
    return 0;
}

static int call(const char *name, const char *endpoint, Pi__Request *req, rpc_handler fn)
{
    pi_error err = {{0}};
    rpc_client *c = rpc_connect_default(endpoint, &err);
    if (!c) {
        fprintf(stderr, "pictl %s: %s\n", name, err.msg);
        return 1;
    }
    int rc = rpc_call(c, req, fn, NULL, TOKENIZE_TIMEOUT_MS, NULL, &err);
    rpc_close(&c);
    if (rc < 0) {
        fprintf(stderr, "pictl %s: %s\n", name, err.msg);
        return 1;
    }
    return fflush(stdout) == 0 ? 0 : 1;
}

int client_remote_tokenize(int argc, char **argv)
{
    const char *usage = "pictl tokenize [--endpoint E] [--token T] [--no-bos] [--file F | TEXT]   "
                        "(stdin when neither is given)\n"
                        "  Tokenizes through a running pid (-m MODEL tokenizes locally: see pictl tokenize -m X --help).\n"
                        "  --endpoint E   pid's endpoint (default: $PI_ENDPOINT, else the local socket)\n"
                        "  --token T      pid's client token (default: $PI_TOKEN)\n"
                        "  --no-bos       do not prepend the BOS token\n"
                        "  --file F       read the text from F";
    const char *endpoint = NULL, *file = NULL, *text = NULL;
    int no_bos = 0;
    pi_error err = {{0}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = rpc_parse_endpoint_flag(argc, argv, &i, &endpoint, &err);
        if (r < 0) {
            fprintf(stderr, "pictl tokenize: %s\n", err.msg);
            return 2;
        }
        if (r > 0)
            continue;
        if (!strcmp(a, "--no-bos")) {
            no_bos = 1;
        } else if (!strcmp(a, "--file") && i + 1 < argc) {
            file = argv[++i];
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: %s\n", usage);
            return 0;
        } else if ((a[0] == '-' && a[1]) || text) {
            fprintf(stderr, "pictl tokenize: unexpected argument '%s' (see pictl tokenize --help)\n", a);
            return 2;
        } else {
            text = a;
        }
    }
    if (file && text) {
        fprintf(stderr, "pictl tokenize: give TEXT or --file F, not both\n");
        return 2;
    }
    char *owned = NULL;
    if (!text) {
        owned = rpc_read_text(file, &err);
        if (!owned) {
            fprintf(stderr, "pictl tokenize: %s\n", err.msg);
            return 1;
        }
        text = owned;
    }
    Pi__TokenizeRequest tr = PI__TOKENIZE_REQUEST__INIT;
    tr.text = (char *)text;
    tr.no_bos = no_bos != 0;
    Pi__Request req = PI__REQUEST__INIT;
    req.kind_case = PI__REQUEST__KIND_TOKENIZE;
    req.tokenize = &tr;
    int rc = call("tokenize", endpoint, &req, on_tokens);
    free(owned);
    return rc;
}

/* Appends the ids in s (separated by spaces or commas) to ids. */
static int parse_ids(const char *s, int32_t **ids, size_t *n, size_t *cap, pi_error *err)
{
    while (*s) {
        if (*s == ' ' || *s == ',' || *s == '\t' || *s == '\n') {
            s++;
            continue;
        }
        char *end = NULL;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v > INT32_MAX ||
            (*end && *end != ' ' && *end != ',' && *end != '\t' && *end != '\n'))
            return pi_error_set(err, "bad token id near '%.20s': expected integers >= 0", s);
        if (*n == *cap) {
            size_t c2 = *cap ? *cap * 2 : 64;
            int32_t *p = realloc(*ids, c2 * sizeof *p);
            if (!p)
                return pi_error_set(err, "out of memory");
            *ids = p;
            *cap = c2;
        }
        (*ids)[(*n)++] = (int32_t)v;
        s = end;
    }
    return 0;
}

int cmd_detokenize(int argc, char **argv)
{
    const char *usage = "pictl detokenize [--endpoint E] [--token T] IDS...\n"
                        "  Prints the text of the token ids (arguments, separated by spaces or commas), through pid.\n"
                        "  --endpoint E   pid's endpoint (default: $PI_ENDPOINT, else the local socket)\n"
                        "  --token T      pid's client token (default: $PI_TOKEN)";
    const char *endpoint = NULL;
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    pi_error err = {{0}};
    for (int i = 1; i < argc; i++) {
        int r = rpc_parse_endpoint_flag(argc, argv, &i, &endpoint, &err);
        if (r == 0 && (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))) {
            printf("usage: %s\n", usage);
            free(ids);
            return 0;
        }
        if (r == 0)
            r = parse_ids(argv[i], &ids, &n, &cap, &err);
        if (r < 0) {
            fprintf(stderr, "pictl detokenize: %s (see --help)\n", err.msg);
            free(ids);
            return 2;
        }
    }
    if (n == 0) {
        fprintf(stderr, "pictl detokenize: no token ids given (see --help)\n");
        free(ids);
        return 2;
    }
    Pi__DetokenizeRequest dr = PI__DETOKENIZE_REQUEST__INIT;
    dr.tokens = ids;
    dr.n_tokens = n;
    Pi__Request req = PI__REQUEST__INIT;
    req.kind_case = PI__REQUEST__KIND_DETOKENIZE;
    req.detokenize = &dr;
    int rc = call("detokenize", endpoint, &req, on_text);
    free(ids);
    return rc;
}
