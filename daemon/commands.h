/* pid subcommands: each takes the arguments after its own name (argv[0] is
 * the subcommand) and returns the process exit code. */
#ifndef PI_DAEMON_COMMANDS_H
#define PI_DAEMON_COMMANDS_H

int pid_cmd_run(int argc, char **argv);
int pid_cmd_start(int argc, char **argv);
int pid_cmd_stop(int argc, char **argv);
int pid_cmd_status(int argc, char **argv);

#endif
