/* wq_decode.cu — one MoE call of few tokens (int8 / int4 experts of at most 8 rows each) as one
 * persistent kernel: gate/up + SwiGLU, down, and the gate-weighted combine, with no gather, no
 * metadata copy and no launch between the phases (the routing comes in the kernel parameters).
 *
 * Why. At one token the two experts' int4 bytes take ~41 µs at HBM speed, and the five-launch
 * sequence (metadata copy, gather, two wq launches, combine) spent ~40 µs more on ramps, tails and
 * gaps (docs/performance.md, issue 9). Here every block of a grid that fits the GPU at once
 * streams an equal share of the weight bytes.
 *
 * Work split. A block of 4 warps takes 4 consecutive 32-row blocks of a matrix (a row group, warp
 * w the w-th) over a range of its 64-byte units, so the four share each unit's activations. Phase
 * A's work is cut into items (job, row group of W13, chunk of p.chunk[0] units), about
 * WQD_ITEMS_PER_BLOCK per block, which blocks take in order from a counter (sync[2]) — so a
 * multiprocessor that streams faster takes more of them; a static split ran at the pace of the
 * slowest. Each item's partial sums are one piece (index = item), and the block that brings its
 * (job, row group) segment's counter to the number of chunks adds the pieces in chunk order
 * (deterministic: independent of which block ran which item), runs the epilogue (int8 row
 * scales, SwiGLU, bf16 h) and counts the row group towards its job; the job's last one sets the
 * job's flag to this call's generation + 1. Phase B does the same over W2 (sync[3]), each block
 * first requesting its item's weights and then waiting for the job's flag (every block is
 * resident — a cooperative launch — and phase A's items are all taken before any of phase B, so
 * waiting cannot deadlock). The block that finishes the last job of a W2 row group writes out =
 * Σ_j wts·y for those 128 columns of every token, in slot order. Counters are reset by their last
 * user; the item counters and the generation (sync[0]) when the last block leaves, so flags never
 * need clearing.
 *
 * Staging. Each unit's weight tiles (4 × 2 KiB in stored order; each lane copies, then reads, its
 * own 16-byte pieces), int4 group scales and activations (phase A: the fp32 input rows, rounded
 * to bf16 — hi + lo for split activations — when read; phase B: h and h_lo, written during this
 * kernel, so copied from L2) go through a WQD_STAGES-deep ring of shared memory by cp.async, one
 * block barrier per unit. The multiply is the wq kernel's (wq_mma.cu, fragment trick of
 * wq_frag.cuh). */
#include <cuda_bf16.h>

#include "common/check.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/wq_frag.cuh"

#define WQD_WARPS 4                 /* warps per block */
#define WQD_PIECE (2 * 4 * 32)      /* floats of one warp's partial sums: [mt·4 + c][lane] */
#define WQD_ITEMS_PER_BLOCK 6       /* work items per block and phase, about */
#define WQD_MIN_CHUNK 4             /* units per item, at least */

__device__ static inline unsigned wqd_ld_acquire(const unsigned *p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

/* 8 bf16 activations (16 bytes) from 8 fp32 values: hi = bf16(v); lo = bf16(v - hi). */
__device__ static inline void wqd_round8(const float4 a, const float4 b, uint4 &hi, uint4 &lo) {
    hi.x = wq_pack(a.x, a.y);
    hi.y = wq_pack(a.z, a.w);
    hi.z = wq_pack(b.x, b.y);
    hi.w = wq_pack(b.z, b.w);
    const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&hi);
    const float2 h0 = __bfloat1622float2(h[0]), h1 = __bfloat1622float2(h[1]),
                 h2 = __bfloat1622float2(h[2]), h3 = __bfloat1622float2(h[3]);
    lo.x = wq_pack(a.x - h0.x, a.y - h0.y);
    lo.y = wq_pack(a.z - h1.x, a.w - h1.y);
    lo.z = wq_pack(b.x - h2.x, b.y - h2.y);
    lo.w = wq_pack(b.z - h3.x, b.w - h3.y);
}

#define WQD_STAGES 4

/* Bytes of a stage: weights [4 warps][2048], int4 scales [4][64], activations [8 rows][4 lane
 * slices][CK + 16] (a lane slice holds CK/4 fp32 inputs, or CK/4 bf16 h then CK/4 bf16 h_lo;
 * 16 bytes of padding make a warp's 16-byte reads of its slices conflict-free). */
