/* bench_attn_slice — issue 7, must-show 3 (and the per-layer decode numbers for must-show 4):
 * prefill of up to 1,048,576 tokens through a real-size 8-layer slice of MiniMax-M1 (layers 0–7:
 * 7 lightning + 1 softmax, the model's order), random weights, on one GPU; then decode steps
 * through the same slice.
 *
 *   bench_attn_slice [--sizes 1M,128K,256K,512K] [--chunk 16K] [--decode-batch 1,16,64,256]
 *                    [--decode-ctx 4K] [--budget-s 0] [--block-tokens 16] [--json out.jsonl]
 *
 * Per layer and chunk of T tokens (the coordinator's order, coordinator/model.c; ops of
 * kernels/cuda/coord_ops.h and cuda_attention.h; activations fp32, weights bf16 unless said):
 *   norm      h = RMSNorm(x) (layer 0: plain; later layers fused with the previous layer's MLP
 *             residual x = α·h + β·y, α = 3.5566, β = 1)
 *   proj_in   lightning: qkv = h·Wqkvᵀ [T][24576] and gate = h·Wgateᵀ [T][8192] (cuBLAS bf16);
 *             softmax: q [T][8192], k, v [T][1024]
 *   attn      lightning prefill from the layer's state slot (fp32 qkv, carried across chunks);
 *             softmax prefill: RoPE, write to the paged bf16 KV cache (block_tokens 16, sized
 *             for the whole prompt), causal attention over all cached positions
 *   norm_gate lightning only: o = sigmoid(gate) ⊙ RMSNorm_1e-6(o)
 *   proj_out  y = o·Woutᵀ [T][6144]
 *   norm      x = α·h + β·y; h = RMSNorm(x) (fused)
 *   router    fp32 router [32][6144], softmax, top-2 (ids/weights computed, then unused)
 *   experts   a dense stand-in with exactly the FLOPs and weight bytes of top-2 of 32 experts:
 *             one SwiGLU FFN of intermediate 2·9216 = 18432 (W13 [36864][6144] → fp32 [T][36864],
 *             SwiGLU → bf16 [T][18432], W2 [6144][18432] → y fp32): 2·3·6144·18432 = 679.5
 *             MFLOP per token and 679.5 MB of bf16 weights per layer, as two experts
 *   closing   after layer 7, the fused residual + RMSNorm the next layer would do (counted as
 *             layer 7's norm)
 *
 * The input is a fresh random fp32 chunk x (the embedding's stand-in). Sizes run one after
 * another with the same weights, each from zero states with its own KV cache of exactly its length;
 * the first (largest) run prints checkpoints (cumulative time at every size below it). Time per
 * stage: CUDA events between the ops, summed over chunks; wall: host clock over the whole
 * prefill (synchronised per chunk). Memory: peak of the device's used memory (cudaMemGetInfo,
 * sampled after every chunk; includes the context and cuBLAS workspaces) and the benchmark's own
 * allocations (weights, activations, states, cache).
 *
 * Decode (first, a few seconds; buffers freed before the prefill runs): steps of one token per
 * sequence through the slice, per stage, median of 10 steps enqueued back to back, at each
 * --decode-batch with --decode-ctx positions per sequence (distinct cache blocks, one state slot
 * per sequence and layer), the fp32 LM head (200064 × 6144) at each batch; and after the first
 * prefill run, batch 1 against its real cache (context = its length). These give L (a lightning
 * layer), S (a softmax layer without its attention), A (softmax attention at a context), E (experts
 * stand-in), H (LM head) for tests/bench/attn_tables.py's 80-layer estimate.
 * --budget-s: a size whose time (predicted from the first run's checkpoints) would not fit in
 * what is left is skipped; a run that passes the budget stops at the next chunk. Exit 77 without
 * a device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "common/log.h"
#include "kernels/backend.h"
#include "kernels/cuda/coord_ops.h"
#include "kernels/cuda/cuda_attention.h"
#include "kernels/cuda/cuda_internal.h"
#include "tests/bench/bench_util.h"

#define HID    6144
#define NH     64
#define NKV    8
#define HD     128
#define ROT    64
#define INNER  (NH * HD)     /* 8192 */
#define QKVW   (3 * NH * HD) /* 24576 */
#define KVW    (NKV * HD)    /* 1024 */
#define NE     32
#define TOPK   2
#define FFN_I  (2 * 9216) /* stand-in intermediate: two experts' worth */
#define NL     8
#define VOCAB  200064
#define ALPHA  3.5565588200778455f
#define EPS    1e-5f
#define EPS_LA 1e-6f
#define THETA  1e7

static int is_softmax(int l) {
    return l % 8 == 7;
}

enum { ST_NORM, ST_PROJ_IN, ST_ATTN, ST_NORM_GATE, ST_PROJ_OUT, ST_ROUTER, ST_EXPERTS, ST_COUNT };
static const char *st_name[ST_COUNT] = {"norm",     "proj_in", "attn",   "norm_gate",
                                        "proj_out", "router",  "experts"};
/* The ops of one layer in order, and the stage each is counted under. */
enum { OPS = 9 };
static const int op_stage[OPS] = {ST_NORM, ST_PROJ_IN, ST_ATTN,    ST_NORM_GATE, ST_PROJ_OUT,
                                  ST_NORM, ST_ROUTER,  ST_EXPERTS, ST_NORM};
/* op 8 (the next layer's fused norm) runs after layer 7 only; earlier layers' op 0 covers it */

