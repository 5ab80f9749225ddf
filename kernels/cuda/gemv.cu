/* gemv.cu — the dense projection for a few tokens (decode): y[n][rows] = x[n][cols] · Wᵀ with
 * bf16 weights and fp32 activations, n ≤ MR_CUDA_GEMV_KERNEL_MAX_N (coord_ops.h).
 *
 * At decode a projection is a weight stream: every byte of W is read once and used n times. The
 * cuBLAS route needs bf16 activations, so an fp32-accurate product (the oracle's accuracy) takes
 * two GEMMs (x split into hi + lo bf16 parts) and reads W twice. Here the activations stay fp32
 * and W is read once: each bf16 weight is widened to fp32 and multiplied with fp32 FMAs.
 *
 * Layout: a block of GEMV_WARPS warps owns GEMV_BLOCK_ROWS consecutive output rows, each warp
 * GEMV_ROWS of them, for all n tokens. The columns go in chunks of GEMV_KC: the block stages
 * x[0..n)[chunk] in shared memory (fp32), then every lane takes 8 consecutive columns at a stride
 * of 256 (one 16-byte load per row), so a warp's loads of a row are contiguous. A lane's partial
 * sums stay in registers across chunks; at the end the warp sums its lanes with shuffles (fixed
 * order) and lane t < n writes token t's output. Results are deterministic and do not depend on
 * the other tokens of the batch. Requires cols % 8 == 0 and W, x 16-byte aligned (checked by the
 * caller, which otherwise falls back to cuBLAS).
 *
 * Measured on an H200 (docs/performance.md, bench_cuda_linear): 86–93% of the copy bandwidth at
 * 1–2 tokens on the large projections, 2.0–2.9× the split route; from 4 tokens on the per-token
 * FMAs and shared-memory reads of x limit it (59% at 4, 33% at 8), so it stops at 2 and the
 * stacked single GEMM (coord_ops.cu) takes over. */
#include <cuda_bf16.h>

#include "kernels/cuda/coord_ops.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_internal.h"

enum {
    GEMV_WARPS = 8,
    GEMV_ROWS = 2, /* rows per warp: each staged x value is used for 2 rows */
    GEMV_BLOCK_ROWS = GEMV_WARPS * GEMV_ROWS,
    GEMV_KC = 1024, /* columns per chunk: x chunk = n · 4 KiB of shared memory */
};

enum { GEMV_LC = 8, GEMV_P = 2 }; /* columns per lane load (8 bf16), x planes (GEMV_LC / 4) */

