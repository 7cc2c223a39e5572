/* shm_segment: a block of memory shared between pi's processes (pid and its
 * workers). Made by the creator from a 2 MB huge-page memfd when the kernel
 * has huge pages to give, else from a named POSIX shm object (/dev/shm).
 * Another process maps it by name (named segments only) or from the fd,
 * inherited across fork or passed over a unix socket with SCM_RIGHTS
 * (works for both kinds). Memory is zeroed and pre-faulted on create. */
#ifndef PI_SHM_SEGMENT_H
#define PI_SHM_SEGMENT_H

#include <stdbool.h>
#include <stddef.h>

#include "pi_error.h"

#define SHM_HUGE_PAGE_SIZE ((size_t)2 << 20)
#define SHM_NAME_MAX 200

typedef struct shm_segment shm_segment;

enum shm_segment_flags {
    SHM_SEG_NO_HUGE = 1 /* skip the huge-page memfd: always a named segment */
};

/* Creates a segment of at least size bytes (rounded up to the page or huge
 * page). name ("pi-step-123" or "/pi-step-123", no other '/') names the shm
 * object, or labels the memfd when huge pages were used; creation fails if a
 * shm object of that name exists. The caller owns the result: free it with
 * shm_segment_destroy, which also unlinks the name. */
shm_segment *shm_segment_create(const char *name, size_t size, pi_error *err);
shm_segment *shm_segment_create_flags(const char *name, size_t size, unsigned flags,
                                      pi_error *err);

/* Maps an existing named segment read-write, at its full size. Huge-page
 * segments have no name to open: take their fd (shm_segment_fd). */
shm_segment *shm_segment_open(const char *name, pi_error *err);

/* Maps the segment behind fd at its full size; fails if that is smaller than
 * min_size (0: any size). The segment dup()s fd: the caller keeps its own. */
shm_segment *shm_segment_from_fd(int fd, size_t min_size, pi_error *err);

/* Maps a segment named by spec: "fd:N" (an inherited descriptor, as pid
 * hands the step segment to its workers) or a segment name. */
shm_segment *shm_segment_attach(const char *spec, pi_error *err);

/* Unmaps, closes, and unlinks the name if this process created it. NULLs
 * *seg; a NULL *seg is a no-op. Other processes' mappings stay valid. */
void shm_segment_destroy(shm_segment **seg);

void *shm_segment_base(const shm_segment *seg);
size_t shm_segment_size(const shm_segment *seg);
int shm_segment_fd(const shm_segment *seg);       /* owned by the segment */
const char *shm_segment_name(const shm_segment *seg); /* "/name", or "" from an fd */
bool shm_segment_is_huge(const shm_segment *seg);
bool shm_segment_is_named(const shm_segment *seg); /* openable by name */

#endif
