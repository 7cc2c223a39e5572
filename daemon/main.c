/* pid: the pi coordinator daemon. Thin dispatcher over the subcommands. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "pi_version.h"

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"run", pid_cmd_run, "run -m MODEL [-p PROMPT] [-n N] [sampling flags]   generate once in the foreground"},
    {"start", pid_cmd_start, "start [--config F] [-m MODEL] [--listen E] ...    start the daemon (see start --help)"},
    {"stop", pid_cmd_stop, "stop [--listen E]                                 stop a running daemon"},
    {"status", pid_cmd_status, "status [--listen E]                               show the daemon's status"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: pid COMMAND [ARGS]   (pid COMMAND --help describes its flags)\n"
                 "       pid --version | --help\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %s\n", commands[i].help);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "pid: name a command (see pid --help)\n");
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("pid (pi) %s\n", PI_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "pid: unknown command '%s' (see pid --help)\n", argv[1]);
    return 2;
}