/* Widens 8 bf16 (one 16-byte load) to fp32: a bf16 is the high half of an fp32. */
__device__ static __forceinline__ void widen8(uint4 q, float w[8]) {
    const unsigned u[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        w[2 * i] = __uint_as_float(u[i] << 16);
        w[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
    }
}

/* One argument set for both uses: the coordinator's projections (x fp32 rows, contiguous) and the
 * experts (x gathered through a row list, or the SwiGLU output as hi + lo bf16 parts). */
typedef struct gemv_params {
    const __nv_bfloat16 *w; /* [rows][ldw] */
    int ldw, rows, cols;
    const float *x;                   /* fp32 rows at x + row(t) · ldx, or NULL: the pair below */
    const int32_t *x_idx;             /* row(t) = x_idx[t] (device), or t when NULL */
    const __nv_bfloat16 *x_hi, *x_lo; /* x = hi + lo, rows at t · ldx */
    int ldx;
    float *y;
    int ldy;
} gemv_params;

/* x[t][k .. k + 8) as fp32 (8 consecutive columns, 16-byte aligned). */
template <bool PAIR>
__device__ static __forceinline__ void load_x8(const gemv_params &p, size_t row_off, int k,
                                               float4 &a, float4 &b) {
    if (!PAIR) {
        const float4 *src = (const float4 *)(p.x + row_off + k);
        a = src[0];
        b = src[1];
    } else {
        float h[8], l[8];
        widen8(*(const uint4 *)(p.x_hi + row_off + k), h);
        widen8(*(const uint4 *)(p.x_lo + row_off + k), l);
        a = make_float4(h[0] + l[0], h[1] + l[1], h[2] + l[2], h[3] + l[3]);
        b = make_float4(h[4] + l[4], h[5] + l[5], h[6] + l[6], h[7] + l[7]);
    }
}

template <int NT, bool PAIR>
static __global__ void __launch_bounds__(GEMV_WARPS * 32) gemv_kernel(gemv_params p) {
    constexpr int LC = GEMV_LC, P = GEMV_P, STEP = 32 * LC, NJ = GEMV_KC / STEP;
    /* x chunk, each row in P planes: plane q holds columns LC·i + 4q .. + 3 at 4i, so that a
     * lane's 16-byte reads (its group i = lane + 32j) fall on consecutive addresses across the
     * warp — no bank conflicts (one plane would put lanes LC·4 bytes apart) */
    __shared__ __align__(16) float xs[NT][P][GEMV_KC / P];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int row0 = blockIdx.x * GEMV_BLOCK_ROWS + warp * GEMV_ROWS;
    const int rows = p.rows, cols = p.cols;
    float acc[GEMV_ROWS][NT];
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[r][t] = 0.0f;
    /* rows past the end read row `rows - 1` (valid memory) and are never written */
    const uint4 *wrow[GEMV_ROWS];
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; r++) {
        const int row = row0 + r < rows ? row0 + r : rows - 1;
        wrow[r] = (const uint4 *)(p.w + (size_t)row * (size_t)p.ldw);
    }
    size_t x_off[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) x_off[t] = (size_t)(p.x_idx ? p.x_idx[t] : t) * (size_t)p.ldx;
    for (int k0 = 0; k0 < cols; k0 += GEMV_KC) {
        const int kc = cols - k0 < GEMV_KC ? cols - k0 : GEMV_KC; /* a multiple of LC */
        __syncthreads(); /* the previous chunk is no longer read */
        for (int i = threadIdx.x; i < NT * (kc / 8); i += blockDim.x) {
            const int t = i / (kc / 8), c8 = i % (kc / 8);
            float4 a, b;
#pragma unroll
            for (int tt = 0; tt < NT; tt++) /* x_off[t] with a compile-time index */
                if (tt == t) load_x8<PAIR>(p, x_off[tt], k0 + 8 * c8, a, b);
            /* columns 8·c8 .. +8 = group g = 8·c8 / LC, planes q0, q0 + 1 */
            const int g = 8 * c8 / LC, q0 = (8 * c8 % LC) / 4;
            ((float4 *)xs[t][q0])[g] = a;
            ((float4 *)xs[t][q0 + 1])[g] = b;
        }
        __syncthreads();
        /* the weights of this chunk: NJ loads per row, all issued first */
        uint4 q[GEMV_ROWS][NJ];
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            const int c = j * STEP + lane * LC;
#pragma unroll
            for (int r = 0; r < GEMV_ROWS; r++)
                q[r][j] = c < kc ? __ldcs(wrow[r] + (k0 + c) / 8) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            const int c = j * STEP + lane * LC;
            if (c >= kc) break;
            float wf[GEMV_ROWS][LC];
#pragma unroll
            for (int r = 0; r < GEMV_ROWS; r++) widen8(q[r][j], wf[r]);
#pragma unroll
            for (int t = 0; t < NT; t++)
#pragma unroll
                for (int pl = 0; pl < P; pl++) {
                    const float4 xq = ((const float4 *)xs[t][pl])[c / LC];
                    const float xv[4] = {xq.x, xq.y, xq.z, xq.w};
#pragma unroll
                    for (int r = 0; r < GEMV_ROWS; r++)
#pragma unroll
                        for (int e = 0; e < 4; e++)
                            acc[r][t] = fmaf(wf[r][4 * pl + e], xv[e], acc[r][t]);
                }
        }
    }
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float v = acc[r][t];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            acc[r][t] = v;
        }
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; r++)
        if (row0 + r < rows)
