/* cuda_gpu_backend.c — see cuda_gpu_backend.h.
 *
 * Pointer ownership, per op (backend.h has the general rule):
 *  - device: every float activation argument, state[s] and state_pool, k_cache and v_cache
 *    (uint16_t bf16 bits behind the float pointers), the outputs; the backend's own scratch;
 *  - host: mr_matrix data and the norm / slope / inv_freq vectors (looked up in the weight
 *    cache, which holds their device copies), embed's ids, segments, block tables, moe's ids and
 *    wts (read during the call), route's ids and wts (written before return).
 * Small host arrays go up through `pin`, a page-locked ring: a copy is enqueued from a fresh
 * piece of it, and the ring restarts after the stream has been waited for (by route, to_host,
 * or when it is full), so a piece is never rewritten while its copy may be pending. Device
 * scratch is reused op after op: the stream orders a copy into it after the previous kernels. */
#include "kernels/cuda/cuda_gpu_backend.h"

#include <math.h>
#include <stddef.h>
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
#include "kernels/cuda/cuda_experts.h"
#include "kernels/cuda/cuda_gpu_internal.h"

/* ---- memory helpers -------------------------------------------------------------------------- */

/* Something a graphed segment cannot do (wait, allocate, upload): the segment will run again,
 * eagerly. */
mr_status gpu_not_in_graph(gpu_be *g, const char *what) {
    if (!gpu_segs_graphed(gpu_segs_mode(g->segs))) return MR_OK;
    gpu_segs_fail(g->segs, what);
    return MR_ERR_INTERNAL;
}

mr_status gpu_scratch(gpu_be *g, int which, size_t bytes, void **out) {
    dev_buf *b = &g->buf[which];
    if (bytes == 0) bytes = 1;
    if (b->cap < bytes) {
        const size_t cap = bytes + bytes / 4;
        MR_CHECK(gpu_not_in_graph(g, "scratch grows"));
        gpu_segs_invalidate(g->segs); /* graphs hold the old address */
        MR_LOG_DEBUG(MR_LOG_GPU, "cuda-gpu: scratch %d grows to %zu bytes", which, cap);
        MR_CUDA_CHECK(cudaStreamSynchronize(g->st)); /* a pending kernel may still read it */
        cudaFree(b->p);
        b->p = NULL;
        b->cap = 0;
        MR_CUDA_CHECK(cudaMalloc(&b->p, cap));
        b->cap = cap;
    }
    *out = b->p;
    return MR_OK;
}

/* A piece of the page-locked ring for a copy about to be enqueued (64-byte aligned). */
mr_status gpu_pin_take(gpu_be *g, size_t bytes, void **out) {
    MR_CHECK(gpu_not_in_graph(g, "host upload"));
    bytes = (bytes + 63) & ~(size_t)63;
    if (g->pin_used + bytes > g->pin_cap) {
        MR_CUDA_CHECK(cudaStreamSynchronize(g->st)); /* every earlier copy has landed */
        g->pin_used = 0;
        if (bytes > g->pin_cap) {
            const size_t cap = bytes + bytes / 4;
            cudaFreeHost(g->pin);
            g->pin = NULL;
            g->pin_cap = 0;
            MR_CUDA_CHECK(cudaHostAlloc((void **)&g->pin, cap, cudaHostAllocDefault));
            g->pin_cap = cap;
        }
    }
    *out = g->pin + g->pin_used;
    g->pin_used += bytes;
    return MR_OK;
}

/* Waits for the stream; the ring is free again. */
static mr_status gpu_wait_stream(gpu_be *g) {
    MR_CUDA_CHECK(cudaStreamSynchronize(g->st));
    g->pin_used = 0;
    return MR_OK;
}

/* Page-locked host memory (cudaHostAlloc / cudaHostRegister): the GPU can copy from it directly. */
static int host_is_pinned(const void *host) {
    struct cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, host) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return a.type == cudaMemoryTypeHost;
}

