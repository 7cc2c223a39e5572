/* Minimal test helpers: CHECK fails the test with file:line and a message;
 * test_skip exits 77, which ctest reports as skipped. */
#ifndef PI_CHECK_H
#define PI_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, \
                    #cond);                                                  \
            fprintf(stderr, __VA_ARGS__);                                    \
            fprintf(stderr, "\n");                                           \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

/* Index of the largest of n values (the lowest index on ties): greedy. */
static inline uint32_t test_argmax(const float *x, uint32_t n)
{
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* Path of a file under ../shared, or exit 77 with a clear message if the
 * shared data folder is absent (a user's machine). */
static inline const char *test_shared(const char *rel, char *buf, size_t cap)
{
    const char *dir = getenv("PI_SHARED");
    if (!dir)
        dir = "../shared";
    snprintf(buf, cap, "%s/%s", dir, rel);
    FILE *f = fopen(buf, "rb");
    if (!f) {
        fprintf(stderr, "SKIP: %s not found (the shared test data is absent)\n", buf);
        exit(77);
    }
    fclose(f);
    return buf;
}

/* A scratch path under the build's test folder. */
static inline const char *test_tmp(const char *name, char *buf, size_t cap)
{
    const char *dir = getenv("PI_TMP");
    snprintf(buf, cap, "%s/%s", dir ? dir : "/tmp", name);
    return buf;
}

#endif
