/* http_server: pid's OpenAI-compatible HTTP API (docs/http.md), on
 * libmicrohttpd with a thread per connection. It runs no model of its own:
 * each connection thread opens a ZeroMQ DEALER on pid's RPC ROUTER through
 * an inproc endpoint and speaks the RPC protocol (Generate, Cancel, Status),
 * so HTTP requests go through the same scheduler, in the same main loop, as
 * pictl's. Optional at build time (PI_HAVE_HTTP: libmicrohttpd + libcjson). */
#ifndef PI_DAEMON_HTTP_SERVER_H
#define PI_DAEMON_HTTP_SERVER_H

#include <stdint.h>

#include "gen_params.h"
#include "pi_error.h"

#define HTTP_UNAVAILABLE_MSG "this pid was built without HTTP support (libmicrohttpd, libcjson); " \
                             "install them and rebuild"

typedef struct http_server_opts {
    const char *listen;         /* HOST:PORT (http_listen_parse) */
    void *zctx;                 /* the ZeroMQ context of rpc_endpoint's socket */
    const char *rpc_endpoint;   /* inproc:// endpoint of pid's RPC ROUTER */
    const char *token;          /* pid's client token for that socket (NULL = none) */
    const char *model_path;     /* its file name is the model id */
    gen_params defaults;        /* pid's sampling defaults for fields a request leaves out */
} http_server_opts;

typedef struct http_server http_server;

/* 1 when this pid was built with HTTP support. */
int http_server_available(void);

/* Binds and starts serving. Caller owns the result: http_server_stop. NULL
 * with err (HTTP_UNAVAILABLE_MSG when built without HTTP). */
http_server *http_server_start(const http_server_opts *o, pi_error *err);

/* Ends every connection (open streams end, their requests are cancelled),
 * joins the threads and closes their sockets: call before the ZeroMQ context
 * is terminated. NULLs *s. */
void http_server_stop(http_server **s);

#endif
