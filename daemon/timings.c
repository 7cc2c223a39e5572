/* Step timings (timings.h). pid's own parts are cut from one clock at the
 * step's moments, so pid scheduling + round trip + sampling = wall exactly;
 * whether the table's sum meets the wall therefore says whether the GPU
 * worker's phases account for its whole step. */
#include "timings.h"

#include <stdlib.h>
#include <string.h>

struct timings {
    uint32_t n_cpu;
    timings_step cur, last, sum, pre;   /* each with its own n_cpu array; sum: decode, pre: prefill */
    double t_start, t_sent, t_done, t_sampling;
    double prev_end;                /* the last good step's end; < 0: none */
    int decode, has_gpu;
    double sum_gpu, pre_gpu;        /* sum of the parts over sum's / pre's n_gpu steps */
};

timings *timings_new(uint32_t n_cpu, pi_error *err)
{
    timings *t = calloc(1, sizeof *t);
    size_t n = n_cpu ? n_cpu : 1;
    if (t) {
        t->cur.cpu = calloc(n, sizeof(timings_cpu));
        t->last.cpu = calloc(n, sizeof(timings_cpu));
        t->sum.cpu = calloc(n, sizeof(timings_cpu));
        t->pre.cpu = calloc(n, sizeof(timings_cpu));
    }
    if (!t || !t->cur.cpu || !t->last.cpu || !t->sum.cpu || !t->pre.cpu) {
        timings_free(&t);
        pi_error_set(err, "out of memory for the step timings of %u CPU workers", n_cpu);
        return NULL;
    }
    t->n_cpu = t->cur.n_cpu = t->last.n_cpu = t->sum.n_cpu = t->pre.n_cpu = n_cpu;
    t->prev_end = -1;
    return t;
}

void timings_free(timings **tp)
{
    timings *t = *tp;
    if (!t)
        return;
    free(t->cur.cpu);
    free(t->last.cpu);
    free(t->sum.cpu);
    free(t->pre.cpu);
    free(t);
    *tp = NULL;
}

/* Clears a step's figures, keeping its cpu array. */
static void step_clear(timings_step *s, uint32_t n_cpu)
{
    timings_cpu *cpu = s->cpu;
    memset(s, 0, sizeof *s);
    memset(cpu, 0, (n_cpu ? n_cpu : 1) * sizeof *cpu);
    s->cpu = cpu;
    s->n_cpu = n_cpu;
}

void timings_begin(timings *t, double now_ms, uint64_t step_no, uint32_t entries, int decode)
{
    step_clear(&t->cur, t->n_cpu);
    t->cur.step_no = step_no;
    t->cur.entries = entries;
    t->cur.n = 1;
    t->decode = decode;
    t->has_gpu = 0;
    /* A decode step follows the step that made its token at once: the loop's
     * time since that step's end counts (the wall is the token period). Any
     * other step may follow idle time, so it starts at its own begin. */
    t->t_start = decode && t->prev_end >= 0 ? t->prev_end : now_ms;
    t->t_sent = t->t_done = t->t_sampling = now_ms;
}

void timings_sent(timings *t, double now_ms) { t->t_sent = now_ms; }

void timings_done(timings *t, double now_ms, const Pi__StepTimings *g)
{
    t->t_done = now_ms;
    t->cur.round_trip = (now_ms - t->t_sent) * 1e3;
    if (!g)
        return;
    const double ph[TM_GPU_N] = {g->embed_us, g->attn_us, g->predict_us, g->publish_us, g->hot_us,
                                 g->wait_cpu_us, g->finish_us, g->logits_us, g->control_us};
    memcpy(t->cur.gpu, ph, sizeof ph);
    t->cur.gpu_step = g->gpu_step_us;
    t->cur.zmq = t->cur.round_trip - g->gpu_step_us;
    t->cur.n_gpu = 1;
    t->has_gpu = 1;
}

void timings_bell(timings *t) { t->cur.bell = 1; }

void timings_solo(timings *t)
{
    t->cur.solo = 1;
    for (uint32_t w = 0; w < t->n_cpu; w++)
        t->cur.cpu[w] = (timings_cpu){.n = 1};
}

