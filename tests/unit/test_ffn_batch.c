/* Proves the batched cold FFN (ffn_sparse_run_batch, ffn_dense_run_batch) gives every entry exactly the bits ffn_sparse_run / ffn_dense_run give it alone on the same pool, for every type, variant, activation and thread count, B = 1..8 entries whose lists overlap, are disjoint, identical or empty, in one pass or several, in blocks of the union of every size; that the row-group accumulate both paths run equals one neuron at a time; and that bad lists are refused with out untouched. */
/* Under ThreadSanitizer, as test_ffn_sparse:
 *   cmake -S . -B build-tsan -DPI_CUDA=OFF -DPI_SANITIZE=thread -DCMAKE_BUILD_TYPE=RelWithDebInfo
 *   cmake --build build-tsan -j2 --target test_ffn_batch && build-tsan/bin/test_ffn_batch */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ffn_batch.h"
#include "ffn_pool.h"
#include "ffn_sparse.h"

#define MAX_B 8

static const char *const variants[] = {"plain", "avx2", "avx512"};
static const pi_act acts[] = {PI_ACT_SILU, PI_ACT_RELU, PI_ACT_RELU_BOTH, PI_ACT_RELU_SINGLE};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

static float rndf(void)   /* uniform in [-1, 1) */
{
    return (float)rnd() / 2147483648.0f - 1.0f;
}

/* A shard in cpu_shard's layout (one record gate | up | down^T per neuron,
 * odd padding so strides are not a multiple of a row) and gate biases. */
typedef struct shard {
    ffn_sparse_layer l;
    char *mem;
    float *bias;
} shard;

static void shard_make(shard *s, pi_type type, uint32_t dim, uint32_t n)
{
    size_t rb;
    CHECK(pi_row_bytes(type, dim, &rb) == 0, "dim %u for %s", dim, pi_type_name(type));
    size_t rec = 3 * rb + 4;
    s->mem = calloc(n ? n : 1, rec);
    s->bias = malloc((n ? n : 1) * sizeof *s->bias);
    float *row = malloc(dim * sizeof *row);
    CHECK(s->mem && s->bias && row, "out of memory");
    for (uint32_t j = 0; j < n; j++) {
        s->bias[j] = 0.3f * rndf();
        for (int part = 0; part < 3; part++) {
            for (uint32_t i = 0; i < dim; i++)
                row[i] = rndf() * (part == 2 ? 0.5f : 1.0f);
            pi_quantize_row(type, row, s->mem + (size_t)j * rec + (size_t)part * rb, dim);
        }
    }
    free(row);
    s->l = (ffn_sparse_layer){
        .dim = dim, .n_neurons = n,
        .gate_type = type, .up_type = type, .down_t_type = type,
        .gate = s->mem, .up = s->mem + rb, .down_t = s->mem + 2 * rb,
        .gate_stride = rec, .up_stride = rec, .down_t_stride = rec,
    };
}

static void shard_free(shard *s)
{
    free(s->mem);
    free(s->bias);
}

/* The kinds of batches a step brings. */
enum { OVERLAP, DISJOINT, SOME_EMPTY, IDENTICAL, INDEPENDENT, ALL_EMPTY, N_KINDS };
static const char *const kind_names[] = {"overlapping", "disjoint", "some empty", "identical",
                                         "independent", "all empty"};

/* B ascending lists of kind over n neurons into lists (B x n), counts. */
static void make_lists(int kind, uint32_t B, uint32_t n, uint32_t *lists, size_t *counts)
{
    uint32_t owner_seed = rnd();
    for (uint32_t e = 0; e < B; e++) {
        uint32_t *a = lists + (size_t)e * n;
        size_t k = 0;
        for (uint32_t j = 0; j < n; j++) {
            int take;
            switch (kind) {
            case OVERLAP: take = (j * 2654435761u + owner_seed) % 10 < 5 || rnd() % 10 < 2; break;   /* a shared half + 20% own */
            case DISJOINT: take = (j + owner_seed) % B == e && rnd() % 4 != 0; break;
            case SOME_EMPTY: take = e % 2 == 1 && rnd() % 10 < 3; break;
            case IDENTICAL: take = 1; break;
            case INDEPENDENT: take = e == 0 ? j == n / 2 : rnd() % 10 < 3; break;   /* entry 0: one neuron */
            default: take = 0; break;
            }
            if (take)
                a[k++] = j;
        }
        counts[e] = k;
    }
}

static int cases;

