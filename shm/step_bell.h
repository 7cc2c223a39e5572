/* The step bell: how a step's start and end are seen without waiting for
 * the ZeroMQ messages that announce them. Step and StepDone still carry
 * every step; a side that spins (spin_poll.h) also watches the bell and
 * acts on it at once: a control message over ipc wakes libzmq's I/O thread
 * on both sides before the receiver (about 0.2 ms a token round trip on the
 * H200 host, even with both ends spinning), a store to the bell is seen
 * within a cache-line transfer. docs/shm.md has the protocol. */
#ifndef PI_SHM_STEP_BELL_H
#define PI_SHM_STEP_BELL_H

#include <stdint.h>

#include "step_layout.h"

/* pid, after writing step step_no's command (step_cmd). */
void step_bell_post(step_bell *b, uint64_t step_no);

/* A worker that has run every step up to `last`: 1 and the step's Step
 * fields (from the command) when pid has posted a later one, else 0. */
int step_bell_posted(step_bell *b, const step_cmd *cmd, uint64_t last, uint64_t *step_no, uint32_t *n_entries,
                     uint32_t *abort_epoch, uint32_t *flags);

/* The GPU worker, when a step is over (its logits written). */
void step_bell_answer(step_bell *b, const step_answer *a);

/* pid: 1 and *out when the answer to step_no is there, else 0. The answer
 * is read only once `answered` has reached step_no, which must therefore
 * trail it by less than 2^31 (it does: it holds the last step answered). */
int step_bell_answered(step_bell *b, uint64_t step_no, step_answer *out);

#endif
