/* rpc_auth: tcp needs a client token; tokens are 16..255 printable bytes and differ; every request needs the client (or admin) token when one is set; Shutdown/RestartWorker need the admin token, or, with none configured, are allowed over ipc only. */
#include <string.h>

#include "check.h"
#include "rpc_auth.h"

#define T(c) CHECK(c, "%s", "see the condition")

#define TOK "client-token-0123456789"
#define ADM "admin-token-9876543210"

static int ok(const rpc_auth *a, const char *given, int admin)
{
    char msg[300] = "";
    int r = rpc_auth_check(a, given, admin, "request 1 (status)", msg, sizeof msg);
    T(r == 0 || strlen(msg) > 10);
    return r == 0;
}

int main(void)
{
    rpc_auth a;
    pi_error err;
    /* Configuration. */
    T(rpc_auth_init(&a, "", "", "tcp://127.0.0.1:5555", &err) < 0);
    T(strstr(err.msg, "needs a token") != NULL);
    T(rpc_auth_init(&a, "short", "", "ipc:///tmp/x.sock", &err) < 0);
    T(strstr(err.msg, "token is 5 bytes") != NULL);
    T(rpc_auth_init(&a, "has a space in it, 1234", "", "ipc:///tmp/x.sock", &err) < 0);
    T(rpc_auth_init(&a, TOK, TOK, "ipc:///tmp/x.sock", &err) < 0);
    T(strstr(err.msg, "the same") != NULL);
    T(rpc_auth_token_valid("token", TOK, &err) == 0);

    /* ipc, no tokens: everything goes (the socket's mode guards it). */
    T(rpc_auth_init(&a, "", "", "ipc:///tmp/x.sock", &err) == 0);
    T(ok(&a, NULL, 0) && ok(&a, "", 1) && ok(&a, "anything", 1));

    /* ipc with a client token only: it is needed for everything. */
    T(rpc_auth_init(&a, TOK, "", "ipc:///tmp/x.sock", &err) == 0);
    T(!ok(&a, NULL, 0) && !ok(&a, "wrong-token-0123456789", 0));
    T(ok(&a, TOK, 0) && ok(&a, TOK, 1) && !ok(&a, "", 1));
    T(!ok(&a, TOK "x", 0) && !ok(&a, "client-token-012345678", 0)); /* longer, shorter */

    /* tcp with a client token and no admin token: admin RPCs are off. */
    T(rpc_auth_init(&a, TOK, "", "tcp://127.0.0.1:5555", &err) == 0);
    T(ok(&a, TOK, 0) && !ok(&a, TOK, 1) && !ok(&a, NULL, 0));
    char msg[300];
    T(rpc_auth_check(&a, TOK, 1, "request 2 (shutdown)", msg, sizeof msg) < 0);
    T(strstr(msg, "no admin_token") != NULL);

    /* tcp with both: the admin token does everything, the client token no admin RPC. */
    T(rpc_auth_init(&a, TOK, ADM, "tcp://127.0.0.1:5555", &err) == 0);
    T(ok(&a, TOK, 0) && ok(&a, ADM, 0) && ok(&a, ADM, 1) && !ok(&a, TOK, 1) && !ok(&a, "", 1));
    T(rpc_auth_check(&a, TOK, 1, "request 3 (shutdown)", msg, sizeof msg) < 0);
    T(strstr(msg, "needs the admin token") != NULL);
    T(rpc_auth_check(&a, NULL, 0, "request 4 (status)", msg, sizeof msg) < 0);
    T(strstr(msg, "needs a token") != NULL);
    T(rpc_auth_check(&a, "nope-nope-nope-nope", 0, "request 5 (status)", msg, sizeof msg) < 0);
    T(strstr(msg, "wrong token") != NULL);
    printf("rpc_auth: ok\n");
    return 0;
}
