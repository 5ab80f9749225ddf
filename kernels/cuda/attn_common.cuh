/* attn_common.cuh — device helpers shared by the attention kernels (attn_*.cu): activation loads
 * (fp32 or bf16 sources, SiLU), bf16 packing, and the warp-level tensor-core primitives
 * (ldmatrix, mma.sync m16n8k16 bf16 → fp32, cp.async); for softmax attention, the online-softmax
 * step on an mma score tile and the per-token RoPE + KV-cache write.
 *
 * Fragment layouts of mma.m16n8k16 (g = lane / 4, t = lane % 4), used throughout:
 *   A 16×16 (row major): a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
 *   B 16×8  (k × n):     b0 = (k 2t..2t+1, n g), b1 = (k 2t+8..2t+9, n g)
 *   C 16×8  (fp32):      c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..2t+1)
 * The C layout of two adjacent n-tiles is the A layout of one k-step, so a score tile computed
 * by one mma feeds the next mma without going through shared memory (flash-attention style). */
#ifndef MR_ATTN_COMMON_CUH
#define MR_ATTN_COMMON_CUH

#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>

/* silu(x) = x · sigmoid(x), with the fast exponential and reciprocal (relative error ~1e-7,
 * far below the bf16 rounding that follows in the tensor-core paths). */
__device__ static __forceinline__ float attn_silu(float x) {
    return __fdividef(x, 1.0f + __expf(-x));
}

__device__ static __forceinline__ float attn_to_f32(float v) {
    return v;
}
__device__ static __forceinline__ float attn_to_f32(__nv_bfloat16 v) {
    return __bfloat162float(v);
}

/* Four consecutive source elements (16-byte aligned for float, 8-byte for bf16) as floats. */
__device__ static __forceinline__ float4 attn_load4(const float *p) {
    return *reinterpret_cast<const float4 *>(p);
}
__device__ static __forceinline__ float4 attn_load4(const __nv_bfloat16 *p) {
    const uint2 u = *reinterpret_cast<const uint2 *>(p);
    const __nv_bfloat162 lo = *reinterpret_cast<const __nv_bfloat162 *>(&u.x);
    const __nv_bfloat162 hi = *reinterpret_cast<const __nv_bfloat162 *>(&u.y);
    return make_float4(__low2float(lo), __high2float(lo), __low2float(hi), __high2float(hi));
}

/* Four bf16 (8 bytes, low half first) as floats. */
__device__ static __forceinline__ float4 attn_bf16x4_to_f32(uint2 u) {
    const __nv_bfloat162 lo = *reinterpret_cast<const __nv_bfloat162 *>(&u.x);
    const __nv_bfloat162 hi = *reinterpret_cast<const __nv_bfloat162 *>(&u.y);
    return make_float4(__low2float(lo), __high2float(lo), __low2float(hi), __high2float(hi));
}

__device__ static __forceinline__ float4 attn_silu4(float4 v) {
    return make_float4(attn_silu(v.x), attn_silu(v.y), attn_silu(v.z), attn_silu(v.w));
}

/* Two floats as one bf16 pair (round to nearest even), low half = first. */
__device__ static __forceinline__ uint32_t attn_pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

/* Four floats as four bf16 (8 bytes). */
__device__ static __forceinline__ uint2 attn_pack4_bf16(float4 v) {
    return make_uint2(attn_pack_bf16(v.x, v.y), attn_pack_bf16(v.z, v.w));
}

__device__ static __forceinline__ uint32_t attn_smem_addr(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* ldmatrix x4: lane l supplies the row address of row l%8 of matrix l/8; register i receives
 * (row l/4, cols 2(l%4)..+1) of matrix i, or with .trans (rows 2(l%4)..+1, col l/4). */
__device__ static __forceinline__ void attn_ldsm_x4(uint32_t addr, uint32_t &r0, uint32_t &r1,
                                                    uint32_t &r2, uint32_t &r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}
__device__ static __forceinline__ void attn_ldsm_x4_t(uint32_t addr, uint32_t &r0, uint32_t &r1,
                                                      uint32_t &r2, uint32_t &r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}

/* c += A·B, one m16n8k16 bf16 tile with fp32 accumulation. */
__device__ static __forceinline__ void attn_mma(float *c, uint32_t a0, uint32_t a1, uint32_t a2,
                                                uint32_t a3, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
                 "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* 16-byte asynchronous global → shared copy (L2 only); completion via attn_cp_wait. */
__device__ static __forceinline__ void attn_cp16(void *smem, const void *gmem) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(attn_smem_addr(smem)),
                 "l"(gmem));
}
/* The same copy, or 16 zero bytes when !valid (the source is then not read, but must still be a
 * valid address). */
