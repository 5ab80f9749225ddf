/* attn_softmax_decode.cu — one softmax-attention decode step for a batch of sequences (spec
 * §3.4): RoPE, the cache write of the new token, and split-KV ("flash-decoding") attention over
 * the paged bf16 cache.
 *
 * The step is bound by reading the cache, so every cache byte is read once: one CTA serves all
 * the q heads of a kv head (up to 16, one m16 block of the tensor-core tiles; more take several
 * CTAs, which meet in L2). Up to three launches:
 *   1. ad_rope_kernel (row): q, k rotated in place (fp32), the rotated k and v → cache (bf16).
 *   2. ad_split_kernel (split, kv head × head block, row): keys [split·chunk, min(+chunk,
 *      pos + 1)). Each of the 4 warps streams its own 32-key tiles (tiles w, w + 4, ...) from
 *      the paged cache through a private 3-stage cp.async ring (two tiles in flight while it
 *      computes one; no block barrier in the loop), S = Q·Kᵀ and O += P·V on tensor cores (q and
 *      p bf16, fp32 accumulation), online softmax in fp32. The warps' (max, sum, O) are merged
 *      through shared memory; the split's normalised O and log2-sum-exp go to the workspace, or
 *      straight to out when there is one split.
 *   3. ad_combine_kernel (head, row), only with several splits: the weighted sum of the splits.
 * The split count aims at AD_TARGET_CTAS CTAs in all (a few waves on a 132-SM GPU) with at least
 * AD_MIN_KEYS keys per split, within what the workspace holds; the chunk is a multiple of
 * 4 warps × 32 keys.
 * Workspace: part_o [n][H][nsplit][D] then part_lse [n][H][nsplit] (fp32).
 * Shared memory of launch 2: 4 warps × 3 stages × (K, V) [32][D+8] bf16 = 204 KiB at D = 128. */
#include "kernels/cuda/attn_common.cuh"
#include "kernels/cuda/cuda_attention.h"
#include "kernels/cuda/cuda_check.h"

#define AD_LOG2E 1.4426950408889634

enum {
    AD_WARPS = 4,
    AD_THREADS = 32 * AD_WARPS,
    AD_TK = 32, /* keys per warp tile */
    AD_NST = 3, /* ring stages per warp */
    AD_HB = 16, /* q heads per CTA */
    AD_TARGET_CTAS = 528,
    AD_MAX_SPLITS = 256,
    AD_MIN_KEYS = 256,
    AD_ROPE_THREADS = 128,
    AD_MAX_POS = 1 << 30 /* positions beyond are refused (keeps the index arithmetic in int) */
};

typedef struct ad_ctx {
    int n_heads, n_kv_heads, head_dim, rotary_dim;
    const float *inv_freq;
    const int32_t *pos;
    const int32_t *block_table;
    int block_table_stride, block_tokens, max_pos;
    __nv_bfloat16 *k_cache, *v_cache;
    float *q, *k;
    const float *v;
    float *out;
    float *part_o;   /* [n][H][nsplit][D] */
    float *part_lse; /* [n][H][nsplit] */
    int nsplit, chunk;
    float sl2; /* log2(e) / sqrt(d) */
} ad_ctx;

/* A row takes part only with 0 <= pos < max_pos (pos < 0: padding; pos >= max_pos breaks the
 * contract and is skipped rather than read past the block table). */
__device__ static __forceinline__ bool ad_row_live(const ad_ctx &c, int pos) {
    return pos >= 0 && pos < c.max_pos;
}

/* ---- launch 1: RoPE and the cache write ------------------------------------------------------ */

static __global__ void __launch_bounds__(AD_ROPE_THREADS) ad_rope_kernel(ad_ctx c) {
    __shared__ float cs[64], sn[64]; /* rotary_dim / 2 <= 64 */
    const int row = blockIdx.x, pos = c.pos[row];
    if (!ad_row_live(c, pos)) return;
    const int H = c.n_heads, KV = c.n_kv_heads, D = c.head_dim, bt = c.block_tokens;
    const int32_t blk = c.block_table[(size_t)row * c.block_table_stride + pos / bt];
    const size_t crow = ((size_t)blk * bt + (size_t)(pos % bt)) * (size_t)KV * D;
    attn_rope_token(c.q + (size_t)row * H * D, H, c.k + (size_t)row * KV * D,
                    c.v + (size_t)row * KV * D, KV, D, c.rotary_dim, c.inv_freq, pos,
                    c.k_cache + crow, c.v_cache + crow, cs, sn);
}

/* ---- launch 2: one split of one (row, kv head, head block) ----------------------------------- */

