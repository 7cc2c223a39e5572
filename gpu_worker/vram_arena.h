/* The arena a GPU worker's backend puts its weights, predictors, KV cache
 * and hot rows in when pid keeps that memory across the worker's restarts
 * (backend.h, cfg.arena_bytes). Its first VRAM_ARENA_HEADER bytes hold a
 * manifest, written once everything was copied in: a restarted worker with
 * the same model and config finds its signature there and copies nothing.
 * Header-only: both the host and the CUDA backend's libraries use it. */
#ifndef PI_GPU_VRAM_ARENA_H
#define PI_GPU_VRAM_ARENA_H

#include <stdint.h>
#include <string.h>

#include "backend.h"
#include "placement.h"

#define VRAM_ARENA_HEADER 4096u
#define VRAM_ARENA_ALIGN 256u

typedef struct vram_manifest {
    char magic[8];          /* "PIVRAM1" */
    uint64_t signature;     /* vram_signature of what the arena holds */
    uint64_t used;          /* bytes laid out after the header */
    uint32_t complete;      /* 1 once every byte was copied in */
    uint32_t pad;
} vram_manifest;

/* FNV-1a, 64 bits. */
static inline uint64_t vram_fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 0x100000001b3ull;
    return h;
}

/* What the arena's layout and contents depend on: the model file, the
 * backend, the hot sets (and their VRAM / warm split) and the KV cache's
 * shape. The warm rows' memory carries the same signature. */
static inline uint64_t vram_signature(const pi_model *m, const gpu_backend_config *cfg, const char *backend)
{
    uint64_t h = 0xcbf29ce484222325ull, mh = placement_model_hash(m);
    h = vram_fnv(h, &mh, sizeof mh);
    h = vram_fnv(h, backend, strlen(backend));
    uint32_t shape[6] = {cfg->n_hot, cfg->max_seqs, cfg->n_ctx, cfg->max_batch, (uint32_t)cfg->device,
                         (uint32_t)cfg->ffn};
    h = vram_fnv(h, shape, sizeof shape);
    if (cfg->solo_batch)    /* the warm rows' region holds every row outside VRAM */
        h = vram_fnv(h, "solo", 4);
    for (uint32_t l = 0; cfg->hot && l < m->n_layers; l++) {
        h = vram_fnv(h, &cfg->hot_count[l], sizeof cfg->hot_count[l]);
        h = vram_fnv(h, cfg->hot[l], (size_t)cfg->hot_count[l] * sizeof cfg->hot[l][0]);
        if (cfg->hot_vram)  /* where VRAM ends and the warm rows begin */
            h = vram_fnv(h, &cfg->hot_vram[l], sizeof cfg->hot_vram[l]);
    }
    return h;
}

/* 1 when h is a complete manifest with signature sig and used <= cap. */
static inline int vram_manifest_ok(const vram_manifest *h, uint64_t sig, uint64_t cap)
{
    return !memcmp(h->magic, "PIVRAM1", 8) && h->signature == sig && h->complete == 1 &&
           h->used <= cap;
}

static inline void vram_manifest_fill(vram_manifest *h, uint64_t sig, uint64_t used)
{
    memset(h, 0, sizeof *h);
    memcpy(h->magic, "PIVRAM1", 8);
    h->signature = sig;
    h->used = used;
    h->complete = 1;
}

/* The offset from the arena's start of bytes more of layout, aligned, after
 * *used bytes (which grows by them); 0 when they do not fit in cap bytes. */
static inline uint64_t vram_arena_take(uint64_t *used, uint64_t cap, uint64_t bytes)
{
    uint64_t at = (*used + VRAM_ARENA_ALIGN - 1) / VRAM_ARENA_ALIGN * VRAM_ARENA_ALIGN;
    if (cap < VRAM_ARENA_HEADER || at + bytes > cap - VRAM_ARENA_HEADER)
        return 0;
    *used = at + bytes;
    return VRAM_ARENA_HEADER + at;
}

/* Bytes an arena needs: the layout (gpu bytes) plus each allocation's
 * alignment and the header. */
static inline uint64_t vram_arena_size(uint64_t layout_bytes, uint32_t n_layers)
{
    /* about 24 allocations a layer and 16 more, each rounded up to the alignment */
    return VRAM_ARENA_HEADER + layout_bytes + ((uint64_t)n_layers * 24 + 16) * VRAM_ARENA_ALIGN;
}

#endif
