/* `pictl generate`: sends a GenerateRequest to pid and streams the text of
 * each GenerateChunk to stdout as it arrives (or prints it once, or as one
 * JSON object); statistics go to stderr. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "commands.h"
#include "gen_params.h"
#include "rpc.h"
#include "stop_text.h"
#include "utf8.h"

#define MAX_STOPS 8 /* as many --stop strings as the HTTP API takes */

static void usage(FILE *out)
{
    fprintf(out, "usage: pictl generate [--endpoint E] [-n N] [--temp T] [--top-k K] [--top-p P]\n"
                 "                      [--min-p M] [--repeat-penalty R] [--repeat-last-n N]\n"
                 "                      [--seed S] [--stop TEXT]... [--no-stream] [--json] [--no-bos]\n"
                 "                      (PROMPT | -f FILE)\n\n"
                 "  --endpoint E          pid's endpoint (default: $PI_ENDPOINT, else the local socket)\n"
                 "  --token T             pid's client token (default: $PI_TOKEN)\n"
                 "  --no-stream           print the text once, at the end\n"
                 "  --json                print one JSON object: generated text, tokens and statistics\n"
                 "  --no-bos              do not put BOS before the prompt\n"
                 "  -f, --file FILE       read the prompt from FILE (- = stdin) instead of PROMPT\n"
                 "  --stop TEXT           end the text where TEXT first appears (not printed); up to 8\n"
                 "%s",
            gen_params_usage());
}

/* Everything the responses add up to. */
typedef struct gen_out {
    int stream;
    unsigned char *text;
    size_t text_len, text_cap;
    int32_t *tokens;
    size_t n_tokens, tokens_cap;
    Pi__GenerateDone done;
    char stop_reason[32];
    int have_done;
    const char *const *stops; /* --stop: text is held back while it may start one */
    size_t n_stops;
    size_t emitted;           /* bytes of text already printed (stream with stops) */
    int stopped;              /* a stop string was found: text ends before it */
} gen_out;

static int grow(void **p, size_t *cap, size_t need, size_t elem, pi_error *err)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q)
        return pi_error_set(err, "out of memory holding %zu generated items", need);
    *p = q;
    *cap = n;
    return 0;
}

static int put(const unsigned char *p, size_t n, pi_error *err)
{
    if ((n && fwrite(p, 1, n, stdout) != n) || fflush(stdout) != 0)
        return pi_error_set(err, "writing to stdout failed");
    return 0;
}

/* With --stop: text ends where a stop string starts (the call is then
 * abandoned: pictl exits and pid cancels the request of a client that went
 * away); streamed text waits while it may still become one. */
static int check_stops(gen_out *g, pi_error *err)
{
    const char *t = (const char *)g->text;
    long at = stop_text_find(t, g->text_len, g->emitted, g->stops, g->n_stops);
    if (at >= 0) {
        g->text_len = (size_t)at;
        g->stopped = 1;
        snprintf(g->stop_reason, sizeof g->stop_reason, "stop");
        if (g->stream && put(g->text + g->emitted, g->text_len - g->emitted, err) < 0)
            return -1;
        g->emitted = g->text_len;
        return pi_error_set(err, "stop string found");
    }
    size_t safe = stop_text_safe_len(t, g->text_len, g->stops, g->n_stops);
    if (g->stream && safe > g->emitted) {
        if (put(g->text + g->emitted, safe - g->emitted, err) < 0)
            return -1;
        g->emitted = safe;
    }
    return 0;
}

static int on_response(const Pi__Response *r, void *user, pi_error *err)
{
    gen_out *g = user;
    if (r->kind_case == PI__RESPONSE__KIND_CHUNK) {
        const Pi__GenerateChunk *c = r->chunk;
        if (g->stream && g->n_stops == 0) {
            if (c->text.len && fwrite(c->text.data, 1, c->text.len, stdout) != c->text.len)
                return pi_error_set(err, "writing to stdout failed");
            if (fflush(stdout) != 0)
                return pi_error_set(err, "writing to stdout failed");
            return 0;
        }
        if (grow((void **)&g->text, &g->text_cap, g->text_len + c->text.len, 1, err) < 0 ||
            grow((void **)&g->tokens, &g->tokens_cap, g->n_tokens + c->n_tokens,
                 sizeof *g->tokens, err) < 0)
            return -1;
        if (c->text.len)
            memcpy(g->text + g->text_len, c->text.data, c->text.len);
        g->text_len += c->text.len;
        if (c->n_tokens)
            memcpy(g->tokens + g->n_tokens, c->tokens, c->n_tokens * sizeof *c->tokens);
        g->n_tokens += c->n_tokens;
        return g->n_stops ? check_stops(g, err) : 0;
    }
    if (r->kind_case == PI__RESPONSE__KIND_DONE) {
        g->done = *r->done;
        snprintf(g->stop_reason, sizeof g->stop_reason, "%s",
                 r->done->stop_reason ? r->done->stop_reason : "");
        g->done.stop_reason = g->stop_reason;
        g->have_done = 1;
        /* The end: what was held back for a stop string goes out. */
        if (g->stream && g->n_stops && put(g->text + g->emitted, g->text_len - g->emitted, err) < 0)
            return -1;
        g->emitted = g->text_len;
        return 0;
    }
    return pi_error_set(err, "pid answered generate with an unexpected message (case %d)",
                        (int)r->kind_case);
}

