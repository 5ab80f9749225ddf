/* attn_lightning_prefill.cu — chunked lightning-attention prefill (spec §3.3.4) on tensor cores.
 *
 * A segment is cut into chunks of C = 256 tokens from its start (the last one may be shorter,
 * m <= C tokens). For chunk c of a segment, with S_c the state before it (the slot's state for
 * the first chunk):
 *   O[i]    = λ^(i+1) q_i·S_c + Σ_{j<=i} λ^(i−j) (q_i·k_j) v_j           (i < m)
 *   S_(c+1) = λ^m S_c + KV_c,   KV_c = Σ_j λ^(m−1−j) k_jᵀ v_j
 * Three launches per group of chunks (as many as the workspace holds):
 *   1. ltp_kv_kernel   (chunk, head): SiLU(k), SiLU(v) from the raw input, kept in the workspace
 *      as bf16 for launch 3; KV_c on tensor cores (bf16 operands, fp32 accumulation) → fp32.
 *   2. ltp_scan_kernel (float4 of the state, head, run of chunks of one segment): walks the
 *      chunks in order from the slot's state, storing each S_c as a hi + lo bf16 pair (hi =
 *      bf16(S), lo = bf16(S − hi): ~16 significant bits) and the final state back into the slot.
 *   3. ltp_out_kernel  (64-row query tile, head, chunk): O = λ^(i+1)·(q·S_hi + q·S_lo) plus the
 *      causal intra-chunk part, flash-attention style: P = Q·Kᵀ per 64-key tile in registers,
 *      scaled by λ^(i−j) (zero above the diagonal), rounded to bf16, O += P·V; K/V tiles double
 *      buffered with cp.async. Query tiles with more causal work are scheduled first.
 * Chunk and run tables travel by value in the kernel parameters (no upload, graph-capturable).
 * Tuning variants (args.variant, MR_CUDA_LT_* bits; 0 is the plain kernel above, production uses
 * MR_CUDA_LT_DEFAULT = all three), template parameters of the kernels: STATE_HI (launches 2, 3:
 * the hi plane only), DECAY_FOLD (launches 1, 3: the intra-chunk decay folded into q and k16, see
 * ltp_out_kernel; at one token every factor is exactly 1), KV_PIPE (launch 1, bf16 inputs).
 *
 * Workspace per chunk slot of a group, in this order for the whole group:
 *   kv32 [G][H][D][D] fp32 | sb16 [G][H][2][D][D] bf16 (hi plane, lo plane)
 *   | k16 [G][H][C][D] bf16 | v16 [G][H][C][D] bf16   (rows >= m are zero)
 * i.e. H·(8·D² + 4·C·D) bytes per chunk: 16 MiB at H = 64, D = 128. */
#include <string.h>

#include "common/check.h"
#include "kernels/cuda/attn_common.cuh"
#include "kernels/cuda/cuda_attention.h"
#include "kernels/cuda/cuda_check.h"

#define LTP_C     MR_CUDA_LIGHTNING_CHUNK
#define LTP_GMAX  MR_CUDA_LIGHTNING_MAX_GROUP
#define LTP_LOG2E 1.4426950408889634f

enum { LTP_SUB = 64 }; /* rows per sub-block (launch 1) and per query / key tile (launch 3) */

/* One chunk of a group: token rows [row0, row0 + m) of the batch, run = its segment's run. */
typedef struct ltp_chunk {
    int32_t row0;
    int16_t m, run;
} ltp_chunk;

/* The chunks [chunk0, chunk0 + n_chunks) of one segment in this group, in order. */
typedef struct ltp_run {
    int32_t chunk0, n_chunks, slot, pad;
} ltp_run;

typedef struct ltp_group {
    ltp_chunk chunk[LTP_GMAX];
    ltp_run run[LTP_GMAX];
} ltp_group;

/* Device view of one group's workspace and the fixed arguments. */
typedef struct ltp_ctx {
    const float *slope;
    const void *qkv;
    float *out;
    float *state_pool;
    size_t slot_stride;
    int n_heads;
    float *kv32;
    __nv_bfloat16 *sb16, *k16, *v16;
} ltp_ctx;

