/* The reference forward's greedy run from one start token, for tests that
 * check a backend's logits and tokens against it (test_host_solo,
 * test_split_forward). */
#ifndef PI_TEST_GREEDY_ORACLE_H
#define PI_TEST_GREEDY_ORACLE_H

#include <string.h>

#include "check.h"
#include "forward.h"

/* tok[0] = start, tok[p + 1] = the argmax after position p, for p < n_tok;
 * logits: n_tok rows of n_vocab, the forward's after each position. */
static inline void greedy_oracle(const pi_model *m, int32_t start, uint32_t n_tok, int32_t *tok, float *logits)
{
    pi_error err = {{0}};
    forward_state *f = forward_new(m, n_tok, &err);
    CHECK(f, "%s", err.msg);
    tok[0] = start;
    for (uint32_t p = 0; p < n_tok; p++) {
        const float *lg = forward_token(f, tok[p], p);
        CHECK(lg, "forward_token at %u", p);
        memcpy(logits + (size_t)p * m->n_vocab, lg, m->n_vocab * sizeof(float));
        tok[p + 1] = (int32_t)test_argmax(lg, m->n_vocab);
    }
    forward_free(&f);
}

#endif
