/* attn_softmax_prefill.cu — softmax-attention prefill (spec §3.4): partial NeoX RoPE, the paged
 * bf16 KV-cache write, and causal flash attention over the cache on tensor cores.
 *
 * Segments are launched in groups of up to AP_MAXSEG (the group's segment table travels by value
 * in the kernel parameters: no upload, graph-capturable), two launches per group:
 *   1. ap_rope_kernel (one block per token): q and k rotated in place in fp32 (cos / sin once
 *      per token for all heads), the rotated k and v written to the cache as bf16.
 *   2. ap_attn_kernel (one CTA per 128-query tile and q head): the grid is flat, heads fastest,
 *      so the q heads that share a kv head run side by side and meet its K/V tiles in L2; within
 *      a segment the tiles with the most keys come first. 4 warps × 32 query rows (two m16
 *      blocks, so each K or V fragment read from shared memory feeds four mma). Per key tile
 *      (BN = 32 keys at D = 128, 64 below):
 *      S = Q·Kᵀ (bf16 operands, fp32 accumulation), the causal mask where the tile reaches past
 *      the warp's first query (a warp skips tiles wholly after its queries), online softmax in
 *      fp32 (exp2 domain, scale folded in), P rounded to bf16, O += P·V. K/V tiles come straight
 *      from the paged cache by cp.async, double buffered with one barrier per tile; the cache
 *      offsets of each tile's rows are looked up two tiles ahead. Key rows past the last query's
 *      position are zero-filled, never read.
 * Shared memory per CTA: Q [128][D+8] + 2 stages × (K, V) [BN][D+8] bf16 + 2 × BN offsets:
 * 68.5 KiB at D = 128 (BN = 32), so two CTAs per SM (the 255-register cap is the limit).
 * Tuning variants (args.variant, MR_CUDA_AP_* bits; 0 is the plain kernel above, production uses
 * MR_CUDA_AP_DEFAULT = EXP2_FTZ | KEYS64), template parameters of launch 2: FUSED_ROPE rotates q
 * in launch 2's query-tile load (ap_rope_q_tile; its rows and head belong to one CTA, so it writes
 * them back in place) and launch 1 does k and v only;
 * EXP2_FTZ uses ex2.approx.ftz in the online softmax; KEYS64 takes BN = 64 at D = 128 (105 KiB,
 * still two CTAs per SM; ptxas spills a few dozen bytes). */
#include "common/check.h"
#include "kernels/cuda/attn_common.cuh"
#include "kernels/cuda/cuda_attention.h"
#include "kernels/cuda/cuda_check.h"

#define AP_LOG2E 1.4426950408889634

enum {
    AP_BM = 128,           /* queries per CTA */
    AP_THREADS = 128,      /* 4 warps × 32 query rows */
    AP_MAXSEG = 64,        /* segments per launch group */
    AP_ROPE_THREADS = 128, /* launch 1 */
    AP_MAX_POS = 1 << 30   /* positions beyond are refused (keeps the index arithmetic in int) */
};

/* One segment of a group: token rows [start, start + len) at positions pos0.., block-table row
 * `row`; its query tiles are [tile0, tile0 + ceil(len / AP_BM)) of the group's grid and its
 * tokens [tok0, tok0 + len) of launch 1's. Segments with len = 0 are left out. */
typedef struct ap_seg {
    int32_t start, len, pos0, row, tile0, tok0;
} ap_seg;

typedef struct ap_group {
    ap_seg seg[AP_MAXSEG];
    int32_t n_seg, pad;
} ap_group;

typedef struct ap_ctx {
    int n_heads, n_kv_heads, head_dim, rotary_dim;
    const float *inv_freq;
    const int32_t *block_table;
    int block_table_stride, block_tokens;
    __nv_bfloat16 *k_cache, *v_cache;
    float *q, *k;
    const float *v;
    float *out;
    float sl2;     /* log2(e) / sqrt(d) */
    int q_in_attn; /* q is rotated by launch 2 (MR_CUDA_AP_FUSED_ROPE): launch 1 leaves it */
} ap_ctx;

