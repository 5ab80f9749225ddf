/* test_cuda_coord_ops — the coordinator's CUDA ops (kernels/cuda/coord_ops.h) against kernels/ref's
 * embed, rmsnorm, scale_add, norm_gate, linear and route ops (and argmax against the sampler's
 * greedy rule: the lowest id of the maximum), on fresh random inputs (fixed seeds).
 *
 * Error measure: normalised L2 over the whole output, ‖cuda − ref‖ / ‖ref‖; outputs are poisoned
 * (NaN) before every call, so an element left unwritten fails. Tolerances, and why:
 *   embed (a gather)                                             exact
 *   scale_add (each product rounded, then the sum, like the ref) TOL_EXACT 1e-7
 *   rmsnorm, fused residual, norm_gate                           TOL_NORM  4e-6: the ref sums x²
 *     left to right in fp32 (relative error ~ε·√(dim/3) ≈ 1.6e-6 at dim 6144), the GPU as a tree
 *   linear with fp32 weights (fp32 GEMM, no TF32)                TOL_DOT   2e-5: the ref's dot
 *     products run left to right over K (error ~ε·√K ≈ 5e-6 relative at K = 8192)
 *   linear with bf16 weights (x rounded to bf16, fp32 accumulate) TOL_BF16 1e-2 (measured ~2e-3:
 *     the bf16 rounding of x, 2^-9 relative, averaged over K)
 *   route: ids identical and weights within TOL_DOT, except for tokens whose top-(k+1)
 *     probabilities (computed here in double) lie within 1e-6 of each other (a near-tie may fall
 *     either way); the number of such tokens is printed
 *   argmax: identical ids (planted ties: the lower id; a NaN entry: never chosen)
 * Shapes: small (hidden 64, widths that are not multiples of 32 or 8) and the real ones of
 * MiniMax-M1 (hidden 6144, qkv 64×3×128 = 24576, gate/inner 8192, 32 experts top-2, vocab 200064
 * for argmax); token counts 1, 3, 37, 257; in-place variants the coordinator uses (rmsnorm y = x,
 * the fused residual with and without postnorm aliasing, norm_gate out = o); bf16 and fp32
 * weights and tables; argument checks (MR_ERR_INVALID); the state slot copy.
 * Exit 77 (ctest SKIP) without a CUDA device; `--probe [N]` only answers that (77 with fewer than N
 * devices); `--quick` skips the
 * real-size GEMMs. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "common/dtype.h"
#include "common/log.h"
#include "common/rng.h"
#include "kernels/backend.h"
#include "kernels/cuda/coord_ops.h"
#include "tests/gpu/gpu_check.h"

#define TOL_EXACT 1e-7
#define TOL_NORM  4e-6
#define TOL_DOT   2e-5
#define TOL_BF16  1e-2

static uint64_t g_rng = 0xc00d0b5eedull;
static int g_fail = 0;
static mr_backend *g_ref;
static cudaStream_t g_st;
static cublasHandle_t g_blas;

static float urand(void) {
    return mr_rng_uniform_pm1(&g_rng);
}

/* A device buffer of n floats filled with NaN (0xff bytes). */
static float *dpoison(size_t n) {
    float *d = dmalloc(n * sizeof(float));
    CK(cudaMemset(d, 0xff, n * sizeof(float)));
    return d;
}

