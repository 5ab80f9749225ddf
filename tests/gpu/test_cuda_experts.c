/* test_cuda_experts — the CUDA expert executor against kernels/ref (the oracle).
 *
 * For each weight format (bf16, int8, int4), shape and token count (1 … 4096, many not multiples
 * of any tile) and expert mix (uniform, one hot expert, ids < 0 / out of range / not held), on
 * fresh random inputs with the output poisoned (NaN) before every call:
 *   bf16:      ‖cuda − ref(bf16 weights)‖ / ‖ref‖
 *   int8/int4: ‖cuda − ref(host RTN quantise, dequantise to f32)‖ / ‖ref‖  (dequantise-then-matmul)
 * for each execution path (auto threshold, wq kernel only, GEMM only, grouped GEMM for bf16) and
 * activation precision: bf16 within 1e-2; split (hi + lo bf16 parts) within 1e-4 for bf16 weights
 * (fp32-accurate) and 1e-2 for int8/int4 (the GEMM path multiplies bf16(q·scale)). Also: the device
 * weights, dequantised, equal the host quantiser's bitwise; repeated calls are bitwise equal (a
 * moving result is a race); an assignment that does not fit is refused; synthetic weights
 * generated on the device equal the host's numbers (raw fill, and experts loaded from streams vs
 * uploaded, per format, bitwise).
 * Shapes: mid (320×448, 8 experts), tiny (the tiny preset's 64×96, expert 1 not held), wide
 * (1600×2880: K long enough for split-K), full (6144×9216, 4 of 32 experts held).
 * Exit 77 (ctest SKIP) without a CUDA device; `--probe` only answers that (0 with a device). */
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
#include "kernels/cuda/cuda_experts.h"
#include "kernels/cuda/cuda_internal.h"

#define TOL       1e-2 /* bf16 activations (and int8/int4 on the GEMM path: bf16(q·s) weights) */
#define TOL_SPLIT 1e-4 /* split activations with bf16 weights */

static uint64_t g_rng = 0x5eedcafe;
static int g_fail = 0;

static float urand(void) {
    return mr_rng_uniform_pm1(&g_rng);
}

static double nerr(const float *a, const float *b, size_t n, int *nonfinite) {
    double num = 0, den = 0;
    *nonfinite = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) (*nonfinite)++;
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return sqrt(num) / (den > 0 ? sqrt(den) : 1.0);
}

/* ---- host RTN quantisation, the same fp32 operations as kernels/cuda/quant.cu -------------- */

static void quant_int8(const uint16_t *w, int rows, int cols, float *deq, uint16_t *deq16) {
    for (int r = 0; r < rows; r++) {
        float m = 0.0f;
        for (int c = 0; c < cols; c++) m = fmaxf(m, fabsf(mr_bf16_to_f32(w[(size_t)r * cols + c])));
        const float sc = m / 127.0f;
        for (int c = 0; c < cols; c++) {
            float v = mr_bf16_to_f32(w[(size_t)r * cols + c]);
            int q = sc > 0.0f ? (int)rintf(v / sc) : 0;
            q = q < -127 ? -127 : q > 127 ? 127 : q;
            deq[(size_t)r * cols + c] = (float)q * sc;
            deq16[(size_t)r * cols + c] = mr_f32_to_bf16((float)q * sc);
        }
    }
}

static void quant_int4(const uint16_t *w, int rows, int cols, float *deq, uint16_t *deq16) {
    for (int r = 0; r < rows; r++)
        for (int g0 = 0; g0 < cols; g0 += 128) {
            const int g1 = g0 + 128 < cols ? g0 + 128 : cols;
            float m = 0.0f;
            for (int c = g0; c < g1; c++)
                m = fmaxf(m, fabsf(mr_bf16_to_f32(w[(size_t)r * cols + c])));
            const float sc = mr_bf16_to_f32(mr_f32_to_bf16(m / 7.0f));
            for (int c = g0; c < g1; c++) {
                float v = mr_bf16_to_f32(w[(size_t)r * cols + c]);
                int q = sc > 0.0f ? (int)rintf(v / sc) : 0;
                q = q < -8 ? -8 : q > 7 ? 7 : q;
                deq[(size_t)r * cols + c] = (float)q * sc;
                deq16[(size_t)r * cols + c] = mr_f32_to_bf16((float)q * sc);
            }
        }
}