/* The segment of the group holding tile (by_tile) or token x: the last one starting at or
 * before x (starts ascend strictly). */
__device__ static int ap_find_seg(const ap_group *g, int x, bool by_tile) {
    int lo = 0, hi = g->n_seg - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) >> 1;
        const int first = by_tile ? g->seg[mid].tile0 : g->seg[mid].tok0;
        if (first <= x)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* ---- launch 1: RoPE and the cache write ------------------------------------------------------ */

static __global__ void __launch_bounds__(AP_ROPE_THREADS)
    ap_rope_kernel(ap_ctx c, const __grid_constant__ ap_group grp) {
    __shared__ float cs[64], sn[64]; /* rotary_dim / 2 <= head_dim / 2 <= 64 */
    const int x = blockIdx.x;
    const ap_seg sg = grp.seg[ap_find_seg(&grp, x, false)];
    const int i = x - sg.tok0, tok = sg.start + i, pos = sg.pos0 + i;
    const int H = c.n_heads, KV = c.n_kv_heads, bt = c.block_tokens;
    const int D = c.head_dim;
    const int32_t blk = c.block_table[(size_t)sg.row * c.block_table_stride + pos / bt];
    const size_t crow = ((size_t)blk * bt + (size_t)(pos % bt)) * (size_t)KV * D;
    attn_rope_token(c.q + (size_t)tok * H * D, c.q_in_attn ? 0 : H, c.k + (size_t)tok * KV * D,
                    c.v + (size_t)tok * KV * D, KV, D, c.rotary_dim, c.inv_freq, pos,
                    c.k_cache + crow, c.v_cache + crow, cs, sn);
}

/* ---- launch 2: causal flash attention over the cache ----------------------------------------- */

/* keys per tile by default: 32 at D = 128 keeps the scores, the accumulator and the fragments in
 * 255 registers without spilling (64 spills a little there: MR_CUDA_AP_KEYS64), 64 below */
template <int D> constexpr int ap_bn_default() {
    return D == 128 ? 32 : 64;
}

template <int D, int BN_> struct ap_dims {
    static constexpr int BN = BN_;
    static constexpr int LD = D + 8; /* shared row stride (elements): conflict-free ldmatrix */
    static constexpr size_t Q_BYTES = (size_t)AP_BM * LD * 2;
    static constexpr size_t KV_BYTES = (size_t)2 * 2 * BN * LD * 2; /* 2 stages × (K, V) */
    static constexpr size_t OFF_BYTES = (size_t)2 * BN * 8;
    static constexpr size_t SMEM = Q_BYTES + KV_BYTES + OFF_BYTES;
};

/* MR_CUDA_AP_FUSED_ROPE: the rotated columns [0, rot) of a query tile, rot = rotary_dim, a
 * multiple of 8. Item (r, c4) is the pair of float4s at columns c = 4·c4 and c + rot/2 of row r
 * (position P0 + r): rotated exactly as attn_rope_token does (fp32 angle, sincosf), written back
 * to q when r < rows, and to the bf16 tile (zero rows past the segment). Four items per thread
 * at a time, their loads issued together. */
