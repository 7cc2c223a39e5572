/* http_metrics: the counters and latency histograms of pid's HTTP API,
 * shared by its connection threads (one mutex), rendered in Prometheus text
 * format. The figures pid's engine knows (workers, memory) are added by the
 * server from a Status reply. */
#ifndef PI_DAEMON_HTTP_METRICS_H
#define PI_DAEMON_HTTP_METRICS_H

#include <stdint.h>
#include <stdio.h>

typedef enum http_endpoint {
    HTTP_EP_HEALTH, HTTP_EP_MODELS, HTTP_EP_COMPLETIONS, HTTP_EP_CHAT, HTTP_EP_METRICS,
    HTTP_EP_OTHER, HTTP_EP_N
} http_endpoint;

typedef struct http_metrics http_metrics;

/* Caller owns the result: http_metrics_free. NULL when out of memory. */
http_metrics *http_metrics_new(void);
void http_metrics_free(http_metrics **m);

void http_metrics_request(http_metrics *m, http_endpoint ep, int status);
void http_metrics_tokens(http_metrics *m, uint64_t n);
void http_metrics_disconnect(http_metrics *m);          /* a client went away mid-stream */
void http_metrics_ttft(http_metrics *m, double seconds); /* request received -> first token */
void http_metrics_token_gap(http_metrics *m, double seconds); /* between two tokens */

/* Writes every counter and histogram to f. */
void http_metrics_render(http_metrics *m, FILE *f);

const char *http_endpoint_path(http_endpoint ep);

#endif
