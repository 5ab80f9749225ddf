/* wq_mma.cu — the expert matrix kernel for few tokens per expert: weights streamed once from
 * HBM in 16-byte loads, dequantised in registers (int8 / int4) and multiplied on the tensor cores
 * (mma.sync m16n8k16, bf16 operands, fp32 accumulation), gate/up fused with SwiGLU.
 *
 * Work split. Block (blockIdx.x = 32-row block, blockIdx.y = job) of ks warps; warp w takes
 * chunks [w·U/ks, (w+1)·U/ks) of the U = kp/CK column chunks and both 16-row tiles of the block;
 * the ks partial sums are added in warp order through shared memory (deterministic for a given
 * ks), then the epilogue applies per-row scales (int8), SwiGLU (gate/up) and stores.
 * The weight fragments (wq_frag.cuh) take the weights in their stored order. */
#include <cuda_bf16.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/cuda_pdl.cuh"
#include "kernels/cuda/wq_frag.cuh"

template <int FMT, int NT, int WHICH, int SP>
__global__ void __launch_bounds__(256)
    wq_kernel(const mr_cuda_job *jobs, const uint16_t *x, const uint16_t *x_lo, int ldx, int np,
              int kp, void *out, uint16_t *out_lo, int ldo, int n_out, float *gpart, int *gcount) {
    extern __shared__ float wq_red[]; /* [ks][2·NT·4][32] partial sums, then [SZ] block sums */
    __shared__ int wq_last;
    constexpr int CK = FMT == MR_CUDA_FMT_BF16 ? 32 : FMT == MR_CUDA_FMT_INT8 ? 64 : 128;
    constexpr int NV = CK / 32; /* 16-byte activation vectors per lane and chunk */
    constexpr int SZ = 2 * NT * 4 * 32;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, ks = blockDim.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    mr_pdl_trigger(); /* the next kernel may be scheduled once every block has started */
    const mr_cuda_job job = jobs[blockIdx.y];
    const mr_cuda_qmat W = WHICH == 0 ? job.w13 : job.w2;
    const int rb = blockIdx.x, part = blockIdx.z, nparts = gridDim.z;
    const size_t row_bytes = FMT == MR_CUDA_FMT_BF16   ? (size_t)kp * 2
                             : FMT == MR_CUDA_FMT_INT8 ? (size_t)kp
                                                       : (size_t)kp / 2;
    const int units = kp / CK;
    /* K slices: nparts blocks (split-K, gridDim.z) × ks warps each */
    const int slice = part * ks + warp, n_slices = nparts * ks;
    const int u0 = slice * units / n_slices, u1 = (slice + 1) * units / n_slices;
    float *blk = wq_red + (size_t)ks * SZ;
    /* lane's bytes of row rb·32 + g, unit u at wbase + u · ustep; rows +8, +16, +24 at multiples of
     * rstep: row-major bf16, or the int8 / int4 tiles (cuda_internal.h), where a warp's load of 8
     * rows is 512 contiguous bytes */
    constexpr bool TILED = FMT != MR_CUDA_FMT_BF16;
    const size_t ustep = TILED ? 2048 : 64, rstep = TILED ? 8 * 64 : 8 * row_bytes;
    const uint8_t *wbase =
        TILED ? (const uint8_t *)W.q + (size_t)rb * (size_t)units * 2048 + g * 64 + t * 16
              : (const uint8_t *)W.q + (size_t)(rb * 32 + g) * row_bytes + t * 16;

    for (int p0 = 0; p0 < job.cnt; p0 += 8 * NT) {
        float acc[2][NT][4];
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int c = 0; c < 4; c++) acc[mt][nt][c] = 0.0f;
        size_t xoff[NT];
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
            xoff[nt] = (size_t)(job.row0 + p0 + nt * 8 + g) * (size_t)ldx + t * (CK / 4);

        uint4 wv[4], wn[4];
        if (u0 < u1) {
            const uint8_t *wp = wbase + (size_t)u0 * ustep;
#pragma unroll
            for (int i = 0; i < 4; i++) wv[i] = wq_ld_stream(wp + (size_t)i * rstep);
        }
        /* the weights do not depend on the previous kernel; x, out and the split-K scratch do */
        mr_pdl_wait();
        for (int u = u0; u < u1; u++) {
            if (u + 1 < u1) {
                const uint8_t *wp = wbase + (size_t)(u + 1) * ustep;
#pragma unroll
                for (int i = 0; i < 4; i++) wn[i] = wq_ld_stream(wp + (size_t)i * rstep);
            }
            float tmp[2][NT][4];
            if (FMT == MR_CUDA_FMT_INT4) {
#pragma unroll
                for (int mt = 0; mt < 2; mt++)
#pragma unroll
                    for (int nt = 0; nt < NT; nt++)
#pragma unroll
                        for (int c = 0; c < 4; c++) tmp[mt][nt][c] = 0.0f;
            }
#pragma unroll
            for (int v = 0; v < NV; v++) {
                uint4 xv[NT], xl[NT];
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                    xv[nt] = __ldg((const uint4 *)(x + xoff[nt] + (size_t)u * CK + v * 8));
                    if (SP == 2)
                        xl[nt] = __ldg((const uint4 *)(x_lo + xoff[nt] + (size_t)u * CK + v * 8));
                }
#pragma unroll
                for (int ss = 0; ss < 2; ss++) {
                    const int s = 2 * v + ss;
#pragma unroll
                    for (int mt = 0; mt < 2; mt++) {
                        uint32_t a0, a1, a2, a3;
                        wq_frag<FMT>(wv[2 * mt], s, a0, a2);
                        wq_frag<FMT>(wv[2 * mt + 1], s, a1, a3);
#pragma unroll
                        for (int nt = 0; nt < NT; nt++) {
                            float *c = FMT == MR_CUDA_FMT_INT4 ? tmp[mt][nt] : acc[mt][nt];
                            wq_mma(c, a0, a1, a2, a3, wq_word(xv[nt], 2 * ss),
                                   wq_word(xv[nt], 2 * ss + 1));
                            if (SP == 2)
                                wq_mma(c, a0, a1, a2, a3, wq_word(xl[nt], 2 * ss),
                                       wq_word(xl[nt], 2 * ss + 1));
                        }
                    }
                }
            }
            if (FMT == MR_CUDA_FMT_INT4) {
                /* group u of rows g, g+8, g+16, g+24 of the block */
                const __nv_bfloat16 *sc =
                    (const __nv_bfloat16 *)W.scale + (size_t)u * (size_t)np + rb * 32 + g;
                float s[4];
#pragma unroll
                for (int i = 0; i < 4; i++) s[i] = __bfloat162float(sc[8 * i]);
#pragma unroll
                for (int mt = 0; mt < 2; mt++)
#pragma unroll
                    for (int nt = 0; nt < NT; nt++) {
                        acc[mt][nt][0] += s[2 * mt] * tmp[mt][nt][0];
                        acc[mt][nt][1] += s[2 * mt] * tmp[mt][nt][1];
                        acc[mt][nt][2] += s[2 * mt + 1] * tmp[mt][nt][2];
                        acc[mt][nt][3] += s[2 * mt + 1] * tmp[mt][nt][3];
                    }
            }
#pragma unroll
            for (int i = 0; i < 4; i++) wv[i] = wn[i];
        }

        float *my = wq_red + (size_t)warp * SZ;
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int c = 0; c < 4; c++)
                    my[((mt * NT + nt) * 4 + c) * 32 + lane] = acc[mt][nt][c];
        __syncthreads();
        for (int e = threadIdx.x; e < SZ; e += blockDim.x) {
            float v = 0.0f;
            for (int w = 0; w < ks; w++) v += wq_red[(size_t)w * SZ + e];
            blk[e] = v;
        }
        __syncthreads();
        if (nparts > 1) {
            /* split-K (one pass only): partials to global, the last block of this row block
             * adds them in part order (deterministic) and runs the epilogue */
            const size_t tile = (size_t)blockIdx.y * gridDim.x + rb;
            float *gp = gpart + tile * (size_t)nparts * SZ;
            for (int e = threadIdx.x; e < SZ; e += blockDim.x) gp[(size_t)part * SZ + e] = blk[e];
            __threadfence();
            __syncthreads();
            if (threadIdx.x == 0) wq_last = atomicAdd(&gcount[tile], 1) == nparts - 1;
            __syncthreads();
            if (!wq_last) return;
            __threadfence();
            for (int e = threadIdx.x; e < SZ; e += blockDim.x) {
                float v = 0.0f;
                for (int q = 0; q < nparts; q++) v += __ldcg(gp + (size_t)q * SZ + e);
                blk[e] = v;
            }
            if (threadIdx.x == 0) gcount[tile] = 0; /* ready for the next launch */
            __syncthreads();
        }

        if (WHICH == 0) {
            for (int e = threadIdx.x; e < NT * 128; e += blockDim.x) {
                const int nt = e >> 7, c = (e >> 5) & 3, ln = e & 31;
                const float gv0 = blk[((0 * NT + nt) * 4 + c) * 32 + ln];
                const float uv0 = blk[((1 * NT + nt) * 4 + c) * 32 + ln];
                float gv = gv0, uv = uv0;
                const int rr = (ln >> 2) + 8 * (c >> 1);
                const int tok = p0 + nt * 8 + 2 * (ln & 3) + (c & 1);
                if (FMT == MR_CUDA_FMT_INT8) {
                    gv *= ((const float *)W.scale)[rb * 32 + rr];
                    uv *= ((const float *)W.scale)[rb * 32 + 16 + rr];
                }
                const int j = rb * 16 + rr;
                if (tok < job.cnt && j < n_out) {
                    const float a = gv / (1.0f + expf(-gv)) * uv;
                    const size_t o = (size_t)(job.row0 + tok) * (size_t)ldo + j;
                    const __nv_bfloat16 hi = __float2bfloat16_rn(a);
                    ((__nv_bfloat16 *)out)[o] = hi;
                    if (SP == 2)
                        ((__nv_bfloat16 *)out_lo)[o] =
                            __float2bfloat16_rn(a - __bfloat162float(hi));
                }
            }
        } else {
            for (int e = threadIdx.x; e < 2 * NT * 128; e += blockDim.x) {
                const int mt = e / (NT * 128), rem = e % (NT * 128);
                const int nt = rem >> 7, c = (rem >> 5) & 3, ln = rem & 31;
                float v = blk[((mt * NT + nt) * 4 + c) * 32 + ln];
                const int row = rb * 32 + 16 * mt + (ln >> 2) + 8 * (c >> 1);
                const int tok = p0 + nt * 8 + 2 * (ln & 3) + (c & 1);
                if (FMT == MR_CUDA_FMT_INT8) v *= ((const float *)W.scale)[row];
                if (tok < job.cnt && row < n_out)
                    ((float *)out)[(size_t)(job.row0 + tok) * (size_t)ldo + row] = v;
            }
        }
        __syncthreads();
    }
}

