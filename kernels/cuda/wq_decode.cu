/* wq_decode.cu — one MoE call of few tokens (int8 / int4 experts of at most 8 rows each) as one
 * persistent kernel: gate/up + SwiGLU, down, and the gate-weighted combine, with no gather, no
 * metadata copy and no launch between the phases (the routing comes in the kernel parameters).
 *
 * Why. At one token the two experts' int4 bytes take ~41 µs at HBM speed, and the five-launch
 * sequence (metadata copy, gather, two wq launches, combine) spent ~40 µs more on ramps, tails and
 * gaps (docs/performance.md, issue 9). Here every warp of a grid that fits the GPU at once streams
 * an equal share of the weight bytes.
 *
 * Work split. Phase A's work is the flat range of (job, 32-row block of W13, 64-byte unit) in that
 * order; warp w of W' = min(W, T) takes units [w·T/W', (w+1)·T/W'). A (job, row block) segment is usually shared
 * by a few consecutive warps: each writes its partial sums as one piece (index warp + segment:
 * unique, since a warp's segments are consecutive), and the warp that brings the segment's
 * counter to its piece count adds the pieces in warp order (deterministic for a given grid), runs
 * the epilogue (int8 row scales, SwiGLU, bf16 h) and counts the segment towards its job. When a
 * job's last W13 segment is done, the job's flag becomes this call's generation + 1. Phase B does
 * the same over W2, each warp first loading its first weights and then waiting for its job's flag
 * (every block is resident — a cooperative launch — so waiting cannot deadlock). The warp that
 * finishes the last job of a W2 row block writes out = Σ_j wts·y for those 32 columns of every
 * token, in slot order. Counters are reset by their last user; the generation (sync[0]) advances
 * when the last block leaves, so flags never need clearing.
 *
 * The inner loop is the wq kernel's (wq_mma.cu, fragment trick of wq_frag.cuh) on 16 bytes of rows
 * g, g+8, g+16, g+24 of a tile per lane, the tiles staged in shared memory (wqd_stream); the
 * activations are read directly:
 * phase A from the fp32 input rows (rounded to bf16 here, hi + lo parts for split activations),
 * phase B from h through L2 (h is written during this kernel, so not through the read-only path).
 */
#include <cuda_bf16.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/wq_frag.cuh"

#define WQD_WARPS 4                 /* warps per block */
#define WQD_PIECE (2 * 4 * 32)      /* floats of one warp's partial sums: [mt·4 + c][lane] */

