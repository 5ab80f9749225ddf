/* wq_wgmma.cu — the expert matrix kernel for many tokens per expert on Hopper: int8 / int4
 * weights dequantised in registers and fed to the warpgroup tensor-core instruction (wgmma, A from
 * registers, B from shared memory), gate/up fused with SwiGLU, no dequantised copy of the
 * weights anywhere. mma.sync (wq_tile.cu) tops out near half of the tensor cores' rate on this
 * GPU (ncu: tensor pipe 38% active, "math pipe throttle" the first stall, docs/performance.md);
 * wgmma is what reaches the rest.
 *
 * Work split. Block (blockIdx.x = job, blockIdx.y = tile of 256 weight rows) of 4 warpgroups
 * computes the tile's rows × up to BN tokens of one job (BN = 128, or 64 with split activations;
 * the host cuts an expert's tokens into jobs of at most BN, adjacent, so blocks sharing a weight
 * tile run together). Warpgroup wg takes the tile's 32-row blocks 2wg and 2wg + 1 as one m64
 * operand; its warp q holds, as the A fragment's rows g and g + 8, block (2wg + q/2)'s rows
 * 8(q%2) + g and 16 + 8(q%2) + g — for W13 the gate and the up row of the same output column, so
 * SwiGLU happens in the thread that holds both sums. The K loop runs over the weights' 64-byte
 * units (CK = 64 int8 / 128 int4 columns); each unit's weights (the stored 2 KiB tiles), the job's
 * activations and (int4) group scales are copied to shared memory with cp.async, STAGES - 1
 * units ahead, and consumed as chunks of four k16 steps (one 64-column k-block).
 *
 * The k order. A lane's A fragment comes from its 16 contiguous weight bytes (wq_frag.cuh): mma
 * step s of a unit pairs fragment k positions (2t, 2t+1, 2t+8, 2t+9) with the unit's columns
 * t·CK/4 + 4s + (0, 1, 2, 3). wgmma reads B from shared memory in fragment order, so the
 * activations this kernel reads are stored in that order: column c of a unit at position
 * mr_cuda_wqg_pos(c) (the gather writes x that way for the experts on this path, and the gate/up
 * pass writes its output that way for the down pass). In shared memory each 64-column k-block of
 * the activations is BN rows of 128 bytes in the 128-byte swizzle wgmma's descriptor names (the
 * 16-byte chunk ch of row n at chunk ch ^ (n % 8)).
 *
 * int4 weights are dequantised with their group scale to bf16(q · scale), as the dequantiser gives;
 * int8 scales per row are applied to the fp32 sums. Every output is one warpgroup's sums in a
 * fixed order: results do not depend on the launch. Compiled for sm_90a only (wgmma). */
#include <cuda_bf16.h>

#include "common/check.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/wq_frag.cuh"

#define WQG_BM      256
#define WQG_THREADS 512
#define WQG_STAGES  4 /* unit slots in shared memory */
#define WQG_AHEAD   2 /* units copied ahead: the slot of unit u - 2 is the one reloaded */

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define WQG_ENABLED 1
#endif

template <int FMT, int SP> struct wqg_cfg {
    static constexpr int CK = FMT == MR_CUDA_FMT_INT8 ? 64 : 128;
    static constexpr int KB = CK / 64;            /* 64-column k-blocks per unit */
    static constexpr int BN = SP == 2 ? 64 : 128; /* tokens per job at most */
    static constexpr int W_BYTES = WQG_BM * 64;
    static constexpr int XB_BYTES = BN * 128;     /* one k-block of one activation part */
    static constexpr int X_BYTES = KB * XB_BYTES; /* one unit of one activation part */
    static constexpr int S_BYTES = FMT == MR_CUDA_FMT_INT4 ? WQG_BM * 2 : 0;
    /* a unit's slot; slots start on 1 KiB (the swizzle pattern's period) */
    static constexpr int SLOT = (W_BYTES + SP * X_BYTES + S_BYTES + 1023) / 1024 * 1024;
    static constexpr int XC = CK / 8; /* 16-byte activation pieces per token and unit */
    static constexpr int NX = BN * XC / WQG_THREADS;
};

__device__ static inline void wqg_cp16(uint32_t dst, const void *src, bool ok) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src),
                 "r"(ok ? 16 : 0));
}