template <int D>
__device__ static __forceinline__ void ap_rope_q_tile(const ap_ctx &c, float *qg, __nv_bfloat16 *qs,
                                                      int rows, int P0) {
    constexpr int LD = D + 8;
    const int half = c.rotary_dim / 2, hq = half / 4, items = AP_BM * hq, H = c.n_heads;
    for (int x0 = threadIdx.x; x0 < items; x0 += 4 * AP_THREADS) {
        float4 a[4], b[4];
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int x = x0 + u * AP_THREADS, r = x / hq, col = (x % hq) * 4;
            a[u] = b[u] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (x < items && r < rows) {
                a[u] = attn_load4(qg + (size_t)r * H * D + col);
                b[u] = attn_load4(qg + (size_t)r * H * D + col + half);
            }
        }
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int x = x0 + u * AP_THREADS, r = x / hq, col = (x % hq) * 4;
            if (x >= items) continue;
            const float pos = (float)(P0 + r);
            float x0v[4] = {a[u].x, a[u].y, a[u].z, a[u].w},
                  x1v[4] = {b[u].x, b[u].y, b[u].z, b[u].w};
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float sn, cs;
                sincosf(pos * c.inv_freq[col + e], &sn, &cs);
                const float v0 = x0v[e], v1 = x1v[e];
                x0v[e] = v0 * cs - v1 * sn;
                x1v[e] = v1 * cs + v0 * sn;
            }
            const float4 ra = make_float4(x0v[0], x0v[1], x0v[2], x0v[3]);
            const float4 rb = make_float4(x1v[0], x1v[1], x1v[2], x1v[3]);
            if (r < rows) {
                *reinterpret_cast<float4 *>(qg + (size_t)r * H * D + col) = ra;
                *reinterpret_cast<float4 *>(qg + (size_t)r * H * D + col + half) = rb;
            }
            *reinterpret_cast<uint2 *>(qs + r * LD + col) = attn_pack4_bf16(ra);
            *reinterpret_cast<uint2 *>(qs + r * LD + col + half) = attn_pack4_bf16(rb);
        }
    }
}

/* grid (tiles of the group × H), heads fastest; dynamic shared memory ap_dims<D, BN>::SMEM.
 * FUSE: the query tile is rotated here (rotary_dim % 8 == 0) and written back to q in place;
 * FTZ: attn_exp2<true> in the online softmax. */