typedef struct layer_w {
    float *in_norm, *post_norm;      /* [6144] */
    uint16_t *w_in, *w_gate, *w_out; /* lightning: qkv [24576][6144], gate [8192][6144],
                                        out [6144][8192]; softmax: q|k|v [10240][6144], -, o */
    float *attn_norm;                /* lightning: [8192] */
    float *slope;                    /* lightning: [64] s_{l,j} */
    float *router;                   /* [32][6144] fp32 */
    uint16_t *w13, *w2;              /* stand-in: [36864][6144], [6144][18432] */
} layer_w;

typedef struct slice {
    cudaStream_t st;
    cublasHandle_t blas;
    FILE *json;
    int chunk, bt, have_softmax;
    layer_w w[NL];
    float *inv_freq;
    /* activations, [rows][width] for up to max_rows rows */
    int max_rows;
    float *x, *h, *y, *big, *gate, *o, *k, *v;
    uint16_t *xb, *a;
    int32_t *ids;
    float *wts;
    void *lws;
    size_t lws_bytes;
    float *state[NL]; /* lightning layers: [n_slots][H·d·d] */
    int n_slots;
    uint16_t *kc, *vc; /* softmax layer's cache [n_blocks][bt][KV][d] */
    long n_blocks;
    int32_t *btab; /* device */
    float *dws;    /* attention decode workspace */
    size_t dws_bytes;
    int32_t *slots_d, *pos_d;
    cudaEvent_t ev[NL * OPS + 1];
} slice;

static const size_t HDD = (size_t)NH * HD * HD;

/* ---- setup ---------------------------------------------------------------------------------- */

static float *upload_f32(const float *h, size_t n) {
    float *d = bench_dmalloc(n * sizeof *d);
    CK(cudaMemcpy(d, h, n * sizeof *d, cudaMemcpyHostToDevice));
    return d;
}

static float *norm_weight(int n, uint64_t seed) {
    float *hw = malloc((size_t)n * sizeof *hw);
    uint64_t s = seed;
    for (int i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        hw[i] = 0.75f + 0.5f * (float)(s >> 40) / (float)(1 << 24);
    }
    float *d = upload_f32(hw, (size_t)n);
    free(hw);
    return d;
}

static uint16_t *rand_w(size_t rows, size_t cols, uint64_t seed, cudaStream_t st) {
    uint16_t *w = bench_dmalloc(rows * cols * 2);
    bench_fill_bf16(w, rows * cols, seed, 1.0f / sqrtf((float)cols), st);
    return w;
}

static void weights_create(slice *s) {
    for (int l = 0; l < NL; l++) {
        layer_w *w = &s->w[l];
        const uint64_t sd = 1000 + 100 * (uint64_t)l;
        w->in_norm = norm_weight(HID, sd + 1);
        w->post_norm = norm_weight(HID, sd + 2);
        if (!is_softmax(l)) {
            w->w_in = rand_w(QKVW, HID, sd + 3, s->st);
            w->w_gate = rand_w(INNER, HID, sd + 4, s->st);
            w->attn_norm = norm_weight(INNER, sd + 5);
            float sl[NH];
            for (int j = 0; j < NH; j++)
                sl[j] = (float)pow(2.0, -(j + 1) / 8.0) * (float)(1.0 - l / 79.0 + 1e-5);
            w->slope = upload_f32(sl, NH);
        } else {
            w->w_in = rand_w(INNER + 2 * KVW, HID, sd + 3, s->st); /* q | k | v rows */
        }
        w->w_out = rand_w(HID, INNER, sd + 6, s->st);
        w->router = bench_dmalloc((size_t)NE * HID * 4);
        bench_fill_f32(w->router, (size_t)NE * HID, sd + 7, 1.0f / sqrtf(HID), s->st);
        w->w13 = rand_w(2 * FFN_I, HID, sd + 8, s->st);
        w->w2 = rand_w(HID, FFN_I, sd + 9, s->st);
    }
    float inv[ROT / 2];
    for (int c = 0; c < ROT / 2; c++) inv[c] = (float)pow(THETA, -2.0 * c / ROT);
    s->inv_freq = upload_f32(inv, ROT / 2);
    CK(cudaStreamSynchronize(s->st));
}

static void weights_destroy(slice *s) {
    for (int l = 0; l < NL; l++) {
        layer_w *w = &s->w[l];
        bench_dfree(w->in_norm);
        bench_dfree(w->post_norm);
        bench_dfree(w->w_in);
        bench_dfree(w->w_gate);
        bench_dfree(w->attn_norm);
        bench_dfree(w->slope);
        bench_dfree(w->w_out);
        bench_dfree(w->router);
        bench_dfree(w->w13);
        bench_dfree(w->w2);
    }
    bench_dfree(s->inv_freq);
}

static void acts_create(slice *s, int rows) {
    const size_t r = (size_t)rows;
    s->max_rows = rows;
    s->x = bench_dmalloc(r * HID * 4);
    s->h = bench_dmalloc(r * HID * 4);
    s->y = bench_dmalloc(r * HID * 4);
    s->big = bench_dmalloc(r * 2 * FFN_I * 4); /* qkv, q|k|v, or the stand-in's W13 output */
    s->gate = bench_dmalloc(r * INNER * 4);
    s->o = bench_dmalloc(r * INNER * 4);
    s->k = s->big + r * INNER; /* softmax: q in gate, k and v behind it in big */
    s->v = s->k + r * KVW;
    s->xb = bench_dmalloc(r * INNER * 2);
    s->a = bench_dmalloc(r * FFN_I * 2);
    s->ids = bench_dmalloc(r * TOPK * 4);
    s->wts = bench_dmalloc(r * TOPK * 4);
}