#ifdef WQG_ENABLED
__device__ static __forceinline__ void wqg_fence() {
    asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
}
__device__ static __forceinline__ void wqg_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
}
template <int N> __device__ static __forceinline__ void wqg_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}
/* Shared-memory descriptor of a K-major operand in the 128-byte swizzle: start address,
 * leading byte offset (unused with this swizzle: 1), stride byte offset 1024 (8 rows of 128 B),
 * swizzle mode 1 in bits 62-63 (all fields in 16-byte units). */
__device__ static __forceinline__ uint64_t wqg_desc(uint32_t smem_addr) {
    return (uint64_t)((smem_addr & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) |
           ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}

/* d (m64n128, fp32, this thread's 64) += A (four bf16x2 registers, the mma.m16n8k16 A layout
 * per warp) · B (the smem tile described by desc). */
__device__ static __forceinline__ void wqg_mma_n128(float *d, const uint32_t *a, uint64_t desc) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
                 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16,"
                 "%17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31,"
                 "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46,"
                 "%47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61,"
                 "%62, %63}, "
                 "{%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
                   "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
                   "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]),
                   "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),
                   "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]),
                   "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
                   "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
                   "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]),
                   "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]),
                   "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc));
}

/* d (m64n64, fp32, this thread's 32) += A (four bf16x2 registers, the mma.m16n8k16 A layout
 * per warp) · B (the smem tile described by desc). */
__device__ static __forceinline__ void wqg_mma_n64(float *d, const uint32_t *a, uint64_t desc) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
                 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16,"
                 "%17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
                 "{%32, %33, %34, %35}, %36, p, 1, 1, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
                   "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
                   "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]),
                   "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),
                   "+f"(d[30]), "+f"(d[31])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc));
}

/* One thread's fixed share of a unit's copies (see wq_tile.cu): weight pieces tid and tid + 512
 * (blocks tid/128 and + 4), activation pieces tid + 512·k (the column chunk is the same for all k
 * since 512 is a multiple of CK/8). */
template <int FMT, int SP> struct wqg_src {
    uint32_t w_off, w_koff; /* bytes from W.q */
    uint32_t x_off, x_koff; /* elements from x (and x_lo) */
    uint32_t x_dst;         /* piece 0's bytes in the slot; piece k is k·(512/XC) tokens on */
    unsigned w_ok, x_ok;
    uint32_t sc_off; /* int4: elements from W.scale; ~0u: none */
};

template <int FMT, int SP>
__device__ static inline void wqg_src_init(wqg_src<FMT, SP> &S, int rb0, int nrb, int units,
                                           int ldx, int row0, int cnt, int np) {
    typedef wqg_cfg<FMT, SP> C;
    const int tid = threadIdx.x;
    const int rb = tid >> 7, c = tid & 127;
    S.w_off = (uint32_t)(rb0 + rb) * (uint32_t)units * 2048u + (uint32_t)c * 16u;
    S.w_koff = 4u * (uint32_t)units * 2048u;
    S.w_ok = (rb < nrb ? 1u : 0u) | (rb + 4 < nrb ? 2u : 0u);
    const int ch = tid % C::XC, n = tid / C::XC; /* chunk of the unit, token */
    S.x_off = (uint32_t)(row0 + n) * (uint32_t)ldx + (uint32_t)ch * 8u;
    S.x_koff = (uint32_t)(WQG_THREADS / C::XC) * (uint32_t)ldx;
    /* k-block ch/8, row n, chunk ch%8 swizzled; n + k·(512/XC) keeps n % 8 */
    S.x_dst = C::W_BYTES + (ch / 8) * C::XB_BYTES + (n >> 3) * 1024 + (n & 7) * 128 +
              (((ch & 7) ^ (n & 7)) << 4);
    S.x_ok = 0;
#pragma unroll
    for (int k = 0; k < C::NX; k++)
        if (n + k * (WQG_THREADS / C::XC) < cnt) S.x_ok |= 1u << k;
    S.sc_off = ~0u;
    if (FMT == MR_CUDA_FMT_INT4 && tid < WQG_BM / 8 && rb0 * 32 + tid * 8 < np)
        S.sc_off = (uint32_t)(rb0 * 32 + tid * 8);
}