template <int D> struct ad_dims {
    static constexpr int LD = D + 8;  /* shared row stride (elements): conflict-free ldmatrix */
    static constexpr int MLD = D + 4; /* merge rows (floats) */
    static constexpr size_t STAGE = (size_t)2 * AD_TK * LD * 2; /* K and V tiles, bytes */
    static constexpr size_t RING = (size_t)AD_WARPS * AD_NST * STAGE;
    static constexpr size_t MERGE = (size_t)AD_WARPS * AD_HB * (MLD + 2) * 4;
    static constexpr size_t SMEM = RING > MERGE ? RING : MERGE;
};

/* grid (nsplit, KV · ceil(G / 16), n); dynamic shared memory ad_dims<D>::SMEM. */
template <int D> static __global__ void __launch_bounds__(AD_THREADS, 1) ad_split_kernel(ad_ctx c) {
    constexpr int LD = ad_dims<D>::LD, MLD = ad_dims<D>::MLD, CPR = D / 8, NA = D / 8;
    constexpr int NS = AD_TK / 8;
    static_assert(AD_TK == 32, "one key row per lane in the offset lookup");
    extern __shared__ __align__(16) unsigned char ad_smem[];

    const int row = blockIdx.z, split = blockIdx.x, pos = c.pos[row];
    if (!ad_row_live(c, pos)) return;
    const int kb = split * c.chunk;
    if (kb > pos) return;
    const int ke = (int)min((long long)kb + c.chunk, (long long)pos + 1); /* keys [kb, ke) */
    const int H = c.n_heads, KV = c.n_kv_heads, G = H / KV, HB = (G + AD_HB - 1) / AD_HB;
    const int kvh = blockIdx.y / HB, hb = blockIdx.y % HB;
    const int h0 = kvh * G + hb * AD_HB, gb = min(AD_HB, G - hb * AD_HB); /* heads h0.. */
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;

    /* A fragments of the (rotated) q rows of the block's heads; head rows >= gb are zero */
    uint32_t qf[D / 16][4];
    {
        const float *qa = c.q + ((size_t)row * H + h0 + g) * D, *qb = qa + (size_t)8 * D;
        const bool va = g < gb, vb = g + 8 < gb;
        const float2 z = make_float2(0.0f, 0.0f);
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            const int c0 = kk * 16 + 2 * t;
            const float2 x0 = va ? *reinterpret_cast<const float2 *>(qa + c0) : z;
            const float2 x1 = vb ? *reinterpret_cast<const float2 *>(qb + c0) : z;
            const float2 x2 = va ? *reinterpret_cast<const float2 *>(qa + c0 + 8) : z;
            const float2 x3 = vb ? *reinterpret_cast<const float2 *>(qb + c0 + 8) : z;
            qf[kk][0] = attn_pack_bf16(x0.x, x0.y);
            qf[kk][1] = attn_pack_bf16(x1.x, x1.y);
            qf[kk][2] = attn_pack_bf16(x2.x, x2.y);
            qf[kk][3] = attn_pack_bf16(x3.x, x3.y);
        }
    }

    /* this warp's tiles: w, w + 4, ... of the split's ceil((ke − kb) / 32) */
    __nv_bfloat16 *ring =
        reinterpret_cast<__nv_bfloat16 *>(ad_smem) + (size_t)warp * AD_NST * 2 * AD_TK * LD;
    const int ntile = (ke - kb + AD_TK - 1) / AD_TK;
    const int nmy = ntile > warp ? (ntile - warp + AD_WARPS - 1) / AD_WARPS : 0;
    const int32_t *table = c.block_table + (size_t)row * c.block_table_stride;
    const int bt = c.block_tokens;
    const long long crow = (long long)KV * D;
    /* cache element offset of this lane's key in my tile i (this kv head), −1 past ke */
    auto lane_off = [&](int i) -> long long {
        const int p = kb + (warp + i * AD_WARPS) * AD_TK + lane;
        if (p >= ke) return -1;
        return ((long long)table[p / bt] * bt + p % bt) * crow + (long long)kvh * D;
    };
    /* K and V of my tile i into stage i % NST; off_lane from lane_off(i) (warp-uniform call) */
    auto issue = [&](int i, long long off_lane) {
        __nv_bfloat16 *kd = ring + (size_t)(i % AD_NST) * 2 * AD_TK * LD, *vd = kd + AD_TK * LD;
#pragma unroll
        for (int x = 0; x < CPR; x++) { /* 32 rows × CPR chunks over 32 lanes */
            const int idx = lane + 32 * x, r = idx / CPR, col = (idx % CPR) * 8;
            const long long off = __shfl_sync(0xffffffffu, off_lane, r);
            const size_t src = off < 0 ? 0 : (size_t)off + col;
            attn_cp16_zfill(kd + r * LD + col, c.k_cache + src, off >= 0);
            attn_cp16_zfill(vd + r * LD + col, c.v_cache + src, off >= 0);
        }
    };

