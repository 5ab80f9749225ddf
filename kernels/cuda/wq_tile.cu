/* wq_tile.cu — the expert matrix kernel for many tokens per expert: int8 / int4 (or bf16) weights
 * dequantised in registers and multiplied on the tensor cores (mma.sync m16n8k16, bf16 operands,
 * fp32 accumulation) with no dequantised copy of the weights anywhere, gate/up fused with SwiGLU.
 * It replaces "dequantise the expert to bf16, then cuBLAS", which writes and re-reads twice the
 * int8 bytes (four times the int4 bytes) per expert and call.
 *
 * Work split. Block (blockIdx.x = job, blockIdx.y = tile of BM = 256 weight rows) of 8 warps
 * computes the BM rows × up to BN = 64 tokens of one job (the host cuts an expert's tokens into
 * jobs of at most BN; jobs of one expert are adjacent, so blocks sharing a weight tile run
 * together and HBM delivers it once). Warp w owns the tile's 32-row block w (W13: 16 gate
 * and the matching 16 up rows) and all the job's tokens, so each weight is dequantised once. The
 * K loop runs over 64-byte units of every weight row (CK columns:
 * bf16 32, int8 64, int4 128); unit u of the tile's weights (8 × 2 KiB: the int8/int4 tiles as
 * stored, bf16 rows gathered), of the job's activations, and (int4) of its group scales is copied
 * to shared memory with cp.async, STAGES units ahead.
 *
 * Shared-memory activations are stored [v][token][t] in 16-byte pieces: piece (v, t) of a token
 * is its columns t·CK/4 + 8v .. + 8 in the unit, the ones lane t pairs with its weight bytes
 * (wq_frag.cuh), so a warp's read of 8 tokens is 512 contiguous bytes (no bank conflicts), as is
 * its read of 8 weight rows of a 2 KiB tile.
 *
 * int4 weights are dequantised with their group scale to the bf16 the dequantiser gives,
 * bf16(q · scale) (one rounding: the product of two bf16 is exact in fp32), so this kernel and the
 * dequantise-then-GEMM path multiply the same weights; int8 scales per row are applied to the fp32
 * sums. Every output is one warp's sums in a fixed order: results do not depend on the launch. */
#include <cuda_bf16.h>

#include "common/check.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/wq_frag.cuh"

#define WQT_BM      256                    /* weight rows per block: 8 blocks of 32 */
#define WQT_BN      MR_CUDA_WQT_MAX_TOKENS /* tokens per job at most */
#define WQT_THREADS 256

template <int FMT> struct wqt_cfg {
    static constexpr int CK = FMT == MR_CUDA_FMT_BF16 ? 32 : FMT == MR_CUDA_FMT_INT8 ? 64 : 128;
    /* units per pipeline step (one wait + barrier each) and steps in flight */
    static constexpr int UPS = FMT == MR_CUDA_FMT_INT4 ? 1 : 2;
    static constexpr int STAGES = FMT == MR_CUDA_FMT_INT4 ? 4 : 3;
    static constexpr int NV = CK / 32;              /* 16-byte activation pieces per lane */
    static constexpr int W_BYTES = WQT_BM * 64;     /* one unit of the tile's weights */
    static constexpr int X_BYTES = WQT_BN * CK * 2; /* one unit of the job's activations */
    static constexpr int S_BYTES = FMT == MR_CUDA_FMT_INT4 ? WQT_BM * 2 : 0; /* group scales */
};
/* Bytes of one unit's slot in shared memory: weights, activations (two parts with split ones),
 * scales; a pipeline step fills UPS slots, and STAGES · UPS slots are resident */
template <int FMT, int SP> struct wqt_stage {
    static constexpr int BYTES =
        wqt_cfg<FMT>::W_BYTES + SP * wqt_cfg<FMT>::X_BYTES + wqt_cfg<FMT>::S_BYTES;
};