/* One batch against its entries run alone, on pool p (sparse and dense). */
static void check_batch(ffn_pool *p, const shard *s, pi_act act, int kind, uint32_t B, const float *xs,
                        const char *what)
{
    uint32_t dim = s->l.dim, n = s->l.n_neurons;
    uint32_t *lists = malloc((size_t)B * (n ? n : 1) * sizeof *lists), *all = malloc((n ? n : 1) * sizeof *all);
    float *got = malloc((size_t)B * dim * sizeof *got), *want = malloc((size_t)B * dim * sizeof *want);
    CHECK(lists && all && got && want, "out of memory");
    size_t counts[MAX_B], all_counts[MAX_B];
    const float *x[MAX_B];
    const uint32_t *active[MAX_B], *alls[MAX_B];
    float *out[MAX_B];
    make_lists(kind, B, n, lists, counts);
    for (uint32_t j = 0; j < n; j++)
        all[j] = j;
    for (uint32_t e = 0; e < B; e++) {
        x[e] = xs + (size_t)e * dim;
        active[e] = lists + (size_t)e * n;
        alls[e] = all;
        all_counts[e] = n;
        out[e] = got + (size_t)e * dim;
    }
    pi_error err;
    for (int dense = 0; dense < 2; dense++) {
        ffn_batch b = {.n = B, .x = x, .active = dense ? alls : active, .n_active = dense ? all_counts : counts,
                       .out = out};
        for (size_t i = 0; i < (size_t)B * dim; i++)
            got[i] = 1e30f;   /* every out must be overwritten */
        int rc = dense ? ffn_dense_run_batch(p, &s->l, act, &b, &err) : ffn_sparse_run_batch(p, &s->l, act, &b, &err);
        CHECK(rc == 0, "%s: %s", what, err.msg);
        for (uint32_t e = 0; e < B; e++) {
            float *w = want + (size_t)e * dim;
            rc = dense ? ffn_dense_run(p, &s->l, act, x[e], all, w, &err)
                       : ffn_sparse_run(p, &s->l, act, x[e], active[e], counts[e], w, &err);
            CHECK(rc == 0, "%s: %s", what, err.msg);
            CHECK(memcmp(out[e], w, dim * sizeof *w) == 0,
                  "%s %s act %s, %s lists, B %u, entry %u (%zu active): batched bits differ from the entry alone",
                  what, dense ? "dense" : "sparse", pi_act_name(act), kind_names[kind], B, e, counts[e]);
        }
        cases++;
    }
    free(lists);
    free(all);
    free(got);
    free(want);
}

/* Every activation, kind and B = 1..8 on one shard and variant, at 1..3
 * threads, passes of 3 and of 8 entries (so B > 3 takes several at 2
 * threads), and blocks of the union of the default size, of one neuron and
 * of about three. */
static void check_shard(pi_type type, uint32_t dim, uint32_t n, const ffn_kernels *k)
{
    shard s;
    shard_make(&s, type, dim, n);
    float *xs = malloc((size_t)MAX_B * dim * sizeof *xs);
    CHECK(xs, "out of memory");
    for (size_t i = 0; i < (size_t)MAX_B * dim; i++)
        xs[i] = rndf();
    pi_error err;
    for (uint32_t t = 1; t <= 3; t++) {
        uint32_t pass = t == 2 ? 3 : MAX_B;
        ffn_pool *p = ffn_pool_new_batch(t, dim, pass, k, &err);
        CHECK(p, "%s", err.msg);
        size_t rec = (size_t)s.l.gate_stride;
        size_t block = t == 1 ? FFN_BATCH_BLOCK_BYTES : t == 2 ? 1 : 3 * rec;
        ffn_pool_set_batch_block(p, block);
        for (size_t a = 0; a < sizeof acts / sizeof acts[0]; a++) {
            s.l.gate_bias = a % 2 ? s.bias : NULL;   /* OPT's fc1 bias on half the cases */
            for (int kind = 0; kind < N_KINDS; kind++)
                for (uint32_t B = 1; B <= MAX_B; B++) {
                    if (dim >= 1000 && (B + (uint32_t)kind + t) % 4 != 0)
                        continue;   /* large dims: a quarter of the grid, every kind and thread count met */
                    char what[160];
                    snprintf(what, sizeof what, "%s %s dim %u, %u threads, pass %u, block %zu neurons", k->name,
                             pi_type_name(type), dim, t, pass, ffn_batch_block_neurons(&s.l, acts[a], block));
                    check_batch(p, &s, acts[a], kind, B, xs, what);
                }
        }
        ffn_pool_free(&p);
    }
    free(xs);
    shard_free(&s);
}

