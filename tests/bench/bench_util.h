/* bench_util.h — what the attention benchmarks (bench_cuda_attention, bench_attn_slice) share:
 * check macros that exit, event timing with a median, the two ceilings measured in the same run
 * (device-to-device copy bandwidth, bf16 GEMM rate), random fills on the device, JSON lines.
 *
 *   if (bench_probe_device(&prop) != 0) return 77;      // no device: ctest SKIP
 *   const double bw = bench_copy_bw(), tc = bench_gemm_rate();
 *   double ms = bench_time(run, &args, warm, reps, inner, stream);
 *   bench_json(json, "{\"op\":\"x\",\"ms\":%.4f}", ms);  // stdout and the --json file
 *
 * Not part of the engine: every failure prints the statement and exits(1). */
#ifndef MR_BENCH_UTIL_H
#define MR_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "common/status.h"
#include "tests/gpu/gpu_check.h" /* CK, CB, CM */

#ifdef __cplusplus
extern "C" {
#endif

/* 0 with the properties of device 0 filled in; -1 (after a message) when there is none. */
int bench_probe_device(struct cudaDeviceProp *prop);

/* cudaMalloc that exits with the size on failure; bench_dfree accepts NULL. */
void *bench_dmalloc(size_t bytes);
void bench_dfree(void *p);
/* Bytes held through bench_dmalloc now, and the most held at once since the last reset. */
size_t bench_dmem_live(void);
size_t bench_dmem_peak(void);
void bench_dmem_reset_peak(void);

double bench_median(double *v, int n);
double bench_now_s(void);

/* Device-to-device copy bandwidth (2 GiB copy, bytes read + written per second, median of 15). */
double bench_copy_bw(void);
/* bf16 GEMM rate in flop/s: 8192³ cublasGemmEx on random data, fp32 accumulation, median of 10. */
double bench_gemm_rate(void);

/* One timed call: enqueue the work of repetition `iter` on `st` (iter counts all calls, warm-up
 * included, so a run can rotate among input sets). */
typedef void (*bench_fn)(void *arg, int iter, cudaStream_t st);

/* Runs warm calls, synchronises, then reps repetitions of `inner` back-to-back calls, each
 * repetition between two events; returns the median over repetitions of ms per call. The
 * launches of one repetition are enqueued ahead of the device, so launch latency is hidden the
 * way a captured graph hides it. Checks the last error and synchronises before returning. */
double bench_time(bench_fn fn, void *arg, int warm, int reps, int inner, cudaStream_t st);

/* Random fills on the device (uniform in [-scale, scale), counter hash of (seed, i)). */
void bench_fill_f32(float *dst, size_t n, uint64_t seed, float scale, cudaStream_t st);
void bench_fill_bf16(uint16_t *dst, size_t n, uint64_t seed, float scale, cudaStream_t st);

/* printf-style; the line goes to stdout and, when json != NULL, to that file (flushed). */
void bench_json(FILE *json, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "1,16,64" → out[]; returns the count (at most max). */
int bench_parse_list(const char *s, long *out, int max);

/* A peer measurement from a JSON-lines file written by tests/bench/peer_attention.py. */
typedef struct bench_peer {
    char op[40], impl[40];
    long n, ctx;
    double ms;
} bench_peer;

/* Reads every line with "op", "impl", "n", "ctx" and "ms" keys; returns the count (0 when the
 * file is missing). */
int bench_peer_load(const char *path, bench_peer *out, int max);
/* ms of the first line matching (op, impl, n, ctx), or 0. */
double bench_peer_ms(const bench_peer *p, int np, const char *op, const char *impl, long n,
                     long ctx);

#ifdef __cplusplus
}
#endif

#endif
