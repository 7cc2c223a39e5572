/* pm_qos: the latency request is held while busy (one open file, and the kernel then reports a 0 us bound) and
 * withdrawn when idle; without permission it says so once and carries on; PI_PM_QOS=0 turns it off and =1 on
 * whatever the caller's default. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "pm_qos.h"

/* The bound the kernel applies now (readable by root only), or -1. */
static int32_t current_bound(void)
{
    int fd = open("/dev/cpu_dma_latency", O_RDONLY | O_CLOEXEC);
    int32_t v = -1;
    if (fd < 0)
        return -1;
    if (read(fd, &v, sizeof v) != (ssize_t)sizeof v)
        v = -1;
    close(fd);
    return v;
}

int main(void)
{
    pm_qos q;
    CHECK(unsetenv("PI_PM_QOS") == 0, "unsetenv");
    pm_qos_init(&q, 0);
    pm_qos_set(&q, 1);
    CHECK(q.fd < 0 && !q.warned, "off by default yet it requested (fd %d)", q.fd);

    CHECK(setenv("PI_PM_QOS", "1", 1) == 0, "setenv");
    pm_qos_init(&q, 0);
    CHECK(q.enabled, "PI_PM_QOS=1 did not turn it on");
    pm_qos_set(&q, 1);
    int held = q.fd >= 0;
    if (held) {
        int fd = q.fd;
        pm_qos_set(&q, 1);
        CHECK(q.fd == fd, "a second busy call opened the file again (%d, then %d)", fd, q.fd);
        int32_t b = current_bound();
        CHECK(b == 0 || b == -1, "holding a 0 us request, the kernel's bound is %d us", (int)b);
        printf("held: fd %d, the kernel's bound %d us\n", fd, (int)b);
        pm_qos_set(&q, 0);
        CHECK(q.fd == -1 && fcntl(fd, F_GETFD) == -1, "idle: the request is still open");
    } else {
        CHECK(q.warned, "the request failed without a word");
        pm_qos_set(&q, 1);
        printf("not held here (no permission): said so once\n");
    }

    CHECK(setenv("PI_PM_QOS", "0", 1) == 0, "setenv");
    pm_qos_init(&q, 1);
    pm_qos_set(&q, 1);
    CHECK(q.fd < 0, "PI_PM_QOS=0 yet it requested");
    printf("pm_qos: ok\n");
    return 0;
}
