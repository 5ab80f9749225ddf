/* coord_ops.h — the coordinator's non-attention ops on one CUDA GPU, on device pointers.
 *
 *   // start-up: one cuBLAS handle per stream (cublasSetWorkspace on it before graph capture)
 *   cublasCreate(&blas);
 *   // per step, on the caller's stream
 *   MR_CHECK(mr_cuda_embed(&(mr_cuda_embed_args){...}, st));        // ids → fp32 rows
 *   MR_CHECK(mr_cuda_rmsnorm(&(mr_cuda_rmsnorm_args){...}, st));    // optionally α·r + β·y first
 *   MR_CHECK(mr_cuda_linear(blas, &(mr_cuda_linear_args){...}, st)); // y = x · Wᵀ
 *   MR_CHECK(mr_cuda_norm_gate(&(mr_cuda_norm_gate_args){...}, st));
 *   MR_CHECK(mr_cuda_route(&(mr_cuda_route_args){...}, st));        // fp32 router, top-k
 *   MR_CHECK(mr_cuda_argmax(logits, n, vocab, ids, st));            // greedy tokens
 *
 * The maths is that of the backend ops of the same names (kernels/backend.h, spec §3–§6);
 * kernels/ref is the oracle (tests/gpu/test_cuda_coord_ops.c). Differences from the ref:
 *  - row reductions (RMS sums, dot products) run as parallel trees, not left to right, so fp32
 *    results differ from the ref by rounding only (normalised error ~1e-7);
 *  - linear with bf16 weights rounds the fp32 activations to bf16 first (or takes bf16
 *    activations), multiplies on tensor cores and accumulates in fp32 (relative error ~4e-3 per
 *    output from the activation rounding); with fp32 weights it is an fp32 GEMM (no TF32).
 *
 * Every launcher checks its arguments (MR_ERR_INVALID, with the reason logged under MR_LOG_GPU),
 * enqueues on the caller's stream, checks the launch, and neither synchronises nor allocates.
 * Arrays marked "host" are read during the call only; every other pointer is device memory.
 * Element types: activations fp32 row-major [n][width]; a weight matrix is nn.Linear-shaped
 * [rows = out features][cols = in features], row-major; bf16 is passed as uint16_t bits. */
#ifndef MR_CUDA_COORD_OPS_H
#define MR_CUDA_COORD_OPS_H

#include <stddef.h>
#include <stdint.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "common/dtype.h"
#include "common/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- embedding -------------------------------------------------------------------------------
 * out[t] = fp32(table[ids[t]]) for t < n. table [vocab][dim], F32 or BF16. An id outside
 * [0, vocab) (the caller validates ids; this is a device-side guard) writes a row of NaN. */
typedef struct mr_cuda_embed_args {
    int n, vocab, dim;
    mr_dtype table_dtype; /* MR_DTYPE_F32 or MR_DTYPE_BF16 */
    const void *table;    /* [vocab][dim] */
    const int32_t *ids;   /* [n] */
    float *out;           /* [n][dim] */
} mr_cuda_embed_args;

mr_status mr_cuda_embed(const mr_cuda_embed_args *a, cudaStream_t st);

/* ---- RMSNorm, with the postnorm residual fused in front -------------------------------------
 * Plain (add == NULL):  y[t] = x[t] / sqrt(mean(x[t]²) + eps) ⊙ w.
 * Fused (add != NULL):  v[t] = α·x[t] + β·add[t] (fp32, rounded like the ref's scale_add:
 *                       each product rounded, then the sum), written to x_out[t]; then
 *                       y[t] = v[t] / sqrt(mean(v[t]²) + eps) ⊙ w.
 * This is the coordinator's "x ← α·r + β·Attn(h); h ← RMS(x)" (coordinator/model.c): pass
 * x = r (the model's x, or h with postnorm), add = the sub-block output, x_out = the model's x,
 * y = h. Any of y, x_out may alias x or add (each element is read and written by one thread),
 * but y must not alias x_out. w: [dim], F32 or BF16. */
