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