typedef void (*wq_fn)(const mr_cuda_job *, const uint16_t *, const uint16_t *, int, int, int,
                      void *, uint16_t *, int, int, float *, int *);

template <int FMT, int W, int SP> static wq_fn wq_pick_nt(int nt) {
    return nt == 1   ? wq_kernel<FMT, 1, W, SP>
           : nt == 2 ? wq_kernel<FMT, 2, W, SP>
                     : wq_kernel<FMT, 4, W, SP>;
}

template <int FMT> static wq_fn wq_pick_w(int nt, int which, int sp) {
    if (sp == 2) return which == 0 ? wq_pick_nt<FMT, 0, 2>(nt) : wq_pick_nt<FMT, 1, 2>(nt);
    return which == 0 ? wq_pick_nt<FMT, 0, 1>(nt) : wq_pick_nt<FMT, 1, 1>(nt);
}

static wq_fn wq_pick(int fmt, int nt, int which, int sp) {
    return fmt == MR_CUDA_FMT_BF16   ? wq_pick_w<MR_CUDA_FMT_BF16>(nt, which, sp)
           : fmt == MR_CUDA_FMT_INT8 ? wq_pick_w<MR_CUDA_FMT_INT8>(nt, which, sp)
                                     : wq_pick_w<MR_CUDA_FMT_INT4>(nt, which, sp);
}

