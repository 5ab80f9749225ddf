/* cuda_full_backend.c — see cuda_full_backend.h.
 *
 * Each op: stage its inputs into device buffers (grown on demand), take its weights from the
 * weight cache (uploaded on first use), launch on the backend's stream, download its outputs and
 * synchronise. State the ops table keeps on the host — lightning states, the paged KV cache — is
 * mirrored per call: the states of the call's sequences are uploaded before and downloaded after;
 * the KV blocks a sequence has written so far are uploaded (and rounded to the kernels' bf16) and
 * the new rows are written back into the host's fp32 cache. That is O(context) traffic per call,
 * acceptable here: this backend checks the kernels end to end; the fast GPU coordinator keeps all
 * of it resident. */
#include "kernels/cuda/cuda_full_backend.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "common/check.h"
#include "common/log.h"
#include "kernels/cuda/coord_ops.h"
#include "kernels/cuda/cuda_attention.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/weight_cache.h"

/* Tokens up to which linear computes the hi and lo parts of split activations in one GEMM (W
 * read once; past a few dozen tokens the GEMM is compute-bound and two cost the same). */
#define LINEAR_STACK_MAX_N 64

/* Device staging buffers, by role within one op. */
enum {
    B_A,
    B_B,
    B_C,
    B_D,
    B_XB,    /* bf16 activations */
    B_I32,   /* ids, slots, positions */
    B_STATE, /* lightning state slots of the call */
    B_WS,    /* kernel workspaces */
    B_KF,    /* KV mirror: fp32 upload */
    B_VF,
    B_KC, /* KV mirror: bf16 cache the kernels use */
    B_VC,
    B_TAB, /* compact block table */
    B_COUNT
};

typedef struct dev_buf {
    void *p;
    size_t cap;
} dev_buf;

/* Owned by the thread that drives the backend (one at a time). */
typedef struct full_be {
    mr_backend *cuda; /* "cuda": moe on the GPU experts; attention on its cpu backend as fallback */
    mr_backend_params p;
    cudaStream_t st;
    cublasHandle_t blas;
    dev_buf buf[B_COUNT];
    mr_weight_cache *wc; /* device copies of the model's host weights */
    int32_t *h_i32;      /* host scratch: block tables, slots, positions */
    size_t h_i32_cap;
    unsigned cpu_ops; /* bit per OP_*: run that op on the cpu backend (MOERACK_CUDA_FULL_CPU_OPS) */
} full_be;

/* Ops that MOERACK_CUDA_FULL_CPU_OPS (a comma-separated list of these names) sends to the cpu
 * backend instead: for bisecting a GPU/CPU difference end to end, one op at a time. */
enum {
    OP_EMBED,
    OP_RMSNORM,
    OP_SCALE_ADD,
    OP_LINEAR,
    OP_NORM_GATE,
    OP_ROUTE,
    OP_LIGHTNING,
    OP_ATTENTION,
    OP_COUNT
};
static const char *const op_names[OP_COUNT] = {"embed",     "rmsnorm", "scale_add", "linear",
                                               "norm_gate", "route",   "lightning", "attention"};

/* Calls the cpu backend's op and returns from the caller when `op` is routed there. */
#define CPU_OP(op, name, ...)                                                                      \
    do {                                                                                           \
        if (((full_be *)be->impl)->cpu_ops & (1u << (op))) {                                       \
            mr_backend *c_ = ((full_be *)be->impl)->cuda;                                          \
            c_->ops->name(c_, __VA_ARGS__);                                                        \
            return;                                                                                \
        }                                                                                          \
    } while (0)

static unsigned parse_cpu_ops(const char *list) {
    unsigned mask = 0;
    for (const char *p = list; p && *p;) {
        size_t len = strcspn(p, ",");
        int known = 0;
        for (int i = 0; i < OP_COUNT; i++)
            if (strlen(op_names[i]) == len && strncmp(p, op_names[i], len) == 0) {
                mask |= 1u << i;
                known = 1;
            }
        if (!known && len)
            MR_LOG_WARN(MR_LOG_GPU, "MOERACK_CUDA_FULL_CPU_OPS: unknown op '%.*s' ignored",
                        (int)len, p);
        p += len + (p[len] == ',');
    }
    return mask;
}

