/* req_limits: what pid accepts from a client, in one place (docs/protocol.md,
 * "Errors and limits"; the frame caps are proto/wire.h's WIRE_MAX_BODY and
 * the socket's ZMQ_MAXMSGSIZE). Every check answers a one-line message that
 * names the value, the limit and what to do. */
#ifndef PI_DAEMON_REQ_LIMITS_H
#define PI_DAEMON_REQ_LIMITS_H

#include <stddef.h>

#include "pi_error.h"
#include "sampler.h"
#include "wire.h"

#define REQ_LIMITS_MAX_PROMPT_BYTES (1u << 20) /* a Generate prompt, in bytes */
#define REQ_LIMITS_MAX_QUEUE_DEFAULT 256u      /* requests waiting for a slot (max_queue) */
#define REQ_LIMITS_MAX_QUEUE_MAX 1000000u      /* the largest max_queue accepted */

/* 0 when prompt[0..len) is at most REQ_LIMITS_MAX_PROMPT_BYTES of valid UTF-8
 * (no overlong forms, surrogates or code points past U+10FFFF); -1 with
 * err naming the first bad byte's offset, or the size and the limit. */
int req_limits_check_prompt(const char *prompt, size_t len, pi_error *err);

/* The offset of the first byte of s[0..len) that is not part of valid UTF-8,
 * or len when all of it is valid. */
size_t req_limits_utf8_valid_prefix(const char *s, size_t len);

/* Fills *out from a Generate's SamplingParams, proto3 zeros meaning off
 * (temperature 0 = greedy, top_k 0, top_p 0 or 1, min_p 0, repeat_penalty 0
 * or 1); 0, or -1 with err naming the field, its value and its range when a
 * value is out of range (NaN included; top_k / repeat_last_n above INT32_MAX,
 * which is what a negative number sent as uint32 becomes). */
int req_limits_sampling_from_wire(sampler_params *out, const Pi__SamplingParams *p, pi_error *err);

#endif
