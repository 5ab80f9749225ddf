/* attn_lightning_decode.cu — one lightning-attention decode step for a batch of sequences:
 * S ← λS + kᵀv, o = q·S, fused into a single pass over each fp32 state (read once, written once).
 *
 * The step is bound by the state traffic (2 · H · d² · 4 bytes per sequence: 8 MiB at H = 64,
 * d = 128), so the kernel is built around streaming the state: block (slice, head, row) owns EW
 * columns of one head's state; each of its 256 threads holds one float4 column group for
 * D·EW/1024 rows, issues all of its state loads before the first use (memory-level parallelism),
 * updates them in registers, streams them back (evict-first: the state is not touched again this
 * step), and accumulates its part of o; the row groups' partial sums are added through shared
 * memory in row-group order (deterministic). EW = 128 / 64 / 32 trades bytes per block for
 * blocks in flight so that batch 1 still spreads over the GPU (at D = 16 a block holds the whole
 * head: EW = 16, 64 threads, one row each). Maths in fp32, like the ref. */
#include "kernels/cuda/attn_common.cuh"
#include "kernels/cuda/cuda_attention.h"
#include "kernels/cuda/cuda_check.h"

enum { LTD_THREADS = 256 };

/* Threads of a block owning EW columns of a D-row state: 256, or fewer when the block's D·EW/4
 * float4s are fewer (D = 16). */
__host__ __device__ constexpr int ltd_threads(int D, int EW) {
    return D * EW / 4 < LTD_THREADS ? D * EW / 4 : LTD_THREADS;
}

/* grid (D / EW, H, n), ltd_threads(D, EW) threads. */
template <typename TIn, int D, int EW>
static __global__ void __launch_bounds__(LTD_THREADS)
    ltd_kernel(const float *slope, const void *qkv_raw, float *out, const int32_t *slots,
               float *state_pool, size_t slot_stride, int n_heads) {
    constexpr int NT = ltd_threads(D, EW);
    constexpr int CG = EW / 4;  /* float4 column groups per block */
    constexpr int RG = NT / CG; /* row groups */
    constexpr int RPT = D / RG; /* rows per thread */
    static_assert(RPT >= 1 && RG * RPT == D, "D, EW");
    __shared__ float q_s[D], k_s[D];
    __shared__ __align__(16) float v_s[EW];
    __shared__ __align__(16) float part[RG][EW];

    const int slice = blockIdx.x, h = blockIdx.y, row = blockIdx.z, tid = threadIdx.x;
    const int32_t slot = slots[row];
    if (slot < 0) return; /* padding row */
    const TIn *src = static_cast<const TIn *>(qkv_raw) + ((size_t)row * n_heads + h) * 3 * D;
    const int cg = tid % CG, rg = tid / CG;

    /* state loads first: they are the long pole */
    float *S = state_pool + (size_t)slot * slot_stride + (size_t)h * D * D + slice * EW + cg * 4;
    float4 st[RPT];
#pragma unroll
    for (int r = 0; r < RPT; r++)
        st[r] = __ldcs(reinterpret_cast<const float4 *>(S + (size_t)(rg + RG * r) * D));

    for (int i = tid; i < D; i += NT) {
        q_s[i] = attn_silu(attn_to_f32(src[i]));
        k_s[i] = attn_silu(attn_to_f32(src[D + i]));
    }
    for (int i = tid; i < EW; i += NT) v_s[i] = attn_silu(attn_to_f32(src[2 * D + slice * EW + i]));
    __syncthreads();

    const float lambda = expf(-slope[h]);
    const float4 v = reinterpret_cast<const float4 *>(v_s)[cg];
    float4 o = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
    for (int r = 0; r < RPT; r++) {
        const int c = rg + RG * r;
        const float kc = k_s[c], qc = q_s[c];
        float4 s = st[r];
        s.x = fmaf(lambda, s.x, kc * v.x);
        s.y = fmaf(lambda, s.y, kc * v.y);
        s.z = fmaf(lambda, s.z, kc * v.z);
        s.w = fmaf(lambda, s.w, kc * v.w);
        __stcs(reinterpret_cast<float4 *>(S + (size_t)c * D), s);
        o.x = fmaf(qc, s.x, o.x);
        o.y = fmaf(qc, s.y, o.y);
        o.z = fmaf(qc, s.z, o.z);
        o.w = fmaf(qc, s.w, o.w);
    }
    reinterpret_cast<float4 *>(part[rg])[cg] = o;
    __syncthreads();
    for (int e = tid; e < EW; e += NT) {
        float acc = 0.0f;
#pragma unroll 8
        for (int g = 0; g < RG; g++) acc += part[g][e];
        out[((size_t)row * n_heads + h) * D + slice * EW + e] = acc;
    }
}