template <int FMT> struct wqd_layout {
    static constexpr int CK = FMT == MR_CUDA_FMT_INT8 ? 64 : 128;
    static constexpr int SLICE = CK + 16, ROW = 4 * SLICE;
    static constexpr int W = 0, SC = 4 * 2048, X = SC + (FMT == MR_CUDA_FMT_INT4 ? 4 * 64 : 0);
    static constexpr int STAGE = X + 8 * ROW;
    static constexpr int SMEM = WQD_STAGES * STAGE;
};

__device__ static inline void wqd_cp16(uint32_t dst, const void *src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(bytes)
                 : "memory");
}
__device__ static inline void wqd_commit() {
    asm volatile("cp.async.commit_group;" ::: "memory");
}
template <int N> __device__ static inline void wqd_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}
__device__ static inline uint4 wqd_lds16(uint32_t a) {
    uint4 v;
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "r"(a));
    return v;
}
__device__ static inline float4 wqd_lds16f(uint32_t a) {
    const uint4 v = wqd_lds16(a);
    return make_float4(__uint_as_float(v.x), __uint_as_float(v.y), __uint_as_float(v.z),
                       __uint_as_float(v.w));
}

/* Units [u0, u1) of the row group `grp` of job j's matrix (PHASE 0: W13 against x, 1: W2 against
 * h) into acc[mt][c] of this warp's row block rb = 4·grp + warp (mt: its rows 0–15 / 16–31; c: the
 * mma accumulator registers); warps past the matrix's last row block only help with the copies.
 * With wait != NULL the first units' weights are requested before waiting for *wait == want.
 * Block-uniform arguments; every thread of the block calls it. */
