/* stop_text: stop strings over text that streams in pieces, shared by pid's
 * HTTP API (OpenAI "stop") and `pictl generate --stop`: where a stop string
 * starts, and how much text can go out before it is known not to start one
 * (a chunk may also end inside a UTF-8 character). */
#ifndef PI_STOP_TEXT_H
#define PI_STOP_TEXT_H

#include <stddef.h>

/* The earliest position >= from where one of the n stop strings starts in
 * text[0, len) and ends within it, or -1. */
long stop_text_find(const char *text, size_t len, size_t from, const char *const *stops, size_t n);

/* How many bytes of text[0, len) can go out now: all of them but a suffix
 * that could still become a stop string (a proper prefix of one of them) and
 * an incomplete UTF-8 character at the end. */
size_t stop_text_safe_len(const char *text, size_t len, const char *const *stops, size_t n);

/* len without a trailing incomplete UTF-8 sequence (a lead byte whose
 * continuation bytes have not arrived yet). */
size_t stop_text_utf8_complete_len(const char *text, size_t len);

#endif