#pragma unroll
    for (int i = 0; i < AD_NST - 1; i++) {
        if (i < nmy) issue(i, lane_off(i));
        attn_cp_commit(); /* possibly empty: one group per tile slot keeps the count uniform */
    }
    long long nxt = AD_NST - 1 < nmy ? lane_off(AD_NST - 1) : -1;

    float acc[NA][4];
#pragma unroll
    for (int n = 0; n < NA; n++)
#pragma unroll
        for (int r = 0; r < 4; r++) acc[n][r] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

    for (int i = 0; i < nmy; i++) {
        /* stage (i + NST − 1) % NST was read in iteration i − 1, closed by its __syncwarp */
        if (i + AD_NST - 1 < nmy) issue(i + AD_NST - 1, nxt);
        attn_cp_commit();
        if (i + AD_NST < nmy) nxt = lane_off(i + AD_NST);
        attn_cp_wait<AD_NST - 1>(); /* tile i has landed (this lane's part) */
        __syncwarp();               /* ... and every lane's */
        const __nv_bfloat16 *ks = ring + (size_t)(i % AD_NST) * 2 * AD_TK * LD;
        const __nv_bfloat16 *vs = ks + AD_TK * LD;
        const int k0 = kb + (warp + i * AD_WARPS) * AD_TK;
        float s[NS][4];
#pragma unroll
        for (int n = 0; n < NS; n++)
#pragma unroll
            for (int r = 0; r < 4; r++) s[n][r] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++)
#pragma unroll
            for (int np = 0; np < NS / 2; np++) {
                uint32_t b[4];
                attn_ld_b_nk(ks, LD, np * 16, kk * 16, lane, b);
                attn_mma(s[2 * np], qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3], b[0], b[1]);
                attn_mma(s[2 * np + 1], qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3], b[2], b[3]);
            }
        if (k0 + AD_TK > ke) /* the split's last tile: keys >= ke are zero rows, masked */
#pragma unroll
            for (int n = 0; n < NS; n++)
#pragma unroll
                for (int r = 0; r < 4; r++)
                    if (k0 + n * 8 + 2 * t + (r & 1) >= ke) s[n][r] = -INFINITY;
        attn_online_softmax(s, acc, m, l, c.sl2);
#pragma unroll
        for (int kk = 0; kk < AD_TK / 16; kk++) {
            const uint32_t p0 = attn_pack_bf16(s[2 * kk][0], s[2 * kk][1]);
            const uint32_t p1 = attn_pack_bf16(s[2 * kk][2], s[2 * kk][3]);
            const uint32_t p2 = attn_pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            const uint32_t p3 = attn_pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
            for (int np = 0; np < D / 16; np++) {
                uint32_t b[4];
                attn_ld_b_kn(vs, LD, kk * 16, np * 16, lane, b);
                attn_mma(acc[2 * np], p0, p1, p2, p3, b[0], b[1]);
                attn_mma(acc[2 * np + 1], p0, p1, p2, p3, b[2], b[3]);
            }
        }
        __syncwarp(); /* every lane is done with stage i % NST */
    }

    /* merge the warps: rows r < gb of the block, through shared memory (the rings are free) */
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
        l[hr] += __shfl_xor_sync(0xffffffffu, l[hr], 1);
        l[hr] += __shfl_xor_sync(0xffffffffu, l[hr], 2);
    }
    attn_cp_wait<0>();
    __syncthreads();
    float *mo = reinterpret_cast<float *>(ad_smem); /* [warp][16][MLD] */
    float *mm = mo + AD_WARPS * AD_HB * MLD;        /* [warp][16] row max (log2 domain) */
    float *ml = mm + AD_WARPS * AD_HB;              /* [warp][16] row sum */
#pragma unroll
    for (int n = 0; n < NA; n++)
#pragma unroll
        for (int hr = 0; hr < 2; hr++)
            *reinterpret_cast<float2 *>(mo + (warp * AD_HB + g + 8 * hr) * MLD + n * 8 + 2 * t) =
                make_float2(acc[n][2 * hr], acc[n][2 * hr + 1]);
    if (t == 0)
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
            mm[warp * AD_HB + g + 8 * hr] = m[hr];
            ml[warp * AD_HB + g + 8 * hr] = l[hr];
        }
    __syncthreads();
    for (int x = tid; x < gb * D; x += AD_THREADS) {
        const int r = x / D, e = x % D;
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < AD_WARPS; w++) M = fmaxf(M, mm[w * AD_HB + r]);
        float L = 0.0f, O = 0.0f;