/* ---- the reference, threaded over token ranges (each token's result is independent) -------- */

typedef struct ref_job {
    const mr_expert_set *set;
    const float *x;
    int n, k;
    const int32_t *ids;
    const float *wts;
    float *out;
    int rc;
} ref_job;

static void *ref_thread(void *arg) {
    ref_job *j = arg;
    mr_backend_params p = {.n_threads = 1,
                           .max_tokens = j->n,
                           .hidden = j->set->hidden,
                           .inter = j->set->inter,
                           .n_heads = 1,
                           .head_dim = 1,
                           .block_size = 1,
                           .max_experts = j->set->n_experts,
                           .top_k = j->k};
    mr_backend *be;
    j->rc = mr_backend_create("ref", &p, &be) != MR_OK;
    if (j->rc) return NULL;
    be->ops->moe(be, j->set, j->x, j->n, j->k, j->ids, j->wts, j->out);
    mr_backend_destroy(be);
    return NULL;
}

static void ref_moe(const mr_expert_set *set, const float *x, int n, int k, const int32_t *ids,
                    const float *wts, float *out) {
    enum { MAX_THREADS = 32 };
    pthread_t th[MAX_THREADS];
    ref_job jobs[MAX_THREADS];
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nth = (int)(ncpu < MAX_THREADS ? ncpu : MAX_THREADS);
    if (nth > n) nth = n;
    const int H = set->hidden;
    for (int i = 0; i < nth; i++) {
        int t0 = (int)((long)n * i / nth), t1 = (int)((long)n * (i + 1) / nth);
        jobs[i] = (ref_job){set,
                            x + (size_t)t0 * H,
                            t1 - t0,
                            k,
                            ids + (size_t)t0 * k,
                            wts + (size_t)t0 * k,
                            out + (size_t)t0 * H,
                            0};
        pthread_create(&th[i], NULL, ref_thread, &jobs[i]);
    }
    for (int i = 0; i < nth; i++) {
        pthread_join(th[i], NULL);
        if (jobs[i].rc) {
            fprintf(stderr, "ref backend failed\n");
            exit(1);
        }
    }
}

/* ---- routing mixes ----------------------------------------------------------------------- */

enum { MIX_UNIFORM, MIX_SKEW, MIX_HOLES, MIX_COUNT };
static const char *mix_name[MIX_COUNT] = {"uniform", "skew", "holes"};

static void make_routing(int mix, int n, int k, int E, int hot, int32_t *ids, float *wts) {
    for (int t = 0; t < n; t++) {
        float sum = 0.0f;
        for (int j = 0; j < k; j++) {
            int e;
            for (;;) {
                e = (int)(mr_splitmix64(&g_rng) % (uint64_t)E);
                if (mix == MIX_SKEW && j == 0 && (mr_splitmix64(&g_rng) % 10) < 8) e = hot;
                int dup = 0;
                for (int i = 0; i < j; i++) dup |= ids[t * k + i] == e;
                if (!dup) break;
            }
            if (mix == MIX_HOLES) {
                uint64_t r = mr_splitmix64(&g_rng) % 20;
                if (r == 0) e = -1;
                if (r == 1) e = E; /* out of range */
            }
            ids[t * k + j] = e;
            wts[t * k + j] = 0.05f + fabsf(urand());
            sum += wts[t * k + j];
        }
        for (int j = 0; j < k; j++) wts[t * k + j] /= sum;
    }
}

/* ---- one shape in one format ------------------------------------------------------------- */

typedef struct shape {
    const char *name;
    int H, I, E, k;
    const unsigned char *held; /* [E] */
    int hot;                   /* the skew mix's hot expert (held) */
    const int *tokens;
    int n_tokens;
    int all_mixes_upto; /* token counts <= this get every mix, the rest uniform only */
} shape;

enum { MODE_AUTO, MODE_WQ, MODE_GEMM, MODE_GROUPED, MODE_TILED, MODE_WGMMA, MODE_COUNT };
static const char *mode_name[MODE_COUNT] = {"auto", "wq", "gemm", "grouped", "tiled", "wgmma"};
/* whether a (format, activation, mode) combination exists: the grouped GEMM is bf16 only */
static int mode_runs(int fmt, int act, int mode) {
    if (mode == MODE_WGMMA) return fmt != MR_CUDA_WFMT_BF16; /* int8/int4 (else it is TILED) */
    return mode != MODE_GROUPED || (fmt == MR_CUDA_WFMT_BF16 && act == MR_CUDA_ACT_BF16);
}