__device__ static inline void wqt_cp16(void *smem, const void *src, bool ok) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(src),
                 "r"(ok ? 16 : 0));
}
__device__ static inline void wqt_commit() {
    asm volatile("cp.async.commit_group;");
}
template <int N> __device__ static inline void wqt_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N));
}

/* One thread's share of the copies of a unit, fixed for the whole K loop: source pointers at
 * unit 0 (a unit further is + ustep bytes of weights, + CK activation columns), whether each piece
 * exists (else the copy zero-fills), and where it lands in a stage. Piece k of the weights is
 * piece tid + 256·k of the tile's 8 blocks × 128; piece k of the activations is piece
 * tid + 256·k of the job's BN tokens × CK/8. */
template <int FMT, int SP> struct wqt_src {
    static constexpr int NX = WQT_BN * (wqt_cfg<FMT>::CK / 8) / WQT_THREADS;
    const uint8_t *w[4];
    const uint16_t *x[NX], *xl[NX];
    const uint16_t *sc;
    int x_dst[NX];
    unsigned w_ok, x_ok, sc_ok; /* bit k: piece k exists */
};

template <int FMT, int SP>
__device__ static inline void wqt_src_init(wqt_src<FMT, SP> &S, const mr_cuda_qmat &W, int rb0,
                                           int nrb, int units, size_t row_bytes, const uint16_t *x,
                                           const uint16_t *x_lo, int ldx, int row0, int cnt,
                                           int np) {
    typedef wqt_cfg<FMT> C;
    const int tid = threadIdx.x;
    const uint8_t *wq = (const uint8_t *)W.q;
    S.w_ok = S.x_ok = 0;
#pragma unroll
    for (int k = 0; k < 4; k++) {
        const int rb = (tid >> 7) + 2 * k, c = tid & 127;
        S.w[k] = FMT != MR_CUDA_FMT_BF16
                     ? wq + (size_t)(rb0 + rb) * (size_t)units * 2048 + (size_t)c * 16
                     : wq + ((size_t)(rb0 + rb) * 32 + (size_t)(c >> 2)) * row_bytes +
                           (size_t)(c & 3) * 16;
        if (rb < nrb)
            S.w_ok |= 1u << k;
        else
            S.w[k] = wq;
    }
    constexpr int XC = C::CK / 8;
    const int j = tid % XC, t = j / C::NV, v = j % C::NV;
#pragma unroll
    for (int k = 0; k < S.NX; k++) {
        const int tok = tid / XC + k * (WQT_THREADS / XC);
        const bool ok = tok < cnt;
        const size_t off = (size_t)(row0 + tok) * (size_t)ldx + (size_t)j * 8;
        S.x[k] = ok ? x + off : x;
        if (SP == 2) S.xl[k] = ok ? x_lo + off : x_lo;
        if (ok) S.x_ok |= 1u << k;
        S.x_dst[k] = C::W_BYTES + ((v * WQT_BN + tok) * 4 + t) * 16;
    }
    S.sc_ok = 0;
    S.sc = (const uint16_t *)W.scale;
    if (FMT == MR_CUDA_FMT_INT4 && tid < WQT_BM / 8 && rb0 * 32 + tid * 8 < np) {
        S.sc += rb0 * 32 + tid * 8;
        S.sc_ok = 1;
    }
}

