// The device's side of the per-layer handshake with the CPU workers
// (cuda_step.cu), for steps the GPU drives itself: kernels publish the layer
// tick into the mapped step segment and wait there for the CPU workers' done
// counters, so no host thread sits between layers. Counters are the words
// of shm/seqcount.h's counters, read and written with system-scope
// acquire/release; the step's tick base, abort epoch and status live in a
// small device block uploaded before each step, so a captured graph replays
// for every step.
#ifndef PI_CUDA_STEP_CUH
#define PI_CUDA_STEP_CUH

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

struct cuda_step_params {
    uint32_t tick0;         // layer l's tick is tick0 + l
    uint32_t abort_past;    // a wait gives up once the abort counter passes this
    uint32_t status;        // set to 1 by the device when a wait gave up
    uint32_t pub_arrive;    // blocks of the compaction that published the tick (0 between launches)
    uint32_t fin_arrive;    // blocks of a timed finish that are done (0 between launches)
};

// The CPU workers as the device sees them: device-readable arrays (in device
// memory) of count pointers into the mapped segment.
struct cuda_peers {
    const uint32_t *const *done;    // done counters' words
    const float *const *partial;    // partial outputs, n x dim floats each
    const uint32_t *abort_word;     // pid's abort counter
    uint32_t count;
};

// *slot = the device's global timer (ns).
cudaError_t cuda_stamp(cudaStream_t s, unsigned long long *slot);

// Makes everything the stream wrote so far visible to the CPU, then stores
// p->tick0 + layer into the counter word (release, system scope).
cudaError_t cuda_publish(cudaStream_t s, uint32_t *counter, const cuda_step_params *p, uint32_t layer);

// Waits until every peer's done counter reached p->tick0 + layer (or the
// abort counter passed p->abort_past: p->status = 1), then
// x[t] += hot[t] + partial_0[t] + ... + partial_{count-1}[t] in that order,
// t < len (a multiple of 4). stamp (optional): the time the wait ended;
// end_stamp (optional, with stamp): the time the last block finished.
cudaError_t cuda_wait_finish(cudaStream_t s, float *x, const float *hot, const cuda_peers *peers,
                             cuda_step_params *p, uint32_t layer, size_t len, unsigned long long *stamp,
                             unsigned long long *end_stamp);

#endif
