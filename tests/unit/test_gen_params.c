/* Proves the shared generation flags parse to the documented defaults and values, and reject bad ones with a message naming the flag. */
#include <string.h>

#include "check.h"
#include "gen_params.h"

/* Parses argv (argv[0] is a program name) and returns the first negative or
 * 0 result, or 1 if every argument was a generation flag. */
static int parse_all(gen_params *g, int argc, char **argv, pi_error *err)
{
    for (int i = 1; i < argc; i++) {
        int r = gen_params_parse_flag(g, argc, argv, &i, err);
        if (r <= 0)
            return r;
    }
    return 1;
}

int main(void)
{
    gen_params g;
    gen_params_default(&g);
    CHECK(g.n_predict == 128 && g.temperature == 0.8f && g.top_k == 40 && g.top_p == 0.95f &&
          g.min_p == 0.05f && g.repeat_penalty == 1.0f && g.repeat_last_n == 64 && !g.has_seed,
          "defaults");

    pi_error err = {{0}};
    char *a[] = {"x", "-n", "200", "--temp", "0", "--top-k=5", "--top-p", "0.5", "--min-p", "0",
                 "--repeat-penalty", "1.1", "--repeat-last-n", "32", "--seed", "18446744073709551615"};
    CHECK(parse_all(&g, 16, a, &err) == 1, "all flags: %s", err.msg);
    CHECK(g.n_predict == 200 && g.temperature == 0 && g.top_k == 5 && g.top_p == 0.5f && g.min_p == 0 &&
          g.repeat_penalty == 1.1f && g.repeat_last_n == 32, "values stored");
    CHECK(g.has_seed && g.seed == UINT64_MAX, "seed takes the full 64-bit range");

    /* Not ours: untouched, 0. */
    char *b[] = {"x", "-m", "model.gguf"};
    int i = 1;
    CHECK(gen_params_parse_flag(&g, 3, b, &i, &err) == 0 && i == 1, "-m is not a generation flag");
    char *b2[] = {"x", "--temperature", "1"};
    CHECK(gen_params_parse_flag(&g, 3, b2, &i, &err) == 0, "prefixes of other words do not match");

    /* Bad values: -1 and the flag named. */
    const char *bad[][2] = {{"--temp", "-1"}, {"--temp", "abc"}, {"--temp", "nan"}, {"--top-p", "0"},
                            {"--top-p", "1.5"}, {"--min-p", "2"}, {"--repeat-penalty", "0"},
                            {"-n", "-3"}, {"-n", "12x"}, {"--top-k", "-1"}, {"--seed", "-1"},
                            {"--seed", "18446744073709551616"}, {"--repeat-last-n", ""}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        char *c[] = {"x", (char *)bad[k][0], (char *)bad[k][1]};
        i = 1;
        err.msg[0] = 0;
        CHECK(gen_params_parse_flag(&g, 3, c, &i, &err) == -1, "%s %s must be rejected", bad[k][0], bad[k][1]);
        CHECK(strstr(err.msg, bad[k][0]), "message names the flag: %s", err.msg);
    }
    char *d[] = {"x", "--seed"};
    i = 1;
    CHECK(gen_params_parse_flag(&g, 2, d, &i, &err) == -1 && strstr(err.msg, "needs a value"), "missing value: %s", err.msg);
    printf("test_gen_params: ok\n");
    return 0;
}
