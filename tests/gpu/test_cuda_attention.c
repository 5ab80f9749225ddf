/* test_cuda_attention — the CUDA attention kernels (kernels/cuda/cuda_attention.h) against
 * kernels/ref's `lightning` and `attention` ops, on fresh random inputs (fixed seeds).
 *
 * Error measure: normalised L2 per head, ‖cuda − ref‖ / ‖ref‖ over every token of the call
 * (and per (sequence, head) for states), worst one printed and checked, so a head whose outputs
 * are small next to the others (fast decay) cannot hide behind them. Outputs are poisoned (NaN)
 * before every call. Tolerances:
 *   lightning decode (fp32 throughout)                            TOL_F32  2e-5
 *   lightning prefill, outputs and carried states (bf16 operands) TOL_BF16 1e-2
 *   softmax attention (bf16 cache, bf16 q and p on tensor cores)   TOL_BF16 1e-2, and the cache
 *     contents (rotated k, v) against the ref's fp32 cache         TOL_BF16
 * Shapes: H=4 d=32, H=8 d=64 and the real H=64 d=128 (softmax: GQA 8:1, 4:1, 8:1 with
 * rotary_dim d/2); token counts 1, 2, 255, 256, 257, 600, 1000; batches of several sequences with
 * different lengths, start positions and non-zero states (continuations); decode continuing a
 * chunked prefill; a workspace of one and of three chunks (groups split inside a segment, results
 * bitwise equal to the one-group run); repeated calls bitwise equal; fp32 and bf16 lightning
 * inputs; padding rows of the decode kernels left untouched.
 * Exit 77 (ctest SKIP) without a CUDA device; `--probe` only answers that; `--quick` runs the
 * small shapes and a subset of the token counts. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cuda_runtime.h>

#include "common/dtype.h"
#include "common/log.h"
#include "common/rng.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_attention.h"

#define TOL_F32  2e-5
#define TOL_BF16 1e-2

static uint64_t g_rng = 0xa77e5eedull;
static int g_fail = 0;

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static float urand(void) {
    return mr_rng_uniform_pm1(&g_rng);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of host memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static void *dmalloc(size_t n) {
    void *p;
    CK(cudaMalloc(&p, n ? n : 1));
    return p;
}

static void *upload(const void *h, size_t n) {
    void *d = dmalloc(n);
    CK(cudaMemcpy(d, h, n, cudaMemcpyHostToDevice));
    return d;
}

static void download(void *h, const void *d, size_t n) {
    CK(cudaMemcpy(h, d, n, cudaMemcpyDeviceToHost));
}

/* Worst over groups of the normalised L2 error: group gi's elements are base + gi·gstride +
 * r·rstride + [0, width) for r < rows. Non-finite values in `got` make it infinite. */
static double worst_nerr(const float *got, const float *ref, int groups, size_t gstride, int rows,
                         size_t rstride, int width) {
    double worst = 0.0;
    for (int gi = 0; gi < groups; gi++) {
        double num = 0.0, den = 0.0;
        for (int r = 0; r < rows; r++)
            for (int i = 0; i < width; i++) {
                const size_t x = (size_t)gi * gstride + (size_t)r * rstride + (size_t)i;
                if (!isfinite(got[x])) return INFINITY;
                const double dlt = (double)got[x] - (double)ref[x];
                num += dlt * dlt;
                den += (double)ref[x] * (double)ref[x];
            }
        const double e = den > 0.0 ? sqrt(num / den) : sqrt(num);
        if (e > worst) worst = e;
    }
    return worst;
}

static void check(const char *what, double err, double tol) {
    const int ok = err <= tol;
    printf("  %-58s worst %.3e  (tol %.0e)%s\n", what, err, tol, ok ? "" : "  FAIL");
    if (!ok) g_fail = 1;
}

/* Random fp32 values in [-amp, amp); with bf16 set, also rounded to bf16 (what the device sees). */
static void fill(float *x, size_t n, float amp, int bf16) {
    for (size_t i = 0; i < n; i++) {
        x[i] = amp * urand();
        if (bf16) x[i] = mr_bf16_to_f32(mr_f32_to_bf16(x[i]));
    }
}

static void *upload_as(const float *x, size_t n, int bf16) {
    if (!bf16) return upload(x, n * sizeof(float));
    uint16_t *h = xmalloc(n * 2);
    for (size_t i = 0; i < n; i++) h[i] = mr_f32_to_bf16(x[i]);
    void *d = upload(h, n * 2);
    free(h);
    return d;
}