static double nerr(const float *got, const float *ref, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) return INFINITY;
        const double d = (double)got[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * (double)ref[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

static void check(const char *what, double err, double tol) {
    const int ok = err <= tol;
    printf("  %-62s err %.3e  (tol %.0e)%s\n", what, err, tol, ok ? "" : "  FAIL");
    if (!ok) g_fail = 1;
}

static void check_true(const char *what, int ok) {
    printf("  %-62s %s\n", what, ok ? "ok" : "FAIL");
    if (!ok) g_fail = 1;
}

/* Random values in [-amp, amp); with bf16 set, rounded to bf16 (what the device stores). */
static void fill(float *x, size_t n, float amp, int bf16) {
    for (size_t i = 0; i < n; i++) {
        x[i] = amp * urand();
        if (bf16) x[i] = mr_bf16_to_f32(mr_f32_to_bf16(x[i]));
    }
}

/* Device copy of x as fp32 or bf16. */
static void *upload_as(const float *x, size_t n, int bf16) {
    if (!bf16) return upload(x, n * sizeof(float));
    uint16_t *h = xmalloc(n * 2);
    for (size_t i = 0; i < n; i++) h[i] = mr_f32_to_bf16(x[i]);
    void *d = upload(h, n * 2);
    free(h);
    return d;
}

/* Host bf16 copy of x (for the ref's bf16 matrices). */
static uint16_t *to_bf16(const float *x, size_t n) {
    uint16_t *h = xmalloc(n * 2);
    for (size_t i = 0; i < n; i++) h[i] = mr_f32_to_bf16(x[i]);
    return h;
}

static int n_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 32 ? 32 : (int)n;
}

/* ---- embed ---------------------------------------------------------------------------------- */

static void test_embed(int vocab, int dim, int n, int bf16) {
    char what[128];
    float *table = xmalloc((size_t)vocab * dim * sizeof(float));
    fill(table, (size_t)vocab * dim, 2.0f, bf16);
    uint16_t *tb = bf16 ? to_bf16(table, (size_t)vocab * dim) : NULL;
    int32_t *ids = xmalloc((size_t)(n + 1) * sizeof *ids);
    for (int t = 0; t < n; t++) ids[t] = (int32_t)(mr_splitmix64(&g_rng) % (uint64_t)vocab);
    ids[0] = vocab - 1; /* the last row */
    ids[n] = vocab;     /* one past the table: a NaN row */
    mr_matrix m = {bf16 ? (const void *)tb : table, bf16 ? MR_DTYPE_BF16 : MR_DTYPE_F32, vocab,
                   dim};
    float *ref = xmalloc((size_t)n * dim * sizeof(float));
    float *got = xmalloc((size_t)(n + 1) * dim * sizeof(float));
    g_ref->ops->embed(g_ref, &m, ids, n, ref);
    void *d_table = upload_as(table, (size_t)vocab * dim, bf16);
    int32_t *d_ids = upload(ids, (size_t)(n + 1) * sizeof *ids);
    float *d_out = dpoison((size_t)(n + 1) * dim);
    mr_cuda_embed_args a = {n + 1,   vocab, dim,  bf16 ? MR_DTYPE_BF16 : MR_DTYPE_F32,
                            d_table, d_ids, d_out};
    CM(mr_cuda_embed(&a, g_st));
    download(got, d_out, (size_t)(n + 1) * dim * sizeof(float));
    int nan_row = 1;
    for (int c = 0; c < dim; c++) nan_row &= isnan(got[(size_t)n * dim + c]);
    snprintf(what, sizeof what, "embed %s vocab %d dim %d n %d (+ an id out of range: NaN row)",
             bf16 ? "bf16" : "f32", vocab, dim, n);
    check_true(what, memcmp(got, ref, (size_t)n * dim * sizeof(float)) == 0 && nan_row);
    cudaFree(d_table);
    cudaFree(d_ids);
    cudaFree(d_out);
    free(table);
    free(tb);
    free(ids);
    free(ref);
    free(got);
}

/* ---- rmsnorm (+ fused residual), scale_add, norm_gate ---------------------------------------- */

/* The coordinator's aliasing patterns of the fused residual (coordinator/model.c):
 *   NONE:     separate buffers;
 *   RESID:    x ← α·x + β·y; h ← RMS(x)     (x_out = x, y = h)
 *   POSTNORM: x ← α·h + β·y; h ← RMS(x)     (x = h = y, x_out = the model's x) */
enum { ALIAS_NONE, ALIAS_RESID, ALIAS_POSTNORM };

static void test_rmsnorm(int n, int dim, int bf16w, int fused, int alias) {
    char what[160];
    const size_t N = (size_t)n * dim;
    const float eps = 1e-6f, alpha = 0.75f, beta = 1.3125f;
    float *w = xmalloc((size_t)dim * sizeof(float)), *x = xmalloc(N * sizeof(float));
    float *add = xmalloc(N * sizeof(float)), *res = xmalloc(N * sizeof(float));
    float *ref_y = xmalloc(N * sizeof(float)), *got_y = xmalloc(N * sizeof(float));
    float *got_x = xmalloc(N * sizeof(float));
    fill(w, (size_t)dim, 1.5f, bf16w);
    fill(x, N, 3.0f, 0);
    fill(add, N, 2.0f, 0);
    /* ref: scale_add then rmsnorm, as the model does */
    const float *src = x;
    if (fused) {
        g_ref->ops->scale_add(g_ref, x, add, alpha, beta, N, res);
        src = res;
    }
    g_ref->ops->rmsnorm(g_ref, src, w, n, dim, eps, ref_y);

    void *d_w = upload_as(w, (size_t)dim, bf16w);
    float *d_x = upload(x, N * sizeof(float)), *d_add = upload(add, N * sizeof(float));
    float *d_y = NULL, *d_xo = NULL;
    mr_cuda_rmsnorm_args a = {.n = n,
                              .dim = dim,
                              .eps = eps,
                              .w_dtype = bf16w ? MR_DTYPE_BF16 : MR_DTYPE_F32,
                              .w = d_w,
                              .x = d_x};
    if (fused) {
        a.add = d_add;
        a.alpha = alpha;
        a.beta = beta;
    }
    if (!fused) {
        d_y = alias == ALIAS_NONE ? dpoison(N) : d_x; /* in place: y = x */
        a.y = d_y;
    } else if (alias == ALIAS_NONE) {
        a.y = d_y = dpoison(N);
        a.x_out = d_xo = dpoison(N);
    } else if (alias == ALIAS_RESID) {
        a.x_out = d_xo = d_x;
        a.y = d_y = dpoison(N);
    } else {
        a.y = d_y = d_x;
        a.x_out = d_xo = dpoison(N);
    }
    CM(mr_cuda_rmsnorm(&a, g_st));
    download(got_y, d_y, N * sizeof(float));
    static const char *alias_name[] = {"separate", "x_out = x", "y = x (postnorm)"};
    snprintf(what, sizeof what, "rmsnorm %s w n %d dim %d %s%s", bf16w ? "bf16" : "f32", n, dim,
             fused ? "fused residual, " : "",
             fused   ? alias_name[alias]
             : alias ? "y = x"
                     : "");
    check(what, nerr(got_y, ref_y, N), TOL_NORM);
    if (fused) {
        download(got_x, d_xo, N * sizeof(float));
        snprintf(what, sizeof what, "  residual α·x + β·add of that call");
        check(what, nerr(got_x, res, N), TOL_EXACT);
    }
    if (d_y != d_x) cudaFree(d_y);
    if (d_xo && d_xo != d_x) cudaFree(d_xo);
    cudaFree(d_w);
    cudaFree(d_x);
    cudaFree(d_add);
    free(w);
    free(x);
    free(add);
    free(res);
    free(ref_y);
    free(got_y);
    free(got_x);
}

static void test_scale_add(size_t n) {
    char what[128];
    float *h = xmalloc(n * sizeof(float)), *y = xmalloc(n * sizeof(float));
    float *ref = xmalloc(n * sizeof(float)), *got = xmalloc(n * sizeof(float));
    fill(h, n, 4.0f, 0);
    fill(y, n, 4.0f, 0);
    const float a = 0.6f, b = 1.7f;
    g_ref->ops->scale_add(g_ref, h, y, a, b, n, ref);
    float *d_h = upload(h, n * sizeof(float)), *d_y = upload(y, n * sizeof(float));
    CM(mr_cuda_scale_add(d_h, d_y, a, b, n, d_h, g_st)); /* out = h */
    download(got, d_h, n * sizeof(float));
    snprintf(what, sizeof what, "scale_add n %zu (out = h)", n);
    check(what, nerr(got, ref, n), TOL_EXACT);
    cudaFree(d_h);
    cudaFree(d_y);
    free(h);
    free(y);
    free(ref);
    free(got);
}

static void test_norm_gate(int n, int dim, int bf16w, int in_place) {
    char what[128];
    const size_t N = (size_t)n * dim;
    const float eps = 1e-5f;
    float *w = xmalloc((size_t)dim * sizeof(float)), *o = xmalloc(N * sizeof(float));
    float *g = xmalloc(N * sizeof(float)), *ref = xmalloc(N * sizeof(float));
    float *got = xmalloc(N * sizeof(float));
    fill(w, (size_t)dim, 1.5f, bf16w);
    fill(o, N, 0.5f, 0);
    fill(g, N, 6.0f, 0);
    g_ref->ops->norm_gate(g_ref, o, g, w, n, dim, eps, ref);
    void *d_w = upload_as(w, (size_t)dim, bf16w);
    float *d_o = upload(o, N * sizeof(float)), *d_g = upload(g, N * sizeof(float));
    float *d_out = in_place ? d_o : dpoison(N);
    mr_cuda_norm_gate_args a = {n,   dim, eps, bf16w ? MR_DTYPE_BF16 : MR_DTYPE_F32,
                                d_w, d_o, d_g, d_out};
    CM(mr_cuda_norm_gate(&a, g_st));
    download(got, d_out, N * sizeof(float));
    snprintf(what, sizeof what, "norm_gate %s w n %d dim %d%s", bf16w ? "bf16" : "f32", n, dim,
             in_place ? " (out = o)" : "");
    check(what, nerr(got, ref, N), TOL_NORM);
    if (!in_place) cudaFree(d_out);
    cudaFree(d_w);
    cudaFree(d_o);
    cudaFree(d_g);
    free(w);
    free(o);
    free(g);
    free(ref);
    free(got);
}

/* ---- linear --------------------------------------------------------------------------------- */

/* The ref's linear over token ranges on several threads (it keeps no state for linear). */
typedef struct lin_job {
    const mr_matrix *w;
    const float *x;
    float *y;
    int t0, t1;
} lin_job;

static void *lin_thread(void *arg) {
    const lin_job *j = arg;
    if (j->t1 > j->t0)
        g_ref->ops->linear(g_ref, j->w, j->x + (size_t)j->t0 * j->w->cols, j->t1 - j->t0,
                           j->y + (size_t)j->t0 * j->w->rows);
    return NULL;
}

static void ref_linear_mt(const mr_matrix *w, const float *x, int n, float *y) {
    int nt = n_threads();
    if (nt > n) nt = n;
    pthread_t th[32];
    lin_job jobs[32];
    for (int i = 0; i < nt; i++) {
        jobs[i] = (lin_job){w, x, y, n * i / nt, n * (i + 1) / nt};
        if (pthread_create(&th[i], NULL, lin_thread, &jobs[i]) != 0) {
            lin_thread(&jobs[i]);
            th[i] = 0;
        }
    }
    for (int i = 0; i < nt; i++)
        if (th[i]) pthread_join(th[i], NULL);
}

/* wmode: 0 fp32 weights; 1 bf16 weights, fp32 x (converted on the device); 2 bf16 weights and
 * bf16 x (then the ref gets the bf16-rounded x, and the result is fp32-accurate); 3 bf16 weights,
 * fp32 x split into hi + lo parts stacked in one GEMM (the engine's route past the GEMV kernel);
 * 4 the same parts in two GEMMs (no y2 scratch); 5 the GEMV kernel called directly (up to
 * MR_CUDA_GEMV_KERNEL_MAX_N tokens). Modes 1, 3 and 4 take the GEMV kernel where linear picks it.
 */
static void test_linear(int n, int rows, int cols, int wmode) {
    char what[160];
    const size_t WN = (size_t)rows * cols, XN = (size_t)n * cols, YN = (size_t)n * rows;
    const int wb = wmode != 0, xb = wmode == 2, split = wmode == 3 || wmode == 4;
    float *w = xmalloc(WN * sizeof(float)), *x = xmalloc(XN * sizeof(float));
    float *ref = xmalloc(YN * sizeof(float)), *got = xmalloc(YN * sizeof(float));
    fill(w, WN, 0.05f, wb);
    fill(x, XN, 2.0f, xb);
    uint16_t *whb = wb ? to_bf16(w, WN) : NULL;
    mr_matrix m = {wb ? (const void *)whb : w, wb ? MR_DTYPE_BF16 : MR_DTYPE_F32, rows, cols};
    ref_linear_mt(&m, x, n, ref);
    void *d_w = upload_as(w, WN, wb), *d_x = upload_as(x, XN, xb);
    /* hi and lo adjacent ([2n][cols]), as the backends lay them out: required for stacking */
    uint16_t *d_xb = wmode == 1 || split ? dmalloc(XN * 2 * (split ? 2 : 1)) : NULL;
    uint16_t *d_lo = split ? d_xb + XN : NULL;
    float *d_y2 = wmode == 3 ? dpoison(2 * YN) : NULL;
    float *d_y = dpoison(YN);
    mr_cuda_linear_args a = {.n = n,
                             .rows = rows,
                             .cols = cols,
                             .w_dtype = wb ? MR_DTYPE_BF16 : MR_DTYPE_F32,
                             .w = d_w,
                             .x_dtype = xb ? MR_DTYPE_BF16 : MR_DTYPE_F32,
                             .x = d_x,
                             .x_bf16 = d_xb,
                             .y = d_y,
                             .x_lo_bf16 = d_lo,
                             .y2 = d_y2,
                             .y2_floats = d_y2 ? 2 * YN : 0};
    if (wmode == 5)
        CM(mr_cuda_gemv_bf16(d_w, d_x, n, rows, cols, d_y, g_st));
    else
        CM(mr_cuda_linear(g_blas, &a, g_st));
    download(got, d_y, YN * sizeof(float));
    static const char *mode_name[] = {"f32 W, f32 x",
                                      "bf16 W, f32 x",
                                      "bf16 W, bf16 x",
                                      "bf16 W, f32 x hi+lo stacked",
                                      "bf16 W, f32 x hi+lo in two GEMMs",
                                      "bf16 W, f32 x, the GEMV kernel"};
    snprintf(what, sizeof what, "linear %s n %d [%d x %d]", mode_name[wmode], n, rows, cols);
    /* split: x − hi − lo ≤ 2^-16 |x| per element, far below TOL_DOT's fp32 summation allowance;
     * the GEMV route (bf16 W, fp32 x, few tokens) keeps x in fp32: TOL_DOT too */
    const int gemv = wmode == 5 || (wb && !xb && n <= MR_CUDA_GEMV_MAX_N &&
                                    mr_cuda_gemv_supported(n, cols, d_w, d_x));
    if (gemv) strncat(what, " (gemv)", sizeof what - strlen(what) - 1);
    check(what, nerr(got, ref, YN), wmode == 1 && !gemv ? TOL_BF16 : TOL_DOT);
    cudaFree(d_y2);
    cudaFree(d_w);
    cudaFree(d_x);
    cudaFree(d_xb);
    cudaFree(d_y);
    free(w);
    free(x);
    free(whb);
    free(ref);
    free(got);
}

/* ---- route ---------------------------------------------------------------------------------- */

static int cmp_desc_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x > y ? -1 : x < y;
}