typedef void (*ltd_fn)(const float *, const void *, float *, const int32_t *, float *, size_t, int);

/* ew <= D (D = 16: ew = 16) */
template <typename TIn, int D> static ltd_fn ltd_pick_ew(int ew) {
    if constexpr (D >= 128)
        if (ew == 128) return ltd_kernel<TIn, D, 128>;
    if constexpr (D >= 64)
        if (ew == 64) return ltd_kernel<TIn, D, 64>;
    if constexpr (D >= 32)
        return ltd_kernel<TIn, D, 32>;
    else
        return ltd_kernel<TIn, D, D>;
}

template <typename TIn> static ltd_fn ltd_pick(int d, int ew) {
    return d == 16   ? ltd_pick_ew<TIn, 16>(ew)
           : d == 32 ? ltd_pick_ew<TIn, 32>(ew)
           : d == 64 ? ltd_pick_ew<TIn, 64>(ew)
                     : ltd_pick_ew<TIn, 128>(ew);
}

extern "C" mr_status mr_cuda_lightning_decode(const mr_cuda_lightning_decode_args *a,
                                              cudaStream_t st) {
    if (!a || a->n_heads <= 0 || a->n < 0 || a->n > 65535 ||
        (a->n > 0 && (!a->slope || !a->qkv || !a->out || !a->slots || !a->state_pool)) ||
        (a->qkv_dtype != MR_DTYPE_F32 && a->qkv_dtype != MR_DTYPE_BF16) ||
        a->slot_stride < (size_t)a->n_heads * a->head_dim * a->head_dim || a->slot_stride % 4 ||
        (uintptr_t)a->state_pool % 16) {
        MR_LOG_ERROR(MR_LOG_GPU, "lightning decode: bad arguments");
        return MR_ERR_INVALID;
    }
    const int d = a->head_dim;
    if (d != 16 && d != 32 && d != 64 && d != 128) {
        MR_LOG_ERROR(MR_LOG_GPU, "lightning decode: head_dim %d unsupported (16, 32, 64, 128)", d);
        return MR_ERR_UNSUPPORTED;
    }
    if (a->n == 0) return MR_OK;
    /* narrower slices when few (sequence, head) pairs would leave SMs idle */
    const long pairs = (long)a->n * a->n_heads;
    int ew = pairs * d / 128 >= 512 ? 128 : pairs * d / 64 >= 512 ? 64 : 32;
    if (ew > d) ew = d;
    const ltd_fn fn =
        a->qkv_dtype == MR_DTYPE_F32 ? ltd_pick<float>(d, ew) : ltd_pick<__nv_bfloat16>(d, ew);
    dim3 grid((unsigned)(d / ew), (unsigned)a->n_heads, (unsigned)a->n);
    fn<<<grid, (unsigned)ltd_threads(d, ew), 0, st>>>(a->slope, a->qkv, a->out, a->slots,
                                                      a->state_pool, a->slot_stride, a->n_heads);
    MR_CUDA_CHECK_LAUNCH("lightning decode launch");
    return MR_OK;
}
