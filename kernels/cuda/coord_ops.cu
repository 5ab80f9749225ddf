/* coord_ops.cu — the coordinator's non-attention ops (see coord_ops.h): embedding gather,
 * RMSNorm (optionally after the fused postnorm residual), scale_add, the lightning output
 * norm-and-gate, fp32 → bf16 conversion, the dense projection through cuBLAS, the fused router,
 * greedy argmax, and lightning state slot copies.
 *
 * Row kernels (norms, router, argmax) run one block per row (the router: ROUTE_TOK rows); every
 * element of a row is read and written by the same thread in every pass (c = tid + k·blockDim),
 * which is what makes the documented in-place aliasing safe. Reductions go warp shuffle →
 * shared memory → warp 0, in a fixed order: results are the same on every run. */
#include <cuda_bf16.h>
#include <float.h>
#include <limits.h>
#include <string.h>

#include "kernels/cuda/coord_ops.h"
#include "kernels/cuda/cuda_check.h"

enum { ROW_THREADS = 256, ARGMAX_THREADS = 1024, ROUTE_THREADS = 1024, ROUTE_TOK = 4 };

/* Argument checks: log the reason once and fail with MR_ERR_INVALID. */
#define CO_REQUIRE(cond, fn, why)                                                                  \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            MR_LOG_ERROR(MR_LOG_GPU, "%s: %s", (fn), (why));                                       \
            return MR_ERR_INVALID;                                                                 \
        }                                                                                          \
    } while (0)

__device__ static __forceinline__ float co_load(const float *p, size_t i) {
    return p[i];
}
__device__ static __forceinline__ float co_load(const __nv_bfloat16 *p, size_t i) {
    return __bfloat162float(p[i]);
}

__device__ static __forceinline__ double warp_sum_d(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ static __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
 * red: __shared__ float[32]. */
__device__ static float block_sum(float v, float *red) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    v = warp_sum(v);
    __syncthreads(); /* red may still be read from a previous call */
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float s = lane < nw ? red[lane] : 0.0f;
    s = warp_sum(s);
    return s;
}

/* ---- embedding ------------------------------------------------------------------------------ */

/* grid (n) */
template <typename T>
static __global__ void embed_kernel(const T *table, int vocab, int dim, const int32_t *ids,
                                    float *out) {
    const int t = blockIdx.x;
    const int32_t id = ids[t];
    float *o = out + (size_t)t * (size_t)dim;
    if (id < 0 || id >= vocab) {
        for (int c = threadIdx.x; c < dim; c += blockDim.x) o[c] = __int_as_float(0x7fc00000);
        return;
    }
    const T *row = table + (size_t)id * (size_t)dim;
    for (int c = threadIdx.x; c < dim; c += blockDim.x) o[c] = co_load(row, (size_t)c);
}

extern "C" mr_status mr_cuda_embed(const mr_cuda_embed_args *a, cudaStream_t st) {
    const char *fn = "mr_cuda_embed";
    CO_REQUIRE(a && a->table && a->ids && a->out, fn, "NULL argument");
    CO_REQUIRE(a->n >= 1 && a->vocab >= 1 && a->dim >= 1, fn, "n, vocab and dim must be >= 1");
    CO_REQUIRE(a->table_dtype == MR_DTYPE_F32 || a->table_dtype == MR_DTYPE_BF16, fn,
               "table dtype must be F32 or BF16");
    if (a->table_dtype == MR_DTYPE_F32)
        embed_kernel<float><<<(unsigned)a->n, ROW_THREADS, 0, st>>>(
            (const float *)a->table, a->vocab, a->dim, a->ids, a->out);
    else
        embed_kernel<__nv_bfloat16><<<(unsigned)a->n, ROW_THREADS, 0, st>>>(
            (const __nv_bfloat16 *)a->table, a->vocab, a->dim, a->ids, a->out);
    MR_CUDA_CHECK_LAUNCH("embed kernel launch");
    return MR_OK;
}

