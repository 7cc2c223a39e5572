/* SCM_RIGHTS over SOCK_SEQPACKET (fd_pass.h): one datagram per message, so a
 * descriptor never arrives apart from the message that describes it. */
#include "fd_pass.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int fd_pass_send(int sock, const fd_pass_msg *msg, int fd, pi_error *err)
{
    struct iovec iov = {.iov_base = (void *)msg, .iov_len = sizeof *msg};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        mh.msg_control = u.buf;
        mh.msg_controllen = sizeof u.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    ssize_t n;
    do
        n = sendmsg(sock, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof *msg)
        return pi_error_set(err, "fd pass: sendmsg: %s", n < 0 ? strerror(errno) : "short write");
    return 0;
}

int fd_pass_recv(int sock, int nonblock, fd_pass_msg *msg, int *fd, pi_error *err)
{
    *fd = -1;
    struct iovec iov = {.iov_base = msg, .iov_len = sizeof *msg};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    ssize_t n;
    do
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | (nonblock ? MSG_DONTWAIT : 0));
    while (n < 0 && errno == EINTR);
    if (n < 0 && nonblock && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    if (n < 0)
        return pi_error_set(err, "fd pass: recvmsg: %s", strerror(errno));
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
            memcpy(fd, CMSG_DATA(c), sizeof *fd);
    if (n == 0)
        return pi_error_set(err, "fd pass: the other end closed");
    if (n != (ssize_t)sizeof *msg || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || msg->magic != FD_PASS_MAGIC) {
        if (*fd >= 0)
            close(*fd);
        *fd = -1;
        return pi_error_set(err, "fd pass: a malformed message (%zd bytes)", n);
    }
    msg->backend[sizeof msg->backend - 1] = '\0';
    return 1;
}