static int n_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 32 ? 32 : (int)n;
}

/* ---- the lightning oracle: kernels/ref, threaded over head ranges -------------------------- */

typedef struct lt_problem {
    int H, d, n_tokens, n_seg;
    const float *slope;     /* [H] */
    const mr_segment *segs; /* [n_seg] */
    const float *qkv;       /* [n][H·3d] */
    float *out;             /* [n][H·d] */
    float **state;          /* [n_seg] → [H][d][d], updated */
} lt_problem;

typedef struct lt_job {
    const lt_problem *p;
    int h0, h1;
} lt_job;

static void *lt_ref_thread(void *arg) {
    const lt_job *j = arg;
    const lt_problem *p = j->p;
    const int Hs = j->h1 - j->h0, d = p->d, n = p->n_tokens;
    const size_t dd = (size_t)d * d;
    mr_backend_params bp = {.n_threads = 1,
                            .max_tokens = n,
                            .hidden = 1,
                            .inter = 1,
                            .n_heads = Hs,
                            .head_dim = d,
                            .block_size = MR_CUDA_LIGHTNING_CHUNK,
                            .max_experts = 1,
                            .top_k = 1};
    mr_backend *be;
    if (mr_backend_create("ref", &bp, &be) != MR_OK) {
        fprintf(stderr, "ref backend failed\n");
        exit(1);
    }
    float *qkv = xmalloc((size_t)n * Hs * 3 * d * sizeof(float));
    float *out = xmalloc((size_t)n * Hs * d * sizeof(float));
    float **st = xmalloc((size_t)p->n_seg * sizeof *st);
    for (int t = 0; t < n; t++)
        memcpy(qkv + (size_t)t * Hs * 3 * d, p->qkv + ((size_t)t * p->H + j->h0) * 3 * d,
               (size_t)Hs * 3 * d * sizeof(float));
    for (int s = 0; s < p->n_seg; s++) {
        st[s] = xmalloc((size_t)Hs * dd * sizeof(float));
        memcpy(st[s], p->state[s] + (size_t)j->h0 * dd, (size_t)Hs * dd * sizeof(float));
    }
    mr_lightning_args a = {.n_heads = Hs,
                           .head_dim = d,
                           .block_size = MR_CUDA_LIGHTNING_CHUNK,
                           .slope = p->slope + j->h0,
                           .n_segments = p->n_seg,
                           .segs = p->segs,
                           .state = st,
                           .qkv = qkv,
                           .out = out};
    be->ops->lightning(be, &a);
    for (int t = 0; t < n; t++)
        memcpy(p->out + ((size_t)t * p->H + j->h0) * d, out + (size_t)t * Hs * d,
               (size_t)Hs * d * sizeof(float));
    for (int s = 0; s < p->n_seg; s++) {
        memcpy(p->state[s] + (size_t)j->h0 * dd, st[s], (size_t)Hs * dd * sizeof(float));
        free(st[s]);
    }
    free(st);
    free(qkv);
    free(out);
    mr_backend_destroy(be);
    return NULL;
}

static void lt_ref(const lt_problem *p) {
    enum { MAXT = 32 };
    pthread_t th[MAXT];
    lt_job jobs[MAXT];
    int nt = n_threads();
    if (nt > p->H) nt = p->H;
    for (int i = 0; i < nt; i++) {
        jobs[i] = (lt_job){p, p->H * i / nt, p->H * (i + 1) / nt};
        pthread_create(&th[i], NULL, lt_ref_thread, &jobs[i]);
    }
    for (int i = 0; i < nt; i++) pthread_join(th[i], NULL);
}

/* Slopes log-uniform from 1 (λ = 0.37, fast decay) to 5e-5 (λ ≈ 1): the real range. */
static void lt_slopes(float *s, int H) {
    for (int h = 0; h < H; h++)
        s[h] = H == 1 ? 0.1f : expf(logf(5e-5f) * (float)h / (float)(H - 1));
}

/* ---- lightning: one prefill call (and optional decode steps after it) ---------------------- */

typedef struct lt_case {
    const char *name;
    int H, d;
    int n_seg;
    const int *lens;
    int warm_state;   /* segments start from random states (continuations), else zero */
    int bf16;         /* bf16 inputs */
    int ws_chunks;    /* workspace size in chunks; also rerun with 1 and 3 chunks if split_check */
    int split_check;  /* rerun with small workspaces: results must be bitwise equal */
    int decode_steps; /* then this many decode steps on every sequence */
} lt_case;