#pragma unroll
        for (int w = 0; w < AD_WARPS; w++) {
            const float mw = mm[w * AD_HB + r]; /* −inf: a warp without keys */
            const float f = mw == -INFINITY ? 0.0f : exp2f(mw - M);
            L = fmaf(f, ml[w * AD_HB + r], L);
            O = fmaf(f, mo[(w * AD_HB + r) * MLD + e], O);
        }
        const size_t hrow = (size_t)row * H + h0 + r;
        if (c.nsplit == 1) {
            c.out[hrow * D + e] = O / L;
        } else {
            c.part_o[(hrow * c.nsplit + split) * D + e] = O / L;
            if (e == 0) c.part_lse[hrow * c.nsplit + split] = M + log2f(L);
        }
    }
}

/* ---- launch 3: combine the splits ------------------------------------------------------------ */

/* grid (H, n), D threads: one output element each. */
template <int D> static __global__ void __launch_bounds__(D) ad_combine_kernel(ad_ctx c) {
    const int h = blockIdx.x, row = blockIdx.y, e = threadIdx.x, pos = c.pos[row];
    if (!ad_row_live(c, pos)) return;
    /* the splits holding keys [0, pos] */
    const int nsp = (int)min(((long long)pos + c.chunk) / c.chunk, (long long)c.nsplit);
    const size_t hrow = (size_t)row * c.n_heads + h;
    const float *lse = c.part_lse + hrow * c.nsplit;
    const float *po = c.part_o + hrow * c.nsplit * D + e;
    float M = -INFINITY, L = 0.0f, O = 0.0f;
    for (int s = 0; s < nsp; s++) {
        const float x = lse[s], v = po[(size_t)s * D];
        const float mn = fmaxf(M, x);
        const float sc = exp2f(M - mn), w = exp2f(x - mn);
        L = fmaf(L, sc, w);
        O = fmaf(O, sc, v * w);
        M = mn;
    }
    c.out[hrow * D + e] = O / L;
}

/* ---- host --------------------------------------------------------------------------------- */

static int ad_max_splits(int n) {
    const int s = (AD_TARGET_CTAS + n - 1) / n;
    return s < 1 ? 1 : s > AD_MAX_SPLITS ? AD_MAX_SPLITS : s;
}

extern "C" size_t mr_cuda_attention_decode_ws_bytes(int n, int n_heads, int head_dim) {
    if (n <= 0 || n_heads <= 0 || head_dim <= 0) return 0;
    return (size_t)n * n_heads * (head_dim + 1) * sizeof(float) * (size_t)ad_max_splits(n);
}