/* ---- RMSNorm (+ fused residual), norm-gate, scale_add ---------------------------------------- */

/* a·h + b·y with each product rounded and then the sum (no FMA contraction): the ref's C. */
__device__ static __forceinline__ float co_axpby(float a, float h, float b, float y) {
    return __fadd_rn(__fmul_rn(a, h), __fmul_rn(b, y));
}

/* grid (n). Pass 1: v = x (or α·x + β·add, stored to x_out), Σv²; pass 2: y = v·inv·w. */
template <typename TW>
static __global__ void rmsnorm_kernel(const float *x, const float *add, float alpha, float beta,
                                      float *x_out, const TW *w, int dim, float eps, float *y) {
    __shared__ float red[32];
    const size_t off = (size_t)blockIdx.x * (size_t)dim;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < dim; c += blockDim.x) {
        float v = x[off + c];
        if (add) {
            v = co_axpby(alpha, v, beta, add[off + c]);
            x_out[off + c] = v;
        }
        ss = fmaf(v, v, ss);
    }
    ss = block_sum(ss, red);
    const float inv = 1.0f / sqrtf(ss / (float)dim + eps);
    const float *src = add ? x_out : x; /* this thread's own pass-1 elements */
    for (int c = threadIdx.x; c < dim; c += blockDim.x)
        y[off + c] = __fmul_rn(__fmul_rn(src[off + c], inv), co_load(w, (size_t)c));
}

static mr_status check_vec_dtype(mr_dtype t, const char *fn) {
    CO_REQUIRE(t == MR_DTYPE_F32 || t == MR_DTYPE_BF16, fn, "weight dtype must be F32 or BF16");
    return MR_OK;
}

extern "C" mr_status mr_cuda_rmsnorm(const mr_cuda_rmsnorm_args *a, cudaStream_t st) {
    const char *fn = "mr_cuda_rmsnorm";
    CO_REQUIRE(a && a->w && a->x && a->y, fn, "NULL argument");
    CO_REQUIRE(a->n >= 1 && a->dim >= 1, fn, "n and dim must be >= 1");
    CO_REQUIRE(a->eps >= 0.0f, fn, "eps must be >= 0");
    CO_REQUIRE(!a->add || a->x_out, fn, "the fused residual needs x_out");
    CO_REQUIRE(!a->add || a->x_out != a->y, fn, "x_out must not alias y");
    mr_status s = check_vec_dtype(a->w_dtype, fn);
    if (s != MR_OK) return s;
    if (a->w_dtype == MR_DTYPE_F32)
        rmsnorm_kernel<float><<<(unsigned)a->n, ROW_THREADS, 0, st>>>(
            a->x, a->add, a->alpha, a->beta, a->x_out, (const float *)a->w, a->dim, a->eps, a->y);
    else
        rmsnorm_kernel<__nv_bfloat16><<<(unsigned)a->n, ROW_THREADS, 0, st>>>(
            a->x, a->add, a->alpha, a->beta, a->x_out, (const __nv_bfloat16 *)a->w, a->dim, a->eps,
            a->y);
    MR_CUDA_CHECK_LAUNCH("rmsnorm kernel launch");
    return MR_OK;
}

/* grid (n). out = sigmoid(gate) · (o·inv·w), the ref's order of operations. */
template <typename TW>
static __global__ void norm_gate_kernel(const float *o, const float *gate, const TW *w, int dim,
                                        float eps, float *out) {
    __shared__ float red[32];
    const size_t off = (size_t)blockIdx.x * (size_t)dim;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < dim; c += blockDim.x) {
        const float v = o[off + c];
        ss = fmaf(v, v, ss);
    }
    ss = block_sum(ss, red);
    const float inv = 1.0f / sqrtf(ss / (float)dim + eps);
    for (int c = threadIdx.x; c < dim; c += blockDim.x) {
        const float sg = 1.0f / (1.0f + expf(-gate[off + c]));
        const float v = __fmul_rn(__fmul_rn(o[off + c], inv), co_load(w, (size_t)c));
        out[off + c] = __fmul_rn(sg, v);
    }
}