static void test_route(int n, int dim, int E, int k, int bf16g) {
    char what[160];
    float *g = xmalloc((size_t)E * dim * sizeof(float)), *x = xmalloc((size_t)n * dim * 4);
    /* logits of standard deviation ~1: amp · √(dim) / 3 ≈ 1 */
    fill(g, (size_t)E * dim, 3.0f / sqrtf((float)dim), bf16g);
    fill(x, (size_t)n * dim, 1.0f, 0);
    uint16_t *gb = bf16g ? to_bf16(g, (size_t)E * dim) : NULL;
    mr_matrix m = {bf16g ? (const void *)gb : g, bf16g ? MR_DTYPE_BF16 : MR_DTYPE_F32, E, dim};
    int32_t *ref_ids = xmalloc((size_t)n * k * 4), *got_ids = xmalloc((size_t)n * k * 4);
    float *ref_w = xmalloc((size_t)n * k * 4), *got_w = xmalloc((size_t)n * k * 4);
    g_ref->ops->route(g_ref, &m, x, n, k, ref_ids, ref_w);
    void *d_g = upload_as(g, (size_t)E * dim, bf16g);
    float *d_x = upload(x, (size_t)n * dim * 4);
    int32_t *d_ids = dmalloc((size_t)n * k * 4);
    float *d_w = dpoison((size_t)n * k);
    CK(cudaMemset(d_ids, 0xff, (size_t)n * k * 4));
    mr_cuda_route_args a = {n,   dim, E,     k,  bf16g ? MR_DTYPE_BF16 : MR_DTYPE_F32,
                            d_g, d_x, d_ids, d_w};
    CM(mr_cuda_route(&a, g_st));
    download(got_ids, d_ids, (size_t)n * k * 4);
    download(got_w, d_w, (size_t)n * k * 4);
    /* near-ties among the top k+1, from double-precision probabilities */
    double *p = xmalloc((size_t)E * sizeof(double));
    int ambiguous = 0, id_mismatch = 0;
    double num = 0.0, den = 0.0;
    for (int t = 0; t < n; t++) {
        double mx = -INFINITY, sum = 0.0;
        for (int e = 0; e < E; e++) {
            double acc = 0.0;
            for (int c = 0; c < dim; c++)
                acc += (double)x[(size_t)t * dim + c] * (double)g[(size_t)e * dim + c];
            p[e] = acc;
            mx = acc > mx ? acc : mx;
        }
        for (int e = 0; e < E; e++) sum += (p[e] = exp(p[e] - mx));
        for (int e = 0; e < E; e++) p[e] /= sum;
        qsort(p, (size_t)E, sizeof *p, cmp_desc_d);
        int tie = 0;
        for (int j = 0; j < k && j + 1 < E; j++) tie |= p[j] - p[j + 1] < 1e-6;
        if (tie) {
            ambiguous++;
            continue;
        }
        for (int j = 0; j < k; j++) {
            const size_t i = (size_t)t * k + j;
            id_mismatch += got_ids[i] != ref_ids[i];
            if (!isfinite(got_w[i])) num = INFINITY;
            num += ((double)got_w[i] - ref_w[i]) * ((double)got_w[i] - ref_w[i]);
            den += (double)ref_w[i] * ref_w[i];
        }
    }
    snprintf(what, sizeof what, "route %s gate n %d dim %d E %d k %d: ids (%d near-ties skipped)",
             bf16g ? "bf16" : "f32", n, dim, E, k, ambiguous);
    check_true(what, id_mismatch == 0);
    snprintf(what, sizeof what, "  weights of that call");
    check(what, den > 0.0 ? sqrt(num / den) : sqrt(num), TOL_DOT);
    cudaFree(d_g);
    cudaFree(d_x);
    cudaFree(d_ids);
    cudaFree(d_w);
    free(g);
    free(gb);
    free(x);
    free(ref_ids);
    free(got_ids);
    free(ref_w);
    free(got_w);
    free(p);
}