/* dev[0..bytes) = host[0..bytes), enqueued; host may be reused on return. */
mr_status gpu_upload(gpu_be *g, void *dev, const void *host, size_t bytes) {
    enum { DIRECT_UPLOAD_BYTES = 1 << 20 };
    void *p;
    if (bytes == 0) return MR_OK;
    if (bytes >= DIRECT_UPLOAD_BYTES && host_is_pinned(host)) {
        /* Large and already page-locked (the MoE result staged for remote experts): copied
         * straight from there instead of through the ring (a memcpy of tens of MB per layer in
         * prefill), then waited for, since the caller may reuse `host` on return. The model calls
         * it right after a to_host, so the wait is the copy's own time. */
        MR_CHECK(gpu_not_in_graph(g, "host upload"));
        MR_CUDA_CHECK(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, g->st));
        return gpu_wait_stream(g);
    }
    MR_CHECK(gpu_pin_take(g, bytes, &p));
    memcpy(p, host, bytes);
    MR_CUDA_CHECK(cudaMemcpyAsync(dev, p, bytes, cudaMemcpyHostToDevice, g->st));
    return MR_OK;
}

/* The device copy of the host weight [host, host + bytes), uploaded on first use (waited for;
 * weight_cache.h) — never inside a graphed segment, which cannot wait. */
mr_status gpu_weight(gpu_be *g, const void *host, size_t bytes, const void **dev) {
    if (host && mr_weight_cache_find(g->wc, host, bytes, dev)) return MR_OK;
    MR_CHECK(gpu_not_in_graph(g, "weight upload"));
    MR_CHECK(mr_weight_cache_get(g->wc, host, bytes, g->st, dev));
    g->pin_used = 0; /* the stream was waited for: every pending copy from the ring has landed */
    return MR_OK;
}

static size_t matrix_bytes(const mr_matrix *m) {
    return (size_t)m->rows * (size_t)m->cols * mr_dtype_size(m->dtype);
}

/* An op failed: log, poison its device output with NaN (all-ones bytes), remember the failure
 * for the next to_host. */
void gpu_op_failed(gpu_be *g, const char *op, mr_status st, void *out, size_t bytes) {
    if (gpu_segs_graphed(gpu_segs_mode(g->segs))) { /* nothing ran: the segment runs again */
        gpu_segs_fail(g->segs, op);
        return;
    }
    MR_LOG_ERROR(MR_LOG_GPU, "cuda-gpu %s: %s (outputs set to NaN)", op, mr_status_str(st));
    if (out && bytes) cudaMemsetAsync(out, 0xFF, bytes, g->st);
    if (g->err == MR_OK) g->err = st;
}

/* ---- memory ops ------------------------------------------------------------------------------ */

static mr_status gb_alloc(mr_backend *be, size_t bytes, int kind, void **out) {
    use(be);
    void *p = NULL;
    /* host staging is portable: the model may hand it to the backend of another GPU */
    cudaError_t e = kind == MR_MEM_HOST
                        ? cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocPortable)
                        : cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaGetLastError(); /* clear the allocation error */
        cudaMemGetInfo(&free_b, &total_b);
        MR_LOG_ERROR(MR_LOG_GPU,
                     "cuda-gpu: cannot allocate %zu bytes of %s memory (%s; %zu of %zu "
                     "device bytes free)",
                     bytes, kind == MR_MEM_HOST ? "page-locked host" : "device",
                     cudaGetErrorString(e), free_b, total_b);
        return MR_ERR_NOMEM;
    }
    *out = p;
    return MR_OK;
}

static void gb_free(mr_backend *be, void *p, int kind) {
    if (!p) return;
    use(be);
    if (kind == MR_MEM_HOST)
        cudaFreeHost(p);
    else
        cudaFree(p);
}

static mr_status gb_memset(mr_backend *be, void *p, int value, size_t bytes) {
    if (bytes) MR_CUDA_CHECK(cudaMemsetAsync(p, value, bytes, use(be)->st));
    return MR_OK;
}

