/* cpu_backend.c — the "cpu" backend: ops table, scratch, and the cheap elementwise ops.
 * The heavy ops live in gemm.c, lightning.c, attention.c and moe.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/log.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_internal.h"

void cpu_gemm_init(void);
const char *cpu_gemm_isa(void);

static cpu_impl *impl_of(mr_backend *be) {
    return be->impl;
}

static void cpu_destroy(mr_backend *be) {
    if (!be) return;
    cpu_impl *c = be->impl;
    if (c) {
        mr_pool_destroy(c->pool);
        if (c->scratch)
            for (int i = 0; i < c->n_threads; i++) {
                mr_free_aligned(c->scratch[i].q);
                mr_free_aligned(c->scratch[i].k);
                mr_free_aligned(c->scratch[i].v);
                mr_free_aligned(c->scratch[i].attn);
                mr_free_aligned(c->scratch[i].vec);
            }
        free(c->scratch);
        mr_free_aligned(c->moe_count);
        mr_free_aligned(c->moe_offset);
        mr_free_aligned(c->moe_rows);
        mr_free_aligned(c->moe_x);
        mr_free_aligned(c->moe_g);
        mr_free_aligned(c->moe_u);
        mr_free_aligned(c->moe_y);
        mr_free_aligned(c->route_logits);
        free(c);
    }
    free(be);
}

static void cpu_embed(mr_backend *be, const mr_matrix *table, const int32_t *ids, int n,
                      float *out) {
    const size_t esz = mr_dtype_size(table->dtype);
    for (int t = 0; t < n; t++)
        mr_convert_to_f32(table->dtype,
                          (const char *)table->data + (size_t)ids[t] * table->cols * esz,
                          out + (size_t)t * table->cols, (size_t)table->cols);
}

static void rms_row(const float *x, const float *w, int dim, float eps, float *y) {
    float ss = cpu_dot_f32(x, x, dim);
    float inv = 1.0f / sqrtf(ss / (float)dim + eps);
    for (int i = 0; i < dim; i++) y[i] = x[i] * inv * w[i];
}

static void cpu_rmsnorm(mr_backend *be, const float *x, const float *w, int n, int dim, float eps,
                        float *y) {
    for (int t = 0; t < n; t++) rms_row(x + (size_t)t * dim, w, dim, eps, y + (size_t)t * dim);
}

static void cpu_scale_add(mr_backend *be, const float *h, const float *y, float a, float b,
                          size_t n, float *out) {
    for (size_t i = 0; i < n; i++) out[i] = a * h[i] + b * y[i];
}

static void cpu_linear_op(mr_backend *be, const mr_matrix *w, const float *x, int n, float *y) {
    cpu_linear(impl_of(be), w, x, n, y);
}

static void cpu_lightning_op(mr_backend *be, const mr_lightning_args *a) {
    cpu_lightning(impl_of(be), a);
}

static void cpu_norm_gate(mr_backend *be, const float *o, const float *gate, const float *w, int n,
                          int dim, float eps, float *out) {
    for (int t = 0; t < n; t++) {
        const float *ot = o + (size_t)t * dim, *gt = gate + (size_t)t * dim;
        float *yt = out + (size_t)t * dim;
        float inv = 1.0f / sqrtf(cpu_dot_f32(ot, ot, dim) / (float)dim + eps);
        for (int i = 0; i < dim; i++) yt[i] = (ot[i] * inv * w[i]) / (1.0f + expf(-gt[i]));
    }
}

static void cpu_attention_op(mr_backend *be, const mr_attention_args *a) {
    cpu_attention(impl_of(be), a);
}

static void cpu_route(mr_backend *be, const mr_matrix *gate, const float *x, int n, int k,
                      int32_t *ids, float *wts) {
    cpu_impl *c = impl_of(be);
    const int E = gate->rows;
    float *logits = c->route_logits;
    cpu_linear(c, gate, x, n, logits);
    for (int t = 0; t < n; t++) {
        float *p = logits + (size_t)t * E;
        float mx = -INFINITY, sum = 0.0f, top = 0.0f;
        for (int e = 0; e < E; e++) mx = p[e] > mx ? p[e] : mx;
        for (int e = 0; e < E; e++) sum += (p[e] = expf(p[e] - mx));
        for (int e = 0; e < E; e++) p[e] /= sum;
        int32_t *it = ids + (size_t)t * k;
        float *wt = wts + (size_t)t * k;
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int e = 0; e < E; e++) {
                if (p[e] < 0.0f) continue; /* already taken */
                if (best < 0 || p[e] > p[best]) best = e;
            }
            it[j] = best;
            wt[j] = p[best];
            top += p[best];
            p[best] = -1.0f;
        }
        for (int j = 0; j < k; j++) wt[j] /= top;
    }
}

