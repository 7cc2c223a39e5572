/* `pictl status` and `pictl workers`: ask pid for its StatusReply and print
 * it as a summary plus a workers table, or the table alone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "rpc.h"

#define STATUS_TIMEOUT_MS 10000

/* Copies the reply out of the response the call frees. */
static int on_status(const Pi__Response *r, void *user, pi_error *err)
{
    Pi__StatusReply **out = user;
    if (r->kind_case != PI__RESPONSE__KIND_STATUS)
        return pi_error_set(err, "pid answered status with an unexpected message (case %d)",
                            (int)r->kind_case);
    size_t n = pi__status_reply__get_packed_size(r->status);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return pi_error_set(err, "out of memory copying pid's status reply");
    pi__status_reply__pack(r->status, buf);
    *out = pi__status_reply__unpack(NULL, n, buf);
    free(buf);
    if (!*out)
        return pi_error_set(err, "cannot copy pid's status reply");
    return 0;
}

static void human_bytes(char *buf, size_t cap, uint64_t b)
{
    if (b >= (1ull << 30))
        snprintf(buf, cap, "%.1fG", (double)b / (1ull << 30));
    else if (b >= (1ull << 20))
        snprintf(buf, cap, "%.1fM", (double)b / (1ull << 20));
    else if (b >= (1ull << 10))
        snprintf(buf, cap, "%.1fK", (double)b / (1ull << 10));
    else
        snprintf(buf, cap, "%lluB", (unsigned long long)b);
}

static void print_workers(const Pi__StatusReply *s)
{
    printf("%-8s %8s %-10s %8s %8s %8s %-7s %4s  %s\n", "NAME", "PID", "STATE", "RESTARTS",
           "RSS", "DEVICE", "BACKEND", "NUMA", "DETAIL");
    for (size_t i = 0; i < s->n_workers; i++) {
        const Pi__WorkerInfo *w = s->workers[i];
        char rss[32], dev[32];
        human_bytes(rss, sizeof rss, w->rss_bytes);
        human_bytes(dev, sizeof dev, w->device_bytes);
        printf("%-8s %8u %-10s %8u %8s %8s %-7s %4d  %s\n", w->name, w->pid, w->state,
               w->restarts, rss, dev, w->backend, w->numa_node, w->detail);
    }
}

/* The last decode step in two lines: where its wall time went (the GPU
 * worker's phases when pid runs with --timings), then the CPU workers. */
static void print_last_step(const Pi__StepReport *r)
{
    printf("last step:   #%llu, %u token%s, %.3f ms = ", (unsigned long long)r->step_no, r->entries,
           r->entries == 1 ? "" : "s", r->wall_us / 1e3);
    const Pi__StepTimings *g = r->gpu;
    if (g)
        printf("gpu %.3f (embed %.3f attn %.3f predict %.3f publish %.3f hot %.3f wait-cpu %.3f finish "
               "%.3f logits %.3f control %.3f) + zmq %.3f", g->gpu_step_us / 1e3, g->embed_us / 1e3,
               g->attn_us / 1e3, g->predict_us / 1e3, g->publish_us / 1e3, g->hot_us / 1e3,
               g->wait_cpu_us / 1e3, g->finish_us / 1e3, g->logits_us / 1e3, g->control_us / 1e3,
               (r->round_trip_us - g->gpu_step_us) / 1e3);
    else
        printf("round trip %.3f", r->round_trip_us / 1e3);
    printf(" + pid %.3f + sampling %.3f ms%s\n", r->pid_us / 1e3, r->sampling_us / 1e3,
           g ? "" : r->gpu_asked ? " (the GPU worker sent no phases)" : " (GPU phases: pid start --timings)");
    if (!r->n_cpu)
        return;
    printf("cpu ffn:    ");
    for (size_t i = 0; i < r->n_cpu; i++)
        printf(" %s cold %.3f wait %.3f%s", r->cpu[i]->name, r->cpu[i]->cold_us / 1e3,
               r->cpu[i]->wait_gpu_us / 1e3, i + 1 < r->n_cpu ? "," : "");
    printf(" ms (beside the GPU's hot ffn + wait)\n");
}

/* The plan line's KV cache clause ("KV cache 3.12 GiB (4096 positions x 1
 * sequence)": sparse/plan.c) on a line of its own, and whether pid lowered
 * it to fit the budget; nothing for a pid whose line has none. */
