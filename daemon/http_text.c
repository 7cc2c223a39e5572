/* Listen address, stop strings and UTF-8 boundaries of the HTTP API (http_text.h). */
#include "http_text.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int http_listen_parse(const char *s, uint32_t *addr_be, uint16_t *port, pi_error *err)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || !colon[1])
        return pi_error_set(err, "http: '%s' is not HOST:PORT (e.g. 127.0.0.1:8080)", s);
    char host[64];
    size_t hl = (size_t)(colon - s);
    if (hl >= sizeof host)
        return pi_error_set(err, "http: host in '%s' is too long", s);
    memcpy(host, s, hl);
    host[hl] = 0;
    char *end;
    errno = 0;
    unsigned long p = strtoul(colon + 1, &end, 10);
    if (*end || errno || p < 1 || p > 65535 || colon[1] == '-' || colon[1] == '+')
        return pi_error_set(err, "http: port in '%s' is not in 1..65535", s);
    struct in_addr a;
    if (!strcmp(host, "localhost"))
        a.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, host, &a) != 1)
        return pi_error_set(err, "http: host '%s' is not an IPv4 address (e.g. 127.0.0.1, 0.0.0.0) "
                                 "or localhost", host);
    *addr_be = a.s_addr;
    *port = (uint16_t)p;
    return 0;
}

long http_stop_find(const char *text, size_t len, size_t from, const char *const *stops, size_t n)
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

size_t http_utf8_complete_len(const char *text, size_t len)
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

size_t http_stop_safe_len(const char *text, size_t len, const char *const *stops, size_t n)
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
    return http_utf8_complete_len(text, len - hold);
}
