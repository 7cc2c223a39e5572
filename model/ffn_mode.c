#include "ffn_mode.h"

#include <string.h>

static const char *const names[] = {"dense", "exact", "predicted"};

int pi_ffn_mode_parse(const char *s, pi_ffn_mode *out)
{
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, names[i])) {
            *out = (pi_ffn_mode)i;
            return 0;
        }
    return -1;
}

const char *pi_ffn_mode_name(pi_ffn_mode m)
{
    return (unsigned)m < 3 ? names[m] : "?";
}
