/* rpc: a client connection to pid (a ZeroMQ DEALER speaking PIRPC01,
 * docs/protocol.md). One outstanding call at a time; request ids increase
 * from 1 and responses for other ids are ignored. */
#ifndef PI_CLIENT_RPC_H
#define PI_CLIENT_RPC_H

#include "pi.pb-c.h"
#include "pi_error.h"

typedef struct rpc_client rpc_client;

/* Connects to pid at endpoint. Fails fast with "pid is not running at E;
 * start it with: pid start -m MODEL" when an ipc socket file is missing or
 * refuses connections, or when a tcp endpoint does not answer a Status
 * probe within 2 s. The caller owns the result (rpc_close). */
rpc_client *rpc_connect(const char *endpoint, pi_error *err);

/* rpc_connect on the endpoint that endpoint_resolve picks for flag
 * (the --endpoint value, or NULL). */
rpc_client *rpc_connect_default(const char *flag, pi_error *err);

void rpc_close(rpc_client **c);

const char *rpc_endpoint(const rpc_client *c);

/* Called for each response to the call; returns 0 to go on, -1 (with err)
 * to stop the call. */
typedef int (*rpc_handler)(const Pi__Response *resp, void *user, pi_error *err);

/* Sends req (its id is set here) and passes every response with that id to
 * fn until the final one (any kind but chunk), then returns 0. An Error
 * response returns -1 with err "pid: CODE: message" and *remote_code (if
 * non-NULL) set to its code; local failures leave *remote_code at -1.
 * timeout_ms bounds the wait for each next response (-1 = none); the call
 * also fails as soon as the connection to pid closes. */
int rpc_call(rpc_client *c, Pi__Request *req, rpc_handler fn, void *user, int timeout_ms,
             int *remote_code, pi_error *err);

/* rpc_call that also polls cancel_fd (e.g. a signalfd for SIGINT; -1 =
 * none): once it is readable, sends Cancel{request_id} for req, sets
 * *cancelled = 1 and waits up to 2 s more for the final response (pid ends
 * a cancelled Generate with GenerateDone{stop_reason "cancelled"}). */
int rpc_call_cancellable(rpc_client *c, Pi__Request *req, rpc_handler fn, void *user,
                         int timeout_ms, int *remote_code, int cancel_fd, int *cancelled,
                         pi_error *err);

/* If argv[*i] is --endpoint E or --endpoint=E, stores E in *value, leaves
 * *i on the last argument consumed and returns 1; 0 for other arguments;
 * -1 with err when the value is missing. Also takes --token T (=T): the
 * token every later connection sends, instead of $PI_TOKEN (docs/protocol.md,
 * "Access"); *value is left as it was. */
int rpc_parse_endpoint_flag(int argc, char **argv, int *i, const char **value, pi_error *err);

/* Reads all of path (NULL = stdin; at most WIRE_MAX_BODY bytes) as a
 * NUL-terminated string; caller frees. NULL with err naming the file. */
char *rpc_read_text(const char *path, pi_error *err);

#endif
