/* endpoint: where pid's RPC socket lives, resolved the same way by pid and
 * pictl so both agree without configuration (docs/protocol.md). */
#ifndef PI_ENDPOINT_H
#define PI_ENDPOINT_H

#include <stddef.h>

#include "pi_error.h"

#define ENDPOINT_MAX 256

/* Fills out (cap >= ENDPOINT_MAX) with the RPC endpoint, first that applies:
 * flag (--endpoint / --listen; may be NULL), $PI_ENDPOINT,
 * ipc://$XDG_RUNTIME_DIR/pi/pid.sock, ipc:///run/pi/pid.sock when /run/pi is
 * writable or creatable, ipc:///tmp/pi-$UID/pid.sock. Creates nothing.
 * Accepts ipc:// (absolute path, <= 107 bytes) and tcp://HOST:PORT endpoints
 * (a host, a port in 1..65535). */
int endpoint_resolve(const char *flag, char *out, size_t cap, pi_error *err);

/* The socket path of an ipc:// endpoint (a pointer into endpoint), or NULL
 * for other transports. */
const char *endpoint_ipc_path(const char *endpoint);

/* For ipc:// endpoints: creates the socket's folder (and missing parents)
 * with mode 0700; refuses a folder that is a symlink, not a folder, or, in
 * a world-writable parent such as /tmp, owned by someone else. No-op for
 * other transports. */
int endpoint_prepare_dir(const char *endpoint, pi_error *err);

/* For ipc:// endpoints the user named (--listen, PI_ENDPOINT): the socket's
 * folder must already exist (nothing is created), then endpoint_prepare_dir's
 * checks. No-op for other transports. */
int endpoint_check_dir(const char *endpoint, pi_error *err);

/* For ipc:// endpoints, after bind: chmod 0600 on the socket file. */
int endpoint_secure_socket(const char *endpoint, pi_error *err);

#endif