static void print_kv(const char *placement)
{
    static const char key[] = "KV cache ";
    const char *k = placement ? strstr(placement, key) : NULL;
    const char *end = k ? strchr(k, ')') : NULL;
    if (!end)
        return;
    k += sizeof key - 1;
    printf("kv cache:    %.*s%s\n", (int)(end + 1 - k), k,
           strstr(placement, "KV cache lowered") ? ", lowered to fit the VRAM budget" : "");
}

static void print_status(const Pi__StatusReply *s)
{
    uint64_t up = s->uptime_ms / 1000;
    char vram[32];
    human_bytes(vram, sizeof vram, s->vram_budget_bytes);
    printf("pid %u at %s, up %lluh%02llum%02llus\n", s->pid, s->endpoint,
           (unsigned long long)(up / 3600), (unsigned long long)(up / 60 % 60),
           (unsigned long long)(up % 60));
    printf("model:       %s\n", s->model);
    printf("placement:   %s\n", s->placement);
    print_kv(s->placement);
    /* the GPU worker's device_bytes counts every allocation it made */
    const Pi__WorkerInfo *gpu = NULL;
    for (size_t i = 0; i < s->n_workers; i++)
        if (s->workers[i]->name && !strcmp(s->workers[i]->name, "gpu"))
            gpu = s->workers[i];
    char held[32];
    human_bytes(held, sizeof held, gpu ? gpu->device_bytes : 0);
    if (s->vram_budget_bytes && gpu && gpu->device_bytes)
        printf("vram budget: %s (GPU worker holds %s of it, %.1f%%)\n", vram, held,
               100.0 * (double)gpu->device_bytes / (double)s->vram_budget_bytes);
    else
        printf("vram budget: %s\n", s->vram_budget_bytes ? vram : "none (host backend)");
    printf("ffn:         %s\n", s->ffn && *s->ffn ? s->ffn : "?");
    uint64_t fired = s->pred_true_pos + s->pred_false_neg, said = s->pred_true_pos + s->pred_false_pos;
    if (fired + said > 0)
        printf("predictor:   recall %.4f, precision %.4f over %llu firing neurons (measured)\n",
               fired ? (double)s->pred_true_pos / (double)fired : 1.0,
               said ? (double)s->pred_true_pos / (double)said : 1.0, (unsigned long long)fired);
    printf("requests:    %u active, %u queued\n", s->active, s->queue_length);
    if (s->last_step)
        print_last_step(s->last_step);
    printf("workers:\n");
    print_workers(s);
}

/* Shared by both commands: flags are only --endpoint. */
static int run(int argc, char **argv, const char *name, int table_only)
{
    const char *endpoint = NULL;
    pi_error err = {{0}};
    for (int i = 1; i < argc; i++) {
        int r = rpc_parse_endpoint_flag(argc, argv, &i, &endpoint, &err);
        if (r < 0) {
            fprintf(stderr, "pictl %s: %s\n", name, err.msg);
            return 2;
        }
        if (r == 0) {
            if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
                printf("usage: pictl %s [--endpoint E] [--token T]\n  %s\n"
                       "  --endpoint E   pid's endpoint (default: $PI_ENDPOINT, else the local socket)\n"
                       "  --token T      pid's client token (default: $PI_TOKEN)\n",
                       name, table_only ? "Prints the workers table: name, pid, state, restarts, memory."
                                        : "Prints pid's status: model, placement, queue, last step, workers.");
                return 0;
            }
            fprintf(stderr, "pictl %s: unknown argument '%s' (see pictl %s --help)\n", name, argv[i], name);
            return 2;
        }
    }
    rpc_client *c = rpc_connect_default(endpoint, &err);
    if (!c) {
        fprintf(stderr, "pictl %s: %s\n", name, err.msg);
        return 1;
    }
    Pi__StatusRequest sr = PI__STATUS_REQUEST__INIT;
    Pi__Request req = PI__REQUEST__INIT;
    req.kind_case = PI__REQUEST__KIND_STATUS;
    req.status = &sr;
    Pi__StatusReply *s = NULL;
    int rc = rpc_call(c, &req, on_status, &s, STATUS_TIMEOUT_MS, NULL, &err);
    rpc_close(&c);
    if (rc < 0) {
        fprintf(stderr, "pictl %s: %s\n", name, err.msg);
        if (s)
            pi__status_reply__free_unpacked(s, NULL);
        return 1;
    }
    if (table_only)
        print_workers(s);
    else
        print_status(s);
    pi__status_reply__free_unpacked(s, NULL);
    return fflush(stdout) == 0 ? 0 : 1;
}

int cmd_status(int argc, char **argv)
{
    return run(argc, argv, "status", 0);
}

int cmd_workers(int argc, char **argv)
{
    return run(argc, argv, "workers", 1);
}
