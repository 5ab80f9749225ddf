/* bench_cuda_attention — the coordinator's attention kernels (kernels/cuda/cuda_attention.h) at
 * MiniMax-M1's real dims (hidden 6144, 64 heads × 128, 8 KV heads, rotary 64), next to the two
 * ceilings measured in the same run and, with --peer, the PyTorch peers of
 * tests/bench/peer_attention.py (run first, same machine). Issue 7, must-show 2.
 *
 *   bench_cuda_attention [--cases lp,ld,sp,sd] [--lp-tokens 4K,32K,128K] [--ld-batch 1,16,64,256]
 *                        [--sp-tokens 4K,32K,128K] [--sd-batch 1,16,64,256] [--sd-ctx 4K,32K]
 *                        [--lp-group 64] [--block-tokens 16] [--peer peer.jsonl]
 *                        [--json out.jsonl]
 *
 * Cases (one JSON line each, keys op impl n ctx ms flop bytes tflops gbs floor_ms pct_floor;
 * n = tokens for prefill, sequences for decode; ctx = context of softmax decode):
 *  lp  lightning prefill, one sequence of n tokens from a zero state, bf16 qkv [n][64·3·128]
 *      (the raw qkv_proj output; SiLU and split are the kernel's), fp32 out [n][8192]; the
 *      workspace holds --lp-group chunks of 256 tokens. flop = n·H·(4·B·d + 4·d²), B = 256:
 *      the block products of the chunked algorithm as the HF code does them (Q·Kᵀ and (QKᵀ⊙D)·V
 *      over full 256×256 blocks, q·S and the state update; spec §4.5) — the same count for the
 *      peer, so the TFLOP/s are comparable ("effective": the causal half skipped by our kernel
 *      still counts). floor = flop / bf16 GEMM rate.
 *  ld  lightning decode, n sequences one token each, bf16 qkv, fp32 out, fp32 state slots.
 *      bytes = n·(2·H·d·d·4 + H·3·d·2 + H·d·4): each 4 MiB state read and written, qkv read,
 *      out written. floor = bytes / copy bandwidth.
 *  sp  softmax prefill, one sequence of n tokens at position 0: RoPE on fp32 q, k, bf16 paged
 *      cache write, causal flash attention, fp32 out. flop = 2·H·d·n² (Q·Kᵀ and P·V, halved
 *      by the causal mask; spec §4.5); floor = flop / bf16 GEMM rate.
 *  sd  softmax decode, n sequences at position ctx−1 (ctx keys each, distinct cache blocks).
 *      bytes = n·(ctx·KV·d·2·2 + 3·H·d·4 + 3·KV·d·4 + 2·KV·d·2): the bf16 K and V read once;
 *      q, k, v read, q and k written back rotated, out written, the new k, v cached.
 *      floor = bytes / copy bandwidth.
 * Times: median over repetitions of CUDA events around back-to-back calls on one stream, after
 * warm-up. Where a case's working set is under 512 MiB (small decode batches), calls rotate over
 * enough distinct state slots / cache blocks to exceed it, so L2 (50 MB) does not serve them.
 * The softmax cases need the softmax kernels (MR_BENCH_SOFTMAX, set by CMake when
 * kernels/cuda defines them); without them they print "skipped". Exit 77 without a device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "common/log.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_attention.h"
#include "tests/bench/bench_util.h"

/* Prefill tuning variants to time (cuda_attention.h: MR_CUDA_LT_*, MR_CUDA_AP_* bits): the
 * production defaults unless --lp-variant / --sp-variant (0 = no bits). */
static int g_lp_variant = MR_CUDA_LT_DEFAULT, g_sp_variant = MR_CUDA_AP_DEFAULT;

#define HID   6144
#define NH    64
#define NKV   8
#define HD    128
#define ROT   64
#define THETA 1e7
#define BLK   256

#define ROT_SET_BYTES ((size_t)512 << 20) /* rotate inputs until the working set exceeds this */

typedef struct bench {
    double bw, tc; /* copy bytes/s (read + write), bf16 GEMM flop/s */
    FILE *json;
    cudaStream_t st;
    bench_peer peer[256];
    int n_peer;
    float *slope, *inv_freq; /* device [NH], [ROT/2] */
} bench;