static void acts_destroy(slice *s) {
    bench_dfree(s->x);
    bench_dfree(s->h);
    bench_dfree(s->y);
    bench_dfree(s->big);
    bench_dfree(s->gate);
    bench_dfree(s->o);
    bench_dfree(s->xb);
    bench_dfree(s->a);
    bench_dfree(s->ids);
    bench_dfree(s->wts);
    s->x = s->h = s->y = s->big = s->gate = s->o = NULL;
}

/* State pools of n_slots slots per lightning layer, zeroed; slots[i] = i, pos[i] = 0. */
static void states_create(slice *s, int n_slots) {
    s->n_slots = n_slots;
    for (int l = 0; l < NL; l++)
        if (!is_softmax(l)) {
            s->state[l] = bench_dmalloc((size_t)n_slots * HDD * 4);
            CK(cudaMemsetAsync(s->state[l], 0, (size_t)n_slots * HDD * 4, s->st));
        }
    int32_t *ix = malloc((size_t)n_slots * sizeof *ix);
    for (int i = 0; i < n_slots; i++) ix[i] = i;
    s->slots_d = bench_dmalloc((size_t)n_slots * 4);
    s->pos_d = bench_dmalloc((size_t)n_slots * 4);
    CK(cudaMemcpy(s->slots_d, ix, (size_t)n_slots * 4, cudaMemcpyHostToDevice));
    free(ix);
}

static void states_destroy(slice *s) {
    for (int l = 0; l < NL; l++) bench_dfree(s->state[l]), s->state[l] = NULL;
    bench_dfree(s->slots_d);
    bench_dfree(s->pos_d);
    s->slots_d = s->pos_d = NULL;
}

/* KV cache of n_blocks blocks and a block table of `rows` rows of `stride` ids (row r: blocks
 * r·stride ..), plus the decode workspace for `rows` rows. */
static void cache_create(slice *s, long n_blocks, int rows, long stride) {
    s->n_blocks = n_blocks;
    const size_t per = (size_t)s->bt * KVW * 2;
    s->kc = bench_dmalloc((size_t)n_blocks * per);
    s->vc = bench_dmalloc((size_t)n_blocks * per);
    int32_t *t = malloc((size_t)rows * stride * sizeof *t);
    for (size_t i = 0; i < (size_t)rows * stride; i++) t[i] = (int32_t)i;
    s->btab = bench_dmalloc((size_t)rows * stride * 4);
    CK(cudaMemcpy(s->btab, t, (size_t)rows * stride * 4, cudaMemcpyHostToDevice));
    free(t);
#ifdef MR_BENCH_SOFTMAX
    s->dws_bytes = mr_cuda_attention_decode_ws_bytes(rows, NH, HD);
    s->dws = bench_dmalloc(s->dws_bytes);
#endif
}

static void cache_destroy(slice *s) {
    bench_dfree(s->kc);
    bench_dfree(s->vc);
    bench_dfree(s->btab);
    bench_dfree(s->dws);
    s->kc = s->vc = NULL;
    s->btab = NULL;
    s->dws = NULL;
}

/* ---- one layer ------------------------------------------------------------------------------ */

static void linear(slice *s, const uint16_t *w, int rows, int cols, const void *x, mr_dtype xdt,
                   int n, float *y) {
    mr_cuda_linear_args a = {.n = n,
                             .rows = rows,
                             .cols = cols,
                             .w_dtype = MR_DTYPE_BF16,
                             .w = w,
                             .x_dtype = xdt,
                             .x = x,
                             .x_bf16 = s->xb,
                             .y = y};
    CM(mr_cuda_linear(s->blas, &a, s->st));
}

/* Residual + RMSNorm: plain h = RMS(x) when first, else x = α·h + β·y, h = RMS(x). */
static void norm(slice *s, const float *w, int n, int first) {
    mr_cuda_rmsnorm_args a = {.n = n,
                              .dim = HID,
                              .eps = EPS,
                              .w_dtype = MR_DTYPE_F32,
                              .w = w,
                              .x = first ? s->x : s->h,
                              .y = s->h,
                              .add = first ? NULL : s->y,
                              .alpha = ALPHA,
                              .beta = 1.0f,
                              .x_out = first ? NULL : s->x};
    CM(mr_cuda_rmsnorm(&a, s->st));
}

/* What the attention op needs besides the activations. */
typedef struct attn_call {
    int decode;
    /* prefill: one segment at position pos0 of row 0 of the block table */
    long pos0;
    /* decode: n rows, slots s->slots_d, positions s->pos_d, table stride, max_pos */
    long stride;
    int max_pos;
} attn_call;

