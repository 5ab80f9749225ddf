/* gemv.cu — the dense projection for a few tokens (decode): y[n][rows] = x[n][cols] · Wᵀ with
 * bf16 weights and fp32 activations, n ≤ MR_CUDA_GEMV_MAX_N (coord_ops.h).
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
 * caller, which otherwise falls back to cuBLAS). */
#include <cuda_bf16.h>

#include "kernels/cuda/coord_ops.h"
#include "kernels/cuda/cuda_check.h"

enum {
    GEMV_WARPS = 8,
    GEMV_ROWS = 2, /* rows per warp: each staged x value is used for 2 rows */
    GEMV_BLOCK_ROWS = GEMV_WARPS * GEMV_ROWS,
    GEMV_KC = 1024, /* columns per chunk: x chunk = n · 4 KiB of shared memory */
    GEMV_LANE_COLS = 8,
    GEMV_STEP = 32 * GEMV_LANE_COLS, /* columns a warp covers per load */
};

/* Widens 8 bf16 (one 16-byte load) to fp32: a bf16 is the high half of an fp32. */
__device__ static __forceinline__ void widen8(uint4 q, float w[8]) {
    const unsigned u[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        w[2 * i] = __uint_as_float(u[i] << 16);
        w[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
    }
}

template <int NT>
static __global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_bf16_kernel(const __nv_bfloat16 *__restrict__ w, const float *__restrict__ x, int rows,
                     int cols, float *__restrict__ y) {
    __shared__ __align__(16) float xs[NT][GEMV_KC];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int row0 = blockIdx.x * GEMV_BLOCK_ROWS + warp * GEMV_ROWS;
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
        wrow[r] = (const uint4 *)(w + (size_t)row * (size_t)cols);
    }
    for (int k0 = 0; k0 < cols; k0 += GEMV_KC) {
        const int kc = cols - k0 < GEMV_KC ? cols - k0 : GEMV_KC; /* a multiple of 8 */
        __syncthreads(); /* the previous chunk is no longer read */
        for (int i = threadIdx.x; i < NT * (kc / 4); i += blockDim.x) {
            const int t = i / (kc / 4), c4 = i % (kc / 4);
            ((float4 *)xs[t])[c4] = ((const float4 *)(x + (size_t)t * cols + k0))[c4];
        }
        __syncthreads();
        /* the weights of this chunk: up to GEMV_KC / GEMV_STEP loads per row, all issued first */
        constexpr int NJ = GEMV_KC / GEMV_STEP;
        uint4 q[GEMV_ROWS][NJ];
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            const int c = j * GEMV_STEP + lane * GEMV_LANE_COLS;
#pragma unroll
            for (int r = 0; r < GEMV_ROWS; r++)
                q[r][j] = c < kc ? __ldcs(wrow[r] + (k0 + c) / 8) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            const int c = j * GEMV_STEP + lane * GEMV_LANE_COLS;
            if (c >= kc) break;
            float wf[GEMV_ROWS][8];
#pragma unroll
            for (int r = 0; r < GEMV_ROWS; r++) widen8(q[r][j], wf[r]);
#pragma unroll
            for (int t = 0; t < NT; t++) {
                const float4 xa = *(const float4 *)&xs[t][c], xb = *(const float4 *)&xs[t][c + 4];
                const float xv[8] = {xa.x, xa.y, xa.z, xa.w, xb.x, xb.y, xb.z, xb.w};
#pragma unroll
                for (int r = 0; r < GEMV_ROWS; r++)
#pragma unroll
                    for (int e = 0; e < 8; e++) acc[r][t] = fmaf(wf[r][e], xv[e], acc[r][t]);
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
                if (lane == t) y[(size_t)t * rows + row0 + r] = acc[r][t];
}

extern "C" int mr_cuda_gemv_supported(int n, int cols, const void *w, const void *x) {
    return n >= 1 && n <= MR_CUDA_GEMV_MAX_N && cols >= 8 && cols % 8 == 0 &&
           ((uintptr_t)w % 16) == 0 && ((uintptr_t)x % 16) == 0;
}

extern "C" mr_status mr_cuda_gemv_bf16(const uint16_t *w, const float *x, int n, int rows, int cols,
                                       float *y, cudaStream_t st) {
    if (!w || !x || !y || rows < 1 || !mr_cuda_gemv_supported(n, cols, w, x)) {
        MR_LOG_ERROR(MR_LOG_GPU,
                     "mr_cuda_gemv_bf16: needs 1 <= n <= %d, rows >= 1, cols a multiple of 8, "
                     "16-byte aligned w and x (n %d, rows %d, cols %d)",
                     MR_CUDA_GEMV_MAX_N, n, rows, cols);
        return MR_ERR_INVALID;
    }
    const dim3 grid((unsigned)((rows + GEMV_BLOCK_ROWS - 1) / GEMV_BLOCK_ROWS));
    const __nv_bfloat16 *wb = (const __nv_bfloat16 *)w;
    switch (n) {
#define GEMV_CASE(N)                                                                               \
    case N:                                                                                        \
        gemv_bf16_kernel<N><<<grid, GEMV_WARPS * 32, 0, st>>>(wb, x, rows, cols, y);               \
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
    MR_CUDA_CHECK_LAUNCH("gemv_bf16 kernel launch");
    return MR_OK;
}
