/* `pictl restart-worker gpu|cpu:N` and `pictl shutdown`: the administrative
 * RPCs, each one request and one reply. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "rpc.h"

/* A restart waits for the worker to come back (seconds on big models). */
#define ADMIN_TIMEOUT_MS 120000

/* "gpu" or "cpu:N" with N a plain decimal. */
static int worker_name_ok(const char *s)
{
    if (!strcmp(s, "gpu"))
        return 1;
    if (strncmp(s, "cpu:", 4) != 0 || !s[4] || strlen(s + 4) > 6)
        return 0;
    for (const char *p = s + 4; *p; p++)
        if (*p < '0' || *p > '9')
            return 0;
    return 1;
}

static int on_reply(const Pi__Response *r, void *user, pi_error *err)
{
    uint32_t *new_pid = user;
    if (r->kind_case == PI__RESPONSE__KIND_RESTART_WORKER) {
        *new_pid = r->restart_worker->new_pid;
        return 0;
    }
    if (r->kind_case == PI__RESPONSE__KIND_SHUTDOWN)
        return 0;
    return pi_error_set(err, "pid answered with an unexpected message (case %d)",
                        (int)r->kind_case);
}

/* Parses [--endpoint E] plus at most one positional into *arg. */
static int parse(int argc, char **argv, const char *usage, const char **endpoint,
                 const char **arg)
{
    pi_error err = {{0}};
    for (int i = 1; i < argc; i++) {
        int r = rpc_parse_endpoint_flag(argc, argv, &i, endpoint, &err);
        if (r < 0) {
            fprintf(stderr, "pictl %s: %s\n", argv[0], err.msg);
            return 2;
        }
        if (r > 0)
            continue;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: %s\n"
                   "  --endpoint E   pid's endpoint (default: $PI_ENDPOINT, else the local socket)\n"
                   "  --token T      pid's admin token (default: $PI_TOKEN)\n", usage);
            return 0;
        }
        if (!arg || *arg || argv[i][0] == '-') {
            fprintf(stderr, "pictl %s: unexpected argument '%s' (see pictl %s --help)\n", argv[0], argv[i],
                    argv[0]);
            return 2;
        }
        *arg = argv[i];
    }
    return -1;
}

static int call(const char *name, const char *endpoint, Pi__Request *req, uint32_t *new_pid)
{
    pi_error err = {{0}};
    rpc_client *c = rpc_connect_default(endpoint, &err);
    if (!c) {
        fprintf(stderr, "pictl %s: %s\n", name, err.msg);
        return 1;
    }
    int rc = rpc_call(c, req, on_reply, new_pid, ADMIN_TIMEOUT_MS, NULL, &err);
    rpc_close(&c);
    if (rc < 0) {
        fprintf(stderr, "pictl %s: %s\n", name, err.msg);
        return 1;
    }
    return 0;
}

int cmd_restart_worker(int argc, char **argv)
{
    const char *usage = "pictl restart-worker [--endpoint E] gpu|cpu:N";
    const char *endpoint = NULL, *name = NULL;
    int rc = parse(argc, argv, usage, &endpoint, &name);
    if (rc >= 0)
        return rc;
    if (!name || !worker_name_ok(name)) {
        fprintf(stderr, "pictl restart-worker: name a worker: gpu or cpu:N (got '%s')\n", name ? name : "");
        return 2;
    }
    Pi__RestartWorkerRequest rw = PI__RESTART_WORKER_REQUEST__INIT;
    rw.name = (char *)name;
    Pi__Request req = PI__REQUEST__INIT;
    req.kind_case = PI__REQUEST__KIND_RESTART_WORKER;
    req.restart_worker = &rw;
    uint32_t new_pid = 0;
    if (call("restart-worker", endpoint, &req, &new_pid) != 0)
        return 1;
    printf("restarted %s: new pid %u\n", name, new_pid);
    return 0;
}

int cmd_shutdown(int argc, char **argv)
{
    const char *usage = "pictl shutdown [--endpoint E]";
    const char *endpoint = NULL;
    int rc = parse(argc, argv, usage, &endpoint, NULL);
    if (rc >= 0)
        return rc;
    Pi__ShutdownRequest sd = PI__SHUTDOWN_REQUEST__INIT;
    Pi__Request req = PI__REQUEST__INIT;
    req.kind_case = PI__REQUEST__KIND_SHUTDOWN;
    req.shutdown = &sd;
    uint32_t unused = 0;
    if (call("shutdown", endpoint, &req, &unused) != 0)
        return 1;
    printf("pid is shutting down\n");
    return 0;
}
