/* synth_stream.h — one synthetic tensor's values as a pure function of the element index, usable
 * on the host and, from CUDA sources, on the GPU (common/synthetic.h explains the numbers). */
#ifndef MR_SYNTH_STREAM_H
#define MR_SYNTH_STREAM_H

#include <stdint.h>

#include "common/dtype.h"
#include "common/rng.h"

/* One tensor's stream as plain data: element i is mr_synth_value(st, i). A GPU kernel generates
 * a tensor in device memory from it (mr_cuda_synth_fill_bf16, kernels/cuda/quant.cu) with the
 * same bits. */
typedef struct mr_synth_stream {
    uint64_t base;  /* seed·φ ⊕ fnv1a(name); element i uses splitmix64 at base + i·φ */
    float scale;    /* value u·scale, u uniform in [-1, 1) */
    int norm;       /* value 1 + 0.1·u instead (norm weights) */
    int round_bf16; /* stored as bf16: the value rounded to bf16, as a file holds it */
} mr_synth_stream;

/* The multiply and add are rounded separately on the GPU as on the host (C11 without FMA
 * contraction), so both give the same float. */
static inline MR_HD float mr_synth_value(const mr_synth_stream *st, uint64_t i) {
    uint64_t state = st->base + i * 0x9e3779b97f4a7c15ull;
    float u = mr_rng_uniform_pm1(&state);
#ifdef __CUDA_ARCH__
    float v = st->norm ? __fadd_rn(1.0f, __fmul_rn(0.1f, u)) : __fmul_rn(u, st->scale);
#else
    float v = st->norm ? 1.0f + 0.1f * u : u * st->scale;
#endif
    return st->round_bf16 ? mr_bf16_to_f32(mr_f32_to_bf16(v)) : v;
}

#endif
