/* Proves pid's step accounting: decode steps are summed and prefill only counted, pid's parts add up to the wall, the GPU worker's phases and the CPU workers' stats lines land where they belong (stale lines ignored), a failed step does not stretch the next one's wall, the table says n/a without GPU phases, and a solo step counts its CPU workers with 0 time and no stale line, the prefill table saying how many of its steps were solo. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "timings.h"

#define NEAR(a, b) (fabs((a) - (b)) < 1e-3)

/* Phases that add up to 900 us, as a GPU worker's StepDone.timings would. */
static Pi__StepTimings gpu_phases(void)
{
    Pi__StepTimings g = PI__STEP_TIMINGS__INIT;
    g.embed_us = 10;
    g.attn_us = 400;
    g.predict_us = 0;
    g.publish_us = 5;
    g.hot_us = 100;
    g.wait_cpu_us = 200;
    g.finish_us = 15;
    g.logits_us = 120;
    g.control_us = 50;
    g.gpu_step_us = 900;
    return g;
}

/* The table as text. */
static char *table(const timings *t)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f, "open_memstream");
    timings_print(t, f, "T: ");
    CHECK(fclose(f) == 0, "fclose");
    return buf;
}

static void test_decode_sum(void)
{
    pi_error err;
    timings *t = timings_new(2, &err);
    CHECK(t, "%s", err.msg);
    /* Step 1: prefill of 6 tokens, without GPU phases. */
    timings_begin(t, 100.0, 1, 6, 0);
    timings_sent(t, 100.1);
    timings_done(t, 101.1, NULL);
    timings_sampling(t, 101.15);
    timings_end(t, 101.2);
    CHECK(timings_last(t)->n == 0 && timings_decode_sum(t)->n == 0, "prefill counted as decode");
    uint64_t ps, pe;
    double pw;
    timings_prefill(t, &ps, &pe, &pw);
    CHECK(ps == 1 && pe == 6 && NEAR(pw, 1.2), "prefill: %llu steps %llu tokens %.3f ms",
          (unsigned long long)ps, (unsigned long long)pe, pw);

    /* Step 2: decode; its wall starts at step 1's end (the token period). */
    Pi__StepTimings g = gpu_phases();
    timings_begin(t, 101.3, 2, 1, 1);
    timings_sent(t, 101.4);
    timings_done(t, 102.4, &g);
    step_cpu_stats fresh = {.step_no = 2, .cold_ns = 300000, .wait_ns = 500000, .layers = 5};
    step_cpu_stats stale = {.step_no = 1, .cold_ns = 999000, .wait_ns = 1, .layers = 5};
    timings_cpu_stats(t, 0, &fresh);
    timings_cpu_stats(t, 1, &stale);
    timings_cpu_stats(t, 7, &fresh); /* no such worker: ignored */
    timings_sampling(t, 102.45);
    timings_end(t, 102.5);
    const timings_step *l = timings_last(t);
    CHECK(l->n == 1 && l->n_gpu == 1 && l->step_no == 2, "last step %llu", (unsigned long long)l->step_no);
    CHECK(NEAR(l->wall, 1300) && NEAR(l->round_trip, 1000) && NEAR(l->zmq, 100), "wall %.3f rt %.3f zmq %.3f",
          l->wall, l->round_trip, l->zmq);
    CHECK(NEAR(l->sched, 250) && NEAR(l->sampling, 50), "sched %.3f sampling %.3f", l->sched, l->sampling);
    CHECK(NEAR(l->sched + l->round_trip + l->sampling, l->wall), "pid's parts do not add up to the wall");
    CHECK(NEAR(l->gpu[TM_ATTN], 400) && NEAR(l->gpu[TM_GPU_CONTROL], 50), "phases misplaced");
    CHECK(l->cpu[0].n == 1 && NEAR(l->cpu[0].cold_us, 300) && NEAR(l->cpu[0].wait_us, 500), "cpu:0 %.3f",
          l->cpu[0].cold_us);
    CHECK(l->cpu[1].n == 0 && l->cpu[1].cold_us == 0, "cpu:1's stale line was taken");

    char *s = table(t);
    CHECK(strstr(s, "T: timings per decode step, ms (1 steps, 1.00 tokens each; prefill excluded: 1 steps, "
                    "6 tokens, 1.200 ms)"), "header:\n%s", s);
    CHECK(strstr(s, "gpu attn") && strstr(s, "0.4000"), "attn row:\n%s", s);
    CHECK(strstr(s, "sum / wall") && strstr(s, "100.0%"), "sum / wall:\n%s", s);
    CHECK(strstr(s, "cpu:0 cold ffn") && strstr(s, "cpu:1: stats of 0 of the 1 steps"), "cpu rows:\n%s", s);
    free(s);

    /* Step 3 fails; step 4 (decode, no GPU phases) starts its wall at its own begin. */
    timings_begin(t, 103.0, 3, 1, 1);
    timings_sent(t, 103.1);
    timings_abandon(t);
    timings_begin(t, 110.0, 4, 1, 1);
    timings_sent(t, 110.2);
    timings_done(t, 111.2, NULL);
    timings_sampling(t, 111.2);
    timings_end(t, 111.3);
    l = timings_last(t);
    CHECK(l->step_no == 4 && NEAR(l->wall, 1300) && l->n_gpu == 0, "step 4: wall %.3f", l->wall);
    const timings_step *a = timings_decode_sum(t);
    CHECK(a->n == 2 && a->n_gpu == 1 && NEAR(a->wall, 2600) && NEAR(a->wall_gpu, 1300), "sum: n %llu wall %.3f",
          (unsigned long long)a->n, a->wall);
    s = table(t);
    CHECK(strstr(s, "the 1 of 2 steps whose StepDone carried timings"), "partial GPU note:\n%s", s);
    free(s);
    /* A prefill step after idle time starts at its own begin. */
    timings_begin(t, 200.0, 5, 3, 0);
    timings_sent(t, 200.1);
    timings_done(t, 200.8, NULL);
    timings_sampling(t, 200.9);
    timings_end(t, 201.0);
    timings_prefill(t, &ps, &pe, &pw);
    CHECK(ps == 2 && pe == 9 && NEAR(pw, 2.2), "prefill after idle: %llu steps %.3f ms", (unsigned long long)ps, pw);
    timings_free(&t);
    CHECK(t == NULL, "timings_free must NULL the pointer");
}