static void attention(slice *s, int l, int n, const attn_call *c) {
    if (!is_softmax(l)) {
        if (c->decode) {
            mr_cuda_lightning_decode_args a = {.n_heads = NH,
                                               .head_dim = HD,
                                               .slope = s->w[l].slope,
                                               .n = n,
                                               .qkv_dtype = MR_DTYPE_F32,
                                               .qkv = s->big,
                                               .out = s->o,
                                               .slots = s->slots_d,
                                               .state_pool = s->state[l],
                                               .slot_stride = HDD};
            CM(mr_cuda_lightning_decode(&a, s->st));
        } else {
            mr_segment seg = {.start = 0, .len = n, .pos0 = c->pos0};
            int32_t slot = 0;
            mr_cuda_lightning_prefill_args a = {.n_heads = NH,
                                                .head_dim = HD,
                                                .slope = s->w[l].slope,
                                                .qkv_dtype = MR_DTYPE_F32,
                                                .qkv = s->big,
                                                .out = s->o,
                                                .n_segments = 1,
                                                .segs = &seg,
                                                .slots = &slot,
                                                .state_pool = s->state[l],
                                                .slot_stride = HDD,
                                                .ws = s->lws,
                                                .ws_bytes = s->lws_bytes,
                                                .variant = MR_CUDA_LT_DEFAULT};
            CM(mr_cuda_lightning_prefill(&a, s->st));
        }
        return;
    }
#ifdef MR_BENCH_SOFTMAX
    if (c->decode) {
        mr_cuda_attention_decode_args a = {.n_heads = NH,
                                           .n_kv_heads = NKV,
                                           .head_dim = HD,
                                           .rotary_dim = ROT,
                                           .inv_freq = s->inv_freq,
                                           .n = n,
                                           .pos = s->pos_d,
                                           .block_table = s->btab,
                                           .block_table_stride = (int)c->stride,
                                           .block_tokens = s->bt,
                                           .max_pos = c->max_pos,
                                           .k_cache = s->kc,
                                           .v_cache = s->vc,
                                           .q = s->gate,
                                           .k = s->k,
                                           .v = s->v,
                                           .out = s->o,
                                           .ws = s->dws,
                                           .ws_bytes = s->dws_bytes};
        CM(mr_cuda_attention_decode(&a, s->st));
    } else {
        mr_segment seg = {.start = 0, .len = n, .pos0 = c->pos0};
        mr_cuda_attention_prefill_args a = {.n_heads = NH,
                                            .n_kv_heads = NKV,
                                            .head_dim = HD,
                                            .rotary_dim = ROT,
                                            .inv_freq = s->inv_freq,
                                            .n_segments = 1,
                                            .segs = &seg,
                                            .block_table = s->btab,
                                            .block_table_stride = (int)s->n_blocks,
                                            .block_tokens = s->bt,
                                            .k_cache = s->kc,
                                            .v_cache = s->vc,
                                            .q = s->gate,
                                            .k = s->k,
                                            .v = s->v,
                                            .out = s->o,
                                            .variant = MR_CUDA_AP_DEFAULT};
        CM(mr_cuda_attention_prefill(&a, s->st));
    }
#else
    (void)n, (void)c;
#endif
}

/* One layer over n rows; records an event after each op into ev[0..7] (ev[-1] was recorded
 * before). The softmax layer's q goes to s->gate, k and v into s->big behind it. */
static void layer(slice *s, int l, int n, const attn_call *c, cudaEvent_t *ev) {
    const layer_w *w = &s->w[l];
    norm(s, w->in_norm, n, l == 0);
    CK(cudaEventRecord(ev[0], s->st));
    if (!is_softmax(l)) {
        linear(s, w->w_in, QKVW, HID, s->h, MR_DTYPE_F32, n, s->big);
        linear(s, w->w_gate, INNER, HID, s->h, MR_DTYPE_F32, n, s->gate);
    } else {
        /* one GEMM for q | k | v would interleave them per row; three keep the kernels' layout */
        linear(s, w->w_in, INNER, HID, s->h, MR_DTYPE_F32, n, s->gate);
        linear(s, w->w_in + (size_t)INNER * HID, KVW, HID, s->h, MR_DTYPE_F32, n, s->k);
        linear(s, w->w_in + (size_t)(INNER + KVW) * HID, KVW, HID, s->h, MR_DTYPE_F32, n, s->v);
    }
    CK(cudaEventRecord(ev[1], s->st));
    attention(s, l, n, c);
    CK(cudaEventRecord(ev[2], s->st));
    if (!is_softmax(l)) {
        mr_cuda_norm_gate_args g = {.n = n,
                                    .dim = INNER,
                                    .eps = EPS_LA,
                                    .w_dtype = MR_DTYPE_F32,
                                    .w = w->attn_norm,
                                    .o = s->o,
                                    .gate = s->gate,
                                    .out = s->o};
        CM(mr_cuda_norm_gate(&g, s->st));
    }
    CK(cudaEventRecord(ev[3], s->st));
    linear(s, w->w_out, HID, INNER, s->o, MR_DTYPE_F32, n, s->y);
    CK(cudaEventRecord(ev[4], s->st));
    norm(s, w->post_norm, n, 0);
    CK(cudaEventRecord(ev[5], s->st));
    mr_cuda_route_args r = {.n = n,
                            .dim = HID,
                            .n_experts = NE,
                            .k = TOPK,
                            .gate_dtype = MR_DTYPE_F32,
                            .gate = w->router,
                            .x = s->h,
                            .ids = s->ids,
                            .wts = s->wts};
    CM(mr_cuda_route(&r, s->st));
    CK(cudaEventRecord(ev[6], s->st));
    linear(s, w->w13, 2 * FFN_I, HID, s->h, MR_DTYPE_F32, n, s->big);
    CM(mr_cuda_swiglu_launch(s->big, 1, 2 * FFN_I, 0, n, FFN_I, s->a, NULL, FFN_I, s->st));
    linear(s, w->w2, HID, FFN_I, s->a, MR_DTYPE_BF16, n, s->y);
    CK(cudaEventRecord(ev[7], s->st));
}

/* All 8 layers and the closing norm; ev[0] first, then 8 per layer, then one: NL·OPS + 1
 * events, interval i (ev[i] → ev[i+1]) is op i % OPS of layer i / OPS (op 8: next layer's norm,
 * which for l < 7 is empty: layer l+1's op 0 does it). */
