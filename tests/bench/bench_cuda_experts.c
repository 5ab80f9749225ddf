/* bench_cuda_experts — one MiniMax-M1 MoE layer (hidden 6144, FFN 9216, 32 experts, top-2,
 * random weights) on the CUDA expert executor, per weight format and routed-token count, next to
 * the two floors measured in the same run and the PyTorch torch._grouped_mm peer.
 *
 *   bench_cuda_experts [--formats bf16,int8,int4] [--tokens 1,8,32,128,512,2048,8192]
 *                      [--peer peer.csv] [--csv out.csv] [--wq-sweep]
 *
 * Floors: HBM = bytes of the experts the routing touches (this format's padded weights + scales)
 * / copy bandwidth (a 2 GiB device-to-device copy, read + write bytes); tensor core = 2·slots·3·H·I
 * flop / the rate of an 8192³ bf16 cublasGemmEx on random data. Each time is the median over
 * repeated calls of CUDA events around one call (enqueue, device-resident x and out; the
 * metadata copy is inside). Routing: splitmix64 (seed 1000003·n + 17), expert e0 = r % 32,
 * e1 = r' % 31 (+1 if ≥ e0) — tests/bench/peer_grouped_mm.py draws the same ids.
 * Also prints the capacity table (experts per GPU and the minimum rack) from the memory plan.
 * --wq-sweep: instead of the variants, the auto route under every wq launch split (waves × warps
 * per block × units per warp, mr_cuda_experts_set_wq_split), for tuning its defaults. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "common/log.h"
#include "common/rng.h"
#include "kernels/cuda/cuda_experts.h"
#include "kernels/cuda/cuda_internal.h"
#include "tests/bench/bench_util.h" /* CK, CB, CM; the two floors */

#define H      6144
#define I      9216
#define E      32
#define TOPK   2
#define LAYERS 80

static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}
static float median(float *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_f);
    return n % 2 ? v[n / 2] : 0.5f * (v[n / 2 - 1] + v[n / 2]);
}

static void routing(int n, int32_t *ids, float *wts) {
    uint64_t s = 1000003ull * (uint64_t)n + 17;
    for (int t = 0; t < n; t++) {
        int e0 = (int)(mr_splitmix64(&s) % E);
        int e1 = (int)(mr_splitmix64(&s) % (E - 1));
        if (e1 >= e0) e1++;
        float w0 = 0.5f + 0.5f * (float)(mr_splitmix64(&s) >> 40) / (float)(1 << 24);
        ids[2 * t] = e0;
        ids[2 * t + 1] = e1;
        wts[2 * t] = w0;
        wts[2 * t + 1] = 1.0f - w0;
    }
}

static int parse_list(const char *s, int *out, int max) {
    int n = 0;
    while (*s && n < max) {
        out[n++] = atoi(s);
        s = strchr(s, ',');
        if (!s) break;
        s++;
    }
    return n;
}

/* peer.csv lines: n,ms */
static int load_peer(const char *path, int *pn, double *pms, int max) {
    FILE *f = path ? fopen(path, "r") : NULL;
    int n = 0;
    if (!f) return 0;
    char line[256];
    while (fgets(line, sizeof line, f) && n < max)
        if (sscanf(line, "%d,%lf", &pn[n], &pms[n]) == 2) n++;
    fclose(f);
    return n;
}

/* auto / wq / gemm / grouped: bf16 activations; split: the auto paths with split activations */
/* auto: the executor's own choice; wq / gemm / grouped / tiled / wgmma: every expert on that
 * path (tiled: the mma.sync tile kernel, wgmma: its Hopper form); wq+deq: int8/int4 as before the
 * tile kernels (wq kernel up to 64 rows, dequantise + cuBLAS above); split: the auto policy with
 * split (hi + lo) activations (bf16 experts of at most 8 rows on the GEMV kernel); split-old: split
 * activations on the routes before the GEMV and tile kernels (bf16: two cuBLAS GEMMs per matrix;
 * int8/int4: the wq kernel up to 64 rows, dequantise + cuBLAS above) */