/* Issue this thread's copies of unit u into one stage. */
template <int FMT, int SP>
__device__ static inline void wqt_load(uint8_t *stage, const wqt_src<FMT, SP> &S, int np, int u) {
    typedef wqt_cfg<FMT> C;
    const int tid = threadIdx.x;
    const size_t wstep = (size_t)u * (FMT != MR_CUDA_FMT_BF16 ? 2048 : 64);
#pragma unroll
    for (int k = 0; k < 4; k++)
        wqt_cp16(stage + tid * 16 + k * 4096, S.w[k] + ((S.w_ok >> k) & 1 ? wstep : 0),
                 (S.w_ok >> k) & 1);
    const size_t xstep = (size_t)u * C::CK;
#pragma unroll
    for (int k = 0; k < S.NX; k++) {
        const bool ok = (S.x_ok >> k) & 1;
        wqt_cp16(stage + S.x_dst[k], S.x[k] + (ok ? xstep : 0), ok);
        if (SP == 2) wqt_cp16(stage + C::X_BYTES + S.x_dst[k], S.xl[k] + (ok ? xstep : 0), ok);
    }
    if (FMT == MR_CUDA_FMT_INT4 && tid < WQT_BM / 8)
        wqt_cp16(stage + C::W_BYTES + SP * C::X_BYTES + tid * 16,
                 S.sc + (S.sc_ok ? (size_t)u * (size_t)np : 0), S.sc_ok);
}

/* One unit of the K loop for warp `warp`: its 32 weight rows of the slot (dequantised once into
 * fragments) times the first NT pieces of 8 tokens, accumulated into acc. */
template <int FMT, int SP, int NT>
__device__ static __forceinline__ void wqt_unit(float (&acc)[2][8][4], const uint8_t *slot,
                                                int warp, int lane) {
    typedef wqt_cfg<FMT> C;
    const int g = lane >> 2, t = lane & 3;
    const uint8_t *sw = slot + warp * 2048;
    const uint8_t *sx = slot + C::W_BYTES;
    uint4 wa[2][2];
    uint32_t sc2[2][2];
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int r = mt * 16 + g + 8 * h;
            wa[mt][h] = *(const uint4 *)(sw + r * 64 + t * 16);
            if (FMT == MR_CUDA_FMT_INT4) {
                const uint32_t sv = ((const uint16_t *)(sx + SP * C::X_BYTES))[warp * 32 + r];
                sc2[mt][h] = sv | (sv << 16);
            }
        }
#pragma unroll
    for (int v = 0; v < C::NV; v++) {
        uint4 xv[NT], xl[NT];
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            const int off = ((v * WQT_BN + nt * 8 + g) * 4 + t) * 16;
            xv[nt] = *(const uint4 *)(sx + off);
            if (SP == 2) xl[nt] = *(const uint4 *)(sx + C::X_BYTES + off);
        }
#pragma unroll
        for (int ss = 0; ss < 2; ss++) {
            const int s = 2 * v + ss;
#pragma unroll
            for (int mt = 0; mt < 2; mt++) {
                uint32_t a0, a1, a2, a3;
                wq_frag<FMT>(wa[mt][0], s, a0, a2);
                wq_frag<FMT>(wa[mt][1], s, a1, a3);
                if (FMT == MR_CUDA_FMT_INT4) {
                    a0 = wq_mul2(a0, sc2[mt][0]);
                    a2 = wq_mul2(a2, sc2[mt][0]);
                    a1 = wq_mul2(a1, sc2[mt][1]);
                    a3 = wq_mul2(a3, sc2[mt][1]);
                }
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                    wq_mma(acc[mt][nt], a0, a1, a2, a3, wq_word(xv[nt], 2 * ss),
                           wq_word(xv[nt], 2 * ss + 1));
                    if (SP == 2)
                        wq_mma(acc[mt][nt], a0, a1, a2, a3, wq_word(xl[nt], 2 * ss),
                               wq_word(xl[nt], 2 * ss + 1));
                }
            }
        }
    }
}

/* Issue the copies of pipeline step `step` (units step·UPS.. that exist) into their slots. */
template <int FMT, int SP>
__device__ static inline void wqt_load_step(uint8_t *smem, const wqt_src<FMT, SP> &S, int np,
                                            int step, int units) {
    typedef wqt_cfg<FMT> C;
#pragma unroll
    for (int i = 0; i < C::UPS; i++) {
        const int u = step * C::UPS + i;
        if (u < units)
            wqt_load<FMT, SP>(smem + ((step % C::STAGES) * C::UPS + i) * wqt_stage<FMT, SP>::BYTES,
                              S, np, u);
    }
}