void timings_cpu_stats(timings *t, uint32_t w, const step_cpu_stats *s)
{
    if (t->cur.solo)
        return; /* the workers sat it out: their lines are an earlier step's */
    if (w >= t->n_cpu || !s || s->step_no != t->cur.step_no || !s->layers)
        return; /* a stale line: the worker did not finish this step */
    t->cur.cpu[w] = (timings_cpu){.cold_us = (double)s->cold_ns / 1e3,
                                  .wait_us = (double)s->wait_ns / 1e3, .n = 1};
}

void timings_sampling(timings *t, double now_ms) { t->t_sampling = now_ms; }

static double parts_us(const timings_step *s)
{
    double p = s->zmq + s->sched + s->sampling;
    for (int i = 0; i < TM_GPU_N; i++)
        p += s->gpu[i];
    return p;
}

/* Adds one step into a (the decode or the prefill sum; parts: its sum_gpu). */
static void step_add(const timings *t, timings_step *a, double *parts, const timings_step *s)
{
    a->step_no = s->step_no;
    a->n += 1;
    a->entries += s->entries;
    a->round_trip += s->round_trip;
    a->bell += s->bell;
    a->solo += s->solo;
    a->sched += s->sched;
    a->sampling += s->sampling;
    a->wall += s->wall;
    if (s->n_gpu) {
        a->n_gpu += 1;
        for (int i = 0; i < TM_GPU_N; i++)
            a->gpu[i] += s->gpu[i];
        a->gpu_step += s->gpu_step;
        a->zmq += s->zmq;
        a->wall_gpu += s->wall;
        *parts += parts_us(s);
    }
    for (uint32_t w = 0; w < t->n_cpu; w++) {
        a->cpu[w].cold_us += s->cpu[w].cold_us;
        a->cpu[w].wait_us += s->cpu[w].wait_us;
        a->cpu[w].n += s->cpu[w].n;
    }
}

void timings_end(timings *t, double now_ms)
{
    timings_step *s = &t->cur;
    s->sampling = (now_ms - t->t_sampling) * 1e3;
    s->wall = (now_ms - t->t_start) * 1e3;
    s->sched = ((t->t_sent - t->t_start) + (t->t_sampling - t->t_done)) * 1e3;
    if (s->n_gpu)
        s->wall_gpu = s->wall;
    t->prev_end = now_ms;
    if (!t->decode) {
        step_add(t, &t->pre, &t->pre_gpu, s);
        return;
    }
    step_add(t, &t->sum, &t->sum_gpu, s);
    timings_cpu *keep = t->last.cpu;
    t->last = *s;
    t->last.cpu = keep;
    memcpy(keep, s->cpu, (t->n_cpu ? t->n_cpu : 1) * sizeof *keep);
}

void timings_abandon(timings *t) { t->prev_end = -1; }

const timings_step *timings_last(const timings *t) { return &t->last; }
const timings_step *timings_decode_sum(const timings *t) { return &t->sum; }

void timings_prefill(const timings *t, uint64_t *steps, uint64_t *entries, double *wall_ms)
{
    *steps = t->pre.n;
    *entries = t->pre.entries;
    *wall_ms = t->pre.wall / 1e3;
}

/* One row: name, milliseconds (or n/a when n is 0), share of wall_us. */
static void row(FILE *out, const char *prefix, const char *name, double total_us, uint64_t n,
                double wall_us)
{
    if (!n) {
        fprintf(out, "%s  %-40s %10s\n", prefix, name, "n/a");
        return;
    }
    double us = total_us / (double)n;
    fprintf(out, "%s  %-40s %10.4f %6.1f%%\n", prefix, name, us / 1e3,
            wall_us > 0 ? 100.0 * us / wall_us : 0.0);
}

static void print_cpu(const timings *t, const timings_step *a, FILE *out, const char *prefix, double wall_us)
{
    for (uint32_t w = 0; w < t->n_cpu; w++) {
        char name[64];
        snprintf(name, sizeof name, "cpu:%u cold ffn", w);
        row(out, prefix, name, a->cpu[w].cold_us, a->cpu[w].n, wall_us);
        snprintf(name, sizeof name, "cpu:%u wait for gpu", w);
        row(out, prefix, name, a->cpu[w].wait_us, a->cpu[w].n, wall_us);
        if (a->cpu[w].n != a->n)
            fprintf(out, "%s  (cpu:%u: stats of %llu of the %llu steps; the rest were stale)\n", prefix,
                    w, (unsigned long long)a->cpu[w].n, (unsigned long long)a->n);
    }
    if (t->n_cpu && a->solo)
        fprintf(out, "%s  (%llu of the %llu steps were solo: the GPU worker computed every neuron, the CPU "
                     "workers' rows count 0 for them)\n", prefix, (unsigned long long)a->solo,
                (unsigned long long)a->n);
    if (t->n_cpu)
        fprintf(out, "%s  (the CPU workers' cold ffn and wait run beside gpu hot ffn + wait for cpu: "
                     "not in the sum)\n", prefix);
}