static void cpu_moe_op(mr_backend *be, const mr_expert_set *set, const float *x, int n, int k,
                       const int32_t *ids, const float *wts, float *out) {
    cpu_moe(impl_of(be), set, x, n, k, ids, wts, out);
}

static const mr_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .scale_add = cpu_scale_add,
    .linear = cpu_linear_op,
    .lightning = cpu_lightning_op,
    .norm_gate = cpu_norm_gate,
    .attention = cpu_attention_op,
    .route = cpu_route,
    .moe = cpu_moe_op,
};

mr_status mr_cpu_backend_create(const mr_backend_params *p, mr_backend **out) {
    cpu_gemm_init();
    mr_backend *be = calloc(1, sizeof *be);
    cpu_impl *c = calloc(1, sizeof *c);
    if (!be || !c) {
        free(be);
        free(c);
        return MR_ERR_NOMEM;
    }
    be->ops = &cpu_ops;
    be->impl = c;
    c->p = *p;
    mr_status st = mr_pool_create(p->n_threads, &c->pool);
    if (st != MR_OK) {
        cpu_destroy(be);
        return st;
    }
    c->n_threads = mr_pool_size(c->pool);
    const size_t B = (size_t)p->block_size, d = (size_t)p->head_dim;
    size_t vec = B + 1;
    if (d > vec) vec = d;
    c->scratch = calloc((size_t)c->n_threads, sizeof *c->scratch);
    int ok = c->scratch != NULL;
    for (int i = 0; ok && i < c->n_threads; i++) {
        cpu_scratch *s = &c->scratch[i];
        ok = (s->q = mr_alloc_aligned(B * d * 4)) && (s->k = mr_alloc_aligned(B * d * 4)) &&
             (s->v = mr_alloc_aligned(B * d * 4)) && (s->attn = mr_alloc_aligned(B * B * 4)) &&
             (s->vec = mr_alloc_aligned(vec * 4));
    }
    const size_t slots = (size_t)p->max_tokens * (size_t)p->top_k;
    ok = ok && (c->moe_count = mr_alloc_aligned((size_t)(p->max_experts + 1) * 4)) &&
         (c->moe_offset = mr_alloc_aligned((size_t)(p->max_experts + 1) * 4)) &&
         (c->moe_rows = mr_alloc_aligned(2 * slots * 4)) &&
         (c->moe_x = mr_alloc_aligned(slots * (size_t)p->hidden * 4)) &&
         (c->moe_g = mr_alloc_aligned(slots * (size_t)p->inter * 4)) &&
         (c->moe_u = mr_alloc_aligned(slots * (size_t)p->inter * 4)) &&
         (c->moe_y = mr_alloc_aligned(slots * (size_t)p->hidden * 4)) &&
         (c->route_logits = mr_alloc_aligned((size_t)p->max_tokens * p->max_experts * 4));
    if (!ok) {
        cpu_destroy(be);
        return MR_ERR_NOMEM;
    }
    MR_LOG_DEBUG(MR_LOG_KERN, "cpu backend: %d threads, %s kernels", c->n_threads, cpu_gemm_isa());
    *out = be;
    return MR_OK;
}
