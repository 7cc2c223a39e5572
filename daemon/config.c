/* pid.conf parsing and `pid start` flags. One table maps keys to setters so
 * the file and the flags accept the same names and ranges. */
#include "config.h"
#include "engine.h"
#include "ffn_mode.h"
#include "http_text.h"
#include "pred_quant.h"
#include "req_limits.h"
#include "rpc_auth.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pid_config_default(pid_config *c)
{
    memset(c, 0, sizeof *c);
    c->cpu_workers = -1;
    c->vram_budget_gib = -1.0;
    c->warm_share = -1.0;
    snprintf(c->gpu_backend, sizeof c->gpu_backend, "auto");
    snprintf(c->ffn, sizeof c->ffn, "auto");
    c->max_seqs = 0; /* auto: up to ENGINE_MAX_SEQS_DEFAULT, as many as the budget fits */
    c->max_batch = 32;
    c->solo_batch = ENGINE_SOLO_BATCH_AUTO;
    c->solo_min = ENGINE_SOLO_MIN_DEFAULT;
    c->max_queue = REQ_LIMITS_MAX_QUEUE_DEFAULT;
    c->n_ctx = 0;
    gen_params_default(&c->sampling);
}

static int set_str(char *dst, size_t cap, const char *key, const char *v, pi_error *err)
{
    if (strlen(v) >= cap)
        return pi_error_set(err, "%s: value is too long (at most %zu bytes)", key, cap - 1);
    memcpy(dst, v, strlen(v) + 1);
    return 0;
}

static int parse_u32(const char *key, const char *v, uint32_t lo, uint32_t hi, uint32_t *out,
                     pi_error *err)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi || v[0] == '-')
        return pi_error_set(err, "%s: '%s' is not an integer in [%u, %u]", key, v, lo, hi);
    *out = (uint32_t)x;
    return 0;
}

/* Sampling keys reuse the shared flag parser: key "top_k" is flag "--top-k". */
static const char *const sampling_keys[] = {"temp", "top_k", "top_p", "min_p", "repeat_penalty",
                                            "repeat_last_n", "seed", "n_predict"};

static int set_sampling(pid_config *c, const char *key, const char *value, pi_error *err)
{
    char flag[64];
    int n = snprintf(flag, sizeof flag, "--%s", key);
    for (int i = 2; i < n; i++)
        if (flag[i] == '_')
            flag[i] = '-';
    char *argv[3] = {flag, (char *)value, NULL};
    int i = 0;
    int r = gen_params_parse_flag(&c->sampling, 2, argv, &i, err);
    if (r < 0)
        return -1;
    if (r == 0)
        return pi_error_set(err, "%s: not a sampling setting", key);
    return 0;
}

