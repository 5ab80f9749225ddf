/* ref_backend.c — the oracle: every op in plain, single-threaded C, written to mirror the maths
 * of the spec as directly as possible. Other backends are tested against it; it is tested against
 * the PyTorch reference in tests/reference. Speed is not a goal. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/ref/ref_backend.h"

typedef struct ref_impl {
    float *tmp; /* scratch of `tmp_len` floats */
    size_t tmp_len;
} ref_impl;

static float silu(float x) {
    return x / (1.0f + expf(-x));
}
static float sigmoid(float x) {
    return 1.0f / (1.0f + expf(-x));
}

static void ref_destroy(mr_backend *be) {
    ref_impl *r = be->impl;
    if (r) free(r->tmp);
    free(r);
    free(be);
}

static void ref_embed(mr_backend *be, const mr_matrix *table, const int32_t *ids, int n,
                      float *out) {
    for (int t = 0; t < n; t++)
        for (int c = 0; c < table->cols; c++)
            out[(size_t)t * table->cols + c] = mr_matrix_at(table, ids[t], c);
}

static void ref_rmsnorm(mr_backend *be, const float *x, const float *w, int n, int dim, float eps,
                        float *y) {
    for (int t = 0; t < n; t++) {
        const float *xt = x + (size_t)t * dim;
        float *yt = y + (size_t)t * dim;
        float ss = 0.0f;
        for (int i = 0; i < dim; i++) ss += xt[i] * xt[i];
        float inv = 1.0f / sqrtf(ss / (float)dim + eps);
        for (int i = 0; i < dim; i++) yt[i] = xt[i] * inv * w[i];
    }
}

static void ref_scale_add(mr_backend *be, const float *h, const float *y, float a, float b,
                          size_t n, float *out) {
    for (size_t i = 0; i < n; i++) out[i] = a * h[i] + b * y[i];
}

static void ref_linear(mr_backend *be, const mr_matrix *w, const float *x, int n, float *y) {
    for (int t = 0; t < n; t++)
        for (int r = 0; r < w->rows; r++) {
            float acc = 0.0f;
            for (int c = 0; c < w->cols; c++)
                acc += x[(size_t)t * w->cols + c] * mr_matrix_at(w, r, c);
            y[(size_t)t * w->rows + r] = acc;
        }
}

/* One head of one block of m tokens (spec §3.3.4):
 *   O_inter[i] = λ^(i+1) q_i S_prev,  O_intra[i] = Σ_{j<=i} λ^(i-j) (q_i·k_j) v_j,
 *   S_new = λ^m S_prev + Σ_j λ^(m-1-j) k_jᵀ v_j.
 * With m = 1 this is the recurrence S ← λS + kᵀv, o = qS. */
static void lightning_block(const float *qkv, size_t row_stride, int head, int d, int m, float s,
                            float *S, float *out, size_t out_stride, float *tmp) {
    const float *base = qkv + (size_t)head * 3 * d;
    for (int i = 0; i < m; i++) {
        const float *qi = base + (size_t)i * row_stride;
        float *oi = out + (size_t)i * out_stride + (size_t)head * d;
        float dq = expf(-s * (float)(i + 1));
        for (int e = 0; e < d; e++) {
            float acc = 0.0f;
            for (int c = 0; c < d; c++) acc += silu(qi[c]) * S[(size_t)c * d + e];
            oi[e] = dq * acc;
        }
        for (int j = 0; j <= i; j++) {
            const float *kj = base + (size_t)j * row_stride + d, *vj = kj + d;
            float qk = 0.0f;
            for (int c = 0; c < d; c++) qk += silu(qi[c]) * silu(kj[c]);
            float wgt = expf(-s * (float)(i - j)) * qk;
            for (int e = 0; e < d; e++) oi[e] += wgt * silu(vj[e]);
        }
    }
    /* state update: tmp holds Σ_j λ^(m-1-j) k_jᵀ v_j */
    memset(tmp, 0, (size_t)d * d * sizeof *tmp);
    for (int j = 0; j < m; j++) {
        const float *kj = base + (size_t)j * row_stride + d, *vj = kj + d;
        float dk = expf(-s * (float)(m - 1 - j));
        for (int c = 0; c < d; c++) {
            float kc = dk * silu(kj[c]);
            for (int e = 0; e < d; e++) tmp[(size_t)c * d + e] += kc * silu(vj[e]);
        }
    }
    float db = expf(-s * (float)m);
    for (size_t i = 0; i < (size_t)d * d; i++) S[i] = db * S[i] + tmp[i];
}

