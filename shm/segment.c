#include "segment.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <unistd.h>

#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21U << 26) /* log2(2 MB) in the MFD_HUGE_SHIFT bits */
#endif
#define HUGETLBFS_MAGIC_ 0x958458f6

struct shm_segment {
    void *base;
    size_t size;
    int fd;
    bool huge;
    bool named;   /* a shm_open object: another process can open it by name */
    bool creator; /* this process made the name: destroy unlinks it */
    char name[SHM_NAME_MAX + 2];
};

static size_t page_size(void)
{
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096;
}

/* Rounds n up to a multiple of the power of two a; 0 on overflow. */
static size_t round_up(size_t n, size_t a)
{
    if (n > SIZE_MAX - (a - 1))
        return 0;
    return (n + a - 1) & ~(a - 1);
}

/* Stores "/name" in out; names with a '/' past the first byte are refused
 * because shm_open treats them as paths. */
static int normalize_name(const char *name, char *out, pi_error *err)
{
    if (!name)
        return pi_error_set(err, "shm segment: no name given");
    const char *bare = name[0] == '/' ? name + 1 : name;
    size_t n = strlen(bare);
    if (n == 0 || n > SHM_NAME_MAX || strchr(bare, '/'))
        return pi_error_set(err,
                            "shm segment '%s': bad name (1 to %d characters, no '/' "
                            "except a leading one)",
                            name, SHM_NAME_MAX);
    out[0] = '/';
    memcpy(out + 1, bare, n + 1);
    return 0;
}

static shm_segment *segment_alloc(const char *name, pi_error *err)
{
    shm_segment *s = calloc(1, sizeof *s);
    if (!s) {
        pi_error_set(err, "shm segment '%s': out of memory", name ? name : "");
        return NULL;
    }
    s->fd = -1;
    s->base = MAP_FAILED;
    return s;
}

static void segment_free(shm_segment *s)
{
    if (s->base != MAP_FAILED)
        munmap(s->base, s->size);
    if (s->fd >= 0)
        close(s->fd);
    free(s);
}

/* Tries a 2 MB huge-page memfd. Fails quietly (returns -1) when the kernel
 * has no huge pages: the mmap reserves them, so a shortage shows here and
 * never as a SIGBUS later. */
static int try_huge(shm_segment *s, size_t size)
{
    size_t sz = round_up(size, SHM_HUGE_PAGE_SIZE);
    if (sz == 0)
        return -1;
    int fd = memfd_create(s->name + 1, MFD_CLOEXEC | MFD_HUGETLB | MFD_HUGE_2MB);
    if (fd < 0)
        return -1;
    if (ftruncate(fd, (off_t)sz) != 0) {
        close(fd);
        return -1;
    }
    void *p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        close(fd);
        return -1;
    }
    s->fd = fd;
    s->base = p;
    s->size = sz;
    s->huge = true;
    return 0;
}

/* bytes as "N KiB" below a MiB, "N.N MiB" above */
static void size_text(char *out, size_t cap, double bytes)
{
    if (bytes < 1048576.0)
        snprintf(out, cap, "%.0f KiB", bytes / 1024.0);
    else
        snprintf(out, cap, "%.1f MiB", bytes / 1048576.0);
}

/* What a full /dev/shm looks like to the user, with what to do about it. */
static int shm_full_error(const char *name, size_t need, pi_error *err)
{
    struct statvfs v;
    char room[96] = "", want[32], avail[32], total[32];
    size_text(want, sizeof want, (double)need);
    if (statvfs("/dev/shm", &v) == 0) {
        size_text(avail, sizeof avail, (double)v.f_bavail * (double)v.f_frsize);
        size_text(total, sizeof total, (double)v.f_blocks * (double)v.f_frsize);
        snprintf(room, sizeof room, " (%s free of %s)", avail, total);
    }
    return pi_error_set(err, "shm segment '%s': /dev/shm has no room for its %s%s; free space there "
                             "(df -h /dev/shm; stale pi-step-* segments of a killed pid are swept by the next "
                             "pid start) or make it larger (mount -o remount,size=... /dev/shm)",
                        name, want, room);
}

static int make_named(shm_segment *s, size_t size, pi_error *err)
{
    size_t sz = round_up(size, page_size());
    if (sz == 0)
        return pi_error_set(err, "shm segment '%s': size %zu is too large", s->name, size);
    int fd = shm_open(s->name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        int e = errno;
        return pi_error_set(err,
                            "shm segment '%s': shm_open(O_CREAT|O_EXCL) failed: %s%s", s->name,
                            strerror(e),
                            e == EEXIST ? " (another pid may be running, or a stale "
                                          "segment remains in /dev/shm: remove it)"
                                        : "");
    }
    s->fd = fd;
    s->named = true;
    s->creator = true;
    if (ftruncate(fd, (off_t)sz) != 0)
        return pi_error_set(err, "shm segment '%s': ftruncate(%zu) failed: %s (is /dev/shm "
                                 "large enough?)",
                            s->name, sz, strerror(errno));
    /* tmpfs gives a page at its first touch, and a full /dev/shm answers
     * that touch with SIGBUS (pid died of "Bus error" at 1 MiB free): take
     * every page now, where a shortage is an error that can be reported. */
    int e;
    while ((e = posix_fallocate(fd, 0, (off_t)sz)) == EINTR)
        ;
    if (e == ENOSPC || e == EFBIG)
        return shm_full_error(s->name, sz, err);
    if (e != 0 && e != EOPNOTSUPP && e != EINVAL)
        return pi_error_set(err, "shm segment '%s': posix_fallocate(%zu) failed: %s", s->name, sz, strerror(e));
    void *p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return pi_error_set(err, "shm segment '%s': mmap(%zu) failed: %s", s->name, sz,
                            strerror(errno));
    s->base = p;
    s->size = sz;
    return 0;
}