template <int D> struct ltp_dims {
    static constexpr int LD = D + 8; /* shared row stride (elements): conflict-free ldmatrix */
    static constexpr int NT_KV = 32 * (D / 16); /* launch 1: one warp per 16 state rows */
    /* launch 3 shared memory: Q tile, then S planes or two stages of K and V tiles */
    static constexpr size_t Q_BYTES = (size_t)LTP_SUB * LD * 2;
    static constexpr size_t S_BYTES = (size_t)2 * D * LD * 2;
    static constexpr size_t KV_BYTES = (size_t)2 * 2 * LTP_SUB * LD * 2;
    static constexpr size_t OUT_SMEM = Q_BYTES + (S_BYTES > KV_BYTES ? S_BYTES : KV_BYTES);
};

/* ---- launch 1: SiLU(k), SiLU(v) to bf16, and KV_c ------------------------------------------- */

/* MR_CUDA_LT_DECAY_FOLD applies to the heads with slope < this: k rows are scaled by up to
 * λ^-63 = e^(63·s) in bf16 / fp32, which stays far from overflow below it. */
#define LTP_FOLD_MAX_SLOPE 1.0f

/* grid (chunks, H), NT_KV threads. FOLD: k16 rows hold λ^-(j mod 64)·k_j for the folded heads
 * (see ltp_out_kernel); PIPE (bf16 inputs): the next 64 rows' loads are in flight during the
 * current rows' multiplies. */
