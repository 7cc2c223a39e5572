/* `pictl chat`: an interactive, multi-turn chat with pid. Each line read
 * from stdin is a user turn; the whole conversation goes to pid as
 * GenerateRequest.messages (pid renders the model's chat template and parses
 * its special tokens), and the reply streams to stdout as it is sampled.
 * Reading stdin line by line lets a script pipe the turns in. */
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
#include "utf8.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: pictl chat [--endpoint E] [--token T] [--system TEXT] [--stats]\n"
                 "                  [-n N] [sampling flags]\n\n"
                 "  Reads one user turn per line from stdin and streams each reply to stdout;\n"
                 "  pid renders the conversation with the model's chat template.\n"
                 "  /exit (or /quit) or end of input (Ctrl-D) ends the chat, /reset forgets\n"
                 "  the conversation, /help lists these. Ctrl-C stops a reply; at the prompt\n"
                 "  it ends the chat.\n\n"
                 "  --endpoint E          pid's endpoint (default: $PI_ENDPOINT, else the local socket)\n"
                 "  --token T             pid's client token (default: $PI_TOKEN)\n"
                 "  --system TEXT         a system message that opens the conversation\n"
                 "  --stats               after each reply, a line of statistics on stderr\n"
                 "  -n N                  at most N tokens per reply\n"
                 "%s",
            gen_params_usage());
}

/* The conversation so far: roles are string constants, contents malloc'd. */
typedef struct convo {
    Pi__ChatMessage *m;
    Pi__ChatMessage **p; /* pointers into m, as protobuf-c wants them */
    size_t n, cap, first; /* first: messages kept by /reset (the system message) */
} convo;

static int convo_add(convo *c, const char *role, char *content, pi_error *err)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        Pi__ChatMessage *m = realloc(c->m, cap * sizeof *m);
        if (!m)
            return pi_error_set(err, "out of memory for the conversation");
        c->m = m;
        Pi__ChatMessage **p = realloc(c->p, cap * sizeof *p);
        if (!p)
            return pi_error_set(err, "out of memory for the conversation");
        c->p = p;
        c->cap = cap;
    }
    pi__chat_message__init(&c->m[c->n]);
    c->m[c->n].role = (char *)role;
    c->m[c->n].content = content;
    c->n++;
    for (size_t i = 0; i < c->n; i++) /* m may have moved */
        c->p[i] = &c->m[i];
    return 0;
}

static void convo_truncate(convo *c, size_t n)
{
    while (c->n > n)
        free(c->m[--c->n].content);
}

/* One reply as it streams: printed, and kept for the next turn's history. */
typedef struct reply {
    unsigned char *text;
    size_t len, cap;
    Pi__GenerateDone done;
    char stop_reason[32];
} reply;

static int on_response(const Pi__Response *r, void *user, pi_error *err)
{
    reply *g = user;
    if (r->kind_case == PI__RESPONSE__KIND_CHUNK) {
        const Pi__GenerateChunk *c = r->chunk;
        if (c->text.len == 0)
            return 0;
        if (fwrite(c->text.data, 1, c->text.len, stdout) != c->text.len || fflush(stdout) != 0)
            return pi_error_set(err, "writing to stdout failed");
        if (g->len + c->text.len + 1 > g->cap) {
            size_t cap = g->cap ? g->cap : 256;
            while (cap < g->len + c->text.len + 1)
                cap *= 2;
            unsigned char *t = realloc(g->text, cap);
            if (!t)
                return pi_error_set(err, "out of memory holding the reply");
            g->text = t;
            g->cap = cap;
        }
        memcpy(g->text + g->len, c->text.data, c->text.len);
        g->len += c->text.len;
        return 0;
    }
    if (r->kind_case == PI__RESPONSE__KIND_DONE) {
        g->done = *r->done;
        snprintf(g->stop_reason, sizeof g->stop_reason, "%s", r->done->stop_reason ? r->done->stop_reason : "");
        g->done.stop_reason = g->stop_reason;
        return 0;
    }
    return pi_error_set(err, "pid answered chat with an unexpected message (case %d)", (int)r->kind_case);
}

