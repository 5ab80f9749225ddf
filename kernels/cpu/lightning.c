/* lightning.c — lightning attention on CPU, one task per (segment, head).
 *
 * Prefill blocks (m > 1 tokens) use the chunked form of spec §3.3.4 with λ^(i+1) for the carried
 * state; a single new token (decode) uses the recurrence fused into one pass over the state:
 * S[c] ← λ S[c] + k_c v, o += q_c S[c], which reads and writes each state row once. */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

#define VEC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

/* y += a·x */
static VEC_CLONES void lt_axpy(float *restrict y, float a, const float *restrict x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

/* One decode step of one head: S ← λS + kᵀv; o = q S. */
static VEC_CLONES void decode_head(float *restrict S, const float *restrict q,
                                   const float *restrict k, const float *restrict v, float lambda,
                                   int d, float *restrict o) {
    memset(o, 0, (size_t)d * sizeof *o);
    for (int c = 0; c < d; c++) {
        float *restrict row = S + (size_t)c * d;
        const float kc = k[c], qc = q[c];
        for (int e = 0; e < d; e++) {
            float s = lambda * row[e] + kc * v[e];
            row[e] = s;
            o[e] += qc * s;
        }
    }
}

typedef struct lightning_job {
    cpu_impl *c;
    const mr_lightning_args *a;
} lightning_job;

static void load_silu(const float *src, int d, float *dst) {
    for (int i = 0; i < d; i++) dst[i] = cpu_silu(src[i]);
}

static void prefill_block(cpu_scratch *sc, const mr_lightning_args *a, const float *qkv, float *out,
                          int head, int m, float s, float *S) {
    const int H = a->n_heads, d = a->head_dim;
    const size_t row = (size_t)H * 3 * d, orow = (size_t)H * d;
    float *Q = sc->q, *K = sc->k, *V = sc->v, *dec = sc->vec; /* dec[i] = λ^i, i <= m */
    for (int i = 0; i <= m; i++) dec[i] = expf(-s * (float)i);
    for (int i = 0; i < m; i++) {
        const float *src = qkv + (size_t)i * row + (size_t)head * 3 * d;
        load_silu(src, d, Q + (size_t)i * d);
        load_silu(src + d, d, K + (size_t)i * d);
        load_silu(src + 2 * d, d, V + (size_t)i * d);
    }
    for (int i = 0; i < m; i++) {
        float *o = out + (size_t)i * orow + (size_t)head * d;
        const float *qi = Q + (size_t)i * d;
        memset(o, 0, (size_t)d * sizeof *o);
        for (int c = 0; c < d; c++)
            lt_axpy(o, dec[i + 1] * qi[c], S + (size_t)c * d, d); /* inter */
        for (int j = 0; j <= i; j++) {                            /* intra */
            float w = cpu_dot_f32(qi, K + (size_t)j * d, d) * dec[i - j];
            lt_axpy(o, w, V + (size_t)j * d, d);
        }
    }
    const float dm = dec[m];
    for (size_t i = 0; i < (size_t)d * d; i++) S[i] *= dm;
    for (int j = 0; j < m; j++) {
        const float dk = dec[m - 1 - j];
        const float *kj = K + (size_t)j * d, *vj = V + (size_t)j * d;
        for (int c = 0; c < d; c++) lt_axpy(S + (size_t)c * d, dk * kj[c], vj, d);
    }
}

static void lightning_task(void *ctx, int task, int thread) {
    const lightning_job *job = ctx;
    const mr_lightning_args *a = job->a;
    cpu_scratch *sc = &job->c->scratch[thread];
    const int H = a->n_heads, d = a->head_dim;
    const int sg = task / H, head = task % H;
    const mr_segment *seg = &a->segs[sg];
    const size_t row = (size_t)H * 3 * d, orow = (size_t)H * d;
    float *S = a->state[sg] + (size_t)head * d * d;
    const float s = a->slope[head];
    /* A lone token, whether a decode step or the 1-token tail block of a prefill, always takes
     * the recurrence path: the same token gives the same bits however its prompt was chunked. */
    if (seg->len == 1) {
        const float *src = a->qkv + (size_t)seg->start * row + (size_t)head * 3 * d;
        load_silu(src, d, sc->q);
        load_silu(src + d, d, sc->k);
        load_silu(src + 2 * d, d, sc->v);
        decode_head(S, sc->q, sc->k, sc->v, expf(-s), d,
                    a->out + (size_t)seg->start * orow + (size_t)head * d);
        return;
    }
    for (int b0 = 0; b0 < seg->len; b0 += a->block_size) {
        int m = seg->len - b0 < a->block_size ? seg->len - b0 : a->block_size;
        if (m == 1) {
            const float *src = a->qkv + (size_t)(seg->start + b0) * row + (size_t)head * 3 * d;
            load_silu(src, d, sc->q);
            load_silu(src + d, d, sc->k);
            load_silu(src + 2 * d, d, sc->v);
            decode_head(S, sc->q, sc->k, sc->v, expf(-s), d,
                        a->out + (size_t)(seg->start + b0) * orow + (size_t)head * d);
            continue;
        }
        prefill_block(sc, a, a->qkv + (size_t)(seg->start + b0) * row,
                      a->out + (size_t)(seg->start + b0) * orow, head, m, s, S);
    }
}

void cpu_lightning(cpu_impl *c, const mr_lightning_args *a) {
    lightning_job job = {c, a};
    mr_pool_run(c->pool, lightning_task, &job, a->n_segments * a->n_heads);
}