__device__ static inline unsigned wqd_ld_acquire(const unsigned *p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

/* The warp that owns unit a of T units split over W warps: the largest w with w·T/W <= a. */
__device__ static inline int wqd_owner(long long a, long long T, int W) {
    return (int)(((a + 1) * W + T - 1) / T) - 1;
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

/* Each warp stages its weight tiles (and int4 group scales) in its own ring of shared memory,
 * WQD_STAGES units deep, by cp.async: WQD_STAGES - 1 units are in flight while one is multiplied,
 * without holding registers (two units in registers, as in the wq kernel, kept too few bytes in
 * flight per multiprocessor at the occupancy this kernel has). A stage is a 2 KiB tile in its
 * stored order (each lane copies, then reads, its own 16-byte pieces) and, for int4, the tile's 64
 * bytes of scales (copied by lanes 0–3, read by all after a warp barrier). */
#define WQD_STAGES 5
#define WQD_STAGE  (2048 + 64)
#define WQD_SMEM   (WQD_WARPS * WQD_STAGES * WQD_STAGE)

__device__ static inline void wqd_cp16(uint32_t dst, const void *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src) : "memory");
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

/* Units [u0, u1) of row block rb of job j's matrix (PHASE 0: W13 against x, 1: W2 against h) into
 * acc[mt][c] (mt: rows 0–15 / 16–31 of the block; c: the mma accumulator registers). With
 * wait != NULL the first units' weights are requested before waiting for *wait == want. */
template <int FMT, int SP, int PHASE>
__device__ static void wqd_stream(const mr_cuda_wqd_params &p, int j, int rb, int units, int u0,
                                  int u1, const unsigned *wait, unsigned want, float acc[2][4]) {
    constexpr int CK = FMT == MR_CUDA_FMT_INT8 ? 64 : 128;
    constexpr int NV = CK / 32; /* 16-byte activation vectors per lane and unit */
    extern __shared__ __align__(16) uint8_t wqd_smem[];
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const mr_cuda_job &job = p.jobs[j];
    const mr_cuda_qmat W = PHASE == 0 ? job.w13 : job.w2;
    const int np = PHASE == 0 ? p.np13 : p.np2;
    const uint8_t *wsrc = (const uint8_t *)W.q + (size_t)rb * (size_t)units * 2048 + g * 64 + t * 16;
    const uint8_t *ssrc = (const uint8_t *)W.scale + ((size_t)rb * 32 + (size_t)lane * 8) * 2;
    const int ring_off = (threadIdx.x >> 5) * WQD_STAGES * WQD_STAGE; /* this warp's ring */
    const uint32_t ring = (uint32_t)__cvta_generic_to_shared(wqd_smem) + (uint32_t)ring_off;
    const uint32_t mine = (uint32_t)(g * 64 + t * 16);
    const bool has = g < job.cnt; /* this lane's token (mma column g) exists */
    const float *xr = NULL;
    const uint16_t *hr = NULL, *hl = NULL;
    if (has && PHASE == 0) xr = p.x + (size_t)p.src[job.row0 + g] * (size_t)p.ldx;
    if (has && PHASE == 1) {
        hr = p.h + (size_t)(job.row0 + g) * (size_t)p.ldh;
        if (SP == 2) hl = p.h_lo + (size_t)(job.row0 + g) * (size_t)p.ldh;
    }
    /* request unit u into its stage (one commit group per unit, empty past u1) */
    auto request = [&](int u) {
        if (u < u1) {
            const uint32_t st = ring + (uint32_t)((u % WQD_STAGES) * WQD_STAGE);
#pragma unroll
            for (int i = 0; i < 4; i++) wqd_cp16(st + mine + i * 512, wsrc + (size_t)u * 2048 + i * 512);
            if (FMT == MR_CUDA_FMT_INT4 && lane < 4)
                wqd_cp16(st + 2048 + lane * 16, ssrc + (size_t)u * (size_t)np * 2);
        }
        wqd_commit();
    };
#pragma unroll
    for (int q = 0; q < WQD_STAGES - 1; q++) request(u0 + q);
    if (wait)
        while (wqd_ld_acquire(wait) != want) __nanosleep(64);

    for (int u = u0; u < u1; u++) {
        wqd_wait<WQD_STAGES - 2>(); /* unit u has landed (this lane's copies) */
        __syncwarp();               /* ... and every lane's (the scales) */
        const int stage = (u % WQD_STAGES) * WQD_STAGE;
        const uint32_t st = ring + (uint32_t)stage;
        uint4 wv[4];
#pragma unroll
        for (int i = 0; i < 4; i++) wv[i] = wqd_lds16(st + mine + i * 512);
        float sv[4];
        if (FMT == MR_CUDA_FMT_INT4) {
            const __nv_bfloat16 *sc =
                (const __nv_bfloat16 *)(wqd_smem + ring_off + stage + 2048);
#pragma unroll
            for (int i = 0; i < 4; i++) sv[i] = __bfloat162float(sc[g + 8 * i]);
        }
        /* refills the stage of u - 1, which every lane read before the barrier above */
        request(u + WQD_STAGES - 1);
        float tmp[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
        for (int v = 0; v < NV; v++) {
            const int col = u * CK + t * (CK / 4) + v * 8;
            uint4 xv = make_uint4(0, 0, 0, 0), xl = make_uint4(0, 0, 0, 0);
            if (PHASE == 0 && has && col < p.hidden) {
                const float4 a = __ldg((const float4 *)(xr + col)),
                             b = __ldg((const float4 *)(xr + col + 4));
                wqd_round8(a, b, xv, xl);
            }
            if (PHASE == 1 && has) {
                xv = __ldcg((const uint4 *)(hr + col));
                if (SP == 2) xl = __ldcg((const uint4 *)(hl + col));
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
    __syncwarp();
}

/* Stores this warp's partial sums as piece `piece`, counts it for segment seg (of `expect` pieces)
 * and returns whether this warp is the segment's last, which then holds the sum of all its pieces
 * (pieces first..first+expect-1, in that order) in acc. */
__device__ static bool wqd_piece(float *part, int *cnt, int seg, int piece, int first, int expect,
                                 float acc[2][4]) {
    const int lane = threadIdx.x & 31;
    if (expect == 1) return true;
    float *mine = part + (size_t)piece * WQD_PIECE;
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int c = 0; c < 4; c++) mine[(mt * 4 + c) * 32 + lane] = acc[mt][c];
    __threadfence();
    __syncwarp();
    int last = 0;
    if (lane == 0) last = atomicAdd(&cnt[seg], 1) == expect - 1;
    last = __shfl_sync(0xffffffffu, last, 0);
    if (!last) return false;
    __threadfence();
    if (lane == 0) cnt[seg] = 0; /* ready for the next call */
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int c = 0; c < 4; c++) acc[mt][c] = 0.0f;
    for (int q = 0; q < expect; q++) {
        const float *pc = part + (size_t)(first + q) * WQD_PIECE;
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

/* out[t][c] for the 32 columns of W2 row block rb, every token, slots in order (as the combine). */
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
__global__ void __launch_bounds__(WQD_WARPS * 32, 5)
    wqd_kernel(const __grid_constant__ mr_cuda_wqd_params p) {
    constexpr int CK = FMT == MR_CUDA_FMT_INT8 ? 64 : 128;
    const int warp = blockIdx.x * WQD_WARPS + (threadIdx.x >> 5), W = gridDim.x * WQD_WARPS;
    const unsigned gen = *(volatile unsigned *)&p.sync[0];
    int *const cnt_a = p.counters, *const cnt_b = cnt_a + p.n_jobs * (p.np13 / 32);
    int *const job_a = cnt_b + p.n_jobs * (p.np2 / 32), *const rb_b = job_a + p.n_jobs;
    float acc[2][4];

    for (int phase = 0; phase < 2; phase++) {
        const int rbn = (phase == 0 ? p.np13 : p.np2) / 32;
        const int units = (phase == 0 ? p.kp13 : p.kp2) / CK;
        const long long T = (long long)p.n_jobs * rbn * units;
        /* Wp <= T warps take part, so that every range is non-empty and a segment's pieces come
         * from exactly the warps owner(first unit) .. owner(last unit) */
        const int Wp = (int)min((long long)W, T);
        float *part = phase == 0 ? p.part : p.part + (size_t)(W + p.n_jobs * (p.np13 / 32)) * WQD_PIECE;
        long long pos = warp < Wp ? (long long)warp * T / Wp : 0;
        const long long end = warp < Wp ? (long long)(warp + 1) * T / Wp : 0;
        while (pos < end) {
            const int seg = (int)(pos / units), u0 = (int)(pos - (long long)seg * units);
            const int u1 = (int)min((long long)units, u0 + (end - pos));
            const int j = seg / rbn, rb = seg - j * rbn;
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int c = 0; c < 4; c++) acc[mt][c] = 0.0f;
            if (phase == 0)
                wqd_stream<FMT, SP, 0>(p, j, rb, units, u0, u1, NULL, 0, acc);
            else
                wqd_stream<FMT, SP, 1>(p, j, rb, units, u0, u1, &p.flags[j], gen + 1, acc);
            const long long s0 = (long long)seg * units;
            const int first = wqd_owner(s0, T, Wp), expect = wqd_owner(s0 + units - 1, T, Wp) - first + 1;
            if (wqd_piece(part, phase == 0 ? cnt_a : cnt_b, seg, warp + seg, first + seg, expect, acc)) {
                const int lane = threadIdx.x & 31;
                if (phase == 0) {
                    wqd_swiglu<FMT, SP>(p, j, rb, acc);
                    __threadfence();
                    __syncwarp();
                    if (lane == 0 && atomicAdd(&job_a[j], 1) == rbn - 1) {
                        job_a[j] = 0;
                        __threadfence();
                        atomicExch(&p.flags[j], gen + 1);
                    }
                } else {
                    wqd_down_out<FMT>(p, j, rb, acc);
                    __threadfence();
                    __syncwarp();
                    int last = 0;
                    if (lane == 0) last = atomicAdd(&rb_b[rb], 1) == p.n_jobs - 1;
                    last = __shfl_sync(0xffffffffu, last, 0);
                    if (last) {
                        __threadfence();
                        if (lane == 0) rb_b[rb] = 0;
                        wqd_combine(p, rb);
                    }
                }
            }
            pos += u1 - u0;
        }
    }
    /* the last block out advances the generation */
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        if (atomicAdd(&p.sync[1], 1u) == gridDim.x - 1) {
            p.sync[1] = 0;
            __threadfence();
            atomicExch(&p.sync[0], gen + 1);
        }
    }
}

typedef void (*wqd_fn)(const mr_cuda_wqd_params);

static wqd_fn wqd_pick(int fmt, int split) {
    if (fmt == MR_CUDA_FMT_INT8) return split ? wqd_kernel<MR_CUDA_FMT_INT8, 2> : wqd_kernel<MR_CUDA_FMT_INT8, 1>;
    return split ? wqd_kernel<MR_CUDA_FMT_INT4, 2> : wqd_kernel<MR_CUDA_FMT_INT4, 1>;
}

extern "C" mr_status mr_cuda_wqd_grid(int fmt, int split_act, int *blocks) {
    if (fmt != MR_CUDA_FMT_INT8 && fmt != MR_CUDA_FMT_INT4) return MR_ERR_INVALID;
    int dev = 0, sms = 0, per_sm = 0;
    MR_CUDA_CHECK(cudaGetDevice(&dev));
    MR_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    MR_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, wqd_pick(fmt, split_act),
                                                                WQD_WARPS * 32, WQD_SMEM));
    *blocks = sms * per_sm;
    return MR_OK;
}

extern "C" size_t mr_cuda_wqd_part_floats(int blocks, int n_jobs, int np13, int np2) {
    const size_t W = (size_t)blocks * WQD_WARPS;
    return (2 * W + (size_t)n_jobs * (size_t)(np13 / 32 + np2 / 32)) * WQD_PIECE;
}

extern "C" mr_status mr_cuda_wqd_launch(int fmt, int split_act, int blocks,
                                        const mr_cuda_wqd_params *p, cudaStream_t st) {
    const int ck = mr_cuda_fmt_chunk(fmt);
    if ((fmt != MR_CUDA_FMT_INT8 && fmt != MR_CUDA_FMT_INT4) || blocks <= 0 || !p ||
        p->n_jobs <= 0 || p->n_jobs > MR_CUDA_WQD_MAX_JOBS || p->n <= 0 || p->k <= 0 ||
        p->n * p->k > MR_CUDA_WQD_MAX_SLOTS || p->hidden <= 0 || p->hidden % 8 ||
        p->ldx % 4 || p->np13 % 32 || p->np2 % 32 || p->kp13 % ck || p->kp2 % ck ||
        p->ldh % 8 || p->ldh < p->kp2 || (split_act && !p->h_lo) || !p->x || !p->h || !p->y ||
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
    cfg.dynamicSmemBytes = WQD_SMEM;
    cfg.stream = st;
    cudaLaunchAttribute attr[1] = {};
    attr[0].id = cudaLaunchAttributeCooperative; /* every block resident: phase B waits on flags */
    attr[0].val.cooperative = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    MR_CUDA_CHECK(cudaLaunchKernelEx(&cfg, wqd_pick(fmt, split_act), *p));
    return MR_OK;
}