template <int D> static mr_status ad_launch(const ad_ctx *c, int n, int HB, cudaStream_t st) {
    const size_t smem = ad_dims<D>::SMEM;
    MR_CUDA_CHECK(cudaFuncSetAttribute((const void *)ad_split_kernel<D>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    ad_split_kernel<D><<<dim3((unsigned)c->nsplit, (unsigned)(c->n_kv_heads * HB), (unsigned)n),
                         AD_THREADS, smem, st>>>(*c);
    MR_CUDA_CHECK_LAUNCH("attention decode split launch");
    if (c->nsplit > 1) {
        ad_combine_kernel<D><<<dim3((unsigned)c->n_heads, (unsigned)n), D, 0, st>>>(*c);
        MR_CUDA_CHECK_LAUNCH("attention decode combine launch");
    }
    return MR_OK;
}

extern "C" mr_status mr_cuda_attention_decode(const mr_cuda_attention_decode_args *a,
                                              cudaStream_t st) {
    if (!a) {
        MR_LOG_ERROR(MR_LOG_GPU, "attention decode: no arguments");
        return MR_ERR_INVALID;
    }
    const int H = a->n_heads, KV = a->n_kv_heads, d = a->head_dim, rot = a->rotary_dim;
    if (H <= 0 || KV <= 0 || H % KV) {
        MR_LOG_ERROR(MR_LOG_GPU, "attention decode: %d heads over %d kv heads", H, KV);
        return MR_ERR_INVALID;
    }
    if (d != 16 && d != 32 && d != 64 && d != 128) {
        MR_LOG_ERROR(MR_LOG_GPU, "attention decode: head_dim %d unsupported (16, 32, 64, 128)", d);
        return MR_ERR_UNSUPPORTED;
    }
    if (rot < 0 || rot > d || rot % 2 || (rot > 0 && !a->inv_freq)) {
        MR_LOG_ERROR(MR_LOG_GPU, "attention decode: rotary_dim %d (head_dim %d, inv_freq %p)", rot,
                     d, (const void *)a->inv_freq);
        return MR_ERR_INVALID;
    }
    const int G = H / KV, HB = (G + AD_HB - 1) / AD_HB;
    if (a->n < 0 || a->n > 65535 || (long long)KV * HB > 65535) {
        MR_LOG_ERROR(MR_LOG_GPU, "attention decode: %d rows, %d kv heads (at most 65535 each)",
                     a->n, KV);
        return MR_ERR_INVALID;
    }
    if (a->n == 0) return MR_OK;
    if (!a->pos || !a->block_table || !a->k_cache || !a->v_cache || !a->q || !a->k || !a->v ||
        !a->out || (a->ws_bytes > 0 && !a->ws)) {
        MR_LOG_ERROR(MR_LOG_GPU, "attention decode: missing pointer");
        return MR_ERR_INVALID;
    }
    if (a->block_tokens <= 0 || a->block_table_stride <= 0 || a->max_pos < 0 ||
        a->max_pos > AD_MAX_POS ||
        (long long)a->max_pos > (long long)a->block_table_stride * a->block_tokens) {
        MR_LOG_ERROR(MR_LOG_GPU,
                     "attention decode: max_pos %d, block table rows of %d blocks of %d tokens",
                     a->max_pos, a->block_table_stride, a->block_tokens);
        return MR_ERR_INVALID;
    }
    if ((uintptr_t)a->k_cache % 16 || (uintptr_t)a->v_cache % 16 || (uintptr_t)a->q % 8 ||
        (uintptr_t)a->ws % 16) {
        MR_LOG_ERROR(MR_LOG_GPU, "attention decode: misaligned cache (16), q (8) or ws (16)");
        return MR_ERR_INVALID;
    }

    ad_ctx c;
    c.n_heads = H;
    c.n_kv_heads = KV;
    c.head_dim = d;
    c.rotary_dim = rot;
    c.inv_freq = a->inv_freq;
    c.pos = a->pos;
    c.block_table = a->block_table;
    c.block_table_stride = a->block_table_stride;
    c.block_tokens = a->block_tokens;
    c.max_pos = a->max_pos;
    c.k_cache = reinterpret_cast<__nv_bfloat16 *>(a->k_cache);
    c.v_cache = reinterpret_cast<__nv_bfloat16 *>(a->v_cache);
    c.q = a->q;
    c.k = a->k;
    c.v = a->v;
    c.out = a->out;
    c.sl2 = (float)(AD_LOG2E / sqrt((double)d));

    /* splits: enough CTAs to fill the GPU, not below AD_MIN_KEYS keys each, within the workspace
     * (one split needs none: it writes out directly) */
    const int n = a->n, keys = a->max_pos < 1 ? 1 : a->max_pos;
    const long long ctas = (long long)n * KV * HB;
    long long want = (AD_TARGET_CTAS + ctas - 1) / ctas;
    const long long by_keys = ((long long)keys + AD_MIN_KEYS - 1) / AD_MIN_KEYS;
    const size_t per_split = (size_t)n * H * (d + 1) * sizeof(float);
    const long long cap = (long long)(a->ws_bytes / per_split);
    if (want > by_keys) want = by_keys;
    if (want > AD_MAX_SPLITS) want = AD_MAX_SPLITS;
    if (want > cap) want = cap;
    if (want < 1) want = 1;
    const int quantum = AD_TK * AD_WARPS;
    long long chunk = (keys + want - 1) / want;
    chunk = (chunk + quantum - 1) / quantum * quantum;
    c.chunk = (int)chunk;
    c.nsplit = (int)((keys + chunk - 1) / chunk);
    c.part_o = a->ws;
    c.part_lse = a->ws ? a->ws + (size_t)n * H * c.nsplit * d : NULL;

    ad_rope_kernel<<<(unsigned)n, AD_ROPE_THREADS, 0, st>>>(c);
    MR_CUDA_CHECK_LAUNCH("attention decode rope launch");
    return d == 16   ? ad_launch<16>(&c, n, HB, st)
           : d == 32 ? ad_launch<32>(&c, n, HB, st)
           : d == 64 ? ad_launch<64>(&c, n, HB, st)
                     : ad_launch<128>(&c, n, HB, st);
}