template <typename TIn, int D, bool FOLD, bool PIPE>
static __global__ void __launch_bounds__(ltp_dims<D>::NT_KV, 2)
    ltp_kv_kernel(ltp_ctx ctx, const __grid_constant__ ltp_group grp) {
    constexpr int LD = ltp_dims<D>::LD, NT = ltp_dims<D>::NT_KV;
    constexpr int V4 = LTP_SUB * D / 4; /* float4 groups of one sub-block matrix */
    constexpr int PER = V4 / NT;        /* = 8 */
    static_assert(!PIPE || sizeof(TIn) == 2, "PIPE keeps bf16 rows in registers");
    __shared__ __align__(16) __nv_bfloat16 ks[LTP_SUB * LD]; /* λ^(m−1−j)·k_j, rows j */
    __shared__ __align__(16) __nv_bfloat16 vs[LTP_SUB * LD]; /* v_j */

    const int ci = blockIdx.x, h = blockIdx.y, H = ctx.n_heads;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const ltp_chunk ch = grp.chunk[ci];
    const int m = ch.m;
    const float s = ctx.slope[h];
    const bool fold = FOLD && s < LTP_FOLD_MAX_SLOPE;
    const size_t row_stride = (size_t)H * 3 * D;
    const TIn *src =
        static_cast<const TIn *>(ctx.qkv) + (size_t)ch.row0 * row_stride + (size_t)h * 3 * D;
    const size_t ws_head = (size_t)ci * H + h;
    __nv_bfloat16 *k16 = ctx.k16 + ws_head * LTP_C * D, *v16 = ctx.v16 + ws_head * LTP_C * D;

    float acc[D / 8][4];
#pragma unroll
    for (int n = 0; n < D / 8; n++)
#pragma unroll
        for (int r = 0; r < 4; r++) acc[n][r] = 0.0f;

    /* float4 group idx of the sub-block at row j0, raw k and v → SiLU → the workspace rows and
     * the shared operands (rows >= m: silu(0) = 0) */
    auto put = [&](int j0, int idx, float4 kraw, float4 vraw) {
        const int r = idx / (D / 4), c = (idx % (D / 4)) * 4, j = j0 + r;
        const float4 k = attn_silu4(kraw), v = attn_silu4(vraw);
        const float kd = j < m ? expf(-s * (float)(m - 1 - j)) : 0.0f;
        float4 kw = k;
        if (FOLD && fold) {
            const float kf = expf(s * (float)(j & (LTP_SUB - 1)));
            kw = make_float4(kf * k.x, kf * k.y, kf * k.z, kf * k.w);
        }
        *reinterpret_cast<uint2 *>(k16 + (size_t)j * D + c) = attn_pack4_bf16(kw);
        *reinterpret_cast<uint2 *>(v16 + (size_t)j * D + c) = attn_pack4_bf16(v);
        *reinterpret_cast<uint2 *>(ks + r * LD + c) =
            attn_pack4_bf16(make_float4(kd * k.x, kd * k.y, kd * k.z, kd * k.w));
        *reinterpret_cast<uint2 *>(vs + r * LD + c) = attn_pack4_bf16(v);
    };

    /* PIPE: the raw bf16 rows of the next sub-block, four elements per entry */
    uint2 kn[PIPE ? PER : 1], vn[PIPE ? PER : 1];
    auto load_raw = [&](int j0) {
#pragma unroll
        for (int p = 0; p < PER; p++) {
            const int idx = tid + p * NT, r = idx / (D / 4), c = (idx % (D / 4)) * 4;
            const int j = j0 + r;
            kn[p] = vn[p] = make_uint2(0u, 0u);
            if (j < m) {
                kn[p] = *reinterpret_cast<const uint2 *>(src + (size_t)j * row_stride + D + c);
                vn[p] = *reinterpret_cast<const uint2 *>(src + (size_t)j * row_stride + 2 * D + c);
            }
        }
    };
    if constexpr (PIPE) load_raw(0);

    for (int j0 = 0; j0 < m; j0 += LTP_SUB) {
        if constexpr (PIPE) {
#pragma unroll
            for (int p = 0; p < PER; p++)
                put(j0, tid + p * NT, attn_bf16x4_to_f32(kn[p]), attn_bf16x4_to_f32(vn[p]));
            if (j0 + LTP_SUB < m) load_raw(j0 + LTP_SUB); /* lands during the multiplies */
        } else {
#pragma unroll 1 /* two passes of 4 loads per matrix: keeps the accumulators in registers */
            for (int p0 = 0; p0 < PER; p0 += 4) {
                float4 kr[4], vr[4];
#pragma unroll
                for (int p = 0; p < 4; p++) {
                    const int idx = tid + (p0 + p) * NT, r = idx / (D / 4), c = (idx % (D / 4)) * 4;
                    const int j = j0 + r;
                    kr[p] = vr[p] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                    if (j < m) {
                        kr[p] = attn_load4(src + (size_t)j * row_stride + D + c);
                        vr[p] = attn_load4(src + (size_t)j * row_stride + 2 * D + c);
                    }
                }
#pragma unroll
                for (int p = 0; p < 4; p++) put(j0, tid + (p0 + p) * NT, kr[p], vr[p]);
            }
        }
        __syncthreads();
        /* acc[c][e] += Σ_j ks[j][c] vs[j][e]: warp w owns state rows c in [16w, 16w + 16) */
#pragma unroll
        for (int kk = 0; kk < LTP_SUB / 16; kk++) {
            uint32_t a[4];
            attn_ld_a_trans(ks, LD, kk * 16, warp * 16, lane, a);
#pragma unroll
            for (int np = 0; np < D / 16; np++) {
                uint32_t b[4];
                attn_ld_b_kn(vs, LD, kk * 16, np * 16, lane, b);
                attn_mma(acc[2 * np], a[0], a[1], a[2], a[3], b[0], b[1]);
                attn_mma(acc[2 * np + 1], a[0], a[1], a[2], a[3], b[2], b[3]);
            }
        }
        __syncthreads();
    }

    float *kv = ctx.kv32 + ws_head * D * D;
    const int g = lane >> 2, t = lane & 3, c0 = warp * 16 + g;
#pragma unroll
    for (int n = 0; n < D / 8; n++) {
        const int e = n * 8 + 2 * t;
        *reinterpret_cast<float2 *>(kv + (size_t)c0 * D + e) = make_float2(acc[n][0], acc[n][1]);
        *reinterpret_cast<float2 *>(kv + (size_t)(c0 + 8) * D + e) =
            make_float2(acc[n][2], acc[n][3]);
    }
}

/* ---- launch 2: the scan over a run's chunks -------------------------------------------------- */

enum { LTP_SCAN_THREADS = 256 };

/* grid (ceil(D²/4 / 256), H, runs); one float4 of the state per thread. HI: the hi plane only
 * (MR_CUDA_LT_STATE_HI). */