#pragma unroll
            for (int t = 0; t < NT; t++)
                if (lane == t) p.y[(size_t)t * p.ldy + row0 + r] = acc[r][t];
}

template <bool PAIR>
static void gemv_launch_n(const gemv_params &p, int n, dim3 grid, cudaStream_t st) {
    switch (n) {
#define GEMV_CASE(N)                                                                               \
    case N:                                                                                        \
        gemv_kernel<N, PAIR><<<grid, GEMV_WARPS * 32, 0, st>>>(p);                                 \
        break;
        GEMV_CASE(1)
        GEMV_CASE(2)
        GEMV_CASE(3)
        GEMV_CASE(4)
        GEMV_CASE(5)
        GEMV_CASE(6)
        GEMV_CASE(7)
        GEMV_CASE(8)
#undef GEMV_CASE
    }
}

static mr_status gemv_launch(const gemv_params &p, int n, cudaStream_t st) {
    const dim3 grid((unsigned)((p.rows + GEMV_BLOCK_ROWS - 1) / GEMV_BLOCK_ROWS));
    if (p.x)
        gemv_launch_n<false>(p, n, grid, st);
    else
        gemv_launch_n<true>(p, n, grid, st);
    MR_CUDA_CHECK_LAUNCH("gemv kernel launch");
    return MR_OK;
}

extern "C" int mr_cuda_gemv_supported(int n, int cols, const void *w, const void *x) {
    return n >= 1 && n <= MR_CUDA_GEMV_KERNEL_MAX_N && cols >= 8 && cols % 8 == 0 &&
           ((uintptr_t)w % 16) == 0 && ((uintptr_t)x % 16) == 0;
}

extern "C" mr_status mr_cuda_gemv_bf16(const uint16_t *w, const float *x, int n, int rows, int cols,
                                       float *y, cudaStream_t st) {
    if (!w || !x || !y || rows < 1 || !mr_cuda_gemv_supported(n, cols, w, x)) {
        MR_LOG_ERROR(MR_LOG_GPU,
                     "mr_cuda_gemv_bf16: needs 1 <= n <= %d, rows >= 1, cols a multiple of 8, "
                     "16-byte aligned w and x (n %d, rows %d, cols %d)",
                     MR_CUDA_GEMV_KERNEL_MAX_N, n, rows, cols);
        return MR_ERR_INVALID;
    }
    gemv_params p = {
        (const __nv_bfloat16 *)w, cols, rows, cols, x, NULL, NULL, NULL, cols, y, rows};
    return gemv_launch(p, n, st);
}

extern "C" mr_status mr_cuda_expert_gemv_launch(const uint16_t *w, int ldw, int rows, int cols,
                                                int n, const float *x, const int32_t *x_idx,
                                                const uint16_t *x_hi, const uint16_t *x_lo, int ldx,
                                                float *y, int ldy, cudaStream_t st) {
    const int pair = x == NULL;
    const void *xp = pair ? (const void *)x_hi : (const void *)x;
    if (!w || !xp || (pair && !x_lo) || !y || n < 1 || n > MR_CUDA_GEMV_KERNEL_MAX_N || rows < 1 ||
        cols < GEMV_LC || cols % GEMV_LC || ldy < rows || ldw < cols || ldw % GEMV_LC ||
        ldx < cols || ldx % (pair ? 8 : 4) || (uintptr_t)w % 16 || (uintptr_t)xp % 16 ||
        (pair && (uintptr_t)x_lo % 16)) {
        MR_LOG_ERROR(MR_LOG_GPU,
                     "mr_cuda_expert_gemv_launch: bad arguments (n %d, rows %d, cols %d, ldw %d, "
                     "ldx %d, ldy %d)",
                     n, rows, cols, ldw, ldx, ldy);
        return MR_ERR_INVALID;
    }
    gemv_params p = {
        (const __nv_bfloat16 *)w,    ldw, rows, cols, x, x_idx, (const __nv_bfloat16 *)x_hi,
        (const __nv_bfloat16 *)x_lo, ldx, y,    ldy};
    return gemv_launch(p, n, st);
}
