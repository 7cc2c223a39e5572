/* pictl: the pi client. Thin dispatcher; each subcommand lives in cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "pi_version.h"
#include "perplexity.h"

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"tokenize", cmd_tokenize, "tokenize [-m MODEL] [--no-bos] [--special] [--pieces] [--file F | TEXT]   print token ids (locally, or through pid)"},
    {"chat", cmd_chat, "chat [--endpoint E] [--system TEXT] [--stats] [sampling flags]   multi-turn chat, turns from stdin"},
    {"generate", cmd_generate, "generate [--endpoint E] [sampling flags] [--no-stream] [--json] [--no-bos] PROMPT"},
    {"status", cmd_status, "status [--endpoint E]                            pid, model, placement, queue, workers"},
    {"workers", cmd_workers, "workers [--endpoint E]                           the workers table"},
    {"restart-worker", cmd_restart_worker, "restart-worker [--endpoint E] gpu|cpu:N         restart one worker"},
    {"shutdown", cmd_shutdown, "shutdown [--endpoint E]                          stop pid and its workers"},
    {"detokenize", cmd_detokenize, "detokenize [--endpoint E] IDS...                 token ids to text, through pid"},
    {"model", cmd_model, "model import-llama2c|import-hf|inspect|synth|profile|plan|set-template   offline model tools"},
    {"perplexity", perplexity_main, "perplexity [-m MODEL] --file F [--tokens N] [--ctx C] [--ffn MODE]   through pid's workers"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: pictl COMMAND [ARGS]   (pictl COMMAND --help describes its flags)\n"
                 "       pictl --version | --help\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %s\n", commands[i].help);
    fprintf(out, "\nCommands that talk to pid also take --token T (or PI_TOKEN), needed when pid has\n"
                 "a token (tcp always does); restart-worker and shutdown want its admin token.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "pictl: name a command (see pictl --help)\n");
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("pictl (pi) %s\n", PI_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "pictl: unknown command '%s' (see pictl --help)\n", argv[1]);
    return 2;
}
