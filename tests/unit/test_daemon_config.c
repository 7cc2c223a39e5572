/* pid.conf parsing: values land in their settings, flags override the file, and bad keys or values name file:line; solo_batch (0..65536, default "by backend", ENGINE_SOLO_BATCH_AUTO) and solo_min (>= 1, default 64) as key and flag. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "config.h"
#include "engine.h"

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f, "open %s", path);
    fputs(text, f);
    fclose(f);
}

int main(void)
{
    char path[1024];
    test_tmp("test_daemon_config.conf", path, sizeof path);
    pi_error err = {{0}};
    pid_config c;

    write_file(path, "# a comment\n\nmodel = /m/x.gguf  # trailing\nlisten=ipc:///tmp/p.sock\n"
                     "cpu_workers = 3\nvram_budget = 1.5\ngpu_backend = host\nmax_seqs = 4\n"
                     "max_batch = 16\nn_ctx = 256\ntemp = 0\ntop_k = 7\nn_predict = 12\nseed = 42\n"
                     "timings = true\npredictor_type = q8_0\n");
    pid_config_default(&c);
    CHECK(pid_config_load(&c, path, 1, &err) == 0, "%s", err.msg);
    CHECK(!strcmp(c.model, "/m/x.gguf"), "model '%s'", c.model);
    CHECK(!strcmp(c.listen, "ipc:///tmp/p.sock"), "listen");
    CHECK(c.cpu_workers == 3 && c.vram_budget_gib == 1.5 && !strcmp(c.gpu_backend, "host"), "workers");
    CHECK(c.max_seqs == 4 && c.max_batch == 16 && c.n_ctx == 256, "sizes");
    CHECK(c.timings == 1, "timings key");
    CHECK(c.pred_q8 == 1, "predictor_type key");
    CHECK(c.sampling.temperature == 0 && c.sampling.top_k == 7 && c.sampling.n_predict == 12, "sampling");
    CHECK(c.sampling.has_seed && c.sampling.seed == 42, "seed");

    char *argv[] = {"start", "--config", path, "--cpu-workers", "2", "-m", "/other.gguf",
                    "--temp", "0.5", "--foreground", "--max-seqs=9"};
    CHECK(pid_config_parse_args(&c, 11, argv, &err) == 0, "%s", err.msg);
    CHECK(c.cpu_workers == 2 && !strcmp(c.model, "/other.gguf") && c.foreground && c.max_seqs == 9,
          "flags override");
    CHECK(c.sampling.temperature == 0.5f, "sampling flag");
    CHECK(!strcmp(pid_config_find_path(11, argv), path), "find --config");

    /* solo steps: defaults, the keys, the flags, their ranges */
    pid_config_default(&c);
    CHECK(c.solo_batch == ENGINE_SOLO_BATCH_AUTO && c.solo_min == 64, "solo defaults %u / %u", c.solo_batch, c.solo_min);
    write_file(path, "solo_batch = 0\nsolo_min = 1\n");
    CHECK(pid_config_load(&c, path, 1, &err) == 0 && c.solo_batch == 0 && c.solo_min == 1, "solo keys: %s", err.msg);
    char *solo[] = {"start", "--solo-batch", "65536", "--solo-min=200"};
    CHECK(pid_config_parse_args(&c, 4, solo, &err) == 0 && c.solo_batch == 65536 && c.solo_min == 200,
          "solo flags: %s", err.msg);
    const char *bad_solo[] = {"solo_batch = 65537\n", "solo_batch = -1\n", "solo_min = 0\n", "solo_min = x\n"};
    for (int i = 0; i < 4; i++) {
        write_file(path, bad_solo[i]);
        CHECK(pid_config_load(&c, path, 1, &err) < 0 && strstr(err.msg, bad_solo[i][5] == 'b' ? "solo_batch" : "solo_min"),
              "'%s' accepted: %s", bad_solo[i], err.msg);
    }

    write_file(path, "model = a\nbogus_key = 1\n");
    pid_config_default(&c);
    CHECK(pid_config_load(&c, path, 1, &err) < 0, "unknown key accepted");
    char want[1100];
    snprintf(want, sizeof want, "%s:2", path);
    CHECK(strstr(err.msg, want) && strstr(err.msg, "bogus_key"), "message: %s", err.msg);

    write_file(path, "max_seqs = lots\n");
    CHECK(pid_config_load(&c, path, 1, &err) < 0 && strstr(err.msg, ":1") && strstr(err.msg, "max_seqs"),
          "bad value: %s", err.msg);
    write_file(path, "just words\n");
    CHECK(pid_config_load(&c, path, 1, &err) < 0 && strstr(err.msg, "key = value"), "%s", err.msg);
    write_file(path, "predictor_type = q2\n");
    CHECK(pid_config_load(&c, path, 1, &err) < 0 && strstr(err.msg, "q8_0") && strstr(err.msg, "'q2'"), "%s", err.msg);
    write_file(path, "gpu_backend = opencl\n");
    CHECK(pid_config_load(&c, path, 1, &err) < 0 && strstr(err.msg, "cuda"), "%s", err.msg);
    CHECK(pid_config_load(&c, "/nonexistent/pid.conf", 1, &err) < 0, "missing required file");
    CHECK(pid_config_load(&c, "/nonexistent/pid.conf", 0, &err) == 0, "missing optional file");

    char *bad[] = {"start", "--wat"};
    CHECK(pid_config_parse_args(&c, 2, bad, &err) < 0 && strstr(err.msg, "--wat"), "%s", err.msg);
    remove(path);
    printf("config: ok\n");
    return 0;
}
