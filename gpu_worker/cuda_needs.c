/* The CUDA backend's needs from a budget (see cuda_needs.h): arithmetic over
 * the model's shapes, no CUDA runtime. */
#include "cuda_needs.h"

#include <stdlib.h>

_Static_assert(CUDA_NEEDS_KV_ELEM_BYTES >= PLAN_KV_ELEM_LEAST, "plan.h's least KV element");

/* cudaMalloc'd floats: backend_cuda.cu allocates at least one. */
static uint64_t dev_floats(uint64_t n)
{
    return (n ? n : 1) * sizeof(float);
}

/* Term by term what backend_cuda.cu's create_inner and load_layer allocate
 * outside weights, KV, hot rows and predictors (keep the two in step;
 * test_cuda_backend checks the sum stays below this). */
uint64_t cuda_needs_scratch_bytes(const pi_model *m, uint32_t max_batch, uint32_t n_ctx, uint32_t n_hot)
{
    if (max_batch == 0)
        return 0;
    uint64_t nb = max_batch, dim = m->dim, kv_dim = (uint64_t)m->n_kv_heads * m->head_dim, n_ff = m->n_ff;
    uint64_t splits = ((uint64_t)n_ctx + CUDA_NEEDS_ATTN_CHUNK - 1) / CUDA_NEEDS_ATTN_CHUNK;
    uint64_t words = (n_ff + 31) / 32;
    uint64_t s = 5 * dev_floats(nb * dim)                       /* x, xb, q, tmp, hot */
                 + 2 * dev_floats(nb * kv_dim)                  /* k, v */
                 + dev_floats(CUDA_NEEDS_MAX_BATCH * m->n_heads + nb * m->n_heads * splits * (m->head_dim + 2))
                                                                /* split-K attention: counters, partials */
                 + dev_floats(nb * n_hot)                       /* hot coefficients */
                 + dev_floats((uint64_t)CUDA_NEEDS_DOWN_PART_ROWS * dim) /* split-K partials */
                 + dev_floats(nb * m->n_vocab)                  /* logits */
                 + nb * CUDA_NEEDS_ENTRY_BYTES + nb * sizeof(uint32_t) /* entries, logit rows */
                 + nb * n_ff * sizeof(int32_t)                  /* active lists copied in */
                 + (uint64_t)m->n_layers * n_ff * sizeof(int32_t) /* hot-set lookup tables */
                 + CUDA_NEEDS_STEP_BYTES(m->n_layers);          /* step parameters, status, timestamps */
    uint64_t R = 0;
    for (uint32_t l = 0; m->has_predictor && l < m->n_layers; l++)
        if (m->layers[l].pred_fc1.rows > R)
            R = m->layers[l].pred_fc1.rows;
    if (R > 0)
        s += dev_floats(nb * R)                                 /* predictor hidden layer */
             + nb * words * sizeof(uint32_t)                    /* predicted bit masks */
             + nb * n_ff * sizeof(int32_t)                      /* predicted lists */
             + nb * sizeof(int32_t)                             /* their counts */
             + (uint64_t)m->n_layers * words * sizeof(uint32_t) /* hot-set bit masks */
             + (n_ff + 1) * sizeof(int32_t);                    /* the step's hot union list + count */
    return s;
}

int cuda_needs_solo_ok(const pi_model *m)
{
    if (!pi_act_uses_up(m->act) || model_beyond_llama(m))
        return 0;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const pi_layer *P = &m->layers[l];
        const pi_tensor *t[] = {&P->wq, &P->wk, &P->wv, &P->wo, &P->ffn_gate, &P->ffn_up};
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
            if (t[i]->type != PI_TYPE_F16)
                return 0;
        if (pi_layer_down_type(P) != PI_TYPE_F16)
            return 0;
    }
    return 1;
}

/* Term by term what backend_cuda.cu's solo_alloc allocates. */
uint64_t cuda_needs_solo_bytes(const pi_model *m, uint32_t solo_batch)
{
    if (solo_batch == 0 || !cuda_needs_solo_ok(m))
        return 0;
    uint64_t P = solo_batch, dim = m->dim, kv_dim = (uint64_t)m->n_kv_heads * m->head_dim;
    uint64_t C = CUDA_NEEDS_SOLO_CHUNK;
    return 3 * dev_floats(P * dim)                  /* residual, q, attention out */
           + 2 * dev_floats(P * kv_dim)             /* k, v */
           + P * dim * 2                            /* fp16 product input */
           + 2 * dev_floats(P * C) + P * C * 2      /* gate, up; fp16 coefficients */
           + CUDA_NEEDS_SOLO_STAGES * 3 * C * dim * 2 /* chunks of gate, up, down^T rows */
           + P * CUDA_NEEDS_ENTRY_BYTES             /* entries */
           + CUDA_NEEDS_SOLO_WORKSPACE;
}

uint64_t cuda_needs_solo_host_bytes(const pi_model *m, const uint32_t *hot_vram)
{
    uint64_t s = 0;
    for (uint32_t l = 0; l < m->n_layers; l++)
        s += 3 * (uint64_t)(m->n_ff - (hot_vram ? hot_vram[l] : 0)) * m->dim * 2;
    return s;
}

const plan_backend *cuda_needs(void)
{
    static const plan_backend needs = {
        .name = "CUDA",
        .kv_elem_bytes = CUDA_NEEDS_KV_ELEM_BYTES,
        .context_bytes = CUDA_NEEDS_CONTEXT_BYTES,
        .scratch_bytes = cuda_needs_scratch_bytes,
        .solo_bytes = cuda_needs_solo_bytes,
    };
    /* PI_CUDA_CONTEXT_MIB=N: another reserve for the context, to measure on
     * the GPU machine what a smaller context (PI_CUDA_STACK_BYTES, backend_
     * cuda.cu) gives the hot set; bench_compare's nvidia-smi peak says
     * whether the process still stays within the budget. pid and its GPU
     * worker read the same environment, so they plan alike. (Written before
     * any thread plans; the same value each time.) */
    static plan_backend measured;
    const char *v = getenv("PI_CUDA_CONTEXT_MIB");
    char *end = NULL;
    unsigned long long mib = v && *v ? strtoull(v, &end, 10) : 0;
    if (!v || !*v || *end || mib == 0 || mib > 65536)
        return &needs;
    measured = needs;
    measured.context_bytes = (uint64_t)mib << 20;
    return &measured;
}
