/* Proves shm segments open across processes (by name and fd), sequence counters hand data over with no lost wake-up or torn read, time out and abort, and the step layout is overflow-checked and validated. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "segment.h"
#include "seqcount.h"
#include "step_bell.h"
#include "step_layout.h"

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void seg_name(char *buf, size_t cap, const char *tag)
{
    snprintf(buf, cap, "/pi-test-shm-%d-%s", (int)getpid(), tag);
}

/* Runs fn(arg) in a forked child and returns its exit status (0 = ok). */
static int in_child(int (*fn)(void *), void *arg)
{
    fflush(NULL); /* or the child's exit may print our buffered lines again */
    pid_t pid = fork();
    CHECK(pid >= 0, "fork failed");
    if (pid == 0)
        _exit(fn(arg));
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid, "waitpid failed");
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- segments ---------------------------------------------------------- */

typedef struct seg_job {
    const char *name; /* open by name if set, else by fd */
    int fd;
    size_t size;
} seg_job;

/* Child: maps the segment, checks the parent's pattern, answers in word 1. */
static int child_touch(void *arg)
{
    seg_job *j = arg;
    pi_error err;
    shm_segment *s = j->name ? shm_segment_open(j->name, &err) : shm_segment_from_fd(j->fd, 0, &err);
    if (!s) {
        fprintf(stderr, "child: %s\n", err.msg);
        return 2;
    }
    uint32_t *w = shm_segment_base(s);
    int rc = 0;
    if (shm_segment_size(s) != j->size || w[0] != 0xC0FFEEu)
        rc = 3;
    w[1] = j->name ? 0xAB : 0xCD;
    shm_segment_destroy(&s);
    return rc;
}

static int all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

static void test_segment_named(void)
{
    char name[64];
    seg_name(name, sizeof name, "named");
    pi_error err;
    shm_segment *s = shm_segment_create_flags(name, 10000, SHM_SEG_NO_HUGE, &err);
    CHECK(s, "%s", err.msg);
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    CHECK(shm_segment_size(s) == (10000 + pg - 1) / pg * pg, "size %zu not page-rounded",
          shm_segment_size(s));
    CHECK(shm_segment_is_named(s) && !shm_segment_is_huge(s), "expected a named small-page segment");
    CHECK(strcmp(shm_segment_name(s), name) == 0, "name %s", shm_segment_name(s));
    CHECK(all_zero(shm_segment_base(s), shm_segment_size(s)), "segment not zeroed");

    /* A second creator of the same name is refused with a useful message. */
    shm_segment *dup = shm_segment_create_flags(name + 1, 100, SHM_SEG_NO_HUGE, &err);
    CHECK(!dup, "second create of %s succeeded", name);
    CHECK(strstr(err.msg, name) && strstr(err.msg, "shm_open") && strstr(err.msg, "File exists"),
          "unhelpful error: %s", err.msg);

    uint32_t *w = shm_segment_base(s);
    w[0] = 0xC0FFEEu;
    seg_job by_name = {name, -1, shm_segment_size(s)};
    CHECK(in_child(child_touch, &by_name) == 0, "child could not open %s by name", name);
    CHECK(w[1] == 0xAB, "child's write by name not visible");
    seg_job by_fd = {NULL, shm_segment_fd(s), shm_segment_size(s)};
    CHECK(in_child(child_touch, &by_fd) == 0, "child could not map the inherited fd");
    CHECK(w[1] == 0xCD, "child's write through fd not visible");

    /* min_size larger than the segment is refused. */
    shm_segment *big = shm_segment_from_fd(shm_segment_fd(s), shm_segment_size(s) + 1, &err);
    CHECK(!big && strstr(err.msg, "smaller"), "min_size not enforced: %s", big ? "" : err.msg);

    shm_segment_destroy(&s);
    CHECK(s == NULL, "destroy did not null the pointer");
    shm_segment_destroy(&s); /* no-op */
    shm_segment *gone = shm_segment_open(name, &err);
    CHECK(!gone, "segment %s still opens after destroy", name);
    CHECK(strstr(err.msg, "shm_open") && strstr(err.msg, name), "error: %s", err.msg);

    CHECK(!shm_segment_create("a/b", 100, &err) && strstr(err.msg, "bad name"), "a/b accepted");
    CHECK(!shm_segment_create("", 100, &err), "empty name accepted");
    CHECK(!shm_segment_create(name, 0, &err) && strstr(err.msg, "size 0"), "size 0 accepted");
}

