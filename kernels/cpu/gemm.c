/* gemm.c — y = x · Wᵀ for bf16 or f32 weights, float32 activations, threaded over row blocks.
 *
 * Microkernels compute up to 4 rows × 4 tokens at once so a weight vector, once loaded and
 * widened, feeds several tokens. Summation order invariant (what makes batching not change
 * results): the dot product of one row with one token always uses the same lane assignment
 * (k mod lanes), the same zero-padded tail and the same final horizontal reduction, whatever the
 * tile it is computed in. The instruction set is picked once at start-up (AVX-512, AVX2, scalar),
 * so a process is consistent with itself. */
#include <string.h>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define MR_X86 1
#endif

typedef void (*tile_fn)(const void *w, size_t ldw, int R, const float *x, size_t ldx, int T, int K,
                        float *y, size_t ldy);

/* ---- scalar ---------------------------------------------------------------------------------- */

static float w_at(const void *w, int is_bf16, size_t i) {
    return is_bf16 ? mr_bf16_to_f32(((const uint16_t *)w)[i]) : ((const float *)w)[i];
}

static void tile_scalar(const void *w, size_t ldw, int R, const float *x, size_t ldx, int T, int K,
                        float *y, size_t ldy, int is_bf16) {
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) {
            float lanes[8] = {0};
            for (int k = 0; k < K; k++)
                lanes[k & 7] += w_at(w, is_bf16, r * ldw + k) * x[t * ldx + k];
            y[t * ldy + r] = ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) +
                             ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
        }
}
static void tile_scalar_bf16(const void *w, size_t ldw, int R, const float *x, size_t ldx, int T,
                             int K, float *y, size_t ldy) {
    tile_scalar(w, ldw, R, x, ldx, T, K, y, ldy, 1);
}
static void tile_scalar_f32(const void *w, size_t ldw, int R, const float *x, size_t ldx, int T,
                            int K, float *y, size_t ldy) {
    tile_scalar(w, ldw, R, x, ldx, T, K, y, ldy, 0);
}

#ifdef MR_X86
/* ---- AVX-512 --------------------------------------------------------------------------------- */
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))

static inline T512 __m512 load_w512(const void *w, int is_bf16, size_t off, __mmask16 m) {
    if (is_bf16) {
        __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)w + off);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    return _mm512_maskz_loadu_ps(m, (const float *)w + off);
}

/* Accumulators are named variables, not an array: GCC then keeps all 16 in registers (an
 * array of vectors is spilled to the stack on every iteration). Unused ones fold away since R and
 * T are constants at every call site. */
#define FMA_ROW512(r, wv)                                                                          \
    do {                                                                                           \
        a##r##0 = _mm512_fmadd_ps(wv, x0, a##r##0);                                                \
        if (T > 1) a##r##1 = _mm512_fmadd_ps(wv, x1, a##r##1);                                     \
        if (T > 2) a##r##2 = _mm512_fmadd_ps(wv, x2, a##r##2);                                     \
        if (T > 3) a##r##3 = _mm512_fmadd_ps(wv, x3, a##r##3);                                     \
    } while (0)