extern "C" mr_status mr_cuda_norm_gate(const mr_cuda_norm_gate_args *a, cudaStream_t st) {
    const char *fn = "mr_cuda_norm_gate";
    CO_REQUIRE(a && a->w && a->o && a->gate && a->out, fn, "NULL argument");
    CO_REQUIRE(a->n >= 1 && a->dim >= 1, fn, "n and dim must be >= 1");
    CO_REQUIRE(a->eps >= 0.0f, fn, "eps must be >= 0");
    mr_status s = check_vec_dtype(a->w_dtype, fn);
    if (s != MR_OK) return s;
    if (a->w_dtype == MR_DTYPE_F32)
        norm_gate_kernel<float><<<(unsigned)a->n, ROW_THREADS, 0, st>>>(
            a->o, a->gate, (const float *)a->w, a->dim, a->eps, a->out);
    else
        norm_gate_kernel<__nv_bfloat16><<<(unsigned)a->n, ROW_THREADS, 0, st>>>(
            a->o, a->gate, (const __nv_bfloat16 *)a->w, a->dim, a->eps, a->out);
    MR_CUDA_CHECK_LAUNCH("norm_gate kernel launch");
    return MR_OK;
}

/* Grid-stride elementwise launches: enough blocks to fill the GPU, not one per element. */
static unsigned elementwise_blocks(size_t n) {
    size_t b = (n + 255) / 256;
    return (unsigned)(b < 65536 ? b : 65536);
}

static __global__ void scale_add_kernel(const float *h, const float *y, float a, float b, size_t n,
                                        float *out) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        out[i] = co_axpby(a, h[i], b, y[i]);
}

extern "C" mr_status mr_cuda_scale_add(const float *h, const float *y, float a, float b, size_t n,
                                       float *out, cudaStream_t st) {
    const char *fn = "mr_cuda_scale_add";
    CO_REQUIRE(h && y && out, fn, "NULL argument");
    if (n == 0) return MR_OK;
    scale_add_kernel<<<elementwise_blocks(n), 256, 0, st>>>(h, y, a, b, n, out);
    MR_CUDA_CHECK_LAUNCH("scale_add kernel launch");
    return MR_OK;
}

static __global__ void f32_to_bf16_kernel(const float *src, size_t n, __nv_bfloat16 *dst) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        dst[i] = __float2bfloat16_rn(src[i]);
}

extern "C" mr_status mr_cuda_f32_to_bf16(const float *src, size_t n, uint16_t *dst,
                                         cudaStream_t st) {
    const char *fn = "mr_cuda_f32_to_bf16";
    CO_REQUIRE(src && dst, fn, "NULL argument");
    if (n == 0) return MR_OK;
    f32_to_bf16_kernel<<<elementwise_blocks(n), 256, 0, st>>>(src, n, (__nv_bfloat16 *)dst);
    MR_CUDA_CHECK_LAUNCH("f32_to_bf16 kernel launch");
    return MR_OK;
}

static __global__ void bf16_to_f32_kernel(const __nv_bfloat16 *src, size_t n, float *dst) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        dst[i] = __bfloat162float(src[i]);
}

extern "C" mr_status mr_cuda_bf16_to_f32(const uint16_t *src, size_t n, float *dst,
                                         cudaStream_t st) {
    const char *fn = "mr_cuda_bf16_to_f32";
    CO_REQUIRE(src && dst, fn, "NULL argument");
    if (n == 0) return MR_OK;
    bf16_to_f32_kernel<<<elementwise_blocks(n), 256, 0, st>>>((const __nv_bfloat16 *)src, n, dst);
    MR_CUDA_CHECK_LAUNCH("bf16_to_f32 kernel launch");
    return MR_OK;
}

