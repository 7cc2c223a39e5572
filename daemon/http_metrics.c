/* Counters and fixed-bucket histograms of the HTTP API (http_metrics.h). */
#include "http_metrics.h"

#include <pthread.h>
#include <stdlib.h>

/* Status codes pid's HTTP API answers with; any other counts as "other". */
static const int status_codes[] = {200, 400, 404, 405, 413, 500, 503};
#define N_STATUS (sizeof status_codes / sizeof status_codes[0] + 1)

static const double ttft_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
static const double gap_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};
#define N_TTFT (sizeof ttft_bounds / sizeof ttft_bounds[0])
#define N_GAP (sizeof gap_bounds / sizeof gap_bounds[0])

typedef struct histogram {
    uint64_t counts[16]; /* per bucket (not cumulative); the last is +Inf */
    uint64_t n;
    double sum;
} histogram;

struct http_metrics {
    pthread_mutex_t mu;
    uint64_t requests[HTTP_EP_N][N_STATUS];
    uint64_t tokens, disconnects;
    histogram ttft, gap;
};

const char *http_endpoint_path(http_endpoint ep)
{
    static const char *const paths[HTTP_EP_N] = {"/health", "/v1/models", "/v1/completions",
                                                 "/v1/chat/completions", "/metrics", "other"};
    return ep < HTTP_EP_N ? paths[ep] : "other";
}

http_metrics *http_metrics_new(void)
{
    http_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        free(m);
        return NULL;
    }
    return m;
}

void http_metrics_free(http_metrics **mp)
{
    if (!*mp)
        return;
    pthread_mutex_destroy(&(*mp)->mu);
    free(*mp);
    *mp = NULL;
}

void http_metrics_request(http_metrics *m, http_endpoint ep, int status)
{
    size_t k = N_STATUS - 1;
    for (size_t i = 0; i + 1 < N_STATUS; i++)
        if (status_codes[i] == status)
            k = i;
    pthread_mutex_lock(&m->mu);
    m->requests[ep < HTTP_EP_N ? ep : HTTP_EP_OTHER][k]++;
    pthread_mutex_unlock(&m->mu);
}

void http_metrics_tokens(http_metrics *m, uint64_t n)
{
    pthread_mutex_lock(&m->mu);
    m->tokens += n;
    pthread_mutex_unlock(&m->mu);
}

void http_metrics_disconnect(http_metrics *m)
{
    pthread_mutex_lock(&m->mu);
    m->disconnects++;
    pthread_mutex_unlock(&m->mu);
}

static void observe(http_metrics *m, histogram *h, const double *bounds, size_t nb, double v)
{
    size_t b = 0;
    while (b < nb && v > bounds[b])
        b++;
    pthread_mutex_lock(&m->mu);
    h->counts[b]++;
    h->n++;
    h->sum += v;
    pthread_mutex_unlock(&m->mu);
}

void http_metrics_ttft(http_metrics *m, double s) { observe(m, &m->ttft, ttft_bounds, N_TTFT, s); }
void http_metrics_token_gap(http_metrics *m, double s) { observe(m, &m->gap, gap_bounds, N_GAP, s); }

static void render_hist(FILE *f, const char *name, const char *help, const histogram *h,
                        const double *bounds, size_t nb)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (size_t b = 0; b < nb; b++) {
        cum += h->counts[b];
        fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[b], (unsigned long long)cum);
    }
    fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
            (unsigned long long)h->n, name, h->sum, name, (unsigned long long)h->n);
}

void http_metrics_render(http_metrics *m, FILE *f)
{
    pthread_mutex_lock(&m->mu);
    http_metrics c = *m; /* a consistent copy; its mutex is not used */
    pthread_mutex_unlock(&m->mu);
    fprintf(f, "# HELP pi_http_requests_total HTTP requests answered, by endpoint and status.\n"
               "# TYPE pi_http_requests_total counter\n");
    for (int ep = 0; ep < HTTP_EP_N; ep++)
        for (size_t k = 0; k < N_STATUS; k++) {
            if (!c.requests[ep][k])
                continue;
            char code[16];
            if (k + 1 < N_STATUS)
                snprintf(code, sizeof code, "%d", status_codes[k]);
            else
                snprintf(code, sizeof code, "other");
            fprintf(f, "pi_http_requests_total{endpoint=\"%s\",status=\"%s\"} %llu\n",
                    http_endpoint_path((http_endpoint)ep), code, (unsigned long long)c.requests[ep][k]);
        }
    fprintf(f, "# HELP pi_generated_tokens_total Tokens generated for HTTP requests.\n"
               "# TYPE pi_generated_tokens_total counter\npi_generated_tokens_total %llu\n",
            (unsigned long long)c.tokens);
    fprintf(f, "# HELP pi_http_client_disconnects_total Streams whose client went away (request cancelled).\n"
               "# TYPE pi_http_client_disconnects_total counter\npi_http_client_disconnects_total %llu\n",
            (unsigned long long)c.disconnects);
    render_hist(f, "pi_time_to_first_token_seconds", "Request received to its first token.", &c.ttft,
                ttft_bounds, N_TTFT);
    render_hist(f, "pi_time_per_output_token_seconds", "Time between consecutive tokens of a request.",
                &c.gap, gap_bounds, N_GAP);
}