/* Default creation: huge pages when the machine has them, else the named
 * fallback; either way the fd works in another process. */
static void test_segment_huge_or_fallback(void)
{
    char name[64];
    seg_name(name, sizeof name, "huge");
    pi_error err;
    size_t want = 3u << 20;
    shm_segment *s = shm_segment_create(name, want, &err);
    CHECK(s, "%s", err.msg);
    int huge = shm_segment_is_huge(s);
    CHECK(all_zero(shm_segment_base(s), shm_segment_size(s)), "segment not zeroed");
    printf("segment: %s (%zu bytes for %zu asked)\n",
           huge ? "2 MB huge pages (memfd)" : "no huge pages here: named /dev/shm fallback",
           shm_segment_size(s), want);
    if (huge) {
        CHECK(shm_segment_size(s) == 4u << 20, "huge size %zu", shm_segment_size(s));
        CHECK(!shm_segment_is_named(s), "huge segment claims a name");
        shm_segment *o = shm_segment_open(name, &err);
        CHECK(!o && strstr(err.msg, "fd"), "open by name of a memfd: %s", o ? "opened" : err.msg);
    } else {
        CHECK(shm_segment_is_named(s), "fallback segment not named");
        CHECK(shm_segment_size(s) == want, "size %zu", shm_segment_size(s));
        seg_job by_name = {name, -1, shm_segment_size(s)};
        ((uint32_t *)shm_segment_base(s))[0] = 0xC0FFEEu;
        CHECK(in_child(child_touch, &by_name) == 0, "child could not open %s", name);
    }
    uint32_t *w = shm_segment_base(s);
    w[0] = 0xC0FFEEu;
    seg_job by_fd = {NULL, shm_segment_fd(s), shm_segment_size(s)};
    CHECK(in_child(child_touch, &by_fd) == 0, "child could not map the fd");
    CHECK(w[1] == 0xCD, "child's write through fd not visible");
    shm_segment *again = shm_segment_from_fd(shm_segment_fd(s), 0, &err);
    CHECK(again && shm_segment_is_huge(again) == huge, "from_fd misreads huge pages");
    shm_segment_destroy(&again);
    shm_segment_destroy(&s);
}

/* ---- counters ---------------------------------------------------------- */

static seq_counter *counter_new(void)
{
    seq_counter *c = aligned_alloc(64, sizeof *c);
    CHECK(c, "out of memory");
    memset(c, 0, sizeof *c);
    return c;
}

static void test_wait_timeout_and_wrap(void)
{
    seq_counter *c = counter_new();
    CHECK(((uintptr_t)&c->value & 63) == 0, "value not at the line start");
    seq_wait_opts o = seq_wait_opts_default();
    o.timeout_ns = 20000000;
    uint64_t t0 = now_ns();
    CHECK(seq_wait_geq(c, 1, &o) == -1, "wait on an idle counter did not time out");
    uint64_t dt = now_ns() - t0;
    CHECK(dt >= 20000000 && dt < 2000000000u, "timed out after %llu ns", (unsigned long long)dt);
    o.spin_iters = SEQ_SPIN_FOREVER;
    CHECK(seq_wait_geq(c, 1, &o) == -1, "spin-forever wait did not time out");
    CHECK(seq_wait_geq(c, 0, &o) == 0, "reached value not seen");

    seq_publish(c, 0xFFFFFFF0u);
    CHECK(!seq_reached(c, 5), "0xFFFFFFF0 counted as past 5 (wrap)");
    CHECK(seq_reached(c, 0xFFFFFFE0u), "earlier value not reached");
    seq_publish(c, 6); /* wrapped past 2^32 */
    CHECK(seq_reached(c, 5) && seq_reached(c, 0xFFFFFFF0u), "wrapped value not reached");
    CHECK(seq_load(c) == 6, "load");
    free(c);
}

typedef struct waiter_job {
    seq_counter *c;
    uint32_t target;
    seq_wait_opts o;
    int rc;
    uint64_t ns;
} waiter_job;