static void slice_pass(slice *s, int n, const attn_call *c, cudaEvent_t *ev) {
    CK(cudaEventRecord(ev[0], s->st));
    for (int l = 0; l < NL; l++) {
        layer(s, l, n, c, ev + l * OPS + 1);
        if (l + 1 < NL) CK(cudaEventRecord(ev[l * OPS + OPS], s->st));
    }
    norm(s, s->w[0].in_norm, n, 0); /* the next slice's input norm, with the MLP residual */
    CK(cudaEventRecord(ev[NL * OPS], s->st));
}

/* Adds the intervals of one pass into acc[NL][ST_COUNT] (ms). */
static void pass_times(cudaEvent_t *ev, double acc[NL][ST_COUNT]) {
    for (int i = 0; i < NL * OPS; i++) {
        float ms;
        CK(cudaEventElapsedTime(&ms, ev[i], ev[i + 1]));
        acc[i / OPS][op_stage[i % OPS]] += ms;
    }
}

static double used_gib(void) {
    size_t fr, tot;
    CK(cudaMemGetInfo(&fr, &tot));
    return (double)(tot - fr) / (1 << 30);
}

/* ---- prefill -------------------------------------------------------------------------------- */

typedef struct run_result {
    long done; /* tokens processed (< n when stopped by the budget) */
    double wall_s, peak_used_gib, peak_bench_gib;
    double t[NL][ST_COUNT]; /* ms summed over chunks */
} run_result;

static void print_split(const char *label, long n, double wall, const double t[NL][ST_COUNT]) {
    double lin[ST_COUNT] = {0}, sm[ST_COUNT] = {0}, lin_tot = 0, sm_tot = 0;
    for (int l = 0; l < NL; l++)
        for (int k = 0; k < ST_COUNT; k++) {
            if (is_softmax(l))
                sm[k] += t[l][k], sm_tot += t[l][k];
            else
                lin[k] += t[l][k], lin_tot += t[l][k];
        }
    printf("%s %8ld tokens: wall %.2f s; 7 lightning layers %.2f s, softmax layer %.2f s\n", label,
           n, wall, lin_tot * 1e-3, sm_tot * 1e-3);
    printf("   %-10s %12s %12s\n", "stage", "lightning/7", "softmax");
    for (int k = 0; k < ST_COUNT; k++)
        printf("   %-10s %10.1f ms %10.1f ms\n", st_name[k], lin[k] / 7, sm[k]);
}

static void json_split(FILE *json, const char *op, long n, long size, double wall_ms,
                       const double t[NL][ST_COUNT], const char *extra) {
    char buf[2048];
    int p = 0;
    double lin_tot = 0, sm_tot = 0;
    for (int l = 0; l < NL; l++)
        for (int k = 0; k < ST_COUNT; k++) *(is_softmax(l) ? &sm_tot : &lin_tot) += t[l][k];
    p += snprintf(buf + p, sizeof buf - (size_t)p,
                  "{\"op\":\"%s\",\"impl\":\"moerack\",\"n\":%ld,\"ctx\":0,\"ms\":%.3f,"
                  "\"size\":%ld,\"lin_ms\":%.3f,\"sm_ms\":%.3f",
                  op, n, wall_ms, size, lin_tot, sm_tot);
    for (int k = 0; k < ST_COUNT; k++) {
        double lin = 0;
        for (int l = 0; l < NL; l++)
            if (!is_softmax(l)) lin += t[l][k];
        p += snprintf(buf + p, sizeof buf - (size_t)p, ",\"lin_%s_ms\":%.3f,\"sm_%s_ms\":%.3f",
                      st_name[k], lin, st_name[k], t[NL - 1][k]);
    }
    bench_json(json, "%s%s}", buf, extra ? extra : "");
}

/* Prefill of n tokens from zero states; checkpoints (cumulative) at the sizes in cps[], their
 * wall times (s since the start) into cp_wall[] (0 when not reached). */
static run_result prefill(slice *s, long n, const long *cps, int n_cps, double *cp_wall,
                          double deadline) {
    run_result r;
    memset(&r, 0, sizeof r);
    const long n_blocks = (n + s->bt - 1) / s->bt + 1;
    cache_create(s, n_blocks, 1, n_blocks);
    for (int l = 0; l < NL; l++)
        if (s->state[l]) CK(cudaMemsetAsync(s->state[l], 0, HDD * 4, s->st));
    bench_dmem_reset_peak();
    double peak = used_gib();
    CK(cudaStreamSynchronize(s->st));
    const double t0 = bench_now_s();
    int cp = 0;
    for (long s0 = 0; s0 < n; s0 += s->chunk) {
        const int T = (int)(n - s0 < s->chunk ? n - s0 : s->chunk);
        bench_fill_f32(s->x, (size_t)T * HID, 7000 + (uint64_t)s0, 1.0f, s->st);
        attn_call c = {.decode = 0, .pos0 = s0};
        slice_pass(s, T, &c, s->ev);
        CK(cudaStreamSynchronize(s->st));
        CK(cudaGetLastError());
        pass_times(s->ev, r.t);
        const double u = used_gib();
        peak = u > peak ? u : peak;
        r.done = s0 + T;
        while (cp < n_cps && cps[cp] <= r.done) {
            if (cps[cp] == r.done && cps[cp] < n) {
                cp_wall[cp] = bench_now_s() - t0;
                char extra[160];
                snprintf(extra, sizeof extra, ",\"used_gib\":%.2f", u);
                json_split(s->json, "slice_checkpoint", r.done, n, (bench_now_s() - t0) * 1e3, r.t,
                           extra);
            }
            cp++;
        }
        if (deadline > 0 && bench_now_s() > deadline && r.done < n) {
            printf("budget: stopped after %ld of %ld tokens\n", r.done, n);
            break;
        }
    }
    r.wall_s = bench_now_s() - t0;
    r.peak_used_gib = peak;
    r.peak_bench_gib = (double)bench_dmem_peak() / (1 << 30);
    /* the output must be finite: the last row of h */
    float last[HID];
    const int T_last = (int)((r.done - 1) % s->chunk) + 1;
    CK(cudaMemcpy(last, s->h + (size_t)(T_last - 1) * HID, sizeof last, cudaMemcpyDeviceToHost));
    double ss = 0;
    for (int i = 0; i < HID; i++) ss += (double)last[i] * last[i];
    if (!isfinite(ss)) {
        fprintf(stderr, "slice output not finite after %ld tokens\n", r.done);
        exit(1);
    }
    return r;
}