typedef struct mr_cuda_rmsnorm_args {
    int n, dim;
    float eps;
    mr_dtype w_dtype; /* MR_DTYPE_F32 or MR_DTYPE_BF16 */
    const void *w;    /* [dim] */
    const float *x;   /* [n][dim] */
    float *y;         /* [n][dim] */
    /* optional fused residual (add == NULL: none; then x_out, alpha, beta are ignored) */
    const float *add; /* [n][dim] */
    float alpha, beta;
    float *x_out; /* [n][dim], required with add */
} mr_cuda_rmsnorm_args;

mr_status mr_cuda_rmsnorm(const mr_cuda_rmsnorm_args *a, cudaStream_t st);

/* out[i] = a·h[i] + b·y[i] for i < n (each product rounded, then the sum: bit-identical to the
 * ref's scale_add); out may alias h or y. */
mr_status mr_cuda_scale_add(const float *h, const float *y, float a, float b, size_t n, float *out,
                            cudaStream_t st);

/* ---- lightning output norm and gate ----------------------------------------------------------
 * out[t] = sigmoid(gate[t]) ⊙ (o[t] / sqrt(mean(o[t]²) + eps) ⊙ w), width dim (8192 in M1);
 * out may alias o or gate. w: [dim], F32 or BF16. */
typedef struct mr_cuda_norm_gate_args {
    int n, dim;
    float eps;
    mr_dtype w_dtype;
    const void *w;     /* [dim] */
    const float *o;    /* [n][dim] */
    const float *gate; /* [n][dim] */
    float *out;        /* [n][dim] */
} mr_cuda_norm_gate_args;

mr_status mr_cuda_norm_gate(const mr_cuda_norm_gate_args *a, cudaStream_t st);

/* ---- dense projection ------------------------------------------------------------------------
 * y[n][rows] = x[n][cols] · Wᵀ with fp32 accumulation and fp32 output, through cuBLAS on the
 * given handle (its stream is set to st; its pointer mode must be host, the default).
 *  - w BF16, x F32: x is first rounded to bf16 into x_bf16 (scratch, [n][cols], required), then
 *    a bf16 × bf16 → fp32 GEMM on tensor cores (or split in two parts: x_lo_bf16 below);
 *  - w BF16, x BF16: the GEMM directly (x_bf16 unused);
 *  - w F32, x F32: an fp32 GEMM (CUBLAS_COMPUTE_32F_PEDANTIC: no TF32, no reduced precision) —
 *    the fp32 LM head and ref-exact checks.
 *  - w BF16, x F32 and n ≤ MR_CUDA_GEMV_MAX_N (decode), cols a multiple of 8, W and x 16-byte
 *    aligned: the GEMV kernel instead (gemv.cu): fp32 activations times widened bf16 weights in
 *    fp32 FMAs, W read once — fp32-accurate like the split below; x_bf16 / x_lo_bf16 are then
 *    unused (no_gemv = 1 forces the cuBLAS route, for comparisons).
 * y must not alias x. Row pointers need no special alignment beyond the element size, but
 * 16-byte aligned x, W, y with cols and rows multiples of 8 keep cuBLAS on its fast kernels. */
typedef struct mr_cuda_linear_args {
    int n, rows, cols;
    mr_dtype w_dtype; /* MR_DTYPE_BF16 or MR_DTYPE_F32 */
    const void *w;    /* [rows][cols] */
    mr_dtype x_dtype; /* MR_DTYPE_F32, or MR_DTYPE_BF16 with bf16 weights */
    const void *x;    /* [n][cols] */
    uint16_t *x_bf16; /* scratch [n][cols] bf16: needed for w BF16 with x F32 */
    float *y;         /* [n][rows] */
    /* Optional, w BF16 with x F32: scratch [n][cols] for the low part. Given, x is split into
     * hi = bf16(x) and lo = bf16(x − hi) and y = W·hi + W·lo (two GEMMs): fp32-accurate activations
     * (|x − hi − lo| ≤ 2⁻¹⁶|x|) at twice the tensor work — the accuracy the CPU oracle has. */
    uint16_t *x_lo_bf16;
    /* Optional with the split: scratch of y2_floats floats. When x_lo_bf16 = x_bf16 + n·cols and
     * 2·n·rows ≤ y2_floats, the two parts go through ONE GEMM of 2n columns into y2 (W read
     * once), then y = y2[0..n) + y2[n..2n); else two GEMMs (W read twice). */
    float *y2;
    size_t y2_floats;
    int no_gemv; /* 1: never the GEMV kernel (benchmarks compare the routes) */
} mr_cuda_linear_args;