static void *waiter_thread(void *arg)
{
    waiter_job *j = arg;
    uint64_t t0 = now_ns();
    j->rc = seq_wait_geq(j->c, j->target, &j->o);
    j->ns = now_ns() - t0;
    return NULL;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_abort(void)
{
    seq_counter *c = counter_new(), *ab = counter_new();
    seq_publish(ab, 7);
    waiter_job j = {.c = c, .target = 1, .o = seq_wait_opts_default()};
    j.o.abort = ab;
    j.o.abort_past = 7;
    j.o.timeout_ns = 10000000000u; /* safety net: the abort must come first */
    pthread_t t;
    CHECK(pthread_create(&t, NULL, waiter_thread, &j) == 0, "pthread_create");
    sleep_ms(30);
    seq_publish(ab, 8); /* pid declares the peer dead */
    CHECK(pthread_join(t, NULL) == 0, "join");
    CHECK(j.rc == -2, "abort not reported: rc %d", j.rc);
    CHECK(j.ns < 2000000000u, "abort took %llu ns", (unsigned long long)j.ns);
    /* An abort already past returns at once, from the spin phase too. */
    j.o.spin_iters = SEQ_SPIN_FOREVER;
    CHECK(seq_wait_geq(c, 1, &j.o) == -2, "past abort not reported while spinning");
    free(c);
    free(ab);
}

/* A GPU stream writes the word without FUTEX_WAKE: the sleeper must still
 * notice within a few sleep slices. */
static void test_write_without_wake(void)
{
    seq_counter *c = counter_new();
    waiter_job j = {.c = c, .target = 1, .o = seq_wait_opts_default()};
    j.o.spin_iters = 0;
    j.o.sleep_ns = 100000;
    j.o.timeout_ns = 5000000000u;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, waiter_thread, &j) == 0, "pthread_create");
    sleep_ms(20);
    atomic_store_explicit(&c->value, 1, memory_order_release); /* no wake */
    uint64_t t0 = now_ns();
    CHECK(pthread_join(t, NULL) == 0, "join");
    uint64_t late = now_ns() - t0;
    CHECK(j.rc == 0, "write without wake missed: rc %d", j.rc);
    printf("write without wake noticed %.0f us after the store\n", late / 1e3);
    CHECK(late < 1000000000u, "noticed only after %llu ns", (unsigned long long)late);
    free(c);
}

/* ---- ping-pong ---------------------------------------------------------- */

#define PP_WORDS 64

typedef struct pp_shared {
    seq_counter ping, pong;
    uint32_t a[PP_WORDS]; /* parent -> child, published by ping */
    uint32_t b[PP_WORDS]; /* child -> parent, published by pong */
} pp_shared;

typedef struct pp_job {
    pp_shared *sh;
    uint32_t base; /* first round's value - 1: keeps runs on one counter apart */
    uint32_t rounds;
    seq_wait_opts o;
    int rc;
} pp_job;

static uint32_t pattern(uint32_t round, uint32_t k) { return round * 2654435761u + k; }

/* The responder: for each round, wait, check the whole buffer, answer. */
static int pp_child(void *arg)
{
    pp_job *j = arg;
    for (uint32_t r = j->base + 1; r != j->base + 1 + j->rounds; r++) {
        int w = seq_wait_geq(&j->sh->ping, r, &j->o);
        if (w != 0) {
            fprintf(stderr, "responder: wait for round %u returned %d\n", r, w);
            return 4;
        }
        for (uint32_t k = 0; k < PP_WORDS; k++) {
            if (j->sh->a[k] != pattern(r, k)) {
                fprintf(stderr, "responder: torn data in round %u word %u\n", r, k);
                return 5;
            }
            j->sh->b[k] = ~j->sh->a[k];
        }
        seq_publish(&j->sh->pong, r);
    }
    return 0;
}