template <int D, bool HI>
static __global__ void __launch_bounds__(LTP_SCAN_THREADS)
    ltp_scan_kernel(ltp_ctx ctx, const __grid_constant__ ltp_group grp) {
    const int idx = blockIdx.x * LTP_SCAN_THREADS + threadIdx.x; /* float4 index in [D][D] */
    if (idx >= D * D / 4) return;
    const int h = blockIdx.y, H = ctx.n_heads;
    const ltp_run run = grp.run[blockIdx.z];
    const float s = ctx.slope[h];
    float4 *state = reinterpret_cast<float4 *>(ctx.state_pool + (size_t)run.slot * ctx.slot_stride +
                                               (size_t)h * D * D) +
                    idx;
    float4 S = *state;
    const float4 *kv = reinterpret_cast<const float4 *>(ctx.kv32) + idx;
    const size_t head_f4 = (size_t)D * D / 4; /* float4s per (chunk, head) */
    float4 next = kv[((size_t)run.chunk0 * H + h) * head_f4];
    for (int c = run.chunk0; c < run.chunk0 + run.n_chunks; c++) {
        const float4 cur = next;
        if (c + 1 < run.chunk0 + run.n_chunks) next = kv[((size_t)(c + 1) * H + h) * head_f4];
        /* S_c as hi + lo bf16 planes for launch 3 */
        __nv_bfloat16 *hi = ctx.sb16 + ((size_t)c * H + h) * 2 * D * D + (size_t)idx * 4;
        const uint2 h4 = attn_pack4_bf16(S);
        const __nv_bfloat162 h01 = *reinterpret_cast<const __nv_bfloat162 *>(&h4.x);
        const __nv_bfloat162 h23 = *reinterpret_cast<const __nv_bfloat162 *>(&h4.y);
        const float4 lo = make_float4(S.x - __low2float(h01), S.y - __high2float(h01),
                                      S.z - __low2float(h23), S.w - __high2float(h23));
        *reinterpret_cast<uint2 *>(hi) = h4;
        if (!HI) *reinterpret_cast<uint2 *>(hi + (size_t)D * D) = attn_pack4_bf16(lo);
        const float dm = expf(-s * (float)grp.chunk[c].m);
        S.x = fmaf(dm, S.x, cur.x);
        S.y = fmaf(dm, S.y, cur.y);
        S.z = fmaf(dm, S.z, cur.z);
        S.w = fmaf(dm, S.w, cur.w);
    }
    *state = S;
}

/* ---- launch 3: the outputs ------------------------------------------------------------------ */

enum { LTP_OUT_THREADS = 128 }; /* 4 warps × 16 query rows */

/* grid (C / 64 query tiles, H, chunks); dynamic shared memory ltp_dims<D>::OUT_SMEM.
 * HI (MR_CUDA_LT_STATE_HI): q·S_hi only. FOLD (MR_CUDA_LT_DECAY_FOLD, heads with slope <
 * LTP_FOLD_MAX_SLOPE): with i0, j0 the first rows of the query and key tiles, q rows are
 * scaled by λ^(i−i0) and the k16 rows hold λ^(j0−j)·k_j, so q'·k' = λ^(i−j−(i0−j0)) q·k: one
 * multiply by λ^(i0−j0) per score (none on the diagonal tile), and q'·S · λ^(i0+1) is the
 * inter-chunk part. */
