/* Stop strings over streamed text (stop_text.h). */
#include "stop_text.h"

#include <string.h>

long stop_text_find(const char *text, size_t len, size_t from, const char *const *stops, size_t n)
{
    long best = -1;
    for (size_t i = 0; i < n; i++) {
        size_t sl = strlen(stops[i]);
        if (!sl || sl > len)
            continue;
        for (size_t p = from; p + sl <= len && (best < 0 || p < (size_t)best); p++)
            if (!memcmp(text + p, stops[i], sl)) {
                best = (long)p;
                break;
            }
    }
    return best;
}

size_t stop_text_utf8_complete_len(const char *text, size_t len)
{
    /* Look back over at most 3 continuation bytes for the last lead byte. */
    for (size_t k = 1; k <= 4 && k <= len; k++) {
        unsigned char c = (unsigned char)text[len - k];
        if ((c & 0xC0) == 0x80)
            continue;              /* continuation: keep looking */
        size_t need = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                    : (c & 0xF8) == 0xF0 ? 4 : 1;  /* invalid lead: let it through */
        return k < need ? len - k : len;
    }
    return len;                    /* only continuation bytes: nothing to wait for */
}

size_t stop_text_safe_len(const char *text, size_t len, const char *const *stops, size_t n)
{
    size_t hold = 0;
    for (size_t i = 0; i < n; i++) {
        size_t sl = strlen(stops[i]);
        /* The longest suffix of text that is a proper prefix of stops[i]. */
        for (size_t k = sl ? sl - 1 : 0; k > hold; k--)
            if (k <= len && !memcmp(text + len - k, stops[i], k)) {
                hold = k;
                break;
            }
    }
    return stop_text_utf8_complete_len(text, len - hold);
}