static void *pp_thread(void *arg)
{
    pp_job *j = arg;
    j->rc = pp_child(j);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Runs `rounds` round trips against a responder process (or thread) and
 * returns the median round trip in ns; every buffer is checked both ways. */
static uint64_t ping_pong(pp_shared *sh, uint32_t rounds, const seq_wait_opts *o, int use_fork)
{
    /* Runs follow each other on the same counters: continue from where the
     * last one stopped (ping == pong == its last round). */
    pp_job j = {.sh = sh, .base = seq_load(&sh->ping), .rounds = rounds, .o = *o};
    pid_t pid = -1;
    pthread_t t;
    if (use_fork) {
        fflush(NULL);
        pid = fork();
        CHECK(pid >= 0, "fork");
        if (pid == 0)
            _exit(pp_child(&j));
    } else {
        CHECK(pthread_create(&t, NULL, pp_thread, &j) == 0, "pthread_create");
    }
    uint64_t *rt = malloc(rounds * sizeof *rt);
    CHECK(rt, "out of memory");
    for (uint32_t i = 0; i < rounds; i++) {
        uint32_t r = j.base + 1 + i;
        for (uint32_t k = 0; k < PP_WORDS; k++)
            sh->a[k] = pattern(r, k);
        uint64_t t0 = now_ns();
        seq_publish(&sh->ping, r);
        int w = seq_wait_geq(&sh->pong, r, o);
        rt[i] = now_ns() - t0;
        CHECK(w == 0, "round %u: wait for the answer returned %d (lost wake-up or dead responder)",
              r, w);
        for (uint32_t k = 0; k < PP_WORDS; k++)
            CHECK(sh->b[k] == ~pattern(r, k), "round %u word %u: torn answer", r, k);
    }
    if (use_fork) {
        int st = 0;
        CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "responder failed (status %d)", st);
    } else {
        CHECK(pthread_join(t, NULL) == 0, "join");
        CHECK(j.rc == 0, "responder thread failed (%d)", j.rc);
    }
    qsort(rt, rounds, sizeof *rt, cmp_u64);
    uint64_t med = rt[rounds / 2];
    free(rt);
    return med;
}

static void test_ping_pong(void)
{
    char name[64];
    seg_name(name, sizeof name, "pp");
    pi_error err;
    shm_segment *s = shm_segment_create(name, sizeof(pp_shared), &err);
    CHECK(s, "%s", err.msg);
    pp_shared *sh = shm_segment_base(s);
    int use_fork = !UNDER_TSAN; /* TSan cannot see into another process */
    const char *who = use_fork ? "processes" : "threads";

    /* Pure futex mode, where a lost wake-up would show: sleep slices longer
     * than the timeout, so a missed FUTEX_WAKE fails the wait with -1. */
    seq_wait_opts sleepy = {.spin_iters = 0, .sleep_ns = 3000000000u, .timeout_ns = 2000000000u};
    uint64_t t0 = now_ns();
    uint64_t med_sleep = ping_pong(sh, 100000, &sleepy, use_fork);
    printf("ping-pong (%s, futex sleep): 100000 round trips checked in %.2f s, median %.2f us\n",
           who, (now_ns() - t0) / 1e9, med_sleep / 1e3);

    seq_wait_opts spin = {.spin_iters = SEQ_SPIN_FOREVER, .timeout_ns = 2000000000u};
    uint32_t n_spin = UNDER_TSAN ? 2000 : 20000;
    uint64_t med_spin = ping_pong(sh, n_spin, &spin, use_fork);
    printf("ping-pong (%s, spin): %u round trips, median %.2f us\n", who, n_spin, med_spin / 1e3);

    seq_wait_opts def = seq_wait_opts_default();
    def.timeout_ns = 2000000000u;
    uint64_t med_def = ping_pong(sh, n_spin, &def, use_fork);
    printf("ping-pong (%s, default spin-then-sleep): %u round trips, median %.2f us\n", who,
           n_spin, med_def / 1e3);
    if (use_fork) {
        uint64_t med_thr = ping_pong(sh, 10000, &sleepy, 0);
        printf("ping-pong (threads, futex sleep): 10000 round trips, median %.2f us\n",
               med_thr / 1e3);
    }
    shm_segment_destroy(&s);
}

/* ---- step layout -------------------------------------------------------- */

static const step_params k_params = {.n_layers = 40, .dim = 5120, .n_ff = 13824,
                                     .n_vocab = 32000, .max_batch = 8, .n_cpu_workers = 3};

