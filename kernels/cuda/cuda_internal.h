/* cuda_internal.h — the host launchers of kernels/cuda and the layouts they share.
 *
 * Every launcher takes the caller's stream, checks its preconditions, launches, checks the launch
 * and returns an mr_status; none synchronises. Kernels live in one .cu per op family:
 *   quant.cu     load-time quantise/pack, dequantise (export and the large-batch path), random fill
 *   wq_mma.cu    the expert matrix kernel for few tokens per expert (all three formats, mma.sync)
 *   wq_tile.cu   the expert matrix kernel for many tokens per expert (no dequantised copy)
 *   moe_glue.cu  gather + bf16 conversion, SwiGLU over GEMM output, gate-weighted combine
 *
 * Weight layout (all formats). A matrix with N rows (out features) and K columns (in features) is
 * stored row-major with a padded row width Kp (a multiple of the format's chunk: bf16 32, int8 64,
 * int4 128 columns) and a padded row count Np (a multiple of 32); padding holds the value 0.
 *  - bf16: 2 bytes per element.
 *  - int8: 1 byte per element, offset binary u = q + 128 (q in [-127, 127]); scale fp32 [Np] per
 *    row: w ≈ q · scale[row].
 *  - int4: 4 bits per element, offset binary u = q + 8 (q in [-8, 7]); 8 elements per 32-bit word,
 *    element p (0..7) of a word at bits 4·(p/2) + 16·(p%2), so nibbles (2r, 2r+1) turn into one
 *    bf16 pair with one mask; scale bf16 [Kp/128][Np] (group-major): w ≈ q · scale[k/128][row].
 * int8 and int4 rows are stored in tiles, not one after the other: the matrix is cut into 32-row
 * blocks and 64-byte units of each row (a 16-byte load for each of 4 lanes), and the 32 rows × 64
 * bytes of block rb, unit u form one 2 KiB tile at (rb · units + u) · 2048, row by row — so the wq
 * kernel's warp load of 8 rows × 64 bytes is 512 contiguous bytes (MR_CUDA_PACKED_OFF below).
 * The gate/up pair is one matrix W13 [2·Ip][H] (Ip = inter rounded up to 16) with rows
 * interleaved in blocks of 16: row 32b + r is W1 row 16b + r, row 32b + 16 + r is W3 row 16b + r,
 * so a 32-row block holds matching gate and up rows (fused SwiGLU) and any GEMM over W13 yields
 * interleaved columns. W2 [H][inter] keeps its row order. */
#ifndef MR_CUDA_INTERNAL_H
#define MR_CUDA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime.h>

#include "common/status.h"
#include "common/synth_stream.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { MR_CUDA_FMT_BF16 = 0, MR_CUDA_FMT_INT8 = 1, MR_CUDA_FMT_INT4 = 2 };

/* Columns per chunk (one 16-byte load per lane and row) of each format. */
static inline int mr_cuda_fmt_chunk(int fmt) {
    return fmt == MR_CUDA_FMT_BF16 ? 32 : fmt == MR_CUDA_FMT_INT8 ? 64 : 128;
}
/* Byte offset of byte b of row r in a tiled (int8 / int4) matrix of `units` 64-byte units per row.
 */
#define MR_CUDA_PACKED_OFF(units, r, b)                                                            \
    ((((size_t)(r) / 32) * (size_t)(units) + (size_t)(b) / 64) * 2048 + ((size_t)(r) % 32) * 64 +  \
     (size_t)(b) % 64)

/* Bytes of a padded row of Kp columns. */
static inline size_t mr_cuda_fmt_row_bytes(int fmt, int kp) {
    return fmt == MR_CUDA_FMT_BF16   ? (size_t)kp * 2
           : fmt == MR_CUDA_FMT_INT8 ? (size_t)kp
                                     : (size_t)kp / 2;
}
/* Bytes of the scales of a matrix of np rows and kp columns. */
static inline size_t mr_cuda_fmt_scale_bytes(int fmt, int np, int kp) {
    return fmt == MR_CUDA_FMT_BF16   ? 0
           : fmt == MR_CUDA_FMT_INT8 ? (size_t)np * 4
                                     : (size_t)np * (size_t)(kp / 128) * 2;
}
static inline int mr_cuda_round_up(int v, int m) {
    return (v + m - 1) / m * m;
}

/* One quantised (or bf16) matrix on the device. */
typedef struct mr_cuda_qmat {
    void *q;     /* [np][row_bytes] in the format's layout */
    void *scale; /* int8: float [np]; int4: bf16 [kp/128][np]; bf16: NULL */
} mr_cuda_qmat;

