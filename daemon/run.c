/* placeholder: replaced by the real command */
#include <stdio.h>

#include "commands.h"

int pid_cmd_run(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "pid run: not built yet\n");
    return 1;
}