static void test_layout(void)
{
    pi_error err;
    step_layout l;
    CHECK(step_layout_compute(&k_params, &l, &err) == 0, "%s", err.msg);
    /* Regions in table order, aligned, not overlapping. */
    size_t hdr_end = sizeof(step_header);
    struct { size_t off, len, align; const char *what; } r[] = {
        {0, hdr_end, 64, "header"},
        {l.off_layer_seq, 64, 64, "layer seq"},
        {l.off_abort_seq, 64, 64, "abort seq"},
        {l.off_done_seq, 64 * 3, 64, "done seqs"},
        {l.off_cpu_stats, 64 * 3, 64, "cpu stats"},
        {l.off_bell, sizeof(step_bell), 64, "bell"},
        {l.off_cmd, sizeof(step_cmd) + 8 * sizeof(step_seq), 64, "cmd"},
        {l.off_active_counts, 8 * 4, 64, "active counts"},
        {l.off_x, 8 * 5120 * 4, 4096, "x"},
        {l.off_active_idx, (size_t)8 * 13824 * 4, 4096, "active idx"},
        {l.off_partial, 3 * l.partial_stride, 4096, "partials"},
        {l.off_logits, (size_t)8 * 32000 * 4, 4096, "logits"},
    };
    size_t n = sizeof r / sizeof r[0];
    for (size_t i = 0; i < n; i++) {
        CHECK(r[i].off % r[i].align == 0, "%s at %zu not %zu-aligned", r[i].what, r[i].off,
              r[i].align);
        if (i + 1 < n)
            CHECK(r[i].off + r[i].len <= r[i + 1].off, "%s overlaps %s", r[i].what,
                  r[i + 1].what);
    }
    CHECK(r[n - 1].off + r[n - 1].len <= l.total_bytes, "logits past the end");
    CHECK(l.partial_stride >= 8 * 5120 * 4 && l.partial_stride % 4096 == 0, "stride %zu",
          l.partial_stride);
    printf("step layout (13B shape, batch 8, 3 CPU workers): %zu bytes\n", l.total_bytes);

    /* Accessors resolve to those offsets on a real mapping. */
    char name[64];
    seg_name(name, sizeof name, "acc");
    shm_segment *s = shm_segment_create(name, l.total_bytes, &err);
    CHECK(s, "%s", err.msg);
    char *b = shm_segment_base(s);
    CHECK((char *)step_partial(b, &l, 2) == b + l.off_partial + 2 * l.partial_stride, "partial 2");
    CHECK(step_partial(b, &l, 3) == NULL && step_done_seq(b, &l, 3) == NULL, "worker 3 exists");
    CHECK((char *)step_done_seq(b, &l, 1) == b + l.off_done_seq + 64, "done seq 1");
    /* Each CPU worker's stats on its own cache line. */
    for (uint32_t w = 0; w < 3; w++) {
        char *st = (char *)step_cpu_stats_at(b, &l, w);
        CHECK(st == b + l.off_cpu_stats + (size_t)w * 64 && (uintptr_t)st % 64 == 0,
              "cpu stats %u at %td", w, st - b);
    }
    CHECK(step_cpu_stats_at(b, &l, 3) == NULL, "cpu stats of worker 3 exist");
    CHECK((char *)step_active_idx(b, &l, 7) == b + l.off_active_idx + (size_t)7 * 13824 * 4,
          "active idx 7");
    CHECK(step_active_idx(b, &l, 8) == NULL, "seq 8 exists");
    CHECK((char *)step_logits(b, &l) == b + l.off_logits && (char *)step_x(b, &l) == b + l.off_x,
          "logits/x");
    shm_segment_destroy(&s);

    /* Rejections. */
    step_params p = k_params;
    p.max_batch = UINT32_MAX;
    p.n_vocab = UINT32_MAX;
    p.dim = UINT32_MAX;
    CHECK(step_layout_compute(&p, &l, &err) == -1 && strstr(err.msg, "overflows"),
          "overflow accepted: %s", err.msg);
    p = k_params;
    p.max_batch = 65536;
    p.dim = 65536;
    p.n_cpu_workers = UINT32_MAX;
    CHECK(step_layout_compute(&p, &l, &err) == -1 && strstr(err.msg, "overflows"),
          "partials overflow accepted");
    p = k_params;
    p.dim = 0;
    CHECK(step_layout_compute(&p, &l, &err) == -1 && strstr(err.msg, "at least 1"), "dim 0");
    p = k_params;
    p.n_ff = 0x80000000u;
    CHECK(step_layout_compute(&p, &l, &err) == -1 && strstr(err.msg, "int32"), "n_ff 2^31");
    p = k_params;
    p.n_cpu_workers = 0;
    CHECK(step_layout_compute(&p, &l, &err) == 0, "no CPU workers refused: %s", err.msg);
    CHECK(step_tick(0, 40, 0) == 1 && step_tick(2, 40, 39) == 120, "tick");
}