/* ffn_sparse_accum_rows (what the pool runs, FFN_ROWS_MAX neurons at a
 * time) against ffn_sparse_accum / ffn_dense_accum one neuron at a time:
 * lists of 0..13 neurons in any order, so every group size and a partial
 * last group are met. */
static void check_rows(pi_type type, uint32_t dim, const ffn_kernels *k)
{
    shard s;
    shard_make(&s, type, dim, 16);
    float *x = malloc(dim * sizeof *x), *a = malloc(dim * sizeof *a), *b = malloc(dim * sizeof *b);
    CHECK(x && a && b, "out of memory");
    for (uint32_t i = 0; i < dim; i++)
        x[i] = rndf();
    uint32_t idx[13];
    for (size_t ai = 0; ai < sizeof acts / sizeof acts[0]; ai++) {
        s.l.gate_bias = ai % 2 ? s.bias : NULL;
        for (size_t na = 0; na <= 13; na++) {
            for (size_t i = 0; i < na; i++)
                idx[i] = rnd() % 16;   /* any order, repeats allowed: the one-entry path takes them */
            for (int dense = 0; dense < 2; dense++) {
                for (uint32_t i = 0; i < dim; i++)
                    a[i] = b[i] = rndf();   /* they add to what is there */
                if (dense)
                    ffn_dense_accum(k, &s.l, acts[ai], x, idx, na, a);
                else
                    ffn_sparse_accum(k, &s.l, acts[ai], x, idx, na, a);
                ffn_sparse_accum_rows(k, &s.l, acts[ai], dense, x, idx, na, b);
                CHECK(memcmp(a, b, dim * sizeof *a) == 0, "%s %s dim %u act %s %s, %zu neurons: "
                      "ffn_sparse_accum_rows differs from one neuron at a time", k->name, pi_type_name(type),
                      dim, pi_act_name(acts[ai]), dense ? "dense" : "sparse", na);
            }
        }
    }
    free(x);
    free(a);
    free(b);
    shard_free(&s);
}

/* Bad batches are refused before any thread starts: no out is touched. */
static void check_errors(const ffn_kernels *k)
{
    shard s;
    shard_make(&s, PI_TYPE_F16, 64, 8);
    pi_error err;
    ffn_pool *p = ffn_pool_new_batch(2, 64, 4, k, &err);
    CHECK(p, "%s", err.msg);
    float x[2][64] = {{0}}, o[2][64];
    o[0][0] = o[1][0] = 42.0f;
    const float *xp[2] = {x[0], x[1]};
    float *op[2] = {o[0], o[1]};
    static const uint32_t ok[] = {1, 5}, high[] = {2, 8}, down[] = {5, 1}, twice[] = {3, 3};
    const uint32_t *lists[2] = {ok, high};
    size_t counts[2] = {2, 2};
    ffn_batch b = {.n = 2, .x = xp, .active = lists, .n_active = counts, .out = op};
    CHECK(ffn_sparse_run_batch(p, &s.l, PI_ACT_RELU, &b, &err) == -1, "index 8 of 8 neurons");
    CHECK(strstr(err.msg, "entry 1") && strstr(err.msg, "active[1] = 8") && o[0][0] == 42.0f && o[1][0] == 42.0f,
          "names the entry and index, outs untouched: %s", err.msg);
    CHECK(ffn_dense_run_batch(p, &s.l, PI_ACT_RELU, &b, &err) == -1, "dense: index 8 of 8 neurons");
    lists[1] = down;
    CHECK(ffn_sparse_run_batch(p, &s.l, PI_ACT_RELU, &b, &err) == -1 && strstr(err.msg, "ascending"),
          "a descending list: %s", err.msg);
    lists[1] = twice;
    CHECK(ffn_sparse_run_batch(p, &s.l, PI_ACT_RELU, &b, &err) == -1 && strstr(err.msg, "ascending"),
          "a repeated neuron: %s", err.msg);
    CHECK(o[0][0] == 42.0f && o[1][0] == 42.0f, "outs untouched");
    lists[1] = ok;
    CHECK(ffn_sparse_run_batch(p, &s.l, PI_ACT_RELU, &b, &err) == 0, "%s", err.msg);
    b.n = 0;
    CHECK(ffn_sparse_run_batch(p, &s.l, PI_ACT_RELU, &b, &err) == 0, "no entries: nothing to do");
    ffn_pool_free(&p);
    p = ffn_pool_new_batch(2, 32, 4, k, &err);
    CHECK(p, "%s", err.msg);
    b.n = 2;
    CHECK(ffn_sparse_run_batch(p, &s.l, PI_ACT_RELU, &b, &err) == -1 && strstr(err.msg, "max_dim"),
          "dim over max_dim: %s", err.msg);
    ffn_pool_free(&p);
    CHECK(ffn_pool_new_batch(2, 64, 0, k, &err) == NULL && strstr(err.msg, "max_pass"), "max_pass 0 refused");
    CHECK(ffn_list_ascending(ok, 2) && !ffn_list_ascending(down, 2) && !ffn_list_ascending(twice, 2) &&
          ffn_list_ascending(NULL, 0), "ffn_list_ascending");
    shard_free(&s);
}