enum { V_AUTO, V_WQ, V_GEMM, V_GROUPED, V_TILED, V_WGMMA, V_WQ_DEQ, V_SPLIT, V_SPLIT_OLD, V_COUNT };
static const char *v_name[V_COUNT] = {"auto",  "wq",     "gemm",  "grouped",  "tiled",
                                      "wgmma", "wq+deq", "split", "split-old"};

/* Median time of `iters` back-to-back calls (CUDA events), after 3 warm-ups. */
static double time_calls(mr_cuda_experts *cx, cudaStream_t st, cudaEvent_t (*ev)[2], int iters,
                         const float *x_dev, int n, const int32_t *ids, const float *wts,
                         float *out_dev) {
    for (int i = 0; i < 3; i++)
        CM(mr_cuda_experts_enqueue(cx, 0, x_dev, n, TOPK, ids, wts, out_dev));
    CM(mr_cuda_experts_sync(cx));
    float t[64];
    for (int i = 0; i < iters; i++) {
        CK(cudaEventRecord(ev[i][0], st));
        CM(mr_cuda_experts_enqueue(cx, 0, x_dev, n, TOPK, ids, wts, out_dev));
        CK(cudaEventRecord(ev[i][1], st));
    }
    CM(mr_cuda_experts_sync(cx));
    for (int i = 0; i < iters; i++) CK(cudaEventElapsedTime(&t[i], ev[i][0], ev[i][1]));
    return median(t, iters);
}

/* The auto route under every wq launch split, the better of two rounds each. */
static void wq_sweep_one(mr_cuda_experts *cx, cudaStream_t st, cudaEvent_t (*ev)[2], int fmt, int n,
                         const float *x_dev, const int32_t *ids, const float *wts, float *out_dev,
                         double hbm_ms) {
    static const int waves[] = {1, 2, 3, 4, 6, 8}, kss[] = {1, 2, 4, 8},
                     mus[] = {2, 3, 4, 6, 8, 12, 16};
    mr_cuda_experts_set_path(cx, -1, MR_CUDA_GEMM_PER_EXPERT);
    CM(mr_cuda_experts_set_act(cx, MR_CUDA_ACT_BF16));
    for (size_t w = 0; w < sizeof waves / sizeof *waves; w++)
        for (size_t k = 0; k < sizeof kss / sizeof *kss; k++)
            for (size_t m = 0; m < sizeof mus / sizeof *mus; m++) {
                mr_cuda_experts_set_wq_split(cx, waves[w], kss[k], mus[m]);
                double best = INFINITY;
                for (int r = 0; r < 2; r++) {
                    const double ms = time_calls(cx, st, ev, 40, x_dev, n, ids, wts, out_dev);
                    best = ms < best ? ms : best;
                }
                printf("sweep %-5s %6d waves %d ks %d min_units %d %9.4f ms %5.1f%% HBM\n",
                       mr_cuda_wfmt_name(fmt), n, waves[w], kss[k], mus[m], best,
                       100.0 * hbm_ms / best);
            }
    mr_cuda_experts_set_wq_split(cx, 0, 0, 0);
}

