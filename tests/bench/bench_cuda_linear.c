/* bench_cuda_linear — the coordinator's dense projections at decode sizes (issue 7, must-show 4's
 * coordinator share): mr_cuda_linear at MiniMax-M1's projection shapes for a few tokens, by route,
 * in the same run:
 *   engine   what the engine runs: the GEMV kernel (bf16 W × fp32 x in fp32 FMAs, W read once) up
 *            to MR_CUDA_GEMV_MAX_N tokens, then stacked
 *   stacked  cuBLAS, x split into hi + lo bf16 parts as 2n columns of ONE GEMM (W read once)
 *   split    cuBLAS, the same parts in two GEMMs (W read twice: the route before this bench)
 *   bf16     cuBLAS, x rounded to bf16, one GEMM of n columns (less accurate: cuBLAS's own speed)
 *   gemv     the GEMV kernel called directly, up to MR_CUDA_GEMV_KERNEL_MAX_N tokens (0 past it)
 * beside the floor: the weight bytes over the device-to-device copy bandwidth measured in the same
 * run. Ends with the sum over an 80-layer model's projections + LM head per decode step.
 *
 *   bench_cuda_linear [--n 1,2,4,8,16,64] [--json out.jsonl]
 * Exit 77 without a device. Weights are random bf16 (values do not change the time). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "kernels/cuda/coord_ops.h"
#include "tests/bench/bench_util.h"

typedef struct shape {
    const char *name;
    int rows, cols, per_model; /* per_model: how many an 80-layer MiniMax-M1 reads per token */
} shape;

static const shape SHAPES[] = {
    {"qkv (lightning)", 24576, 6144, 70}, {"out_gate (lightning)", 8192, 6144, 70},
    {"out_proj / o", 6144, 8192, 80},     {"q (softmax)", 8192, 6144, 10},
    {"k, v (softmax)", 1024, 6144, 20},   {"lm_head", 200064, 6144, 1},
};
enum { N_SHAPES = sizeof SHAPES / sizeof SHAPES[0], N_ROUTES = 5 };
static const char *ROUTE[N_ROUTES] = {"engine", "stacked", "split", "bf16", "gemv"};

typedef struct call {
    mr_cuda_linear_args a;
    cublasHandle_t blas;
} call;

static void run_linear(void *arg, int iter, cudaStream_t st) {
    (void)iter;
    call *c = arg;
    CM(mr_cuda_linear(c->blas, &c->a, st));
}

static void run_gemv(void *arg, int iter, cudaStream_t st) {
    (void)iter;
    const mr_cuda_linear_args *a = &((call *)arg)->a;
    CM(mr_cuda_gemv_bf16(a->w, a->x, a->n, a->rows, a->cols, a->y, st));
}