static void lt_run_case(const lt_case *c) {
    const int H = c->H, d = c->d, S = c->n_seg;
    const size_t dd = (size_t)d * d, hdd = (size_t)H * dd;
    const size_t slot_stride = hdd + 64; /* not the dense stride, on purpose */
    mr_segment *segs = xmalloc((size_t)S * sizeof *segs);
    int n = 0;
    for (int s = 0; s < S; s++) {
        segs[s] = (mr_segment){n, c->lens[s], 0};
        n += c->lens[s];
    }
    const size_t in_w = (size_t)H * 3 * d, out_w = (size_t)H * d;
    float *slope = xmalloc((size_t)H * sizeof(float));
    lt_slopes(slope, H);
    float *qkv = xmalloc((size_t)n * in_w * sizeof(float));
    fill(qkv, (size_t)n * in_w, 2.0f, c->bf16);
    /* slot of segment s: S − 1 − s, in a pool of S + 1 slots (slot S unused) */
    int32_t *slots = xmalloc((size_t)S * sizeof(int32_t));
    float *pool = xmalloc((size_t)(S + 1) * slot_stride * sizeof(float));
    float **ref_state = xmalloc((size_t)S * sizeof *ref_state);
    for (size_t i = 0; i < (size_t)(S + 1) * slot_stride; i++) pool[i] = 0.0f;
    for (int s = 0; s < S; s++) {
        slots[s] = S - 1 - s;
        ref_state[s] = xmalloc(hdd * sizeof(float));
        if (c->warm_state)
            fill(ref_state[s], hdd, 20.0f, 0);
        else
            memset(ref_state[s], 0, hdd * sizeof(float));
        memcpy(pool + (size_t)slots[s] * slot_stride, ref_state[s], hdd * sizeof(float));
    }

    float *d_slope = upload(slope, (size_t)H * sizeof(float));
    void *d_qkv = upload_as(qkv, (size_t)n * in_w, c->bf16);
    float *d_out = dmalloc((size_t)n * out_w * sizeof(float));
    float *d_pool0 = upload(pool, (size_t)(S + 1) * slot_stride * sizeof(float));
    float *d_pool = dmalloc((size_t)(S + 1) * slot_stride * sizeof(float));
    const size_t ws_bytes = mr_cuda_lightning_prefill_ws_bytes(H, d, c->ws_chunks);
    void *d_ws = dmalloc(ws_bytes);

    mr_cuda_lightning_prefill_args a = {.n_heads = H,
                                        .head_dim = d,
                                        .slope = d_slope,
                                        .qkv_dtype = c->bf16 ? MR_DTYPE_BF16 : MR_DTYPE_F32,
                                        .qkv = d_qkv,
                                        .out = d_out,
                                        .n_segments = S,
                                        .segs = segs,
                                        .slots = slots,
                                        .state_pool = d_pool,
                                        .slot_stride = slot_stride,
                                        .ws = d_ws,
                                        .ws_bytes = ws_bytes};
    float *out = xmalloc((size_t)n * out_w * sizeof(float));
    float *out2 = xmalloc((size_t)n * out_w * sizeof(float));
    float *pool_got = xmalloc((size_t)(S + 1) * slot_stride * sizeof(float));
    float *pool_got2 = xmalloc((size_t)(S + 1) * slot_stride * sizeof(float));
    /* one call from the initial states */
#define LT_PREFILL(o, pl, wsb)                                                                     \
    do {                                                                                           \
        CK(cudaMemcpy(d_pool, d_pool0, (size_t)(S + 1) * slot_stride * sizeof(float),              \
                      cudaMemcpyDeviceToDevice));                                                  \
        CK(cudaMemset(d_out, 0xff, (size_t)n *out_w * sizeof(float)));                             \
        a.ws_bytes = (wsb);                                                                        \
        mr_status st_ = mr_cuda_lightning_prefill(&a, 0);                                          \
        CK(cudaDeviceSynchronize());                                                               \
        if (st_ != MR_OK) {                                                                        \
            printf("  prefill returned %s  FAIL\n", mr_status_str(st_));                           \
            g_fail = 1;                                                                            \
        }                                                                                          \
        download((o), d_out, (size_t)n *out_w * sizeof(float));                                    \
        download((pl), d_pool, (size_t)(S + 1) * slot_stride * sizeof(float));                     \
    } while (0)
    LT_PREFILL(out, pool_got, ws_bytes);

    float *ref_out = xmalloc((size_t)n * out_w * sizeof(float));
    lt_problem p = {H, d, n, S, slope, segs, qkv, ref_out, ref_state};
    lt_ref(&p);

    printf("lightning prefill %s: H=%d d=%d %s, %d segment(s), %d tokens%s\n", c->name, H, d,
           c->bf16 ? "bf16 in" : "f32 in", S, n, c->warm_state ? ", warm states" : "");
    check("outputs, per head", worst_nerr(out, ref_out, H, (size_t)d, n, out_w, d), TOL_BF16);
    double st_err = 0.0;
    for (int s = 0; s < S; s++) {
        double e = worst_nerr(pool_got + (size_t)slots[s] * slot_stride, ref_state[s], H, dd, 1, 0,
                              (int)dd);
        if (e > st_err) st_err = e;
    }
    check("final states, per (sequence, head)", st_err, TOL_BF16);
    /* the unused slot and the pad between slots are untouched (zero) */
    int stray = 0;
    for (size_t i = 0; i < (size_t)(S + 1) * slot_stride; i++)
        if ((i % slot_stride >= hdd || i / slot_stride == (size_t)S) && pool_got[i] != 0.0f)
            stray++;
    if (stray) {
        printf("  %d state values outside the slots changed  FAIL\n", stray);
        g_fail = 1;
    }

    /* the same call again: bitwise equal (a moving result is a race) */
    LT_PREFILL(out2, pool_got2, ws_bytes);
    if (memcmp(out, out2, (size_t)n * out_w * sizeof(float)) ||
        memcmp(pool_got, pool_got2, (size_t)(S + 1) * slot_stride * sizeof(float))) {
        printf("  repeated call differs  FAIL\n");
        g_fail = 1;
    }
    if (c->split_check) {
        static const int small[] = {1, 3};
        for (int i = 0; i < 2; i++) {
            LT_PREFILL(out2, pool_got2, mr_cuda_lightning_prefill_ws_bytes(H, d, small[i]));
            const int same =
                !memcmp(out, out2, (size_t)n * out_w * sizeof(float)) &&
                !memcmp(pool_got, pool_got2, (size_t)(S + 1) * slot_stride * sizeof(float));
            printf("  workspace of %d chunk(s): %s\n", small[i],
                   same ? "bitwise equal" : "DIFFERS  FAIL");
            if (!same) g_fail = 1;
        }
        a.ws_bytes = mr_cuda_lightning_prefill_ws_bytes(H, d, 1) - 1;
        if (mr_cuda_lightning_prefill(&a, 0) != MR_ERR_INVALID) {
            printf("  workspace below one chunk not refused  FAIL\n");
            g_fail = 1;
        }
        a.ws_bytes = ws_bytes;
    }
#undef LT_PREFILL

    /* decode steps continuing the prefill: the device pool holds the first call's states */
    if (c->decode_steps > 0) {
        CK(cudaMemcpy(d_pool, pool_got, (size_t)(S + 1) * slot_stride * sizeof(float),
                      cudaMemcpyHostToDevice));
        const int R = S + 1; /* one padding row (slot −1) at the end */
        int32_t *dslots = xmalloc((size_t)R * sizeof(int32_t));
        for (int s = 0; s < S; s++) dslots[s] = slots[s];
        dslots[S] = -1;
        int32_t *d_dslots = upload(dslots, (size_t)R * sizeof(int32_t));
        float *dq = xmalloc((size_t)R * in_w * sizeof(float));
        float *dout = xmalloc((size_t)R * out_w * sizeof(float));
        float *dref = xmalloc((size_t)S * out_w * sizeof(float));
        float *d_dout = dmalloc((size_t)R * out_w * sizeof(float));
        mr_segment *dsegs = xmalloc((size_t)S * sizeof *dsegs);
        for (int s = 0; s < S; s++) dsegs[s] = (mr_segment){s, 1, 0};
        double worst = 0.0;
        int pad_ok = 1;
        for (int step = 0; step < c->decode_steps; step++) {
            fill(dq, (size_t)R * in_w, 2.0f, c->bf16);
            void *d_dq = upload_as(dq, (size_t)R * in_w, c->bf16);
            CK(cudaMemset(d_dout, 0xff, (size_t)R * out_w * sizeof(float)));
            mr_cuda_lightning_decode_args da = {.n_heads = H,
                                                .head_dim = d,
                                                .slope = d_slope,
                                                .n = R,
                                                .qkv_dtype = a.qkv_dtype,
                                                .qkv = d_dq,
                                                .out = d_dout,
                                                .slots = d_dslots,
                                                .state_pool = d_pool,
                                                .slot_stride = slot_stride};
            if (mr_cuda_lightning_decode(&da, 0) != MR_OK) g_fail = 1;
            CK(cudaDeviceSynchronize());
            download(dout, d_dout, (size_t)R * out_w * sizeof(float));
            CK(cudaFree(d_dq));
            lt_problem dp = {H, d, S, S, slope, dsegs, dq, dref, ref_state};
            lt_ref(&dp);
            const double e = worst_nerr(dout, dref, H, (size_t)d, S, out_w, d);
            if (e > worst) worst = e;
            for (size_t i = 0; i < out_w; i++) {
                uint32_t bits;
                memcpy(&bits, &dout[(size_t)S * out_w + i], 4);
                if (bits != 0xffffffffu) pad_ok = 0;
            }
        }
        download(pool_got, d_pool, (size_t)(S + 1) * slot_stride * sizeof(float));
        double se = 0.0;
        for (int s = 0; s < S; s++) {
            double e = worst_nerr(pool_got + (size_t)slots[s] * slot_stride, ref_state[s], H, dd, 1,
                                  0, (int)dd);
            if (e > se) se = e;
        }
        char what[96];
        snprintf(what, sizeof what, "decode x%d after the prefill: outputs", c->decode_steps);
        check(what, worst, TOL_BF16);
        check("decode after the prefill: states", se, TOL_BF16);
        if (!pad_ok) {
            printf("  padding row written  FAIL\n");
            g_fail = 1;
        }
        free(dslots);
        free(dq);
        free(dout);
        free(dref);
        free(dsegs);
        CK(cudaFree(d_dslots));
        CK(cudaFree(d_dout));
    }

    for (int s = 0; s < S; s++) free(ref_state[s]);
    free(ref_state);
    free(segs);
    free(slope);
    free(qkv);
    free(slots);
    free(pool);
    free(out);
    free(out2);
    free(pool_got);
    free(pool_got2);
    free(ref_out);
    CK(cudaFree(d_slope));
    CK(cudaFree(d_qkv));
    CK(cudaFree(d_out));
    CK(cudaFree(d_pool0));
    CK(cudaFree(d_pool));
    CK(cudaFree(d_ws));
}

