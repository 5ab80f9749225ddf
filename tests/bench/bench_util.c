/* bench_util.c — host side of the benchmark helpers (bench_util.h). */
#include "tests/bench/bench_util.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

int bench_probe_device(struct cudaDeviceProp *prop) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        printf("no CUDA device (%s): skipped\n",
               e != cudaSuccess ? cudaGetErrorString(e) : "count 0");
        return -1;
    }
    CK(cudaSetDevice(0));
    CK(cudaFree(0)); /* create the context */
    CK(cudaGetDeviceProperties(prop, 0));
    return 0;
}

/* Live allocations of bench_dmalloc, for bench_dmem_live / bench_dmem_peak. */
enum { BENCH_MAX_ALLOCS = 4096 };
static struct {
    void *p;
    size_t bytes;
} g_allocs[BENCH_MAX_ALLOCS];
static int g_n_allocs;
static size_t g_live, g_peak;

size_t bench_dmem_live(void) {
    return g_live;
}
size_t bench_dmem_peak(void) {
    return g_peak;
}
void bench_dmem_reset_peak(void) {
    g_peak = g_live;
}

void *bench_dmalloc(size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        fprintf(stderr, "cudaMalloc(%.3f GiB) failed: %s (free %.3f of %.3f GiB)\n",
                (double)bytes / (1 << 30), cudaGetErrorString(e), (double)fr / (1 << 30),
                (double)tot / (1 << 30));
        exit(1);
    }
    if (g_n_allocs < BENCH_MAX_ALLOCS) {
        g_allocs[g_n_allocs].p = p;
        g_allocs[g_n_allocs++].bytes = bytes;
        g_live += bytes;
        if (g_live > g_peak) g_peak = g_live;
    }
    return p;
}

void bench_dfree(void *p) {
    if (!p) return;
    for (int i = 0; i < g_n_allocs; i++)
        if (g_allocs[i].p == p) {
            g_live -= g_allocs[i].bytes;
            g_allocs[i] = g_allocs[--g_n_allocs];
            break;
        }
    CK(cudaFree(p));
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, int n) {
    if (n <= 0) return 0.0;
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double bench_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double bench_copy_bw(void) {
    const size_t bytes = (size_t)2 << 30;
    void *a = bench_dmalloc(bytes), *b = bench_dmalloc(bytes);
    bench_fill_bf16(a, bytes / 2, 7, 1.0f, 0);
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    double t[15];
    for (int i = 0; i < 18; i++) {
        CK(cudaEventRecord(e0, 0));
        CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, 0));
        CK(cudaEventRecord(e1, 0));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (i >= 3) t[i - 3] = ms;
    }
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    bench_dfree(a);
    bench_dfree(b);
    return 2.0 * (double)bytes / (bench_median(t, 15) * 1e-3);
}

double bench_gemm_rate(void) {
    const int n = 8192;
    uint16_t *a = bench_dmalloc((size_t)n * n * 2), *b = bench_dmalloc((size_t)n * n * 2);
    uint16_t *c = bench_dmalloc((size_t)n * n * 2);
    bench_fill_bf16(a, (size_t)n * n, 11, 1.0f, 0);
    bench_fill_bf16(b, (size_t)n * n, 12, 1.0f, 0);
    cublasHandle_t h;
    CB(cublasCreate(&h));
    const float one = 1.0f, zero = 0.0f;
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    double t[10];
    for (int i = 0; i < 13; i++) {
        CK(cudaEventRecord(e0, 0));
        CB(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &one, a, CUDA_R_16BF, n, b,
                        CUDA_R_16BF, n, &zero, c, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                        CUBLAS_GEMM_DEFAULT));
        CK(cudaEventRecord(e1, 0));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (i >= 3) t[i - 3] = ms;
    }
    CB(cublasDestroy(h));
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    bench_dfree(a);
    bench_dfree(b);
    bench_dfree(c);
    return 2.0 * n * (double)n * n / (bench_median(t, 10) * 1e-3);
}