__device__ static __forceinline__ void attn_cp16_zfill(void *smem, const void *gmem, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(attn_smem_addr(smem)),
                 "l"(gmem), "r"(valid ? 16 : 0));
}
__device__ static __forceinline__ void attn_cp_commit() {
    asm volatile("cp.async.commit_group;");
}
/* Wait until at most N committed groups are still in flight. */
template <int N> __device__ static __forceinline__ void attn_cp_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N));
}

/* A fragments of a 16×16 tile at (row0, col0) of a row-major bf16 shared array (row stride ld
 * elements; rows 16-byte aligned). */
__device__ static __forceinline__ void attn_ld_a(const __nv_bfloat16 *base, int ld, int row0,
                                                 int col0, int lane, uint32_t a[4]) {
    const __nv_bfloat16 *p = base + (size_t)(row0 + (lane & 15)) * ld + col0 + (lane >> 4) * 8;
    attn_ldsm_x4(attn_smem_addr(p), a[0], a[1], a[2], a[3]);
}

/* A fragments of the 16×16 tile (m0.., k0..) of A = Tᵀ where T is a row-major bf16 shared array
 * indexed [k][m] (row stride ld): the transpose is done by ldmatrix.trans. */
__device__ static __forceinline__ void attn_ld_a_trans(const __nv_bfloat16 *base, int ld, int k0,
                                                       int m0, int lane, uint32_t a[4]) {
    const int row = k0 + (lane & 7) + ((lane >> 4) << 3), col = m0 + ((lane >> 3) & 1) * 8;
    attn_ldsm_x4_t(attn_smem_addr(base + (size_t)row * ld + col), a[0], a[1], a[2], a[3]);
}

/* B fragments of two adjacent n-tiles (n0..n0+15) for the k-step k0..k0+15, where the shared
 * array holds Bᵀ row-major, indexed [n][k] (e.g. keys [j][c] for Q·Kᵀ).
 * b[0], b[1]: n-tile n0; b[2], b[3]: n-tile n0 + 8. */
__device__ static __forceinline__ void attn_ld_b_nk(const __nv_bfloat16 *base, int ld, int n0,
                                                    int k0, int lane, uint32_t b[4]) {
    const int row = n0 + (lane & 7) + ((lane >> 4) << 3), col = k0 + ((lane >> 3) & 1) * 8;
    attn_ldsm_x4(attn_smem_addr(base + (size_t)row * ld + col), b[0], b[1], b[2], b[3]);
}

/* The same fragments where the shared array holds B row-major, indexed [k][n] (e.g. values
 * [j][e] for P·V, or a state [c][e] for q·S). */
__device__ static __forceinline__ void attn_ld_b_kn(const __nv_bfloat16 *base, int ld, int k0,
                                                    int n0, int lane, uint32_t b[4]) {
    const int row = k0 + (lane & 15), col = n0 + (lane >> 4) * 8;
    attn_ldsm_x4_t(attn_smem_addr(base + (size_t)row * ld + col), b[0], b[1], b[2], b[3]);
}

/* ---- softmax attention (attn_softmax_*.cu) ------------------------------------------------- */

/* 2^x: exp2f, or with FTZ the bare ex2.approx.ftz (one MUFU instruction; results below 2^-126,
 * which are p values of no weight, flush to zero; 2^-inf = 0 either way). */
template <bool FTZ> __device__ static __forceinline__ float attn_exp2(float x) {
    if constexpr (FTZ) {
        float y;
        asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
        return y;
    } else {
        return exp2f(x);
    }
}