template <typename TIn, int D, bool HI, bool FOLD>
static __global__ void __launch_bounds__(LTP_OUT_THREADS, 2)
    ltp_out_kernel(ltp_ctx ctx, const __grid_constant__ ltp_group grp) {
    constexpr int LD = ltp_dims<D>::LD, NTILE = D / 8;
    extern __shared__ __align__(16) unsigned char ltp_smem[];
    __nv_bfloat16 *qs = reinterpret_cast<__nv_bfloat16 *>(ltp_smem);
    __nv_bfloat16 *big = qs + LTP_SUB * LD; /* S hi, S lo planes; later K/V stages */

    const int qt = gridDim.x - 1 - blockIdx.x; /* most causal work first */
    const int h = blockIdx.y, ci = blockIdx.z, H = ctx.n_heads;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const ltp_chunk ch = grp.chunk[ci];
    const int m = ch.m, i0 = qt * LTP_SUB;
    if (i0 >= m) return;
    const float l2s = ctx.slope[h] * LTP_LOG2E; /* λ^x = exp2(−l2s·x) */
    const bool fold = FOLD && ctx.slope[h] < LTP_FOLD_MAX_SLOPE;
    constexpr int PLANES = HI ? 1 : 2;
    const size_t ws_head = (size_t)ci * H + h;

    /* S_c planes → shared (async) while the query tile is converted */
    {
        const __nv_bfloat16 *sb = ctx.sb16 + ws_head * 2 * D * D;
        for (int x = tid; x < PLANES * D * D / 8; x += LTP_OUT_THREADS) {
            const int row = x / (D / 8), col = (x % (D / 8)) * 8; /* row in [0, 2D) */
            attn_cp16(big + (size_t)row * LD + col, sb + (size_t)row * D + col);
        }
        attn_cp_commit();
    }
    {
        const size_t row_stride = (size_t)H * 3 * D;
        const TIn *src = static_cast<const TIn *>(ctx.qkv) + (size_t)(ch.row0 + i0) * row_stride +
                         (size_t)h * 3 * D;
        constexpr int PER = LTP_SUB * D / 4 / LTP_OUT_THREADS; /* 2 at D = 16 */
        constexpr int P4 = PER < 4 ? PER : 4;
        static_assert(PER % P4 == 0, "D");
#pragma unroll
        for (int p0 = 0; p0 < PER; p0 += P4) {
            float4 qr[P4];
#pragma unroll
            for (int p = 0; p < P4; p++) {
                const int idx = tid + (p0 + p) * LTP_OUT_THREADS;
                const int r = idx / (D / 4), c = (idx % (D / 4)) * 4;
                qr[p] = i0 + r < m ? attn_load4(src + (size_t)r * row_stride + c)
                                   : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            }
#pragma unroll
            for (int p = 0; p < P4; p++) {
                const int idx = tid + (p0 + p) * LTP_OUT_THREADS;
                const int r = idx / (D / 4), c = (idx % (D / 4)) * 4;
                float4 q = attn_silu4(qr[p]);
                if (FOLD && fold) {
                    const float f = exp2f(-l2s * (float)r); /* λ^(i − i0) */
                    q = make_float4(f * q.x, f * q.y, f * q.z, f * q.w);
                }
                *reinterpret_cast<uint2 *>(qs + r * LD + c) = attn_pack4_bf16(q);
            }
        }
    }
    attn_cp_wait<0>();
    __syncthreads();

    uint32_t qf[D / 16][4];
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) attn_ld_a(qs, LD, warp * 16, kk * 16, lane, qf[kk]);

    /* inter-chunk part: acc = q·(S_hi + S_lo), then × λ^(i+1) per row */
    float acc[NTILE][4];
#pragma unroll
    for (int n = 0; n < NTILE; n++)
#pragma unroll
        for (int r = 0; r < 4; r++) acc[n][r] = 0.0f;
#pragma unroll
    for (int plane = 0; plane < PLANES; plane++) {
        const __nv_bfloat16 *sp = big + (size_t)plane * D * LD;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++)
#pragma unroll
            for (int np = 0; np < D / 16; np++) {
                uint32_t b[4];
                attn_ld_b_kn(sp, LD, kk * 16, np * 16, lane, b);
                attn_mma(acc[2 * np], qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3], b[0], b[1]);
                attn_mma(acc[2 * np + 1], qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3], b[2], b[3]);
            }
    }
    const int ia = i0 + warp * 16 + g, ib = ia + 8; /* this lane's two query rows (in chunk) */
    {
        /* folded: λ^(i0+1) on q' rows, which carry λ^(i − i0) already */
        const float fa = exp2f(-l2s * (float)((FOLD && fold ? i0 : ia) + 1));
        const float fb = exp2f(-l2s * (float)((FOLD && fold ? i0 : ib) + 1));
#pragma unroll
        for (int n = 0; n < NTILE; n++) {
            acc[n][0] *= fa;
            acc[n][1] *= fa;
            acc[n][2] *= fb;
            acc[n][3] *= fb;
        }
    }
    __syncthreads(); /* every warp is done with the S planes */

    /* intra-chunk part over key tiles 0..qt */
    const __nv_bfloat16 *k16 = ctx.k16 + ws_head * LTP_C * D, *v16 = ctx.v16 + ws_head * LTP_C * D;
    auto load_kv = [&](int kt, int stage) {
        __nv_bfloat16 *kd = big + (size_t)stage * 2 * LTP_SUB * LD, *vd = kd + LTP_SUB * LD;
        const __nv_bfloat16 *ksrc = k16 + (size_t)kt * LTP_SUB * D,
                            *vsrc = v16 + (size_t)kt * LTP_SUB * D;
        for (int x = tid; x < LTP_SUB * D / 8; x += LTP_OUT_THREADS) {
            const int row = x / (D / 8), col = (x % (D / 8)) * 8;
            attn_cp16(kd + row * LD + col, ksrc + (size_t)row * D + col);
            attn_cp16(vd + row * LD + col, vsrc + (size_t)row * D + col);
        }
        attn_cp_commit();
    };
    load_kv(0, 0);
    for (int kt = 0; kt <= qt; kt++) {
        if (kt < qt) {
            load_kv(kt + 1, (kt + 1) & 1);
            attn_cp_wait<1>();
        } else {
            attn_cp_wait<0>();
        }
        __syncthreads();
        const __nv_bfloat16 *ks = big + (size_t)(kt & 1) * 2 * LTP_SUB * LD,
                            *vs = ks + LTP_SUB * LD;
        const bool diag = kt == qt;
        /* on the diagonal tile warp w needs keys < 16(w + 1) only */
        const int nt_lim = diag ? 2 * warp + 2 : LTP_SUB / 8;
        float p[LTP_SUB / 8][4];
#pragma unroll
        for (int n = 0; n < LTP_SUB / 8; n++)
#pragma unroll
            for (int r = 0; r < 4; r++) p[n][r] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++)
