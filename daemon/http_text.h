/* http_text: the text rules of the HTTP API that need no HTTP library:
 * the listen address (HOST:PORT), OpenAI stop strings over streamed text,
 * and UTF-8 boundaries (a chunk's bytes may end inside a character). */
#ifndef PI_DAEMON_HTTP_TEXT_H
#define PI_DAEMON_HTTP_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "pi_error.h"

/* "HOST:PORT" with HOST an IPv4 address or "localhost" (127.0.0.1) and PORT
 * in 1..65535: the address in network byte order, the port in host order.
 * -1 with err saying what is wrong. */
int http_listen_parse(const char *s, uint32_t *addr_be, uint16_t *port, pi_error *err);

/* The earliest position >= from where one of the n stop strings starts in
 * text[0, len) and ends within it, or -1. */
long http_stop_find(const char *text, size_t len, size_t from, const char *const *stops, size_t n);

/* How many bytes of text[0, len) can go out now: all of them but a suffix
 * that could still become a stop string (a proper prefix of one of them) and
 * an incomplete UTF-8 character at the end. */
size_t http_stop_safe_len(const char *text, size_t len, const char *const *stops, size_t n);

/* len without a trailing incomplete UTF-8 sequence (a lead byte whose
 * continuation bytes have not arrived yet). */
size_t http_utf8_complete_len(const char *text, size_t len);

#endif