int main(int argc, char **argv) {
    int fmts[3] = {0, 1, 2}, n_fmts = 3;
    int toks[16] = {1, 8, 32, 128, 512, 2048, 8192}, n_toks = 7;
    const char *peer_path = NULL, *csv_path = NULL;
    int wq_sweep = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--formats") == 0 && i + 1 < argc) {
            n_fmts = 0;
            for (char *tok = strtok(argv[++i], ","); tok && n_fmts < 3; tok = strtok(NULL, ","))
                fmts[n_fmts++] = mr_cuda_wfmt_parse(tok);
        } else if (strcmp(argv[i], "--tokens") == 0 && i + 1 < argc) {
            n_toks = parse_list(argv[++i], toks, 16);
        } else if (strcmp(argv[i], "--peer") == 0 && i + 1 < argc) {
            peer_path = argv[++i];
        } else if (strcmp(argv[i], "--wq-sweep") == 0) {
            wq_sweep = 1;
        } else if (strcmp(argv[i], "--csv") == 0 && i + 1 < argc) {
            csv_path = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--formats a,b] [--tokens 1,8,..] [--peer f] [--csv f]\n",
                    argv[0]);
            return 2;
        }
    }
    mr_log_set_level(MR_LOG_LEVEL_WARN);
    int max_t = 0;
    for (int i = 0; i < n_toks; i++) max_t = toks[i] > max_t ? toks[i] : max_t;

    struct cudaDeviceProp prop;
    CK(cudaSetDevice(0));
    CK(cudaFree(0)); /* create the context */
    CK(cudaGetDeviceProperties(&prop, 0));
    size_t free0, total0;
    CK(cudaMemGetInfo(&free0, &total0));
    const double bw = bench_copy_bw(), tc = bench_gemm_rate();
    printf("device: %s, %d SMs, %.1f GiB; in use after context creation: %.2f GiB\n", prop.name,
           prop.multiProcessorCount, (double)total0 / (1 << 30),
           (double)(total0 - free0) / (1 << 30));
    printf("measured: copy bandwidth %.2f TB/s (read+write), bf16 GEMM %.0f TFLOP/s (8192^3)\n",
           bw * 1e-12, tc * 1e-12);

    int peer_n[32];
    double peer_ms[32];
    const int n_peer = load_peer(peer_path, peer_n, peer_ms, 32);
    FILE *csv = csv_path ? fopen(csv_path, "w") : NULL;
    if (csv) fprintf(csv, "fmt,tokens,variant,ms,touched,hbm_floor_ms,tc_floor_ms,peer_ms\n");

    float *x_host = malloc((size_t)max_t * H * 4);
    uint64_t rs = 99;
    for (size_t i = 0; i < (size_t)max_t * H; i++) x_host[i] = mr_rng_uniform_pm1(&rs);
    float *x_dev, *out_dev;
    CK(cudaMalloc((void **)&x_dev, (size_t)max_t * H * 4));
    CK(cudaMalloc((void **)&out_dev, (size_t)max_t * H * 4));
    CK(cudaMemcpy(x_dev, x_host, (size_t)max_t * H * 4, cudaMemcpyHostToDevice));
    int32_t *ids = malloc((size_t)max_t * TOPK * 4);
    float *wts = malloc((size_t)max_t * TOPK * 4), *out_host = malloc((size_t)max_t * H * 4);

    size_t plan_fixed[3] = {0}, plan_fixed_split[3] = {0}, plan_expert[3] = {0};
    printf("\n%-5s %6s %-8s %9s %9s %7s %9s %7s %9s %7s %6s\n", "fmt", "tokens", "variant", "ms",
           "peer ms", "vs peer", "HBM ms", "%HBM", "TC ms", "%TC", "exp");
    for (int fi = 0; fi < n_fmts; fi++) {
        const int fmt = fmts[fi];
        mr_cuda_experts_params p = {.device = 0,
                                    .fmt = fmt,
                                    .n_layers = 1,
                                    .n_experts = E,
                                    .hidden = H,
                                    .inter = I,
                                    .top_k = TOPK,
                                    .max_tokens = max_t,
                                    .held = NULL,
                                    .small_max = -1,
                                    .gemm = MR_CUDA_GEMM_PER_EXPERT,
                                    .act = MR_CUDA_ACT_BF16};
        mr_cuda_mem_plan plan;
        CM(mr_cuda_experts_plan(&p, &plan));
        plan_expert[fmt] = plan.expert_bytes;
        plan_fixed[fmt] = plan.workspace_bytes + plan.scratch_bytes + plan.blas_bytes;
        p.act = MR_CUDA_ACT_SPLIT; /* the executor below can run both */
        CM(mr_cuda_experts_plan(&p, &plan));
        plan_fixed_split[fmt] = plan.workspace_bytes + plan.scratch_bytes + plan.blas_bytes;
        mr_cuda_experts *cx;
        CM(mr_cuda_experts_create(&p, &cx));
        uint16_t *w[3];
        for (int m = 0; m < 3; m++) CK(cudaMalloc((void **)&w[m], (size_t)H * I * 2));
        const double t0 = bench_now_s();
        for (int e = 0; e < E; e++) {
            CM(mr_cuda_fill_random_bf16(w[0], (size_t)H * I, 100 + 3 * e, 1.0f / sqrtf(H), 0));
            CM(mr_cuda_fill_random_bf16(w[1], (size_t)H * I, 101 + 3 * e, 1.0f / sqrtf(H), 0));
            CM(mr_cuda_fill_random_bf16(w[2], (size_t)H * I, 102 + 3 * e, 1.0f / sqrtf(I), 0));
            CK(cudaDeviceSynchronize());
            CM(mr_cuda_experts_load_dev(cx, 0, e, w[0], w[1], w[2]));
        }
        CK(cudaDeviceSynchronize());
        printf("%-5s load+quantise 32 experts on the GPU: %.2f s (%.1f MiB each)\n",
               mr_cuda_wfmt_name(fmt), bench_now_s() - t0, (double)plan.expert_bytes / (1 << 20));
        for (int m = 0; m < 3; m++) CK(cudaFree(w[m]));

        cudaStream_t st = (cudaStream_t)mr_cuda_experts_stream(cx);
        cudaEvent_t ev[64][2];
        for (int i = 0; i < 64; i++)
            for (int j = 0; j < 2; j++) CK(cudaEventCreate(&ev[i][j]));
        for (int ti = 0; ti < n_toks; ti++) {
            const int n = toks[ti];
            routing(n, ids, wts);
            unsigned char touched[E] = {0};
            int n_touched = 0;
            for (int s = 0; s < n * TOPK; s++) touched[ids[s]] = 1;
            for (int e = 0; e < E; e++) n_touched += touched[e];
            const double hbm_ms = (double)n_touched * (double)plan.expert_bytes / bw * 1e3;
            const double tc_ms = 2.0 * n * TOPK * 3.0 * H * (double)I / tc * 1e3;
            double pms = 0;
            for (int i = 0; i < n_peer; i++)
                if (peer_n[i] == n) pms = peer_ms[i];
            if (wq_sweep) {
                wq_sweep_one(cx, st, ev, fmt, n, x_dev, ids, wts, out_dev, hbm_ms);
                continue;
            }
            const int iters = n <= 512 ? 40 : 15;
            /* two rounds over the variants, each variant's time the better of its two medians:
             * which variant runs first after a size change (clocks, caches) moved single-round
             * times of the same route by up to 10% */
            double best[V_COUNT];
            for (int v = 0; v < V_COUNT; v++) best[v] = INFINITY;
            const int bf16 = fmt == MR_CUDA_WFMT_BF16;
            for (int vr = 0; vr < 2 * V_COUNT; vr++) {
                const int v = vr % V_COUNT;
                if ((v == V_GROUPED && !bf16) || ((v == V_WQ_DEQ || v == V_WGMMA) && bf16))
                    continue;
                const int small_max =
                    v == V_AUTO || v == V_SPLIT ? -1
                    : v == V_WQ                 ? (1 << 30)
                    : v == V_SPLIT_OLD || v == V_WQ_DEQ
                        ? (bf16 ? 0 : 64) /* the default before the tile kernels */
                        : 0;
                mr_cuda_experts_set_path(cx, small_max,
                                         v == V_GROUPED ? MR_CUDA_GEMM_GROUPED
                                         : v == V_TILED ? MR_CUDA_GEMM_TILED
                                         : v == V_WGMMA ? MR_CUDA_GEMM_WGMMA
                                                        : MR_CUDA_GEMM_PER_EXPERT);
                CM(mr_cuda_experts_set_act(
                    cx, v == V_SPLIT || v == V_SPLIT_OLD ? MR_CUDA_ACT_SPLIT : MR_CUDA_ACT_BF16));
                const double m = time_calls(cx, st, ev, iters, x_dev, n, ids, wts, out_dev);
                if (m < best[v]) best[v] = m;
            }
            for (int v = 0; v < V_COUNT; v++) {
                if (best[v] == INFINITY) continue;
                const double ms = best[v];
                printf("%-5s %6d %-8s %9.3f %9.3f %7.2f %9.3f %6.0f%% %9.3f %6.0f%% %6d\n",
                       mr_cuda_wfmt_name(fmt), n, v_name[v], ms, pms, pms > 0 ? pms / ms : 0.0,
                       hbm_ms, 100.0 * hbm_ms / ms, tc_ms, 100.0 * tc_ms / ms, n_touched);
                if (csv)
                    fprintf(csv, "%s,%d,%s,%.4f,%d,%.4f,%.4f,%.4f\n", mr_cuda_wfmt_name(fmt), n,
                            v_name[v], ms, n_touched, hbm_ms, tc_ms, pms);
            }
            /* the synchronous host-array call (pinned staging, H2D, D2H, one sync), wall clock */
            mr_cuda_experts_set_path(cx, -1, MR_CUDA_GEMM_PER_EXPERT);
            CM(mr_cuda_experts_set_act(cx, MR_CUDA_ACT_BF16));
            float tw[16];
            for (int i = 0; i < 13; i++) {
                const double a = bench_now_s();
                CM(mr_cuda_experts_run(cx, 0, x_host, n, TOPK, ids, wts, out_host));
                if (i >= 3) tw[i - 3] = (float)((bench_now_s() - a) * 1e3);
            }
            const double wall = median(tw, 10);
            printf("%-5s %6d %-8s %9.3f   (host arrays in/out, wall clock)\n",
                   mr_cuda_wfmt_name(fmt), n, "run()", wall);
            if (csv)
                fprintf(csv, "%s,%d,run_host,%.4f,%d,%.4f,%.4f,%.4f\n", mr_cuda_wfmt_name(fmt), n,
                        wall, n_touched, hbm_ms, tc_ms, pms);
        }
        for (int i = 0; i < 64; i++)
            for (int j = 0; j < 2; j++) CK(cudaEventDestroy(ev[i][j]));
        mr_cuda_experts_destroy(cx);
    }

    /* Capacity: experts of each format per GPU after this worker's fixed parts (workspace for
     * max_t tokens, scratch, cuBLAS workspace, 256 MiB margin) and the context measured above. */
    const double ctx = (double)(total0 - free0);
    static const struct {
        const char *name;
        double mib;
    } gpus[] = {{"24 GB (23034 MiB)", 23034},
                {"48 GB (46068 MiB)", 46068},
                {"80 GB (81559 MiB)", 81559},
                {"141 GB (143771 MiB)", 143771}};
    printf("\ncapacity (max_tokens %d per call, context %.2f GiB, margin 0.25 GiB); full model = "
           "%d layers x %d experts = %d experts\n",
           max_t, ctx / (1 << 30), LAYERS, E, LAYERS * E);
    printf("%-20s %-5s %-6s %12s %9s %10s\n", "GPU", "fmt", "act", "fixed GiB", "experts",
           "min GPUs");
    for (size_t g = 0; g < sizeof gpus / sizeof *gpus; g++)
        for (int fi = 0; fi < n_fmts; fi++)
            for (int sp = 0; sp < 2; sp++) {
                const int fmt = fmts[fi];
                const double fixed = (double)(sp ? plan_fixed_split[fmt] : plan_fixed[fmt]) + ctx +
                                     256.0 * 1048576.0;
                const double avail = gpus[g].mib * 1048576.0 - fixed;
                const long fit = avail > 0 ? (long)(avail / (double)plan_expert[fmt]) : 0;
                const long gpus_needed = fit > 0 ? (LAYERS * E + fit - 1) / fit : -1;
                printf("%-20s %-5s %-6s %12.2f %9ld %10ld\n", gpus[g].name, mr_cuda_wfmt_name(fmt),
                       sp ? "split" : "bf16", fixed / (1 << 30), fit, gpus_needed);
            }
    if (csv) fclose(csv);
    free(x_host);
    free(ids);
    free(wts);
    free(out_host);
    CK(cudaFree(x_dev));
    CK(cudaFree(out_dev));
    return 0;
}
