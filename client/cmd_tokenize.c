/* placeholder: replaced by the real command */
#include <stdio.h>

#include "commands.h"

int cmd_tokenize(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "pictl tokenize: not built yet\n");
    return 1;
}