/* hi[i] = bf16(x[i]), lo[i] = bf16(x[i] − hi[i]). */
static __global__ void f32_split_bf16_kernel(const float *src, size_t n, __nv_bfloat16 *hi,
                                             __nv_bfloat16 *lo) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const __nv_bfloat16 h = __float2bfloat16_rn(src[i]);
        hi[i] = h;
        lo[i] = __float2bfloat16_rn(src[i] - __bfloat162float(h));
    }
}

/* ---- dense projection ----------------------------------------------------------------------
 * Row-major y[n][rows] = x[n][cols] · W[rows][cols]ᵀ in cuBLAS's column-major terms: the
 * row-major W is a column-major cols × rows matrix (ld cols), x a cols × n matrix (ld cols), y a
 * rows × n matrix (ld rows). So Y = op(W)ᵀ · X: gemm(transa = T, transb = N, m = rows, n = n,
 * k = cols, A = W lda = cols, B = x ldb = cols, C = y ldc = rows). */
extern "C" mr_cuda_linear_args mr_cuda_linear_split_args(int n, int rows, int cols,
                                                         mr_dtype w_dtype, const void *w,
                                                         const float *x, uint16_t *xb2, float *y,
                                                         float *y2, size_t y2_floats) {
    mr_cuda_linear_args a;
    memset(&a, 0, sizeof a);
    a.n = n;
    a.rows = rows;
    a.cols = cols;
    a.w_dtype = w_dtype;
    a.w = w;
    a.x_dtype = MR_DTYPE_F32;
    a.x = x;
    a.x_bf16 = xb2;
    a.y = y;
    a.x_lo_bf16 = xb2 ? xb2 + (size_t)n * (size_t)cols : NULL;
    a.y2 = y2;
    a.y2_floats = y2 ? y2_floats : 0;
    return a;
}