static void set_mode(mr_cuda_experts *cx, int mode) {
    if (mode == MODE_AUTO) mr_cuda_experts_set_path(cx, -1, MR_CUDA_GEMM_PER_EXPERT);
    if (mode == MODE_WQ) mr_cuda_experts_set_path(cx, 1 << 30, MR_CUDA_GEMM_PER_EXPERT);
    if (mode == MODE_GEMM) mr_cuda_experts_set_path(cx, 0, MR_CUDA_GEMM_PER_EXPERT);
    if (mode == MODE_GROUPED) mr_cuda_experts_set_path(cx, 0, MR_CUDA_GEMM_GROUPED);
    if (mode == MODE_TILED) mr_cuda_experts_set_path(cx, 0, MR_CUDA_GEMM_TILED);
    if (mode == MODE_WGMMA) mr_cuda_experts_set_path(cx, 0, MR_CUDA_GEMM_WGMMA);
}

static void run_shape(const shape *sh, int fmt) {
    const int H = sh->H, I = sh->I, E = sh->E, k = sh->k;
    int max_t = 0;
    for (int i = 0; i < sh->n_tokens; i++) max_t = sh->tokens[i] > max_t ? sh->tokens[i] : max_t;
    mr_expert *cx_ex = calloc((size_t)E, sizeof *cx_ex),
              *ref_ex = calloc((size_t)E, sizeof *ref_ex);
    uint16_t **wb = calloc((size_t)E * 3, sizeof *wb), **wq16 = calloc((size_t)E * 3, sizeof *wq16);
    float **wf = calloc((size_t)E * 3, sizeof *wf);
    for (int e = 0; e < E; e++) {
        if (!sh->held[e]) continue;
        const int rows[3] = {I, I, H}, cols[3] = {H, H, I};
        mr_matrix *cm[3] = {&cx_ex[e].w1, &cx_ex[e].w3, &cx_ex[e].w2};
        mr_matrix *rm[3] = {&ref_ex[e].w1, &ref_ex[e].w3, &ref_ex[e].w2};
        for (int m = 0; m < 3; m++) {
            const size_t n = (size_t)rows[m] * cols[m];
            const float scale = 1.0f / sqrtf((float)cols[m]);
            uint16_t *w = malloc(n * 2);
            for (size_t i = 0; i < n; i++) w[i] = mr_f32_to_bf16(scale * urand());
            wb[e * 3 + m] = w;
            *cm[m] = (mr_matrix){w, MR_DTYPE_BF16, rows[m], cols[m]};
            wq16[e * 3 + m] = malloc(n * 2);
            if (fmt == MR_CUDA_WFMT_BF16) {
                memcpy(wq16[e * 3 + m], w, n * 2);
                *rm[m] = *cm[m];
            } else {
                wf[e * 3 + m] = malloc(n * 4);
                if (fmt == MR_CUDA_WFMT_INT8)
                    quant_int8(w, rows[m], cols[m], wf[e * 3 + m], wq16[e * 3 + m]);
                else
                    quant_int4(w, rows[m], cols[m], wf[e * 3 + m], wq16[e * 3 + m]);
                *rm[m] = (mr_matrix){wf[e * 3 + m], MR_DTYPE_F32, rows[m], cols[m]};
            }
        }
    }
    mr_expert_set cx_set = {E, H, I, cx_ex}, ref_set = {E, H, I, ref_ex};
    mr_cuda_experts_params p = {.device = 0,
                                .fmt = fmt,
                                .n_layers = 1,
                                .n_experts = E,
                                .hidden = H,
                                .inter = I,
                                .top_k = k,
                                .max_tokens = max_t,
                                .held = sh->held,
                                .small_max = -1,
                                .gemm = MR_CUDA_GEMM_PER_EXPERT,
                                .act = MR_CUDA_ACT_SPLIT};
    mr_cuda_experts *cx;
    if (mr_cuda_experts_create(&p, &cx) != MR_OK ||
        mr_cuda_experts_load(cx, 0, &cx_set, NULL, NULL) != MR_OK) {
        printf("FAIL %s %s: create/load\n", sh->name, mr_cuda_wfmt_name(fmt));
        g_fail = 1;
        return;
    }
    /* device weights, dequantised, against the host quantiser, bitwise */
    size_t mism = 0, total = 0;
    uint16_t *ex[3] = {malloc((size_t)I * H * 2), malloc((size_t)I * H * 2),
                       malloc((size_t)H * I * 2)};
    for (int e = 0; e < E; e++) {
        if (!sh->held[e]) continue;
        if (mr_cuda_experts_export(cx, 0, e, ex[0], ex[1], ex[2]) != MR_OK) {
            printf("FAIL export\n");
            g_fail = 1;
            continue;
        }
        for (int m = 0; m < 3; m++)
            for (size_t i = 0; i < (size_t)I * H; i++, total++)
                mism += ex[m][i] != wq16[e * 3 + m][i];
    }
    printf("%-5s %-6s weights on device vs host quantiser: %zu of %zu differ\n",
           mr_cuda_wfmt_name(fmt), sh->name, mism, total);
    if (mism) g_fail = 1;

    float *x = malloc((size_t)max_t * H * 4), *ref = malloc((size_t)max_t * H * 4);
    float *out = malloc((size_t)max_t * H * 4), *out2 = malloc((size_t)max_t * H * 4);
    int32_t *ids = malloc((size_t)max_t * k * 4);
    float *wts = malloc((size_t)max_t * k * 4);
    double worst[2][MODE_COUNT] = {{0}};
    for (int ti = 0; ti < sh->n_tokens; ti++) {
        const int n = sh->tokens[ti];
        const int n_mix = n <= sh->all_mixes_upto ? MIX_COUNT : 1;
        for (int mix = 0; mix < n_mix; mix++) {
            for (size_t i = 0; i < (size_t)n * H; i++) x[i] = urand();
            make_routing(mix, n, k, E, sh->hot, ids, wts);
            ref_moe(&ref_set, x, n, k, ids, wts, ref);
            printf("%-5s %-6s n=%-5d %-7s", mr_cuda_wfmt_name(fmt), sh->name, n, mix_name[mix]);
            for (int am = 0; am < 2 * MODE_COUNT; am++) {
                const int act = am / MODE_COUNT, mode = am % MODE_COUNT;
                if (!mode_runs(fmt, act, mode)) continue;
                /* split activations with bf16 weights are fp32-accurate on every path */
                const double tol =
                    act == MR_CUDA_ACT_SPLIT && fmt == MR_CUDA_WFMT_BF16 ? TOL_SPLIT : TOL;
                set_mode(cx, mode);
                mr_cuda_experts_set_act(cx, act);
                for (size_t i = 0; i < (size_t)n * H; i++) out[i] = NAN;
                mr_status st = mr_cuda_experts_run(cx, 0, x, n, k, ids, wts, out);
                int bad = 0;
                double err = st == MR_OK ? nerr(out, ref, (size_t)n * H, &bad) : INFINITY;
                printf(" %s%s %.2e", mode_name[mode], act ? "/split" : "", err);
                if (st != MR_OK || bad || !(err < tol)) {
                    printf(" [FAIL st=%d nonfinite=%d]", (int)st, bad);
                    g_fail = 1;
                }
                if (err > worst[act][mode]) worst[act][mode] = err;
            }
            /* same call again, auto path: bitwise equal or a race */
            set_mode(cx, MODE_AUTO);
            mr_cuda_experts_set_act(cx, MR_CUDA_ACT_BF16);
            mr_cuda_experts_run(cx, 0, x, n, k, ids, wts, out);
            for (size_t i = 0; i < (size_t)n * H; i++) out2[i] = NAN;
            mr_cuda_experts_run(cx, 0, x, n, k, ids, wts, out2);
            if (memcmp(out, out2, (size_t)n * H * 4) != 0) {
                printf(" [FAIL repeat differs]");
                g_fail = 1;
            }
            printf("\n");
        }
    }
    printf("%-5s %-6s worst:", mr_cuda_wfmt_name(fmt), sh->name);
    for (int act = 0; act < 2; act++) {
        if (act) printf(" | split:");
        for (int mode = 0; mode < MODE_COUNT; mode++)
            if (mode_runs(fmt, act, mode)) printf(" %s %.2e", mode_name[mode], worst[act][mode]);
    }
    printf("\n");
    mr_cuda_experts_destroy(cx);
    for (int i = 0; i < E * 3; i++) {
        free(wb[i]);
        free(wq16[i]);
        free(wf[i]);
    }
    for (int m = 0; m < 3; m++) free(ex[m]);
    free(wb);
    free(wq16);
    free(wf);
    free(cx_ex);
    free(ref_ex);
    free(x);
    free(ref);
    free(out);
    free(out2);
    free(ids);
    free(wts);
}