int pid_config_set(pid_config *c, const char *key, const char *v, pi_error *err)
{
    if (!strcmp(key, "model"))
        return set_str(c->model, sizeof c->model, key, v, err);
    if (!strcmp(key, "listen"))
        return set_str(c->listen, sizeof c->listen, key, v, err);
    if (!strcmp(key, "http")) {
        uint32_t addr;
        uint16_t port;
        if (v[0] && http_listen_parse(v, &addr, &port, err) < 0)
            return -1;
        return set_str(c->http, sizeof c->http, key, v, err);
    }
    if (!strcmp(key, "token") || !strcmp(key, "admin_token")) {
        /* Checked here so a bad token stops `pid start` before it detaches. */
        if (v[0] && rpc_auth_token_valid(key, v, err) < 0)
            return -1;
        return key[0] == 't' ? set_str(c->token, sizeof c->token, key, v, err)
                             : set_str(c->admin_token, sizeof c->admin_token, key, v, err);
    }
    if (!strcmp(key, "log_file"))
        return set_str(c->log_file, sizeof c->log_file, key, v, err);
    if (!strcmp(key, "pid_file"))
        return set_str(c->pid_file, sizeof c->pid_file, key, v, err);
    if (!strcmp(key, "measure_recall")) {
        if (strcmp(v, "true") && strcmp(v, "false"))
            return pi_error_set(err, "measure_recall: '%s' is not true or false", v);
        c->measure_recall = !strcmp(v, "true");
        return 0;
    }
    if (!strcmp(key, "timings")) {
        if (strcmp(v, "true") && strcmp(v, "false"))
            return pi_error_set(err, "timings: '%s' is not true or false", v);
        c->timings = !strcmp(v, "true");
        return 0;
    }
    if (!strcmp(key, "ffn")) {
        pi_ffn_mode m;
        if (strcmp(v, "auto") && pi_ffn_mode_parse(v, &m) < 0)
            return pi_error_set(err, "ffn: '%s' is not one of auto, dense, exact, predicted", v);
        return set_str(c->ffn, sizeof c->ffn, key, v, err);
    }
    if (!strcmp(key, "gpu_backend")) {
        if (strcmp(v, "auto") && strcmp(v, "cuda") && strcmp(v, "host"))
            return pi_error_set(err, "gpu_backend: '%s' is not one of auto, cuda, host", v);
        return set_str(c->gpu_backend, sizeof c->gpu_backend, key, v, err);
    }
    if (!strcmp(key, "cpu_workers")) {
        if (!strcmp(v, "auto")) {
            c->cpu_workers = -1;
            return 0;
        }
        uint32_t n = 0;
        if (parse_u32(key, v, 0, 256, &n, err) < 0)
            return pi_error_wrap(err, "(or 'auto' for one per NUMA node)");
        c->cpu_workers = (int)n;
        return 0;
    }
    if (!strcmp(key, "predictor_type")) {
        int t;
        if (predictor_type_parse(v, &t, err) < 0)
            return -1;
        c->pred_q8 = t >= 0;
        return 0;
    }
    if (!strcmp(key, "warm_share")) {
        if (!strcmp(v, "auto"))
            c->warm_share = -1.0;
        else if (pi_parse_share(v, &c->warm_share) < 0)
            return pi_error_set(err, "warm_share: '%s' is not a share from 0 to 1 (or 'auto')", v);
        return 0;
    }
    if (!strcmp(key, "vram_budget")) {
        if (!strcmp(v, "auto")) {
            c->vram_budget_gib = -1.0;
            return 0;
        }
        char *end;
        errno = 0;
        double g = strtod(v, &end);
        if (!*v || *end || errno || !(g > 0.0) || g > 1e6)
            return pi_error_set(err, "vram_budget: '%s' is not a positive number of GiB (or 'auto')", v);
        c->vram_budget_gib = g;
        return 0;
    }
    if (!strcmp(key, "max_seqs")) {
        if (!strcmp(v, "auto")) {
            c->max_seqs = 0;
            return 0;
        }
        if (parse_u32(key, v, 1, 4096, &c->max_seqs, err) < 0)
            return pi_error_wrap(err, "(or 'auto': up to 8, as many as the VRAM budget fits)");
        return 0;
    }
    if (!strcmp(key, "max_batch"))
        return parse_u32(key, v, 1, 65536, &c->max_batch, err);
    if (!strcmp(key, "solo_batch"))     /* 0: off */
        return parse_u32(key, v, 0, ENGINE_SOLO_BATCH_MAX, &c->solo_batch, err);
    if (!strcmp(key, "solo_min"))
        return parse_u32(key, v, 1, ENGINE_SOLO_MIN_MAX, &c->solo_min, err);
    if (!strcmp(key, "max_queue"))
        return parse_u32(key, v, 1, REQ_LIMITS_MAX_QUEUE_MAX, &c->max_queue, err);
    if (!strcmp(key, "n_ctx"))
        return parse_u32(key, v, 0, 1u << 24, &c->n_ctx, err);
    for (size_t i = 0; i < sizeof sampling_keys / sizeof sampling_keys[0]; i++)
        if (!strcmp(key, sampling_keys[i]))
            return set_sampling(c, key, v, err);
    return pi_error_set(err, "unknown setting '%s' (etc/pid.conf lists every setting)", key);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = 0;
    return s;
}