/* One expert's work in a small-batch launch: rows [row0, row0 + cnt) of the gathered buffers. */
typedef struct mr_cuda_job {
    mr_cuda_qmat w13, w2;
    int32_t row0, cnt;
} mr_cuda_job;

/* Row placement when quantising a source matrix into a packed one. */
enum { MR_CUDA_ROWMAP_SAME = 0, MR_CUDA_ROWMAP_GATE = 1, MR_CUDA_ROWMAP_UP = 2 };

/* Quantise src bf16 [rows][k] (row stride src_ld elements), source rows row0.., into dst (rows
 * placed by rowmap; a matrix of np rows, kp padded columns). Padding must have been zero-filled
 * (value 0 of the format: mr_cuda_fmt_zero_byte). RTN: int8 scale = absmax(row)/127, q =
 * rint(w/scale); int4 scale = bf16(absmax(group)/7), q = clamp(rint(w/scale), -8, 7). */
mr_status mr_cuda_quant_launch(int fmt, const uint16_t *src, int row0, int rows, int k, int src_ld,
                               int rowmap, mr_cuda_qmat dst, int np, int kp, cudaStream_t st);
/* The byte that fills padding (value 0) of a format. */
static inline int mr_cuda_fmt_zero_byte(int fmt) {
    return fmt == MR_CUDA_FMT_BF16 ? 0 : fmt == MR_CUDA_FMT_INT8 ? 0x80 : 0x88;
}
/* Dequantise the whole matrix (np × kp) to bf16 dst [np][kp]: bf16(q · scale). */
mr_status mr_cuda_dequant_launch(int fmt, mr_cuda_qmat src, int np, int kp, uint16_t *dst,
                                 cudaStream_t st);
/* dst[i] = bf16(element first + i of a synthetic tensor): the bits mr_synth_fill_range gives. */
mr_status mr_cuda_synth_fill_bf16(uint16_t *dst, const mr_synth_stream *st, uint64_t first,
                                  size_t n, cudaStream_t s);
/* dst[i] = bf16(scale · u_i), u_i uniform in [-1, 1) from a counter hash of (seed, i). */
mr_status mr_cuda_fill_random_bf16(uint16_t *dst, size_t n, uint64_t seed, float scale,
                                   cudaStream_t st);

/* Small-batch expert matrix kernel, one launch for all jobs.
 *   which = 0: gate/up: A[row0 + t][j] = bf16(silu(g) · u) for j < n_out (= inter), from W13
 *              (np = 2·Ip rows, kp columns) and X rows; out = A (bf16, stride ldo).
 *   which = 1: down: Y[row0 + t][r] = (W2 · a)[r] for r < n_out (= hidden), fp32, stride ldo.
 * X: bf16 [rows][ldx], columns [k_real, kp) zero; rows up to row0 + cnt + 31 readable.
 * nt (1, 2 or 4): 8·nt tokens per pass; ks (1..8): warps splitting K in each block; nsplit:
 * blocks splitting K further (split-K), allowed only when every job has cnt <= 8·nt. With
 * nsplit > 1: gpart holds n_jobs·(np/32)·nsplit·(2·nt·4·32) floats, gcount n_jobs·(np/32) ints,
 * zero before the launch (the kernel leaves them zero). Sums run in a fixed order, so a result
 * is the same on every run for given (nt, ks, nsplit). */
mr_status mr_cuda_wq_launch(int fmt, int which, int nt, int ks, int nsplit,
                            const mr_cuda_job *jobs_dev, int n_jobs, const uint16_t *x,
                            const uint16_t *x_lo, int ldx, int np, int kp, void *out,
                            uint16_t *out_lo, int ldo, int n_out, float *gpart, int *gcount,
                            cudaStream_t st);
/* Many-tokens expert matrix kernel (wq_tile.cu), one launch for all jobs, same which / x / out
 * contract as mr_cuda_wq_launch (no rows past a job are read); every job has at most
 * MR_CUDA_WQT_MAX_TOKENS tokens (the caller cuts larger experts into adjacent jobs). x_lo selects
 * split activations as there. Each output is summed by one warp in a fixed order. */
#define MR_CUDA_WQT_MAX_TOKENS 64
mr_status mr_cuda_wqt_launch(int fmt, int which, const mr_cuda_job *jobs_dev, int n_jobs,
                             const uint16_t *x, const uint16_t *x_lo, int ldx, int np, int kp,
                             void *out, uint16_t *out_lo, int ldo, int n_out, cudaStream_t st);