/* Summary rows, printed as a table at the end. */
typedef struct row {
    char op[24];
    long n, ctx;
    double ms, metric, pct, peer_ms;
    const char *metric_unit, *peer_impl;
} row;
static row g_rows[128];
static int g_n_rows;

static void add_row(const char *op, long n, long ctx, double ms, double metric, const char *unit,
                    double pct, const char *peer_impl, double peer_ms) {
    if (g_n_rows >= 128) return;
    row *r = &g_rows[g_n_rows++];
    snprintf(r->op, sizeof r->op, "%s", op);
    r->n = n;
    r->ctx = ctx;
    r->ms = ms;
    r->metric = metric;
    r->metric_unit = unit;
    r->pct = pct;
    r->peer_impl = peer_impl;
    r->peer_ms = peer_ms;
}

static int reps_for(double predicted_ms) {
    return predicted_ms > 400 ? 3 : predicted_ms > 50 ? 5 : predicted_ms > 5 ? 9 : 15;
}

/* ---- lightning prefill -------------------------------------------------------------------- */

typedef struct lp_arg {
    mr_cuda_lightning_prefill_args a;
    mr_segment seg;
    int32_t slot;
} lp_arg;

static void lp_run(void *p, int iter, cudaStream_t st) {
    (void)iter; /* the state carries on from call to call: the same work each time */
    lp_arg *la = p;
    CM(mr_cuda_lightning_prefill(&la->a, st));
}

static void bench_lp(bench *b, const long *toks, int nt, int group) {
    long max_n = 0;
    for (int i = 0; i < nt; i++) max_n = toks[i] > max_n ? toks[i] : max_n;
    const size_t qkv_w = (size_t)NH * 3 * HD, hdd = (size_t)NH * HD * HD;
    uint16_t *qkv = bench_dmalloc((size_t)max_n * qkv_w * 2);
    float *out = bench_dmalloc((size_t)max_n * NH * HD * 4);
    float *state = bench_dmalloc(hdd * 4);
    const size_t ws_bytes = mr_cuda_lightning_prefill_ws_bytes(NH, HD, group);
    void *ws = bench_dmalloc(ws_bytes);
    bench_fill_bf16(qkv, (size_t)max_n * qkv_w, 101, 1.0f, b->st);
    CK(cudaMemsetAsync(state, 0, hdd * 4, b->st));
    printf("lightning prefill: workspace %d chunks (%.0f MiB)\n", group,
           (double)ws_bytes / (1 << 20));
    for (int i = 0; i < nt; i++) {
        const long n = toks[i];
        lp_arg la = {.seg = {.start = 0, .len = (int)n, .pos0 = 0}, .slot = 0};
        la.a = (mr_cuda_lightning_prefill_args){.n_heads = NH,
                                                .head_dim = HD,
                                                .slope = b->slope,
                                                .qkv_dtype = MR_DTYPE_BF16,
                                                .qkv = qkv,
                                                .out = out,
                                                .n_segments = 1,
                                                .segs = &la.seg,
                                                .slots = &la.slot,
                                                .state_pool = state,
                                                .slot_stride = hdd,
                                                .ws = ws,
                                                .ws_bytes = ws_bytes,
                                                .variant = g_lp_variant};
        const double flop = (double)n * NH * (4.0 * BLK * HD + 4.0 * HD * HD);
        const double pred = flop / (0.3 * b->tc) * 1e3;
        const int inner = pred < 1.0 ? 10 : 1;
        const double ms = bench_time(lp_run, &la, 2, reps_for(pred * inner), inner, b->st);
        const double tf = flop / (ms * 1e-3) * 1e-12, floor_ms = flop / b->tc * 1e3;
        const double bytes = (double)n * (qkv_w * 2 + NH * HD * 4);
        const double pms =
            bench_peer_ms(b->peer, b->n_peer, "lightning_prefill", "hf_chunked", n, 0);
        bench_json(b->json,
                   "{\"op\":\"lightning_prefill\",\"impl\":\"moerack\",\"n\":%ld,\"ctx\":0,"
                   "\"ms\":%.5f,\"flop\":%.6g,\"bytes\":%.6g,\"tflops\":%.3f,\"gbs\":%.1f,"
                   "\"floor_ms\":%.5f,\"pct_floor\":%.2f,\"group\":%d}",
                   n, ms, flop, bytes, tf, bytes / (ms * 1e-3) * 1e-9, floor_ms,
                   100.0 * floor_ms / ms, group);
        add_row("lightning_prefill", n, 0, ms, tf, "TFLOP/s", 100.0 * floor_ms / ms, "hf_chunked",
                pms);
    }
    bench_dfree(ws);
    bench_dfree(state);
    bench_dfree(out);
    bench_dfree(qkv);
}