/* ---- argmax --------------------------------------------------------------------------------- */

static void test_argmax(int n, int vocab) {
    char what[128];
    const size_t N = (size_t)n * vocab;
    float *l = xmalloc(N * sizeof(float));
    int32_t *want = xmalloc((size_t)n * 4), *got = xmalloc((size_t)n * 4);
    fill(l, N, 10.0f, 0);
    for (int t = 0; t < n; t++) {
        float *r = l + (size_t)t * vocab;
        /* planted: row t % 4 == 1 ties its max at two ids; == 2 has a NaN; == 3 max at the end */
        if (vocab >= 4 && t % 4 == 1) {
            const int a = (int)(mr_splitmix64(&g_rng) % (uint64_t)vocab);
            const int b = (int)(mr_splitmix64(&g_rng) % (uint64_t)vocab);
            r[a] = r[b] = 11.0f;
        }
        if (vocab >= 4 && t % 4 == 2) r[vocab / 2] = NAN;
        if (t % 4 == 3) r[vocab - 1] = 12.0f;
        int best = -1;
        for (int i = 0; i < vocab; i++)
            if (!isnan(r[i]) && (best < 0 || r[i] > r[best])) best = i;
        want[t] = best < 0 ? 0 : best;
    }
    float *d_l = upload(l, N * sizeof(float));
    int32_t *d_ids = dmalloc((size_t)n * 4);
    CK(cudaMemset(d_ids, 0xff, (size_t)n * 4));
    CM(mr_cuda_argmax(d_l, n, vocab, d_ids, g_st));
    download(got, d_ids, (size_t)n * 4);
    snprintf(what, sizeof what, "argmax n %d vocab %d (ties, NaN, last id)", n, vocab);
    check_true(what, memcmp(got, want, (size_t)n * 4) == 0);
    cudaFree(d_l);
    cudaFree(d_ids);
    free(l);
    free(want);
    free(got);
}