template <int D, int BN_, bool FUSE, bool FTZ>
static __global__ void __launch_bounds__(AP_THREADS, 2)
    ap_attn_kernel(ap_ctx c, const __grid_constant__ ap_group grp) {
    constexpr int LD = ap_dims<D, BN_>::LD, BN = BN_, CPR = D / 8, NA = D / 8;
    constexpr int NS = BN / 8;
    static_assert(BN * CPR % AP_THREADS == 0 && AP_BM * D / 4 % AP_THREADS == 0, "tiles");
    extern __shared__ __align__(16) unsigned char ap_smem[];
    __nv_bfloat16 *qs = reinterpret_cast<__nv_bfloat16 *>(ap_smem);
    __nv_bfloat16 *kvs = qs + AP_BM * LD; /* stage s: K at kvs + s·2·BN·LD, V after it */
    long long *offs = reinterpret_cast<long long *>(kvs + 2 * 2 * BN * LD); /* [2][BN] */

    const int H = c.n_heads, KV = c.n_kv_heads;
    const int h = (int)(blockIdx.x % (unsigned)H), tile = (int)(blockIdx.x / (unsigned)H);
    const ap_seg sg = grp.seg[ap_find_seg(&grp, tile, true)];
    const int n_qt = (sg.len + AP_BM - 1) / AP_BM;
    const int q0 = (n_qt - 1 - (tile - sg.tile0)) * AP_BM; /* most keys first */
    const int rows = min(AP_BM, sg.len - q0);
    const int P0 = sg.pos0 + q0;    /* position of query row 0 */
    const int kmax = P0 + rows - 1; /* the last key any query of the tile sees */
    const int nkt = kmax / BN + 1;
    const int kvh = h / (H / KV), bt = c.block_tokens;
    const int32_t *table = c.block_table + (size_t)sg.row * c.block_table_stride;
    const long long crow = (long long)KV * D; /* cache elements per position */
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;

    /* cache element offset of key row r of tile kt (this kv head), −1 past kmax */
    auto row_off = [&](int kt, int r) -> long long {
        const int p = kt * BN + r;
        if (p > kmax) return -1;
        return ((long long)table[p / bt] * bt + p % bt) * crow + (long long)kvh * D;
    };
    /* K and V of tile kt into stage kt & 1, from the offsets in offs[kt & 1] */
    auto issue = [&](int kt) {
        __nv_bfloat16 *kd = kvs + (size_t)(kt & 1) * 2 * BN * LD, *vd = kd + BN * LD;
        const long long *o = offs + (kt & 1) * BN;
#pragma unroll
        for (int i = 0; i < BN * CPR / AP_THREADS; i++) {
            const int x = tid + i * AP_THREADS, r = x / CPR, col = (x % CPR) * 8;
            const long long off = o[r];
            const size_t src = off < 0 ? 0 : (size_t)off + col;
            attn_cp16_zfill(kd + r * LD + col, c.k_cache + src, off >= 0);
            attn_cp16_zfill(vd + r * LD + col, c.v_cache + src, off >= 0);
        }
        attn_cp_commit();
    };

    if (tid < BN) offs[tid] = row_off(0, tid);
    __syncthreads();
    issue(0);
    if (tid < BN && nkt > 1) offs[BN + tid] = row_off(1, tid);
    /* the (rotated) query tile → bf16; rows past the segment are zero */
    {
        float *qg = c.q + ((size_t)(sg.start + q0) * H + h) * D;
        const int rot = FUSE ? c.rotary_dim : 0; /* columns [0, rot) are rotated below */
#pragma unroll 8
        for (int i = 0; i < AP_BM * D / 4 / AP_THREADS; i++) {
            const int x = tid + i * AP_THREADS, r = x / (D / 4), col = (x % (D / 4)) * 4;
            if (FUSE && col < rot) continue;
            const float4 v = r < rows ? attn_load4(qg + (size_t)r * H * D + col)
                                      : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            *reinterpret_cast<uint2 *>(qs + r * LD + col) = attn_pack4_bf16(v);
        }
        if constexpr (FUSE) ap_rope_q_tile<D>(c, qg, qs, rows, P0);
    }

    float acc[2][NA][4];
#pragma unroll
    for (int mb = 0; mb < 2; mb++)
#pragma unroll
        for (int n = 0; n < NA; n++)
#pragma unroll
            for (int r = 0; r < 4; r++) acc[mb][n][r] = 0.0f;
    float m[2][2] = {{-INFINITY, -INFINITY}, {-INFINITY, -INFINITY}};
    float l[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};
    const int wq = P0 + warp * 32; /* position of this warp's first query row */

    for (int kt = 0; kt < nkt; kt++) {
        attn_cp_wait<0>(); /* tile kt, the only group in flight */
        __syncthreads();   /* ... visible to all; every warp is done with tile kt − 1 */
        if (kt + 1 < nkt) issue(kt + 1);
        long long nxt = -1;
        if (tid < BN && kt + 2 < nkt) nxt = row_off(kt + 2, tid);
        const int k0 = kt * BN;
        if (k0 <= wq + 31) { /* else every key of the tile comes after the warp's queries */
            const __nv_bfloat16 *ks = kvs + (size_t)(kt & 1) * 2 * BN * LD;
            const __nv_bfloat16 *vs = ks + BN * LD;
            float s[2][NS][4];
#pragma unroll
            for (int mb = 0; mb < 2; mb++)
#pragma unroll
                for (int n = 0; n < NS; n++)
#pragma unroll
                    for (int r = 0; r < 4; r++) s[mb][n][r] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                uint32_t a0[4], a1[4];
                attn_ld_a(qs, LD, warp * 32, kk * 16, lane, a0);
                attn_ld_a(qs, LD, warp * 32 + 16, kk * 16, lane, a1);
#pragma unroll
                for (int np = 0; np < NS / 2; np++) {
                    uint32_t b[4];
                    attn_ld_b_nk(ks, LD, np * 16, kk * 16, lane, b);
                    attn_mma(s[0][2 * np], a0[0], a0[1], a0[2], a0[3], b[0], b[1]);
                    attn_mma(s[0][2 * np + 1], a0[0], a0[1], a0[2], a0[3], b[2], b[3]);
                    attn_mma(s[1][2 * np], a1[0], a1[1], a1[2], a1[3], b[0], b[1]);
                    attn_mma(s[1][2 * np + 1], a1[0], a1[1], a1[2], a1[3], b[2], b[3]);
                }
            }
            if (k0 + BN - 1 > wq) { /* causal mask: key position > query position */
#pragma unroll
                for (int mb = 0; mb < 2; mb++)
#pragma unroll
                    for (int n = 0; n < NS; n++)
#pragma unroll
                        for (int r = 0; r < 4; r++) {
                            const int kp = k0 + n * 8 + 2 * t + (r & 1);
                            const int qp = wq + mb * 16 + g + 8 * (r >> 1);
                            if (kp > qp) s[mb][n][r] = -INFINITY;
                        }
            }
            /* P → bf16 A fragments p[mb][kk]; at 64-key tiles packed right after each block's
             * softmax, so that the fp32 scores die early (the register peak) */
            uint32_t p[2][BN / 16][4];
            auto pack = [&](int mb, int kk) {
                p[mb][kk][0] = attn_pack_bf16(s[mb][2 * kk][0], s[mb][2 * kk][1]);
                p[mb][kk][1] = attn_pack_bf16(s[mb][2 * kk][2], s[mb][2 * kk][3]);
                p[mb][kk][2] = attn_pack_bf16(s[mb][2 * kk + 1][0], s[mb][2 * kk + 1][1]);
                p[mb][kk][3] = attn_pack_bf16(s[mb][2 * kk + 1][2], s[mb][2 * kk + 1][3]);
            };
#pragma unroll
            for (int mb = 0; mb < 2; mb++) {
                attn_online_softmax<NS, NA, FTZ>(s[mb], acc[mb], m[mb], l[mb], c.sl2);
                if constexpr (BN == 64)
#pragma unroll
                    for (int kk = 0; kk < BN / 16; kk++) pack(mb, kk);
            }
#pragma unroll
            for (int kk = 0; kk < BN / 16; kk++) {
                if constexpr (BN != 64) {
                    pack(0, kk);
                    pack(1, kk);
                }
                const uint32_t *p0 = p[0][kk], *p1 = p[1][kk];
#pragma unroll
                for (int np = 0; np < D / 16; np++) {
                    uint32_t b[4];
                    attn_ld_b_kn(vs, LD, kk * 16, np * 16, lane, b);
                    attn_mma(acc[0][2 * np], p0[0], p0[1], p0[2], p0[3], b[0], b[1]);
                    attn_mma(acc[0][2 * np + 1], p0[0], p0[1], p0[2], p0[3], b[2], b[3]);
                    attn_mma(acc[1][2 * np], p1[0], p1[1], p1[2], p1[3], b[0], b[1]);
                    attn_mma(acc[1][2 * np + 1], p1[0], p1[1], p1[2], p1[3], b[2], b[3]);
                }
            }
        }
        /* offs[kt & 1] was last read by issue(kt), before this iteration's barrier */
        if (tid < BN && kt + 2 < nkt) offs[(kt & 1) * BN + tid] = nxt;
    }

    /* O / l for the rows of the segment → out[start + q0 + r][h·D + e] */
    float *og = c.out + ((size_t)(sg.start + q0) * H + h) * D;
