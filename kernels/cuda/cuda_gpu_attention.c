/* cuda_gpu_attention.c — the cuda-gpu backend's lightning and softmax attention ops (see
 * cuda_gpu_backend.c for the backend, cuda_gpu_graphs.h for the graphed decode segments). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "kernels/cuda/cuda_attention.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_gpu_internal.h"

/* ---- lightning --------------------------------------------------------------------------------
 * The states are slots of the layer's pool: slot = (state[s] − state_pool) / slot_stride. All
 * segments of one token → the decode kernel (row i of the batch: the slot of the segment that
 * starts there, −1 for rows of no segment); otherwise the chunked prefill. */

static int batch_rows(int n_segments, const mr_segment *segs) {
    int nt = 0;
    for (int s = 0; s < n_segments; s++)
        if (segs[s].start + segs[s].len > nt) nt = segs[s].start + segs[s].len;
    return nt;
}

static mr_status state_slot(const mr_lightning_args *a, int s, int32_t *slot) {
    const ptrdiff_t off = a->state[s] - a->state_pool;
    if (!a->state_pool || a->slot_stride == 0 || off < 0 || (size_t)off % a->slot_stride != 0 ||
        (size_t)off / a->slot_stride > INT32_MAX) {
        MR_LOG_ERROR(MR_LOG_GPU, "cuda-gpu lightning: state %d is not a slot of the given pool", s);
        return MR_ERR_INVALID;
    }
    *slot = (int32_t)((size_t)off / a->slot_stride);
    return MR_OK;
}

/* A graphed decode segment: the slots go to the segment's metadata (row i: the slot of the
 * sequence whose token is row i, −1 for padding rows) and the kernel, over all the segment's
 * rows, reads them from its device copy. */
static mr_status graph_lightning(gpu_be *g, const mr_lightning_args *a) {
    NOTE(g, a->n_heads), NOTE(g, a->head_dim), NOTE(g, a->slope), NOTE(g, a->qkv), NOTE(g, a->out);
    NOTE(g, a->state_pool), NOTE(g, a->slot_stride);
    const int rows = gpu_segs_rows(g->segs);
    int32_t *slots = gpu_segs_host_slots(g->segs);
    for (int s = 0; s < a->n_segments; s++) {
        if (a->segs[s].len != 1 || a->segs[s].start < 0 || a->segs[s].start >= rows) {
            gpu_segs_fail(g->segs, "lightning: not one token per row within the segment");
            return MR_ERR_INTERNAL;
        }
        MR_CHECK(state_slot(a, s, &slots[a->segs[s].start]));
    }
    if (replaying(g)) return MR_OK;
    const void *d_slope;
    MR_CHECK(gpu_weight(g, a->slope, (size_t)a->n_heads * sizeof(float), &d_slope));
    mr_cuda_lightning_decode_args da = {.n_heads = a->n_heads,
                                        .head_dim = a->head_dim,
                                        .slope = d_slope,
                                        .n = rows,
                                        .qkv_dtype = MR_DTYPE_F32,
                                        .qkv = a->qkv,
                                        .out = a->out,
                                        .slots = gpu_segs_dev_slots(g->segs),
                                        .state_pool = a->state_pool,
                                        .slot_stride = a->slot_stride};
    return mr_cuda_lightning_decode(&da, g->st);
}