int main(void)
{
    const ffn_kernels *ks[3];
    size_t nk = 0;
    for (size_t v = 0; v < 3; v++) {
        pi_error err;
        const ffn_kernels *k = ffn_kernels_by_name(variants[v], &err);
        if (!k) {
            printf("note: variant %s not tested here: %s\n", variants[v], err.msg);
            continue;
        }
        ks[nk++] = k;
    }
    CHECK(nk >= 1 && strcmp(ks[0]->name, "plain") == 0, "plain always runs");
    check_errors(ks[nk - 1]);

    /* Float dims that hit every tail (1, 7, 100, 1000) or none (64), and
     * several passes of the main loops; quantized dims of one block to many. */
    static const uint32_t float_dims[] = {1, 7, 64, 100, 1000};
    static const uint32_t quant_dims[] = {32, 160, 1024};
    static const pi_type float_types[] = {PI_TYPE_F32, PI_TYPE_F16, PI_TYPE_BF16};
    static const pi_type quant_types[] = {PI_TYPE_Q8_0, PI_TYPE_Q4_0};
    for (size_t v = 0; v < nk; v++) {
        for (size_t ti = 0; ti < 3; ti++)
            for (size_t d = 0; d < sizeof float_dims / sizeof float_dims[0]; d++) {
                check_rows(float_types[ti], float_dims[d], ks[v]);
                check_shard(float_types[ti], float_dims[d], float_dims[d] >= 1000 ? 24 : 40, ks[v]);
            }
        for (size_t ti = 0; ti < 2; ti++)
            for (size_t d = 0; d < sizeof quant_dims / sizeof quant_dims[0]; d++) {
                check_rows(quant_types[ti], quant_dims[d], ks[v]);
                check_shard(quant_types[ti], quant_dims[d], quant_dims[d] >= 1000 ? 24 : 40, ks[v]);
            }
        /* A K-quant: the variants' plain fallback. */
        check_rows(PI_TYPE_Q4_K, 256, ks[v]);
        check_shard(PI_TYPE_Q4_K, 256, 24, ks[v]);
        check_shard(PI_TYPE_F16, 64, 0, ks[v]);   /* an empty shard */
        printf("%s: bit for bit\n", ks[v]->name);
    }
    /* The batched plain path on one thread is the definition itself. */
    shard s;
    shard_make(&s, PI_TYPE_F16, 100, 40);
    float x[2][100], got[2][100], ref[100];
    for (int i = 0; i < 100; i++)
        x[0][i] = rndf(), x[1][i] = rndf();
    uint32_t lists[2 * 40];
    size_t counts[2];
    make_lists(OVERLAP, 2, 40, lists, counts);
    const float *xp[2] = {x[0], x[1]};
    const uint32_t *ap[2] = {lists, lists + 40};
    float *op[2] = {got[0], got[1]};
    ffn_batch b = {.n = 2, .x = xp, .active = ap, .n_active = counts, .out = op};
    pi_error err;
    ffn_pool *p = ffn_pool_new_batch(1, 100, 2, ffn_kernels_plain(), &err);
    CHECK(p && ffn_sparse_run_batch(p, &s.l, PI_ACT_RELU, &b, &err) == 0, "%s", err.msg);
    for (int e = 0; e < 2; e++) {
        ffn_sparse_ref(&s.l, PI_ACT_RELU, x[e], ap[e], counts[e], ref);
        CHECK(memcmp(got[e], ref, sizeof ref) == 0, "plain batch entry %d is not ffn_sparse_ref's bits", e);
    }
    ffn_pool_free(&p);
    shard_free(&s);
    printf("ok: %d batches over %zu variants, each entry bit for bit the entry alone\n", cases, nk);
    return 0;
}
