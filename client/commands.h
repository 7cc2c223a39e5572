/* pictl subcommands: each takes the arguments after its own name
 * (argv[0] is the subcommand) and returns the process exit code. */
#ifndef PI_CLIENT_COMMANDS_H
#define PI_CLIENT_COMMANDS_H

int cmd_tokenize(int argc, char **argv);
int cmd_model(int argc, char **argv);

#endif