static void test_no_gpu_phases(void)
{
    pi_error err;
    timings *t = timings_new(1, &err);
    CHECK(t, "%s", err.msg);
    char *s = table(t);
    CHECK(strstr(s, "no decode step ran"), "empty table:\n%s", s);
    free(s);
    for (uint64_t k = 1; k <= 3; k++) {
        double t0 = 10.0 * (double)k;
        timings_begin(t, t0, k, 1, 1);
        timings_sent(t, t0 + 0.1);
        timings_done(t, t0 + 1.1, NULL);
        timings_sampling(t, t0 + 1.2);
        timings_end(t, t0 + 1.3);
        timings_abandon(t); /* idle between steps: each wall from its own begin */
    }
    s = table(t);
    CHECK(strstr(s, "gpu attn") && strstr(s, "n/a"), "gpu rows must say n/a:\n%s", s);
    CHECK(strstr(s, "round trip (gpu worker + zeromq, not split)") && strstr(s, "1.0000"), "round trip:\n%s", s);
    CHECK(strstr(s, "sent no phases; pid scheduling + sampling: 0.3000"), "known parts:\n%s", s);
    CHECK(strstr(s, "wall") && strstr(s, "1.3000"), "wall:\n%s", s);
    free(s);
    timings_free(&t);
}

/* A solo prefill step (the CPU workers skip it), then an ordinary one. */
static void test_solo(void)
{
    pi_error err;
    timings *t = timings_new(2, &err);
    CHECK(t, "%s", err.msg);
    step_cpu_stats line = {.step_no = 1, .cold_ns = 700000, .wait_ns = 100000, .layers = 5};
    timings_begin(t, 10.0, 2, 64, 0);
    timings_solo(t);
    timings_sent(t, 10.1);
    timings_done(t, 12.1, NULL);
    timings_cpu_stats(t, 0, &line);     /* an earlier step's: not read */
    line.step_no = 2;                   /* even one that claims this step's number */
    timings_cpu_stats(t, 1, &line);
    timings_sampling(t, 12.2);
    timings_end(t, 12.3);
    timings_begin(t, 20.0, 3, 8, 0);
    timings_sent(t, 20.1);
    timings_done(t, 21.1, NULL);
    line.step_no = 3;
    timings_cpu_stats(t, 0, &line);
    timings_cpu_stats(t, 1, &line);
    timings_sampling(t, 21.2);
    timings_end(t, 21.3);
    char *s = table(t);
    CHECK(strstr(s, "T: timings per prefill step, ms (2 steps, 36.00 entries each, 3.600 ms in all; 1 of them solo)"),
          "prefill header:\n%s", s);
    CHECK(strstr(s, "(1 of the 2 steps were solo: the GPU worker computed every neuron"), "solo note:\n%s", s);
    CHECK(!strstr(s, "were stale"), "a solo step counted as a stale line:\n%s", s);
    /* cold ffn averages over both steps: 700 us in the ordinary one, 0 in the solo one */
    CHECK(strstr(s, "cpu:0 cold ffn                               0.3500"), "cpu rows:\n%s", s);
    free(s);
    timings_free(&t);
}

int main(void)
{
    test_decode_sum();
    test_no_gpu_phases();
    test_solo();
    printf("ok: step timings\n");
    return 0;
}