shm_segment *shm_segment_create(const char *name, size_t size, pi_error *err)
{
    return shm_segment_create_flags(name, size, 0, err);
}

shm_segment *shm_segment_create_flags(const char *name, size_t size, unsigned flags,
                                      pi_error *err)
{
    shm_segment *s = segment_alloc(name, err);
    if (!s)
        return NULL;
    if (normalize_name(name, s->name, err) != 0) {
        segment_free(s);
        return NULL;
    }
    if (size == 0) {
        pi_error_set(err, "shm segment '%s': size 0 requested", s->name);
        segment_free(s);
        return NULL;
    }
    if ((flags & SHM_SEG_NO_HUGE) || try_huge(s, size) != 0) {
        if (make_named(s, size, err) != 0) {
            if (s->creator)
                shm_unlink(s->name);
            segment_free(s);
            return NULL;
        }
    }
    /* A fresh object reads as zeros already; writing them pre-faults every
     * page so the first step does not pay for page faults. */
    memset(s->base, 0, s->size);
    return s;
}

/* Maps fd (already in s->fd) at its full size and records whether it lives
 * on hugetlbfs. label names the segment in errors. */
static int map_existing(shm_segment *s, size_t min_size, const char *label, pi_error *err)
{
    struct stat st;
    if (fstat(s->fd, &st) != 0)
        return pi_error_set(err, "shm segment %s: fstat failed: %s", label, strerror(errno));
    if (st.st_size <= 0)
        return pi_error_set(err, "shm segment %s: size is 0 (its creator has not sized it yet)",
                            label);
    size_t sz = (size_t)st.st_size;
    if (sz < min_size)
        return pi_error_set(err, "shm segment %s: size %zu is smaller than the %zu bytes "
                                 "expected (made by a different build or model?)",
                            label, sz, min_size);
    struct statfs fs;
    if (fstatfs(s->fd, &fs) != 0)
        return pi_error_set(err, "shm segment %s: fstatfs failed: %s", label, strerror(errno));
    s->huge = (unsigned long)fs.f_type == (unsigned long)HUGETLBFS_MAGIC_;
    void *p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
    if (p == MAP_FAILED)
        return pi_error_set(err, "shm segment %s: mmap(%zu) failed: %s", label, sz,
                            strerror(errno));
    s->base = p;
    s->size = sz;
    return 0;
}

shm_segment *shm_segment_open(const char *name, pi_error *err)
{
    shm_segment *s = segment_alloc(name, err);
    if (!s)
        return NULL;
    if (normalize_name(name, s->name, err) != 0) {
        segment_free(s);
        return NULL;
    }
    char label[SHM_NAME_MAX + 4];
    snprintf(label, sizeof label, "'%s'", s->name);
    s->fd = shm_open(s->name, O_RDWR, 0);
    if (s->fd < 0) {
        int e = errno;
        pi_error_set(err, "shm segment '%s': shm_open failed: %s%s", s->name, strerror(e),
                     e == ENOENT ? " (is pid running? a huge-page segment has no name: "
                                   "open it from its fd)"
                                 : "");
        segment_free(s);
        return NULL;
    }
    s->named = true;
    if (map_existing(s, 0, label, err) != 0) {
        segment_free(s);
        return NULL;
    }
    return s;
}

shm_segment *shm_segment_from_fd(int fd, size_t min_size, pi_error *err)
{
    char label[32];
    snprintf(label, sizeof label, "from fd %d", fd);
    shm_segment *s = segment_alloc(label, err);
    if (!s)
        return NULL;
    s->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (s->fd < 0) {
        pi_error_set(err, "shm segment %s: fcntl(F_DUPFD_CLOEXEC) failed: %s", label,
                     strerror(errno));
        segment_free(s);
        return NULL;
    }
    if (map_existing(s, min_size, label, err) != 0) {
        segment_free(s);
        return NULL;
    }
    return s;
}

void shm_segment_destroy(shm_segment **seg)
{
    if (!seg || !*seg)
        return;
    shm_segment *s = *seg;
    if (s->creator && s->named)
        shm_unlink(s->name); /* nothing useful to do if it is already gone */
    segment_free(s);
    *seg = NULL;
}

void *shm_segment_base(const shm_segment *seg) { return seg->base; }
size_t shm_segment_size(const shm_segment *seg) { return seg->size; }
int shm_segment_fd(const shm_segment *seg) { return seg->fd; }
const char *shm_segment_name(const shm_segment *seg) { return seg->name; }
bool shm_segment_is_huge(const shm_segment *seg) { return seg->huge; }
bool shm_segment_is_named(const shm_segment *seg) { return seg->named; }

shm_segment *shm_segment_attach(const char *spec, pi_error *err)
{
    if (!strncmp(spec, "fd:", 3)) {
        char *end = NULL;
        long fd = strtol(spec + 3, &end, 10);
        if (spec[3] == '\0' || *end || fd < 0 || fd > 65535) {
            pi_error_set(err, "segment '%s': expected fd:N with N a file descriptor number", spec);
            return NULL;
        }
        return shm_segment_from_fd((int)fd, 0, err);
    }
    return shm_segment_open(spec, err);
}