template <int FMT, int SP, int PHASE>
__device__ static void wqd_stream(const mr_cuda_wqd_params &p, int j, int grp, int units, int u0,
                                  int u1, const unsigned *wait, unsigned want, float acc[2][4]) {
    typedef wqd_layout<FMT> L;
    constexpr int CK = L::CK, NV = CK / 32; /* 16-byte activation vectors per lane and unit */
    extern __shared__ __align__(16) uint8_t wqd_smem[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const mr_cuda_job &job = p.jobs[j];
    const mr_cuda_qmat W = PHASE == 0 ? job.w13 : job.w2;
    const int np = PHASE == 0 ? p.np13 : p.np2, rb = grp * 4 + warp;
    const bool active = rb < np / 32;
    const uint8_t *wsrc = (const uint8_t *)W.q + (size_t)rb * (size_t)units * 2048 + g * 64 + t * 16;
    const uint8_t *ssrc = (const uint8_t *)W.scale + ((size_t)rb * 32 + (size_t)lane * 8) * 2;
    const uint32_t ring = (uint32_t)__cvta_generic_to_shared(wqd_smem);
    const uint32_t mine = (uint32_t)(L::W + warp * 2048 + g * 64 + t * 16);
    const bool has = g < job.cnt; /* this lane's token (mma column g) exists */
    /* activation copies of one unit: cnt rows × CK/4 chunks of 16 bytes (phase A: 4 fp32;
     * phase B: 8 bf16 of h, then of h_lo) */
    constexpr int CPR = PHASE == 0 ? CK / 4 : SP * CK / 8;
    const int n_chunks = job.cnt * CPR;
    auto request = [&](int u, bool weights, bool acts) {
        if (u < u1) {
            const uint32_t st = ring + (uint32_t)((u % WQD_STAGES) * L::STAGE);
            if (weights && active) {
#pragma unroll
                for (int i = 0; i < 4; i++)
                    wqd_cp16(st + mine + i * 512, wsrc + (size_t)u * 2048 + i * 512, 16);
                if (FMT == MR_CUDA_FMT_INT4 && lane < 4)
                    wqd_cp16(st + L::SC + warp * 64 + lane * 16, ssrc + (size_t)u * (size_t)np * 2,
                             16);
            }
            if (acts)
                for (int q = threadIdx.x; q < n_chunks; q += blockDim.x) {
                    const int r = q / CPR, c = q - r * CPR;
                    if (PHASE == 0) {
                        /* fp32 inputs u·CK + 4c ..; lane slice c / (CK/16) */
                        const int col = u * CK + 4 * c;
                        const float *src = p.x + (size_t)p.src[job.row0 + r] * (size_t)p.ldx + col;
                        wqd_cp16(st + L::X + r * L::ROW + (c / (CK / 16)) * L::SLICE +
                                     (c % (CK / 16)) * 16,
                                 col < p.hidden ? (const void *)src : (const void *)p.x,
                                 col < p.hidden ? 16 : 0);
                    } else {
                        /* bf16 u·CK + 8c' of h (c' = c) or of h_lo (c' = c - CK/8) */
                        const int lo = c >= CK / 8, cc = c - lo * (CK / 8);
                        const uint16_t *src = (lo ? p.h_lo : p.h) +
                                              (size_t)(job.row0 + r) * (size_t)p.ldh + u * CK + 8 * cc;
                        wqd_cp16(st + L::X + r * L::ROW + (cc / (CK / 32)) * L::SLICE +
                                     lo * (CK / 2) + (cc % (CK / 32)) * 16,
                                 src, 16);
                    }
                }
        }
        wqd_commit();
    };
    if (!wait) {
#pragma unroll
        for (int q = 0; q < WQD_STAGES - 1; q++) request(u0 + q, true, true);
    } else {
        /* the weights first, h once its job's gate/up rows are all written */
#pragma unroll
        for (int q = 0; q < WQD_STAGES - 1; q++) request(u0 + q, true, false);
        while (wqd_ld_acquire(wait) != want) __nanosleep(64);
        for (int q = 0; q < WQD_STAGES - 1; q++) request(u0 + q, false, true);
        wqd_wait<0>();
    }

    for (int u = u0; u < u1; u++) {
        wqd_wait<WQD_STAGES - 2>(); /* unit u has landed (this thread's copies) */
        __syncthreads();            /* ... and every thread's; the stage of u - 1 is free */
        request(u + WQD_STAGES - 1, true, true);
        if (!active) continue;
        const int stage = (u % WQD_STAGES) * L::STAGE;
        const uint32_t st = ring + (uint32_t)stage;
        uint4 wv[4];
#pragma unroll
        for (int i = 0; i < 4; i++) wv[i] = wqd_lds16(st + mine + i * 512);
        float sv[4];
        if (FMT == MR_CUDA_FMT_INT4) {
            const __nv_bfloat16 *sc = (const __nv_bfloat16 *)(wqd_smem + stage + L::SC + warp * 64);
#pragma unroll
            for (int i = 0; i < 4; i++) sv[i] = __bfloat162float(sc[g + 8 * i]);
        }
        const uint32_t xs = st + L::X + g * L::ROW + t * L::SLICE;
        float tmp[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
        for (int v = 0; v < NV; v++) {
            uint4 xv = make_uint4(0, 0, 0, 0), xl = make_uint4(0, 0, 0, 0);
            if (has) {
                if (PHASE == 0) {
                    wqd_round8(wqd_lds16f(xs + v * 32), wqd_lds16f(xs + v * 32 + 16), xv, xl);
                } else {
                    xv = wqd_lds16(xs + v * 16);
                    if (SP == 2) xl = wqd_lds16(xs + CK / 2 + v * 16);
                }
            }
#pragma unroll
            for (int ss = 0; ss < 2; ss++) {
                const int s = 2 * v + ss;
#pragma unroll
                for (int mt = 0; mt < 2; mt++) {
                    uint32_t a0, a1, a2, a3;
                    wq_frag<FMT>(wv[2 * mt], s, a0, a2);
                    wq_frag<FMT>(wv[2 * mt + 1], s, a1, a3);
                    float *c = FMT == MR_CUDA_FMT_INT4 ? tmp[mt] : acc[mt];
                    wq_mma(c, a0, a1, a2, a3, wq_word(xv, 2 * ss), wq_word(xv, 2 * ss + 1));
                    if (SP == 2)
                        wq_mma(c, a0, a1, a2, a3, wq_word(xl, 2 * ss), wq_word(xl, 2 * ss + 1));
                }
            }
        }
        if (FMT == MR_CUDA_FMT_INT4) {
            /* group u of rows g, g+8 (mt 0) and g+16, g+24 (mt 1) */
#pragma unroll
            for (int mt = 0; mt < 2; mt++) {
                acc[mt][0] += sv[2 * mt] * tmp[mt][0];
                acc[mt][1] += sv[2 * mt] * tmp[mt][1];
                acc[mt][2] += sv[2 * mt + 1] * tmp[mt][2];
                acc[mt][3] += sv[2 * mt + 1] * tmp[mt][3];
            }
        }
    }
    wqd_wait<0>(); /* no copy of this range outlives it (the ring is reused by the next) */
    __syncthreads();
}

/* Stores this block's partial sums as piece `piece` (warp w's at w·WQD_PIECE), counts it for
 * segment seg (of `expect` pieces) and returns whether this block is the segment's last, which
 * then holds the sum of all its pieces (pieces first..first+expect-1, in that order) in acc. */
__device__ static bool wqd_piece(float *part, int *cnt, int seg, int piece, int first, int expect,
                                 float acc[2][4]) {
    __shared__ int wqd_last;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (expect == 1) return true;
    float *mine = part + ((size_t)piece * WQD_WARPS + warp) * WQD_PIECE;
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int c = 0; c < 4; c++) mine[(mt * 4 + c) * 32 + lane] = acc[mt][c];
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) wqd_last = atomicAdd(&cnt[seg], 1) == expect - 1;
    __syncthreads();
    if (!wqd_last) return false;
    __threadfence();
    if (threadIdx.x == 0) cnt[seg] = 0; /* ready for the next call */
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int c = 0; c < 4; c++) acc[mt][c] = 0.0f;
    for (int q = 0; q < expect; q++) {
        const float *pc = part + ((size_t)(first + q) * WQD_WARPS + warp) * WQD_PIECE;
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
#pragma unroll
            for (int c = 0; c < 4; c++) acc[mt][c] += __ldcg(pc + (mt * 4 + c) * 32 + lane);
    }
    return true;
}

