/* Keeps the machine's CPUs out of deep idle states while pid has work: the
 * kernel's PM QoS request (/dev/cpu_dma_latency: a 32-bit bound on wake-up
 * latency in microseconds, held while the file stays open). A token's step
 * crosses four sleeping threads (pid, the GPU worker and their ZeroMQ I/O
 * threads); woken from a deep C-state each costs up to ~100 us, which is why
 * the H200 host measured ~0.4 ms of ZeroMQ round trip a token. Needs root
 * (the file is 0600); without it pid runs as before and says so once. */
#ifndef PI_DAEMON_PM_QOS_H
#define PI_DAEMON_PM_QOS_H

typedef struct pm_qos {
    int fd;         /* the open request, or -1 */
    int warned;     /* the "cannot hold" line was printed */
    int enabled;    /* 0: never request */
} pm_qos;

/* enabled: the caller's default (pid: on with the CUDA backend), which
 * PI_PM_QOS=0 or 1 overrides. Requests nothing yet. */
void pm_qos_init(pm_qos *q, int enabled);

/* busy 1: hold a 0 us bound (opens the file once); busy 0: release it.
 * Failures only print one line to stderr: pid works without it. */
void pm_qos_set(pm_qos *q, int busy);

#endif
