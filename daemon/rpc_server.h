/* rpc_server: pid's client-facing ROUTER socket (PIRPC01 + protobuf,
 * docs/protocol.md). Decodes with proto/wire.h; a malformed message gets an
 * Error{BAD_REQUEST} (or is dropped when it has no usable routing id), a
 * wrong header gets Error{VERSION}; nothing a client sends can crash pid.
 * Generation results stream back through the scheduler sink it provides. */
#ifndef PI_DAEMON_RPC_SERVER_H
#define PI_DAEMON_RPC_SERVER_H

#include "engine.h"
#include "gen_params.h"
#include "pi_error.h"
#include "scheduler.h"

typedef struct rpc_server rpc_server;

/* Allocates the server (no socket yet). defaults fill what a Generate
 * leaves out (max_tokens 0, no sampling message). Caller owns it:
 * rpc_server_free. */
rpc_server *rpc_server_new(const gen_params *defaults, pi_error *err);

/* Tokens (docs/protocol.md, "Access"; "" = none), checked from
 * rpc_server_bind on: call before it. Copied. */
void rpc_server_set_tokens(rpc_server *s, const char *token, const char *admin_token);

/* The sink to give engine_new: results go to the requesting client. */
sched_sink rpc_server_sink(rpc_server *s);

/* Binds endpoint (ipc: folder 0700, socket 0600; refuses when another pid
 * answers there, or a tcp endpoint without a token: rpc_auth.h) and
 * registers with the engine's loop. */
int rpc_server_bind(rpc_server *s, engine *e, const char *endpoint, pi_error *err);

/* Also binds the RPC socket at inproc://NAME, for clients inside pid (its
 * HTTP server); their context is rpc_server_zctx. After rpc_server_bind. */
int rpc_server_bind_inproc(rpc_server *s, const char *inproc_endpoint, pi_error *err);
void *rpc_server_zctx(rpc_server *s);

/* Closes the socket and unlinks an ipc socket file. NULLs *s. */
void rpc_server_free(rpc_server **s);

/* 1 when a pi daemon answers at an ipc endpoint's socket file (a plain
 * unix-socket connect), 0 when nobody does (stale or absent). tcp: 0. */
int rpc_endpoint_in_use(const char *endpoint);

#endif
