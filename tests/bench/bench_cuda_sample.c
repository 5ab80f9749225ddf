/* bench_cuda_sample — one decode step's sampling at vocab 200064: on the device (the sample op's
 * launcher: parameters up, the kernel, tokens and logprobs down) against the host path it
 * replaces (every logits row down to page-locked memory, then the reference sampler, one thread),
 * per batch size, in the same run, next to the physical limit: the logits' bytes read once at the
 * copy bandwidth measured in the same run.
 *
 *   bench_cuda_sample [--batches 1,16,64,256] [--json out.jsonl]
 *
 * Logits: per row, N(0, 2²) over the vocabulary plus 32 boosted ids (+4..+16): a peaked head on
 * a long flat tail, as a language model's rows look. Parameter sets: greedy; temperature 1 alone
 * (the draw over every id); temperature 0.7 with top-p 0.9 (the top 1024 selected); top-k 50 —
 * each with 5 top logprobs. Times are medians of wall-clock repetitions of whole calls (each
 * ends synchronised: the tokens are on the host). Also the call's fixed cost (the same call on a
 * 32-id row: copies, a launch, a synchronisation), and the device time with each row on one block
 * and on a cluster of 8 (the default picks by batch size: cuda_sample.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "kernels/cuda/cuda_sample.h"
#include "kernels/sample.h"
#include "tests/bench/bench_util.h"

#define VOCAB 200064

typedef struct pset {
    const char *name;
    float temperature, top_p;
    int top_k;
} pset;

static const pset psets[] = {
    {"greedy", 0.0f, 1.0f, 0},
    {"temp1", 1.0f, 1.0f, 0},
    {"topp0.9", 0.7f, 0.9f, 0},
    {"topk50", 1.0f, 1.0f, 50},
};
enum { N_PSETS = sizeof psets / sizeof psets[0] };

static double gauss(uint64_t *r) {
    double u1 = ((double)(mr_splitmix64(r) >> 11) + 1.0) * 0x1p-53;
    double u2 = (double)(mr_splitmix64(r) >> 11) * 0x1p-53;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

int main(int argc, char **argv) {
    long batches[8] = {1, 16, 64, 256};
    int nb = 4;
    FILE *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--batches") == 0 && i + 1 < argc)
            nb = bench_parse_list(argv[++i], batches, 8);
        else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc)
            json = fopen(argv[++i], "w");
        else {
            fprintf(stderr, "usage: bench_cuda_sample [--batches 1,16,64,256] [--json FILE]\n");
            return 2;
        }
    }
    struct cudaDeviceProp prop;
    if (bench_probe_device(&prop) != 0) return 77;
    long max_b = 1;
    for (int i = 0; i < nb; i++) max_b = batches[i] > max_b ? batches[i] : max_b;
    const double bw = bench_copy_bw();
    printf("device %s; copy bandwidth %.0f GB/s (read + write); vocab %d\n", prop.name, bw / 1e9,
           VOCAB);

    const size_t row_bytes = (size_t)VOCAB * sizeof(float);
    float *h_x = xmalloc((size_t)max_b * row_bytes);
    uint64_t rng = 2024;
    for (long r = 0; r < max_b; r++) {
        float *x = h_x + (size_t)r * VOCAB;
        for (int i = 0; i < VOCAB; i++) x[i] = (float)(2.0 * gauss(&rng));
        for (int i = 0; i < 32; i++) x[mr_splitmix64(&rng) % VOCAB] += 4.0f + (float)(i % 13);
    }
    float *d_x = bench_dmalloc((size_t)max_b * row_bytes);
    CK(cudaMemcpy(d_x, h_x, (size_t)max_b * row_bytes, cudaMemcpyHostToDevice));
    float *pinned;
    CK(cudaHostAlloc((void **)&pinned, (size_t)max_b * row_bytes, 0));
    float *work = xmalloc(3 * row_bytes);
    mr_sample_row *rows = xmalloc((size_t)max_b * sizeof *rows);
    int32_t *tok = xmalloc((size_t)max_b * sizeof *tok);
    mr_sample_result *res = xmalloc((size_t)max_b * sizeof *res);
    mr_cuda_sampler *sm;
    CM(mr_cuda_sampler_create((int)max_b, &sm));
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));

    /* the call's fixed cost: the same call on a 32-id row (parameters up, a launch, results down,
     * one synchronisation), which no kernel speed removes */
    {
        double t[21];
        mr_sample_row r1 = {.row = 0, .temperature = 1.0f, .top_p = 1.0f, .n_top = 5, .u = 0.5};
        for (int r = 0; r < 24; r++) {
            const double t0 = bench_now_s();
            CM(mr_cuda_sample(sm, d_x, 1, 32, &r1, 1, tok, res, st));
            if (r >= 3) t[r - 3] = (bench_now_s() - t0) * 1e3;
        }
        const double floor_ms = bench_median(t, 21);
        printf("call floor (32 ids, 1 row): %.4f ms\n", floor_ms);
        bench_json(json, "{\"op\":\"sample_call_floor\",\"ms\":%.5f}", floor_ms);
    }
    printf("%-8s %5s %10s %9s %9s %10s %10s %10s %10s %9s %7s\n", "params", "batch", "device_ms",
           "1blk_ms", "8blk_ms", "down_ms", "host_ms", "hostpath", "limit_ms", "speedup", "onhost");
    for (int pi = 0; pi < N_PSETS; pi++)
        for (int bi = 0; bi < nb; bi++) {
            const int B = (int)batches[bi];
            const pset *ps = &psets[pi];
            for (int i = 0; i < B; i++)
                rows[i] = (mr_sample_row){.row = i,
                                          .temperature = ps->temperature,
                                          .top_p = ps->top_p,
                                          .top_k = ps->top_k,
                                          .n_top = 5,
                                          .u = (double)(mr_splitmix64(&rng) >> 11) * 0x1p-53};
            /* device: the whole call */
            const int reps = 21;
            double t_dev[21], t_down[21], t_host[21];
            double dev_split[2];
            for (int sp = 0; sp < 3; sp++) { /* 1 block per row, 8 (a cluster), the default */
                CM(mr_cuda_sampler_set_split(sm, sp == 0 ? 1 : sp == 1 ? 8 : 0));
                for (int w = 0; w < 3; w++)
                    CM(mr_cuda_sample(sm, d_x, B, VOCAB, rows, B, tok, res, st));
                for (int r = 0; r < reps; r++) {
                    const double t0 = bench_now_s();
                    CM(mr_cuda_sample(sm, d_x, B, VOCAB, rows, B, tok, res, st));
                    t_dev[r] = (bench_now_s() - t0) * 1e3;
                }
                if (sp < 2) dev_split[sp] = bench_median(t_dev, reps);
            }
            int on_host = 0;
            for (int i = 0; i < B; i++) on_host += tok[i] == MR_SAMPLE_ON_HOST;
            /* host path: the rows down, then the reference per row */
            const int hreps = B >= 64 ? 3 : 7;
            for (int r = 0; r < hreps; r++) {
                double t0 = bench_now_s();
                CK(cudaMemcpyAsync(pinned, d_x, (size_t)B * row_bytes, cudaMemcpyDeviceToHost, st));
                CK(cudaStreamSynchronize(st));
                const double t1 = bench_now_s();
                for (int i = 0; i < B; i++)
                    mr_sample_ref(&rows[i], pinned + (size_t)i * VOCAB, VOCAB, 1.0f, NULL, 0, work,
                                  &res[0]);
                t_down[r] = (t1 - t0) * 1e3;
                t_host[r] = (bench_now_s() - t1) * 1e3;
            }
            const double dev = bench_median(t_dev, reps), down = bench_median(t_down, hreps),
                         host = bench_median(t_host, hreps);
            const double limit = (double)B * (double)row_bytes / bw * 1e3;
            printf("%-8s %5d %10.4f %9.4f %9.4f %10.4f %10.3f %10.3f %10.4f %8.0fx %7d\n", ps->name,
                   B, dev, dev_split[0], dev_split[1], down, host, down + host, limit,
                   (down + host) / dev, on_host);
            bench_json(json,
                       "{\"op\":\"sample\",\"params\":\"%s\",\"batch\":%d,\"vocab\":%d,"
                       "\"device_ms\":%.5f,\"device_1blk_ms\":%.5f,\"device_8blk_ms\":%.5f,"
                       "\"download_ms\":%.5f,\"host_sample_ms\":%.4f,"
                       "\"limit_ms\":%.5f,\"copy_bw_gbs\":%.1f,\"on_host_rows\":%d}",
                       ps->name, B, VOCAB, dev, dev_split[0], dev_split[1], down, host, limit,
                       bw / 1e9, on_host);
        }
    mr_cuda_sampler_destroy(sm);
    CK(cudaStreamDestroy(st));
    CK(cudaFreeHost(pinned));
    bench_dfree(d_x);
    free(h_x);
    free(work);
    free(rows);
    free(tok);
    free(res);
    if (json) fclose(json);
    return 0;
}