static const char *const k_gpu_rows[TM_GPU_N] = {
    "gpu embed", "gpu attn", "gpu predict", "gpu publish", "gpu hot ffn",
    "gpu wait for cpu", "gpu finish", "gpu logits", "gpu worker host control"};

/* The rows of a (n > 0 steps) and their sum against the wall; parts: its sum_gpu. */
static void print_rows(const timings *t, const timings_step *a, double parts, FILE *out, const char *prefix)
{
    double wall_us = a->wall / (double)a->n;
    fprintf(out, "%s  %-40s %10s %7s\n", prefix, "phase", "ms", "of wall");
    for (int i = 0; i < TM_GPU_N; i++)
        row(out, prefix, k_gpu_rows[i], a->gpu[i], a->n_gpu, wall_us);
    row(out, prefix, "pid control (round trip - gpu step)", a->zmq, a->n_gpu, wall_us);
    row(out, prefix, "pid scheduling (loop, build, send, read)", a->sched, a->n, wall_us);
    row(out, prefix, "sampling (sample, detokenize, stream)", a->sampling, a->n, wall_us);
    fprintf(out, "%s  (%llu of the %llu steps ended on the step bell, the rest by StepDone over ZeroMQ)\n", prefix,
            (unsigned long long)a->bell, (unsigned long long)a->n);
    if (a->n_gpu) {
        double wg = a->wall_gpu / (double)a->n_gpu, sum = parts / (double)a->n_gpu;
        if (a->n_gpu != a->n)
            fprintf(out, "%s  (gpu rows and the sum: the %llu of %llu steps whose StepDone carried "
                         "timings)\n", prefix, (unsigned long long)a->n_gpu, (unsigned long long)a->n);
        fprintf(out, "%s  %-40s %10.4f\n", prefix, "sum", sum / 1e3);
        fprintf(out, "%s  %-40s %10.4f\n", prefix, "wall", wg / 1e3);
        fprintf(out, "%s  %-40s %9.1f%%\n", prefix, "sum / wall", wg > 0 ? 100.0 * sum / wg : 0.0);
    } else {
        row(out, prefix, "round trip (gpu worker + zeromq, not split)", a->round_trip, a->n, wall_us);
        fprintf(out, "%s  %-40s %10s (the GPU worker sent no phases; pid scheduling + sampling: %.4f)\n", prefix,
                "sum", "n/a", (a->sched + a->sampling) / (double)a->n / 1e3);
        fprintf(out, "%s  %-40s %10.4f\n", prefix, "wall", wall_us / 1e3);
        fprintf(out, "%s  %-40s %10s\n", prefix, "sum / wall", "n/a");
    }
    print_cpu(t, a, out, prefix, wall_us);
}

void timings_print(const timings *t, FILE *out, const char *prefix)
{
    const timings_step *a = &t->sum, *p = &t->pre;
    if (!a->n) {
        fprintf(out, "%stimings: no decode step ran (%llu prefill steps)\n", prefix, (unsigned long long)p->n);
    } else {
        fprintf(out, "%stimings per decode step, ms (%llu steps, %.2f tokens each; prefill excluded: %llu "
                     "steps, %llu tokens, %.3f ms)\n", prefix, (unsigned long long)a->n,
                (double)a->entries / (double)a->n, (unsigned long long)p->n, (unsigned long long)p->entries,
                p->wall / 1e3);
        print_rows(t, a, t->sum_gpu, out, prefix);
    }
    /* The prompt's steps apart: their phases say where the time to the first token goes. */
    if (p->n) {
        char solo[48] = "";
        if (p->solo)
            snprintf(solo, sizeof solo, "; %llu of them solo", (unsigned long long)p->solo);
        fprintf(out, "%stimings per prefill step, ms (%llu steps, %.2f entries each, %.3f ms in all%s)\n", prefix,
                (unsigned long long)p->n, (double)p->entries / (double)p->n, p->wall / 1e3, solo);
        print_rows(t, p, t->pre_gpu, out, prefix);
    }
}