/* ---- state copy, argument checks ------------------------------------------------------------ */

static void test_state_copy(void) {
    const int L = 3, S = 4;
    const size_t slot_floats = 1000, slot_stride = 1024, layer_stride = S * slot_stride + 16;
    const size_t N = (size_t)L * layer_stride;
    float *h = xmalloc(N * sizeof(float)), *got = xmalloc(N * sizeof(float));
    fill(h, N, 1.0f, 0);
    float *d = upload(h, N * sizeof(float));
    CM(mr_cuda_state_copy(d, L, layer_stride, slot_stride, slot_floats, 2, 0, g_st));
    download(got, d, N * sizeof(float));
    for (int l = 0; l < L; l++)
        memcpy(h + (size_t)l * layer_stride, h + (size_t)l * layer_stride + 2 * slot_stride,
               slot_floats * sizeof(float));
    check_true("state_copy slot 2 → 0 in 3 layers (the rest untouched)",
               memcmp(got, h, N * sizeof(float)) == 0);
    cudaFree(d);
    free(h);
    free(got);
}

static void test_invalid(void) {
    float *d = dmalloc(64 * sizeof(float));
    int32_t *di = dmalloc(64 * sizeof(int32_t));
    int ok = 1;
    mr_cuda_rmsnorm_args r = {.n = 0, .dim = 8, .w_dtype = MR_DTYPE_F32, .w = d, .x = d, .y = d};
    ok &= mr_cuda_rmsnorm(&r, g_st) == MR_ERR_INVALID;
    r.n = 1;
    r.add = d; /* fused without x_out */
    ok &= mr_cuda_rmsnorm(&r, g_st) == MR_ERR_INVALID;
    mr_cuda_route_args ro = {1, 8, 4, 5, MR_DTYPE_F32, d, d, di, d}; /* k > E */
    ok &= mr_cuda_route(&ro, g_st) == MR_ERR_INVALID;
    mr_cuda_linear_args li = {.n = 1,
                              .rows = 4,
                              .cols = 4,
                              .w_dtype = MR_DTYPE_BF16,
                              .w = d,
                              .x_dtype = MR_DTYPE_F32,
                              .x = d,
                              .y = d + 16};
    ok &= mr_cuda_linear(g_blas, &li, g_st) == MR_ERR_INVALID; /* no x_bf16 scratch */
    mr_cuda_embed_args em = {1, 4, 4, MR_DTYPE_I8, d, di, d};
    ok &= mr_cuda_embed(&em, g_st) == MR_ERR_INVALID;
    ok &= mr_cuda_state_copy(d, 1, 0, 16, 16, 1, 1, g_st) == MR_ERR_INVALID;
    ok &= mr_cuda_argmax(d, 1, 0, di, g_st) == MR_ERR_INVALID;
    check_true("invalid arguments rejected (MR_ERR_INVALID)", ok);
    cudaFree(d);
    cudaFree(di);
}