static mr_status gb_copy(mr_backend *be, void *dst, const void *src, size_t bytes) {
    if (bytes)
        MR_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, use(be)->st));
    return MR_OK;
}

static mr_status gb_to_host(mr_backend *be, void *dst, const void *src, size_t bytes) {
    gpu_be *g = use(be);
    MR_CHECK(gpu_not_in_graph(g, "to_host"));
    if (bytes) MR_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, g->st));
    MR_CHECK(gpu_wait_stream(g));
    const mr_status st = g->err;
    g->err = MR_OK;
    return st;
}

static mr_status gb_to_device(mr_backend *be, void *dst, const void *src, size_t bytes) {
    return gpu_upload(use(be), dst, src, bytes);
}

/* Lets this backend's device read device `peer`'s memory directly (NVLink / PCIe peer to peer),
 * asked for once per peer; without it cudaMemcpyPeerAsync still works, staged by the driver. */
static void enable_peer(gpu_be *g, int peer) {
    if (peer == g->dev || peer < 0 || peer >= MAX_PEERS || g->peer_tried[peer]) return;
    g->peer_tried[peer] = 1;
    int can = 0;
    if (cudaDeviceCanAccessPeer(&can, g->dev, peer) != cudaSuccess || !can) {
        cudaGetLastError();
        MR_LOG_WARN(MR_LOG_GPU,
                    "cuda-gpu: GPU %d cannot access GPU %d directly; stage copies go "
                    "through host memory",
                    g->dev, peer);
        return;
    }
    const cudaError_t e = cudaDeviceEnablePeerAccess(peer, 0);
    if (e != cudaSuccess && e != cudaErrorPeerAccessAlreadyEnabled)
        MR_LOG_WARN(MR_LOG_GPU, "cuda-gpu: peer access GPU %d -> %d: %s", g->dev, peer,
                    cudaGetErrorString(e));
    cudaGetLastError(); /* clear an already-enabled error */
}

/* dst (this GPU) = src (src_be's GPU), on this backend's stream: it waits for src_be's stream
 * (src is ready), and src_be's stream waits for the copy (src may be overwritten after). */
static mr_status gb_copy_from(mr_backend *be, void *dst, mr_backend *src_be, const void *src,
                              size_t bytes) {
    if (src_be->ops != be->ops) {
        MR_LOG_ERROR(MR_LOG_GPU, "cuda-gpu copy_from: the source backend is %s, not cuda-gpu",
                     src_be->ops->name);
        return MR_ERR_INVALID;
    }
    if (bytes == 0) return MR_OK;
    gpu_be *s = impl(src_be);
    if (s == impl(be)) return gb_copy(be, dst, src, bytes);
    use(src_be);
    MR_CUDA_CHECK(cudaEventRecord(s->ev_xfer, s->st));
    gpu_be *d = use(be);
    enable_peer(d, s->dev);
    MR_CUDA_CHECK(cudaStreamWaitEvent(d->st, s->ev_xfer, 0));
    MR_CUDA_CHECK(cudaMemcpyPeerAsync(dst, d->dev, src, s->dev, bytes, d->st));
    MR_CUDA_CHECK(cudaEventRecord(d->ev_xfer, d->st));
    use(src_be);
    const cudaError_t e = cudaStreamWaitEvent(s->st, d->ev_xfer, 0);
    use(be);
    return mr_cuda_check_at(e, "cudaStreamWaitEvent(src, copy done)", __FILE__, __LINE__);
}

static mr_status gb_mem_info(mr_backend *be, size_t *free_bytes, size_t *total_bytes) {
    use(be);
    MR_CUDA_CHECK(cudaMemGetInfo(free_bytes, total_bytes));
    return MR_OK;
}

/* ---- coordinator ops ------------------------------------------------------------------------- */