/* Online softmax over one 16-row block of scores in the mma C layout (this lane: rows g and
 * g + 8, hr = 0 / 1). s[NS][4] holds raw scores, −inf where masked; it leaves holding
 * p = 2^(s·sl2 − m_new) (sl2 = scale·log2 e). m[hr]: running row max of s·sl2 (−inf before the
 * first key); l[hr]: this lane's share of the row sum (the quad is summed once at the end);
 * acc[NA][4]: the output accumulator, rescaled by 2^(m_old − m_new). Warp-uniform (shuffles).
 * FTZ: attn_exp2<true> for the exponentials. */
template <int NS, int NA, bool FTZ = false>
__device__ static __forceinline__ void attn_online_softmax(float (&s)[NS][4], float (&acc)[NA][4],
                                                           float m[2], float l[2], float sl2) {
    float alpha[2];
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
        float mx = -INFINITY;
#pragma unroll
        for (int n = 0; n < NS; n++) mx = fmaxf(mx, fmaxf(s[n][2 * hr], s[n][2 * hr + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float mn = fmaxf(m[hr], mx * sl2);
        const float mu = mn == -INFINITY ? 0.0f : mn; /* a row with no key yet: p = 0 */
        alpha[hr] = attn_exp2<FTZ>(m[hr] - mu);
        m[hr] = mn;
        float rs = 0.0f;
#pragma unroll
        for (int n = 0; n < NS; n++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const float p = attn_exp2<FTZ>(fmaf(s[n][2 * hr + e], sl2, -mu));
                s[n][2 * hr + e] = p;
                rs += p;
            }
        l[hr] = fmaf(l[hr], alpha[hr], rs);
    }
    /* once the running maxima settle, most tiles change no row's max: skip the rescale then */
    if (__any_sync(0xffffffffu, alpha[0] != 1.0f || alpha[1] != 1.0f)) {
#pragma unroll
        for (int n = 0; n < NA; n++) {
            acc[n][0] *= alpha[0];
            acc[n][1] *= alpha[0];
            acc[n][2] *= alpha[1];
            acc[n][3] *= alpha[1];
        }
    }
}

/* Partial NeoX RoPE of one token and its KV-cache write, by a whole thread block (every thread
 * calls it: it synchronises). q [H][D] and k [KV][D] (fp32) are rotated in place: pairs
 * (c, c + rot/2) for c < rot/2, angle fp32(pos)·inv_freq[c]; the rotated k and v are written as
 * bf16 to the token's cache rows kc, vc [KV][D]. cs, sn: shared scratch of rot/2 floats each. */
__device__ static void attn_rope_token(float *q, int H, float *k, const float *v, int KV, int D,
                                       int rot, const float *inv_freq, int pos, __nv_bfloat16 *kc,
                                       __nv_bfloat16 *vc, float *cs, float *sn) {
    const int half = rot / 2, tid = threadIdx.x, nt = blockDim.x;
    for (int c = tid; c < half; c += nt) {
        const float ang = (float)pos * inv_freq[c];
        sincosf(ang, &sn[c], &cs[c]);
    }
    __syncthreads();
    /* q: the rotated pairs only (the other dims pass through unchanged) */
    const int qn = H * half;
#pragma unroll 4
    for (int i = tid; i < qn; i += nt) {
        const int hh = i / half, c = i % half;
        float *x = q + (size_t)hh * D + c;
        const float x0 = x[0], x1 = x[half];
        x[0] = x0 * cs[c] - x1 * sn[c];
        x[half] = x1 * cs[c] + x0 * sn[c];
    }
    /* k: item j < half is the pair (j, j + half), item j >= half the pass-through dim j + half */
    const int kw = D - half;
    for (int i = tid; i < KV * kw; i += nt) {
        const int hh = i / kw, j = i % kw;
        float *x = k + (size_t)hh * D;
        __nv_bfloat16 *y = kc + (size_t)hh * D;
        if (j < half) {
            const float x0 = x[j], x1 = x[j + half];
            const float r0 = x0 * cs[j] - x1 * sn[j], r1 = x1 * cs[j] + x0 * sn[j];
            x[j] = r0;
            x[j + half] = r1;
            y[j] = __float2bfloat16_rn(r0);
            y[j + half] = __float2bfloat16_rn(r1);
        } else {
            y[j + half] = __float2bfloat16_rn(x[j + half]);
        }
    }
    for (int i = tid; i < KV * D; i += nt) vc[i] = __float2bfloat16_rn(v[i]);
}

#endif