template <int FMT, int SP>
__device__ static inline void wqg_load(uint32_t slot, const wqg_src<FMT, SP> &S,
                                       const mr_cuda_qmat &W, const uint16_t *x,
                                       const uint16_t *x_lo, int np, int u) {
    typedef wqg_cfg<FMT, SP> C;
    const int tid = threadIdx.x;
    const uint8_t *wq = (const uint8_t *)W.q;
    const size_t wstep = (size_t)u * 2048;
#pragma unroll
    for (int k = 0; k < 2; k++) {
        const bool ok = (S.w_ok >> k) & 1;
        wqg_cp16(slot + tid * 16 + k * 8192, ok ? wq + S.w_off + k * S.w_koff + wstep : wq, ok);
    }
    const size_t xstep = (size_t)u * C::CK;
#pragma unroll
    for (int k = 0; k < C::NX; k++) {
        const bool ok = (S.x_ok >> k) & 1;
        const size_t xo = S.x_off + (size_t)k * S.x_koff + xstep;
        const uint32_t dst = slot + S.x_dst + k * (WQG_THREADS / C::XC / 8) * 1024;
        wqg_cp16(dst, ok ? x + xo : x, ok);
        if (SP == 2) wqg_cp16(dst + C::X_BYTES, ok ? x_lo + xo : x_lo, ok);
    }
    if (FMT == MR_CUDA_FMT_INT4 && tid < WQG_BM / 8) {
        const uint16_t *sc = (const uint16_t *)W.scale;
        const bool ok = S.sc_off != ~0u;
        wqg_cp16(slot + C::W_BYTES + SP * C::X_BYTES + tid * 16,
                 ok ? sc + S.sc_off + (size_t)u * (size_t)np : sc, ok);
    }
}

/* What a unit of the K loop needs besides the operands. */
struct wqg_ctx {
    uint32_t base; /* 1 KiB-aligned shared address of slot 0 */
    int units, np, rb, r0, r1, t;
    bool active; /* this warpgroup has rows in the matrix (warpgroup-uniform) */
};

/* One chunk (four k16 steps, one 64-column k-block) of a warpgroup: dequantise its A fragments
 * into a, then issue its wgmmas as one group. a was last read by the group two chunks back. */
template <int FMT, int SP>
__device__ static __forceinline__ void wqg_chunk(float *d, uint32_t (&a)[4][4], const uint4 &w0,
                                                 const uint4 &w1, uint32_t s0, uint32_t s1, int kb,
                                                 uint32_t xb) {
    typedef wqg_cfg<FMT, SP> C;
    wqg_wait<1>();
#pragma unroll
    for (int s4 = 0; s4 < 4; s4++) {
        wq_frag<FMT>(w0, kb * 4 + s4, a[s4][0], a[s4][2]);
        wq_frag<FMT>(w1, kb * 4 + s4, a[s4][1], a[s4][3]);
        if (FMT == MR_CUDA_FMT_INT4) {
            a[s4][0] = wq_mul2(a[s4][0], s0);
            a[s4][2] = wq_mul2(a[s4][2], s0);
            a[s4][1] = wq_mul2(a[s4][1], s1);
            a[s4][3] = wq_mul2(a[s4][3], s1);
        }
    }
    wqg_fence();
#pragma unroll
    for (int s4 = 0; s4 < 4; s4++) {
        if (C::BN == 128) {
            wqg_mma_n128(d, a[s4], wqg_desc(xb + s4 * 32));
        } else {
            wqg_mma_n64(d, a[s4], wqg_desc(xb + s4 * 32));
            if (SP == 2) wqg_mma_n64(d, a[s4], wqg_desc(xb + C::X_BYTES + s4 * 32));
        }
    }
    wqg_commit();
}

/* Unit u: make sure the wgmmas of unit u - 2 are done (their slot is reloaded now), wait for
 * unit u's copies, start those of unit u + AHEAD, then the unit's chunks with fragment sets aa
 * (first chunk) and ab (second, int4). */