static mr_status do_embed(gpu_be *g, const mr_matrix *t, const int32_t *ids, int n, float *out) {
    const void *dt;
    void *d_ids;
    MR_CHECK(gpu_weight(g, t->data, matrix_bytes(t), &dt));
    MR_CHECK(gpu_scratch(g, S_IDS, (size_t)n * sizeof(int32_t), &d_ids));
    MR_CHECK(gpu_upload(g, d_ids, ids, (size_t)n * sizeof(int32_t)));
    mr_cuda_embed_args a = {n, t->rows, t->cols, t->dtype, dt, d_ids, out};
    return mr_cuda_embed(&a, g->st);
}

static void gb_embed(mr_backend *be, const mr_matrix *t, const int32_t *ids, int n, float *out) {
    if (n <= 0) return;
    mr_status st = do_embed(use(be), t, ids, n, out);
    if (st != MR_OK)
        gpu_op_failed(impl(be), "embed", st, out, (size_t)n * (size_t)t->cols * sizeof(float));
}

static mr_status do_rmsnorm(gpu_be *g, const float *x, const float *w, int n, int dim, float eps,
                            float *y) {
    if (graphed(g, OP_RMSNORM)) {
        NOTE(g, x), NOTE(g, w), NOTE(g, n), NOTE(g, dim), NOTE(g, eps), NOTE(g, y);
        if (replaying(g)) return MR_OK;
    }
    const void *dw;
    MR_CHECK(gpu_weight(g, w, (size_t)dim * sizeof(float), &dw));
    mr_cuda_rmsnorm_args a = {
        .n = n, .dim = dim, .eps = eps, .w_dtype = MR_DTYPE_F32, .w = dw, .x = x, .y = y};
    return mr_cuda_rmsnorm(&a, g->st);
}

static void gb_rmsnorm(mr_backend *be, const float *x, const float *w, int n, int dim, float eps,
                       float *y) {
    if (n <= 0) return;
    mr_status st = do_rmsnorm(use(be), x, w, n, dim, eps, y);
    if (st != MR_OK)
        gpu_op_failed(impl(be), "rmsnorm", st, y, (size_t)n * (size_t)dim * sizeof(float));
}

static void gb_scale_add(mr_backend *be, const float *h, const float *y, float a, float b, size_t n,
                         float *out) {
    if (n == 0) return;
    gpu_be *g = use(be);
    if (graphed(g, OP_SCALE_ADD)) {
        NOTE(g, h), NOTE(g, y), NOTE(g, a), NOTE(g, b), NOTE(g, n), NOTE(g, out);
        if (replaying(g)) return;
    }
    mr_status st = mr_cuda_scale_add(h, y, a, b, n, out, g->st);
    if (st != MR_OK) gpu_op_failed(impl(be), "scale_add", st, out, n * sizeof(float));
}

static mr_status do_linear(gpu_be *g, const mr_matrix *w, const float *x, int n, float *y) {
    if (graphed(g, OP_LINEAR)) {
        NOTE(g, w->data), NOTE(g, w->dtype), NOTE(g, w->rows), NOTE(g, w->cols);
        NOTE(g, x), NOTE(g, n), NOTE(g, y);
        if (replaying(g)) return MR_OK;
    }
    const void *dw;
    void *d_xb = NULL;
    MR_CHECK(gpu_weight(g, w->data, matrix_bytes(w), &dw));
    /* bf16 weights: the activations split into hi + lo bf16 parts, fp32-accurate like the
     * oracle — one bf16 rounding of every projection input flips near-tied routers (the tiny
     * goldens' 1-token prompt: 0.09); linear reads the weights once (GEMV or stacked GEMM). */
    if (w->dtype == MR_DTYPE_BF16)
        MR_CHECK(gpu_scratch(g, S_XB, 2 * (size_t)n * (size_t)w->cols * sizeof(uint16_t), &d_xb));
    /* S_Y2 never grows: linear stacks hi and lo in one GEMM when [2n][rows] fits (coord_ops.h) */
    mr_cuda_linear_args a = mr_cuda_linear_split_args(n, w->rows, w->cols, w->dtype, dw, x, d_xb, y,
                                                      g->linear_twice ? NULL : g->buf[S_Y2].p,
                                                      g->buf[S_Y2].cap / sizeof(float));
    a.no_gemv = g->linear_twice;
    return mr_cuda_linear(g->blas, &a, g->st);
}