#pragma unroll
    for (int mb = 0; mb < 2; mb++)
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
            float lv = l[mb][hr];
            lv += __shfl_xor_sync(0xffffffffu, lv, 1);
            lv += __shfl_xor_sync(0xffffffffu, lv, 2);
            const float inv = 1.0f / lv;
            const int r = warp * 32 + mb * 16 + g + 8 * hr;
            if (r < rows)
#pragma unroll
                for (int n = 0; n < NA; n++)
                    *reinterpret_cast<float2 *>(og + (size_t)r * H * D + n * 8 + 2 * t) =
                        make_float2(acc[mb][n][2 * hr] * inv, acc[mb][n][2 * hr + 1] * inv);
        }
}

/* ---- host --------------------------------------------------------------------------------- */

template <int D, int BN, bool FUSE, bool FTZ>
static mr_status ap_launch_group(const ap_ctx *c, const ap_group *g, int tiles, int toks,
                                 cudaStream_t st) {
    ap_rope_kernel<<<(unsigned)toks, AP_ROPE_THREADS, 0, st>>>(*c, *g);
    MR_CUDA_CHECK_LAUNCH("attention prefill rope launch");
    const size_t smem = ap_dims<D, BN>::SMEM;
    const void *fn = (const void *)ap_attn_kernel<D, BN, FUSE, FTZ>;
    MR_CUDA_CHECK(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    ap_attn_kernel<D, BN, FUSE, FTZ>
        <<<(unsigned)tiles *(unsigned)c->n_heads, AP_THREADS, smem, st>>>(*c, *g);
    MR_CUDA_CHECK_LAUNCH("attention prefill launch");
    return MR_OK;
}

/* The variant's kernel at head_dim D (MR_CUDA_AP_KEYS64 only changes D = 128). */
template <int D>
static mr_status ap_launch_d(int v, const ap_ctx *c, const ap_group *g, int tiles, int toks,
                             cudaStream_t st) {
    constexpr int B0 = ap_bn_default<D>();
    const bool fuse = c->q_in_attn != 0, ftz = (v & MR_CUDA_AP_EXP2_FTZ) != 0;
    if (D == 128 && (v & MR_CUDA_AP_KEYS64))
        return fuse ? (ftz ? ap_launch_group<D, 64, true, true>(c, g, tiles, toks, st)
                           : ap_launch_group<D, 64, true, false>(c, g, tiles, toks, st))
                    : (ftz ? ap_launch_group<D, 64, false, true>(c, g, tiles, toks, st)
                           : ap_launch_group<D, 64, false, false>(c, g, tiles, toks, st));
    return fuse ? (ftz ? ap_launch_group<D, B0, true, true>(c, g, tiles, toks, st)
                       : ap_launch_group<D, B0, true, false>(c, g, tiles, toks, st))
                : (ftz ? ap_launch_group<D, B0, false, true>(c, g, tiles, toks, st)
                       : ap_launch_group<D, B0, false, false>(c, g, tiles, toks, st));
}

static mr_status ap_launch(int d, int v, const ap_ctx *c, const ap_group *g, int tiles, int toks,
                           cudaStream_t st) {
    return d == 16   ? ap_launch_d<16>(v, c, g, tiles, toks, st)
           : d == 32 ? ap_launch_d<32>(v, c, g, tiles, toks, st)
           : d == 64 ? ap_launch_d<64>(v, c, g, tiles, toks, st)
                     : ap_launch_d<128>(v, c, g, tiles, toks, st);
}

extern "C" mr_status mr_cuda_attention_prefill(const mr_cuda_attention_prefill_args *a,
                                               cudaStream_t st) {
    if (!a) {
        MR_LOG_ERROR(MR_LOG_GPU, "attention prefill: no arguments");
        return MR_ERR_INVALID;
    }
    const int H = a->n_heads, KV = a->n_kv_heads, d = a->head_dim, rot = a->rotary_dim;
    if (H <= 0 || KV <= 0 || H % KV) {
        MR_LOG_ERROR(MR_LOG_GPU, "attention prefill: %d heads over %d kv heads", H, KV);
        return MR_ERR_INVALID;
    }
    if (d != 16 && d != 32 && d != 64 && d != 128) {
        MR_LOG_ERROR(MR_LOG_GPU, "attention prefill: head_dim %d unsupported (16, 32, 64, 128)", d);
        return MR_ERR_UNSUPPORTED;
    }
    if (rot < 0 || rot > d || rot % 2 || (rot > 0 && !a->inv_freq)) {
        MR_LOG_ERROR(MR_LOG_GPU, "attention prefill: rotary_dim %d (head_dim %d, inv_freq %p)", rot,
                     d, (const void *)a->inv_freq);
        return MR_ERR_INVALID;
    }
    if (a->variant < 0 || a->variant >= MR_CUDA_AP_VARIANTS) {
        MR_LOG_ERROR(MR_LOG_GPU, "attention prefill: variant %d (0 .. %d)", a->variant,
                     MR_CUDA_AP_VARIANTS - 1);
        return MR_ERR_INVALID;
    }
    if (a->n_segments < 0 || (a->n_segments > 0 && !a->segs)) {
        MR_LOG_ERROR(MR_LOG_GPU, "attention prefill: %d segments", a->n_segments);
        return MR_ERR_INVALID;
    }
    if (a->n_segments == 0) return MR_OK;
    if (!a->block_table || !a->k_cache || !a->v_cache || !a->q || !a->k || !a->v || !a->out) {
        MR_LOG_ERROR(MR_LOG_GPU, "attention prefill: missing pointer");
        return MR_ERR_INVALID;
    }
    if (a->block_tokens <= 0 || a->block_table_stride <= 0) {
        MR_LOG_ERROR(MR_LOG_GPU, "attention prefill: block_tokens %d, block_table_stride %d",
                     a->block_tokens, a->block_table_stride);
        return MR_ERR_INVALID;
    }
    if ((uintptr_t)a->k_cache % 16 || (uintptr_t)a->v_cache % 16 || (uintptr_t)a->q % 16 ||
        (uintptr_t)a->out % 8) {
        MR_LOG_ERROR(MR_LOG_GPU, "attention prefill: misaligned cache (16), q (16) or out (8)");
        return MR_ERR_INVALID;
    }
    for (int s = 0; s < a->n_segments; s++) {
        const mr_segment *sg = &a->segs[s];
        const long long end = sg->pos0 + (long long)sg->len;
        const long long tiles = ((long long)sg->len + AP_BM - 1) / AP_BM;
        if (sg->start < 0 || sg->len < 0 || sg->pos0 < 0 ||
            (long long)sg->start + sg->len > INT32_MAX || end > AP_MAX_POS ||
            tiles * H > INT32_MAX ||
            (end + a->block_tokens - 1) / a->block_tokens > a->block_table_stride) {
            MR_LOG_ERROR(MR_LOG_GPU,
                         "attention prefill: segment %d: start %d len %d pos0 %lld (block table "
                         "row of %d blocks of %d)",
                         s, sg->start, sg->len, (long long)sg->pos0, a->block_table_stride,
                         a->block_tokens);
            return MR_ERR_INVALID;
        }
    }

    ap_ctx c;
    c.n_heads = H;
    c.n_kv_heads = KV;
    c.head_dim = d;
    c.rotary_dim = rot;
    c.inv_freq = a->inv_freq;
    c.block_table = a->block_table;
    c.block_table_stride = a->block_table_stride;
    c.block_tokens = a->block_tokens;
    c.k_cache = reinterpret_cast<__nv_bfloat16 *>(a->k_cache);
    c.v_cache = reinterpret_cast<__nv_bfloat16 *>(a->v_cache);
    c.q = a->q;
    c.k = a->k;
    c.v = a->v;
    c.out = a->out;
    c.sl2 = (float)(AP_LOG2E / sqrt((double)d));
    c.q_in_attn = (a->variant & MR_CUDA_AP_FUSED_ROPE) && rot % 8 == 0;

    ap_group grp; /* filled here, passed by value to each group's launches */
    grp.n_seg = grp.pad = 0;
    long long tiles = 0, toks = 0;
    for (int s = 0; s < a->n_segments; s++) {
        const mr_segment *sg = &a->segs[s];
        if (sg->len == 0) continue;
        const int n_qt = (sg->len + AP_BM - 1) / AP_BM;
        if (grp.n_seg == AP_MAXSEG || (tiles + n_qt) * H > INT32_MAX ||
            toks + sg->len > INT32_MAX) {
            MR_CHECK(ap_launch(d, a->variant, &c, &grp, (int)tiles, (int)toks, st));
            grp.n_seg = 0;
            tiles = toks = 0;
        }
        grp.seg[grp.n_seg++] =
            (ap_seg){sg->start, sg->len, (int32_t)sg->pos0, s, (int32_t)tiles, (int32_t)toks};
        tiles += n_qt;
        toks += sg->len;
    }
    if (grp.n_seg > 0) MR_CHECK(ap_launch(d, a->variant, &c, &grp, (int)tiles, (int)toks, st));
    return MR_OK;
}
