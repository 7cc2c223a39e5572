/* Token checks for pid's RPC socket (rpc_auth.h). */
#include "rpc_auth.h"

#include <stdio.h>
#include <string.h>

#include "endpoint.h"

int rpc_auth_token_valid(const char *what, const char *t, pi_error *err)
{
    size_t n = strlen(t);
    if (n < RPC_AUTH_TOKEN_MIN || n >= RPC_AUTH_TOKEN_MAX)
        return pi_error_set(err, "%s is %zu bytes: use %d to %d (e.g. `head -c 24 /dev/urandom | "
                                 "base64`)", what, n, RPC_AUTH_TOKEN_MIN, RPC_AUTH_TOKEN_MAX - 1);
    for (size_t i = 0; i < n; i++)
        if (t[i] <= ' ' || t[i] > '~')
            return pi_error_set(err, "%s: byte %zu is not printable ASCII (no spaces)", what, i);
    return 0;
}

int rpc_auth_init(rpc_auth *a, const char *token, const char *admin, const char *endpoint,
                  pi_error *err)
{
    memset(a, 0, sizeof *a);
    a->tcp = !strncmp(endpoint, "tcp://", 6);
    if (token[0] && rpc_auth_token_valid("token", token, err) < 0)
        return -1;
    if (admin[0] && rpc_auth_token_valid("admin_token", admin, err) < 0)
        return -1;
    if (token[0] && !strcmp(token, admin))
        return pi_error_set(err, "token and admin_token are the same: a client could then shut "
                                 "pid down; give them different values");
    if (a->tcp && !token[0])
        return pi_error_set(err, "listening at %s needs a token: anyone who reaches the port could "
                                 "use pid; set token = (and admin_token = for shutdown and "
                                 "restart-worker) in pid.conf, or --token/--admin-token", endpoint);
    snprintf(a->token, sizeof a->token, "%s", token);
    snprintf(a->admin, sizeof a->admin, "%s", admin);
    return 0;
}

/* Compares in time that depends on the lengths only, so timing does not
 * reveal how many leading bytes of a guess were right. */
static int same(const char *given, const char *want)
{
    size_t n = strlen(want), g = strlen(given);
    unsigned char diff = (unsigned char)(n != g);
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(want[i] ^ (i < g ? given[i] : 0));
    return diff == 0;
}

int rpc_auth_check(const rpc_auth *a, const char *given, int admin_rpc, const char *what,
                   char *msg, size_t cap)
{
    const char *g = given ? given : "";
    int is_admin = a->admin[0] && same(g, a->admin);
    if (admin_rpc) {
        if (is_admin)
            return 0;
        if (!a->admin[0] && !a->tcp && (!a->token[0] || same(g, a->token)))
            return 0; /* ipc with no admin token: the socket's mode is the guard */
        if (!a->admin[0])
            snprintf(msg, cap, "%s is refused over tcp: this pid has no admin_token (set "
                               "admin_token in pid.conf to allow it)", what);
        else if (!g[0])
            snprintf(msg, cap, "%s needs the admin token: pass it with pictl --token or "
                               "PI_TOKEN", what);
        else
            snprintf(msg, cap, "%s needs the admin token; the token given is not it", what);
        return -1;
    }
    if (!a->token[0] || is_admin || same(g, a->token))
        return 0;
    if (!g[0])
        snprintf(msg, cap, "%s: this pid needs a token: pass it with pictl --token or PI_TOKEN",
                 what);
    else
        snprintf(msg, cap, "%s: wrong token (pid's token = in pid.conf or --token)", what);
    return -1;
}