template <int FMT, int SP>
__device__ static __forceinline__ void
wqg_unit(float *d, uint32_t (&aa)[4][4], uint32_t (&ab)[4][4], const wqg_ctx &c,
         const wqg_src<FMT, SP> &S, const mr_cuda_qmat &W, const uint16_t *x, const uint16_t *x_lo,
         const uint8_t *smem, int u) {
    typedef wqg_cfg<FMT, SP> C;
    wqg_wait<1>();
    asm volatile("cp.async.wait_group %0;" ::"n"(WQG_AHEAD - 1));
    __syncthreads(); /* unit u is in; unit u - 2's slot is free in every warpgroup */
    const int un = u + WQG_AHEAD;
    if (un < c.units)
        wqg_load<FMT, SP>(c.base + (un % WQG_STAGES) * C::SLOT, S, W, x, x_lo, c.np, un);
    asm volatile("cp.async.commit_group;");
    if (!c.active) return;
    const uint32_t slot = c.base + (u % WQG_STAGES) * C::SLOT;
    const uint8_t *sw = smem + (slot - (uint32_t)__cvta_generic_to_shared(smem));
    const uint4 w0 = *(const uint4 *)(sw + c.rb * 2048 + c.r0 * 64 + c.t * 16);
    const uint4 w1 = *(const uint4 *)(sw + c.rb * 2048 + c.r1 * 64 + c.t * 16);
    uint32_t s0 = 0, s1 = 0;
    if (FMT == MR_CUDA_FMT_INT4) {
        const uint16_t *sc = (const uint16_t *)(sw + C::W_BYTES + SP * C::X_BYTES);
        s0 = sc[c.rb * 32 + c.r0] * 0x10001u;
        s1 = sc[c.rb * 32 + c.r1] * 0x10001u;
    }
    wqg_chunk<FMT, SP>(d, aa, w0, w1, s0, s1, 0, slot + C::W_BYTES);
    if (C::KB == 2) wqg_chunk<FMT, SP>(d, ab, w0, w1, s0, s1, 1, slot + C::W_BYTES + C::XB_BYTES);
}
#endif

template <int FMT, int WHICH, int SP>
__global__ void __launch_bounds__(WQG_THREADS, 1)
    wqg_kernel(const mr_cuda_job *jobs, const uint16_t *x, const uint16_t *x_lo, int ldx, int np,
               int kp, void *out, uint16_t *out_lo, int ldo, int n_out) {
#ifdef WQG_ENABLED
    typedef wqg_cfg<FMT, SP> C;
    extern __shared__ __align__(1024) uint8_t wqg_smem[];
    const uint32_t base =
        ((uint32_t)__cvta_generic_to_shared(wqg_smem) + 1023u) & ~1023u; /* 1 KiB aligned */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3, wg = warp >> 2, q = warp & 3;
    const mr_cuda_job job = jobs[blockIdx.x];
    const mr_cuda_qmat W = WHICH == 0 ? job.w13 : job.w2;
    const int rb0 = blockIdx.y * (WQG_BM / 32), nrb = min(WQG_BM / 32, np / 32 - rb0);
    const int units = kp / C::CK;
    /* this thread's two A rows: block rb of the tile, rows r0 and r1 of the block */
    const int rb = 2 * wg + (q >> 1), r0 = 8 * (q & 1) + g, r1 = 16 + r0;
    const bool active = 2 * wg < nrb; /* warpgroup-uniform */
    wqg_src<FMT, SP> S;
    wqg_src_init<FMT, SP>(S, rb0, nrb, units, ldx, job.row0, job.cnt, np);

    float d[C::BN / 2];
#pragma unroll
    for (int i = 0; i < C::BN / 2; i++) d[i] = 0.0f;

#pragma unroll
    for (int u = 0; u < WQG_AHEAD; u++) {
        if (u < units) wqg_load<FMT, SP>(base + u * C::SLOT, S, W, x, x_lo, np, u);
        asm volatile("cp.async.commit_group;");
    }
    /* two sets of A fragments, used by alternate chunks: a chunk's wgmmas may still be reading
     * one set while the next chunk dequantises into the other */
    uint32_t a0[4][4], a1[4][4];
    const wqg_ctx ctx = {base, units, np, rb, r0, r1, t, active};
    for (int u = 0; u < units; u++) {
        if (C::KB == 2 || (u & 1) == 0)
            wqg_unit<FMT, SP>(d, a0, a1, ctx, S, W, x, x_lo, wqg_smem, u);
        else
            wqg_unit<FMT, SP>(d, a1, a0, ctx, S, W, x, x_lo, wqg_smem, u);
    }
    wqg_wait<0>();
    asm volatile("cp.async.wait_group 0;");
    if (!active || rb >= nrb) return;

    /* epilogue: d[4i + c] is row (c < 2 ? r0 : r1) of block rb, token 8i + 2t + c%2 */
    const int rbg = rb0 + rb;
#pragma unroll
    for (int i = 0; i < C::BN / 8; i++)
#pragma unroll
        for (int c = 0; c < 2; c++) {
            const int tok = 8 * i + 2 * t + c;
            if (tok >= job.cnt) continue;
            if (WHICH == 0) {
                const int j = rbg * 16 + r0; /* output column: gate row r0, up row r1 */
                if (j >= n_out) continue;
                float gv = d[4 * i + c], uv = d[4 * i + 2 + c];
                if (FMT == MR_CUDA_FMT_INT8) {
                    gv *= ((const float *)W.scale)[rbg * 32 + r0];
                    uv *= ((const float *)W.scale)[rbg * 32 + r1];
                }
                const float a = gv / (1.0f + expf(-gv)) * uv;
                const size_t o = (size_t)(job.row0 + tok) * (size_t)ldo +
                                 (size_t)(j / C::CK * C::CK + MR_CUDA_WQG_POS(j % C::CK, C::CK));
                const __nv_bfloat16 hi = __float2bfloat16_rn(a);
                ((__nv_bfloat16 *)out)[o] = hi;
                if (SP == 2)
                    ((__nv_bfloat16 *)out_lo)[o] = __float2bfloat16_rn(a - __bfloat162float(hi));
            } else {
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const int row = rbg * 32 + (h ? r1 : r0);
                    if (row >= n_out) continue;
                    float v = d[4 * i + 2 * h + c];
                    if (FMT == MR_CUDA_FMT_INT8) v *= ((const float *)W.scale)[row];
                    ((float *)out)[(size_t)(job.row0 + tok) * (size_t)ldo + row] = v;
                }
            }
        }