/* ---- lightning: decode alone, fp32-exact ------------------------------------------------- */

static void lt_decode_case(int H, int d, int n_seq, int bf16) {
    const size_t dd = (size_t)d * d, hdd = (size_t)H * dd, stride = hdd;
    const size_t in_w = (size_t)H * 3 * d, out_w = (size_t)H * d;
    float *slope = xmalloc((size_t)H * sizeof(float));
    lt_slopes(slope, H);
    float *qkv = xmalloc((size_t)n_seq * in_w * sizeof(float));
    fill(qkv, (size_t)n_seq * in_w, 2.0f, bf16);
    float **st = xmalloc((size_t)n_seq * sizeof *st);
    float *pool = xmalloc((size_t)n_seq * stride * sizeof(float));
    int32_t *slots = xmalloc((size_t)n_seq * sizeof(int32_t));
    mr_segment *segs = xmalloc((size_t)n_seq * sizeof *segs);
    for (int s = 0; s < n_seq; s++) {
        slots[s] = (s * 7 + 3) % n_seq; /* a permutation when gcd(7, n) = 1 */
        if (n_seq % 7 == 0) slots[s] = s;
        st[s] = xmalloc(hdd * sizeof(float));
        fill(st[s], hdd, 20.0f, 0);
        memcpy(pool + (size_t)slots[s] * stride, st[s], hdd * sizeof(float));
        segs[s] = (mr_segment){s, 1, 0};
    }
    float *d_slope = upload(slope, (size_t)H * sizeof(float));
    void *d_qkv = upload_as(qkv, (size_t)n_seq * in_w, bf16);
    float *d_pool = upload(pool, (size_t)n_seq * stride * sizeof(float));
    int32_t *d_slots = upload(slots, (size_t)n_seq * sizeof(int32_t));
    float *d_out = dmalloc((size_t)n_seq * out_w * sizeof(float));
    CK(cudaMemset(d_out, 0xff, (size_t)n_seq * out_w * sizeof(float)));
    mr_cuda_lightning_decode_args a = {.n_heads = H,
                                       .head_dim = d,
                                       .slope = d_slope,
                                       .n = n_seq,
                                       .qkv_dtype = bf16 ? MR_DTYPE_BF16 : MR_DTYPE_F32,
                                       .qkv = d_qkv,
                                       .out = d_out,
                                       .slots = d_slots,
                                       .state_pool = d_pool,
                                       .slot_stride = stride};
    mr_status rc = mr_cuda_lightning_decode(&a, 0);
    CK(cudaDeviceSynchronize());
    float *out = xmalloc((size_t)n_seq * out_w * sizeof(float));
    download(out, d_out, (size_t)n_seq * out_w * sizeof(float));
    download(pool, d_pool, (size_t)n_seq * stride * sizeof(float));
    float *ref = xmalloc((size_t)n_seq * out_w * sizeof(float));
    lt_problem p = {H, d, n_seq, n_seq, slope, segs, qkv, ref, st};
    lt_ref(&p);
    printf("lightning decode: H=%d d=%d %s, %d sequences%s\n", H, d, bf16 ? "bf16 in" : "f32 in",
           n_seq, rc == MR_OK ? "" : "  (launcher failed)  FAIL");
    if (rc != MR_OK) g_fail = 1;
    check("outputs, per head", worst_nerr(out, ref, H, (size_t)d, n_seq, out_w, d), TOL_F32);
    double se = 0.0;
    for (int s = 0; s < n_seq; s++) {
        double e = worst_nerr(pool + (size_t)slots[s] * stride, st[s], H, dd, 1, 0, (int)dd);
        if (e > se) se = e;
    }
    check("states, per (sequence, head)", se, TOL_F32);
    for (int s = 0; s < n_seq; s++) free(st[s]);
    free(st);
    free(slope);
    free(qkv);
    free(pool);
    free(slots);
    free(segs);
    free(out);
    free(ref);
    CK(cudaFree(d_slope));
    CK(cudaFree(d_qkv));
    CK(cudaFree(d_pool));
    CK(cudaFree(d_slots));
    CK(cudaFree(d_out));
}