static void ref_lightning(mr_backend *be, const mr_lightning_args *a) {
    ref_impl *r = be->impl;
    const int H = a->n_heads, d = a->head_dim;
    const size_t row = (size_t)H * 3 * d, orow = (size_t)H * d;
    for (int sg = 0; sg < a->n_segments; sg++) {
        const mr_segment *seg = &a->segs[sg];
        for (int b0 = 0; b0 < seg->len; b0 += a->block_size) {
            int m = seg->len - b0 < a->block_size ? seg->len - b0 : a->block_size;
            const float *qkv = a->qkv + (size_t)(seg->start + b0) * row;
            float *out = a->out + (size_t)(seg->start + b0) * orow;
            for (int h = 0; h < H; h++)
                lightning_block(qkv, row, h, d, m, a->slope[h], a->state[sg] + (size_t)h * d * d,
                                out, orow, r->tmp);
        }
    }
}

static void ref_norm_gate(mr_backend *be, const float *o, const float *gate, const float *w, int n,
                          int dim, float eps, float *out) {
    for (int t = 0; t < n; t++) {
        const float *ot = o + (size_t)t * dim, *gt = gate + (size_t)t * dim;
        float *yt = out + (size_t)t * dim;
        float ss = 0.0f;
        for (int i = 0; i < dim; i++) ss += ot[i] * ot[i];
        float inv = 1.0f / sqrtf(ss / (float)dim + eps);
        for (int i = 0; i < dim; i++) yt[i] = sigmoid(gt[i]) * (ot[i] * inv * w[i]);
    }
}

/* Partial NeoX RoPE on one head vector. */
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

static float *cache_row(float *cache, const int32_t *table, int bt, int kvh, int d, int64_t p) {
    return cache + (((size_t)table[p / bt] * bt + (size_t)(p % bt)) * kvh) * d;
}

static void ref_attention(mr_backend *be, const mr_attention_args *a) {
    const int H = a->n_heads, KV = a->n_kv_heads, d = a->head_dim, group = H / KV;
    const float scale = 1.0f / sqrtf((float)d);
    for (int sg = 0; sg < a->n_segments; sg++) {
        const mr_segment *seg = &a->segs[sg];
        const int32_t *tab = a->block_tables[sg];
        for (int i = 0; i < seg->len; i++) {
            size_t t = (size_t)seg->start + i;
            int64_t pos = seg->pos0 + i;
            for (int h = 0; h < H; h++)
                rope(a->q + (t * H + h) * d, a->rotary_dim, a->inv_freq, pos);
            for (int h = 0; h < KV; h++)
                rope(a->k + (t * KV + h) * d, a->rotary_dim, a->inv_freq, pos);
            memcpy(cache_row(a->k_cache, tab, a->block_tokens, KV, d, pos), a->k + t * KV * d,
                   (size_t)KV * d * sizeof(float));
            memcpy(cache_row(a->v_cache, tab, a->block_tokens, KV, d, pos), a->v + t * KV * d,
                   (size_t)KV * d * sizeof(float));
        }
        for (int i = 0; i < seg->len; i++) {
            size_t t = (size_t)seg->start + i;
            int64_t pos = seg->pos0 + i;
            for (int h = 0; h < H; h++) {
                const float *q = a->q + (t * H + h) * d;
                float *o = a->out + (t * H + h) * d;
                int kvh = h / group;
                float mx = -INFINITY;
                for (int64_t p = 0; p <= pos; p++) {
                    const float *k =
                        cache_row(a->k_cache, tab, a->block_tokens, KV, d, p) + (size_t)kvh * d;
                    float sc = 0.0f;
                    for (int c = 0; c < d; c++) sc += q[c] * k[c];
                    sc *= scale;
                    if (sc > mx) mx = sc;
                }
                float sum = 0.0f;
                memset(o, 0, (size_t)d * sizeof *o);
                for (int64_t p = 0; p <= pos; p++) {
                    const float *k =
                        cache_row(a->k_cache, tab, a->block_tokens, KV, d, p) + (size_t)kvh * d;
                    const float *v =
                        cache_row(a->v_cache, tab, a->block_tokens, KV, d, p) + (size_t)kvh * d;
                    float sc = 0.0f;
                    for (int c = 0; c < d; c++) sc += q[c] * k[c];
                    float e = expf(sc * scale - mx);
                    sum += e;
                    for (int c = 0; c < d; c++) o[c] += e * v[c];
                }
                for (int c = 0; c < d; c++) o[c] /= sum;
            }
        }
    }
}