/* A JSON string; bytes that are not valid UTF-8 become \uFFFD. */
static void json_string(FILE *f, const unsigned char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t len = utf8_len(s + i, n - i);
        if (len == 0) {
            fputs("\\ufffd", f);
            i++;
            continue;
        }
        if (len > 1) {
            fwrite(s + i, 1, len, f);
        } else if (c == '"' || c == '\\') {
            fprintf(f, "\\%c", c);
        } else if (c == '\n') {
            fputs("\\n", f);
        } else if (c == '\t') {
            fputs("\\t", f);
        } else if (c == '\r') {
            fputs("\\r", f);
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", c);
        } else {
            fputc(c, f);
        }
        i += len;
    }
    fputc('"', f);
}

static void print_json(const gen_out *g)
{
    const Pi__GenerateDone *d = &g->done;
    fputs("{\"text\":", stdout);
    json_string(stdout, g->text, g->text_len);
    fputs(",\"tokens\":[", stdout);
    for (size_t i = 0; i < g->n_tokens; i++)
        printf("%s%d", i ? "," : "", (int)g->tokens[i]);
    printf("],\"prompt_tokens\":%u,\"generated_tokens\":%u,\"time_to_first_token_ms\":%.3f,"
           "\"tokens_per_second\":%.3f,\"stop_reason\":",
           d->prompt_tokens, d->generated_tokens, d->time_to_first_token_ms,
           d->tokens_per_second);
    json_string(stdout, (const unsigned char *)g->stop_reason, strlen(g->stop_reason));
    printf(",\"seed\":%llu,\"retried_steps\":%u}\n", (unsigned long long)d->seed,
           d->retried_steps);
}