extern "C" mr_status mr_cuda_linear(cublasHandle_t blas, const mr_cuda_linear_args *a,
                                    cudaStream_t st) {
    const char *fn = "mr_cuda_linear";
    CO_REQUIRE(blas && a && a->w && a->x && a->y, fn, "NULL argument");
    CO_REQUIRE(a->n >= 1 && a->rows >= 1 && a->cols >= 1, fn, "n, rows and cols must be >= 1");
    CO_REQUIRE((const void *)a->y != a->x, fn, "y must not alias x");
    CO_REQUIRE(a->w_dtype == MR_DTYPE_BF16 || a->w_dtype == MR_DTYPE_F32, fn,
               "weight dtype must be BF16 or F32");
    CO_REQUIRE(a->x_dtype == MR_DTYPE_F32 ||
                   (a->x_dtype == MR_DTYPE_BF16 && a->w_dtype == MR_DTYPE_BF16),
               fn, "x must be F32, or BF16 with BF16 weights");
    CO_REQUIRE(!(a->w_dtype == MR_DTYPE_BF16 && a->x_dtype == MR_DTYPE_F32) || a->x_bf16, fn,
               "bf16 weights with fp32 x need the x_bf16 scratch");
    const float one = 1.0f, zero = 0.0f;
    MR_CUBLAS_CHECK(cublasSetStream(blas, st));
    if (a->w_dtype == MR_DTYPE_F32) {
        MR_CUBLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, a->rows, a->n, a->cols, &one,
                                     a->w, CUDA_R_32F, a->cols, a->x, CUDA_R_32F, a->cols, &zero,
                                     a->y, CUDA_R_32F, a->rows, CUBLAS_COMPUTE_32F_PEDANTIC,
                                     CUBLAS_GEMM_DEFAULT));
        return MR_OK;
    }
    if (a->x_dtype == MR_DTYPE_F32 && !a->no_gemv && a->n <= MR_CUDA_GEMV_MAX_N &&
        mr_cuda_gemv_supported(a->n, a->cols, a->w, a->x))
        return mr_cuda_gemv_bf16((const uint16_t *)a->w, (const float *)a->x, a->n, a->rows,
                                 a->cols, a->y, st);
    const void *xb = a->x;
    const int split = a->x_dtype == MR_DTYPE_F32 && a->x_lo_bf16;
    if (split) {
        const size_t cnt = (size_t)a->n * (size_t)a->cols;
        f32_split_bf16_kernel<<<elementwise_blocks(cnt), 256, 0, st>>>(
            (const float *)a->x, cnt, (__nv_bfloat16 *)a->x_bf16, (__nv_bfloat16 *)a->x_lo_bf16);
        MR_CUDA_CHECK_LAUNCH("f32_split_bf16 kernel launch");
        xb = a->x_bf16;
    } else if (a->x_dtype == MR_DTYPE_F32) {
        mr_status s =
            mr_cuda_f32_to_bf16((const float *)a->x, (size_t)a->n * (size_t)a->cols, a->x_bf16, st);
        if (s != MR_OK) return s;
        xb = a->x_bf16;
    }
    const size_t ny = (size_t)a->n * (size_t)a->rows;
    if (split && a->y2 && a->x_lo_bf16 == a->x_bf16 + (size_t)a->n * (size_t)a->cols &&
        2 * ny <= a->y2_floats) { /* [hi; lo] as 2n columns of one GEMM: W read once */
        MR_CUBLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, a->rows, 2 * a->n, a->cols,
                                     &one, a->w, CUDA_R_16BF, a->cols, xb, CUDA_R_16BF, a->cols,
                                     &zero, a->y2, CUDA_R_32F, a->rows, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT));
        scale_add_kernel<<<elementwise_blocks(ny), 256, 0, st>>>(a->y2, a->y2 + ny, 1.0f, 1.0f, ny,
                                                                 a->y);
        MR_CUDA_CHECK_LAUNCH("linear hi + lo sum launch");
        return MR_OK;
    }
    MR_CUBLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, a->rows, a->n, a->cols, &one, a->w,
                                 CUDA_R_16BF, a->cols, xb, CUDA_R_16BF, a->cols, &zero, a->y,
                                 CUDA_R_32F, a->rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    if (split) /* y += W · lo */
        MR_CUBLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, a->rows, a->n, a->cols, &one,
                                     a->w, CUDA_R_16BF, a->cols, a->x_lo_bf16, CUDA_R_16BF, a->cols,
                                     &one, a->y, CUDA_R_32F, a->rows, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT));
    return MR_OK;
}

/* ---- router --------------------------------------------------------------------------------
 * grid (ceil(n / ROUTE_TOK)), 32 warps: the block's warps take experts e = warp, warp + nw, ...
 * (one each for M1's 32: a lone decode token's router is one block, so it must be wide); each lane
 * dots a strided slice of the gate row with the block's ROUTE_TOK token rows (the gate row is read
 * once per block), the warp sums. Then thread j < ROUTE_TOK does token j's softmax and top-k,
 * serially and in the ref's order. */