/* ---- decode --------------------------------------------------------------------------------- */

enum { DEC_STEPS = 10, DEC_WARM = 3 };

/* Median per stage over DEC_STEPS steps of n rows, and the median step time. */
static void decode_steps(slice *s, int n, const attn_call *c, double med[NL][ST_COUNT],
                         double *step_ms) {
    static cudaEvent_t ev[DEC_STEPS][NL * OPS + 1];
    static int have_ev;
    if (!have_ev) {
        for (int i = 0; i < DEC_STEPS; i++)
            for (int j = 0; j < NL * OPS + 1; j++) CK(cudaEventCreate(&ev[i][j]));
        have_ev = 1;
    }
    for (int i = 0; i < DEC_WARM; i++) {
        bench_fill_f32(s->x, (size_t)n * HID, 9000 + (uint64_t)i, 1.0f, s->st);
        slice_pass(s, n, c, ev[0]);
    }
    for (int i = 0; i < DEC_STEPS; i++) {
        bench_fill_f32(s->x, (size_t)n * HID, 9100 + (uint64_t)i, 1.0f, s->st);
        slice_pass(s, n, c, ev[i]);
    }
    CK(cudaStreamSynchronize(s->st));
    CK(cudaGetLastError());
    double per[DEC_STEPS][NL][ST_COUNT], tot[DEC_STEPS], v[DEC_STEPS];
    memset(per, 0, sizeof per);
    for (int i = 0; i < DEC_STEPS; i++) {
        pass_times(ev[i], per[i]);
        float ms;
        CK(cudaEventElapsedTime(&ms, ev[i][0], ev[i][NL * OPS]));
        tot[i] = ms;
    }
    for (int l = 0; l < NL; l++)
        for (int k = 0; k < ST_COUNT; k++) {
            for (int i = 0; i < DEC_STEPS; i++) v[i] = per[i][l][k];
            med[l][k] = bench_median(v, DEC_STEPS);
        }
    *step_ms = bench_median(tot, DEC_STEPS);
}

static void report_decode(slice *s, int n, long ctx, const double med[NL][ST_COUNT],
                          double step_ms) {
    double lin = 0, sm_rest = 0, sm_attn = med[NL - 1][ST_ATTN], lin_attn = 0, router = 0,
           experts = 0;
    for (int l = 0; l < NL; l++) {
        router += med[l][ST_ROUTER];
        experts += med[l][ST_EXPERTS];
        for (int k = 0; k < ST_COUNT; k++) {
            if (k == ST_EXPERTS) continue;
            if (!is_softmax(l))
                lin += med[l][k];
            else if (k != ST_ATTN)
                sm_rest += med[l][k];
        }
        if (!is_softmax(l)) lin_attn += med[l][ST_ATTN];
    }
    /* L: one lightning layer without experts; S: the softmax layer without attention and
     * experts; A: softmax attention; E: experts stand-in per layer; R: router per layer */
    bench_json(s->json,
               "{\"op\":\"slice_decode\",\"impl\":\"moerack\",\"n\":%d,\"ctx\":%ld,\"ms\":%.4f,"
               "\"lin_layer_ms\":%.4f,\"lin_attn_ms\":%.4f,\"sm_rest_ms\":%.4f,"
               "\"sm_attn_ms\":%.4f,\"router_ms\":%.4f,\"experts_ms\":%.4f,\"softmax_attn\":%s}",
               n, ctx, step_ms, lin / 7, lin_attn / 7, sm_rest, sm_attn, router / NL, experts / NL,
               s->have_softmax ? "true" : "false");
    printf("decode batch %3d ctx %7ld: step %.3f ms; lightning layer %.3f ms (attention %.3f), "
           "softmax layer w/o attention %.3f ms, softmax attention %.3f ms, router %.4f ms, "
           "experts stand-in %.3f ms per layer\n",
           n, ctx, step_ms, lin / 7, lin_attn / 7, sm_rest, sm_attn, router / NL, experts / NL);
}

