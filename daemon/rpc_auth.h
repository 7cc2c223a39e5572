/* rpc_auth: who may send what to pid's RPC socket (docs/protocol.md,
 * "Access"). A client token guards every request, an admin token guards
 * Shutdown and RestartWorker. A tcp endpoint is refused unless a client
 * token is set, since anyone who reaches the port could otherwise drive
 * pid; an ipc socket is guarded by its mode (0600 in a 0700 folder) and
 * needs a token only when one is configured. */
#ifndef PI_DAEMON_RPC_AUTH_H
#define PI_DAEMON_RPC_AUTH_H

#include <stddef.h>

#include "pi_error.h"

#define RPC_AUTH_TOKEN_MIN 16   /* bytes: guessing stays hopeless over a network */
#define RPC_AUTH_TOKEN_MAX 256

typedef struct rpc_auth {
    char token[RPC_AUTH_TOKEN_MAX];  /* "" = none */
    char admin[RPC_AUTH_TOKEN_MAX];  /* "" = none */
    int tcp;                         /* the endpoint is tcp:// */
} rpc_auth;

/* 0 when t is a usable token: RPC_AUTH_TOKEN_MIN..RPC_AUTH_TOKEN_MAX-1
 * printable ASCII bytes without spaces; else -1 naming `what`. */
int rpc_auth_token_valid(const char *what, const char *t, pi_error *err);

/* Fills a from the configured tokens ("" = none) for endpoint; -1 with err
 * when a tcp endpoint has no client token, a token is malformed, or the two
 * are equal. */
int rpc_auth_init(rpc_auth *a, const char *token, const char *admin, const char *endpoint,
                  pi_error *err);

/* Whether a request carrying `given` (NULL = none) may run; admin_rpc:
 * Shutdown or RestartWorker. 0 = allowed; -1 with a message for the client
 * (Error UNAUTHENTICATED) in msg. */
int rpc_auth_check(const rpc_auth *a, const char *given, int admin_rpc, const char *what,
                   char *msg, size_t cap);

#endif