#pragma unroll
            for (int np = 0; np < LTP_SUB / 16; np++) {
                if (2 * np >= nt_lim) continue;
                uint32_t b[4];
                attn_ld_b_nk(ks, LD, np * 16, kk * 16, lane, b);
                attn_mma(p[2 * np], qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3], b[0], b[1]);
                attn_mma(p[2 * np + 1], qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3], b[2], b[3]);
            }
        /* decay λ^(i−j) and the causal mask, in fp32 */
        if (FOLD && fold) {
            if (diag) {
#pragma unroll
                for (int n = 0; n < LTP_SUB / 8; n++)
#pragma unroll
                    for (int r = 0; r < 4; r++) {
                        const int i = r < 2 ? ia : ib, j = kt * LTP_SUB + n * 8 + 2 * t + (r & 1);
                        if (j > i) p[n][r] = 0.0f;
                    }
            } else {
                const float T = exp2f(-l2s * (float)(LTP_SUB * (qt - kt))); /* λ^(i0 − j0) */
#pragma unroll
                for (int n = 0; n < LTP_SUB / 8; n++)
#pragma unroll
                    for (int r = 0; r < 4; r++) p[n][r] *= T;
            }
        } else {
#pragma unroll
            for (int n = 0; n < LTP_SUB / 8; n++)
#pragma unroll
                for (int r = 0; r < 4; r++) {
                    const int i = r < 2 ? ia : ib, j = kt * LTP_SUB + n * 8 + 2 * t + (r & 1);
                    p[n][r] = j <= i ? p[n][r] * exp2f(-l2s * (float)(i - j)) : 0.0f;
                }
        }
#pragma unroll
        for (int kk = 0; kk < LTP_SUB / 16; kk++) {
            if (diag && kk > warp) continue;
            const uint32_t a0 = attn_pack_bf16(p[2 * kk][0], p[2 * kk][1]);
            const uint32_t a1 = attn_pack_bf16(p[2 * kk][2], p[2 * kk][3]);
            const uint32_t a2 = attn_pack_bf16(p[2 * kk + 1][0], p[2 * kk + 1][1]);
            const uint32_t a3 = attn_pack_bf16(p[2 * kk + 1][2], p[2 * kk + 1][3]);
#pragma unroll
            for (int np = 0; np < D / 16; np++) {
                uint32_t b[4];
                attn_ld_b_kn(vs, LD, kk * 16, np * 16, lane, b);
                attn_mma(acc[2 * np], a0, a1, a2, a3, b[0], b[1]);
                attn_mma(acc[2 * np + 1], a0, a1, a2, a3, b[2], b[3]);
            }
        }
        __syncthreads(); /* the stage is free for the load two tiles ahead */
    }

    /* rows i < m of this tile → out[row0 + i][h·D + e] */
    float *out = ctx.out + (size_t)ch.row0 * H * D + (size_t)h * D;
#pragma unroll
    for (int n = 0; n < NTILE; n++) {
        const int e = n * 8 + 2 * t;
        if (ia < m)
            *reinterpret_cast<float2 *>(out + (size_t)ia * H * D + e) =
                make_float2(acc[n][0], acc[n][1]);
        if (ib < m)
            *reinterpret_cast<float2 *>(out + (size_t)ib * H * D + e) =
                make_float2(acc[n][2], acc[n][3]);
    }
}

