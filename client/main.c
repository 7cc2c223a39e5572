/* pictl: the pi client. Thin dispatcher; each subcommand lives in cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "commands.h"

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"tokenize", cmd_tokenize, "tokenize [-m MODEL] [--no-bos] [--pieces] [--file F | TEXT]   print token ids (locally, or through pid)"},
    {"chat", cmd_chat, "chat [--endpoint E] [--system TEXT] [--stats] [sampling flags]   multi-turn chat, turns from stdin"},
    {"generate", cmd_generate, "generate [--endpoint E] [sampling flags] [--no-stream] [--json] [--no-bos] PROMPT"},
    {"status", cmd_status, "status [--endpoint E]                            pid, model, placement, queue, workers"},
    {"workers", cmd_workers, "workers [--endpoint E]                           the workers table"},
    {"restart-worker", cmd_restart_worker, "restart-worker [--endpoint E] gpu|cpu:N         restart one worker"},
    {"shutdown", cmd_shutdown, "shutdown [--endpoint E]                          stop pid and its workers"},
    {"detokenize", cmd_detokenize, "detokenize [--endpoint E] IDS...                 token ids to text, through pid"},
    {"model", cmd_model, "model import-llama2c|inspect|synth|profile|plan   offline model tools"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: pictl COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %s\n", commands[i].help);
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "pictl: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