static void gb_linear(mr_backend *be, const mr_matrix *w, const float *x, int n, float *y) {
    if (n <= 0) return;
    mr_status st = do_linear(use(be), w, x, n, y);
    if (st != MR_OK)
        gpu_op_failed(impl(be), "linear", st, y, (size_t)n * (size_t)w->rows * sizeof(float));
}

static mr_status do_norm_gate(gpu_be *g, const float *o, const float *gate, const float *w, int n,
                              int dim, float eps, float *out) {
    if (graphed(g, OP_NORM_GATE)) {
        NOTE(g, o), NOTE(g, gate), NOTE(g, w), NOTE(g, n), NOTE(g, dim), NOTE(g, eps), NOTE(g, out);
        if (replaying(g)) return MR_OK;
    }
    const void *dw;
    MR_CHECK(gpu_weight(g, w, (size_t)dim * sizeof(float), &dw));
    mr_cuda_norm_gate_args a = {n, dim, eps, MR_DTYPE_F32, dw, o, gate, out};
    return mr_cuda_norm_gate(&a, g->st);
}

static void gb_norm_gate(mr_backend *be, const float *o, const float *gate, const float *w, int n,
                         int dim, float eps, float *out) {
    if (n <= 0) return;
    mr_status st = do_norm_gate(use(be), o, gate, w, n, dim, eps, out);
    if (st != MR_OK)
        gpu_op_failed(impl(be), "norm_gate", st, out, (size_t)n * (size_t)dim * sizeof(float));
}

/* The router on the device; ids and wts come down to the host (the expert executor and the
 * dispatcher plan on the host), so this op waits for the stream — in a graphed segment the copy
 * goes to the segment's fixed page-locked buffer and segment_end waits and hands them over. */
static mr_status do_route(gpu_be *g, const mr_matrix *gate, const float *x, int n, int k,
                          int32_t *ids, float *wts) {
    const void *dg;
    void *d, *h;
    const size_t kb = (size_t)n * (size_t)k * sizeof(int32_t);
    const int graph = graphed(g, OP_ROUTE);
    if (graph) {
        NOTE(g, gate->data), NOTE(g, gate->rows), NOTE(g, gate->cols), NOTE(g, x), NOTE(g, n);
        NOTE(g, k);
        if (2 * kb > g->route_pin_bytes) {
            gpu_segs_fail(g->segs, "router output larger than its buffer");
            return MR_ERR_INTERNAL;
        }
        gpu_segs_route_out(g->segs, ids, wts, n * k);
        if (replaying(g)) return MR_OK;
    }
    MR_CHECK(gpu_weight(g, gate->data, matrix_bytes(gate), &dg));
    MR_CHECK(gpu_scratch(g, S_ROUTE, 2 * kb, &d));
    if (graph) {
        h = gpu_segs_route_pin(g->segs);
    } else {
        MR_CHECK(gpu_pin_take(g, 2 * kb, &h));
    }
    int32_t *d_ids = d;
    float *d_wts = (float *)((unsigned char *)d + kb);
    mr_cuda_route_args a = {n, gate->cols, gate->rows, k, gate->dtype, dg, x, d_ids, d_wts};
    MR_CHECK(mr_cuda_route(&a, g->st));
    MR_CUDA_CHECK(cudaMemcpyAsync(h, d, 2 * kb, cudaMemcpyDeviceToHost, g->st));
    if (graph) return MR_OK; /* segment_end waits and copies */
    MR_CHECK(gpu_wait_stream(g));
    memcpy(ids, h, kb);
    memcpy(wts, (unsigned char *)h + kb, kb);
    return MR_OK;
}