static void ref_route(mr_backend *be, const mr_matrix *gate, const float *x, int n, int k,
                      int32_t *ids, float *wts) {
    ref_impl *r = be->impl;
    const int E = gate->rows;
    float *p = r->tmp;
    for (int t = 0; t < n; t++) {
        float mx = -INFINITY, sum = 0.0f;
        for (int e = 0; e < E; e++) {
            float acc = 0.0f;
            for (int c = 0; c < gate->cols; c++)
                acc += x[(size_t)t * gate->cols + c] * mr_matrix_at(gate, e, c);
            p[e] = acc;
            if (acc > mx) mx = acc;
        }
        for (int e = 0; e < E; e++) sum += (p[e] = expf(p[e] - mx));
        for (int e = 0; e < E; e++) p[e] /= sum;
        float top = 0.0f;
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int e = 0; e < E; e++) {
                int taken = 0;
                for (int jj = 0; jj < j; jj++) taken |= ids[(size_t)t * k + jj] == e;
                if (!taken && (best < 0 || p[e] > p[best])) best = e;
            }
            ids[(size_t)t * k + j] = best;
            wts[(size_t)t * k + j] = p[best];
            top += p[best];
        }
        for (int j = 0; j < k; j++) wts[(size_t)t * k + j] /= top;
    }
}

static void ref_moe(mr_backend *be, const mr_expert_set *set, const float *x, int n, int k,
                    const int32_t *ids, const float *wts, float *out) {
    ref_impl *r = be->impl;
    const int Hd = set->hidden, I = set->inter;
    float *a = r->tmp, *b = r->tmp + I;
    for (int t = 0; t < n; t++) {
        const float *xt = x + (size_t)t * Hd;
        float *ot = out + (size_t)t * Hd;
        memset(ot, 0, (size_t)Hd * sizeof *ot);
        for (int j = 0; j < k; j++) {
            int e = ids[(size_t)t * k + j];
            if (e < 0 || e >= set->n_experts || !set->experts[e].w1.data) continue;
            const mr_expert *ex = &set->experts[e];
            for (int i = 0; i < I; i++) {
                float g = 0.0f, u = 0.0f;
                for (int c = 0; c < Hd; c++) {
                    g += xt[c] * mr_matrix_at(&ex->w1, i, c);
                    u += xt[c] * mr_matrix_at(&ex->w3, i, c);
                }
                a[i] = silu(g) * u;
            }
            for (int c = 0; c < Hd; c++) {
                float acc = 0.0f;
                for (int i = 0; i < I; i++) acc += a[i] * mr_matrix_at(&ex->w2, c, i);
                b[c] = acc;
            }
            float w = wts[(size_t)t * k + j];
            for (int c = 0; c < Hd; c++) ot[c] += w * b[c];
        }
    }
}

static const mr_backend_ops ref_ops = {
    .name = "ref",
    .destroy = ref_destroy,
    .embed = ref_embed,
    .rmsnorm = ref_rmsnorm,
    .scale_add = ref_scale_add,
    .linear = ref_linear,
    .lightning = ref_lightning,
    .norm_gate = ref_norm_gate,
    .attention = ref_attention,
    .route = ref_route,
    .moe = ref_moe,
};

mr_status mr_ref_backend_create(const mr_backend_params *p, mr_backend **out) {
    mr_backend *be = calloc(1, sizeof *be);
    ref_impl *r = calloc(1, sizeof *r);
    size_t need = (size_t)p->head_dim * p->head_dim;
    if ((size_t)p->max_experts > need) need = (size_t)p->max_experts;
    if ((size_t)p->inter + (size_t)p->hidden > need) need = (size_t)p->inter + (size_t)p->hidden;
    if (!be || !r || !(r->tmp = malloc(need * sizeof(float)))) {
        free(r ? r->tmp : NULL);
        free(r);
        free(be);
        return MR_ERR_NOMEM;
    }
    r->tmp_len = need;
    be->ops = &ref_ops;
    be->impl = r;
    *out = be;
    return MR_OK;
}