int cmd_generate(int argc, char **argv)
{
    gen_params gp;
    gen_params_default(&gp);
    const char *endpoint = NULL, *prompt = NULL, *file = NULL;
    int no_stream = 0, json = 0, no_bos = 0;
    const char *stops[MAX_STOPS];
    size_t n_stops = 0;
    pi_error err = {{0}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = gen_params_parse_flag(&gp, argc, argv, &i, &err);
        if (r == 0)
            r = rpc_parse_endpoint_flag(argc, argv, &i, &endpoint, &err);
        if (r < 0) {
            fprintf(stderr, "pictl generate: %s\n", err.msg);
            return 2;
        }
        if (r > 0)
            continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--no-stream")) {
            no_stream = 1;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--no-bos")) {
            no_bos = 1;
        } else if (!strcmp(a, "--stop")) {
            if (i + 1 >= argc || !argv[i + 1][0]) {
                fprintf(stderr, "pictl generate: --stop needs a non-empty TEXT\n");
                return 2;
            }
            if (n_stops == MAX_STOPS) {
                fprintf(stderr, "pictl generate: at most %d --stop strings\n", MAX_STOPS);
                return 2;
            }
            stops[n_stops++] = argv[++i];
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "pictl generate: %s needs a FILE (- = stdin)\n", a);
                return 2;
            }
            file = argv[++i];
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "pictl generate: unknown flag '%s' (see pictl generate --help)\n", a);
            return 2;
        } else if (prompt) {
            fprintf(stderr, "pictl generate: one PROMPT only (quote it): got '%s' and '%s'\n",
                    prompt, a);
            return 2;
        } else {
            prompt = a;
        }
    }
    if (prompt && file) {
        fprintf(stderr, "pictl generate: give PROMPT or -f FILE, not both\n");
        return 2;
    }
    if (!prompt && !file) {
        fprintf(stderr, "pictl generate: missing PROMPT (use \"\" for none; see --help)\n");
        return 2;
    }
    if (gp.n_predict == 0) {
        fprintf(stderr, "pictl generate: -n must be at least 1\n");
        return 2;
    }
    char *owned = NULL;
    if (file) {
        owned = rpc_read_text(strcmp(file, "-") ? file : NULL, &err);
        if (!owned) {
            fprintf(stderr, "pictl generate: %s\n", err.msg);
            return 2;
        }
        prompt = owned;
    }

    Pi__SamplingParams sp = PI__SAMPLING_PARAMS__INIT;
    sp.temperature = gp.temperature;
    sp.top_k = (uint32_t)gp.top_k;
    sp.top_p = gp.top_p;
    sp.min_p = gp.min_p;
    sp.repeat_penalty = gp.repeat_penalty;
    sp.repeat_last_n = (uint32_t)gp.repeat_last_n;
    sp.seed = gp.seed;
    sp.seed_set = gp.has_seed != 0;
    Pi__GenerateRequest gr = PI__GENERATE_REQUEST__INIT;
    gr.prompt = (char *)prompt;
    gr.max_tokens = (uint32_t)gp.n_predict;
    gr.sampling = &sp;
    gr.no_bos = no_bos != 0;
    Pi__Request req = PI__REQUEST__INIT;
    req.kind_case = PI__REQUEST__KIND_GENERATE;
    req.generate = &gr;

    rpc_client *c = rpc_connect_default(endpoint, &err);
    if (!c) {
        fprintf(stderr, "pictl generate: %s\n", err.msg);
        free(owned);
        return 1;
    }
    gen_out g;
    memset(&g, 0, sizeof g);
    g.stream = !no_stream && !json;
    g.stops = stops;
    g.n_stops = n_stops;
    /* Text output continues the prompt, so show the prompt first (as
     * `pid run` does); --json carries only the generated text. */
    if (!json) {
        fputs(prompt, stdout);
        fflush(stdout);
    }
    /* No overall timeout: a long prompt may take a while; a pid that goes
     * away ends the call through the connection monitor. */
    /* Ctrl-C sends Cancel (the daemon frees the slot) instead of leaving the
     * request running for nobody: SIGINT is read from a signalfd in the
     * call's poll, so no work happens in a handler. SIG_DFL first: a shell
     * starts background jobs with SIGINT ignored, and an ignored signal is
     * never queued. */
    sigset_t sigint;
    sigemptyset(&sigint);
    sigaddset(&sigint, SIGINT);
    int sfd = -1, cancelled = 0;
    if (signal(SIGINT, SIG_DFL) == SIG_ERR || sigprocmask(SIG_BLOCK, &sigint, NULL) < 0 ||
        (sfd = signalfd(-1, &sigint, SFD_CLOEXEC | SFD_NONBLOCK)) < 0)
        fprintf(stderr, "pictl generate: Ctrl-C will not cancel (%s)\n", strerror(errno));
    int rc = rpc_call_cancellable(c, &req, on_response, &g, -1, NULL, sfd, &cancelled, &err);
    rpc_close(&c);
    free(owned); /* the prompt (req) is not needed past the call */
    if (sfd >= 0)
        close(sfd);
    if (cancelled) {
        if (!json)
            fputc('\n', stdout);
        fflush(stdout);
        if (rc < 0)
            fprintf(stderr, "pictl generate: interrupted; %s\n", err.msg);
        else
            fprintf(stderr, "pictl generate: interrupted; pid cancelled the request (%s) after %u "
                            "tokens\n", g.stop_reason, g.done.generated_tokens);
        free(g.text);
        free(g.tokens);
        return 130;
    }
    if (g.stopped) { /* pid's GenerateDone never came: count what did */
        g.done.generated_tokens = (uint32_t)g.n_tokens;
        g.done.stop_reason = g.stop_reason;
    } else if (rc < 0) {
        if (g.stream)
            fputc('\n', stdout);
        fprintf(stderr, "pictl generate: %s\n", err.msg);
        free(g.text);
        free(g.tokens);
        return 1;
    }
    if (json) {
        print_json(&g);
    } else {
        if (!g.stream && g.text_len)
            fwrite(g.text, 1, g.text_len, stdout);
        fputc('\n', stdout);
    }
    fflush(stdout);
    if (g.stopped)
        fprintf(stderr, "generated %u tokens, stopped at a --stop string\n", g.done.generated_tokens);
    else
        fprintf(stderr, "prompt %u tokens, generated %u tokens, first token %.1f ms, %.1f tok/s, "
                        "seed %llu\n",
                g.done.prompt_tokens, g.done.generated_tokens, g.done.time_to_first_token_ms,
                g.done.tokens_per_second, (unsigned long long)g.done.seed);
    free(g.text);
    free(g.tokens);
    return ferror(stdout) ? 1 : 0;
}
