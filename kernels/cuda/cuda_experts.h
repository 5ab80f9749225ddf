/* cuda_experts.h — the expert FFNs a worker holds, on one CUDA GPU, in bf16, int8 or int4.
 *
 *   mr_cuda_experts_params p = {.device = 0, .fmt = MR_CUDA_WFMT_INT4, .n_layers = L,
 *                               .n_experts = E, .hidden = H, .inter = I, .top_k = 2,
 *                               .max_tokens = 4096, .held = mask};
 *   mr_cuda_experts *cx;
 *   MR_CHECK(mr_cuda_experts_create(&p, &cx));        // sizes and allocates everything, or refuses
 *   MR_CHECK(mr_cuda_experts_load(cx, l, set, progress, user));   // bf16/f32 host → device format
 *   MR_CHECK(mr_cuda_experts_run(cx, l, x, n, k, ids, wts, out));  // the backend `moe` op
 *   mr_cuda_experts_destroy(cx);
 *
 * Semantics of run (= mr_backend_ops.moe): out[t] = Σ_j wts[t][j] · E_ids[t][j](x[t]) summed in
 * slot order j, skipping ids < 0 and experts not held; out is overwritten (zero if nothing is
 * held). E(x) = W2 · (silu(W1 x) ⊙ W3 x). Numerics: activations are rounded to bf16, the
 * intermediate silu(g)·u is bf16 (or split in two bf16 parts, act = SPLIT), accumulation is fp32,
 * expert outputs and out are fp32.
 *
 * Formats (weights quantised once, at load, on the GPU, round to nearest):
 *   BF16  as stored;
 *   INT8  per output channel, scale = absmax/127 (fp32);
 *   INT4  groups of 128 input columns, scale = bf16(absmax/7), q in [-8, 7].
 *
 * Execution of one call: one host→device copy of the routing metadata (and of x for _run), a
 * fixed sequence of launches on the executor's stream (gather; for experts with at most
 * small_max routed tokens one fused gate/up+SwiGLU and one down launch of the wq kernel; for the
 * others, by `gemm`, one gate/up and one down launch of the tile kernel, or cuBLAS GEMMs over bf16
 * weights — dequantised per expert on a second stream for int8/int4, double-buffered — ; the
 * combine), and for _run one device→host copy and one synchronisation.
 * No allocation after create. Not thread-safe: one thread drives one executor. */
#ifndef MR_CUDA_EXPERTS_H
#define MR_CUDA_EXPERTS_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mr_cuda_experts mr_cuda_experts;

typedef enum mr_cuda_wfmt {
    MR_CUDA_WFMT_BF16 = 0,
    MR_CUDA_WFMT_INT8 = 1,
    MR_CUDA_WFMT_INT4 = 2,
} mr_cuda_wfmt;

/* How experts above small_max tokens run their matrix products. */
typedef enum mr_cuda_gemm {
    MR_CUDA_GEMM_PER_EXPERT = 0, /* one cublasGemmEx per expert and matrix (int8/int4: on a
                                    dequantised bf16 copy of the expert) */
    MR_CUDA_GEMM_GROUPED = 1,    /* cublasGemmGroupedBatchedEx over the experts (bf16 format,
                                    bf16 activations; otherwise as PER_EXPERT) */
    MR_CUDA_GEMM_TILED = 2,      /* the tile kernel (wq_tile.cu, mma.sync): weights dequantised
                                    in registers, no bf16 copy; every format */
    MR_CUDA_GEMM_WGMMA = 3,      /* its wgmma form (wq_wgmma.cu) for int8/int4 on compute
                                    capability 9.0 when hidden and inter are multiples of the
                                    format's unit; otherwise as TILED */
} mr_cuda_gemm;

/* Activation precision. BF16: x and the SwiGLU intermediate are rounded to bf16 (one tensor-core
 * pass, the fastest). SPLIT: each is carried as two bf16 parts hi + lo (hi = bf16(v),
 * lo = bf16(v - hi), ~16 significant bits) and every matrix product runs on both, so with bf16
 * weights the result is fp32-accurate (products exact, fp32 accumulation): twice the tensor work,
 * the same weight bytes. */
typedef enum mr_cuda_act {
    MR_CUDA_ACT_BF16 = 0,
    MR_CUDA_ACT_SPLIT = 1,
} mr_cuda_act;

typedef struct mr_cuda_experts_params {
    int device; /* CUDA device ordinal */
    int fmt;    /* mr_cuda_wfmt */
    int n_layers, n_experts, hidden, inter, top_k;
    int max_tokens;            /* most tokens in one call */
    const unsigned char *held; /* [n_layers][n_experts], 1 = held; NULL = all held (copied) */
    int small_max; /* experts with more routed tokens use the GEMM path; < 0: the format default */
    int gemm;      /* mr_cuda_gemm */
    int act;       /* mr_cuda_act; an executor created SPLIT can also run BF16 (set_act) */
} mr_cuda_experts_params;

