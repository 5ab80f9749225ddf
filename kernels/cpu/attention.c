/* attention.c — softmax attention on CPU over the paged KV cache.
 *
 * Phase 1 (serial, cheap): partial NeoX RoPE on q and k, k and v appended to the cache.
 * Phase 2 (one task per (segment, head)): for each query, scores over the cached positions in
 * chunks of up to `chunk` positions with a running max and sum (flash-style), so no buffer grows
 * with the context length. */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

#define VEC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

static VEC_CLONES void attn_axpy(float *restrict y, float a, const float *restrict x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}
static VEC_CLONES void attn_scale(float *restrict y, float a, int n) {
    for (int i = 0; i < n; i++) y[i] *= a;
}

static void rope(float *x, int rotary_dim, const float *inv_freq, int64_t pos) {
    int half = rotary_dim / 2;
    for (int c = 0; c < half; c++) {
        float ang = (float)pos * inv_freq[c];
        float cs = (float)cos((double)ang), sn = (float)sin((double)ang);
        float x0 = x[c], x1 = x[c + half];
        x[c] = x0 * cs - x1 * sn;
        x[c + half] = x1 * cs + x0 * sn;
    }
}

static inline float *cache_row(float *cache, const int32_t *table, int bt, int kvh, int d,
                               int64_t p) {
    return cache + (((size_t)table[p / bt] * bt + (size_t)(p % bt)) * kvh) * d;
}

typedef struct attn_job {
    cpu_impl *c;
    const mr_attention_args *a;
    int chunk;
} attn_job;

static void attn_task(void *ctx, int task, int thread) {
    const attn_job *job = ctx;
    const mr_attention_args *a = job->a;
    cpu_scratch *sc = &job->c->scratch[thread];
    const int H = a->n_heads, KV = a->n_kv_heads, d = a->head_dim, bt = a->block_tokens;
    const int sg = task / H, h = task % H, kvh = h / (H / KV);
    const mr_segment *seg = &a->segs[sg];
    const int32_t *tab = a->block_tables[sg];
    const float scl = 1.0f / sqrtf((float)d);
    float *scores = sc->attn;
    for (int i = 0; i < seg->len; i++) {
        const size_t t = (size_t)seg->start + i;
        const int64_t pos = seg->pos0 + i;
        const float *q = a->q + (t * H + h) * d;
        float *o = a->out + (t * H + h) * d;
        float mx = -INFINITY, sum = 0.0f;
        memset(o, 0, (size_t)d * sizeof *o);
        for (int64_t p0 = 0; p0 <= pos; p0 += job->chunk) {
            int n = (int)(pos + 1 - p0 < job->chunk ? pos + 1 - p0 : job->chunk);
            float cmax = -INFINITY;
            for (int j = 0; j < n; j++) {
                const float *k = cache_row(a->k_cache, tab, bt, KV, d, p0 + j) + (size_t)kvh * d;
                scores[j] = cpu_dot_f32(q, k, d) * scl;
                if (scores[j] > cmax) cmax = scores[j];
            }
            if (cmax > mx) {
                float f = expf(mx - cmax); /* 0 on the first chunk */
                attn_scale(o, f, d);
                sum *= f;
                mx = cmax;
            }
            for (int j = 0; j < n; j++) {
                const float *v = cache_row(a->v_cache, tab, bt, KV, d, p0 + j) + (size_t)kvh * d;
                float w = expf(scores[j] - mx);
                sum += w;
                attn_axpy(o, w, v, d);
            }
        }
        attn_scale(o, 1.0f / sum, d);
    }
}

void cpu_attention(cpu_impl *c, const mr_attention_args *a) {
    const int H = a->n_heads, KV = a->n_kv_heads, d = a->head_dim;
    for (int sg = 0; sg < a->n_segments; sg++) {
        const mr_segment *seg = &a->segs[sg];
        for (int i = 0; i < seg->len; i++) {
            size_t t = (size_t)seg->start + i;
            int64_t pos = seg->pos0 + i;
            for (int h = 0; h < H; h++)
                rope(a->q + (t * H + h) * d, a->rotary_dim, a->inv_freq, pos);
            for (int h = 0; h < KV; h++)
                rope(a->k + (t * KV + h) * d, a->rotary_dim, a->inv_freq, pos);
            memcpy(cache_row(a->k_cache, a->block_tables[sg], a->block_tokens, KV, d, pos),
                   a->k + t * KV * d, (size_t)KV * d * sizeof(float));
            memcpy(cache_row(a->v_cache, a->block_tables[sg], a->block_tokens, KV, d, pos),
                   a->v + t * KV * d, (size_t)KV * d * sizeof(float));
        }
    }
    attn_job job = {c, a, c->p.block_size * c->p.block_size};
    mr_pool_run(c->pool, attn_task, &job, a->n_segments * H);
}
