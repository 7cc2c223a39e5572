/* The PM QoS latency request while pid has work (pm_qos.h). */
#include "pm_qos.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PM_QOS_PATH "/dev/cpu_dma_latency"

void pm_qos_init(pm_qos *q, int enabled)
{
    const char *v = getenv("PI_PM_QOS");
    q->fd = -1;
    q->warned = 0;
    q->enabled = v && (!strcmp(v, "0") || !strcmp(v, "1")) ? v[0] == '1' : enabled;
}

void pm_qos_set(pm_qos *q, int busy)
{
    if (!busy) {
        if (q->fd >= 0)
            close(q->fd);   /* closing withdraws the request */
        q->fd = -1;
        return;
    }
    if (!q->enabled || q->fd >= 0)
        return;
    int fd = open(PM_QOS_PATH, O_WRONLY | O_CLOEXEC);
    int32_t us = 0;
    if (fd >= 0 && write(fd, &us, sizeof us) == (ssize_t)sizeof us) {
        q->fd = fd;
        return;
    }
    int e = errno;
    if (fd >= 0)
        close(fd);
    if (!q->warned)
        fprintf(stderr, "pid: note: cannot keep the CPUs out of deep idle states (%s: %s); each step may "
                "wait ~0.1 ms longer for sleeping threads to wake (run pid as root, or PI_PM_QOS=0 to "
                "silence this)\n", PM_QOS_PATH, strerror(e));
    q->warned = 1;
}
