/* What pid accepts from a client (req_limits.h). */
#include "req_limits.h"

#include <math.h>
#include <stdint.h>

size_t req_limits_utf8_valid_prefix(const char *s, size_t len)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;
    while (i < len) {
        uint8_t c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t lo = 0x80, hi = 0xBF; /* the allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) {
            n = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 3;
            if (c == 0xE0)
                lo = 0xA0; /* overlong */
            else if (c == 0xED)
                hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4;
            if (c == 0xF0)
                lo = 0x90; /* overlong */
            else if (c == 0xF4)
                hi = 0x8F; /* past U+10FFFF */
        } else {
            return i; /* a continuation byte, C0/C1 or F5..FF */
        }
        if (i + n > len || p[i + 1] < lo || p[i + 1] > hi)
            return i;
        for (size_t k = 2; k < n; k++)
            if ((p[i + k] & 0xC0) != 0x80)
                return i;
        i += n;
    }
    return len;
}

int req_limits_check_prompt(const char *prompt, size_t len, pi_error *err)
{
    if (len > REQ_LIMITS_MAX_PROMPT_BYTES)
        return pi_error_set(err, "the prompt is %zu bytes, more than pid accepts (%u bytes); shorten it",
                            len, REQ_LIMITS_MAX_PROMPT_BYTES);
    size_t at = req_limits_utf8_valid_prefix(prompt, len);
    if (at < len)
        return pi_error_set(err, "the prompt is not valid UTF-8 at byte %zu (0x%02x); send UTF-8 text",
                            at, (unsigned)(uint8_t)prompt[at]);
    return 0;
}

int req_limits_sampling_from_wire(sampler_params *out, const Pi__SamplingParams *p, pi_error *err)
{
    if (!(p->temperature >= 0) || !isfinite(p->temperature))
        return pi_error_set(err, "sampling.temperature %g: must be a finite number >= 0 (0 = greedy)",
                            (double)p->temperature);
    if (!(p->top_p >= 0 && p->top_p <= 1))
        return pi_error_set(err, "sampling.top_p %g: must be in (0, 1] (0 or 1 = off)", (double)p->top_p);
    if (!(p->min_p >= 0 && p->min_p <= 1))
        return pi_error_set(err, "sampling.min_p %g: must be in [0, 1] (0 = off)", (double)p->min_p);
    if (!(p->repeat_penalty >= 0) || !isfinite(p->repeat_penalty))
        return pi_error_set(err, "sampling.repeat_penalty %g: must be a finite number > 0 (0 or 1 = off)",
                            (double)p->repeat_penalty);
    if (p->top_k > INT32_MAX || p->repeat_last_n > INT32_MAX)
        return pi_error_set(err, "sampling.top_k %u / repeat_last_n %u: must be at most %d (a negative "
                                 "number sent as uint32?)", p->top_k, p->repeat_last_n, INT32_MAX);
    out->temperature = p->temperature;
    out->top_k = (int32_t)p->top_k;
    out->top_p = p->top_p == 0 ? 1.0f : p->top_p;
    out->min_p = p->min_p;
    out->repeat_penalty = p->repeat_penalty == 0 ? 1.0f : p->repeat_penalty;
    out->repeat_last_n = (int32_t)p->repeat_last_n;
    out->seed = p->seed;
    out->has_seed = p->seed_set;
    return 0;
}