/* ---- host --------------------------------------------------------------------------------- */

static size_t ltp_chunk_bytes(int n_heads, int d) {
    return (size_t)n_heads * (8 * (size_t)d * d + 4 * (size_t)LTP_C * d);
}

extern "C" size_t mr_cuda_lightning_prefill_ws_bytes(int n_heads, int head_dim, int max_chunks) {
    if (n_heads <= 0 || head_dim <= 0) return 0;
    if (max_chunks < 1) max_chunks = 1;
    if (max_chunks > LTP_GMAX) max_chunks = LTP_GMAX;
    return ltp_chunk_bytes(n_heads, head_dim) * (size_t)max_chunks;
}

typedef void (*ltp_fn)(ltp_ctx, const ltp_group);

/* The kernels of variant v (MR_CUDA_LT_* bits) at head_dim D for input dtype dt. */
template <int D> struct ltp_kernels { ltp_fn kv, scan, out; };

template <int D, bool HI, bool FOLD> static ltp_kernels<D> ltp_pick_hf(mr_dtype dt, bool pipe) {
    ltp_kernels<D> k;
    if (dt == MR_DTYPE_F32) {
        k.kv = ltp_kv_kernel<float, D, FOLD, false>;
        k.out = ltp_out_kernel<float, D, HI, FOLD>;
    } else {
        k.kv = pipe ? ltp_kv_kernel<__nv_bfloat16, D, FOLD, true>
                    : ltp_kv_kernel<__nv_bfloat16, D, FOLD, false>;
        k.out = ltp_out_kernel<__nv_bfloat16, D, HI, FOLD>;
    }
    k.scan = ltp_scan_kernel<D, HI>;
    return k;
}

template <int D> static ltp_kernels<D> ltp_pick(int v, mr_dtype dt) {
    const bool hi = v & MR_CUDA_LT_STATE_HI, fold = v & MR_CUDA_LT_DECAY_FOLD;
    const bool pipe = v & MR_CUDA_LT_KV_PIPE;
    return hi ? (fold ? ltp_pick_hf<D, true, true>(dt, pipe)
                      : ltp_pick_hf<D, true, false>(dt, pipe))
              : (fold ? ltp_pick_hf<D, false, true>(dt, pipe)
                      : ltp_pick_hf<D, false, false>(dt, pipe));
}