template <int FMT, int WHICH, int SP>
__global__ void __launch_bounds__(WQT_THREADS, 1)
    wqt_kernel(const mr_cuda_job *jobs, const uint16_t *x, const uint16_t *x_lo, int ldx, int np,
               int kp, void *out, uint16_t *out_lo, int ldo, int n_out) {
    typedef wqt_cfg<FMT> C;
    constexpr int STAGE = wqt_stage<FMT, SP>::BYTES;
    extern __shared__ __align__(16) uint8_t wqt_smem[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const mr_cuda_job job = jobs[blockIdx.x];
    const mr_cuda_qmat W = WHICH == 0 ? job.w13 : job.w2;
    const int rb0 = blockIdx.y * (WQT_BM / 32), nrb = min(WQT_BM / 32, np / 32 - rb0);
    const int units = kp / C::CK;
    const size_t row_bytes = (size_t)kp * 64 / C::CK; /* 64 bytes per unit */
    /* warp w owns the tile's 32-row block w (W13: gate rows 0..15, up rows 16..31) and all the
     * job's tokens, in ntn pieces of 8 */
    const int ntn = min(WQT_BN / 8, (job.cnt + 7) / 8);
    const int ntp = ntn > 4 ? 8 : ntn > 2 ? 4 : ntn; /* token pieces computed: a power of two */
    const bool active = warp < nrb;
    wqt_src<FMT, SP> S;
    wqt_src_init<FMT, SP>(S, W, rb0, nrb, units, row_bytes, x, x_lo, ldx, job.row0, job.cnt, np);

    float acc[2][8][4];
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int c = 0; c < 4; c++) acc[mt][nt][c] = 0.0f;

    const int steps = (units + C::UPS - 1) / C::UPS;
#pragma unroll
    for (int s = 0; s < C::STAGES - 1; s++) {
        if (s < steps) wqt_load_step<FMT, SP>(wqt_smem, S, np, s, units);
        wqt_commit();
    }
    for (int step = 0; step < steps; step++) {
        wqt_wait<C::STAGES - 2>();
        __syncthreads(); /* step's units are in; every warp is done with step - 1's slots */
        const int sn = step + C::STAGES - 1;
        if (sn < steps) wqt_load_step<FMT, SP>(wqt_smem, S, np, sn, units);
        wqt_commit();
        if (!active) continue;
#pragma unroll
        for (int i = 0; i < C::UPS; i++) {
            if (step * C::UPS + i >= units) break;
            const uint8_t *slot = wqt_smem + ((step % C::STAGES) * C::UPS + i) * STAGE;
            if (ntp == 8)
                wqt_unit<FMT, SP, 8>(acc, slot, warp, lane);
            else if (ntp == 4)
                wqt_unit<FMT, SP, 4>(acc, slot, warp, lane);
            else if (ntp == 2)
                wqt_unit<FMT, SP, 2>(acc, slot, warp, lane);
            else
                wqt_unit<FMT, SP, 1>(acc, slot, warp, lane);
        }
    }
    wqt_wait<0>();
    if (!active) return;

    /* epilogue: fragment element c of acc[mt][nt] is row 16·mt + g + 8·(c/2) of the warp's block,
     * token 8·nt + 2t + c%2 of the job */
    const int rb = rb0 + warp;
    if (WHICH == 0) {
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int c = 0; c < 4; c++) {
                const int r = g + 8 * (c >> 1), tok = nt * 8 + 2 * t + (c & 1);
                const int j = rb * 16 + r;
                if (tok >= job.cnt || j >= n_out) continue;
                float gv = acc[0][nt][c], uv = acc[1][nt][c];
                if (FMT == MR_CUDA_FMT_INT8) {
                    gv *= ((const float *)W.scale)[rb * 32 + r];
                    uv *= ((const float *)W.scale)[rb * 32 + 16 + r];
                }
                const float a = gv / (1.0f + expf(-gv)) * uv;
                const size_t o = (size_t)(job.row0 + tok) * (size_t)ldo + j;
                const __nv_bfloat16 hi = __float2bfloat16_rn(a);
                ((__nv_bfloat16 *)out)[o] = hi;
                if (SP == 2)
                    ((__nv_bfloat16 *)out_lo)[o] = __float2bfloat16_rn(a - __bfloat162float(hi));
            }
    } else {
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
#pragma unroll
            for (int nt = 0; nt < 8; nt++)
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    const int row = rb * 32 + mt * 16 + g + 8 * (c >> 1);
                    const int tok = nt * 8 + 2 * t + (c & 1);
                    if (tok >= job.cnt || row >= n_out) continue;
                    float v = acc[mt][nt][c];
                    if (FMT == MR_CUDA_FMT_INT8) v *= ((const float *)W.scale)[row];
                    ((float *)out)[(size_t)(job.row0 + tok) * (size_t)ldo + row] = v;
                }
    }
}