static void gb_route(mr_backend *be, const mr_matrix *gate, const float *x, int n, int k,
                     int32_t *ids, float *wts) {
    if (n <= 0) return;
    mr_status st = do_route(use(be), gate, x, n, k, ids, wts);
    if (st != MR_OK) {
        gpu_op_failed(impl(be), "route", st, NULL, 0);
        if (gpu_segs_graphed(gpu_segs_mode(impl(be)->segs))) return; /* the segment runs again */
        for (size_t i = 0; i < (size_t)n * (size_t)k; i++) {
            ids[i] = 0;
            wts[i] = NAN;
        }
    }
}

/* ---- experts ----------------------------------------------------------------------------------
 * On the executor's stream, after everything enqueued on st so far (x is ready), and st waits for
 * it in turn (out is ready for the next op). */

static mr_status do_moe(gpu_be *g, const mr_expert_set *set, const float *x, int n, int k,
                        const int32_t *ids, const float *wts, float *out) {
    mr_cuda_experts *cx;
    int layer;
    if (mr_cuda_backend_experts(g->cuda, set, &cx, &layer) != MR_OK) {
        MR_LOG_ERROR(MR_LOG_GPU, "cuda-gpu moe: the experts of this layer were not prepared");
        return MR_ERR_INVALID;
    }
    cudaStream_t xs = (cudaStream_t)mr_cuda_experts_stream(cx);
    MR_CUDA_CHECK(cudaEventRecord(g->ev_main, g->st));
    MR_CUDA_CHECK(cudaStreamWaitEvent(xs, g->ev_main, 0));
    MR_CHECK(mr_cuda_experts_enqueue(cx, layer, x, n, k, ids, wts, out));
    MR_CUDA_CHECK(cudaEventRecord(g->ev_experts, xs));
    MR_CUDA_CHECK(cudaStreamWaitEvent(g->st, g->ev_experts, 0));
    return MR_OK;
}

static void gb_moe(mr_backend *be, const mr_expert_set *set, const float *x, int n, int k,
                   const int32_t *ids, const float *wts, float *out) {
    if (n <= 0) return;
    mr_status st = do_moe(use(be), set, x, n, k, ids, wts, out);
    if (st != MR_OK)
        gpu_op_failed(impl(be), "moe", st, out, (size_t)n * (size_t)set->hidden * sizeof(float));
}

/* Sampling on the device: only tokens and logprobs come down (cuda_sample.h). */
static mr_status gb_sample(mr_backend *be, const float *logits, int n_logit_rows, int vocab,
                           const mr_sample_row *rows, int n, int32_t *tokens,
                           mr_sample_result *out) {
    gpu_be *g = impl(be);
    MR_CHECK(mr_cuda_sample(g->sampler, logits, n_logit_rows, vocab, rows, n, tokens, out, g->st));
    MR_CHECK(gpu_wait_stream(g));
    const mr_status st = g->err;
    g->err = MR_OK;
    return st;
}

static void gb_segment_begin(mr_backend *be, const mr_segment_key *key) {
    gpu_be *g = use(be);
    gpu_segs_begin(g->segs, g->st, key);
}

static mr_status gb_segment_end(mr_backend *be, int *ran) {
    gpu_be *g = use(be);
    return gpu_segs_end(g->segs, g->st, ran);
}

static mr_status gb_moe_prepare(mr_backend *be, const mr_expert_set *const *layers, int n_layers) {
    mr_backend *c = use(be)->cuda; /* the executor allocates on the current device */
    return c->ops->moe_prepare(c, layers, n_layers);
}

/* ---- lifetime -------------------------------------------------------------------------------- */