/* The wgmma form of the tile kernel (wq_wgmma.cu, sm_90a): same contract as mr_cuda_wqt_launch
 * for int8 / int4, jobs of at most mr_cuda_wqg_job_tokens tokens, except that x and, for which =
 * 0, the output are in the fragment column order: column c of each CK-column unit at position
 * MR_CUDA_WQG_POS(c, CK) (the gather writes it with perm_rows). Requires hidden and inter to be
 * multiples of CK. mr_cuda_wqg_available(): built for and running on compute capability 9.0. */
#define MR_CUDA_WQG_POS(c, ck)                                                                     \
    ((((c) % ((ck) / 4)) / 4) * 16 + 2 * ((c) / ((ck) / 4)) + ((c)&1) + (((c) >> 1) & 1) * 8)
static inline int mr_cuda_wqg_job_tokens(int split_act) {
    return split_act ? 64 : 128;
}
int mr_cuda_wqg_available(void);
mr_status mr_cuda_wqg_launch(int fmt, int which, const mr_cuda_job *jobs_dev, int n_jobs,
                             const uint16_t *x, const uint16_t *x_lo, int ldx, int np, int kp,
                             void *out, uint16_t *out_lo, int ldo, int n_out, cudaStream_t st);
/* Split activations: with x_lo != NULL the activation is x + x_lo (x_lo = bf16(x_f32 - x), the
 * same layout as x) and each mma runs twice, so products with the bf16 weights are exact and
 * accumulate in fp32; gate/up then also writes a_lo = bf16(a - bf16(a)) to out_lo (stride ldo).
 * Resident blocks per multiprocessor of one wq kernel instance with ks warps: */
mr_status mr_cuda_wq_occupancy(int fmt, int which, int nt, int ks, int split_act,
                               int *blocks_per_sm);

/* xg[r][c] = bf16(x[src[r]][c]) for r < rows, c < hidden; x fp32 [*][hidden], xg stride ldx;
 * with xg_lo != NULL also xg_lo[r][c] = bf16(x - xg) (split activations). Rows below perm_rows
 * are written in the wgmma kernel's column order for units of perm_ck columns (hidden a multiple
 * of perm_ck): column c at (c / perm_ck) · perm_ck + MR_CUDA_WQG_POS(c % perm_ck, perm_ck). */
mr_status mr_cuda_gather_launch(const float *x, const int32_t *src, int rows, int hidden,
                                uint16_t *xg, uint16_t *xg_lo, int ldx, int perm_rows, int perm_ck,
                                cudaStream_t st);
/* a[r][j] = bf16(silu(g) · u) for r in [r0, r1), j < inter, where g = G[r][32(j/16) + j%16] and
 * u = the element 16 columns later (interleaved W13 rows); G bf16 (g_f32 = 0) or fp32 (1),
 * stride ldg; a stride lda; with a_lo != NULL also a_lo = bf16(silu(g)·u - a). */
mr_status mr_cuda_swiglu_launch(const void *g, int g_f32, int ldg, int r0, int r1, int inter,
                                uint16_t *a, uint16_t *a_lo, int lda, cudaStream_t st);
/* The GEMV kernel of coord_ops.h (gemv.cu) for a bf16 expert with n ≤ MR_CUDA_GEMV_KERNEL_MAX_N
 * rows: y[t][r] = Σ_c W[r][c] · x_t[c] for r < rows, c < cols, in fp32, W bf16 [rows][ldw]; x_t is
 * either fp32 row x_idx[t] of x (x_idx device memory, ldx a multiple of 4) or, with x NULL, the sum
 * of bf16 rows t of x_hi and x_lo (ldx a multiple of 8); y [n][ldy]. cols and ldw multiples of 8,
 * every pointer 16-byte aligned. */
mr_status mr_cuda_expert_gemv_launch(const uint16_t *w, int ldw, int rows, int cols, int n,
                                     const float *x, const int32_t *x_idx, const uint16_t *x_hi,
                                     const uint16_t *x_lo, int ldx, float *y, int ldy,
                                     cudaStream_t st);
/* out[t][c] = Σ_j wts[t][j] · Y[inv[t][j]][c] in j order, skipping inv < 0. Y rows below rows16
 * come from y16 (bf16), the others from y32 (fp32); both stride hidden; out fp32 [n][hidden]. */
mr_status mr_cuda_combine_launch(const float *y32, const uint16_t *y16, int rows16,
                                 const int32_t *inv, const float *wts, int n, int k, int hidden,
                                 float *out, cudaStream_t st);

#ifdef __cplusplus
}
#endif

#endif
