/* pi_error: the one error type every library returns through.
 * Functions return 0 (or a non-NULL pointer) on success; on failure they
 * fill *err (when err is non-NULL) with a message that names the thing
 * that is wrong and what to do, and return -1 (or NULL). Only main()s print. */
#ifndef PI_ERROR_H
#define PI_ERROR_H

#include <stddef.h>
#include <stdint.h>

typedef struct pi_error {
    char msg[512];
} pi_error;

/* Formats the message into err (if non-NULL) and returns -1, so a failing
 * path can read: return pi_error_set(err, "gguf %s: bad magic", path); */
int pi_error_set(pi_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prepends "prefix: " to an existing message (context from an outer layer). */
int pi_error_wrap(pi_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Overflow-checked size arithmetic: return 0 and store the result, or -1. */
int pi_mul_size(size_t a, size_t b, size_t *out);
int pi_add_size(size_t a, size_t b, size_t *out);

/* Parses an unsigned decimal (no sign, no trailing junk) of at most max:
 * 0 and *out set, or -1. For command-line flags; the caller says what is wrong. */
int pi_parse_u64(const char *s, uint64_t max, uint64_t *out);
/* Parses a share: a decimal number from 0 to 1 (no trailing junk): 0 and
 * *out set, or -1 (--warm-share and its settings key). */
int pi_parse_share(const char *s, double *out);

#endif