/* Decode at batch n, ctx positions per sequence (positions ctx-1, distinct blocks). */
static void decode_batch(slice *s, int n, long ctx) {
    const long stride = (ctx + s->bt - 1) / s->bt;
    cache_create(s, (long)n * stride, n, stride);
    const size_t per = (size_t)s->bt * KVW;
    bench_fill_bf16(s->kc, (size_t)n * stride * per, 11000 + (uint64_t)n, 1.0f, s->st);
    bench_fill_bf16(s->vc, (size_t)n * stride * per, 12000 + (uint64_t)n, 1.0f, s->st);
    int32_t *pos = malloc((size_t)n * 4);
    for (int i = 0; i < n; i++) pos[i] = (int32_t)(ctx - 1);
    CK(cudaMemcpy(s->pos_d, pos, (size_t)n * 4, cudaMemcpyHostToDevice));
    free(pos);
    for (int l = 0; l < NL; l++)
        if (s->state[l])
            bench_fill_f32(s->state[l], (size_t)n * HDD, 13000 + (uint64_t)l, 0.5f, s->st);
    attn_call c = {.decode = 1, .stride = stride, .max_pos = (int)ctx};
    double med[NL][ST_COUNT], step;
    decode_steps(s, n, &c, med, &step);
    report_decode(s, n, ctx, med, step);
    cache_destroy(s);
}

/* Final RMSNorm + fp32 LM head [200064][6144] + greedy argmax at each batch. */
static void lm_head(slice *s, const long *batch, int nb) {
    float *w = bench_dmalloc((size_t)VOCAB * HID * 4);
    long max_b = 1;
    for (int i = 0; i < nb; i++) max_b = batch[i] > max_b ? batch[i] : max_b;
    float *logits = bench_dmalloc((size_t)max_b * VOCAB * 4);
    int32_t *tok = bench_dmalloc((size_t)max_b * 4);
    bench_fill_f32(w, (size_t)VOCAB * HID, 14000, 1.0f / sqrtf(HID), s->st);
    for (int i = 0; i < nb; i++) {
        const int n = (int)batch[i];
        double t[DEC_STEPS];
        cudaEvent_t e0, e1;
        CK(cudaEventCreate(&e0));
        CK(cudaEventCreate(&e1));
        for (int it = 0; it < DEC_WARM + DEC_STEPS; it++) {
            CK(cudaEventRecord(e0, s->st));
            norm(s, s->w[0].post_norm, n, 1);
            mr_cuda_linear_args a = {.n = n,
                                     .rows = VOCAB,
                                     .cols = HID,
                                     .w_dtype = MR_DTYPE_F32,
                                     .w = w,
                                     .x_dtype = MR_DTYPE_F32,
                                     .x = s->h,
                                     .y = logits};
            CM(mr_cuda_linear(s->blas, &a, s->st));
            CM(mr_cuda_argmax(logits, n, VOCAB, tok, s->st));
            CK(cudaEventRecord(e1, s->st));
            CK(cudaEventSynchronize(e1));
            float ms;
            CK(cudaEventElapsedTime(&ms, e0, e1));
            if (it >= DEC_WARM) t[it - DEC_WARM] = ms;
        }
        CK(cudaEventDestroy(e0));
        CK(cudaEventDestroy(e1));
        const double ms = bench_median(t, DEC_STEPS);
        const double bytes = (double)VOCAB * HID * 4;
        bench_json(s->json,
                   "{\"op\":\"lm_head\",\"impl\":\"moerack\",\"n\":%d,\"ctx\":0,\"ms\":%.4f,"
                   "\"bytes\":%.6g,\"gbs\":%.1f}",
                   n, ms, bytes, bytes / (ms * 1e-3) * 1e-9);
    }
    bench_dfree(tok);
    bench_dfree(logits);
    bench_dfree(w);
}