int main(int argc, char **argv) {
    int devs = 0;
    if (cudaGetDeviceCount(&devs) != cudaSuccess || devs == 0) {
        printf("SKIP: no CUDA device\n");
        return 77;
    }
    if (argc > 1 && strcmp(argv[1], "--probe") == 0) /* --probe N: N devices or skip */
        return argc > 2 && devs < atoi(argv[2]) ? 77 : 0;
    const int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    mr_log_set_level(quick ? MR_LOG_LEVEL_WARN : MR_LOG_LEVEL_ERROR);
    mr_backend_params bp = {.n_threads = 1,
                            .max_tokens = 512,
                            .hidden = 64,
                            .inter = 64,
                            .n_heads = 2,
                            .head_dim = 32,
                            .block_size = 64,
                            .max_experts = 256,
                            .top_k = 8};
    if (mr_backend_create("ref", &bp, &g_ref) != MR_OK) {
        fprintf(stderr, "cannot create the ref backend\n");
        return 1;
    }
    CK(cudaStreamCreate(&g_st));
    if (cublasCreate(&g_blas) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "cublasCreate failed\n");
        return 1;
    }
    static const int ns[] = {1, 3, 37, 257};

    printf("embed\n");
    for (int bf = 0; bf < 2; bf++) {
        test_embed(1000, 64, 1, bf);
        test_embed(1000, 100, 37, bf);
        test_embed(3001, 6144, 257, bf);
    }

    printf("rmsnorm, fused residual, scale_add, norm_gate\n");
    for (int i = 0; i < 4; i++)
        for (int bf = 0; bf < 2; bf++) {
            test_rmsnorm(ns[i], 6144, bf, 0, ALIAS_NONE);
            test_rmsnorm(ns[i], 6144, bf, 1, ALIAS_NONE);
        }
    test_rmsnorm(3, 100, 0, 0, ALIAS_NONE);
    test_rmsnorm(5, 6144, 0, 0, 1); /* y = x */
    test_rmsnorm(37, 6144, 1, 1, ALIAS_RESID);
    test_rmsnorm(37, 6144, 0, 1, ALIAS_POSTNORM);
    test_rmsnorm(1, 33, 0, 1, ALIAS_POSTNORM);
    test_scale_add(1);
    test_scale_add(1001);
    test_scale_add((size_t)37 * 6144);
    for (int i = 0; i < 4; i++) test_norm_gate(ns[i], 8192, i % 2, i >= 2);
    test_norm_gate(3, 64, 0, 0);
    test_norm_gate(2, 100, 1, 1);

    printf("linear\n");
    for (int mode = 0; mode < 5; mode++) {
        test_linear(1, 48, 64, mode);
        test_linear(3, 100, 72, mode);
        test_linear(37, 96, 64, mode);
        test_linear(257, 40, 200, mode);
    }
    if (!quick) {
        test_linear(1, 24576, 6144, 1); /* qkv */
        test_linear(19, 24576, 6144, 1);
        test_linear(19, 24576, 6144, 3); /* split activations (cuda-full, cuda-gpu) */
        test_linear(19, 24576, 6144, 4);
        test_linear(5, 8192, 6144, 1); /* output gate */
        test_linear(7, 6144, 8192, 1); /* out_proj */
        test_linear(3, 6144, 8192, 2);
        test_linear(1, 6144, 8192, 0);
        test_linear(19, 6144, 8192, 0);
        /* the GEMV route at every token count it takes, and just past it (cuBLAS) */
        for (int n = 1; n <= MR_CUDA_GEMV_MAX_N + 1; n++) {
            test_linear(n, 24576, 6144, 1);
            test_linear(n, 24576, 6144, 3);
        }
        for (int n = 1; n <= MR_CUDA_GEMV_KERNEL_MAX_N; n++) {
            test_linear(n, 24576, 6144, 5);
            test_linear(n, 6144, 8192, 5);
        }
        test_linear(8, 6144, 8192, 3);
        test_linear(64, 6144, 8192, 3);
        test_linear(1, 200064, 6144, 1); /* LM head */
        test_linear(5, 200064, 6144, 3);
    }
    /* GEMV edges: rows not a multiple of the block's 16, columns not a multiple of its 1024-wide
     * chunk, and columns not a multiple of 8 (cuBLAS instead) */
    test_linear(3, 100, 200, 1);
    test_linear(8, 40, 1032, 1);
    test_linear(7, 100, 200, 5);
    test_linear(8, 40, 1032, 5);
    test_linear(3, 17, 8, 5);
    test_linear(5, 17, 8, 3);
    test_linear(2, 17, 8, 4);
    test_linear(2, 33, 100, 1);

    printf("route\n");
    for (int i = 0; i < 4; i++) {
        test_route(ns[i], 6144, 32, 2, 0);
        test_route(ns[i], 64, 8, 2, i % 2);
    }
    test_route(37, 6144, 32, 2, 1);
    test_route(5, 100, 256, 8, 0);

    printf("argmax\n");
    test_argmax(1, 200064);
    test_argmax(7, 200064);
    test_argmax(3, 1000);
    test_argmax(9, 33);
    test_argmax(2, 1);

    printf("state copy, argument checks\n");
    test_state_copy();
    test_invalid();

    cublasDestroy(g_blas);
    CK(cudaStreamDestroy(g_st));
    mr_backend_destroy(g_ref);
    printf("%s\n", g_fail ? "FAILED" : "all passed");
    return g_fail;
}
