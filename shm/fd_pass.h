/* One file descriptor and a small message over an AF_UNIX SOCK_SEQPACKET
 * socket (SCM_RIGHTS): how pid keeps the GPU worker's VRAM (and the pinned
 * host memory of its warm rows) alive across the worker's restarts
 * (docs/reliability.md, "VRAM kept by pid"). Each side sends what it keeps
 * as one message a descriptor, then an FD_PASS_NONE message that ends the
 * set: pid to a worker about to start, the worker back once it is loaded. */
#ifndef PI_SHM_FD_PASS_H
#define PI_SHM_FD_PASS_H

#include <stddef.h>
#include <stdint.h>

#include "pi_error.h"

/* What travels with the descriptor: which memory it is and how big. */
typedef struct fd_pass_msg {
    uint32_t magic;         /* FD_PASS_MAGIC */
    uint32_t kind;          /* FD_PASS_NONE (the end, no descriptor), FD_PASS_VRAM or FD_PASS_WARM */
    uint64_t bytes;         /* the memory's size */
    char backend[16];       /* VRAM: "host" (a memfd) or "cuda" (a CUDA VMM handle); WARM: "cuda" (a memfd) */
} fd_pass_msg;

#define FD_PASS_MAGIC 0x4b565049u   /* "IPVK" */
#define FD_PASS_NONE 0u
#define FD_PASS_VRAM 1u
#define FD_PASS_WARM 2u     /* the warm rows' host memory (the CUDA driver's, or a memfd it pins) */
#define FD_PASS_KINDS 3u

/* Sends msg, and fd when fd >= 0 (the caller keeps its own copy). */
int fd_pass_send(int sock, const fd_pass_msg *msg, int fd, pi_error *err);

/* Receives one message; *fd = the descriptor that came with it (close-on-exec)
 * or -1. Returns 1 when a message came, 0 when none is waiting (nonblock set),
 * -1 on an error or a malformed message. */
int fd_pass_recv(int sock, int nonblock, fd_pass_msg *msg, int *fd, pi_error *err);

#endif
