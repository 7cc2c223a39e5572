/* The step bell (step_bell.h). */
#include "step_bell.h"

void step_bell_post(step_bell *b, uint64_t step_no)
{
    seq_publish(&b->posted, (uint32_t)step_no);
}

int step_bell_posted(step_bell *b, const step_cmd *cmd, uint64_t last, uint64_t *step_no, uint32_t *n_entries,
                     uint32_t *abort_epoch, uint32_t *flags)
{
    uint32_t v = seq_load(&b->posted); /* acquire: the command written before it is visible */
    if ((int32_t)(v - (uint32_t)last) <= 0)
        return 0;
    /* pid writes the next command only after this step's answer, so the
     * command is the posted step's; a mismatch (a torn or stale view) is
     * left to the Step message. */
    if ((uint32_t)cmd->step_id != v || cmd->step_id <= last)
        return 0;
    *step_no = cmd->step_id;
    *n_entries = cmd->n_seq;
    *abort_epoch = cmd->abort_epoch;
    *flags = cmd->flags;
    return 1;
}

void step_bell_answer(step_bell *b, const step_answer *a)
{
    b->answer = *a;
    seq_publish(&b->answered, (uint32_t)a->step_no);
}

int step_bell_answered(step_bell *b, uint64_t step_no, step_answer *out)
{
    if (!seq_reached(&b->answered, (uint32_t)step_no))
        return 0;
    *out = b->answer;
    return out->step_no == step_no;
}