static void test_refuse(void) {
    mr_cuda_experts_params p = {.device = 0,
                                .fmt = MR_CUDA_WFMT_BF16,
                                .n_layers = 1000,
                                .n_experts = 32,
                                .hidden = 6144,
                                .inter = 9216,
                                .top_k = 2,
                                .max_tokens = 64,
                                .small_max = -1};
    mr_cuda_experts *cx = NULL;
    mr_status st = mr_cuda_experts_create(&p, &cx);
    printf("refuse 1000 layers x 32 bf16 experts: %s\n",
           st == MR_ERR_NOMEM ? "refused" : "NOT refused");
    if (st != MR_ERR_NOMEM) g_fail = 1;
    mr_cuda_experts_destroy(cx);
}

/* Synthetic weights generated on the device: the raw fill against the host's mr_synth_value
 * (bf16-stored, f32-stored and norm streams, at an offset), then whole experts loaded from their
 * streams against the same experts loaded from host-generated matrices, per format, bitwise. */
static void test_synthetic(int fmt) {
    const int H = 320, I = 448, E = 4;
    const mr_synth_stream kinds[3] = {
        {0x1234567890abcdefull, 0.0625f, 0, 1}, {0x0fedcba987654321ull, 0.3f, 0, 0}, {42, 0, 1, 0}};
    const size_t n = (size_t)1 << 20, first = 123457;
    uint16_t *host = malloc(n * 2), *dev_out = malloc(n * 2), *dev = NULL;
    if (!host || !dev_out || cudaMalloc((void **)&dev, n * 2) != cudaSuccess) {
        printf("FAIL synthetic: out of memory\n");
        g_fail = 1;
        return;
    }
    size_t mism = 0;
    for (int k = 0; k < 3 && fmt == 0; k++) {
        for (size_t i = 0; i < n; i++)
            host[i] = mr_f32_to_bf16(mr_synth_value(&kinds[k], first + i));
        if (mr_cuda_synth_fill_bf16(dev, &kinds[k], first, n, 0) != MR_OK ||
            cudaMemcpy(dev_out, dev, n * 2, cudaMemcpyDeviceToHost) != cudaSuccess) {
            g_fail = 1;
            continue;
        }
        for (size_t i = 0; i < n; i++) mism += host[i] != dev_out[i];
    }
    if (fmt == 0) printf("synthetic fill on the device vs host: %zu of %zu differ\n", mism, 3 * n);
    /* experts: streams vs host copies of the same values */
    mr_synth_stream streams[4 * 3];
    mr_expert from_synth[4], from_host[4];
    uint16_t *mats[4 * 3];
    for (int e = 0; e < E; e++) {
        for (int m = 0; m < 3; m++) {
            mr_synth_stream *st = &streams[e * 3 + m];
            *st = (mr_synth_stream){0x9e37ull * (uint64_t)(e * 3 + m + 1), m == 2 ? 0.08f : 0.1f, 0,
                                    1};
            mats[e * 3 + m] = malloc((size_t)H * I * 2);
            for (size_t i = 0; i < (size_t)H * I; i++)
                mats[e * 3 + m][i] = mr_f32_to_bf16(mr_synth_value(st, i));
        }
        from_synth[e] = (mr_expert){{NULL, MR_DTYPE_BF16, I, H},
                                    {NULL, MR_DTYPE_BF16, I, H},
                                    {NULL, MR_DTYPE_BF16, H, I},
                                    &streams[e * 3]};
        from_host[e] = (mr_expert){{mats[e * 3], MR_DTYPE_BF16, I, H},
                                   {mats[e * 3 + 1], MR_DTYPE_BF16, I, H},
                                   {mats[e * 3 + 2], MR_DTYPE_BF16, H, I},
                                   NULL};
    }
    const mr_expert_set set_s = {E, H, I, from_synth}, set_h = {E, H, I, from_host};
    mr_cuda_experts_params p = {.device = 0,
                                .fmt = fmt,
                                .n_layers = 1,
                                .n_experts = E,
                                .hidden = H,
                                .inter = I,
                                .top_k = 2,
                                .max_tokens = 16,
                                .small_max = -1,
                                .gemm = MR_CUDA_GEMM_PER_EXPERT,
                                .act = MR_CUDA_ACT_SPLIT};
    mr_cuda_experts *cs = NULL, *ch = NULL;
    size_t emism = 0;
    if (mr_cuda_experts_create(&p, &cs) != MR_OK || mr_cuda_experts_create(&p, &ch) != MR_OK ||
        mr_cuda_experts_load(cs, 0, &set_s, NULL, NULL) != MR_OK ||
        mr_cuda_experts_load(ch, 0, &set_h, NULL, NULL) != MR_OK) {
        printf("FAIL synthetic %s: create/load\n", mr_cuda_wfmt_name(fmt));
        g_fail = 1;
    } else {
        uint16_t *a[3], *b[3];
        for (int m = 0; m < 3; m++) {
            a[m] = malloc((size_t)H * I * 2);
            b[m] = malloc((size_t)H * I * 2);
        }
        for (int e = 0; e < E; e++) {
            if (mr_cuda_experts_export(cs, 0, e, a[0], a[1], a[2]) != MR_OK ||
                mr_cuda_experts_export(ch, 0, e, b[0], b[1], b[2]) != MR_OK) {
                g_fail = 1;
                continue;
            }
            for (int m = 0; m < 3; m++)
                for (size_t i = 0; i < (size_t)H * I; i++) emism += a[m][i] != b[m][i];
        }
        for (int m = 0; m < 3; m++) {
            free(a[m]);
            free(b[m]);
        }
    }
    printf("%-5s synthetic experts generated on the device vs uploaded: %zu of %zu differ\n",
           mr_cuda_wfmt_name(fmt), emism, (size_t)E * 3 * H * I);
    if (mism || emism) g_fail = 1;
    mr_cuda_experts_destroy(cs);
    mr_cuda_experts_destroy(ch);
    for (int i = 0; i < E * 3; i++) free(mats[i]);
    cudaFree(dev);
    free(host);
    free(dev_out);
}