static mr_status do_lightning(gpu_be *g, const mr_lightning_args *a) {
    if (graphed(g, OP_LIGHTNING)) return graph_lightning(g, a);
    const int H = a->n_heads, d = a->head_dim, S = a->n_segments;
    const int nt = batch_rows(S, a->segs);
    const void *d_slope;
    MR_CHECK(gpu_weight(g, a->slope, (size_t)H * sizeof(float), &d_slope));
    int all_one = 1;
    for (int s = 0; s < S; s++) all_one &= a->segs[s].len == 1;
    if (S > g->h_slots_cap || nt > g->h_slots_cap) {
        const int cap = S > nt ? S : nt;
        int32_t *h = realloc(g->h_slots, (size_t)cap * sizeof *h);
        if (!h) return MR_ERR_NOMEM;
        g->h_slots = h;
        g->h_slots_cap = cap;
    }
    int32_t *h = g->h_slots;
    if (all_one) {
        void *d_slots;
        for (int i = 0; i < nt; i++) h[i] = -1;
        for (int s = 0; s < S; s++) MR_CHECK(state_slot(a, s, &h[a->segs[s].start]));
        MR_CHECK(gpu_scratch(g, S_IDS, (size_t)nt * sizeof(int32_t), &d_slots));
        MR_CHECK(gpu_upload(g, d_slots, h, (size_t)nt * sizeof(int32_t)));
        mr_cuda_lightning_decode_args da = {.n_heads = H,
                                            .head_dim = d,
                                            .slope = d_slope,
                                            .n = nt,
                                            .qkv_dtype = MR_DTYPE_F32,
                                            .qkv = a->qkv,
                                            .out = a->out,
                                            .slots = d_slots,
                                            .state_pool = a->state_pool,
                                            .slot_stride = a->slot_stride};
        return mr_cuda_lightning_decode(&da, g->st);
    }
    for (int s = 0; s < S; s++) MR_CHECK(state_slot(a, s, &h[s]));
    mr_cuda_lightning_prefill_args pa = {.n_heads = H,
                                         .head_dim = d,
                                         .slope = d_slope,
                                         .qkv_dtype = MR_DTYPE_F32,
                                         .qkv = a->qkv,
                                         .out = a->out,
                                         .n_segments = S,
                                         .segs = a->segs,
                                         .slots = h,
                                         .state_pool = a->state_pool,
                                         .slot_stride = a->slot_stride,
                                         .ws = g->buf[S_LWS].p,
                                         .ws_bytes = g->buf[S_LWS].cap,
                                         .variant = MR_CUDA_LT_DEFAULT};
    return mr_cuda_lightning_prefill(&pa, g->st);
}

void gpu_lightning_op(mr_backend *be, const mr_lightning_args *a) {
    if (a->n_segments <= 0) return;
    mr_status st = do_lightning(use(be), a);
    if (st != MR_OK)
        gpu_op_failed(impl(be), "lightning", st, a->out,
                      (size_t)batch_rows(a->n_segments, a->segs) * (size_t)a->n_heads *
                          (size_t)a->head_dim * sizeof(float));
}

/* ---- softmax attention ------------------------------------------------------------------------
 * The cache is the pool itself (bf16, the backend's kv_dtype); only the block tables go up,
 * packed [rows][stride] with stride = the most blocks of any segment: one row per segment
 * (prefill) or per batch row (decode, followed by the positions, −1 for rows of no segment). */

/* The decode kernels over n rows with device positions and block table (stride blocks per row),
 * attending over at most max_pos keys. */
static mr_status attention_decode(gpu_be *g, const mr_attention_args *a, const void *d_freq, int n,
                                  const int32_t *pos, const int32_t *table, int stride,
                                  int max_pos) {
    void *d_ws;
    MR_CHECK(gpu_scratch(g, S_AWS, mr_cuda_attention_decode_ws_bytes(n, a->n_heads, a->head_dim),
                         &d_ws));
    mr_cuda_attention_decode_args da = {
        .n_heads = a->n_heads,
        .n_kv_heads = a->n_kv_heads,
        .head_dim = a->head_dim,
        .rotary_dim = a->rotary_dim,
        .inv_freq = d_freq,
        .n = n,
        .pos = pos,
        .block_table = table,
        .block_table_stride = stride,
        .block_tokens = a->block_tokens,
        .max_pos = max_pos,
        .k_cache = (uint16_t *)(void *)a->k_cache,
        .v_cache = (uint16_t *)(void *)a->v_cache,
        .q = a->q,
        .k = a->k,
        .v = a->v,
        .out = a->out,
        .ws = d_ws,
        .ws_bytes = g->buf[S_AWS].cap,
    };
    return mr_cuda_attention_decode(&da, g->st);
}

/* A graphed decode segment: positions and block-table rows go to the segment's metadata (stride
 * and key extent fixed by its position bucket; padding rows −1), the kernels read the device
 * copy. */