template <typename TG>
static __global__ void __launch_bounds__(ROUTE_THREADS)
    route_kernel(const TG *gate, const float *x, int n, int dim, int E, int k, int32_t *ids,
                 float *wts) {
    __shared__ float p_s[ROUTE_TOK][MR_CUDA_ROUTE_MAX_EXPERTS];
    const int t0 = blockIdx.x * ROUTE_TOK;
    const int nt = n - t0 < ROUTE_TOK ? n - t0 : ROUTE_TOK;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    for (int e = warp; e < E; e += nw) {
        const TG *g = gate + (size_t)e * (size_t)dim;
        double acc[ROUTE_TOK]; /* fp64: logits as exact as the float64 reference, so ties
                                * of the fp32 sum do not pick another expert than ref */
#pragma unroll
        for (int j = 0; j < ROUTE_TOK; j++) acc[j] = 0.0;
        /* four adjacent columns per lane and step: each warp load covers 128 columns */
        const int dim4 = dim & ~3;
        for (int c = 4 * lane; c < dim4; c += 128) {
            float gv[4];
#pragma unroll
            for (int u = 0; u < 4; u++) gv[u] = co_load(g, (size_t)(c + u));
#pragma unroll
            for (int j = 0; j < ROUTE_TOK; j++)
                if (j < nt) {
                    const float *xr = x + (size_t)(t0 + j) * (size_t)dim + c;
#pragma unroll
                    for (int u = 0; u < 4; u++) acc[j] = fma((double)xr[u], (double)gv[u], acc[j]);
                }
        }
        for (int c = dim4 + lane; c < dim; c += 32) {
            const float gv = co_load(g, (size_t)c);
#pragma unroll
            for (int j = 0; j < ROUTE_TOK; j++)
                if (j < nt)
                    acc[j] = fma((double)x[(size_t)(t0 + j) * (size_t)dim + c], (double)gv, acc[j]);
        }
#pragma unroll
        for (int j = 0; j < ROUTE_TOK; j++) {
            const double s = warp_sum_d(acc[j]);
            if (lane == 0) p_s[j][e] = (float)s;
        }
    }
    __syncthreads();
    const int j = threadIdx.x;
    if (j >= nt) return;
    float *p = p_s[j];
    const size_t t = (size_t)(t0 + j);
    float mx = -INFINITY, sum = 0.0f;
    for (int e = 0; e < E; e++) mx = p[e] > mx ? p[e] : mx;
    for (int e = 0; e < E; e++) sum += (p[e] = expf(p[e] - mx));
    for (int e = 0; e < E; e++) p[e] /= sum;
    int32_t chosen[MR_CUDA_ROUTE_MAX_K];
    float top = 0.0f;
    for (int q = 0; q < k; q++) {
        int best = -1;
        for (int e = 0; e < E; e++) {
            bool taken = false;
            for (int qq = 0; qq < q; qq++) taken |= chosen[qq] == e;
            if (!taken && (best < 0 || p[e] > p[best])) best = e;
        }
        chosen[q] = best;
        ids[t * k + q] = best;
        wts[t * k + q] = p[best];
        top += p[best];
    }
    for (int q = 0; q < k; q++) wts[t * k + q] /= top;
}

extern "C" mr_status mr_cuda_route(const mr_cuda_route_args *a, cudaStream_t st) {
    const char *fn = "mr_cuda_route";
    CO_REQUIRE(a && a->gate && a->x && a->ids && a->wts, fn, "NULL argument");
    CO_REQUIRE(a->n >= 1 && a->dim >= 1, fn, "n and dim must be >= 1");
    CO_REQUIRE(a->n_experts >= 1 && a->n_experts <= MR_CUDA_ROUTE_MAX_EXPERTS, fn,
               "n_experts must be in [1, MR_CUDA_ROUTE_MAX_EXPERTS]");
    CO_REQUIRE(a->k >= 1 && a->k <= a->n_experts && a->k <= MR_CUDA_ROUTE_MAX_K, fn,
               "k must be in [1, min(n_experts, MR_CUDA_ROUTE_MAX_K)]");
    CO_REQUIRE(a->gate_dtype == MR_DTYPE_F32 || a->gate_dtype == MR_DTYPE_BF16, fn,
               "gate dtype must be F32 or BF16");
    const unsigned blocks = (unsigned)((a->n + ROUTE_TOK - 1) / ROUTE_TOK);
    if (a->gate_dtype == MR_DTYPE_F32)
        route_kernel<float><<<blocks, ROUTE_THREADS, 0, st>>>(
            (const float *)a->gate, a->x, a->n, a->dim, a->n_experts, a->k, a->ids, a->wts);
    else
        route_kernel<__nv_bfloat16><<<blocks, ROUTE_THREADS, 0, st>>>(
            (const __nv_bfloat16 *)a->gate, a->x, a->n, a->dim, a->n_experts, a->k, a->ids, a->wts);
    MR_CUDA_CHECK_LAUNCH("route kernel launch");
    return MR_OK;
}