static size_t wq_smem(int nt, int ks) {
    return (size_t)(ks + 1) * 2 * (size_t)nt * 4 * 32 * sizeof(float);
}

extern "C" mr_status mr_cuda_wq_occupancy(int fmt, int which, int nt, int ks, int split_act,
                                          int *blocks_per_sm) {
    if (fmt < MR_CUDA_FMT_BF16 || fmt > MR_CUDA_FMT_INT4 || (nt != 1 && nt != 2 && nt != 4) ||
        ks < 1 || ks > 8)
        return MR_ERR_INVALID;
    MR_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        blocks_per_sm, wq_pick(fmt, nt, which, split_act ? 2 : 1), 32 * ks, wq_smem(nt, ks)));
    return MR_OK;
}

extern "C" mr_status mr_cuda_wq_launch(int fmt, int which, int nt, int ks, int nsplit,
                                       const mr_cuda_job *jobs_dev, int n_jobs, const uint16_t *x,
                                       const uint16_t *x_lo, int ldx, int np, int kp, void *out,
                                       uint16_t *out_lo, int ldo, int n_out, float *gpart,
                                       int *gcount, cudaStream_t st) {
    if (fmt < MR_CUDA_FMT_BF16 || fmt > MR_CUDA_FMT_INT4 || (which != 0 && which != 1) ||
        (nt != 1 && nt != 2 && nt != 4) || ks < 1 || ks > 8 || nsplit < 1 || nsplit > 64 ||
        !jobs_dev || n_jobs <= 0 || n_jobs > 65535 || !x || !out || np <= 0 || np % 32 ||
        kp % mr_cuda_fmt_chunk(fmt) || ldx < kp || ldx % 8 || n_out <= 0 ||
        (nsplit > 1 && (!gpart || !gcount)) || (x_lo && which == 0 && !out_lo)) {
        MR_LOG_ERROR(MR_LOG_GPU,
                     "wq: bad arguments (fmt %d which %d nt %d ks %d split %d jobs %d np %d kp %d)",
                     fmt, which, nt, ks, nsplit, n_jobs, np, kp);
        return MR_ERR_INVALID;
    }
    dim3 grid((unsigned)(np / 32), (unsigned)n_jobs, (unsigned)nsplit);
    MR_CUDA_CHECK(mr_pdl_launch(wq_pick(fmt, nt, which, x_lo ? 2 : 1), grid, dim3(32 * ks),
                                wq_smem(nt, ks), st, jobs_dev, x, x_lo, ldx, np, kp, out, out_lo,
                                ldo, n_out, gpart, gcount));
    return MR_OK;
}