static void gb_destroy(mr_backend *be) {
    if (!be) return;
    gpu_be *g = be->impl;
    if (g) {
        cudaSetDevice(g->dev);
        if (g->st) cudaStreamSynchronize(g->st);
        mr_weight_cache_destroy(g->wc);
        for (int i = 0; i < S_COUNT; i++) cudaFree(g->buf[i].p);
        cudaFreeHost(g->pin);
        if (g->ev_main) cudaEventDestroy(g->ev_main);
        if (g->ev_experts) cudaEventDestroy(g->ev_experts);
        if (g->ev_xfer) cudaEventDestroy(g->ev_xfer);
        gpu_segs_destroy(g->segs);
        if (g->blas) cublasDestroy(g->blas);
        if (g->st) cudaStreamDestroy(g->st);
        mr_backend_destroy(g->cuda);
        mr_cuda_sampler_destroy(g->sampler);
        free(g->h_slots);
        free(g);
    }
    free(be);
}

static const mr_backend_ops gpu_ops = {
    .name = "cuda-gpu",
    .destroy = gb_destroy,
    .embed = gb_embed,
    .rmsnorm = gb_rmsnorm,
    .scale_add = gb_scale_add,
    .linear = gb_linear,
    .lightning = gpu_lightning_op,
    .norm_gate = gb_norm_gate,
    .attention = gpu_attention_op,
    .route = gb_route,
    .moe = gb_moe,
    .moe_prepare = gb_moe_prepare,
    .device_resident = 1,
    .kv_dtype = MR_DTYPE_BF16,
    .alloc = gb_alloc,
    .free = gb_free,
    .memset = gb_memset,
    .copy = gb_copy,
    .to_host = gb_to_host,
    .to_device = gb_to_device,
    .copy_from = gb_copy_from,
    .mem_info = gb_mem_info,
    .sample = gb_sample,
    .segment_begin = gb_segment_begin,
    .segment_end = gb_segment_end,
};

/* Scratch for steps of up to max_tokens tokens, so that none grows in the steady state (block
 * tables start at 64 blocks per row and grow with the context). */
static mr_status presize(gpu_be *g) {
    const mr_backend_params *p = &g->p;
    const size_t T = (size_t)(p->max_tokens > 0 ? p->max_tokens : 1);
    const int inner = p->n_heads * p->head_dim;
    const size_t cols = (size_t)(p->hidden > inner ? p->hidden : inner);
    const int chunks = (int)((T + MR_CUDA_LIGHTNING_CHUNK - 1) / MR_CUDA_LIGHTNING_CHUNK) + 1;
    void *d;
    MR_CHECK(gpu_scratch(g, S_XB, 2 * T * cols * sizeof(uint16_t), &d)); /* hi + lo parts */
    MR_CHECK(gpu_scratch(g, S_IDS, T * sizeof(int32_t), &d));
    MR_CHECK(gpu_scratch(g, S_TAB, T * 65 * sizeof(int32_t), &d));
    MR_CHECK(gpu_scratch(g, S_ROUTE, T * (size_t)(p->top_k > 0 ? p->top_k : 1) * 8, &d));
    MR_CHECK(gpu_scratch(
        g, S_LWS,
        mr_cuda_lightning_prefill_ws_bytes(p->n_heads, p->head_dim, chunks < 64 ? chunks : 64),
        &d));
    size_t aws = 0; /* the split-KV partials take the most at few rows (more splits per row) */
    for (int n = 1; n <= (int)T && n <= 4096; n++) {
        const size_t b = mr_cuda_attention_decode_ws_bytes(n, p->n_heads, p->head_dim);
        aws = b > aws ? b : aws;
    }
    const size_t aws_t = mr_cuda_attention_decode_ws_bytes((int)T, p->n_heads, p->head_dim);
    MR_CHECK(gpu_scratch(g, S_AWS, aws_t > aws ? aws_t : aws, &d));
    /* stacked hi + lo products for up to 64 tokens of the widest projection (qkv) */
    const size_t wide = (size_t)(3 * inner > p->hidden ? 3 * inner : p->hidden);
    MR_CHECK(gpu_scratch(g, S_Y2, 2 * (T < 64 ? T : 64) * wide * sizeof(float), &d));
    /* the ring: a few steps' tables, or one step's hidden rows (cluster combine) */
    size_t pin = T * (size_t)p->hidden * sizeof(float) + T * 65 * sizeof(int32_t);
    pin = pin > ((size_t)4 << 20) ? pin : ((size_t)4 << 20);
    MR_CUDA_CHECK(cudaHostAlloc((void **)&g->pin, pin, cudaHostAllocDefault));
    g->pin_cap = pin;
    return MR_OK;
}