#endif
}

typedef void (*wqg_fn)(const mr_cuda_job *, const uint16_t *, const uint16_t *, int, int, int,
                       void *, uint16_t *, int, int);

template <int FMT> static wqg_fn wqg_pick_f(int which, int sp, size_t *smem) {
    *smem = (size_t)WQG_STAGES * (sp == 2 ? wqg_cfg<FMT, 2>::SLOT : wqg_cfg<FMT, 1>::SLOT) + 1024;
    if (sp == 2) return which == 0 ? wqg_kernel<FMT, 0, 2> : wqg_kernel<FMT, 1, 2>;
    return which == 0 ? wqg_kernel<FMT, 0, 1> : wqg_kernel<FMT, 1, 1>;
}

static wqg_fn wqg_pick(int fmt, int which, int sp, size_t *smem) {
    return fmt == MR_CUDA_FMT_INT8 ? wqg_pick_f<MR_CUDA_FMT_INT8>(which, sp, smem)
                                   : wqg_pick_f<MR_CUDA_FMT_INT4>(which, sp, smem);
}

extern "C" int mr_cuda_wqg_available(void) {
    /* built for sm_90a and running on a compute capability 9.0 device */
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess)
        return 0;
    cudaFuncAttributes fa;
    return major == 9 && minor == 0 &&
           cudaFuncGetAttributes(&fa, wqg_kernel<MR_CUDA_FMT_INT8, 0, 1>) == cudaSuccess;
}

extern "C" mr_status mr_cuda_wqg_launch(int fmt, int which, const mr_cuda_job *jobs_dev, int n_jobs,
                                        const uint16_t *x, const uint16_t *x_lo, int ldx, int np,
                                        int kp, void *out, uint16_t *out_lo, int ldo, int n_out,
                                        cudaStream_t st) {
    const int fmt_ok = fmt == MR_CUDA_FMT_INT8 || fmt == MR_CUDA_FMT_INT4;
    if (!wq_tile_args_ok("wq wgmma", fmt_ok, fmt, which, jobs_dev, n_jobs, x, x_lo, ldx, np, kp,
                         out, out_lo, n_out))
        return MR_ERR_INVALID;
    const int sp = x_lo ? 2 : 1;
    size_t smem;
    const wqg_fn fn = wqg_pick(fmt, which, sp, &smem);
    /* opt in to more than 48 KiB of shared memory: a flag per device and instantiation (format,
     * which, activation parts) */
    static unsigned char opted[WQ_MAX_DEVICES * 12];
    MR_CHECK(wq_opt_in_smem((const void *)fn, smem, opted, 12, (fmt * 2 + which) * 2 + sp - 1));
    const dim3 grid((unsigned)n_jobs, (unsigned)((np + WQG_BM - 1) / WQG_BM));
    fn<<<grid, WQG_THREADS, smem, st>>>(jobs_dev, x, x_lo, ldx, np, kp, out, out_lo, ldo, n_out);
    MR_CUDA_CHECK_LAUNCH("wq wgmma kernel launch");
    return MR_OK;
}