static full_be *impl(mr_backend *be) {
    return be->impl;
}

/* A device buffer of at least `bytes` for role `which` (contents not kept on growth). */
static mr_status stage(full_be *f, int which, size_t bytes, void **out) {
    dev_buf *b = &f->buf[which];
    if (bytes == 0) bytes = 1;
    if (b->cap < bytes) {
        size_t cap = bytes + bytes / 4;
        MR_CUDA_CHECK(cudaStreamSynchronize(f->st)); /* a pending op may still use it */
        cudaFree(b->p);
        b->p = NULL;
        b->cap = 0;
        MR_CUDA_CHECK(cudaMalloc(&b->p, cap));
        b->cap = cap;
    }
    *out = b->p;
    return MR_OK;
}

static mr_status host_i32(full_be *f, size_t n, int32_t **out) {
    if (f->h_i32_cap < n) {
        int32_t *p = realloc(f->h_i32, (n ? n : 1) * sizeof *p);
        if (!p) return MR_ERR_NOMEM;
        f->h_i32 = p;
        f->h_i32_cap = n;
    }
    *out = f->h_i32;
    return MR_OK;
}

/* The device copy of a weight, uploaded on first use. */
static mr_status weight(full_be *f, const void *host, size_t bytes, const void **dev) {
    return mr_weight_cache_get(f->wc, host, bytes, f->st, dev);
}

static size_t matrix_bytes(const mr_matrix *m) {
    return (size_t)m->rows * (size_t)m->cols * mr_dtype_size(m->dtype);
}

static mr_status up(full_be *f, void *dev, const void *host, size_t bytes) {
    MR_CUDA_CHECK(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, f->st));
    return MR_OK;
}

static mr_status down(full_be *f, void *host, const void *dev, size_t bytes) {
    MR_CUDA_CHECK(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, f->st));
    return MR_OK;
}

static mr_status sync(full_be *f) {
    MR_CUDA_CHECK(cudaStreamSynchronize(f->st));
    return MR_OK;
}