/* Device memory an executor needs, by part (bytes). Computed without touching a GPU. */
typedef struct mr_cuda_mem_plan {
    size_t expert_bytes;    /* one expert: W1, W3, W2 (padded) and their scales */
    int n_held;             /* experts held over all layers */
    size_t weights_bytes;   /* n_held · expert_bytes */
    size_t workspace_bytes; /* inputs, gathered activations, intermediates, outputs, metadata */
    size_t scratch_bytes;   /* int8/int4: two dequantised bf16 experts; load staging */
    size_t blas_bytes;      /* cuBLAS workspace */
    size_t total_bytes;     /* everything above */
    size_t host_pinned_bytes;
} mr_cuda_mem_plan;

/* Default small_max of a format (the wq kernel below it, GEMMs above), from measurement. */
int mr_cuda_experts_default_small_max(int fmt);
const char *mr_cuda_wfmt_name(int fmt);
/* Parse "bf16" / "int8" / "int4"; -1 if unknown. */
int mr_cuda_wfmt_parse(const char *s);

mr_status mr_cuda_experts_plan(const mr_cuda_experts_params *p, mr_cuda_mem_plan *out);

/* Sizes and allocates everything from p; refuses (MR_ERR_NOMEM, logging what is needed and what
 * is free) when the plan does not fit the device's free memory. */
mr_status mr_cuda_experts_create(const mr_cuda_experts_params *p, mr_cuda_experts **out);
void mr_cuda_experts_destroy(mr_cuda_experts *cx);

typedef void (*mr_cuda_load_progress_fn)(void *user, int done, int total, size_t bytes);
/* Upload (and quantise) the held experts of one layer from host matrices (bf16 or f32); every
 * expert the mask holds must be present in set. progress (may be NULL) after each expert. */
mr_status mr_cuda_experts_load(mr_cuda_experts *cx, int layer, const mr_expert_set *set,
                               mr_cuda_load_progress_fn progress, void *user);
/* Same for one expert from device bf16 matrices: w1, w3 [inter][hidden], w2 [hidden][inter]. */
mr_status mr_cuda_experts_load_dev(mr_cuda_experts *cx, int layer, int expert, const uint16_t *w1,
                                   const uint16_t *w3, const uint16_t *w2);

/* The moe op on host arrays: x [n][hidden] f32, ids/wts [n][k], out [n][hidden] f32. Returns
 * when out is written. k <= top_k, n <= max_tokens. */
mr_status mr_cuda_experts_run(mr_cuda_experts *cx, int layer, const float *x, int n, int k,
                              const int32_t *ids, const float *wts, float *out);
/* The same with x and out of element type io (MR_DTYPE_F32 or MR_DTYPE_BF16), converted on the
 * device: bf16 x is widened exactly, the f32 result rounded to bf16 (nearest even). */
mr_status mr_cuda_experts_run_io(mr_cuda_experts *cx, int layer, const void *x, int n, int k,
                                 const int32_t *ids, const float *wts, void *out, mr_dtype io);
/* The same on device x and out, enqueued on the executor's stream without waiting (ids and wts
 * stay on the host and are read before return). */
mr_status mr_cuda_experts_enqueue(mr_cuda_experts *cx, int layer, const float *x_dev, int n, int k,
                                  const int32_t *ids, const float *wts, float *out_dev);
mr_status mr_cuda_experts_sync(mr_cuda_experts *cx);
/* The executor's stream (a cudaStream_t) for callers that order their own work after it. */
void *mr_cuda_experts_stream(mr_cuda_experts *cx);

/* Tuning and tests: change the path threshold and GEMM mode of later calls. */
void mr_cuda_experts_set_path(mr_cuda_experts *cx, int small_max, int gemm);
/* Tuning: the wq kernel's launch split for later calls — warps per block at most (1, 2, 4, 8),
 * units per warp at least, waves of blocks aimed at; 0 leaves that one to the executor's rule. */
void mr_cuda_experts_set_wq_split(mr_cuda_experts *cx, int waves, int ks, int min_units);
/* Change the activation precision of later calls; SPLIT needs an executor created SPLIT. */
mr_status mr_cuda_experts_set_act(mr_cuda_experts *cx, int act);

/* Tests: the device weights of one expert, dequantised to bf16 as the GEMM path sees them
 * (bf16(q · scale)), in the source layouts w1, w3 [inter][hidden], w2 [hidden][inter]. Allocates
 * a temporary device buffer. */
mr_status mr_cuda_experts_export(mr_cuda_experts *cx, int layer, int expert, uint16_t *w1,
                                 uint16_t *w3, uint16_t *w2);

#ifdef __cplusplus
}
#endif

#endif