static mr_status graph_attention(gpu_be *g, const mr_attention_args *a) {
    NOTE(g, a->n_heads), NOTE(g, a->n_kv_heads), NOTE(g, a->head_dim), NOTE(g, a->rotary_dim);
    NOTE(g, a->inv_freq), NOTE(g, a->block_tokens), NOTE(g, a->k_cache), NOTE(g, a->v_cache);
    NOTE(g, a->q), NOTE(g, a->k), NOTE(g, a->v), NOTE(g, a->out);
    const int rows = gpu_segs_rows(g->segs), pb = gpu_segs_pos_bucket(g->segs);
    const int stride = gpu_segs_stride(g->segs), bt = a->block_tokens;
    int32_t *pos = gpu_segs_host_pos(g->segs), *tab = gpu_segs_host_table(g->segs);
    if (bt != gpu_segs_block_tokens(g->segs) || pb < 1) {
        gpu_segs_fail(g->segs, "attention: block size or positions not those of the key");
        return MR_ERR_INTERNAL;
    }
    for (int s = 0; s < a->n_segments; s++) {
        const mr_segment *sg = &a->segs[s];
        if (sg->len != 1 || sg->start < 0 || sg->start >= rows || sg->pos0 < 0 ||
            sg->pos0 + 1 > pb) {
            gpu_segs_fail(g->segs, "attention: a row outside the segment's key");
            return MR_ERR_INTERNAL;
        }
        const int nb = (int)((sg->pos0 + bt) / bt); /* blocks holding positions 0..pos0 */
        pos[sg->start] = (int32_t)sg->pos0;
        memcpy(tab + (size_t)sg->start * (size_t)stride, a->block_tables[s],
               (size_t)nb * sizeof(int32_t));
    }
    if (replaying(g)) return MR_OK;
    const void *d_freq;
    MR_CHECK(gpu_weight(g, a->inv_freq, (size_t)(a->rotary_dim / 2) * sizeof(float), &d_freq));
    return attention_decode(g, a, d_freq, rows, gpu_segs_dev_pos(g->segs),
                            gpu_segs_dev_table(g->segs), stride, pb);
}

static mr_status do_attention(gpu_be *g, const mr_attention_args *a) {
    if (graphed(g, OP_ATTENTION)) return graph_attention(g, a);
    const int H = a->n_heads, KV = a->n_kv_heads, d = a->head_dim, S = a->n_segments;
    const int bt = a->block_tokens, nt = batch_rows(S, a->segs);
    int stride = 1, all_one = 1, max_pos = 0;
    for (int s = 0; s < S; s++) {
        const int64_t npos = a->segs[s].pos0 + a->segs[s].len;
        if (npos > INT32_MAX - bt) {
            MR_LOG_ERROR(MR_LOG_GPU, "cuda-gpu attention: position %lld out of range",
                         (long long)npos);
            return MR_ERR_INVALID;
        }
        const int nb = (int)((npos + bt - 1) / bt);
        stride = nb > stride ? nb : stride;
        all_one &= a->segs[s].len == 1;
        max_pos = (int)npos > max_pos ? (int)npos : max_pos;
    }
    const void *d_freq;
    MR_CHECK(gpu_weight(g, a->inv_freq, (size_t)(a->rotary_dim / 2) * sizeof(float), &d_freq));
    const int rows = all_one ? nt : S;
    const size_t n_tab = (size_t)rows * (size_t)stride, n_all = n_tab + (all_one ? (size_t)nt : 0);
    void *hp, *d_tab;
    MR_CHECK(gpu_pin_take(g, n_all * sizeof(int32_t), &hp));
    int32_t *tab = hp, *pos = tab + n_tab;
    memset(tab, 0, n_all * sizeof(int32_t));
    if (all_one)
        for (int i = 0; i < nt; i++) pos[i] = -1;
    for (int s = 0; s < S; s++) {
        const mr_segment *sg = &a->segs[s];
        const int nb = (int)((sg->pos0 + sg->len + bt - 1) / bt);
        const int r = all_one ? sg->start : s;
        memcpy(tab + (size_t)r * (size_t)stride, a->block_tables[s], (size_t)nb * sizeof(int32_t));
        if (all_one) pos[r] = (int32_t)sg->pos0;
    }
    MR_CHECK(gpu_scratch(g, S_TAB, n_all * sizeof(int32_t), &d_tab));
    MR_CUDA_CHECK(
        cudaMemcpyAsync(d_tab, hp, n_all * sizeof(int32_t), cudaMemcpyHostToDevice, g->st));
    uint16_t *kc = (uint16_t *)(void *)a->k_cache, *vc = (uint16_t *)(void *)a->v_cache;
    if (all_one)
        return attention_decode(g, a, d_freq, nt, (const int32_t *)d_tab + n_tab, d_tab, stride,
                                max_pos);
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
        .k_cache = kc,
        .v_cache = vc,
        .q = a->q,
        .k = a->k,
        .v = a->v,
        .out = a->out,
        .variant = MR_CUDA_AP_DEFAULT,
    };
    return mr_cuda_attention_prefill(&pa, g->st);
}

void gpu_attention_op(mr_backend *be, const mr_attention_args *a) {
    if (a->n_segments <= 0) return;
    mr_status st = do_attention(use(be), a);
    if (st != MR_OK)
        gpu_op_failed(impl(be), "attention", st, a->out,
                      (size_t)batch_rows(a->n_segments, a->segs) * (size_t)a->n_heads *
                          (size_t)a->head_dim * sizeof(float));
}