/* ---- lightning decode ---------------------------------------------------------------------- */

typedef struct ld_arg {
    mr_cuda_lightning_decode_args a;
    const int32_t *slots; /* device [sets][n] */
    int sets, n;
} ld_arg;

static void ld_run(void *p, int iter, cudaStream_t st) {
    ld_arg *la = p;
    la->a.slots = la->slots + (size_t)(iter % la->sets) * la->n;
    CM(mr_cuda_lightning_decode(&la->a, st));
}

static void bench_ld(bench *b, const long *batch, int nb) {
    const size_t qkv_w = (size_t)NH * 3 * HD, hdd = (size_t)NH * HD * HD;
    const size_t state_bytes = hdd * 4;
    for (int i = 0; i < nb; i++) {
        const int n = (int)batch[i];
        int sets = (int)((ROT_SET_BYTES + (size_t)n * state_bytes - 1) / ((size_t)n * state_bytes));
        if (sets < 1) sets = 1;
        const size_t n_slots = (size_t)sets * n;
        float *pool = bench_dmalloc(n_slots * state_bytes);
        uint16_t *qkv = bench_dmalloc((size_t)n * qkv_w * 2);
        float *out = bench_dmalloc((size_t)n * NH * HD * 4);
        int32_t *slots_h = malloc(n_slots * sizeof *slots_h), *slots;
        for (size_t s = 0; s < n_slots; s++) slots_h[s] = (int32_t)s;
        slots = bench_dmalloc(n_slots * sizeof *slots);
        CK(cudaMemcpy(slots, slots_h, n_slots * sizeof *slots, cudaMemcpyHostToDevice));
        free(slots_h);
        bench_fill_f32(pool, n_slots * hdd, 200 + n, 0.5f, b->st);
        bench_fill_bf16(qkv, (size_t)n * qkv_w, 300 + n, 1.0f, b->st);
        ld_arg la = {.slots = slots, .sets = sets, .n = n};
        la.a = (mr_cuda_lightning_decode_args){.n_heads = NH,
                                               .head_dim = HD,
                                               .slope = b->slope,
                                               .n = n,
                                               .qkv_dtype = MR_DTYPE_BF16,
                                               .qkv = qkv,
                                               .out = out,
                                               .slots = slots,
                                               .state_pool = pool,
                                               .slot_stride = hdd};
        const double bytes = (double)n * (2.0 * state_bytes + qkv_w * 2 + NH * HD * 4);
        const double floor_ms = bytes / b->bw * 1e3;
        const int inner = 20;
        const double ms = bench_time(ld_run, &la, 3 * sets, 15, inner, b->st);
        const double gbs = bytes / (ms * 1e-3) * 1e-9;
        const double pms =
            bench_peer_ms(b->peer, b->n_peer, "lightning_decode", "hf_recurrent", n, 0);
        bench_json(b->json,
                   "{\"op\":\"lightning_decode\",\"impl\":\"moerack\",\"n\":%d,\"ctx\":0,"
                   "\"ms\":%.5f,\"flop\":%.6g,\"bytes\":%.6g,\"tflops\":%.3f,\"gbs\":%.1f,"
                   "\"floor_ms\":%.5f,\"pct_floor\":%.2f,\"sets\":%d}",
                   n, ms, (double)n * NH * 5.0 * HD * HD, bytes,
                   (double)n * NH * 5.0 * HD * HD / (ms * 1e-3) * 1e-12, gbs, floor_ms,
                   100.0 * floor_ms / ms, sets);
        add_row("lightning_decode", n, 0, ms, gbs, "GB/s", 100.0 * floor_ms / ms, "hf_recurrent",
                pms);
        bench_dfree(slots);
        bench_dfree(out);
        bench_dfree(qkv);
        bench_dfree(pool);
    }
}

/* ---- softmax prefill and decode ------------------------------------------------------------ */

#ifdef MR_BENCH_SOFTMAX
typedef struct sp_arg {
    mr_cuda_attention_prefill_args a;
    mr_segment seg;
} sp_arg;