/* The reply as a C string for the history: bytes that are not UTF-8 (pid
 * refuses such prompts) become U+FFFD. malloc'd, or NULL. */
static char *reply_text(const reply *g)
{
    char *s = malloc(3 * g->len + 1);
    if (!s)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < g->len;) {
        size_t l = utf8_len(g->text + i, g->len - i);
        if (l == 0 || g->text[i] == 0) {
            memcpy(s + k, "\xef\xbf\xbd", 3);
            k += 3;
            i++;
        } else {
            memcpy(s + k, g->text + i, l);
            k += l;
            i += l;
        }
    }
    s[k] = 0;
    return s;
}

typedef struct chat_opts {
    const char *endpoint, *system;
    int stats;
    gen_params gp;
} chat_opts;

/* 0, 1 for --help (done), or 2 for bad usage (reported). */
static int parse_args(int argc, char **argv, chat_opts *o)
{
    memset(o, 0, sizeof *o);
    gen_params_default(&o->gp);
    pi_error err = {{0}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = gen_params_parse_flag(&o->gp, argc, argv, &i, &err);
        if (r == 0)
            r = rpc_parse_endpoint_flag(argc, argv, &i, &o->endpoint, &err);
        if (r < 0) {
            fprintf(stderr, "pictl chat: %s\n", err.msg);
            return 2;
        }
        if (r > 0)
            continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 1;
        } else if (!strcmp(a, "--stats")) {
            o->stats = 1;
        } else if (!strcmp(a, "--system")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "pictl chat: --system needs a TEXT\n");
                return 2;
            }
            o->system = argv[++i];
        } else {
            fprintf(stderr, "pictl chat: unknown argument '%s' (turns are read from stdin; see --help)\n", a);
            return 2;
        }
    }
    if (o->gp.n_predict == 0) {
        fprintf(stderr, "pictl chat: -n must be at least 1\n");
        return 2;
    }
    return 0;
}

/* One turn: sends the conversation, streams the reply. 0 ok, 1 cancelled
 * by Ctrl-C, -1 with err and *remote (pid's error code, -1 when pid could
 * not be reached). The reply (what came of it when cancelled) joins c. */
static int turn(rpc_client *rpc, const chat_opts *o, convo *c, int *remote, pi_error *err)
{
    Pi__SamplingParams sp = PI__SAMPLING_PARAMS__INIT;
    sp.temperature = o->gp.temperature;
    sp.top_k = (uint32_t)o->gp.top_k;
    sp.top_p = o->gp.top_p;
    sp.min_p = o->gp.min_p;
    sp.repeat_penalty = o->gp.repeat_penalty;
    sp.repeat_last_n = (uint32_t)o->gp.repeat_last_n;
    sp.seed = o->gp.seed;
    sp.seed_set = o->gp.has_seed != 0;
    Pi__GenerateRequest gr = PI__GENERATE_REQUEST__INIT;
    gr.max_tokens = (uint32_t)o->gp.n_predict;
    gr.sampling = &sp;
    gr.n_messages = c->n;
    gr.messages = c->p;
    Pi__Request req = PI__REQUEST__INIT;
    req.kind_case = PI__REQUEST__KIND_GENERATE;
    req.generate = &gr;

    /* SIGINT is blocked and read from a signalfd only while a reply runs,
     * so Ctrl-C cancels the request (pid frees its slot) and the chat goes
     * on; at the prompt it keeps its default action. */
    sigset_t sigint;
    sigemptyset(&sigint);
    sigaddset(&sigint, SIGINT);
    int sfd = -1, cancelled = 0;
    if (sigprocmask(SIG_BLOCK, &sigint, NULL) < 0 ||
        (sfd = signalfd(-1, &sigint, SFD_CLOEXEC | SFD_NONBLOCK)) < 0)
        fprintf(stderr, "pictl chat: Ctrl-C will not stop the reply (%s)\n", strerror(errno));
    reply g;
    memset(&g, 0, sizeof g);
    int rc = rpc_call_cancellable(rpc, &req, on_response, &g, -1, remote, sfd, &cancelled, err);
    if (sfd >= 0) {
        struct signalfd_siginfo si;
        while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
            ; /* drop the Ctrl-C that cancelled, so unblocking does not deliver it */
        close(sfd);
    }
    if (sigprocmask(SIG_UNBLOCK, &sigint, NULL) < 0)
        fprintf(stderr, "pictl chat: %s\n", strerror(errno));
    fputc('\n', stdout);
    fflush(stdout);
    if (rc < 0 && !cancelled) {
        free(g.text);
        return -1;
    }
    if (o->stats)
        fprintf(stderr, "prompt %u tokens, generated %u tokens, first token %.1f ms, %.1f tok/s, "
                        "stop %s, seed %llu\n",
                g.done.prompt_tokens, g.done.generated_tokens, g.done.time_to_first_token_ms,
                g.done.tokens_per_second, g.stop_reason, (unsigned long long)g.done.seed);
    char *text = reply_text(&g);
    free(g.text);
    if (!text)
        return pi_error_set(err, "out of memory holding the reply");
    if (convo_add(c, "assistant", text, err) < 0) {
        free(text);
        return -1;
    }
    return cancelled;
}

