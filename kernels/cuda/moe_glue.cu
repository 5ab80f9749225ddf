/* moe_glue.cu — the memory-light steps around the expert matrices: gather the routed tokens
 * (fp32 → bf16) in expert order, SwiGLU over an interleaved gate/up GEMM output, and the
 * gate-weighted sum of each token's expert outputs in slot order. */
#include <cuda_bf16.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/cuda_pdl.cuh"

/* grid (rows, ceil(hidden / 1024)): 256 threads, 4 columns each (one fp32 vector load when
 * hidden is a multiple of 4) — many blocks per row, so that a call of a few rows is not one
 * block's chain of dependent loads. */
static __global__ void gather_kernel(const float *x, const int32_t *src, int hidden, uint16_t *xg,
                                     uint16_t *xg_lo, int ldx, int perm_rows, int perm_ck) {
    mr_pdl_trigger(); /* the expert kernels may start streaming their weights */
    const int r = blockIdx.x, c0 = (blockIdx.y * blockDim.x + threadIdx.x) * 4;
    if (c0 >= hidden) return;
    const float *xs = x + (size_t)src[r] * (size_t)hidden;
    __nv_bfloat16 *d = (__nv_bfloat16 *)xg + (size_t)r * (size_t)ldx;
    __nv_bfloat16 *dl = xg_lo ? (__nv_bfloat16 *)xg_lo + (size_t)r * (size_t)ldx : NULL;
    float v[4];
    if (hidden % 4 == 0) {
        const float4 f = *(const float4 *)(xs + c0);
        v[0] = f.x, v[1] = f.y, v[2] = f.z, v[3] = f.w;
    } else {
        for (int i = 0; i < 4; i++) v[i] = c0 + i < hidden ? xs[c0 + i] : 0.0f;
    }
    const bool perm = r < perm_rows;
    for (int i = 0; i < 4 && c0 + i < hidden; i++) {
        const int c = c0 + i;
        const __nv_bfloat16 hi = __float2bfloat16_rn(v[i]);
        const int p = perm ? c / perm_ck * perm_ck + MR_CUDA_WQG_POS(c % perm_ck, perm_ck) : c;
        d[p] = hi;
        if (dl) dl[p] = __float2bfloat16_rn(v[i] - __bfloat162float(hi));
    }
}

extern "C" mr_status mr_cuda_gather_launch(const float *x, const int32_t *src, int rows, int hidden,
                                           uint16_t *xg, uint16_t *xg_lo, int ldx, int perm_rows,
                                           int perm_ck, cudaStream_t st) {
    if (!x || !src || !xg || rows <= 0 || hidden <= 0 || ldx < hidden ||
        (perm_rows > 0 && (perm_ck < 16 || perm_ck % 16 || hidden % perm_ck)))
        return MR_ERR_INVALID;
    const dim3 grid((unsigned)rows, (unsigned)((hidden + 1023) / 1024));
    gather_kernel<<<grid, 256, 0, st>>>(x, src, hidden, xg, xg_lo, ldx, perm_rows,
                                        perm_rows > 0 ? perm_ck : 16);
    MR_CUDA_CHECK_LAUNCH("gather kernel launch");
    return MR_OK;
}

/* grid (rows, ceil(inter/256)) */
static __global__ void swiglu_kernel(const void *g, int g_f32, int ldg, int r0, int inter,
                                     uint16_t *a, uint16_t *a_lo, int lda) {
    const int r = r0 + blockIdx.x, j = blockIdx.y * blockDim.x + threadIdx.x;
    if (j >= inter) return;
    const size_t i = (size_t)r * (size_t)ldg + (size_t)(32 * (j / 16) + (j % 16));
    float gv, uv;
    if (g_f32) {
        gv = ((const float *)g)[i];
        uv = ((const float *)g)[i + 16];
    } else {
        gv = __bfloat162float(((const __nv_bfloat16 *)g)[i]);
        uv = __bfloat162float(((const __nv_bfloat16 *)g)[i + 16]);
    }
    const float v = gv / (1.0f + expf(-gv)) * uv;
    const __nv_bfloat16 hi = __float2bfloat16_rn(v);
    ((__nv_bfloat16 *)a)[(size_t)r * (size_t)lda + j] = hi;
    if (a_lo)
        ((__nv_bfloat16 *)a_lo)[(size_t)r * (size_t)lda + j] =
            __float2bfloat16_rn(v - __bfloat162float(hi));
}

extern "C" mr_status mr_cuda_swiglu_launch(const void *g, int g_f32, int ldg, int r0, int r1,
                                           int inter, uint16_t *a, uint16_t *a_lo, int lda,
                                           cudaStream_t st) {
    if (!g || !a || r0 < 0 || r1 <= r0 || inter <= 0 || lda < inter ||
        ldg < 2 * mr_cuda_round_up(inter, 16))
        return MR_ERR_INVALID;
    dim3 grid((unsigned)(r1 - r0), (unsigned)((inter + 255) / 256));
    swiglu_kernel<<<grid, 256, 0, st>>>(g, g_f32, ldg, r0, inter, a, a_lo, lda);
    MR_CUDA_CHECK_LAUNCH("swiglu kernel launch");
    return MR_OK;
}

/* grid (n, ceil(hidden/256)); the sum runs in slot order like the reference. */
static __global__ void combine_kernel(const float *y32, const uint16_t *y16, int rows16,
                                      const int32_t *inv, const float *wts, int k, int hidden,
                                      float *out) {
    const int t = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
    mr_pdl_wait(); /* the expert outputs come from the kernel before */
    if (c >= hidden) return;
    float acc = 0.0f;
    for (int j = 0; j < k; j++) {
        const int p = inv[(size_t)t * k + j];
        if (p < 0) continue;
        const size_t i = (size_t)p * (size_t)hidden + (size_t)c;
        const float v = p < rows16 ? __bfloat162float(((const __nv_bfloat16 *)y16)[i]) : y32[i];
        acc += wts[(size_t)t * k + j] * v;
    }
    out[(size_t)t * (size_t)hidden + (size_t)c] = acc;
}

extern "C" mr_status mr_cuda_combine_launch(const float *y32, const uint16_t *y16, int rows16,
                                            const int32_t *inv, const float *wts, int n, int k,
                                            int hidden, float *out, cudaStream_t st) {
    if (!y32 || (rows16 > 0 && !y16) || !inv || !wts || !out || n <= 0 || k <= 0 || hidden <= 0)
        return MR_ERR_INVALID;
    dim3 grid((unsigned)n, (unsigned)((hidden + 255) / 256));
    MR_CUDA_CHECK(mr_pdl_launch(combine_kernel, grid, dim3(256), 0, st, y32, y16, rows16, inv, wts,
                                k, hidden, out));
    return MR_OK;
}