typedef void (*wqt_fn)(const mr_cuda_job *, const uint16_t *, const uint16_t *, int, int, int,
                       void *, uint16_t *, int, int);

template <int FMT> static wqt_fn wqt_pick_f(int which, int sp, size_t *smem) {
    *smem = (size_t)wqt_cfg<FMT>::STAGES * wqt_cfg<FMT>::UPS *
            (sp == 2 ? wqt_stage<FMT, 2>::BYTES : wqt_stage<FMT, 1>::BYTES);
    if (sp == 2) return which == 0 ? wqt_kernel<FMT, 0, 2> : wqt_kernel<FMT, 1, 2>;
    return which == 0 ? wqt_kernel<FMT, 0, 1> : wqt_kernel<FMT, 1, 1>;
}

static wqt_fn wqt_pick(int fmt, int which, int sp, size_t *smem) {
    return fmt == MR_CUDA_FMT_BF16   ? wqt_pick_f<MR_CUDA_FMT_BF16>(which, sp, smem)
           : fmt == MR_CUDA_FMT_INT8 ? wqt_pick_f<MR_CUDA_FMT_INT8>(which, sp, smem)
                                     : wqt_pick_f<MR_CUDA_FMT_INT4>(which, sp, smem);
}

extern "C" mr_status mr_cuda_wqt_launch(int fmt, int which, const mr_cuda_job *jobs_dev, int n_jobs,
                                        const uint16_t *x, const uint16_t *x_lo, int ldx, int np,
                                        int kp, void *out, uint16_t *out_lo, int ldo, int n_out,
                                        cudaStream_t st) {
    const int fmt_ok = fmt >= MR_CUDA_FMT_BF16 && fmt <= MR_CUDA_FMT_INT4;
    if (!wq_tile_args_ok("wq tile", fmt_ok, fmt, which, jobs_dev, n_jobs, x, x_lo, ldx, np, kp, out,
                         out_lo, n_out))
        return MR_ERR_INVALID;
    const int sp = x_lo ? 2 : 1;
    size_t smem;
    const wqt_fn fn = wqt_pick(fmt, which, sp, &smem);
    /* opt in to more than 48 KiB of shared memory: a flag per device and instantiation (format,
     * which, activation parts) */
    static unsigned char opted[WQ_MAX_DEVICES * 12];
    MR_CHECK(wq_opt_in_smem((const void *)fn, smem, opted, 12, (fmt * 2 + which) * 2 + sp - 1));
    const dim3 grid((unsigned)n_jobs, (unsigned)((np + WQT_BM - 1) / WQT_BM));
    fn<<<grid, WQT_THREADS, smem, st>>>(jobs_dev, x, x_lo, ldx, np, kp, out, out_lo, ldo, n_out);
    MR_CUDA_CHECK_LAUNCH("wq tile kernel launch");
    return MR_OK;
}