mr_status mr_cuda_gpu_backend_create(const mr_backend_params *p, mr_backend **out) {
    mr_status st = MR_OK;
    if (p->head_dim != 16 && p->head_dim != 32 && p->head_dim != 64 && p->head_dim != 128) {
        MR_LOG_ERROR(MR_LOG_GPU,
                     "cuda-gpu: head_dim %d is not supported by the attention kernels (16, 32, 64, "
                     "128)",
                     p->head_dim);
        return MR_ERR_UNSUPPORTED;
    }
    mr_backend *be = calloc(1, sizeof *be);
    gpu_be *g = calloc(1, sizeof *g);
    if (!be || !g) {
        free(be);
        free(g);
        return MR_ERR_NOMEM;
    }
    be->ops = &gpu_ops;
    be->impl = g;
    g->p = *p;
    g->dev = p->device;
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess) cudaGetLastError();
    if (p->device < 0 || p->device >= n_dev) {
        MR_LOG_ERROR(MR_LOG_GPU, "cuda-gpu: GPU %d does not exist (%d visible GPU%s)", p->device,
                     n_dev, n_dev == 1 ? "" : "s");
        st = MR_ERR_INVALID;
        goto err_destroy;
    }
    const char *route = getenv("MOERACK_CUDA_LINEAR");
    g->linear_twice = route && strcmp(route, "twice") == 0;
    if (g->linear_twice)
        MR_LOG_INFO(MR_LOG_GPU, "cuda-gpu: projections as two GEMMs (MOERACK_CUDA_LINEAR)");
    MR_CHECK_GOTO(mr_cuda_backend_create("cuda", p, &g->cuda), err_destroy);
    MR_CUDA_CHECK_GOTO(cudaSetDevice(g->dev), err_destroy);
    MR_CUDA_CHECK_GOTO(cudaStreamCreateWithFlags(&g->st, cudaStreamNonBlocking), err_destroy);
    MR_CUDA_CHECK_GOTO(cudaEventCreateWithFlags(&g->ev_main, cudaEventDisableTiming), err_destroy);
    MR_CUDA_CHECK_GOTO(cudaEventCreateWithFlags(&g->ev_experts, cudaEventDisableTiming),
                       err_destroy);
    MR_CUDA_CHECK_GOTO(cudaEventCreateWithFlags(&g->ev_xfer, cudaEventDisableTiming), err_destroy);
    MR_CUBLAS_CHECK_GOTO(cublasCreate(&g->blas), err_destroy);
    MR_CHECK_GOTO(mr_weight_cache_create(&g->wc), err_destroy);
    MR_CHECK_GOTO(presize(g), err_destroy);
    MR_CHECK_GOTO(mr_cuda_sampler_create(p->max_tokens > 0 ? p->max_tokens : 1, &g->sampler),
                  err_destroy);
    /* decode segments as CUDA graphs unless MOERACK_CUDA_GRAPHS=0 (same-run comparisons) */
    const char *graphs = getenv("MOERACK_CUDA_GRAPHS");
    const int max_rows = p->max_tokens > 0 ? p->max_tokens : 1;
    g->route_pin_bytes = (size_t)max_rows * (size_t)(p->top_k > 0 ? p->top_k : 1) * 8;
    MR_CHECK_GOTO(gpu_segs_create(!(graphs && strcmp(graphs, "0") == 0), max_rows,
                                  g->route_pin_bytes, &g->segs),
                  err_destroy);
    *out = be;
    return MR_OK;
err_destroy:
    gb_destroy(be); /* accepts the half-built backend */
    return st;
}