int main(int argc, char **argv) {
    int devs = 0;
    if (cudaGetDeviceCount(&devs) != cudaSuccess || devs == 0) {
        printf("SKIP: no CUDA device\n");
        return 77;
    }
    if (argc > 1 && strcmp(argv[1], "--probe") == 0) return 0; /* a device is present */
    const int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    mr_log_set_level(MR_LOG_LEVEL_WARN);
    static const int tok_a[] = {1,   2,   3,   5,   8,   13,  17,  31,   32,   33,  64,
                                100, 127, 128, 129, 255, 256, 511, 1000, 2048, 4096};
    static const int tok_b[] = {1, 3, 16, 100, 700};
    static const int tok_c[] = {1, 33, 300};
    static const int tok_d[] = {1, 2, 5, 9, 17, 31, 64};
    /* dimensions that are multiples of 128 (the wgmma kernel's condition), many tokens */
    static const int tok_e[] = {3, 200, 700, 2048};
    static const unsigned char held_a[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    static const unsigned char held_b[4] = {1, 0, 1, 1};
    static unsigned char held_c[32];
    held_c[3] = held_c[7] = held_c[20] = held_c[31] = 1;
    const shape shapes[] = {
        {"mid", 320, 448, 8, 2, held_a, 5, tok_a, quick ? 8 : (int)(sizeof tok_a / sizeof *tok_a),
         300},
        {"tiny", 64, 96, 4, 2, held_b, 2, tok_b, 5, 1000},
        {"wide", 1600, 2880, 8, 2, held_a, 3, tok_d, 7, 64},
        {"big", 1024, 1536, 8, 2, held_a, 4, tok_e, 4, 700},
        {"full", 6144, 9216, 32, 2, held_c, 7, tok_c, 3, 100},
    };
    test_refuse();
    for (int fmt = 0; fmt < 3; fmt++) test_synthetic(fmt);
    for (int fmt = 0; fmt < 3; fmt++)
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) run_shape(&shapes[s], fmt);
    printf("%s\n", g_fail ? "FAILED" : "all passed");
    return g_fail;
}