static void test_header_check(void)
{
    pi_error err;
    step_layout l, got;
    CHECK(step_layout_compute(&k_params, &l, &err) == 0, "%s", err.msg);
    char name[64];
    seg_name(name, sizeof name, "step");
    shm_segment *s = shm_segment_create(name, l.total_bytes, &err);
    CHECK(s, "%s", err.msg);
    void *b = shm_segment_base(s);
    size_t sz = shm_segment_size(s);
    CHECK(step_header_check(b, sz, &k_params, &got, &err) == -1 && strstr(err.msg, "magic"),
          "unwritten header accepted: %s", err.msg);
    step_header_write(b, &l);
    CHECK(step_header_check(b, sz, &k_params, &got, &err) == 0, "%s", err.msg);
    CHECK(memcmp(&got, &l, sizeof l) == 0, "checked layout differs");

    step_params other = k_params;
    other.n_ff = 11008;
    CHECK(step_header_check(b, sz, &other, &got, &err) == -1, "other n_ff accepted");
    CHECK(strstr(err.msg, "n_ff is 13824 in the segment but 11008 in this worker's model"),
          "unclear mismatch message: %s", err.msg);
    other = k_params;
    other.n_cpu_workers = 4;
    CHECK(step_header_check(b, sz, &other, &got, &err) == -1 && strstr(err.msg, "n_cpu_workers"),
          "other worker count accepted");
    CHECK(step_header_check(b, l.total_bytes - 1, &k_params, &got, &err) == -1 &&
              strstr(err.msg, "truncated"),
          "short mapping accepted: %s", err.msg);
    step_header_at(b)->off_x += 64;
    CHECK(step_header_check(b, sz, &k_params, &got, &err) == -1 && strstr(err.msg, "offsets"),
          "skewed offsets accepted");
    step_header_at(b)->off_x -= 64;
    step_header_at(b)->off_cpu_stats += 64;
    CHECK(step_header_check(b, sz, &k_params, &got, &err) == -1 && strstr(err.msg, "offsets"),
          "skewed cpu stats offset accepted");
    step_header_at(b)->off_cpu_stats -= 64;
    /* Version 1 had no stats lines: a worker of that build is refused. */
    step_header_at(b)->version = 1;
    CHECK(step_header_check(b, sz, &k_params, &got, &err) == -1 && strstr(err.msg, "version 1"),
          "other version accepted: %s", err.msg);
    shm_segment_destroy(&s);
}

/* ---- one decode step through the layout ---------------------------------- */

typedef struct cpu_job {
    void *base;
    const step_layout *l;
    uint32_t worker, steps;
    int rc;
} cpu_job;

/* A CPU worker: per layer, wait for the GPU's tick, write x * (worker + 1). */
static void *cpu_worker(void *arg)
{
    cpu_job *j = arg;
    const step_layout *l = j->l;
    size_t n = (size_t)l->p.max_batch * l->p.dim;
    seq_wait_opts o = seq_wait_opts_default();
    o.timeout_ns = 5000000000u;
    o.abort = step_abort_seq(j->base, l);
    for (uint32_t st = 0; st < j->steps; st++) {
        for (uint32_t L = 0; L < l->p.n_layers; L++) {
            uint32_t tick = step_tick(st, l->p.n_layers, L);
            if (seq_wait_geq(step_layer_seq(j->base, l), tick, &o) != 0) {
                j->rc = 1;
                return NULL;
            }
            const float *x = step_x(j->base, l);
            float *part = step_partial(j->base, l, j->worker);
            for (size_t i = 0; i < n; i++)
                part[i] = x[i] * (float)(j->worker + 1);
            if (L + 1 == l->p.n_layers) /* the step's figures go out with its last tick */
                *step_cpu_stats_at(j->base, l, j->worker) = (step_cpu_stats){
                    .step_no = st + 1, .cold_ns = 1000u * (j->worker + 1), .layers = L + 1};
            seq_publish(step_done_seq(j->base, l, j->worker), tick);
        }
    }
    return NULL;
}