mr_status mr_cuda_linear(cublasHandle_t blas, const mr_cuda_linear_args *a, cudaStream_t st);

/* The arguments of a projection of fp32 x with split activations, as the backends lay them out:
 * xb2 scratch [2n][cols] bf16 (hi rows, then lo rows; NULL for fp32 weights), y2 scratch of
 * y2_floats floats for the stacked GEMM (NULL: two GEMMs). */
mr_cuda_linear_args mr_cuda_linear_split_args(int n, int rows, int cols, mr_dtype w_dtype,
                                              const void *w, const float *x, uint16_t *xb2,
                                              float *y, float *y2, size_t y2_floats);

/* Most tokens the GEMV kernel takes, and the most for which linear picks it (measured: past it
 * the stacked GEMM streams the weights faster; docs/performance.md). */
#define MR_CUDA_GEMV_KERNEL_MAX_N 8
#define MR_CUDA_GEMV_MAX_N        2
/* 1 when mr_cuda_gemv_bf16 accepts these arguments (n ≤ MR_CUDA_GEMV_KERNEL_MAX_N). */
int mr_cuda_gemv_supported(int n, int cols, const void *w, const void *x);
/* y[n][rows] = x[n][cols] · Wᵀ, W bf16 [rows][cols], x and y fp32 (see mr_cuda_linear). */
mr_status mr_cuda_gemv_bf16(const uint16_t *w, const float *x, int n, int rows, int cols, float *y,
                            cudaStream_t st);

/* dst[i] = bf16(src[i]) (round to nearest even, NaN stays NaN) for i < n. */
mr_status mr_cuda_f32_to_bf16(const float *src, size_t n, uint16_t *dst, cudaStream_t st);
/* dst[i] = f32(src[i]) (exact) for i < n. */
mr_status mr_cuda_bf16_to_f32(const uint16_t *src, size_t n, float *dst, cudaStream_t st);

/* ---- router ----------------------------------------------------------------------------------
 * Per token: logits = x[t] · gateᵀ in fp32 (gate [n_experts][dim], F32 or BF16, widened to fp32),
 * softmax, top-k (strictly greater wins: ties go to the lower expert id, as in the ref),
 * renormalised over the k chosen. ids [n][k] in descending probability, wts [n][k].
 * n_experts <= MR_CUDA_ROUTE_MAX_EXPERTS, 1 <= k <= min(n_experts, MR_CUDA_ROUTE_MAX_K). */
enum { MR_CUDA_ROUTE_MAX_EXPERTS = 256, MR_CUDA_ROUTE_MAX_K = 8 };

typedef struct mr_cuda_route_args {
    int n, dim, n_experts, k;
    mr_dtype gate_dtype; /* MR_DTYPE_F32 (M1's routers) or MR_DTYPE_BF16 */
    const void *gate;    /* [n_experts][dim] */
    const float *x;      /* [n][dim] */
    int32_t *ids;        /* [n][k] */
    float *wts;          /* [n][k] */
} mr_cuda_route_args;

mr_status mr_cuda_route(const mr_cuda_route_args *a, cudaStream_t st);

/* ---- token selection -------------------------------------------------------------------------
 * Greedy: ids[t] = argmax_v logits[t][v] over v < vocab; ties go to the lower id; NaN entries are
 * never chosen (a row of only NaN gives id 0). logits [n][vocab] fp32, ids [n] int32. */
mr_status mr_cuda_argmax(const float *logits, int n, int vocab, int32_t *ids, cudaStream_t st);

/* ---- lightning state slots -------------------------------------------------------------------
 * Copy slot src to slot dst in each of n_layers state pools laid out layer_stride floats apart
 * (pool of layer l = state_pool + l · layer_stride; slot s of it = + s · slot_stride; a slot
 * holds slot_floats = H·d·d floats): prefix reuse starts a sequence from a cached state.
 * src != dst; slot_floats <= slot_stride; layer_stride is ignored when n_layers == 1. */
mr_status mr_cuda_state_copy(float *state_pool, int n_layers, size_t layer_stride,
                             size_t slot_stride, size_t slot_floats, int src, int dst,
                             cudaStream_t st);

#ifdef __cplusplus
}
#endif

#endif