/* Runs the read-send-print loop until /exit or end of input. */
static int chat_loop(rpc_client *rpc, const chat_opts *o, convo *c)
{
    pi_error err = {{0}};
    int tty = isatty(STDIN_FILENO);
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    for (;;) {
        if (tty) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0) { /* end of input: Ctrl-D */
            if (ferror(stdin)) {
                fprintf(stderr, "pictl chat: reading stdin: %s\n", strerror(errno));
                rc = 1;
            } else if (tty) {
                fputc('\n', stdout);
            }
            break;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = 0;
        if (n == 0)
            continue;
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit"))
            break;
        if (!strcmp(line, "/reset")) {
            convo_truncate(c, c->first);
            continue;
        }
        if (!strcmp(line, "/help")) {
            fputs("/exit or /quit ends the chat (so does Ctrl-D), /reset forgets the conversation\n", stdout);
            continue;
        }
        char *content = strdup(line);
        if (!content || convo_add(c, "user", content, &err) < 0) {
            free(content);
            fprintf(stderr, "pictl chat: out of memory\n");
            rc = 1;
            break;
        }
        int remote = -1;
        if (turn(rpc, o, c, &remote, &err) < 0) {
            /* pid refused the turn (e.g. too long for the context): it is
             * dropped and the chat goes on; /reset makes room. A pid that
             * went away ends the chat. */
            convo_truncate(c, c->n - 1);
            fprintf(stderr, "pictl chat: %s\n", err.msg);
            if (remote < 0) {
                rc = 1;
                break;
            }
        }
    }
    free(line);
    return rc;
}

int cmd_chat(int argc, char **argv)
{
    chat_opts o;
    int p = parse_args(argc, argv, &o);
    if (p)
        return p == 1 ? 0 : 2;
    pi_error err = {{0}};
    rpc_client *rpc = rpc_connect_default(o.endpoint, &err);
    if (!rpc) {
        fprintf(stderr, "pictl chat: %s\n", err.msg);
        return 1;
    }
    convo c = {0};
    int rc = 0;
    if (o.system) {
        char *s = strdup(o.system);
        if (!s || convo_add(&c, "system", s, &err) < 0) {
            free(s);
            fprintf(stderr, "pictl chat: out of memory\n");
            rc = 1;
        }
        c.first = c.n;
    }
    if (rc == 0)
        rc = chat_loop(rpc, &o, &c);
    convo_truncate(&c, 0);
    free(c.m);
    free(c.p);
    rpc_close(&rpc);
    return rc;
}