static void test_lightning(int quick) {
    static const int tok_all[] = {1, 2, 255, 256, 257, 600, 1000};
    static const int tok_quick[] = {1, 2, 257, 600};
    static const int batch_a[] = {300, 1, 256, 77, 513, 2};
    static const int one600[] = {600};
    struct {
        int H, d;
    } shapes[] = {{4, 32}, {8, 64}, {64, 128}};
    const int n_shapes = quick ? 2 : 3;
    for (int si = 0; si < n_shapes; si++) {
        const int H = shapes[si].H, d = shapes[si].d;
        lt_decode_case(H, d, 1, 0);
        lt_decode_case(H, d, 5, 1);
        lt_decode_case(H, d, 16, 0);
        const int *toks = quick ? tok_quick : tok_all;
        const int nt = quick ? 4 : 7;
        for (int i = 0; i < nt; i++) {
            char name[32];
            snprintf(name, sizeof name, "n=%d", toks[i]);
            lt_case c = {name, H, d, 1, &toks[i], 0, si == 1, 64, 0, 0};
            lt_run_case(&c);
        }
        lt_case batch = {"batch", H, d, 6, batch_a, 1, 0, 64, 1, 3};
        lt_run_case(&batch);
        lt_case batch16 = {"batch", H, d, 6, batch_a, 1, 1, 64, 0, 0};
        lt_run_case(&batch16);
        lt_case cont = {"prefill then decode", H, d, 1, one600, 0, 0, 64, 1, 6};
        lt_run_case(&cont);
    }
}

int main(int argc, char **argv) {
    int devs = 0;
    if (cudaGetDeviceCount(&devs) != cudaSuccess || devs == 0) {
        printf("SKIP: no CUDA device\n");
        return 77;
    }
    if (argc > 1 && strcmp(argv[1], "--probe") == 0) return 0;
    const int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    mr_log_set_level(MR_LOG_LEVEL_WARN);
    test_lightning(quick);
    printf("%s\n", g_fail ? "FAILED" : "all passed");
    return g_fail;
}