/* A new step segment for p with its header written: *l its layout, *base
 * its mapping. */
static shm_segment *step_segment(const step_params *p, const char *tag, step_layout *l, void **base)
{
    pi_error err;
    CHECK(step_layout_compute(p, l, &err) == 0, "%s", err.msg);
    char name[64];
    seg_name(name, sizeof name, tag);
    shm_segment *s = shm_segment_create(name, l->total_bytes, &err);
    CHECK(s, "%s", err.msg);
    *base = shm_segment_base(s);
    step_header_write(*base, l);
    return s;
}

static void test_step_flow(void)
{
    step_params p = {.n_layers = 4, .dim = 64, .n_ff = 128, .n_vocab = 100, .max_batch = 2,
                     .n_cpu_workers = 2};
    step_layout l;
    void *b;
    shm_segment *s = step_segment(&p, "flow", &l, &b);
    cpu_job jobs[2];
    pthread_t t[2];
    for (uint32_t w = 0; w < 2; w++) {
        jobs[w] = (cpu_job){.base = b, .l = &l, .worker = w, .steps = 50};
        CHECK(pthread_create(&t[w], NULL, cpu_worker, &jobs[w]) == 0, "pthread_create");
    }
    /* The "GPU worker": x = h, then h += sum of partials (= 3x). */
    size_t n = (size_t)p.max_batch * p.dim;
    float h[128];
    seq_wait_opts o = seq_wait_opts_default();
    o.timeout_ns = 5000000000u;
    for (uint32_t st = 0; st < 50; st++) {
        for (size_t i = 0; i < n; i++)
            h[i] = (float)(i % 7 + 1);
        for (uint32_t L = 0; L < p.n_layers; L++) {
            uint32_t tick = step_tick(st, p.n_layers, L);
            memcpy(step_x(b, &l), h, n * sizeof(float));
            seq_publish(step_layer_seq(b, &l), tick);
            for (uint32_t w = 0; w < 2; w++)
                CHECK(seq_wait_geq(step_done_seq(b, &l, w), tick, &o) == 0, "worker %u late", w);
            for (size_t i = 0; i < n; i++)
                h[i] += step_partial(b, &l, 0)[i] + step_partial(b, &l, 1)[i];
        }
        for (size_t i = 0; i < n; i++) /* 4 layers of h *= 4 */
            CHECK(h[i] == (float)(i % 7 + 1) * 256.0f, "step %u h[%zu] = %g", st, i, h[i]);
        /* Having seen the last ticks, this step's stats are there (pid reads
         * them after StepDone, which the GPU worker sends after this wait). */
        for (uint32_t w = 0; w < 2; w++) {
            const step_cpu_stats *cs = step_cpu_stats_at(b, &l, w);
            CHECK(cs->step_no == st + 1 && cs->layers == p.n_layers && cs->cold_ns == 1000u * (w + 1),
                  "step %u: worker %u's stats say step %llu, %llu layers", st, w,
                  (unsigned long long)cs->step_no, (unsigned long long)cs->layers);
        }
    }
    for (int w = 0; w < 2; w++) {
        CHECK(pthread_join(t[w], NULL) == 0, "join");
        CHECK(jobs[w].rc == 0, "worker %d failed", w);
    }
    shm_segment_destroy(&s);
}

/* The other side of test_step_bell: a "GPU worker" that runs what the bell
 * posts (as its control loop does) and answers each step. */
typedef struct bell_job {
    void *base;
    const step_layout *l;
    uint64_t start, last_step;  /* the command's step_id when it attached; run until last_step */
    int rc;
} bell_job;