/* The three launches of one group. */
template <int D>
static mr_status ltp_launch_group(const ltp_ctx *ctx, const ltp_group *grp, int n_chunks,
                                  int n_runs, mr_dtype dt, int v, cudaStream_t st) {
    const int H = ctx->n_heads;
    const ltp_kernels<D> k = ltp_pick<D>(v, dt);
    k.kv<<<dim3((unsigned)n_chunks, (unsigned)H), ltp_dims<D>::NT_KV, 0, st>>>(*ctx, *grp);
    MR_CUDA_CHECK_LAUNCH("lightning prefill kv launch");
    const unsigned scan_blocks = (unsigned)((D * D / 4 + LTP_SCAN_THREADS - 1) / LTP_SCAN_THREADS);
    k.scan<<<dim3(scan_blocks, (unsigned)H, (unsigned)n_runs), LTP_SCAN_THREADS, 0, st>>>(*ctx,
                                                                                          *grp);
    MR_CUDA_CHECK_LAUNCH("lightning prefill scan launch");
    const size_t smem = ltp_dims<D>::OUT_SMEM;
    MR_CUDA_CHECK(cudaFuncSetAttribute((const void *)k.out,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    k.out<<<dim3(LTP_C / LTP_SUB, (unsigned)H, (unsigned)n_chunks), LTP_OUT_THREADS, smem, st>>>(
        *ctx, *grp);
    MR_CUDA_CHECK_LAUNCH("lightning prefill out launch");
    return MR_OK;
}

static mr_status ltp_launch(int d, const ltp_ctx *ctx, const ltp_group *grp, int n_chunks,
                            int n_runs, mr_dtype dt, int v, cudaStream_t st) {
    return d == 16   ? ltp_launch_group<16>(ctx, grp, n_chunks, n_runs, dt, v, st)
           : d == 32 ? ltp_launch_group<32>(ctx, grp, n_chunks, n_runs, dt, v, st)
           : d == 64 ? ltp_launch_group<64>(ctx, grp, n_chunks, n_runs, dt, v, st)
                     : ltp_launch_group<128>(ctx, grp, n_chunks, n_runs, dt, v, st);
}

extern "C" mr_status mr_cuda_lightning_prefill(const mr_cuda_lightning_prefill_args *a,
                                               cudaStream_t st) {
    if (!a || a->n_heads <= 0 || a->n_heads > 65535 || a->n_segments < 0 ||
        (a->n_segments > 0 &&
         (!a->segs || !a->slots || !a->slope || !a->qkv || !a->out || !a->state_pool || !a->ws)) ||
        (a->qkv_dtype != MR_DTYPE_F32 && a->qkv_dtype != MR_DTYPE_BF16) ||
        a->slot_stride < (size_t)a->n_heads * a->head_dim * a->head_dim || a->slot_stride % 4 ||
        (uintptr_t)a->state_pool % 16 || (uintptr_t)a->ws % 256 || a->variant < 0 ||
        a->variant >= MR_CUDA_LT_VARIANTS) {
        MR_LOG_ERROR(MR_LOG_GPU, "lightning prefill: bad arguments");
        return MR_ERR_INVALID;
    }
    const int d = a->head_dim, H = a->n_heads;
    if (d != 16 && d != 32 && d != 64 && d != 128) {
        MR_LOG_ERROR(MR_LOG_GPU, "lightning prefill: head_dim %d unsupported (16, 32, 64, 128)", d);
        return MR_ERR_UNSUPPORTED;
    }
    for (int s = 0; s < a->n_segments; s++)
        if (a->segs[s].start < 0 || a->segs[s].len < 0 || a->slots[s] < 0) {
            MR_LOG_ERROR(MR_LOG_GPU, "lightning prefill: segment %d: start %d len %d slot %d", s,
                         a->segs[s].start, a->segs[s].len, (int)a->slots[s]);
            return MR_ERR_INVALID;
        }
    const size_t per_chunk = ltp_chunk_bytes(H, d);
    size_t g_cap = a->ws_bytes / per_chunk;
    if (g_cap < 1) {
        MR_LOG_ERROR(MR_LOG_GPU, "lightning prefill: workspace %zu bytes < one chunk (%zu)",
                     a->ws_bytes, per_chunk);
        return MR_ERR_INVALID;
    }
    const int G = g_cap > LTP_GMAX ? LTP_GMAX : (int)g_cap;

    ltp_ctx ctx;
    ctx.slope = a->slope;
    ctx.qkv = a->qkv;
    ctx.out = a->out;
    ctx.state_pool = a->state_pool;
    ctx.slot_stride = a->slot_stride;
    ctx.n_heads = H;
    unsigned char *ws = (unsigned char *)a->ws;
    ctx.kv32 = (float *)ws;
    ctx.sb16 = (__nv_bfloat16 *)(ws + (size_t)G * H * d * d * 4);
    ctx.k16 = (__nv_bfloat16 *)(ws + (size_t)G * H * d * d * 8);
    ctx.v16 = ctx.k16 + (size_t)G * H * LTP_C * d;

    ltp_group grp; /* filled here, passed by value to each group's launches */
    ltp_group *gp = &grp;
    int n_chunks = 0, n_runs = 0;
    for (int s = 0; s < a->n_segments; s++) {
        const mr_segment *seg = &a->segs[s];
        int run_open = 0; /* this segment has a run in the current group */
        for (int c0 = 0; c0 < seg->len; c0 += LTP_C) {
            if (n_chunks == G) {
                MR_CHECK(ltp_launch(d, &ctx, gp, n_chunks, n_runs, a->qkv_dtype, a->variant, st));
                n_chunks = n_runs = 0;
                run_open = 0;
            }
            if (!run_open) {
                gp->run[n_runs] = (ltp_run){n_chunks, 0, a->slots[s], 0};
                n_runs++;
                run_open = 1;
            }
            const int m = seg->len - c0 < LTP_C ? seg->len - c0 : LTP_C;
            gp->chunk[n_chunks] = (ltp_chunk){seg->start + c0, (int16_t)m, (int16_t)(n_runs - 1)};
            gp->run[n_runs - 1].n_chunks++;
            n_chunks++;
        }
    }
    if (n_chunks > 0)
        MR_CHECK(ltp_launch(d, &ctx, gp, n_chunks, n_runs, a->qkv_dtype, a->variant, st));
    return MR_OK;
}