/* Phase A epilogue: lane (g, t) holds gate (mt 0) and up (mt 1) sums of W1/W3 rows 16·rb + g and
 * + 8 (c >> 1) for tokens 2t + (c & 1). */
template <int FMT, int SP>
__device__ static void wqd_swiglu(const mr_cuda_wqd_params &p, int j, int rb, const float acc[2][4]) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const mr_cuda_job &job = p.jobs[j];
#pragma unroll
    for (int c = 0; c < 4; c++) {
        const int rr = g + 8 * (c >> 1), tok = 2 * t + (c & 1), col = rb * 16 + rr;
        float gv = acc[0][c], uv = acc[1][c];
        if (FMT == MR_CUDA_FMT_INT8) {
            gv *= ((const float *)job.w13.scale)[rb * 32 + rr];
            uv *= ((const float *)job.w13.scale)[rb * 32 + 16 + rr];
        }
        if (tok < job.cnt && col < p.inter) {
            const float a = gv / (1.0f + expf(-gv)) * uv;
            const size_t o = (size_t)(job.row0 + tok) * (size_t)p.ldh + col;
            const __nv_bfloat16 hi = __float2bfloat16_rn(a);
            ((__nv_bfloat16 *)p.h)[o] = hi;
            if (SP == 2) ((__nv_bfloat16 *)p.h_lo)[o] = __float2bfloat16_rn(a - __bfloat162float(hi));
        }
    }
}

/* Phase B epilogue: y[row0 + tok][row] for rows 32·rb + 16 mt + g + 8 (c >> 1). */
template <int FMT>
__device__ static void wqd_down_out(const mr_cuda_wqd_params &p, int j, int rb, const float acc[2][4]) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const mr_cuda_job &job = p.jobs[j];
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int c = 0; c < 4; c++) {
            const int row = rb * 32 + 16 * mt + g + 8 * (c >> 1), tok = 2 * t + (c & 1);
            float v = acc[mt][c];
            if (FMT == MR_CUDA_FMT_INT8) v *= ((const float *)job.w2.scale)[row];
            if (tok < job.cnt && row < p.hidden)
                p.y[(size_t)(job.row0 + tok) * (size_t)p.hidden + row] = v;
        }
}

/* out[t][c] for the 32 columns of W2 row block rb (one warp), every token, slots in order (as
 * the combine kernel). */
__device__ static void wqd_combine(const mr_cuda_wqd_params &p, int rb) {
    const int col = rb * 32 + (threadIdx.x & 31);
    if (col >= p.hidden) return;
    for (int t = 0; t < p.n; t++) {
        float acc = 0.0f;
        for (int s = 0; s < p.k; s++) {
            const int r = p.inv[t * p.k + s];
            if (r < 0) continue;
            acc += p.wts[t * p.k + s] * __ldcg(p.y + (size_t)r * (size_t)p.hidden + col);
        }
        p.out[(size_t)t * (size_t)p.hidden + col] = acc;
    }
}

