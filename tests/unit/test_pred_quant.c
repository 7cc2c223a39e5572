/* --predictor-type q8_0 (sparse/pred_quant.h): predictor_requant turns a model's F16 fc1 and fc2 into Q8_0 in
 * memory the model owns; every weight stays within half a Q8_0 step of the F16 one (and the fp16 rounding of
 * the step: 127 / 2048 of it); the plan counts the Q8_0 bytes, the same before the conversion (pid plans with
 * plan_params.pred_q8 and never converts) as after it; predictor_active then lists exactly the neurons whose logit, computed here in float64 over the
 * dequantized Q8_0 weights, is above the threshold (but for logits within 1e-4 of it); a width that is not a
 * multiple of 32 is refused with a message naming the layer and the tensor; a second conversion is refused;
 * predictor_requant_layout gives the conversion's shapes and plan bytes, converts nothing, and refuses a source of
 * fewer bytes than Q8_0's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "model.h"
#include "plan_bytes.h"
#include "pred_quant.h"
#include "predictor.h"
#include "quant.h"

enum { DIM = 96, FF = 160, R = 64, LAYERS = 2 };

static float uniform(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xffffff) / (float)0x1000000 * 2.0f - 1.0f;
}

/* An F16 rows x cols tensor of random values scaled by scale, in buf. */
static pi_tensor f16_tensor(uint16_t *buf, uint64_t rows, uint64_t cols, float scale, uint64_t *s)
{
    for (uint64_t i = 0; i < rows * cols; i++)
        buf[i] = pi_fp32_to_fp16(scale * uniform(s));
    return (pi_tensor){.type = PI_TYPE_F16, .cols = cols, .rows = rows, .row_bytes = cols * 2, .data = buf};
}

/* A model with only what the predictor needs: LAYERS layers of fc1 (r x DIM) and fc2 (FF x r). */
static pi_model *pred_model(uint32_t r, uint16_t *store, uint64_t *s)
{
    pi_model *m = calloc(1, sizeof *m);
    CHECK(m, "out of memory");
    m->layers = calloc(LAYERS, sizeof *m->layers);
    CHECK(m->layers, "out of memory");
    m->n_layers = LAYERS;
    m->dim = DIM;
    m->n_ff = FF;
    m->has_predictor = 1;
    for (uint32_t l = 0; l < LAYERS; l++) {
        uint16_t *a = store + (size_t)l * (r * DIM + FF * r), *b = a + (size_t)r * DIM;
        m->layers[l].pred_fc1 = f16_tensor(a, r, DIM, 1.0f / sqrtf((float)DIM), s);
        m->layers[l].pred_fc2 = f16_tensor(b, FF, r, 1.0f / sqrtf((float)r), s);
    }
    return m;
}

/* Row r of t dequantized (any type) into out (t->cols floats). */
static void row_of(const pi_tensor *t, uint64_t r, float *out)
{
    pi_dequantize_row(t->type, pi_tensor_row(t, r), out, (size_t)t->cols);
}