static void fill_nan(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

static void op_failed(const char *op, mr_status st) {
    MR_LOG_ERROR(MR_LOG_GPU, "cuda-full %s: %s (outputs set to NaN)", op, mr_status_str(st));
}

/* ---- coordinator ops ------------------------------------------------------------------------ */

static mr_status do_embed(full_be *f, const mr_matrix *t, const int32_t *ids, int n, float *out) {
    const void *dt;
    void *d_ids, *d_out;
    const size_t ob = (size_t)n * (size_t)t->cols * sizeof(float);
    MR_CHECK(weight(f, t->data, matrix_bytes(t), &dt));
    MR_CHECK(stage(f, B_I32, (size_t)n * sizeof(int32_t), &d_ids));
    MR_CHECK(stage(f, B_A, ob, &d_out));
    MR_CHECK(up(f, d_ids, ids, (size_t)n * sizeof(int32_t)));
    mr_cuda_embed_args a = {n, t->rows, t->cols, t->dtype, dt, d_ids, d_out};
    MR_CHECK(mr_cuda_embed(&a, f->st));
    MR_CHECK(down(f, out, d_out, ob));
    return sync(f);
}

static void fb_embed(mr_backend *be, const mr_matrix *t, const int32_t *ids, int n, float *out) {
    if (n <= 0) return;
    CPU_OP(OP_EMBED, embed, t, ids, n, out);
    mr_status st = do_embed(impl(be), t, ids, n, out);
    if (st != MR_OK) {
        op_failed("embed", st);
        fill_nan(out, (size_t)n * (size_t)t->cols);
    }
}

static mr_status do_rmsnorm(full_be *f, const float *x, const float *w, int n, int dim, float eps,
                            float *y) {
    const void *dw;
    void *d_x;
    const size_t b = (size_t)n * (size_t)dim * sizeof(float);
    MR_CHECK(weight(f, w, (size_t)dim * sizeof(float), &dw));
    MR_CHECK(stage(f, B_A, b, &d_x));
    MR_CHECK(up(f, d_x, x, b));
    mr_cuda_rmsnorm_args a = {
        .n = n, .dim = dim, .eps = eps, .w_dtype = MR_DTYPE_F32, .w = dw, .x = d_x, .y = d_x};
    MR_CHECK(mr_cuda_rmsnorm(&a, f->st));
    MR_CHECK(down(f, y, d_x, b));
    return sync(f);
}

static void fb_rmsnorm(mr_backend *be, const float *x, const float *w, int n, int dim, float eps,
                       float *y) {
    if (n <= 0) return;
    CPU_OP(OP_RMSNORM, rmsnorm, x, w, n, dim, eps, y);
    mr_status st = do_rmsnorm(impl(be), x, w, n, dim, eps, y);
    if (st != MR_OK) {
        op_failed("rmsnorm", st);
        fill_nan(y, (size_t)n * (size_t)dim);
    }
}

static mr_status do_scale_add(full_be *f, const float *h, const float *y, float a, float b,
                              size_t n, float *out) {
    void *d_h, *d_y;
    MR_CHECK(stage(f, B_A, n * sizeof(float), &d_h));
    MR_CHECK(stage(f, B_B, n * sizeof(float), &d_y));
    MR_CHECK(up(f, d_h, h, n * sizeof(float)));
    MR_CHECK(up(f, d_y, y, n * sizeof(float)));
    MR_CHECK(mr_cuda_scale_add(d_h, d_y, a, b, n, d_h, f->st));
    MR_CHECK(down(f, out, d_h, n * sizeof(float)));
    return sync(f);
}

static void fb_scale_add(mr_backend *be, const float *h, const float *y, float a, float b, size_t n,
                         float *out) {
    if (n == 0) return;
    CPU_OP(OP_SCALE_ADD, scale_add, h, y, a, b, n, out);
    mr_status st = do_scale_add(impl(be), h, y, a, b, n, out);
    if (st != MR_OK) {
        op_failed("scale_add", st);
        fill_nan(out, n);
    }
}

static mr_status do_linear(full_be *f, const mr_matrix *w, const float *x, int n, float *y) {
    const void *dw;
    void *d_x, *d_y, *d_xb = NULL;
    const size_t xb = (size_t)n * (size_t)w->cols * sizeof(float);
    const size_t yb = (size_t)n * (size_t)w->rows * sizeof(float);
    MR_CHECK(weight(f, w->data, matrix_bytes(w), &dw));
    MR_CHECK(stage(f, B_A, xb, &d_x));
    MR_CHECK(stage(f, B_B, yb, &d_y));
    /* bf16 weights: x split into hi + lo bf16 parts (xb/2 bytes each), so the activations keep
     * fp32 accuracy like the CPU oracle's and the goldens can be held at the kernels' own tolerance
     * (one bf16 rounding of every projection input flips near-tied routers: 0.09 on tiny's len1) */
    if (w->dtype == MR_DTYPE_BF16) MR_CHECK(stage(f, B_XB, xb, &d_xb));
    MR_CHECK(up(f, d_x, x, xb));
    void *d_y2 = NULL; /* few tokens: hi and lo in one GEMM (coord_ops.h) */
    if (d_xb && n <= LINEAR_STACK_MAX_N) MR_CHECK(stage(f, B_C, 2 * yb, &d_y2));
    mr_cuda_linear_args a = mr_cuda_linear_split_args(n, w->rows, w->cols, w->dtype, dw, d_x, d_xb,
                                                      d_y, d_y2, 2 * yb / sizeof(float));
    MR_CHECK(mr_cuda_linear(f->blas, &a, f->st));
    MR_CHECK(down(f, y, d_y, yb));
    return sync(f);
}

static void fb_linear(mr_backend *be, const mr_matrix *w, const float *x, int n, float *y) {
    if (n <= 0) return;
    CPU_OP(OP_LINEAR, linear, w, x, n, y);
    mr_status st = do_linear(impl(be), w, x, n, y);
    if (st != MR_OK) {
        op_failed("linear", st);
        fill_nan(y, (size_t)n * (size_t)w->rows);
    }
}

static mr_status do_norm_gate(full_be *f, const float *o, const float *gate, const float *w, int n,
                              int dim, float eps, float *out) {
    const void *dw;
    void *d_o, *d_g;
    const size_t b = (size_t)n * (size_t)dim * sizeof(float);
    MR_CHECK(weight(f, w, (size_t)dim * sizeof(float), &dw));
    MR_CHECK(stage(f, B_A, b, &d_o));
    MR_CHECK(stage(f, B_B, b, &d_g));
    MR_CHECK(up(f, d_o, o, b));
    MR_CHECK(up(f, d_g, gate, b));
    mr_cuda_norm_gate_args a = {n, dim, eps, MR_DTYPE_F32, dw, d_o, d_g, d_o};
    MR_CHECK(mr_cuda_norm_gate(&a, f->st));
    MR_CHECK(down(f, out, d_o, b));
    return sync(f);
}

static void fb_norm_gate(mr_backend *be, const float *o, const float *gate, const float *w, int n,
                         int dim, float eps, float *out) {
    if (n <= 0) return;
    CPU_OP(OP_NORM_GATE, norm_gate, o, gate, w, n, dim, eps, out);
    mr_status st = do_norm_gate(impl(be), o, gate, w, n, dim, eps, out);
    if (st != MR_OK) {
        op_failed("norm_gate", st);
        fill_nan(out, (size_t)n * (size_t)dim);
    }
}

static mr_status do_route(full_be *f, const mr_matrix *gate, const float *x, int n, int k,
                          int32_t *ids, float *wts) {
    const void *dg;
    void *d_x, *d_ids, *d_w;
    const size_t xb = (size_t)n * (size_t)gate->cols * sizeof(float);
    const size_t kb = (size_t)n * (size_t)k * sizeof(float);
    MR_CHECK(weight(f, gate->data, matrix_bytes(gate), &dg));
    MR_CHECK(stage(f, B_A, xb, &d_x));
    MR_CHECK(stage(f, B_B, kb, &d_w));
    MR_CHECK(stage(f, B_I32, kb, &d_ids));
    MR_CHECK(up(f, d_x, x, xb));
    mr_cuda_route_args a = {n, gate->cols, gate->rows, k, gate->dtype, dg, d_x, d_ids, d_w};
    MR_CHECK(mr_cuda_route(&a, f->st));
    MR_CHECK(down(f, ids, d_ids, kb));
    MR_CHECK(down(f, wts, d_w, kb));
    return sync(f);
}

static void fb_route(mr_backend *be, const mr_matrix *gate, const float *x, int n, int k,
                     int32_t *ids, float *wts) {
    if (n <= 0) return;
    CPU_OP(OP_ROUTE, route, gate, x, n, k, ids, wts);
    mr_status st = do_route(impl(be), gate, x, n, k, ids, wts);
    if (st != MR_OK) {
        op_failed("route", st);
        for (size_t i = 0; i < (size_t)n * (size_t)k; i++) ids[i] = 0;
        fill_nan(wts, (size_t)n * (size_t)k);
    }
}

/* ---- lightning ------------------------------------------------------------------------------
 * Segment s's state goes to slot s of a staged pool; all segments of one token each → the decode
 * kernel (one row per segment), otherwise the chunked prefill. */

static int batch_rows(int n_segments, const mr_segment *segs) {
    int nt = 0;
    for (int s = 0; s < n_segments; s++)
        if (segs[s].start + segs[s].len > nt) nt = segs[s].start + segs[s].len;
    return nt;
}

static mr_status do_lightning(full_be *f, const mr_lightning_args *a) {
    const int H = a->n_heads, d = a->head_dim, S = a->n_segments;
    const int nt = batch_rows(S, a->segs);
    const size_t row = (size_t)H * 3 * (size_t)d, orow = (size_t)H * (size_t)d;
    const size_t slot = (size_t)H * (size_t)d * (size_t)d;
    const void *d_slope;
    void *d_qkv, *d_out, *d_state;
    MR_CHECK(weight(f, a->slope, (size_t)H * sizeof(float), &d_slope));
    MR_CHECK(stage(f, B_A, (size_t)nt * row * sizeof(float), &d_qkv));
    MR_CHECK(stage(f, B_B, (size_t)nt * orow * sizeof(float), &d_out));
    MR_CHECK(stage(f, B_STATE, (size_t)S * slot * sizeof(float), &d_state));
    MR_CHECK(up(f, d_qkv, a->qkv, (size_t)nt * row * sizeof(float)));
    float *pool = d_state;
    int all_one = 1, chunks = 0;
    for (int s = 0; s < S; s++) {
        MR_CHECK(up(f, pool + (size_t)s * slot, a->state[s], slot * sizeof(float)));
        all_one &= a->segs[s].len == 1;
        chunks += (a->segs[s].len + MR_CUDA_LIGHTNING_CHUNK - 1) / MR_CUDA_LIGHTNING_CHUNK;
    }
    int32_t *h;
    if (all_one) {
        /* row i of the batch → slot of the segment starting there; rows of no segment: -1 */
        void *d_slots;
        MR_CHECK(host_i32(f, (size_t)nt, &h));
        for (int i = 0; i < nt; i++) h[i] = -1;
        for (int s = 0; s < S; s++) h[a->segs[s].start] = s;
        MR_CHECK(stage(f, B_I32, (size_t)nt * sizeof(int32_t), &d_slots));
        MR_CHECK(up(f, d_slots, h, (size_t)nt * sizeof(int32_t)));
        mr_cuda_lightning_decode_args da = {.n_heads = H,
                                            .head_dim = d,
                                            .slope = d_slope,
                                            .n = nt,
                                            .qkv_dtype = MR_DTYPE_F32,
                                            .qkv = d_qkv,
                                            .out = d_out,
                                            .slots = d_slots,
                                            .state_pool = pool,
                                            .slot_stride = slot};
        MR_CHECK(mr_cuda_lightning_decode(&da, f->st));
    } else {
        void *d_ws;
        const int group = chunks < 64 ? chunks : 64;
        const size_t wsb = mr_cuda_lightning_prefill_ws_bytes(H, d, group);
        MR_CHECK(stage(f, B_WS, wsb, &d_ws));
        MR_CHECK(host_i32(f, (size_t)S, &h));
        for (int s = 0; s < S; s++) h[s] = s;
        mr_cuda_lightning_prefill_args pa = {.n_heads = H,
                                             .head_dim = d,
                                             .slope = d_slope,
                                             .qkv_dtype = MR_DTYPE_F32,
                                             .qkv = d_qkv,
                                             .out = d_out,
                                             .n_segments = S,
                                             .segs = a->segs,
                                             .slots = h,
                                             .state_pool = pool,
                                             .slot_stride = slot,
                                             .ws = d_ws,
                                             .ws_bytes = f->buf[B_WS].cap,
                                             .variant = MR_CUDA_LT_DEFAULT};
        MR_CHECK(mr_cuda_lightning_prefill(&pa, f->st));
    }
    for (int s = 0; s < S; s++) {
        const mr_segment *g = &a->segs[s];
        MR_CHECK(down(f, a->out + (size_t)g->start * orow, (float *)d_out + (size_t)g->start * orow,
                      (size_t)g->len * orow * sizeof(float)));
        MR_CHECK(down(f, a->state[s], pool + (size_t)s * slot, slot * sizeof(float)));
    }
    return sync(f);
}

static void fb_lightning(mr_backend *be, const mr_lightning_args *a) {
    if (a->n_segments <= 0) return;
    CPU_OP(OP_LIGHTNING, lightning, a);
    mr_status st = do_lightning(impl(be), a);
    if (st != MR_OK) {
        op_failed("lightning", st);
        const size_t orow = (size_t)a->n_heads * (size_t)a->head_dim;
        for (int s = 0; s < a->n_segments; s++)
            fill_nan(a->out + (size_t)a->segs[s].start * orow, (size_t)a->segs[s].len * orow);
    }
}

/* ---- softmax attention ----------------------------------------------------------------------
 * The KV blocks of the call's sequences are staged compactly: segment s's blocks 0..nb_s-1 (nb_s
 * covering positions [0, pos0 + len)) become blocks off_s.. of a staged cache, whose block table
 * is [n_segments][max nb_s] (prefill) or one row per batch row (decode). Blocks holding
 * cached positions are uploaded (fp32) and rounded to bf16 on the device; the kernels write the
 * new rows there; the host cache gets the new rows in fp32 (rotated k, v) like the ref's. */
#ifdef MR_HAVE_CUDA_SOFTMAX
static mr_status do_attention(full_be *f, const mr_attention_args *a) {
    const int H = a->n_heads, KV = a->n_kv_heads, d = a->head_dim, S = a->n_segments;
    const int bt = a->block_tokens, nt = batch_rows(S, a->segs);
    const size_t qrow = (size_t)H * (size_t)d, kvrow = (size_t)KV * (size_t)d;
    const size_t blk = (size_t)bt * kvrow; /* floats per cache block */
    int stride = 1, total = 0, all_one = 1, max_pos = 0;
    for (int s = 0; s < S; s++) {
        const int64_t npos = a->segs[s].pos0 + a->segs[s].len;
        if (npos > INT32_MAX - bt) {
            MR_LOG_ERROR(MR_LOG_GPU, "cuda-full attention: position %lld out of range",
                         (long long)npos);
            return MR_ERR_INVALID;
        }
        const int nb = (int)((npos + bt - 1) / bt);
        stride = nb > stride ? nb : stride;
        total += nb;
        all_one &= a->segs[s].len == 1;
        max_pos = (int)npos > max_pos ? (int)npos : max_pos;
    }
    const void *d_freq;
    void *d_q, *d_k, *d_v, *d_out, *d_kf, *d_vf, *d_kc, *d_vc, *d_tab;
    MR_CHECK(weight(f, a->inv_freq, (size_t)(a->rotary_dim / 2) * sizeof(float), &d_freq));
    MR_CHECK(stage(f, B_A, (size_t)nt * qrow * sizeof(float), &d_q));
    MR_CHECK(stage(f, B_B, (size_t)nt * kvrow * sizeof(float), &d_k));
    MR_CHECK(stage(f, B_C, (size_t)nt * kvrow * sizeof(float), &d_v));
    MR_CHECK(stage(f, B_D, (size_t)nt * qrow * sizeof(float), &d_out));
    MR_CHECK(stage(f, B_KF, (size_t)total * blk * sizeof(float), &d_kf));
    MR_CHECK(stage(f, B_VF, (size_t)total * blk * sizeof(float), &d_vf));
    MR_CHECK(stage(f, B_KC, (size_t)total * blk * sizeof(uint16_t), &d_kc));
    MR_CHECK(stage(f, B_VC, (size_t)total * blk * sizeof(uint16_t), &d_vc));
    MR_CHECK(up(f, d_q, a->q, (size_t)nt * qrow * sizeof(float)));
    MR_CHECK(up(f, d_k, a->k, (size_t)nt * kvrow * sizeof(float)));
    MR_CHECK(up(f, d_v, a->v, (size_t)nt * kvrow * sizeof(float)));
    /* the mirror of the blocks that hold cached positions [0, pos0) */
    for (int s = 0, off = 0; s < S; s++) {
        const mr_segment *g = &a->segs[s];
        const int nb = (int)((g->pos0 + g->len + bt - 1) / bt);
        const int nb_old = (int)((g->pos0 + bt - 1) / bt);
        for (int b = 0; b < nb_old; b++) {
            const size_t hb = (size_t)a->block_tables[s][b] * blk;
            const size_t db = (size_t)(off + b) * blk;
            MR_CHECK(up(f, (float *)d_kf + db, a->k_cache + hb, blk * sizeof(float)));
            MR_CHECK(up(f, (float *)d_vf + db, a->v_cache + hb, blk * sizeof(float)));
        }
        off += nb;
    }
    MR_CHECK(mr_cuda_f32_to_bf16(d_kf, (size_t)total * blk, d_kc, f->st));
    MR_CHECK(mr_cuda_f32_to_bf16(d_vf, (size_t)total * blk, d_vc, f->st));
    /* compact block table: one row per segment (prefill) or per batch row (decode) */
    const int tab_rows = all_one ? nt : S;
    int32_t *h;
    MR_CHECK(host_i32(f, (size_t)tab_rows * (size_t)stride + (size_t)nt, &h));
    int32_t *pos = h + (size_t)tab_rows * (size_t)stride;
    memset(h, 0, ((size_t)tab_rows * (size_t)stride + (size_t)nt) * sizeof *h);
    for (int i = 0; i < nt; i++) pos[i] = -1;
    for (int s = 0, off = 0; s < S; s++) {
        const mr_segment *g = &a->segs[s];
        const int nb = (int)((g->pos0 + g->len + bt - 1) / bt);
        const int r = all_one ? g->start : s;
        for (int b = 0; b < nb; b++) h[(size_t)r * (size_t)stride + (size_t)b] = off + b;
        if (all_one) pos[g->start] = (int32_t)g->pos0;
        off += nb;
    }
    const size_t tab_bytes =
        ((size_t)tab_rows * (size_t)stride + (all_one ? (size_t)nt : 0)) * sizeof(int32_t);
    MR_CHECK(stage(f, B_TAB, tab_bytes, &d_tab));
    MR_CHECK(up(f, d_tab, h, tab_bytes));
    if (all_one) {
        void *d_ws;
        const size_t wsb = mr_cuda_attention_decode_ws_bytes(nt, H, d);
        MR_CHECK(stage(f, B_WS, wsb, &d_ws));
        mr_cuda_attention_decode_args da = {
            .n_heads = H,
            .n_kv_heads = KV,
            .head_dim = d,
            .rotary_dim = a->rotary_dim,
            .inv_freq = d_freq,
            .n = nt,
            .pos = (const int32_t *)d_tab + (size_t)tab_rows * (size_t)stride,
            .block_table = d_tab,
            .block_table_stride = stride,
            .block_tokens = bt,
            .max_pos = max_pos,
            .k_cache = d_kc,
            .v_cache = d_vc,
            .q = d_q,
            .k = d_k,
            .v = d_v,
            .out = d_out,
            .ws = d_ws,
            .ws_bytes = f->buf[B_WS].cap,
        };
        MR_CHECK(mr_cuda_attention_decode(&da, f->st));
    } else {
        mr_cuda_attention_prefill_args pa = {
            .n_heads = H,
            .n_kv_heads = KV,
            .head_dim = d,
            .rotary_dim = a->rotary_dim,
            .inv_freq = d_freq,
            .n_segments = S,
            .segs = a->segs,
            .block_table = d_tab,
            .block_table_stride = stride,
            .block_tokens = bt,
            .k_cache = d_kc,
            .v_cache = d_vc,
            .q = d_q,
            .k = d_k,
            .v = d_v,
            .out = d_out,
            .variant = MR_CUDA_AP_DEFAULT,
        };
        MR_CHECK(mr_cuda_attention_prefill(&pa, f->st));
    }
    for (int s = 0; s < S; s++) {
        const mr_segment *g = &a->segs[s];
        const size_t t0 = (size_t)g->start, len = (size_t)g->len;
        MR_CHECK(down(f, a->q + t0 * qrow, (float *)d_q + t0 * qrow, len * qrow * sizeof(float)));
        MR_CHECK(
            down(f, a->k + t0 * kvrow, (float *)d_k + t0 * kvrow, len * kvrow * sizeof(float)));
        MR_CHECK(
            down(f, a->out + t0 * qrow, (float *)d_out + t0 * qrow, len * qrow * sizeof(float)));
    }
    MR_CHECK(sync(f));
    /* the new rows into the host cache, fp32, as the ref writes them */
    for (int s = 0; s < S; s++) {
        const mr_segment *g = &a->segs[s];
        for (int i = 0; i < g->len; i++) {
            const int64_t p = g->pos0 + i;
            const size_t t = (size_t)g->start + (size_t)i;
            const size_t c =
                ((size_t)a->block_tables[s][p / bt] * (size_t)bt + (size_t)(p % bt)) * kvrow;
            memcpy(a->k_cache + c, a->k + t * kvrow, kvrow * sizeof(float));
            memcpy(a->v_cache + c, a->v + t * kvrow, kvrow * sizeof(float));
        }
    }
    return MR_OK;
}

static void fb_attention(mr_backend *be, const mr_attention_args *a) {
    if (a->n_segments <= 0) return;
    CPU_OP(OP_ATTENTION, attention, a);
    mr_status st = do_attention(impl(be), a);
    if (st != MR_OK) {
        op_failed("attention", st);
        const size_t orow = (size_t)a->n_heads * (size_t)a->head_dim;
        for (int s = 0; s < a->n_segments; s++)
            fill_nan(a->out + (size_t)a->segs[s].start * orow, (size_t)a->segs[s].len * orow);
    }
}
#else
static void fb_attention(mr_backend *be, const mr_attention_args *a) {
    mr_backend *c = impl(be)->cuda;
    c->ops->attention(c, a); /* the softmax kernels are not built: the cpu op */
}
#endif

/* ---- experts, lifetime ---------------------------------------------------------------------- */

static void fb_moe(mr_backend *be, const mr_expert_set *set, const float *x, int n, int k,
                   const int32_t *ids, const float *wts, float *out) {
    mr_backend *c = impl(be)->cuda;
    c->ops->moe(c, set, x, n, k, ids, wts, out);
}

static mr_status fb_moe_prepare(mr_backend *be, const mr_expert_set *const *layers, int n_layers) {
    mr_backend *c = impl(be)->cuda;
    return c->ops->moe_prepare(c, layers, n_layers);
}

static void fb_destroy(mr_backend *be) {
    if (!be) return;
    full_be *f = be->impl;
    if (f) {
        if (f->st) cudaStreamSynchronize(f->st);
        mr_weight_cache_destroy(f->wc);
        for (int i = 0; i < B_COUNT; i++) cudaFree(f->buf[i].p);
        if (f->blas) cublasDestroy(f->blas);
        if (f->st) cudaStreamDestroy(f->st);
        mr_backend_destroy(f->cuda);
        free(f->h_i32);
        free(f);
    }
    free(be);
}

static const mr_backend_ops full_ops = {
    .name = "cuda-full",
    .destroy = fb_destroy,
    .embed = fb_embed,
    .rmsnorm = fb_rmsnorm,
    .scale_add = fb_scale_add,
    .linear = fb_linear,
    .lightning = fb_lightning,
    .norm_gate = fb_norm_gate,
    .attention = fb_attention,
    .route = fb_route,
    .moe = fb_moe,
    .moe_prepare = fb_moe_prepare,
};

mr_status mr_cuda_full_backend_create(const mr_backend_params *p, mr_backend **out) {
    mr_status st = MR_OK;
    mr_backend *be = calloc(1, sizeof *be);
    full_be *f = calloc(1, sizeof *f);
    if (!be || !f) {
        free(be);
        free(f);
        return MR_ERR_NOMEM;
    }
    be->ops = &full_ops;
    be->impl = f;
    f->p = *p;
    f->cpu_ops = parse_cpu_ops(getenv("MOERACK_CUDA_FULL_CPU_OPS"));
    MR_CHECK_GOTO(mr_cuda_backend_create("cuda", p, &f->cuda), err_destroy);
    MR_CUDA_CHECK_GOTO(cudaSetDevice(0), err_destroy);
    MR_CUDA_CHECK_GOTO(cudaStreamCreateWithFlags(&f->st, cudaStreamNonBlocking), err_destroy);
    MR_CUBLAS_CHECK_GOTO(cublasCreate(&f->blas), err_destroy);
    MR_CHECK_GOTO(mr_weight_cache_create(&f->wc), err_destroy);
#ifndef MR_HAVE_CUDA_SOFTMAX
    MR_LOG_WARN(MR_LOG_GPU, "cuda-full: softmax attention kernels not built; attention runs on "
                            "the cpu backend");
#endif
    *out = be;
    return MR_OK;
err_destroy:
    fb_destroy(be); /* accepts the half-built backend */
    return st;
}
