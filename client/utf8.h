/* UTF-8 checks shared by the commands that print or resend generated text
 * (a chunk may end inside a character; a model may emit invalid bytes). */
#ifndef PI_CLIENT_UTF8_H
#define PI_CLIENT_UTF8_H

#include <stddef.h>

/* Length of the valid UTF-8 sequence at s (at most n bytes, n > 0), 0 if invalid. */
size_t utf8_len(const unsigned char *s, size_t n);

#endif