template <int FMT, int SP>
__global__ void __launch_bounds__(WQD_WARPS * 32)
    wqd_kernel(const __grid_constant__ mr_cuda_wqd_params p) {
    constexpr int CK = wqd_layout<FMT>::CK;
    __shared__ int wqd_last_job, wqd_item;
    const int warp = threadIdx.x >> 5;
    const unsigned gen = *(volatile unsigned *)&p.sync[0];
    const int g13 = (p.np13 / 32 + 3) / 4, g2 = (p.np2 / 32 + 3) / 4; /* row groups */
    int *const cnt_a = p.counters, *const cnt_b = cnt_a + p.n_jobs * g13;
    int *const job_a = cnt_b + p.n_jobs * g2, *const grp_b = job_a + p.n_jobs;
    float acc[2][4];

    for (int phase = 0; phase < 2; phase++) {
        const int G = phase == 0 ? g13 : g2;
        const int units = (phase == 0 ? p.kp13 : p.kp2) / CK;
        const int C = p.chunk[phase], nch = (units + C - 1) / C; /* units per item, items per seg */
        const int total = p.n_jobs * G * nch;
        float *part = p.part + (phase == 0 ? 0 : (size_t)p.n_jobs * g13 * ((p.kp13 / CK + p.chunk[0] - 1) / p.chunk[0]) *
                                                     WQD_WARPS * WQD_PIECE);
        for (;;) {
            __syncthreads(); /* everyone has read the previous item */
            if (threadIdx.x == 0) wqd_item = atomicAdd(&p.sync[2 + phase], 1u);
            __syncthreads();
            const int item = wqd_item;
            if (item >= total) break;
            const int seg = item / nch, u0 = (item - seg * nch) * C, u1 = min(units, u0 + C);
            const int j = seg / G, grp = seg - j * G, rb = grp * 4 + warp;
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int c = 0; c < 4; c++) acc[mt][c] = 0.0f;
            if (phase == 0)
                wqd_stream<FMT, SP, 0>(p, j, grp, units, u0, u1, NULL, 0, acc);
            else
                wqd_stream<FMT, SP, 1>(p, j, grp, units, u0, u1, &p.flags[j], gen + 1, acc);
            if (wqd_piece(part, phase == 0 ? cnt_a : cnt_b, seg, item, seg * nch, nch, acc)) {
            const bool active = rb < (phase == 0 ? p.np13 : p.np2) / 32;
                if (phase == 0) {
                    if (active) wqd_swiglu<FMT, SP>(p, j, rb, acc);
                    __threadfence();
                    __syncthreads();
                    if (threadIdx.x == 0 && atomicAdd(&job_a[j], 1) == G - 1) {
                        job_a[j] = 0;
                        __threadfence();
                        atomicExch(&p.flags[j], gen + 1);
                    }
                } else {
                    if (active) wqd_down_out<FMT>(p, j, rb, acc);
                    __threadfence();
                    __syncthreads();
                    if (threadIdx.x == 0) wqd_last_job = atomicAdd(&grp_b[grp], 1) == p.n_jobs - 1;
                    __syncthreads();
                    if (wqd_last_job) {
                        __threadfence();
                        if (threadIdx.x == 0) grp_b[grp] = 0;
                        if (active) wqd_combine(p, rb);
                    }
                }
            }
        }
    }
    /* the last block out advances the generation */
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        if (atomicAdd(&p.sync[1], 1u) == gridDim.x - 1) {
            p.sync[1] = p.sync[2] = p.sync[3] = 0;
            __threadfence();
            atomicExch(&p.sync[0], gen + 1);
        }
    }
}

typedef void (*wqd_fn)(const mr_cuda_wqd_params);

static size_t wqd_smem_bytes(int fmt) {
    return fmt == MR_CUDA_FMT_INT8 ? wqd_layout<MR_CUDA_FMT_INT8>::SMEM
                                   : wqd_layout<MR_CUDA_FMT_INT4>::SMEM;
}

static unsigned char wqd_opted[WQ_MAX_DEVICES * 4];

static wqd_fn wqd_pick(int fmt, int split) {
    if (fmt == MR_CUDA_FMT_INT8) return split ? wqd_kernel<MR_CUDA_FMT_INT8, 2> : wqd_kernel<MR_CUDA_FMT_INT8, 1>;
    return split ? wqd_kernel<MR_CUDA_FMT_INT4, 2> : wqd_kernel<MR_CUDA_FMT_INT4, 1>;
}