#define STORE_ROW512(r)                                                                            \
    do {                                                                                           \
        y[0 * ldy + r] = _mm512_reduce_add_ps(a##r##0);                                            \
        if (T > 1) y[1 * ldy + r] = _mm512_reduce_add_ps(a##r##1);                                 \
        if (T > 2) y[2 * ldy + r] = _mm512_reduce_add_ps(a##r##2);                                 \
        if (T > 3) y[3 * ldy + r] = _mm512_reduce_add_ps(a##r##3);                                 \
    } while (0)

static inline T512 __attribute__((always_inline)) void kern512(const void *w, size_t ldw,
                                                               const float *x, size_t ldx, int K,
                                                               float *y, size_t ldy, const int R,
                                                               const int T, const int is_bf16) {
    const __m512 z = _mm512_setzero_ps();
    __m512 a00 = z, a01 = z, a02 = z, a03 = z, a10 = z, a11 = z, a12 = z, a13 = z;
    __m512 a20 = z, a21 = z, a22 = z, a23 = z, a30 = z, a31 = z, a32 = z, a33 = z;
    /* Main loop with plain loads (masked loads are slow on some CPUs); then one masked,
     * zero-padded step for the tail, which adds into the same lanes. */
#define STEP512(k, m)                                                                              \
    do {                                                                                           \
        const __m512 x0 = _mm512_maskz_loadu_ps(m, x + (k));                                       \
        const __m512 x1 = T > 1 ? _mm512_maskz_loadu_ps(m, x + ldx + (k)) : z;                     \
        const __m512 x2 = T > 2 ? _mm512_maskz_loadu_ps(m, x + 2 * ldx + (k)) : z;                 \
        const __m512 x3 = T > 3 ? _mm512_maskz_loadu_ps(m, x + 3 * ldx + (k)) : z;                 \
        const __m512 w0 = load_w512(w, is_bf16, (k), m);                                           \
        FMA_ROW512(0, w0);                                                                         \
        if (R > 1) {                                                                               \
            const __m512 w1 = load_w512(w, is_bf16, ldw + (k), m);                                 \
            const __m512 w2 = load_w512(w, is_bf16, 2 * ldw + (k), m);                             \
            const __m512 w3 = load_w512(w, is_bf16, 3 * ldw + (k), m);                             \
            FMA_ROW512(1, w1);                                                                     \
            FMA_ROW512(2, w2);                                                                     \
            FMA_ROW512(3, w3);                                                                     \
        }                                                                                          \
    } while (0)
    int k = 0;
    const char *next = (const char *)w + (size_t)R * ldw * (is_bf16 ? 2 : 4); /* next row group */
    for (; k + 16 <= K; k += 16) {
        /* decode streams each weight once: fetch the next row group while this one computes */
        if (R > 1 && T == 1) {
            const size_t kb = (size_t)k * (is_bf16 ? 2 : 4), lb = ldw * (is_bf16 ? 2 : 4);
            _mm_prefetch(next + kb, _MM_HINT_T0);
            _mm_prefetch(next + lb + kb, _MM_HINT_T0);
            _mm_prefetch(next + 2 * lb + kb, _MM_HINT_T0);
            _mm_prefetch(next + 3 * lb + kb, _MM_HINT_T0);
        }
        STEP512(k, (__mmask16)0xffff);
    }
    if (k < K) STEP512(k, (__mmask16)((1u << (K - k)) - 1));
#undef STEP512
    STORE_ROW512(0);
    if (R > 1) {
        STORE_ROW512(1);
        STORE_ROW512(2);
        STORE_ROW512(3);
    }
}

#define DISPATCH_RT(KERN, BF)                                                                      \
    switch (R * 8 + T) {                                                                           \
    case 4 * 8 + 4:                                                                                \
        KERN(w, ldw, x, ldx, K, y, ldy, 4, 4, BF);                                                 \
        break;                                                                                     \
    case 4 * 8 + 3:                                                                                \
        KERN(w, ldw, x, ldx, K, y, ldy, 4, 3, BF);                                                 \
        break;                                                                                     \
    case 4 * 8 + 2:                                                                                \
        KERN(w, ldw, x, ldx, K, y, ldy, 4, 2, BF);                                                 \
        break;                                                                                     \
    case 4 * 8 + 1:                                                                                \
        KERN(w, ldw, x, ldx, K, y, ldy, 4, 1, BF);                                                 \
        break;                                                                                     \
    case 1 * 8 + 4:                                                                                \
        KERN(w, ldw, x, ldx, K, y, ldy, 1, 4, BF);                                                 \
        break;                                                                                     \
    case 1 * 8 + 3:                                                                                \
        KERN(w, ldw, x, ldx, K, y, ldy, 1, 3, BF);                                                 \
        break;                                                                                     \
    case 1 * 8 + 2:                                                                                \
        KERN(w, ldw, x, ldx, K, y, ldy, 1, 2, BF);                                                 \
        break;                                                                                     \
    default:                                                                                       \
        KERN(w, ldw, x, ldx, K, y, ldy, 1, 1, BF);                                                 \
        break;                                                                                     \
    }

static T512 void tile512_bf16(const void *w, size_t ldw, int R, const float *x, size_t ldx, int T,
                              int K, float *y, size_t ldy) {
    DISPATCH_RT(kern512, 1)
}
static T512 void tile512_f32(const void *w, size_t ldw, int R, const float *x, size_t ldx, int T,
                             int K, float *y, size_t ldy) {
    DISPATCH_RT(kern512, 0)
}

/* ---- AVX2 ------------------------------------------------------------------------------------ */
#define T256 __attribute__((target("avx2,fma")))

static inline T256 __m256 load_w256(const void *w, int is_bf16, size_t off) {
    if (is_bf16) {
        __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + off));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    return _mm256_loadu_ps((const float *)w + off);
}

static inline T256 float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    __m128 s = _mm_add_ps(lo, hi);
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#define FMA_ROW256(r, wv)                                                                          \
    do {                                                                                           \
        a##r##0 = _mm256_fmadd_ps(wv, x0, a##r##0);                                                \
        if (T > 1) a##r##1 = _mm256_fmadd_ps(wv, x1, a##r##1);                                     \
        if (T > 2) a##r##2 = _mm256_fmadd_ps(wv, x2, a##r##2);                                     \
        if (T > 3) a##r##3 = _mm256_fmadd_ps(wv, x3, a##r##3);                                     \
    } while (0)
#define STORE_ROW256(r)                                                                            \
    do {                                                                                           \
        y[0 * ldy + r] = hsum256(a##r##0);                                                         \
        if (T > 1) y[1 * ldy + r] = hsum256(a##r##1);                                              \
        if (T > 2) y[2 * ldy + r] = hsum256(a##r##2);                                              \
        if (T > 3) y[3 * ldy + r] = hsum256(a##r##3);                                              \
    } while (0)

static inline T256 __attribute__((always_inline)) void kern256(const void *w, size_t ldw,
                                                               const float *x, size_t ldx, int K,
                                                               float *y, size_t ldy, const int R,
                                                               const int T, const int is_bf16) {
    const __m256 z = _mm256_setzero_ps();
    __m256 a00 = z, a01 = z, a02 = z, a03 = z, a10 = z, a11 = z, a12 = z, a13 = z;
    float xb[4][8], wb[2][8]; /* zero-padded tail */
    for (int k = 0; k < K; k += 8) {
        const float *xp[4] = {x + k, x + ldx + k, x + 2 * ldx + k, x + 3 * ldx + k};
        __m256 w0, w1 = z;
        if (k + 8 > K) {
            memset(xb, 0, sizeof xb);
            memset(wb, 0, sizeof wb);
            for (int i = 0; k + i < K; i++) {
                for (int t = 0; t < T; t++) xb[t][i] = x[t * ldx + k + i];
                for (int r = 0; r < R; r++) wb[r][i] = w_at(w, is_bf16, r * ldw + k + i);
            }
            for (int t = 0; t < 4; t++) xp[t] = xb[t];
            w0 = _mm256_loadu_ps(wb[0]);
            if (R > 1) w1 = _mm256_loadu_ps(wb[1]);
        } else {
            w0 = load_w256(w, is_bf16, k);
            if (R > 1) w1 = load_w256(w, is_bf16, ldw + k);
        }
        const __m256 x0 = _mm256_loadu_ps(xp[0]);
        const __m256 x1 = T > 1 ? _mm256_loadu_ps(xp[1]) : z;
        const __m256 x2 = T > 2 ? _mm256_loadu_ps(xp[2]) : z;
        const __m256 x3 = T > 3 ? _mm256_loadu_ps(xp[3]) : z;
        FMA_ROW256(0, w0);
        if (R > 1) FMA_ROW256(1, w1);
    }
    STORE_ROW256(0);
    if (R > 1) STORE_ROW256(1);
}

/* AVX2 has 16 registers: use 2-row tiles (8 accumulators). */
#define DISPATCH_RT2(KERN, BF)                                                                     \
    switch (R * 8 + T) {                                                                           \
    case 2 * 8 + 4:                                                                                \
        KERN(w, ldw, x, ldx, K, y, ldy, 2, 4, BF);                                                 \
        break;                                                                                     \
    case 2 * 8 + 3:                                                                                \
        KERN(w, ldw, x, ldx, K, y, ldy, 2, 3, BF);                                                 \
        break;                                                                                     \
    case 2 * 8 + 2:                                                                                \
        KERN(w, ldw, x, ldx, K, y, ldy, 2, 2, BF);                                                 \
        break;                                                                                     \
    case 2 * 8 + 1:                                                                                \
        KERN(w, ldw, x, ldx, K, y, ldy, 2, 1, BF);                                                 \
        break;                                                                                     \
    case 1 * 8 + 4:                                                                                \
        KERN(w, ldw, x, ldx, K, y, ldy, 1, 4, BF);                                                 \
        break;                                                                                     \
    case 1 * 8 + 3:                                                                                \
        KERN(w, ldw, x, ldx, K, y, ldy, 1, 3, BF);                                                 \
        break;                                                                                     \
    case 1 * 8 + 2:                                                                                \
        KERN(w, ldw, x, ldx, K, y, ldy, 1, 2, BF);                                                 \
        break;                                                                                     \
    default:                                                                                       \
        KERN(w, ldw, x, ldx, K, y, ldy, 1, 1, BF);                                                 \
        break;                                                                                     \
    }

static T256 void tile256_bf16(const void *w, size_t ldw, int R, const float *x, size_t ldx, int T,
                              int K, float *y, size_t ldy) {
    DISPATCH_RT2(kern256, 1)
}
static T256 void tile256_f32(const void *w, size_t ldw, int R, const float *x, size_t ldx, int T,
                             int K, float *y, size_t ldy) {
    DISPATCH_RT2(kern256, 0)
}
#endif /* MR_X86 */

/* ---- selection and threading ----------------------------------------------------------------- */

typedef struct isa {
    /* tile kernels for bf16 and f32 weights */
    tile_fn bf16, f32;
    int rows; /* row tile */
    const char *name;
} isa;

static isa pick_isa(void) {
#ifdef MR_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
        return (isa){tile512_bf16, tile512_f32, 4, "avx512"};
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return (isa){tile256_bf16, tile256_f32, 2, "avx2"};
#endif
    return (isa){tile_scalar_bf16, tile_scalar_f32, 1, "scalar"};
}

static isa g_isa; /* set once by cpu_gemm_init() before any thread runs */

const char *cpu_gemm_isa(void);
const char *cpu_gemm_isa(void) {
    return g_isa.name;
}
void cpu_gemm_init(void);
void cpu_gemm_init(void) {
    if (!g_isa.bf16) g_isa = pick_isa();
}

typedef struct linear_job {
    const mr_matrix *w;
    const float *x;
    float *y;
    int n;
    int rows_per_task;
} linear_job;

static void linear_task(void *ctx, int task, int thread) {
    const linear_job *j = ctx;
    const mr_matrix *w = j->w;
    const int K = w->cols, r0 = task * j->rows_per_task;
    const int r1 = r0 + j->rows_per_task < w->rows ? r0 + j->rows_per_task : w->rows;
    const size_t esz = mr_dtype_size(w->dtype);
    const tile_fn fn = w->dtype == MR_DTYPE_BF16 ? g_isa.bf16 : g_isa.f32;
    for (int t0 = 0; t0 < j->n; t0 += 4) {
        int T = j->n - t0 < 4 ? j->n - t0 : 4;
        int r = r0;
        for (; r + g_isa.rows <= r1; r += g_isa.rows)
            fn((const char *)w->data + (size_t)r * K * esz, (size_t)K, g_isa.rows,
               j->x + (size_t)t0 * K, (size_t)K, T, K, j->y + (size_t)t0 * w->rows + r,
               (size_t)w->rows);
        for (; r < r1; r++)
            fn((const char *)w->data + (size_t)r * K * esz, (size_t)K, 1, j->x + (size_t)t0 * K,
               (size_t)K, T, K, j->y + (size_t)t0 * w->rows + r, (size_t)w->rows);
    }
}

void cpu_linear(cpu_impl *c, const mr_matrix *w, const float *x, int n, float *y) {
    if (n <= 0) return;
    /* ~4 tasks per thread for balance, at least 16 rows (a multiple of 4) per task */
    int tasks = c->n_threads * 4;
    int rpt = (w->rows + tasks - 1) / tasks;
    rpt = (rpt + 3) & ~3;
    if (rpt < 16) rpt = 16;
    linear_job j = {w, x, y, n, rpt};
    mr_pool_run(c->pool, linear_task, &j, (w->rows + rpt - 1) / rpt);
}

float cpu_dot_f32(const float *a, const float *b, int n) {
    float y;
    mr_matrix m = {a, MR_DTYPE_F32, 1, n};
    g_isa.f32(m.data, (size_t)n, 1, b, (size_t)n, 1, n, &y, 1);
    return y;
}

const char *mr_cpu_backend_isa(void) {
    cpu_gemm_init();
    return g_isa.name;
}
