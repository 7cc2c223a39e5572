/* The hand-over of kept memory between pid and a GPU worker (shm/fd_pass.h, daemon/supervisor.h): a set of
 * descriptors (the VRAM arena, the warm rows' host memory) ended by FD_PASS_NONE. supervisor_take_vram takes a
 * worker's whole set in place of what it kept (the bytes behind each descriptor the ones the worker wrote),
 * lets everything go when the set is empty, keeps what it had when no set came, and leaves out a descriptor of
 * an unknown kind; fd_pass_recv refuses a message of the wrong size or magic and says when nothing waits. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "fd_pass.h"
#include "supervisor.h"

/* A memfd of 4096 bytes that starts with text. */
static int memfd_with(const char *text)
{
    int fd = memfd_create("test-kept", MFD_CLOEXEC);
    CHECK(fd >= 0 && ftruncate(fd, 4096) == 0, "memfd: %s", strerror(errno));
    CHECK(pwrite(fd, text, strlen(text) + 1, 0) == (ssize_t)strlen(text) + 1, "pwrite");
    return fd;
}

static void send_one(int sock, uint32_t kind, uint64_t bytes, int fd)
{
    pi_error err = {{0}};
    fd_pass_msg m = {.magic = FD_PASS_MAGIC, .kind = kind, .bytes = bytes};
    snprintf(m.backend, sizeof m.backend, "cuda");
    CHECK(fd_pass_send(sock, &m, fd, &err) == 0, "send: %s", err.msg);
}

/* What the descriptor kept for kind holds at its start. */
static const char *held(const supervisor *s, uint32_t kind, char *buf)
{
    CHECK(s->kept[kind].fd >= 0, "kind %u kept", kind);
    CHECK(pread(s->kept[kind].fd, buf, 64, 0) == 64, "pread");
    return buf;
}

int main(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
    supervisor s;
    memset(&s, 0, sizeof s);
    s.vram_sock = sv[0];
    for (uint32_t k = 0; k < FD_PASS_KINDS; k++)
        s.kept[k].fd = -1;
    char buf[64];

    /* a worker's set: the arena and the warm memory, then the end (it closes its own copies) */
    int a = memfd_with("arena 1"), w = memfd_with("warm 1");
    send_one(sv[1], FD_PASS_VRAM, 1000, a);
    send_one(sv[1], FD_PASS_WARM, 2000, w);
    send_one(sv[1], FD_PASS_NONE, 0, -1);
    close(a);
    close(w);
    uint64_t warm = 0;
    CHECK(supervisor_take_vram(&s, &warm) == 1000 && warm == 2000, "the set taken: %llu", (unsigned long long)warm);
    CHECK(!strcmp(held(&s, FD_PASS_VRAM, buf), "arena 1") && !strcmp(held(&s, FD_PASS_WARM, buf), "warm 1"),
          "the bytes behind the kept descriptors are the worker's");
    CHECK(!strcmp(s.kept[FD_PASS_WARM].backend, "cuda"), "backend kept");
    printf("ok: a worker's arena and warm memory kept, their bytes as written\n");

    /* no set waiting (a worker that died before Ready): what was kept stays */
    CHECK(supervisor_take_vram(&s, &warm) == 0 && warm == 0, "nothing waiting: nothing taken now");
    CHECK(!strcmp(held(&s, FD_PASS_VRAM, buf), "arena 1") && !strcmp(held(&s, FD_PASS_WARM, buf), "warm 1") &&
          s.kept[FD_PASS_VRAM].bytes == 1000, "nothing waiting keeps the set");
    printf("ok: nothing handed over: the kept set stays\n");

    /* the next worker hands over an arena only: the old warm memory is let go with the old arena */
    a = memfd_with("arena 2");
    send_one(sv[1], FD_PASS_VRAM, 3000, a);
    send_one(sv[1], 7, 1, a);  /* a kind pid does not know: left out */
    send_one(sv[1], FD_PASS_NONE, 0, -1);
    close(a);
    CHECK(supervisor_take_vram(&s, &warm) == 3000 && warm == 0, "arena only: warm %llu", (unsigned long long)warm);
    CHECK(!strcmp(held(&s, FD_PASS_VRAM, buf), "arena 2") && s.kept[FD_PASS_WARM].fd < 0,
          "the new arena kept, no warm memory");
    printf("ok: a set without warm memory lets the old one go; an unknown kind is left out\n");

    /* an empty set (a worker with nothing to keep): everything is let go */
    send_one(sv[1], FD_PASS_NONE, 0, -1);
    CHECK(supervisor_take_vram(&s, &warm) == 0 && warm == 0 && s.kept[FD_PASS_VRAM].fd < 0, "empty set");
    printf("ok: an empty set lets everything go\n");

    /* fd_pass_recv: nothing waiting (non-blocking) is 0; a short or foreign datagram is refused */
    fd_pass_msg m;
    int fd = -1;
    pi_error err = {{0}};
    CHECK(fd_pass_recv(sv[0], 1, &m, &fd, &err) == 0 && fd == -1, "nothing waiting");
    CHECK(write(sv[1], "short", 5) == 5, "write");
    CHECK(fd_pass_recv(sv[0], 1, &m, &fd, &err) < 0 && strstr(err.msg, "malformed"), "short: %s", err.msg);
    fd_pass_msg bad = {.magic = 1, .kind = FD_PASS_VRAM};
    CHECK(write(sv[1], &bad, sizeof bad) == (ssize_t)sizeof bad, "write");
    CHECK(fd_pass_recv(sv[0], 1, &m, &fd, &err) < 0 && fd == -1, "wrong magic refused");
    printf("ok: malformed messages refused, nothing waiting said\n");

    supervisor_close(&s);   /* s.n == 0: never initialised, so its fds are the test's */
    for (uint32_t k = 0; k < FD_PASS_KINDS; k++)
        if (s.kept[k].fd >= 0)
            close(s.kept[k].fd);
    close(sv[0]);
    close(sv[1]);
    return 0;
}