extern "C" mr_status mr_cuda_wqd_grid(int fmt, int split_act, int *blocks) {
    if (fmt != MR_CUDA_FMT_INT8 && fmt != MR_CUDA_FMT_INT4) return MR_ERR_INVALID;
    int dev = 0, sms = 0, per_sm = 0;
    MR_CUDA_CHECK(cudaGetDevice(&dev));
    MR_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    const wqd_fn fn = wqd_pick(fmt, split_act);
    MR_CHECK(wq_opt_in_smem((const void *)fn, wqd_smem_bytes(fmt), wqd_opted, 4,
                            (fmt == MR_CUDA_FMT_INT8 ? 0 : 2) + (split_act ? 1 : 0)));
    MR_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fn, WQD_WARPS * 32,
                                                                wqd_smem_bytes(fmt)));
    *blocks = sms * per_sm;
    return MR_OK;
}

extern "C" size_t mr_cuda_wqd_prepare(int fmt, int blocks, mr_cuda_wqd_params *p) {
    const int ck = mr_cuda_fmt_chunk(fmt);
    size_t pieces = 0;
    for (int phase = 0; phase < 2; phase++) {
        const int np = phase == 0 ? p->np13 : p->np2, kp = phase == 0 ? p->kp13 : p->kp2;
        const long segs = (long)p->n_jobs * ((np / 32 + 3) / 4), units = kp / ck;
        /* about WQD_ITEMS_PER_BLOCK items per block, at least WQD_MIN_CHUNK units each */
        long c = (segs * units + (long)WQD_ITEMS_PER_BLOCK * blocks - 1) /
                 ((long)WQD_ITEMS_PER_BLOCK * blocks);
        c = c < WQD_MIN_CHUNK ? WQD_MIN_CHUNK : c;
        c = c > units ? units : c;
        p->chunk[phase] = (int)(c > 0 ? c : 1);
        pieces += (size_t)segs * (size_t)((units + p->chunk[phase] - 1) / p->chunk[phase]);
    }
    return pieces * WQD_WARPS * WQD_PIECE;
}

extern "C" mr_status mr_cuda_wqd_launch(int fmt, int split_act, int blocks,
                                        const mr_cuda_wqd_params *p, cudaStream_t st) {
    const int ck = mr_cuda_fmt_chunk(fmt);
    if ((fmt != MR_CUDA_FMT_INT8 && fmt != MR_CUDA_FMT_INT4) || blocks <= 0 || !p ||
        p->n_jobs <= 0 || p->n_jobs > MR_CUDA_WQD_MAX_JOBS || p->n <= 0 || p->k <= 0 ||
        p->n * p->k > MR_CUDA_WQD_MAX_SLOTS || p->hidden <= 0 || p->hidden % 8 ||
        p->ldx % 4 || p->np13 % 32 || p->np2 % 32 || p->kp13 % ck || p->kp2 % ck ||
        p->ldh % 8 || p->ldh < p->kp2 || p->chunk[0] < 1 || p->chunk[1] < 1 || (split_act && !p->h_lo) || !p->x || !p->h || !p->y ||
        !p->out || !p->part || !p->counters || !p->flags || !p->sync) {
        MR_LOG_ERROR(MR_LOG_GPU, "wqd: bad arguments (fmt %d jobs %d n %d k %d hidden %d)", fmt,
                     p ? p->n_jobs : -1, p ? p->n : -1, p ? p->k : -1, p ? p->hidden : -1);
        return MR_ERR_INVALID;
    }
    for (int j = 0; j < p->n_jobs; j++)
        if (p->jobs[j].cnt < 1 || p->jobs[j].cnt > 8 || p->jobs[j].row0 < 0 ||
            p->jobs[j].row0 + p->jobs[j].cnt > MR_CUDA_WQD_MAX_ROWS) {
            MR_LOG_ERROR(MR_LOG_GPU, "wqd: job %d has rows [%d, +%d)", j, p->jobs[j].row0,
                         p->jobs[j].cnt);
            return MR_ERR_INVALID;
        }
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)blocks);
    cfg.blockDim = dim3(WQD_WARPS * 32);
    cfg.dynamicSmemBytes = wqd_smem_bytes(fmt);
    cfg.stream = st;
    cudaLaunchAttribute attr[1] = {};
    attr[0].id = cudaLaunchAttributeCooperative; /* every block resident: phase B waits on flags */
    attr[0].val.cooperative = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    const wqd_fn fn = wqd_pick(fmt, split_act);
    MR_CHECK(wq_opt_in_smem((const void *)fn, wqd_smem_bytes(fmt), wqd_opted, 4,
                            (fmt == MR_CUDA_FMT_INT8 ? 0 : 2) + (split_act ? 1 : 0)));
    MR_CUDA_CHECK(cudaLaunchKernelEx(&cfg, fn, *p));
    return MR_OK;
}