/* ---- greedy argmax -------------------------------------------------------------------------- */

/* (v, i) beats (bv, bi): larger value, or equal value and lower id; NaN never wins. */
__device__ static __forceinline__ bool co_better(float v, int i, float bv, int bi) {
    return v > bv || (v == bv && i < bi);
}

/* grid (n), ARGMAX_THREADS threads. */
static __global__ void argmax_kernel(const float *logits, int vocab, int32_t *ids) {
    __shared__ float bv_s[32];
    __shared__ int bi_s[32];
    const float *row = logits + (size_t)blockIdx.x * (size_t)vocab;
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (int c = threadIdx.x; c < vocab; c += blockDim.x) {
        const float v = row[c];
        if (co_better(v, c, bv, bi)) {
            bv = v;
            bi = c;
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (co_better(ov, oi, bv, bi)) {
            bv = ov;
            bi = oi;
        }
    }
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    if (lane == 0) {
        bv_s[warp] = bv;
        bi_s[warp] = bi;
    }
    __syncthreads();
    if (warp != 0) return;
    bv = lane < nw ? bv_s[lane] : -INFINITY;
    bi = lane < nw ? bi_s[lane] : INT_MAX;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (co_better(ov, oi, bv, bi)) {
            bv = ov;
            bi = oi;
        }
    }
    if (lane == 0) ids[blockIdx.x] = bi == INT_MAX ? 0 : bi;
}

extern "C" mr_status mr_cuda_argmax(const float *logits, int n, int vocab, int32_t *ids,
                                    cudaStream_t st) {
    const char *fn = "mr_cuda_argmax";
    CO_REQUIRE(logits && ids, fn, "NULL argument");
    CO_REQUIRE(n >= 1 && vocab >= 1, fn, "n and vocab must be >= 1");
    argmax_kernel<<<(unsigned)n, ARGMAX_THREADS, 0, st>>>(logits, vocab, ids);
    MR_CUDA_CHECK_LAUNCH("argmax kernel launch");
    return MR_OK;
}

/* ---- lightning state slots ------------------------------------------------------------------ */

extern "C" mr_status mr_cuda_state_copy(float *state_pool, int n_layers, size_t layer_stride,
                                        size_t slot_stride, size_t slot_floats, int src, int dst,
                                        cudaStream_t st) {
    const char *fn = "mr_cuda_state_copy";
    CO_REQUIRE(state_pool, fn, "NULL state pool");
    CO_REQUIRE(n_layers >= 1 && slot_floats >= 1, fn, "n_layers and slot_floats must be >= 1");
    CO_REQUIRE(slot_floats <= slot_stride, fn, "slot_floats exceeds slot_stride");
    CO_REQUIRE(src >= 0 && dst >= 0 && src != dst, fn, "slots must be >= 0 and different");
    CO_REQUIRE(n_layers == 1 || layer_stride >= slot_stride * (size_t)((src > dst ? src : dst) + 1),
               fn, "layer_stride is smaller than the slots it must hold");
    for (int l = 0; l < n_layers; l++) {
        float *pool = state_pool + (size_t)l * (n_layers > 1 ? layer_stride : 0);
        MR_CUDA_CHECK(cudaMemcpyAsync(pool + (size_t)dst * slot_stride,
                                      pool + (size_t)src * slot_stride, slot_floats * sizeof(float),
                                      cudaMemcpyDeviceToDevice, st));
    }
    return MR_OK;
}
