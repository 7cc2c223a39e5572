/* pictl subcommands: each takes the arguments after its own name
 * (argv[0] is the subcommand) and returns the process exit code. */
#ifndef PI_CLIENT_COMMANDS_H
#define PI_CLIENT_COMMANDS_H

int cmd_tokenize(int argc, char **argv);
int cmd_model(int argc, char **argv);
/* `pictl model synth` (argv[0] is "synth"). */
int cmd_model_synth(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_workers(int argc, char **argv);
int cmd_restart_worker(int argc, char **argv);
int cmd_shutdown(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
/* `pictl model set-template` (cmd_template.c): argv[0] is "set-template". */
int cmd_model_set_template(int argc, char **argv);
int cmd_model_import_hf(int argc, char **argv);
/* `pictl chat` (cmd_chat.c): multi-turn chat, turns read from stdin. */
int cmd_chat(int argc, char **argv);
/* `pictl model profile` (cmd_profile.c): argv[0] is "profile". */
int cmd_model_profile(int argc, char **argv);
/* `pictl model plan` (cmd_plan.c): argv[0] is "plan". */
int cmd_model_plan(int argc, char **argv);
/* `pictl tokenize` without -m: tokenizes through pid's Tokenize RPC
 * ([--endpoint E] [--no-bos] [--file F | TEXT], else stdin; ids on one line,
 * separated by spaces). */
int client_remote_tokenize(int argc, char **argv);

#endif
