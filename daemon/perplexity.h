/* `pictl perplexity`: the perplexity of a text under a model, computed by
 * pid's engine and workers (the same path as `pid run`), each chunk of
 * --ctx tokens a score request (scheduler.h) run from BOS. */
#ifndef PI_DAEMON_PERPLEXITY_H
#define PI_DAEMON_PERPLEXITY_H

/* argv[0] is the command's name; the process exit code (0, 1 failed, 2 usage). */
int perplexity_main(int argc, char **argv);

#endif
