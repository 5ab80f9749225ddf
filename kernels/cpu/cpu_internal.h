/* cpu_internal.h — shared pieces of the "cpu" backend (threaded, vectorised). */
#ifndef MR_CPU_INTERNAL_H
#define MR_CPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/threadpool.h"
#include "kernels/backend.h"

/* Per-thread scratch, sized at creation from the backend params. */
typedef struct cpu_scratch {
    float *q, *k, *v; /* [block][d] silu'd block of one head */
    float *attn;      /* [block][block] decayed scores, or [max_ctx chunk] for softmax */
    float *vec;       /* [max(d, inter, hidden)] */
} cpu_scratch;

typedef struct cpu_impl {
    mr_pool *pool;
    int n_threads;
    mr_backend_params p;
    cpu_scratch *scratch; /* [n_threads] */
    /* MoE: token grouping and per-(token, slot) expert outputs */
    int32_t *moe_count, *moe_offset; /* [max_experts + 1] */
    int32_t *moe_rows;               /* [max_tokens * top_k] token*k+j, grouped by expert */
    float *moe_x;                    /* [max_tokens * top_k][hidden] gathered inputs */
    float *moe_g, *moe_u;            /* [max_tokens * top_k][inter] */
    float *moe_y;                    /* [max_tokens * top_k][hidden] expert outputs per slot */
    float *route_logits;             /* [max_tokens][max_experts] */
} cpu_impl;

/* y[n][w->rows] = x[n][w->cols] · Wᵀ over the pool (gemm.c). */
void cpu_linear(cpu_impl *c, const mr_matrix *w, const float *x, int n, float *y);
/* Dot product of n floats with the fixed summation order used by every cpu kernel. */
float cpu_dot_f32(const float *a, const float *b, int n);

void cpu_lightning(cpu_impl *c, const mr_lightning_args *a);
void cpu_attention(cpu_impl *c, const mr_attention_args *a);
void cpu_moe(cpu_impl *c, const mr_expert_set *set, const float *x, int n, int k,
             const int32_t *ids, const float *wts, float *out);

static inline float cpu_silu(float x) {
    return x / (1.0f + __builtin_expf(-x));
}

#endif