int main(void)
{
    uint64_t s = 777;
    static uint16_t store[LAYERS * (R * DIM + FF * R)], before[LAYERS * (R * DIM + FF * R)];
    pi_model *m = pred_model(R, store, &s);
    memcpy(before, store, sizeof store);
    pi_error err = {{0}};

    int t = 0;
    CHECK(predictor_type_parse("q8_0", &t, &err) == 0 && t == PI_TYPE_Q8_0, "q8_0 parses");
    CHECK(predictor_type_parse("file", &t, &err) == 0 && t == -1, "file parses");
    CHECK(predictor_type_parse("q4_0", &t, &err) < 0 && strstr(err.msg, "'q4_0'"), "q4_0 refused: %s", err.msg);

    /* what pid plans with, before anything is converted: the bytes the GPU worker will hold */
    CHECK(predictor_requant_check(m, PI_TYPE_Q8_0, &err) == 0, "check: %s", err.msg);
    const uint64_t planned = plan_predictor_bytes(m, 1);
    CHECK(planned < plan_predictor_bytes(m, 0), "q8_0 counts fewer bytes than f16");
    CHECK(predictor_requant(m, PI_TYPE_Q8_0, &err) == 0, "requant: %s", err.msg);
    CHECK(m->pred_owned != NULL, "the model owns the converted predictors");
    CHECK(memcmp(before, store, sizeof store) == 0, "the F16 source is left as it was");
    size_t rb1 = 0, rb2 = 0;
    CHECK(pi_row_bytes(PI_TYPE_Q8_0, DIM, &rb1) == 0 && pi_row_bytes(PI_TYPE_Q8_0, R, &rb2) == 0, "row bytes");
    CHECK(plan_predictor_bytes(m, 0) == (uint64_t)LAYERS * (R * rb1 + FF * rb2),
          "the plan counts the q8_0 bytes: %llu", (unsigned long long)plan_predictor_bytes(m, 0));
    CHECK(planned == plan_predictor_bytes(m, 0) && plan_predictor_bytes(m, 1) == planned,
          "planned as q8_0 (%llu) = held after the conversion", (unsigned long long)planned);

    /* every weight within half a step (d / 2, d = its block's absmax / 127) of the F16 one, plus what d's own
     * rounding to fp16 moves the largest quant (127 x 2^-11 d), and some moved */
    float q[DIM > R ? DIM : R], f[DIM > R ? DIM : R];
    double worst = 0;
    int moved = 0;
    for (uint32_t l = 0; l < LAYERS; l++)
        for (int k = 0; k < 2; k++) {
            const pi_tensor *qt = k ? &m->layers[l].pred_fc2 : &m->layers[l].pred_fc1;
            CHECK(qt->type == PI_TYPE_Q8_0 && qt->row_bytes == (k ? rb2 : rb1), "layer %u fc%d is q8_0", l, k + 1);
            const uint16_t *src = before + (size_t)l * (R * DIM + FF * R) + (k ? (size_t)R * DIM : 0);
            for (uint64_t r = 0; r < qt->rows; r++) {
                row_of(qt, r, q);
                for (uint64_t c = 0; c < qt->cols; c++)
                    f[c] = pi_fp16_to_fp32(src[r * qt->cols + c]);
                for (uint64_t b = 0; b < qt->cols; b += 32) {
                    float amax = 0;
                    for (int i = 0; i < 32; i++)
                        amax = fmaxf(amax, fabsf(f[b + i]));
                    for (int i = 0; i < 32; i++) {
                        double e = fabs((double)q[b + i] - f[b + i]);
                        CHECK(e <= amax / 127.0 * (0.5 + 127.0 / 2048) * 1.01 + 1e-7, "layer %u fc%d (%llu, %llu): %g vs %g", l, k + 1,
                              (unsigned long long)r, (unsigned long long)(b + i), q[b + i], f[b + i]);
                        worst = e > worst ? e : worst;
                        moved |= e > 0;
                    }
                }
            }
        }
    CHECK(moved, "q8_0 rounding moved no weight: the test would not see a conversion");

    /* predictor_active over the converted weights against float64 over the same dequantized values */
    float x[DIM], hidden[R];
    int32_t active[FF];
    uint32_t checked = 0;
    for (int trial = 0; trial < 20; trial++) {
        for (int i = 0; i < DIM; i++)
            x[i] = uniform(&s);
        for (uint32_t l = 0; l < LAYERS; l++) {
            const pi_layer *y = &m->layers[l];
            double h[R], logit[FF], amax = 0;
            for (int j = 0; j < R; j++) {
                row_of(&y->pred_fc1, (uint64_t)j, q);
                double a = 0;
                for (int i = 0; i < DIM; i++)
                    a += (double)q[i] * x[i];
                h[j] = a > 0 ? a : 0;
            }
            for (int n = 0; n < FF; n++) {
                row_of(&y->pred_fc2, (uint64_t)n, q);
                double a = 0;
                for (int j = 0; j < R; j++)
                    a += (double)q[j] * h[j];
                logit[n] = a;
                amax = fabs(a) > amax ? fabs(a) : amax;
            }
            uint32_t n_act = predictor_active(y, 0.0f, x, hidden, active), at = 0;
            for (int n = 0; n < FF; n++) {
                int listed = at < n_act && active[at] == n;
                at += (uint32_t)listed;
                if (fabs(logit[n]) <= 1e-4 * amax)
                    continue;   /* within rounding of the threshold: either is right */
                CHECK(listed == (logit[n] > 0), "layer %u neuron %d: logit %g but %s", l, n, logit[n],
                      listed ? "listed" : "not listed");
                checked++;
            }
            CHECK(at == n_act, "the list is ascending and within 0..n_ff");
        }
    }
    printf("ok: q8_0 predictors within half a step of f16 (worst %.2e); %u decisions equal to float64 over them; "
           "plan bytes %llu\n", worst, checked, (unsigned long long)plan_predictor_bytes(m, 0));

    CHECK(predictor_requant(m, PI_TYPE_Q8_0, &err) < 0 && strstr(err.msg, "already"), "a second conversion: %s",
          err.msg);

    /* the shapes alone (a GPU worker taking a kept arena): the same types, row sizes and plan bytes as the
     * conversion's, nothing converted, the bytes left where they were */
    static uint16_t store2[LAYERS * (R * DIM + FF * R)];
    uint64_t s2 = 777;
    pi_model *m2 = pred_model(R, store2, &s2);
    CHECK(predictor_requant_layout(m2, PI_TYPE_Q8_0, &err) == 0, "layout: %s", err.msg);
    CHECK(m2->pred_owned == NULL && memcmp(before, store2, sizeof store2) == 0, "layout: nothing converted");
    for (uint32_t l = 0; l < LAYERS; l++)
        for (int k = 0; k < 2; k++) {
            const pi_tensor *a = k ? &m->layers[l].pred_fc2 : &m->layers[l].pred_fc1;
            const pi_tensor *b = k ? &m2->layers[l].pred_fc2 : &m2->layers[l].pred_fc1;
            CHECK(a->type == b->type && a->row_bytes == b->row_bytes && a->rows == b->rows && a->cols == b->cols,
                  "layer %u fc%d: layout %d/%zu, converted %d/%zu", l, k + 1, (int)b->type, b->row_bytes,
                  (int)a->type, a->row_bytes);
            CHECK(b->data == (const void *)(store2 + (size_t)l * (R * DIM + FF * R) + (k ? (size_t)R * DIM : 0)),
                  "layer %u fc%d: the file's bytes, where they were", l, k + 1);
        }
    CHECK(plan_predictor_bytes(m2, 0) == plan_predictor_bytes(m, 0), "layout: the plan counts the q8_0 bytes");
    /* a type of fewer bytes than q8_0's: refused (1), nothing changed, since a reader would run past the file's */
    pi_tensor *t1 = &m2->layers[0].pred_fc1;
    pi_tensor keep = *t1;
    t1->type = PI_TYPE_Q4_0;
    CHECK(pi_row_bytes(PI_TYPE_Q4_0, DIM, &t1->row_bytes) == 0, "q4_0 row bytes");
    CHECK(predictor_requant_layout(m2, PI_TYPE_Q8_0, &err) == 1, "layout from q4_0 refused");
    CHECK(t1->type == PI_TYPE_Q4_0 && m2->layers[0].pred_fc2.type == PI_TYPE_Q8_0, "nothing changed");
    *t1 = keep;
    printf("ok: the layout alone gives the conversion's shapes and plan bytes, and leaves the bytes as they were\n");
    model_close(&m2);
    model_close(&m);

    /* a width that is not a multiple of 32: refused, naming the layer and the tensor; nothing converted */
    static uint16_t odd[LAYERS * (17 * DIM + FF * 17)];
    m = pred_model(17, odd, &s);
    CHECK(predictor_requant_check(m, PI_TYPE_Q8_0, &err) < 0, "R = 17 refused by the check pid runs");
    CHECK(predictor_requant(m, PI_TYPE_Q8_0, &err) < 0, "R = 17 refused");
    CHECK(strstr(err.msg, "layer 0") && strstr(err.msg, "fc2") && strstr(err.msg, "17 columns"), "message: %s",
          err.msg);
    CHECK(m->pred_owned == NULL && m->layers[0].pred_fc1.type == PI_TYPE_F16, "nothing converted");
    printf("ok: R = 17 refused: %s\n", err.msg);
    CHECK(predictor_requant(m, -1, &err) == 0, "'file' does nothing");
    model_close(&m);
    return 0;
}