static void *bell_worker(void *arg)
{
    bell_job *j = arg;
    step_bell *bell = step_bell_at(j->base, j->l);
    const step_cmd *cmd = step_command(j->base, j->l);
    uint64_t last = j->start, deadline = now_ns() + 10000000000u;
    j->rc = -1;
    while (last < j->last_step && now_ns() < deadline) {
        uint64_t no;
        uint32_t n, epoch, flags;
        if (!step_bell_posted(bell, cmd, last, &no, &n, &epoch, &flags))
            continue;
        if (no != last + 1 || n != (uint32_t)(no % 2 + 1) || epoch != (uint32_t)no * 3u ||
            flags != (no % 2 ? STEP_CMD_TIMINGS : 0u))
            return NULL;   /* a step skipped, seen twice, or with another step's fields */
        last = no;
        step_answer a = {.step_no = no, .ok = 1, .pred_true_pos = n, .timings = {[9] = (double)no}};
        step_bell_answer(bell, &a);
    }
    j->rc = last == j->last_step ? 0 : -1;
    return NULL;
}

/* The step bell: every posted step is seen once, with its command's fields,
 * and pid reads each answer for that step only, across the 2^32 wrap of the
 * counters (the step numbers start just below it). */
static void test_step_bell(void)
{
    step_params p = {.n_layers = 2, .dim = 8, .n_ff = 16, .n_vocab = 10, .max_batch = 2, .n_cpu_workers = 0};
    step_layout l;
    void *b;
    shm_segment *s = step_segment(&p, "bell", &l, &b);
    step_bell *bell = step_bell_at(b, &l);
    step_cmd *cmd = step_command(b, &l);
    const uint64_t first = 0xfffffff0u, last = first + 40;
    cmd->step_id = first - 1;   /* the last command written: a worker starting now does not run it */
    step_bell_post(bell, first - 1);
    /* ...and its answer: the answered counter trails the steps by at most one, as in pid, where
     * steps start at 1 over a zeroed segment (a counter 2^31 behind would read as ahead). */
    step_answer prev = {.step_no = first - 1, .ok = 1};
    step_bell_answer(bell, &prev);
    uint64_t no;
    uint32_t n, epoch, flags;
    CHECK(!step_bell_posted(bell, cmd, first - 1, &no, &n, &epoch, &flags), "the last command taken as new");
    step_answer a;
    CHECK(!step_bell_answered(bell, first, &a), "an answer before the step");
    bell_job job = {.base = b, .l = &l, .start = cmd->step_id, .last_step = last};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, bell_worker, &job) == 0, "pthread_create");
    uint64_t deadline = now_ns() + 10000000000u;
    for (uint64_t st = first; st <= last; st++) {
        cmd->step_id = st;
        cmd->n_seq = (uint32_t)(st % 2 + 1);
        cmd->abort_epoch = (uint32_t)st * 3u;
        cmd->flags = st % 2 ? STEP_CMD_TIMINGS : 0u;
        step_bell_post(bell, st);
        while (!step_bell_answered(bell, st, &a) && now_ns() < deadline)
            ;
        CHECK(a.step_no == st && a.ok && a.pred_true_pos == cmd->n_seq && a.timings[9] == (double)st,
              "step %llu: answer for step %llu", (unsigned long long)st, (unsigned long long)a.step_no);
        if (st + 1 <= last)
            CHECK(!step_bell_answered(bell, st + 1, &a), "step %llu answered before it was posted",
                  (unsigned long long)(st + 1));
    }
    CHECK(pthread_join(t, NULL) == 0, "join");
    CHECK(job.rc == 0, "the worker side skipped, repeated or misread a step");
    printf("step bell: %llu steps across the counter's wrap, each seen once\n", (unsigned long long)(last - first + 1));
    shm_segment_destroy(&s);
}

int main(void)
{
    /* Fork only while single-threaded: TSan supports nothing else. */
    test_segment_named();
    test_segment_huge_or_fallback();
    if (UNDER_TSAN)
        printf("TSan build: ping-pong runs on threads (TSan cannot see across processes)\n");
    test_wait_timeout_and_wrap();
    test_abort();
    test_write_without_wake();
    test_layout();
    test_header_check();
    test_step_flow();
    test_step_bell();
    test_ping_pong();
    printf("test_shm: ok\n");
    return 0;
}
