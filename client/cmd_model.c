/* placeholder: replaced by the real command */
#include <stdio.h>

#include "commands.h"

int cmd_model(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "pictl model: not built yet\n");
    return 1;
}