int main(int argc, char **argv) {
    long ns[8] = {1, 2, 4, 8, 16, 64};
    int n_ns = 6;
    const char *json_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--n") && i + 1 < argc)
            n_ns = bench_parse_list(argv[++i], ns, 8);
        else if (!strcmp(argv[i], "--json") && i + 1 < argc)
            json_path = argv[++i];
        else {
            fprintf(stderr, "usage: bench_cuda_linear [--n 1,2,4,8,16,64] [--json out.jsonl]\n");
            return 2;
        }
    }
    mr_log_set_level(MR_LOG_LEVEL_WARN);
    struct cudaDeviceProp prop;
    if (bench_probe_device(&prop) != 0) return 77;
    FILE *json = json_path ? fopen(json_path, "w") : NULL;
    if (json_path && !json) {
        perror(json_path);
        return 1;
    }
    cudaStream_t st;
    cublasHandle_t blas;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    CB(cublasCreate(&blas));
    const double bw = bench_copy_bw();
    printf("device: %s; copy bandwidth %.0f GB/s (read + write), the floor below\n", prop.name,
           bw * 1e-9);

    long max_n = 1;
    for (int i = 0; i < n_ns; i++) max_n = ns[i] > max_n ? ns[i] : max_n;
    const size_t max_rows = 200064, max_cols = 8192;
    uint16_t *w = bench_dmalloc(max_rows * max_cols * 2);
    float *x = bench_dmalloc((size_t)max_n * max_cols * 4);
    float *y = bench_dmalloc((size_t)max_n * max_rows * 4);
    uint16_t *xb = bench_dmalloc((size_t)2 * max_n * max_cols * 2);
    float *y2 = bench_dmalloc((size_t)2 * max_n * max_rows * 4);
    bench_fill_bf16(w, max_rows * max_cols, 1, 0.05f, st);
    bench_fill_f32(x, (size_t)max_n * max_cols, 2, 1.0f, st);
    CK(cudaStreamSynchronize(st));

    double model_ms[8][N_ROUTES] = {{0}}, model_floor[8] = {0};
    printf("%-22s %4s %9s %9s %9s %9s %9s %9s %8s %8s\n", "projection", "n", "engine", "stacked",
           "split", "bf16", "gemv", "floor ms", "floor/e", "split/e");
    for (int s = 0; s < N_SHAPES; s++)
        for (int i = 0; i < n_ns; i++) {
            const shape *sh = &SHAPES[s];
            const int n = (int)ns[i];
            const double bytes = (double)sh->rows * sh->cols * 2;
            const double floor_ms = bytes / bw * 1e3; /* HBM moving the weights once */
            double ms[N_ROUTES];
            for (int r = 0; r < N_ROUTES; r++) {
                call c = {.blas = blas};
                c.a = (mr_cuda_linear_args){.n = n,
                                            .rows = sh->rows,
                                            .cols = sh->cols,
                                            .w_dtype = MR_DTYPE_BF16,
                                            .w = w,
                                            .x_dtype = MR_DTYPE_F32,
                                            .x = x,
                                            .x_bf16 = xb,
                                            .y = y,
                                            .x_lo_bf16 = r <= 2 ? xb + (size_t)n * sh->cols : NULL,
                                            .y2 = r <= 1 ? y2 : NULL,
                                            .y2_floats = (size_t)2 * max_n * max_rows,
                                            .no_gemv = r != 0};
                if (r == 4 && !mr_cuda_gemv_supported(n, sh->cols, w, x)) {
                    ms[r] = 0; /* past the kernel's token counts */
                    continue;
                }
                ms[r] = bench_time(r == 4 ? run_gemv : run_linear, &c, 3, 7, 5, st);
                model_ms[i][r] += ms[r] * sh->per_model;
                bench_json(json,
                           "{\"op\":\"linear\",\"impl\":\"%s\",\"n\":%d,\"rows\":%d,\"cols\":%d,"
                           "\"ms\":%.5f,\"floor_ms\":%.5f}",
                           ROUTE[r], n, sh->rows, sh->cols, ms[r], floor_ms);
            }
            model_floor[i] += floor_ms * sh->per_model;
            printf("%-22s %4d %9.4f %9.4f %9.4f %9.4f %9.4f %9.4f %7.0f%% %7.2fx%s\n", sh->name, n,
                   ms[0], ms[1], ms[2], ms[3], ms[4], floor_ms, 100 * floor_ms / ms[0],
                   ms[2] / ms[0], n <= MR_CUDA_GEMV_MAX_N ? " (engine: gemv)" : "");
        }
    printf("\n80-layer MiniMax-M1, all projections + LM head per decode step (sum of the rows "
           "above x their count):\n");
    for (int i = 0; i < n_ns; i++) {
        printf("  n %3ld: engine %.2f ms, stacked %.2f ms, split %.2f ms (%.2fx the engine), "
               "bf16 %.2f ms, gemv %.2f ms; floor %.2f ms (engine at %.0f%%)\n",
               ns[i], model_ms[i][0], model_ms[i][1], model_ms[i][2],
               model_ms[i][2] / model_ms[i][0], model_ms[i][3], model_ms[i][4], model_floor[i],
               100 * model_floor[i] / model_ms[i][0]);
        bench_json(json,
                   "{\"op\":\"linear_model\",\"impl\":\"moerack\",\"n\":%ld,\"engine_ms\":%.4f,"
                   "\"stacked_ms\":%.4f,\"split_ms\":%.4f,\"bf16_ms\":%.4f,\"floor_ms\":%.4f}",
                   ns[i], model_ms[i][0], model_ms[i][1], model_ms[i][2], model_ms[i][3],
                   model_floor[i]);
    }
    bench_dfree(w);
    bench_dfree(x);
    bench_dfree(y);
    bench_dfree(xb);
    bench_dfree(y2);
    cublasDestroy(blas);
    CK(cudaStreamDestroy(st));
    if (json) fclose(json);
    return 0;
}