/* ---- main ----------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    long sizes[8] = {1048576, 131072, 262144, 524288}, dec_b[8] = {1, 16, 64, 256};
    int n_sizes = 4, n_dec = 4;
    long chunk = 16384, dec_ctx = 4096;
    double budget = 0;
    int bt = 16;
    const char *json_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long tmp[1];
        if (!v) goto usage;
        if (!strcmp(o, "--sizes"))
            n_sizes = bench_parse_list(v, sizes, 8);
        else if (!strcmp(o, "--chunk") && bench_parse_list(v, tmp, 1) == 1)
            chunk = tmp[0];
        else if (!strcmp(o, "--decode-batch"))
            n_dec = bench_parse_list(v, dec_b, 8);
        else if (!strcmp(o, "--decode-ctx") && bench_parse_list(v, tmp, 1) == 1)
            dec_ctx = tmp[0];
        else if (!strcmp(o, "--budget-s"))
            budget = atof(v);
        else if (!strcmp(o, "--block-tokens"))
            bt = atoi(v);
        else if (!strcmp(o, "--json"))
            json_path = v;
        else
            goto usage;
        i++;
    }
    if (chunk < 256 || chunk % 256 || bt < 1 || n_sizes < 1 || dec_ctx < 1) goto usage;
    mr_log_set_level(MR_LOG_LEVEL_WARN);
    struct cudaDeviceProp prop;
    if (bench_probe_device(&prop) != 0) return 77;
    const double t_start = bench_now_s(), deadline = budget > 0 ? t_start + budget : 0;

    slice s;
    memset(&s, 0, sizeof s);
    s.chunk = (int)chunk;
    s.bt = bt;
#ifdef MR_BENCH_SOFTMAX
    s.have_softmax = 1;
#endif
    if (json_path && !(s.json = fopen(json_path, "w"))) {
        perror(json_path);
        return 1;
    }
    CK(cudaStreamCreateWithFlags(&s.st, cudaStreamNonBlocking));
    CB(cublasCreate(&s.blas));
    for (int i = 0; i < NL * OPS + 1; i++) CK(cudaEventCreate(&s.ev[i]));
    const double ctx_gib = used_gib();
    long max_b = 1;
    for (int i = 0; i < n_dec; i++) max_b = dec_b[i] > max_b ? dec_b[i] : max_b;
    printf("device: %s, %d SMs, %.1f GiB; context %.2f GiB%s\n", prop.name,
           prop.multiProcessorCount, (double)prop.totalGlobalMem / (1 << 30), ctx_gib,
           s.have_softmax ? ""
                          : "; softmax kernels not in this build: the softmax layer runs "
                            "its projections only");

    weights_create(&s);
    const double w_gib = (double)bench_dmem_live() / (1 << 30);
    acts_create(&s, (int)(chunk > max_b ? chunk : max_b));
    s.lws_bytes = mr_cuda_lightning_prefill_ws_bytes(NH, HD, MR_CUDA_LIGHTNING_MAX_GROUP / 2);
    s.lws = bench_dmalloc(s.lws_bytes);
    printf("weights %.2f GiB (7 lightning + 1 softmax layer, experts stand-in 679.5 MB each); "
           "activations + workspace for %ld-token chunks %.2f GiB\n",
           w_gib, chunk, (double)bench_dmem_live() / (1 << 30) - w_gib);
    bench_json(s.json,
               "{\"op\":\"slice_setup\",\"impl\":\"moerack\",\"n\":0,\"ctx\":0,\"ms\":0,"
               "\"device\":\"%s\",\"chunk\":%ld,\"block_tokens\":%d,\"weights_gib\":%.3f,"
               "\"fixed_gib\":%.3f,\"context_gib\":%.3f,\"softmax_attn\":%s}",
               prop.name, chunk, bt, w_gib, (double)bench_dmem_live() / (1 << 30), ctx_gib,
               s.have_softmax ? "true" : "false");

    /* decode first (short; its numbers are must-show 4's), at each batch with --decode-ctx
     * positions per sequence, and the LM head; its buffers are freed before the prefill runs */
    states_create(&s, (int)max_b);
    for (int i = 0; i < n_dec; i++) decode_batch(&s, (int)dec_b[i], dec_ctx);
    states_destroy(&s);
    lm_head(&s, dec_b, n_dec);

    /* prefill runs; the first one's checkpoints predict the others */
    states_create(&s, 1);
    long cps[8];
    int n_cps = 0;
    for (int i = 1; i < n_sizes; i++)
        if (sizes[i] < sizes[0]) cps[n_cps++] = sizes[i];
    for (int i = 0; i < n_cps; i++)
        for (int j = i + 1; j < n_cps; j++)
            if (cps[j] < cps[i]) {
                long t = cps[i];
                cps[i] = cps[j];
                cps[j] = t;
            }
    double cp_wall[8] = {0};
    for (int i = 0; i < n_sizes; i++) {
        const long n = sizes[i];
        if (i > 0 && deadline > 0) {
            /* a smaller run repeats a prefix of the first: its checkpoint time predicts it */
            double pred = -1;
            for (int j = 0; j < n_cps; j++)
                if (cps[j] == n && cp_wall[j] > 0) pred = cp_wall[j];
            if (pred < 0 || bench_now_s() + pred * 1.1 + 5 > deadline) {
                printf("budget: %ld tokens skipped (predicted %.0f s)\n", n, pred);
                continue;
            }
        }
        run_result r = prefill(&s, n, i == 0 ? cps : NULL, i == 0 ? n_cps : 0, cp_wall, deadline);
        char extra[256];
        snprintf(extra, sizeof extra,
                 ",\"done\":%ld,\"peak_used_gib\":%.3f,\"peak_bench_gib\":%.3f,"
                 "\"kv_gib\":%.3f,\"tok_s\":%.0f",
                 r.done, r.peak_used_gib, r.peak_bench_gib,
                 2.0 * (double)s.n_blocks * s.bt * KVW * 2 / (1 << 30), r.done / r.wall_s);
        json_split(s.json, "slice_prefill", r.done, n, r.wall_s * 1e3, r.t, extra);
        print_split("prefill", r.done, r.wall_s, r.t);
        printf("   peak memory: device %.2f GiB used, benchmark allocations %.2f GiB (KV cache "
               "%.2f GiB)\n",
               r.peak_used_gib, r.peak_bench_gib,
               2.0 * (double)s.n_blocks * s.bt * KVW * 2 / (1 << 30));
        if (i == 0 && r.done == n) {
            /* batch-1 decode against this real cache: the next token at position n */
            int32_t p = (int32_t)n;
            CK(cudaMemcpy(s.pos_d, &p, 4, cudaMemcpyHostToDevice));
            attn_call c = {.decode = 1, .stride = s.n_blocks, .max_pos = (int)n + 1};
            double med[NL][ST_COUNT], step;
            decode_steps(&s, 1, &c, med, &step);
            report_decode(&s, 1, n + 1, med, step);
        }
        cache_destroy(&s);
    }

    states_destroy(&s);
    printf("total %.1f s\n", bench_now_s() - t_start);

    bench_dfree(s.lws);
    acts_destroy(&s);
    weights_destroy(&s);
    for (int i = 0; i < NL * OPS + 1; i++) CK(cudaEventDestroy(s.ev[i]));
    CB(cublasDestroy(s.blas));
    CK(cudaStreamDestroy(s.st));
    if (s.json) fclose(s.json);
    return 0;

usage:
    fprintf(stderr,
            "usage: %s [--sizes 1M,128K,256K,512K] [--chunk 16K] [--decode-batch 1,16,64,256]\n"
            "       [--decode-ctx 4K] [--budget-s S] [--block-tokens 16] [--json out.jsonl]\n",
            argv[0]);
    return 2;
}
