/* HTTP API text rules: HOST:PORT parsing, stop strings found at their earliest position and held back while they may still form, UTF-8 characters never split, and the metrics' Prometheus text (cumulative buckets, counts by endpoint and status). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "http_metrics.h"
#include "http_text.h"
#include "stop_text.h"

int main(void)
{
    pi_error err = {{0}};
    uint32_t a;
    uint16_t p;
    CHECK(http_listen_parse("127.0.0.1:8080", &a, &p, &err) == 0 && p == 8080 &&
              a == htonl(INADDR_LOOPBACK), "%s", err.msg);
    CHECK(http_listen_parse("localhost:1", &a, &p, &err) == 0 && p == 1 && a == htonl(INADDR_LOOPBACK), "localhost");
    CHECK(http_listen_parse("0.0.0.0:65535", &a, &p, &err) == 0 && a == 0, "any");
    const char *bad[] = {"127.0.0.1", ":80", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
                         "127.0.0.1:-1", "127.0.0.1:8x", "example.com:80", "1.2.3:80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(http_listen_parse(bad[i], &a, &p, &err) < 0 && err.msg[0], "accepted '%s'", bad[i]);

    const char *stops[] = {"END", "lo w"};
    const char *t = "hello world END";
    CHECK(stop_text_find(t, strlen(t), 0, stops, 2) == 3, "earliest stop");
    CHECK(stop_text_find(t, strlen(t), 4, stops, 2) == 12, "from");
    CHECK(stop_text_find(t, 5, 0, stops, 2) == -1, "stop must end within len");
    CHECK(stop_text_safe_len("say EN", 6, stops, 2) == 4, "'EN' may become END: held back");
    CHECK(stop_text_safe_len("say E", 5, stops, 2) == 4, "'E' held back");
    CHECK(stop_text_safe_len("say x", 5, stops, 2) == 5, "nothing held back");
    CHECK(stop_text_safe_len("hel", 3, stops, 2) == 2, "'l' may start 'lo w'");
    CHECK(stop_text_safe_len("abc", 3, NULL, 0) == 3, "no stops");

    const char *u = "a\xc3\xa9\xe2\x82\xac";  /* a, e-acute (2 bytes), euro (3 bytes) */
    CHECK(stop_text_utf8_complete_len(u, 6) == 6, "complete");
    CHECK(stop_text_utf8_complete_len(u, 5) == 3, "euro cut after 2 of 3 bytes");
    CHECK(stop_text_utf8_complete_len(u, 4) == 3, "euro cut after 1 byte");
    CHECK(stop_text_utf8_complete_len(u, 2) == 1, "e-acute cut");
    CHECK(stop_text_safe_len(u, 5, NULL, 0) == 3, "safe_len keeps characters whole");

    http_metrics *m = http_metrics_new();
    CHECK(m, "metrics_new");
    http_metrics_request(m, HTTP_EP_COMPLETIONS, 200);
    http_metrics_request(m, HTTP_EP_COMPLETIONS, 200);
    http_metrics_request(m, HTTP_EP_CHAT, 400);
    http_metrics_request(m, HTTP_EP_OTHER, 418);
    http_metrics_tokens(m, 7);
    http_metrics_ttft(m, 0.003);
    http_metrics_ttft(m, 0.2);
    http_metrics_token_gap(m, 100.0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f, "open_memstream");
    http_metrics_render(m, f);
    CHECK(fclose(f) == 0, "fclose");
    const char *want[] = {
        "pi_http_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 2\n",
        "pi_http_requests_total{endpoint=\"/v1/chat/completions\",status=\"400\"} 1\n",
        "pi_http_requests_total{endpoint=\"other\",status=\"other\"} 1\n",
        "pi_generated_tokens_total 7\n",
        "pi_time_to_first_token_seconds_bucket{le=\"0.005\"} 1\n",
        "pi_time_to_first_token_seconds_bucket{le=\"0.25\"} 2\n",
        "pi_time_to_first_token_seconds_bucket{le=\"+Inf\"} 2\n",
        "pi_time_to_first_token_seconds_count 2\n",
        "pi_time_per_output_token_seconds_bucket{le=\"1\"} 0\n",
        "pi_time_per_output_token_seconds_bucket{le=\"+Inf\"} 1\n",
        "# TYPE pi_time_per_output_token_seconds histogram\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(strstr(buf, want[i]), "metrics lack '%s':\n%s", want[i], buf);
    free(buf);
    http_metrics_free(&m);
    CHECK(m == NULL, "free NULLs");
    printf("PASS\n");
    return 0;
}
