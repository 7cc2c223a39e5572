/* http_text: the text rules of the HTTP API that need no HTTP library: the
 * listen address (HOST:PORT). Stop strings over streamed text are
 * tokenizer/stop_text.h's, shared with pictl generate --stop. */
#ifndef PI_DAEMON_HTTP_TEXT_H
#define PI_DAEMON_HTTP_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "pi_error.h"

/* "HOST:PORT" with HOST an IPv4 address or "localhost" (127.0.0.1) and PORT
 * in 1..65535: the address in network byte order, the port in host order.
 * -1 with err saying what is wrong. */
int http_listen_parse(const char *s, uint32_t *addr_be, uint16_t *port, pi_error *err);

#endif