static void sp_run(void *p, int iter, cudaStream_t st) {
    (void)iter; /* q, k are rotated in place again each call: same work, norms kept */
    sp_arg *sa = p;
    CM(mr_cuda_attention_prefill(&sa->a, st));
}

static void bench_sp(bench *b, const long *toks, int nt, int bt) {
    long max_n = 0;
    for (int i = 0; i < nt; i++) max_n = toks[i] > max_n ? toks[i] : max_n;
    const long max_blocks = (max_n + bt - 1) / bt;
    float *q = bench_dmalloc((size_t)max_n * NH * HD * 4);
    float *k = bench_dmalloc((size_t)max_n * NKV * HD * 4);
    float *v = bench_dmalloc((size_t)max_n * NKV * HD * 4);
    float *out = bench_dmalloc((size_t)max_n * NH * HD * 4);
    uint16_t *kc = bench_dmalloc((size_t)max_blocks * bt * NKV * HD * 2);
    uint16_t *vc = bench_dmalloc((size_t)max_blocks * bt * NKV * HD * 2);
    int32_t *bt_h = malloc((size_t)max_blocks * sizeof *bt_h), *btab;
    for (long i = 0; i < max_blocks; i++) bt_h[i] = (int32_t)i;
    btab = bench_dmalloc((size_t)max_blocks * sizeof *btab);
    CK(cudaMemcpy(btab, bt_h, (size_t)max_blocks * sizeof *btab, cudaMemcpyHostToDevice));
    free(bt_h);
    bench_fill_f32(q, (size_t)max_n * NH * HD, 401, 1.0f, b->st);
    bench_fill_f32(k, (size_t)max_n * NKV * HD, 402, 1.0f, b->st);
    bench_fill_f32(v, (size_t)max_n * NKV * HD, 403, 1.0f, b->st);
    for (int i = 0; i < nt; i++) {
        const long n = toks[i];
        sp_arg sa = {.seg = {.start = 0, .len = (int)n, .pos0 = 0}};
        sa.a = (mr_cuda_attention_prefill_args){.n_heads = NH,
                                                .n_kv_heads = NKV,
                                                .head_dim = HD,
                                                .rotary_dim = ROT,
                                                .inv_freq = b->inv_freq,
                                                .n_segments = 1,
                                                .segs = &sa.seg,
                                                .block_table = btab,
                                                .block_table_stride = (int)max_blocks,
                                                .block_tokens = bt,
                                                .k_cache = kc,
                                                .v_cache = vc,
                                                .q = q,
                                                .k = k,
                                                .v = v,
                                                .out = out,
                                                .variant = g_sp_variant};
        const double flop = 2.0 * NH * HD * (double)n * (double)n;
        const double pred = flop / (0.3 * b->tc) * 1e3;
        const int inner = pred < 1.0 ? 10 : 1;
        const double ms =
            bench_time(sp_run, &sa, pred > 400 ? 1 : 2, reps_for(pred * inner), inner, b->st);
        const double tf = flop / (ms * 1e-3) * 1e-12, floor_ms = flop / b->tc * 1e3;
        const double bytes =
            (double)n * (3.0 * NH * HD * 4 + 3.0 * NKV * HD * 4 + 2 * NKV * HD * 2);
        const double pms = bench_peer_ms(b->peer, b->n_peer, "softmax_prefill", "sdpa_flash", n, 0);
        bench_json(b->json,
                   "{\"op\":\"softmax_prefill\",\"impl\":\"moerack\",\"n\":%ld,\"ctx\":0,"
                   "\"ms\":%.5f,\"flop\":%.6g,\"bytes\":%.6g,\"tflops\":%.3f,\"gbs\":%.1f,"
                   "\"floor_ms\":%.5f,\"pct_floor\":%.2f,\"block_tokens\":%d}",
                   n, ms, flop, bytes, tf, bytes / (ms * 1e-3) * 1e-9, floor_ms,
                   100.0 * floor_ms / ms, bt);
        add_row("softmax_prefill", n, 0, ms, tf, "TFLOP/s", 100.0 * floor_ms / ms, "sdpa_flash",
                pms);
    }
    bench_dfree(btab);
    bench_dfree(vc);
    bench_dfree(kc);
    bench_dfree(out);
    bench_dfree(v);
    bench_dfree(k);
    bench_dfree(q);
}