int pid_config_load(pid_config *c, const char *path, int required, pi_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (!required && errno == ENOENT)
            return 0;
        return pi_error_set(err, "%s: cannot open: %s", path, strerror(errno));
    }
    char line[4096];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            rc = pi_error_set(err, "%s:%d: line too long", path, lineno);
            break;
        }
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        char *s = trim(line);
        if (!*s)
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = pi_error_set(err, "%s:%d: expected 'key = value', got '%s'", path, lineno, s);
            break;
        }
        *eq = 0;
        char *key = trim(s), *val = trim(eq + 1);
        if (pid_config_set(c, key, val, err) < 0) {
            rc = pi_error_wrap(err, "%s:%d", path, lineno);
            break;
        }
    }
    if (!rc && ferror(f))
        rc = pi_error_set(err, "%s: read error", path);
    fclose(f);
    return rc;
}

const char *pid_config_find_path(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            return argv[i + 1];
        if (!strncmp(argv[i], "--config=", 9))
            return argv[i] + 9;
    }
    return NULL;
}

/* Flags that take a value, mapped to config keys. */
static const struct {
    const char *flag, *alt, *key;
} flag_keys[] = {
    {"--model", "-m", "model"},
    {"--listen", NULL, "listen"},
    {"--http", NULL, "http"},
    {"--token", NULL, "token"},
    {"--admin-token", NULL, "admin_token"},
    {"--cpu-workers", NULL, "cpu_workers"},
    {"--vram-budget", NULL, "vram_budget"},
    {"--warm-share", NULL, "warm_share"},
    {"--predictor-type", NULL, "predictor_type"},
    {"--gpu-backend", NULL, "gpu_backend"},
    {"--ffn", NULL, "ffn"},
    {"--max-seqs", NULL, "max_seqs"},
    {"--max-batch", NULL, "max_batch"},
    {"--solo-batch", NULL, "solo_batch"},
    {"--solo-min", NULL, "solo_min"},
    {"--max-queue", NULL, "max_queue"},
    {"--n-ctx", NULL, "n_ctx"},
    {"--ctx-size", "-c", "n_ctx"},   /* llama.cpp's name for the same */
    {"--log-file", NULL, "log_file"},
    {"--pid-file", NULL, "pid_file"},
    {"--config", NULL, NULL},
};

int pid_config_parse_args(pid_config *c, int argc, char **argv, pi_error *err)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help"))
            return 1;
        if (!strcmp(a, "--foreground")) {
            c->foreground = 1;
            continue;
        }
        if (!strcmp(a, "--measure-recall")) {
            c->measure_recall = 1;
            continue;
        }
        if (!strcmp(a, "--timings")) {
            c->timings = 1;
            continue;
        }
        int matched = 0;
        for (size_t k = 0; k < sizeof flag_keys / sizeof flag_keys[0] && !matched; k++) {
            size_t fl = strlen(flag_keys[k].flag);
            const char *val = NULL;
            if (!strcmp(a, flag_keys[k].flag) || (flag_keys[k].alt && !strcmp(a, flag_keys[k].alt))) {
                if (i + 1 >= argc)
                    return pi_error_set(err, "%s needs a value", a);
                val = argv[++i];
            } else if (!strncmp(a, flag_keys[k].flag, fl) && a[fl] == '=') {
                val = a + fl + 1;
            } else {
                continue;
            }
            matched = 1;
            if (flag_keys[k].key && pid_config_set(c, flag_keys[k].key, val, err) < 0)
                return pi_error_wrap(err, "%s", flag_keys[k].flag);
        }
        if (matched)
            continue;
        int r = gen_params_parse_flag(&c->sampling, argc, argv, &i, err);
        if (r < 0)
            return -1;
        if (r == 0)
            return pi_error_set(err, "unknown argument '%s'", a);
    }
    return 0;
}