enum { BENCH_MAX_REPS = 64 };

double bench_time(bench_fn fn, void *arg, int warm, int reps, int inner, cudaStream_t st) {
    if (reps > BENCH_MAX_REPS) reps = BENCH_MAX_REPS;
    if (reps < 1) reps = 1;
    if (inner < 1) inner = 1;
    int iter = 0;
    for (int i = 0; i < warm; i++) fn(arg, iter++, st);
    CK(cudaStreamSynchronize(st));
    cudaEvent_t ev[BENCH_MAX_REPS][2];
    for (int r = 0; r < reps; r++) {
        CK(cudaEventCreate(&ev[r][0]));
        CK(cudaEventCreate(&ev[r][1]));
    }
    for (int r = 0; r < reps; r++) {
        CK(cudaEventRecord(ev[r][0], st));
        for (int k = 0; k < inner; k++) fn(arg, iter++, st);
        CK(cudaEventRecord(ev[r][1], st));
    }
    CK(cudaStreamSynchronize(st));
    CK(cudaGetLastError());
    double t[BENCH_MAX_REPS];
    for (int r = 0; r < reps; r++) {
        float ms;
        CK(cudaEventElapsedTime(&ms, ev[r][0], ev[r][1]));
        t[r] = ms / inner;
        CK(cudaEventDestroy(ev[r][0]));
        CK(cudaEventDestroy(ev[r][1]));
    }
    return bench_median(t, reps);
}

void bench_json(FILE *json, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    if (json) {
        va_start(ap, fmt);
        vfprintf(json, fmt, ap);
        va_end(ap);
        fputc('\n', json);
        fflush(json);
    }
}

int bench_parse_list(const char *s, long *out, int max) {
    int n = 0;
    while (*s && n < max) {
        char *end;
        out[n++] = strtol(s, &end, 10);
        if (*end == 'K' || *end == 'k') out[n - 1] *= 1024, end++;
        if (*end == 'M' || *end == 'm') out[n - 1] *= 1048576, end++;
        if (*end != ',') break;
        s = end + 1;
    }
    return n;
}

/* The value after "key": in a JSON line, as text (strings without quotes); 0 if absent. */
static int json_field(const char *line, const char *key, char *val, size_t cap) {
    char pat[48];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    if (!p) return 0;
    p += strlen(pat);
    while (*p == ' ') p++;
    const int quoted = *p == '"';
    if (quoted) p++;
    size_t i = 0;
    while (*p && i + 1 < cap && (quoted ? *p != '"' : (*p != ',' && *p != '}'))) val[i++] = *p++;
    val[i] = 0;
    return 1;
}

int bench_peer_load(const char *path, bench_peer *out, int max) {
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f) return 0;
    char line[1024], v[64];
    int n = 0;
    while (n < max && fgets(line, sizeof line, f)) {
        bench_peer p;
        memset(&p, 0, sizeof p);
        if (!json_field(line, "op", p.op, sizeof p.op) ||
            !json_field(line, "impl", p.impl, sizeof p.impl))
            continue;
        if (!json_field(line, "n", v, sizeof v)) continue;
        p.n = strtol(v, NULL, 10);
        if (json_field(line, "ctx", v, sizeof v)) p.ctx = strtol(v, NULL, 10);
        if (!json_field(line, "ms", v, sizeof v)) continue;
        p.ms = strtod(v, NULL);
        out[n++] = p;
    }
    fclose(f);
    return n;
}

double bench_peer_ms(const bench_peer *p, int np, const char *op, const char *impl, long n,
                     long ctx) {
    for (int i = 0; i < np; i++)
        if (!strcmp(p[i].op, op) && !strcmp(p[i].impl, impl) && p[i].n == n && p[i].ctx == ctx)
            return p[i].ms;
    return 0.0;
}