typedef struct sd_arg {
    mr_cuda_attention_decode_args a;
    const int32_t *btab; /* device [sets][n][stride] */
    int sets, n, stride;
} sd_arg;

static void sd_run(void *p, int iter, cudaStream_t st) {
    sd_arg *sa = p;
    sa->a.block_table = sa->btab + (size_t)(iter % sa->sets) * sa->n * sa->stride;
    CM(mr_cuda_attention_decode(&sa->a, st));
}

static void bench_sd(bench *b, const long *batch, int nb, const long *ctxs, int nc, int bt) {
    for (int ci = 0; ci < nc; ci++)
        for (int i = 0; i < nb; i++) {
            const int n = (int)batch[i];
            const long ctx = ctxs[ci];
            const int stride = (int)((ctx + bt - 1) / bt);
            const size_t seq_kv = (size_t)stride * bt * NKV * HD * 2; /* bytes of K (or V) */
            int sets = (int)((ROT_SET_BYTES + 2 * n * seq_kv - 1) / (2 * n * seq_kv));
            if (sets < 1) sets = 1;
            const size_t n_blocks = (size_t)sets * n * stride;
            uint16_t *kc = bench_dmalloc(n_blocks * bt * NKV * HD * 2);
            uint16_t *vc = bench_dmalloc(n_blocks * bt * NKV * HD * 2);
            int32_t *btab_h = malloc(n_blocks * sizeof *btab_h), *btab;
            for (size_t j = 0; j < n_blocks; j++) btab_h[j] = (int32_t)j;
            btab = bench_dmalloc(n_blocks * sizeof *btab);
            CK(cudaMemcpy(btab, btab_h, n_blocks * sizeof *btab, cudaMemcpyHostToDevice));
            free(btab_h);
            int32_t *pos_h = malloc((size_t)n * sizeof *pos_h), *pos;
            for (int j = 0; j < n; j++) pos_h[j] = (int32_t)(ctx - 1);
            pos = bench_dmalloc((size_t)n * sizeof *pos);
            CK(cudaMemcpy(pos, pos_h, (size_t)n * sizeof *pos, cudaMemcpyHostToDevice));
            free(pos_h);
            float *q = bench_dmalloc((size_t)n * NH * HD * 4);
            float *k = bench_dmalloc((size_t)n * NKV * HD * 4);
            float *v = bench_dmalloc((size_t)n * NKV * HD * 4);
            float *out = bench_dmalloc((size_t)n * NH * HD * 4);
            const size_t ws_bytes = mr_cuda_attention_decode_ws_bytes(n, NH, HD);
            float *ws = bench_dmalloc(ws_bytes);
            bench_fill_bf16(kc, n_blocks * bt * NKV * HD, 500 + n, 1.0f, b->st);
            bench_fill_bf16(vc, n_blocks * bt * NKV * HD, 600 + n, 1.0f, b->st);
            bench_fill_f32(q, (size_t)n * NH * HD, 701, 1.0f, b->st);
            bench_fill_f32(k, (size_t)n * NKV * HD, 702, 1.0f, b->st);
            bench_fill_f32(v, (size_t)n * NKV * HD, 703, 1.0f, b->st);
            sd_arg sa = {.btab = btab, .sets = sets, .n = n, .stride = stride};
            sa.a = (mr_cuda_attention_decode_args){.n_heads = NH,
                                                   .n_kv_heads = NKV,
                                                   .head_dim = HD,
                                                   .rotary_dim = ROT,
                                                   .inv_freq = b->inv_freq,
                                                   .n = n,
                                                   .pos = pos,
                                                   .block_table = btab,
                                                   .block_table_stride = stride,
                                                   .block_tokens = bt,
                                                   .max_pos = (int)ctx,
                                                   .k_cache = kc,
                                                   .v_cache = vc,
                                                   .q = q,
                                                   .k = k,
                                                   .v = v,
                                                   .out = out,
                                                   .ws = ws,
                                                   .ws_bytes = ws_bytes};
            const double bytes = (double)n * ((double)ctx * NKV * HD * 2 * 2 + 3.0 * NH * HD * 4 +
                                              3.0 * NKV * HD * 4 + 2.0 * NKV * HD * 2);
            const double flop = (double)n * 4.0 * NH * HD * (double)ctx;
            const double floor_ms = bytes / b->bw * 1e3;
            const int inner = floor_ms < 0.5 ? 20 : 3;
            const double ms = bench_time(sd_run, &sa, 2 * sets, 11, inner, b->st);
            const double gbs = bytes / (ms * 1e-3) * 1e-9;
            const double pms =
                bench_peer_ms(b->peer, b->n_peer, "softmax_decode", "sdpa_flash", n, ctx);
            bench_json(b->json,
                       "{\"op\":\"softmax_decode\",\"impl\":\"moerack\",\"n\":%d,\"ctx\":%ld,"
                       "\"ms\":%.5f,\"flop\":%.6g,\"bytes\":%.6g,\"tflops\":%.3f,\"gbs\":%.1f,"
                       "\"floor_ms\":%.5f,\"pct_floor\":%.2f,\"sets\":%d,\"block_tokens\":%d}",
                       n, ctx, ms, flop, bytes, flop / (ms * 1e-3) * 1e-12, gbs, floor_ms,
                       100.0 * floor_ms / ms, sets, bt);
            add_row("softmax_decode", n, ctx, ms, gbs, "GB/s", 100.0 * floor_ms / ms, "sdpa_flash",
                    pms);
            bench_dfree(ws);
            bench_dfree(out);
            bench_dfree(v);
            bench_dfree(k);
            bench_dfree(q);
            bench_dfree(pos);
            bench_dfree(btab);
            bench_dfree(vc);
            bench_dfree(kc);
        }
}
#endif

/* ---- main ----------------------------------------------------------------------------------- */

static void print_table(void) {
    printf("\n%-18s %8s %6s %11s %11s %9s %8s %-13s %11s %8s\n", "op", "n", "ctx", "ms", "metric",
           "unit", "%floor", "peer", "peer ms", "speedup");
    for (int i = 0; i < g_n_rows; i++) {
        const row *r = &g_rows[i];
        printf("%-18s %8ld %6ld %11.4f %11.2f %9s %7.1f%% %-13s %11.4f %8.2f\n", r->op, r->n,
               r->ctx, r->ms, r->metric, r->metric_unit, r->pct, r->peer_impl, r->peer_ms,
               r->peer_ms > 0 ? r->peer_ms / r->ms : 0.0);
    }
    printf("(%%floor = physical floor / time: lightning_prefill and softmax_prefill against the "
           "bf16 GEMM rate, decode against the copy bandwidth; speedup = peer ms / ms)\n");
}

static int has_case(const char *cases, const char *c) {
    size_t l = strlen(c);
    for (const char *p = cases; (p = strstr(p, c)) != NULL; p += l)
        if ((p == cases || p[-1] == ',') && (p[l] == 0 || p[l] == ',')) return 1;
    return 0;
}

int main(int argc, char **argv) {
    long lp_t[8] = {4096, 32768, 131072}, ld_b[8] = {1, 16, 64, 256};
    long sp_t[8] = {4096, 32768, 131072}, sd_b[8] = {1, 16, 64, 256}, sd_c[8] = {4096, 32768};
    int n_lp = 3, n_ld = 4, n_sp = 3, n_sdb = 4, n_sdc = 2, group = 64, bt = 16;
    const char *cases = "lp,ld,sp,sd", *peer_path = NULL, *json_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) goto usage;
        if (!strcmp(o, "--cases"))
            cases = v;
        else if (!strcmp(o, "--lp-tokens"))
            n_lp = bench_parse_list(v, lp_t, 8);
        else if (!strcmp(o, "--ld-batch"))
            n_ld = bench_parse_list(v, ld_b, 8);
        else if (!strcmp(o, "--sp-tokens"))
            n_sp = bench_parse_list(v, sp_t, 8);
        else if (!strcmp(o, "--sd-batch"))
            n_sdb = bench_parse_list(v, sd_b, 8);
        else if (!strcmp(o, "--sd-ctx"))
            n_sdc = bench_parse_list(v, sd_c, 8);
        else if (!strcmp(o, "--lp-group"))
            group = atoi(v);
        else if (!strcmp(o, "--block-tokens"))
            bt = atoi(v);
        else if (!strcmp(o, "--lp-variant"))
            g_lp_variant = atoi(v);
        else if (!strcmp(o, "--sp-variant"))
            g_sp_variant = atoi(v);
        else if (!strcmp(o, "--peer"))
            peer_path = v;
        else if (!strcmp(o, "--json"))
            json_path = v;
        else
            goto usage;
        i++;
    }
    if (group < 1 || bt < 1) goto usage;
    mr_log_set_level(MR_LOG_LEVEL_WARN);

    struct cudaDeviceProp prop;
    if (bench_probe_device(&prop) != 0) return 77;
    bench b = {.json = NULL};
    if (json_path && !(b.json = fopen(json_path, "w"))) {
        perror(json_path);
        return 1;
    }
    b.n_peer = bench_peer_load(peer_path, b.peer, 256);
    CK(cudaStreamCreateWithFlags(&b.st, cudaStreamNonBlocking));
    b.bw = bench_copy_bw();
    b.tc = bench_gemm_rate();
    size_t fr, tot;
    CK(cudaMemGetInfo(&fr, &tot));
    printf("device: %s, %d SMs, L2 %.0f MiB, %.1f GiB (%.1f free)\n", prop.name,
           prop.multiProcessorCount, (double)prop.l2CacheSize / (1 << 20), (double)tot / (1 << 30),
           (double)fr / (1 << 30));
    bench_json(b.json,
               "{\"op\":\"device\",\"impl\":\"moerack\",\"n\":0,\"ctx\":0,\"ms\":0,"
               "\"name\":\"%s\",\"sms\":%d,\"copy_gbs\":%.1f,\"gemm_tflops\":%.1f}",
               prop.name, prop.multiProcessorCount, b.bw * 1e-9, b.tc * 1e-12);
    printf("measured: copy bandwidth %.0f GB/s (read + write), bf16 GEMM %.0f TFLOP/s (8192^3); "
           "%d peer lines\n",
           b.bw * 1e-9, b.tc * 1e-12, b.n_peer);

    /* layer 0's decay rates (spec §3.3.2) and the RoPE frequencies (§3.4.2) */
    float slope_h[NH], inv_h[ROT / 2];
    for (int j = 0; j < NH; j++)
        slope_h[j] = (float)pow(2.0, -(j + 1) / 8.0) * (float)(1.0 - 0.0 / 79 + 1e-5);
    for (int c = 0; c < ROT / 2; c++) inv_h[c] = (float)pow(THETA, -2.0 * c / ROT);
    b.slope = bench_dmalloc(sizeof slope_h);
    b.inv_freq = bench_dmalloc(sizeof inv_h);
    CK(cudaMemcpy(b.slope, slope_h, sizeof slope_h, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(b.inv_freq, inv_h, sizeof inv_h, cudaMemcpyHostToDevice));

    const double t0 = bench_now_s();
    if (has_case(cases, "lp")) bench_lp(&b, lp_t, n_lp, group);
    if (has_case(cases, "ld")) bench_ld(&b, ld_b, n_ld);
#ifdef MR_BENCH_SOFTMAX
    if (has_case(cases, "sp")) bench_sp(&b, sp_t, n_sp, bt);
    if (has_case(cases, "sd")) bench_sd(&b, sd_b, n_sdb, sd_c, n_sdc, bt);
#else
    (void)sp_t, (void)sd_b, (void)sd_c, (void)n_sp, (void)n_sdb, (void)n_sdc;
    if (has_case(cases, "sp") || has_case(cases, "sd"))
        printf("softmax prefill/decode: skipped (the softmax kernels are not in this build)\n");
#endif
    print_table();
    printf("total %.1f s\n", bench_now_s() - t0);
    bench_dfree(b.inv_freq);
    bench_dfree(b.slope);
    CK(cudaStreamDestroy(b.st));
    if (b.json) fclose(b.json);
    return 0;

usage:
    fprintf(stderr,
            "usage: %s [--cases lp,ld,sp,sd] [--lp-tokens 4K,32K,128K] [--ld-batch 1,16,64,256]\n"
            "       [--sp-tokens 4K,32K,128K] [--sd-batch 1,16,64,256] [--sd-ctx 4K,32K]\n"
            "       [--lp-group 64] [--block-tokens 16] [--lp-variant N] [--sp-variant N]\n"
            "       [--peer peer.jsonl] [--json out.jsonl]\n",
            argv[0]);
    return 2;
}
