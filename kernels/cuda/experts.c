/* experts.c — the CUDA expert executor: memory plan, loading/quantising, and one call of the moe
 * op as a fixed sequence of launches (see cuda_experts.h). Host code only; kernels are in the .cu
 * files behind cuda_internal.h. */
#include "kernels/cuda/cuda_experts.h"

#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/dtype.h"
#include "common/log.h"
#include "kernels/cuda/coord_ops.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_internal.h"

#define CX_ALIGN            256u
#define CX_BLAS_WS          ((size_t)32 << 20) /* cuBLAS workspace */
#define CX_STAGE_ELEMS      ((size_t)16 << 20) /* load staging, bf16 elements (32 MiB) */
#define CX_SPARE_ROWS       32 /* rows the wq kernel may read past a job's last row */
#define CX_MARGIN           ((size_t)256 << 20) /* left free for the runtime's own allocations */
#define CX_GPART            ((size_t)16 << 20)  /* split-K partial sums, floats (64 MiB) */
#define CX_AUTO_GROUPED_MAX 2048                /* bf16 auto: grouped GEMM up to this many slots */
/* int8/int4 auto: experts of small_max < rows <= this on the mma.sync tile kernel, more rows on
 * the wgmma one (measured crossover, docs/performance.md) */
#define CX_AUTO_TILED_MAX 48
/* bf16 + split activations: the GEMV kernel for experts of up to this many rows, instead of two
 * cuBLAS GEMMs per matrix (docs/performance.md, issue 9) */
#define CX_GEMV_MAX_N MR_CUDA_GEMV_KERNEL_MAX_N

/* Padded dimensions of one layer's experts (cuda_internal.h: weight layout). */
typedef struct cx_dims {
    int H, I, Ip, N13, Hp, Kx, Ka, Kp13, Kp2, max_slots;
    size_t w13_q, w13_s, w2_q, w2_s; /* bytes per expert */
    size_t meta_cap;                 /* bytes of one call's metadata, at most */
} cx_dims;

struct mr_cuda_experts {
    mr_cuda_experts_params p;
    unsigned char *held; /* [n_layers][n_experts] own copy */
    cx_dims d;
    int num_sms, small_max, gemm, path_auto, act;
    int wqg_ok;          /* the wgmma tile kernel runs here for this format and these dimensions */
    int occ[2][3][2][4]; /* wq blocks per SM by [split act][nt 1/2/4][which][ks 1/2/4/8] */
    int wq_waves, wq_ks, wq_min_units; /* wq launch split (set_wq_split); 0 (calloc): cx_wq_auto */
    uint16_t *xg_lo, *ab_lo; /* act SPLIT: the lo parts, same shapes as xg, ab; else NULL */
    float *gpart;            /* [CX_GPART] split-K partials */
    int *gcount; /* [n_experts · max(N13, Hp)/32] split-K counters, zero between launches */
    cudaStream_t st, aux; /* aux: dequantisation ahead of the GEMMs (int8/int4) */
    cublasHandle_t blas;
    void *blas_ws;
    uint8_t *wslab;         /* all experts' q, then all scales */
    mr_cuda_qmat *w13, *w2; /* [n_layers][n_experts]; q == NULL if not held */
    uint8_t *ws;            /* workspace slab */
    float *xin, *outd, *y;  /* [max_tokens][H], [max_tokens][H], [max_slots][H] f32 */
    uint16_t *xg, *ab;      /* bf16 [max_slots+32][Kx], [max_slots+32][Ka] */
    uint16_t *gb;           /* G [max_slots][N13]: bf16, or fp32 (cast) with split activations */
    uint16_t *y16;          /* bf16 [max_slots][H] (grouped GEMM output; bf16 format only) */
    uint16_t *deq[2];       /* bf16 W13 [N13][Kp13] then W2 [Hp][Kp2] (int8/int4 only) */
    uint16_t *stage;        /* bf16 [CX_STAGE_ELEMS] load staging */
    uint8_t *meta_dev;      /* [meta_cap] */
    uint8_t *meta_host[2];  /* pinned, alternating between calls */
    cudaEvent_t ev_meta[2]; /* the copy out of meta_host[i] has completed */
    int meta_slot;
    cudaEvent_t ev_ready[2], ev_free[2]; /* deq[i] filled / no longer read */
    int deq_next;
    float *pin_x, *pin_out; /* pinned [max_tokens][H] */
    uint16_t *pin_stage;    /* pinned [CX_STAGE_ELEMS] */
    /* host planning scratch, [n_experts] each */
    int32_t *cnt, *off, *fill, *large, *small, *tiny;
    int *gm, *gn, *gk, *glda, *gldb, *gldc, *gsize;
    float *galpha, *gbeta;
    cublasOperation_t *gta, *gtb;
};

static size_t cx_al(size_t v) {
    return (v + CX_ALIGN - 1) / CX_ALIGN * CX_ALIGN;
}

/* Measured on an H200 (docs/performance.md): for bf16, cuBLAS streamed the weights faster than
 * the wq kernel at every size, so auto sends every bf16 expert to cuBLAS (grouped GEMM for 3..2048
 * slots, per-expert GEMMs otherwise); for int8/int4 the wq kernel wins up to about 24 tokens per
 * expert, the mma.sync tile kernel up to 48, the wgmma one above. */
int mr_cuda_experts_default_small_max(int fmt) {
    return fmt == MR_CUDA_WFMT_BF16 ? 0 : 24;
}

const char *mr_cuda_wfmt_name(int fmt) {
    return fmt == MR_CUDA_WFMT_BF16 ? "bf16" : fmt == MR_CUDA_WFMT_INT8 ? "int8" : "int4";
}

int mr_cuda_wfmt_parse(const char *s) {
    if (strcmp(s, "bf16") == 0) return MR_CUDA_WFMT_BF16;
    if (strcmp(s, "int8") == 0) return MR_CUDA_WFMT_INT8;
    if (strcmp(s, "int4") == 0) return MR_CUDA_WFMT_INT4;
    return -1;
}

static mr_status cx_dims_init(const mr_cuda_experts_params *p, cx_dims *d) {
    if (!p || p->fmt < 0 || p->fmt > 2 || p->hidden <= 0 || p->inter <= 0 || p->top_k <= 0 ||
        p->max_tokens <= 0 || p->n_layers <= 0 || p->n_experts <= 0 || p->hidden % 2 ||
        (p->gemm != MR_CUDA_GEMM_PER_EXPERT && p->gemm != MR_CUDA_GEMM_GROUPED &&
         p->gemm != MR_CUDA_GEMM_TILED && p->gemm != MR_CUDA_GEMM_WGMMA) ||
        (long)p->max_tokens * p->top_k > (1L << 30)) {
        MR_LOG_ERROR(MR_LOG_GPU, "cuda experts: bad parameters");
        return MR_ERR_INVALID;
    }
    const int ck = mr_cuda_fmt_chunk(p->fmt);
    memset(d, 0, sizeof *d);
    d->H = p->hidden;
    d->I = p->inter;
    d->Ip = mr_cuda_round_up(p->inter, 16);
    d->N13 = 2 * d->Ip;
    d->Hp = mr_cuda_round_up(p->hidden, 32);
    d->Kx = mr_cuda_round_up(p->hidden, 128);
    d->Ka = mr_cuda_round_up(p->inter, 128);
    d->Kp13 = mr_cuda_round_up(p->hidden, ck);
    d->Kp2 = mr_cuda_round_up(p->inter, ck);
    d->max_slots = p->max_tokens * p->top_k;
    d->w13_q = (size_t)d->N13 * mr_cuda_fmt_row_bytes(p->fmt, d->Kp13);
    d->w13_s = mr_cuda_fmt_scale_bytes(p->fmt, d->N13, d->Kp13);
    d->w2_q = (size_t)d->Hp * mr_cuda_fmt_row_bytes(p->fmt, d->Kp2);
    d->w2_s = mr_cuda_fmt_scale_bytes(p->fmt, d->Hp, d->Kp2);
    const size_t E = (size_t)p->n_experts, slots = (size_t)d->max_slots;
    /* jobs: one per wq-path expert, or per tile-kernel job (an expert's tokens in pieces of at
     * most MR_CUDA_WQT_MAX_TOKENS) */
    const size_t jobs = 2 * E + slots / MR_CUDA_WQT_MAX_TOKENS;
    d->meta_cap = 8 * 16 + jobs * sizeof(mr_cuda_job) + 6 * E * sizeof(void *) + slots * 4 * 3;
    return MR_OK;
}

mr_status mr_cuda_experts_plan(const mr_cuda_experts_params *p, mr_cuda_mem_plan *out) {
    cx_dims d;
    MR_CHECK(cx_dims_init(p, &d));
    mr_cuda_mem_plan m = {0};
    m.expert_bytes = cx_al(d.w13_q) + cx_al(d.w2_q) + cx_al(d.w13_s) + cx_al(d.w2_s);
    for (size_t i = 0; i < (size_t)p->n_layers * (size_t)p->n_experts; i++)
        m.n_held += p->held ? (p->held[i] != 0) : 1;
    m.weights_bytes = (size_t)m.n_held * m.expert_bytes;
    const size_t T = (size_t)p->max_tokens, S = (size_t)d.max_slots, H = (size_t)d.H;
    const size_t sp = p->act == MR_CUDA_ACT_SPLIT ? 2 : 1; /* lo parts, fp32 G */
    m.workspace_bytes = 2 * cx_al(T * H * 4) + sp * cx_al((S + CX_SPARE_ROWS) * (size_t)d.Kx * 2) +
                        cx_al(S * (size_t)d.N13 * 2 * sp) +
                        sp * cx_al((S + CX_SPARE_ROWS) * (size_t)d.Ka * 2) + cx_al(S * H * 4) +
                        (p->fmt == MR_CUDA_WFMT_BF16 ? cx_al(S * H * 2) : 0) + cx_al(d.meta_cap) +
                        cx_al(CX_GPART * 4) +
                        cx_al((size_t)p->n_experts * (size_t)(MR_MAX(d.N13, d.Hp) / 32) * 4);
    m.scratch_bytes = cx_al(CX_STAGE_ELEMS * 2);
    if (p->fmt != MR_CUDA_WFMT_BF16)
        m.scratch_bytes +=
            2 * cx_al(((size_t)d.N13 * (size_t)d.Kp13 + (size_t)d.Hp * (size_t)d.Kp2) * 2);
    m.blas_bytes = CX_BLAS_WS;
    m.total_bytes = m.weights_bytes + m.workspace_bytes + m.scratch_bytes + m.blas_bytes;
    m.host_pinned_bytes = 2 * d.meta_cap + 2 * T * H * 4 + CX_STAGE_ELEMS * 2;
    *out = m;
    return MR_OK;
}

void mr_cuda_experts_destroy(mr_cuda_experts *cx) {
    if (!cx) return;
    if (cx->st) cudaStreamSynchronize(cx->st);
    if (cx->aux) cudaStreamSynchronize(cx->aux);
    if (cx->blas) cublasDestroy(cx->blas);
    for (int i = 0; i < 2; i++) {
        if (cx->ev_meta[i]) cudaEventDestroy(cx->ev_meta[i]);
        if (cx->ev_ready[i]) cudaEventDestroy(cx->ev_ready[i]);
        if (cx->ev_free[i]) cudaEventDestroy(cx->ev_free[i]);
        if (cx->meta_host[i]) cudaFreeHost(cx->meta_host[i]);
    }
    if (cx->st) cudaStreamDestroy(cx->st);
    if (cx->aux) cudaStreamDestroy(cx->aux);
    if (cx->pin_x) cudaFreeHost(cx->pin_x);
    if (cx->pin_out) cudaFreeHost(cx->pin_out);
    if (cx->pin_stage) cudaFreeHost(cx->pin_stage);
    cudaFree(cx->wslab);
    cudaFree(cx->ws);
    cudaFree(cx->blas_ws);
    free(cx->w13);
    free(cx->w2);
    free(cx->held);
    free(cx->cnt);
    free(cx->off);
    free(cx->fill);
    free(cx->large);
    free(cx->small);
    free(cx->tiny);
    free(cx->gm);
    free(cx->gn);
    free(cx->gk);
    free(cx->glda);
    free(cx->gldb);
    free(cx->gldc);
    free(cx->gsize);
    free(cx->galpha);
    free(cx->gbeta);
    free(cx->gta);
    free(cx->gtb);
    free(cx);
}

static double cx_gib(size_t b) {
    return (double)b / (double)(1u << 30);
}

/* Carve the workspace slab into its buffers (layout of mr_cuda_experts_plan). */
static void cx_carve(mr_cuda_experts *cx) {
    const cx_dims *d = &cx->d;
    const size_t T = (size_t)cx->p.max_tokens, S = (size_t)d->max_slots, H = (size_t)d->H;
    uint8_t *q = cx->ws;
#define CX_TAKE(ptr, type, bytes)                                                                  \
    do {                                                                                           \
        ptr = (type *)q;                                                                           \
        q += cx_al(bytes);                                                                         \
    } while (0)
    CX_TAKE(cx->xin, float, T *H * 4);
    CX_TAKE(cx->outd, float, T *H * 4);
    const int split = cx->p.act == MR_CUDA_ACT_SPLIT;
    CX_TAKE(cx->xg, uint16_t, (S + CX_SPARE_ROWS) * (size_t)d->Kx * 2);
    if (split) CX_TAKE(cx->xg_lo, uint16_t, (S + CX_SPARE_ROWS) * (size_t)d->Kx * 2);
    CX_TAKE(cx->gb, uint16_t, S * (size_t)d->N13 * 2 * (split ? 2 : 1));
    CX_TAKE(cx->ab, uint16_t, (S + CX_SPARE_ROWS) * (size_t)d->Ka * 2);
    if (split) CX_TAKE(cx->ab_lo, uint16_t, (S + CX_SPARE_ROWS) * (size_t)d->Ka * 2);
    CX_TAKE(cx->y, float, S *H * 4);
    if (cx->p.fmt == MR_CUDA_WFMT_BF16) CX_TAKE(cx->y16, uint16_t, S * H * 2);
    CX_TAKE(cx->meta_dev, uint8_t, d->meta_cap);
    CX_TAKE(cx->gpart, float, CX_GPART * 4);
    CX_TAKE(cx->gcount, int, (size_t)cx->p.n_experts *(size_t)(MR_MAX(d->N13, d->Hp) / 32) * 4);
    CX_TAKE(cx->stage, uint16_t, CX_STAGE_ELEMS * 2);
    if (cx->p.fmt != MR_CUDA_WFMT_BF16) {
        const size_t deq = ((size_t)d->N13 * (size_t)d->Kp13 + (size_t)d->Hp * (size_t)d->Kp2) * 2;
        CX_TAKE(cx->deq[0], uint16_t, deq);
        CX_TAKE(cx->deq[1], uint16_t, deq);
    }
#undef CX_TAKE
}

static mr_status cx_alloc_host(mr_cuda_experts *cx) {
    const size_t E = (size_t)cx->p.n_experts, LE = (size_t)cx->p.n_layers * E;
    cx->held = malloc(LE);
    cx->w13 = calloc(LE, sizeof *cx->w13);
    cx->w2 = calloc(LE, sizeof *cx->w2);
    cx->cnt = calloc(E, 4);
    cx->off = calloc(E, 4);
    cx->fill = calloc(E, 4);
    cx->large = calloc(E, 4);
    cx->small = calloc(E, 4);
    cx->tiny = calloc(E, 4);
    cx->gm = calloc(E, sizeof(int));
    cx->gn = calloc(E, sizeof(int));
    cx->gk = calloc(E, sizeof(int));
    cx->glda = calloc(E, sizeof(int));
    cx->gldb = calloc(E, sizeof(int));
    cx->gldc = calloc(E, sizeof(int));
    cx->gsize = calloc(E, sizeof(int));
    cx->galpha = calloc(E, sizeof(float));
    cx->gbeta = calloc(E, sizeof(float));
    cx->gta = calloc(E, sizeof(cublasOperation_t));
    cx->gtb = calloc(E, sizeof(cublasOperation_t));
    if (!cx->held || !cx->w13 || !cx->w2 || !cx->cnt || !cx->off || !cx->fill || !cx->large ||
        !cx->small || !cx->tiny || !cx->gm || !cx->gn || !cx->gk || !cx->glda || !cx->gldb ||
        !cx->gldc || !cx->gsize || !cx->galpha || !cx->gbeta || !cx->gta || !cx->gtb)
        return MR_ERR_NOMEM;
    if (cx->p.held)
        memcpy(cx->held, cx->p.held, LE);
    else
        memset(cx->held, 1, LE);
    cx->p.held = cx->held;
    return MR_OK;
}

/* Place each held expert's matrices in the weight slab: all q first, then all scales. */
static mr_status cx_alloc_weights(mr_cuda_experts *cx, const mr_cuda_mem_plan *m) {
    const cx_dims *d = &cx->d;
    const size_t LE = (size_t)cx->p.n_layers * (size_t)cx->p.n_experts;
    const size_t q_each = cx_al(d->w13_q) + cx_al(d->w2_q);
    const size_t s_each = cx_al(d->w13_s) + cx_al(d->w2_s);
    if (m->weights_bytes == 0) return MR_OK;
    MR_CUDA_CHECK(cudaMalloc((void **)&cx->wslab, m->weights_bytes));
    const size_t q_all = (size_t)m->n_held * q_each;
    MR_CUDA_CHECK(cudaMemset(cx->wslab, mr_cuda_fmt_zero_byte(cx->p.fmt), q_all));
    if (s_each) MR_CUDA_CHECK(cudaMemset(cx->wslab + q_all, 0, (size_t)m->n_held * s_each));
    size_t i_held = 0;
    for (size_t i = 0; i < LE; i++) {
        if (!cx->held[i]) continue;
        uint8_t *q = cx->wslab + i_held * q_each;
        uint8_t *s = cx->wslab + q_all + i_held * s_each;
        cx->w13[i].q = q;
        cx->w2[i].q = q + cx_al(d->w13_q);
        if (s_each) {
            cx->w13[i].scale = s;
            cx->w2[i].scale = s + cx_al(d->w13_s);
        }
        i_held++;
    }
    return MR_OK;
}

mr_status mr_cuda_experts_create(const mr_cuda_experts_params *p, mr_cuda_experts **out) {
    mr_cuda_mem_plan m;
    MR_CHECK(mr_cuda_experts_plan(p, &m));
    mr_status st = MR_OK;
    mr_cuda_experts *cx = calloc(1, sizeof *cx);
    if (!cx) return MR_ERR_NOMEM;
    cx->p = *p;
    cx->small_max = p->small_max >= 0 ? p->small_max : mr_cuda_experts_default_small_max(p->fmt);
    cx->path_auto = p->small_max < 0;
    cx->gemm = p->gemm;
    cx->act = p->act;
    MR_CHECK_GOTO(cx_dims_init(p, &cx->d), err);
    MR_CHECK_GOTO(cx_alloc_host(cx), err);

    MR_CUDA_CHECK_GOTO(cudaSetDevice(p->device), err);
    MR_CUDA_CHECK_GOTO(
        cudaDeviceGetAttribute(&cx->num_sms, cudaDevAttrMultiProcessorCount, p->device), err);
    {
        const int ck = mr_cuda_fmt_chunk(p->fmt);
        cx->wqg_ok = p->fmt != MR_CUDA_WFMT_BF16 && p->hidden % ck == 0 && p->inter % ck == 0 &&
                     mr_cuda_wqg_available();
    }
    size_t free_b = 0, total_b = 0;
    MR_CUDA_CHECK_GOTO(cudaMemGetInfo(&free_b, &total_b), err);
    if (m.total_bytes + CX_MARGIN > free_b) {
        MR_LOG_ERROR(MR_LOG_GPU,
                     "cuda experts: assignment does not fit GPU %d: needs %.2f GiB (%d %s experts "
                     "x %.1f MiB = %.2f GiB, workspace for %d tokens %.2f GiB, scratch %.2f GiB, "
                     "cuBLAS %.2f GiB) + %.2f GiB margin; %.2f GiB free of %.2f GiB",
                     p->device, cx_gib(m.total_bytes), m.n_held, mr_cuda_wfmt_name(p->fmt),
                     (double)m.expert_bytes / (1 << 20), cx_gib(m.weights_bytes), p->max_tokens,
                     cx_gib(m.workspace_bytes), cx_gib(m.scratch_bytes), cx_gib(m.blas_bytes),
                     cx_gib(CX_MARGIN), cx_gib(free_b), cx_gib(total_b));
        st = MR_ERR_NOMEM;
        goto err;
    }
    MR_CHECK_GOTO(cx_alloc_weights(cx, &m), err);
    MR_CUDA_CHECK_GOTO(cudaMalloc((void **)&cx->ws, m.workspace_bytes + m.scratch_bytes), err);
    /* zero: padding columns and spare rows of xg/ab must be finite and zero */
    MR_CUDA_CHECK_GOTO(cudaMemset(cx->ws, 0, m.workspace_bytes + m.scratch_bytes), err);
    cx_carve(cx);
    MR_CUDA_CHECK_GOTO(cudaMalloc(&cx->blas_ws, CX_BLAS_WS), err);
    MR_CUDA_CHECK_GOTO(cudaStreamCreateWithFlags(&cx->st, cudaStreamNonBlocking), err);
    MR_CUDA_CHECK_GOTO(cudaStreamCreateWithFlags(&cx->aux, cudaStreamNonBlocking), err);
    for (int i = 0; i < 2; i++) {
        MR_CUDA_CHECK_GOTO(cudaEventCreateWithFlags(&cx->ev_meta[i], cudaEventDisableTiming), err);
        MR_CUDA_CHECK_GOTO(cudaEventCreateWithFlags(&cx->ev_ready[i], cudaEventDisableTiming), err);
        MR_CUDA_CHECK_GOTO(cudaEventCreateWithFlags(&cx->ev_free[i], cudaEventDisableTiming), err);
        MR_CUDA_CHECK_GOTO(cudaMallocHost((void **)&cx->meta_host[i], cx->d.meta_cap), err);
    }
    const size_t xbytes = (size_t)p->max_tokens * (size_t)p->hidden * 4;
    MR_CUDA_CHECK_GOTO(cudaMallocHost((void **)&cx->pin_x, xbytes), err);
    MR_CUDA_CHECK_GOTO(cudaMallocHost((void **)&cx->pin_out, xbytes), err);
    MR_CUDA_CHECK_GOTO(cudaMallocHost((void **)&cx->pin_stage, CX_STAGE_ELEMS * 2), err);
    for (int sp = 0; sp < 2; sp++)
        for (int nt = 0; nt < 3; nt++)
            for (int which = 0; which < 2; which++)
                for (int ks = 0; ks < 4; ks++)
                    MR_CHECK_GOTO(mr_cuda_wq_occupancy(p->fmt, which, 1 << nt, 1 << ks, sp,
                                                       &cx->occ[sp][nt][which][ks]),
                                  err);
    MR_CUBLAS_CHECK_GOTO(cublasCreate(&cx->blas), err);
    MR_CUBLAS_CHECK_GOTO(cublasSetStream(cx->blas, cx->st), err);
    MR_CUBLAS_CHECK_GOTO(cublasSetWorkspace(cx->blas, cx->blas_ws, CX_BLAS_WS), err);
    MR_CUDA_CHECK_GOTO(cudaDeviceSynchronize(), err);
    MR_LOG_INFO(MR_LOG_GPU,
                "cuda experts on GPU %d: %d %s experts, %.2f GiB weights + %.2f GiB workspace "
                "(%d tokens) + %.2f GiB scratch; %.2f GiB were free",
                p->device, m.n_held, mr_cuda_wfmt_name(p->fmt), cx_gib(m.weights_bytes),
                cx_gib(m.workspace_bytes), p->max_tokens, cx_gib(m.scratch_bytes), cx_gib(free_b));
    *out = cx;
    return MR_OK;
err:
    mr_cuda_experts_destroy(cx);
    return st;
}

void mr_cuda_experts_set_path(mr_cuda_experts *cx, int small_max, int gemm) {
    cx->small_max = small_max >= 0 ? small_max : mr_cuda_experts_default_small_max(cx->p.fmt);
    cx->path_auto = small_max < 0;
    cx->gemm = gemm;
}

void mr_cuda_experts_set_wq_split(mr_cuda_experts *cx, int waves, int ks, int min_units) {
    cx->wq_waves = waves > 0 ? waves : 0;
    cx->wq_ks = ks == 1 || ks == 2 || ks == 4 || ks == 8 ? ks : 0;
    cx->wq_min_units = min_units > 0 ? min_units : 0;
}

mr_status mr_cuda_experts_set_act(mr_cuda_experts *cx, int act) {
    if (act != MR_CUDA_ACT_BF16 && act != MR_CUDA_ACT_SPLIT) return MR_ERR_INVALID;
    if (act == MR_CUDA_ACT_SPLIT && !cx->xg_lo) {
        MR_LOG_ERROR(MR_LOG_GPU, "cuda experts: split activations need an executor created SPLIT");
        return MR_ERR_INVALID;
    }
    cx->act = act;
    return MR_OK;
}

void *mr_cuda_experts_stream(mr_cuda_experts *cx) {
    return (void *)cx->st;
}

mr_status mr_cuda_experts_sync(mr_cuda_experts *cx) {
    MR_CUDA_CHECK(cudaStreamSynchronize(cx->aux));
    MR_CUDA_CHECK(cudaStreamSynchronize(cx->st));
    return MR_OK;
}

/* ---- loading ------------------------------------------------------------------------------- */

static int cx_held(const mr_cuda_experts *cx, int layer, int e) {
    return e >= 0 && e < cx->p.n_experts && cx->held[(size_t)layer * cx->p.n_experts + e];
}

/* Upload host matrix m (bf16 or f32, [rows][cols]) in row chunks through pinned staging, or
 * generate a synthetic one chunk by chunk on the device, and quantise each chunk into dst. */
static mr_status cx_upload(mr_cuda_experts *cx, const mr_matrix *m, const mr_synth_stream *synth,
                           int rowmap, mr_cuda_qmat dst, int np, int kp) {
    const size_t cols = (size_t)m->cols;
    const int chunk = (int)MR_MAX((size_t)1, CX_STAGE_ELEMS / cols);
    for (int r0 = 0; r0 < m->rows; r0 += chunk) {
        const int rows = MR_MIN(chunk, m->rows - r0);
        const size_t n = (size_t)rows * cols;
        if (synth) { /* synthetic weights: generated in place, no host copy */
            MR_CHECK(mr_cuda_synth_fill_bf16(cx->stage, synth, (size_t)r0 * cols, n, cx->st));
            MR_CHECK(mr_cuda_quant_launch(cx->p.fmt, cx->stage, r0, rows, m->cols, m->cols, rowmap,
                                          dst, np, kp, cx->st));
            continue; /* stage is reused in stream order */
        }
        if (m->dtype == MR_DTYPE_BF16) {
            memcpy(cx->pin_stage, (const uint16_t *)m->data + (size_t)r0 * cols, n * 2);
        } else {
            mr_convert_f32_to_bf16((const float *)m->data + (size_t)r0 * cols, cx->pin_stage, n);
        }
        MR_CUDA_CHECK(
            cudaMemcpyAsync(cx->stage, cx->pin_stage, n * 2, cudaMemcpyHostToDevice, cx->st));
        MR_CHECK(mr_cuda_quant_launch(cx->p.fmt, cx->stage, r0, rows, m->cols, m->cols, rowmap, dst,
                                      np, kp, cx->st));
        MR_CUDA_CHECK(cudaStreamSynchronize(cx->st)); /* pin_stage is reused */
    }
    if (synth) MR_CUDA_CHECK(cudaStreamSynchronize(cx->st)); /* report faults per matrix */
    return MR_OK;
}

static int cx_shape_ok(const mr_matrix *m, const mr_synth_stream *synth, int rows, int cols) {
    return (m->data || synth) && m->rows == rows && m->cols == cols &&
           (m->dtype == MR_DTYPE_BF16 || m->dtype == MR_DTYPE_F32);
}

mr_status mr_cuda_experts_load(mr_cuda_experts *cx, int layer, const mr_expert_set *set,
                               mr_cuda_load_progress_fn progress, void *user) {
    const cx_dims *d = &cx->d;
    if (layer < 0 || layer >= cx->p.n_layers || !set || set->hidden != d->H || set->inter != d->I ||
        set->n_experts != cx->p.n_experts) {
        MR_LOG_ERROR(MR_LOG_GPU, "cuda experts: load of layer %d: set does not match the plan",
                     layer);
        return MR_ERR_INVALID;
    }
    int total = 0, done = 0;
    size_t bytes = 0;
    for (int e = 0; e < set->n_experts; e++) total += cx_held(cx, layer, e);
    for (int e = 0; e < set->n_experts; e++) {
        if (!cx_held(cx, layer, e)) continue;
        const mr_expert *ex = &set->experts[e];
        const mr_synth_stream *sy = ex->synth;
        if (!cx_shape_ok(&ex->w1, sy, d->I, d->H) || !cx_shape_ok(&ex->w3, sy, d->I, d->H) ||
            !cx_shape_ok(&ex->w2, sy, d->H, d->I)) {
            MR_LOG_ERROR(MR_LOG_GPU, "cuda experts: layer %d expert %d missing or misshapen", layer,
                         e);
            return MR_ERR_INVALID;
        }
        const size_t i = (size_t)layer * cx->p.n_experts + e;
        MR_CHECK(cx_upload(cx, &ex->w1, sy ? &sy[0] : NULL, MR_CUDA_ROWMAP_GATE, cx->w13[i], d->N13,
                           d->Kp13));
        MR_CHECK(cx_upload(cx, &ex->w3, sy ? &sy[1] : NULL, MR_CUDA_ROWMAP_UP, cx->w13[i], d->N13,
                           d->Kp13));
        MR_CHECK(cx_upload(cx, &ex->w2, sy ? &sy[2] : NULL, MR_CUDA_ROWMAP_SAME, cx->w2[i], d->Hp,
                           d->Kp2));
        bytes += d->w13_q + d->w13_s + d->w2_q + d->w2_s;
        if (progress) progress(user, ++done, total, bytes);
    }
    return MR_OK;
}

mr_status mr_cuda_experts_load_dev(mr_cuda_experts *cx, int layer, int expert, const uint16_t *w1,
                                   const uint16_t *w3, const uint16_t *w2) {
    const cx_dims *d = &cx->d;
    if (layer < 0 || layer >= cx->p.n_layers || !cx_held(cx, layer, expert) || !w1 || !w3 || !w2)
        return MR_ERR_INVALID;
    const size_t i = (size_t)layer * cx->p.n_experts + expert;
    MR_CHECK(mr_cuda_quant_launch(cx->p.fmt, w1, 0, d->I, d->H, d->H, MR_CUDA_ROWMAP_GATE,
                                  cx->w13[i], d->N13, d->Kp13, cx->st));
    MR_CHECK(mr_cuda_quant_launch(cx->p.fmt, w3, 0, d->I, d->H, d->H, MR_CUDA_ROWMAP_UP, cx->w13[i],
                                  d->N13, d->Kp13, cx->st));
    MR_CHECK(mr_cuda_quant_launch(cx->p.fmt, w2, 0, d->H, d->I, d->I, MR_CUDA_ROWMAP_SAME,
                                  cx->w2[i], d->Hp, d->Kp2, cx->st));
    MR_CUDA_CHECK(cudaStreamSynchronize(cx->st));
    return MR_OK;
}

mr_status mr_cuda_experts_export(mr_cuda_experts *cx, int layer, int expert, uint16_t *w1,
                                 uint16_t *w3, uint16_t *w2) {
    const cx_dims *d = &cx->d;
    if (layer < 0 || layer >= cx->p.n_layers || !cx_held(cx, layer, expert)) return MR_ERR_INVALID;
    const size_t i = (size_t)layer * cx->p.n_experts + expert;
    const size_t n13 = (size_t)d->N13 * d->Kp13, n2 = (size_t)d->Hp * d->Kp2;
    mr_status st = MR_OK;
    uint16_t *dev = NULL, *host = malloc(MR_MAX(n13, n2) * 2);
    if (!host) return MR_ERR_NOMEM;
    MR_CUDA_CHECK_GOTO(cudaMalloc((void **)&dev, MR_MAX(n13, n2) * 2), out);
    MR_CHECK_GOTO(mr_cuda_dequant_launch(cx->p.fmt, cx->w13[i], d->N13, d->Kp13, dev, cx->st), out);
    MR_CUDA_CHECK_GOTO(cudaMemcpyAsync(host, dev, n13 * 2, cudaMemcpyDeviceToHost, cx->st), out);
    MR_CUDA_CHECK_GOTO(cudaStreamSynchronize(cx->st), out);
    for (int r = 0; r < d->I; r++) {
        const uint16_t *g = host + (size_t)(32 * (r / 16) + r % 16) * d->Kp13;
        memcpy(w1 + (size_t)r * d->H, g, (size_t)d->H * 2);
        memcpy(w3 + (size_t)r * d->H, g + (size_t)16 * d->Kp13, (size_t)d->H * 2);
    }
    MR_CHECK_GOTO(mr_cuda_dequant_launch(cx->p.fmt, cx->w2[i], d->Hp, d->Kp2, dev, cx->st), out);
    MR_CUDA_CHECK_GOTO(cudaMemcpyAsync(host, dev, n2 * 2, cudaMemcpyDeviceToHost, cx->st), out);
    MR_CUDA_CHECK_GOTO(cudaStreamSynchronize(cx->st), out);
    for (int r = 0; r < d->H; r++)
        memcpy(w2 + (size_t)r * d->I, host + (size_t)r * d->Kp2, (size_t)d->I * 2);
out:
    cudaFree(dev);
    free(host);
    return st;
}

/* ---- one call ------------------------------------------------------------------------------ */

/* The wq launch split by default: warps per block at most, units per warp at least, and the
 * waves of blocks a one-pass launch is aimed at (split-K adds blocks up to them). From sweeps of
 * (waves 1–8, warps 1–8, units 2–16) at 1–32 tokens on an H200 (docs/performance.md, session
 * 7; MiniMax-M1's dimensions): int8 within 2% of each size's best with 8 warps, 1 wave (was 4
 * warps, 2 waves: 1 token 13% slower) while each pass has 8 tokens (nt 1; with more, the kernel's
 * registers make 8-warp blocks cost occupancy: 9% slower at 64–128 tokens); int4 wants 8 warps of
 * at least 6 units for one token (the previous split was 27% slower), at least 8 for two (3% faster
 * than 6: the gate/up matrix then runs 4 warps of 12 units), and 2 warps, 1 wave above. */
static void cx_wq_auto(int fmt, int nt, int n_jobs, int *waves, int *ks, int *min_units) {
    if (fmt == MR_CUDA_WFMT_INT8 && nt == 1) {
        *waves = 1, *ks = 8, *min_units = 3;
    } else if (fmt == MR_CUDA_WFMT_INT4 && n_jobs <= 2) {
        *waves = 4, *ks = 8, *min_units = 6;
    } else if (fmt == MR_CUDA_WFMT_INT4 && n_jobs <= 4) {
        *waves = 2, *ks = 8, *min_units = 8;
    } else if (fmt == MR_CUDA_WFMT_INT4) {
        *waves = 1, *ks = 2, *min_units = 2;
    } else {
        *waves = 2, *ks = 4, *min_units = 3;
    }
}

/* Work split of one wq launch: ks warps per block (each at least mu units) and, when every job
 * fits one pass, nsplit blocks per 32-row block (split-K) up to the aimed-at waves of blocks: a
 * launch of few long blocks loses up to half its time to the last, partial wave. set_wq_split
 * overrides cx_wq_auto's values for tuning. */
static void cx_pick_split(const mr_cuda_experts *cx, int which, int nt, int rbn, int n_jobs,
                          int units, int one_pass, int sp, int *ks_out, int *split_out) {
    int waves, ks, mu; /* mu: units per warp, at least */
    cx_wq_auto(cx->p.fmt, nt, n_jobs, &waves, &ks, &mu);
    waves = cx->wq_waves ? cx->wq_waves : waves;
    ks = cx->wq_ks ? cx->wq_ks : ks;
    mu = cx->wq_min_units ? cx->wq_min_units : mu;
    while (ks > 1 && units < ks * mu) ks /= 2;
    const int nt_i = nt == 1 ? 0 : nt == 2 ? 1 : 2;
    const int ks_i = ks == 1 ? 0 : ks == 2 ? 1 : ks == 4 ? 2 : 3;
    const long bps = MR_MAX(cx->occ[sp][nt_i][which][ks_i], 1);
    const long base = (long)rbn * n_jobs, target = (long)waves * cx->num_sms * bps;
    long split = 1;
    if (one_pass && base < target) {
        split = MR_MIN((target + base - 1) / base, (long)MR_MAX(units / (ks * mu), 1));
        split = MR_MIN(split, 16L);
        while (split > 1 && (size_t)(base * split) * (size_t)(256 * nt) > CX_GPART) split--;
    }
    *ks_out = ks;
    *split_out = (int)split;
}

static mr_status cx_gemm(mr_cuda_experts *cx, const void *a, int lda, const void *b, int ldb,
                         void *c, cudaDataType ct, int ldc, int m, int n, int k, int accumulate) {
    const float one = 1.0f, zero = 0.0f;
    /* column-major: C (m × n) = Aᵀ B with A [k × m] = our row-major [m][lda] weights */
    MR_CUBLAS_CHECK(cublasGemmEx(cx->blas, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, a, CUDA_R_16BF,
                                 lda, b, CUDA_R_16BF, ldb, accumulate ? &one : &zero, c, ct, ldc,
                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return MR_OK;
}

/* The GEMM path of one expert on rows [r0, r0 + cnt): G = W13·x (bf16 G; with split activations
 * fp32 G = W13·x_hi + W13·x_lo), then (cx_swiglu) a = SwiGLU(G), then Y = W2·a (+ W2·a_lo). */
static mr_status cx_gemm1(mr_cuda_experts *cx, const void *w13, int r0, int cnt) {
    const cx_dims *d = &cx->d;
    const size_t xo = (size_t)r0 * d->Kx, go = (size_t)r0 * d->N13;
    if (cx->act != MR_CUDA_ACT_SPLIT)
        return cx_gemm(cx, w13, d->Kp13, cx->xg + xo, d->Kx, cx->gb + go, CUDA_R_16BF, d->N13,
                       d->N13, cnt, d->H, 0);
    MR_CHECK(cx_gemm(cx, w13, d->Kp13, cx->xg + xo, d->Kx, (float *)cx->gb + go, CUDA_R_32F, d->N13,
                     d->N13, cnt, d->H, 0));
    return cx_gemm(cx, w13, d->Kp13, cx->xg_lo + xo, d->Kx, (float *)cx->gb + go, CUDA_R_32F,
                   d->N13, d->N13, cnt, d->H, 1);
}

static mr_status cx_swiglu(mr_cuda_experts *cx, int r0, int r1) {
    const int split = cx->act == MR_CUDA_ACT_SPLIT;
    return mr_cuda_swiglu_launch(cx->gb, split, cx->d.N13, r0, r1, cx->d.I, cx->ab,
                                 split ? cx->ab_lo : NULL, cx->d.Ka, cx->st);
}

static mr_status cx_gemm2(mr_cuda_experts *cx, const void *w2, int r0, int cnt) {
    const cx_dims *d = &cx->d;
    const size_t ao = (size_t)r0 * d->Ka;
    float *y = cx->y + (size_t)r0 * d->H;
    MR_CHECK(cx_gemm(cx, w2, d->Kp2, cx->ab + ao, d->Ka, y, CUDA_R_32F, d->H, d->H, cnt, d->I, 0));
    if (cx->act == MR_CUDA_ACT_SPLIT)
        MR_CHECK(cx_gemm(cx, w2, d->Kp2, cx->ab_lo + ao, d->Ka, y, CUDA_R_32F, d->H, d->H, cnt,
                         d->I, 1));
    return MR_OK;
}

/* GEMM path for the experts in large[0..n_large): rows [0, r_large) of the gathered buffers. */
static mr_status cx_run_large(mr_cuda_experts *cx, int layer, int gemm, int n_large, int r_large,
                              void *const *gptr_dev, const mr_cuda_job *tjobs_dev, int n_wg_jobs,
                              int n_tjobs) {
    const cx_dims *d = &cx->d;
    const size_t base = (size_t)layer * cx->p.n_experts;
    if (gemm == MR_CUDA_GEMM_WGMMA || gemm == MR_CUDA_GEMM_TILED) {
        /* jobs [0, n_wg_jobs) on the wgmma kernel, the rest on the mma.sync one */
        const int split = cx->act == MR_CUDA_ACT_SPLIT;
        const uint16_t *xl = split ? cx->xg_lo : NULL;
        uint16_t *al = split ? cx->ab_lo : NULL;
        const mr_cuda_job *tj = tjobs_dev + n_wg_jobs;
        const int n_t = n_tjobs - n_wg_jobs;
        if (n_wg_jobs > 0) {
            MR_CHECK(mr_cuda_wqg_launch(cx->p.fmt, 0, tjobs_dev, n_wg_jobs, cx->xg, xl, d->Kx,
                                        d->N13, d->Kp13, cx->ab, al, d->Ka, d->I, cx->st));
            MR_CHECK(mr_cuda_wqg_launch(cx->p.fmt, 1, tjobs_dev, n_wg_jobs, cx->ab, al, d->Ka,
                                        d->Hp, d->Kp2, cx->y, NULL, d->H, d->H, cx->st));
        }
        if (n_t > 0) {
            MR_CHECK(mr_cuda_wqt_launch(cx->p.fmt, 0, tj, n_t, cx->xg, xl, d->Kx, d->N13, d->Kp13,
                                        cx->ab, al, d->Ka, d->I, cx->st));
            MR_CHECK(mr_cuda_wqt_launch(cx->p.fmt, 1, tj, n_t, cx->ab, al, d->Ka, d->Hp, d->Kp2,
                                        cx->y, NULL, d->H, d->H, cx->st));
        }
        return MR_OK;
    }
    if (cx->p.fmt == MR_CUDA_WFMT_BF16 && gemm == MR_CUDA_GEMM_GROUPED) {
        for (int i = 0; i < n_large; i++) {
            cx->gta[i] = CUBLAS_OP_T;
            cx->gtb[i] = CUBLAS_OP_N;
            cx->gm[i] = d->N13;
            cx->gn[i] = cx->cnt[cx->large[i]];
            cx->gk[i] = d->H;
            cx->glda[i] = d->Kp13;
            cx->gldb[i] = d->Kx;
            cx->gldc[i] = d->N13;
            cx->galpha[i] = 1.0f;
            cx->gbeta[i] = 0.0f;
            cx->gsize[i] = 1;
        }
        MR_CUBLAS_CHECK(cublasGemmGroupedBatchedEx(
            cx->blas, cx->gta, cx->gtb, cx->gm, cx->gn, cx->gk, cx->galpha,
            (const void *const *)gptr_dev, CUDA_R_16BF, cx->glda,
            (const void *const *)(gptr_dev + n_large), CUDA_R_16BF, cx->gldb, cx->gbeta,
            gptr_dev + 2 * n_large, CUDA_R_16BF, cx->gldc, n_large, cx->gsize, CUBLAS_COMPUTE_32F));
        MR_CHECK(cx_swiglu(cx, 0, r_large));
        for (int i = 0; i < n_large; i++) {
            cx->gm[i] = d->H;
            cx->gk[i] = d->I;
            cx->glda[i] = d->Kp2;
            cx->gldb[i] = d->Ka;
            cx->gldc[i] = d->H;
        }
        MR_CUBLAS_CHECK(cublasGemmGroupedBatchedEx(
            cx->blas, cx->gta, cx->gtb, cx->gm, cx->gn, cx->gk, cx->galpha,
            (const void *const *)(gptr_dev + 3 * n_large), CUDA_R_16BF, cx->glda,
            (const void *const *)(gptr_dev + 4 * n_large), CUDA_R_16BF, cx->gldb, cx->gbeta,
            gptr_dev + 5 * n_large, CUDA_R_16BF, cx->gldc, n_large, cx->gsize, CUBLAS_COMPUTE_32F));
        return MR_OK;
    }
    if (cx->p.fmt == MR_CUDA_WFMT_BF16) {
        for (int i = 0; i < n_large; i++)
            MR_CHECK(cx_gemm1(cx, cx->w13[base + cx->large[i]].q, cx->off[cx->large[i]],
                              cx->cnt[cx->large[i]]));
        MR_CHECK(cx_swiglu(cx, 0, r_large));
        for (int i = 0; i < n_large; i++)
            MR_CHECK(cx_gemm2(cx, cx->w2[base + cx->large[i]].q, cx->off[cx->large[i]],
                              cx->cnt[cx->large[i]]));
        return MR_OK;
    }
    /* int8/int4: dequantise expert i on aux into deq[b] while the GEMMs of i-1 run on st */
    const size_t w2_off = (size_t)d->N13 * d->Kp13;
    for (int i = 0; i < n_large; i++) {
        const int e = cx->large[i], r0 = cx->off[e], b = cx->deq_next;
        cx->deq_next ^= 1;
        MR_CUDA_CHECK(cudaStreamWaitEvent(cx->aux, cx->ev_free[b], 0));
        MR_CHECK(mr_cuda_dequant_launch(cx->p.fmt, cx->w13[base + e], d->N13, d->Kp13, cx->deq[b],
                                        cx->aux));
        MR_CHECK(mr_cuda_dequant_launch(cx->p.fmt, cx->w2[base + e], d->Hp, d->Kp2,
                                        cx->deq[b] + w2_off, cx->aux));
        MR_CUDA_CHECK(cudaEventRecord(cx->ev_ready[b], cx->aux));
        MR_CUDA_CHECK(cudaStreamWaitEvent(cx->st, cx->ev_ready[b], 0));
        MR_CHECK(cx_gemm1(cx, cx->deq[b], r0, cx->cnt[e]));
        MR_CHECK(cx_swiglu(cx, r0, r0 + cx->cnt[e]));
        MR_CHECK(cx_gemm2(cx, cx->deq[b] + w2_off, r0, cx->cnt[e]));
        MR_CUDA_CHECK(cudaEventRecord(cx->ev_free[b], cx->st));
    }
    return MR_OK;
}

/* GEMV path for the experts in tiny[0..n_tiny), rows [r_tiny, total): G = W13·x with x the fp32
 * input rows themselves (src_d: the token of each gathered row), SwiGLU into the hi + lo parts,
 * Y = W2·(hi + lo) — every product in fp32, each weight read once (bf16 weights). */
static mr_status cx_run_tiny(mr_cuda_experts *cx, size_t base, int n_tiny, int r_tiny, int total,
                             const float *x_dev, const int32_t *src_d) {
    const cx_dims *d = &cx->d;
    float *g = (float *)(void *)cx->gb; /* fp32 G with split activations */
    for (int i = 0; i < n_tiny; i++) {
        const int e = cx->tiny[i], r0 = cx->off[e];
        MR_CHECK(mr_cuda_expert_gemv_launch(cx->w13[base + e].q, d->Kp13, d->N13, d->H, cx->cnt[e],
                                            x_dev, src_d + r0, NULL, NULL, d->H,
                                            g + (size_t)r0 * d->N13, d->N13, cx->st));
    }
    MR_CHECK(cx_swiglu(cx, r_tiny, total));
    for (int i = 0; i < n_tiny; i++) {
        const int e = cx->tiny[i], r0 = cx->off[e];
        MR_CHECK(mr_cuda_expert_gemv_launch(cx->w2[base + e].q, d->Kp2, d->H, d->I, cx->cnt[e],
                                            NULL, NULL, cx->ab + (size_t)r0 * d->Ka,
                                            cx->ab_lo + (size_t)r0 * d->Ka, d->Ka,
                                            cx->y + (size_t)r0 * d->H, d->H, cx->st));
    }
    return MR_OK;
}

static size_t cx_al16(size_t v) {
    return (v + 15) / 16 * 16;
}

mr_status mr_cuda_experts_enqueue(mr_cuda_experts *cx, int layer, const float *x_dev, int n, int k,
                                  const int32_t *ids, const float *wts, float *out_dev) {
    const cx_dims *d = &cx->d;
    const int E = cx->p.n_experts;
    if (layer < 0 || layer >= cx->p.n_layers || n <= 0 || n > cx->p.max_tokens || k <= 0 ||
        k > cx->p.top_k || !x_dev || !ids || !wts || !out_dev) {
        MR_LOG_ERROR(MR_LOG_GPU, "cuda experts: bad call (layer %d, n %d, k %d)", layer, n, k);
        return MR_ERR_INVALID;
    }
    const size_t base = (size_t)layer * E;
    const int nk = n * k;
    const int split = cx->act == MR_CUDA_ACT_SPLIT;
    int small_max = cx->small_max, gemm = cx->gemm;
    if (cx->path_auto && cx->p.fmt == MR_CUDA_WFMT_BF16)
        gemm = nk > 2 && nk <= CX_AUTO_GROUPED_MAX ? MR_CUDA_GEMM_GROUPED : MR_CUDA_GEMM_PER_EXPERT;
    if (cx->path_auto && cx->p.fmt != MR_CUDA_WFMT_BF16) gemm = MR_CUDA_GEMM_WGMMA;
    if (gemm == MR_CUDA_GEMM_WGMMA && !cx->wqg_ok) gemm = MR_CUDA_GEMM_TILED;
    if (gemm == MR_CUDA_GEMM_GROUPED && (split || cx->p.fmt != MR_CUDA_WFMT_BF16))
        gemm = MR_CUDA_GEMM_PER_EXPERT; /* the grouped GEMM has only bf16 weights and outputs */
    /* bf16 experts with split activations and few rows: the GEMV kernel (fp32 x, W read once)
     * instead of two cuBLAS GEMMs per matrix (W read twice). int8/int4 stay on the wq kernel, which
     * streams their tiles at 84–94% of HBM from 2 tokens (an int8 GEMV was slower: dequantising
     * in fp32 costs ALU work per byte; docs/performance.md) */
    const int tiny_max =
        cx->path_auto && split && cx->p.fmt == MR_CUDA_WFMT_BF16 && d->H % 8 == 0 && d->I % 8 == 0
            ? CX_GEMV_MAX_N
            : 0;
    /* group the routed slots by expert: GEMM-path experts first, then wq-path experts, then the
     * GEMV-path ones */
    memset(cx->cnt, 0, (size_t)E * 4);
    for (int s = 0; s < nk; s++)
        if (cx_held(cx, layer, ids[s])) cx->cnt[ids[s]]++;
    /* with the wgmma kernel, experts of at most tiled_max rows go to the mma.sync tile kernel
     * (large[n_wg..n_large), after the wgmma ones, whose rows come first) */
    const int tiled_max = gemm == MR_CUDA_GEMM_WGMMA && cx->path_auto ? CX_AUTO_TILED_MAX : 0;
    int row = 0, n_large = 0, n_small = 0, n_tiny = 0, max_small = 0;
    for (int e = 0; e < E; e++)
        if (cx->cnt[e] > small_max && cx->cnt[e] > tiny_max && cx->cnt[e] > tiled_max) {
            cx->off[e] = row;
            row += cx->cnt[e];
            cx->large[n_large++] = e;
        }
    const int r_wg = gemm == MR_CUDA_GEMM_WGMMA ? row : 0, n_wg = r_wg ? n_large : 0;
    for (int e = 0; e < E; e++)
        if (cx->cnt[e] > small_max && cx->cnt[e] > tiny_max && cx->cnt[e] <= tiled_max) {
            cx->off[e] = row;
            row += cx->cnt[e];
            cx->large[n_large++] = e;
        }
    const int r_large = row;
    for (int e = 0; e < E; e++)
        if (cx->cnt[e] > tiny_max && cx->cnt[e] <= small_max) {
            cx->off[e] = row;
            row += cx->cnt[e];
            cx->small[n_small++] = e;
            max_small = MR_MAX(max_small, cx->cnt[e]);
        }
    const int r_tiny = row;
    for (int e = 0; e < E; e++)
        if (cx->cnt[e] > 0 && cx->cnt[e] <= tiny_max) {
            cx->off[e] = row;
            row += cx->cnt[e];
            cx->tiny[n_tiny++] = e;
        }
    const int total = row;
    /* the tile kernels' jobs: each large expert's rows in pieces of at most jt tokens (the
     * wgmma kernel's first, n_wg_jobs of them) */
    int n_tjobs = 0, n_wg_jobs = 0;
    const int tiled = gemm == MR_CUDA_GEMM_TILED || gemm == MR_CUDA_GEMM_WGMMA;
    const int jt_wg = mr_cuda_wqg_job_tokens(split), jt_t = MR_CUDA_WQT_MAX_TOKENS;
    if (tiled)
        for (int i = 0; i < n_large; i++) {
            const int jt = i < n_wg ? jt_wg : jt_t, nj = (cx->cnt[cx->large[i]] + jt - 1) / jt;
            n_tjobs += nj;
            if (i < n_wg) n_wg_jobs += nj;
        }

    /* metadata, packed: jobs, grouped-GEMM pointers, src rows, inverse slots, weights */
    const int slot = cx->meta_slot;
    cx->meta_slot ^= 1;
    MR_CUDA_CHECK(cudaEventSynchronize(cx->ev_meta[slot]));
    uint8_t *mh = cx->meta_host[slot];
    const size_t o_jobs = 0,
                 o_ptr = o_jobs + cx_al16((size_t)(n_small + n_tjobs) * sizeof(mr_cuda_job));
    const size_t o_src = o_ptr + cx_al16((size_t)6 * n_large * sizeof(void *));
    const size_t o_inv = o_src + cx_al16((size_t)total * 4);
    const size_t o_wts = o_inv + cx_al16((size_t)nk * 4);
    const size_t used = o_wts + cx_al16((size_t)nk * 4);
    mr_cuda_job *jobs = (mr_cuda_job *)(mh + o_jobs);
    void **gptr = (void **)(mh + o_ptr);
    int32_t *src = (int32_t *)(mh + o_src), *inv = (int32_t *)(mh + o_inv);
    for (int i = 0; i < n_small; i++) {
        const int e = cx->small[i];
        jobs[i] = (mr_cuda_job){cx->w13[base + e], cx->w2[base + e], cx->off[e], cx->cnt[e]};
    }
    for (int i = 0, j = n_small; i < n_large && tiled; i++) {
        const int e = cx->large[i], jt = i < n_wg ? jt_wg : jt_t;
        for (int t0 = 0; t0 < cx->cnt[e]; t0 += jt)
            jobs[j++] = (mr_cuda_job){cx->w13[base + e], cx->w2[base + e], cx->off[e] + t0,
                                      MR_MIN(jt, cx->cnt[e] - t0)};
    }
    for (int i = 0; i < n_large; i++) {
        const int e = cx->large[i], r0 = cx->off[e];
        gptr[i] = cx->w13[base + e].q;
        gptr[n_large + i] = cx->xg + (size_t)r0 * d->Kx;
        gptr[2 * n_large + i] = cx->gb + (size_t)r0 * d->N13;
        gptr[3 * n_large + i] = cx->w2[base + e].q;
        gptr[4 * n_large + i] = cx->ab + (size_t)r0 * d->Ka;
        gptr[5 * n_large + i] = cx->y16 + (size_t)r0 * d->H;
    }
    memset(cx->fill, 0, (size_t)E * 4);
    for (int s = 0; s < nk; s++) {
        const int e = ids[s];
        if (!cx_held(cx, layer, e)) {
            inv[s] = -1;
            continue;
        }
        const int pos = cx->off[e] + cx->fill[e]++;
        src[pos] = s / k;
        inv[s] = pos;
    }
    memcpy(mh + o_wts, wts, (size_t)nk * 4);
    MR_CUDA_CHECK(cudaMemcpyAsync(cx->meta_dev, mh, used, cudaMemcpyHostToDevice, cx->st));
    MR_CUDA_CHECK(cudaEventRecord(cx->ev_meta[slot], cx->st));

    const size_t out_bytes = (size_t)n * d->H * 4;
    if (total == 0) {
        MR_CUDA_CHECK(cudaMemsetAsync(out_dev, 0, out_bytes, cx->st));
        return MR_OK;
    }
    const int32_t *src_d = (const int32_t *)(cx->meta_dev + o_src);
    /* the wgmma kernel's rows (the large experts, first) in its column order */
    MR_CHECK(mr_cuda_gather_launch(x_dev, src_d, total, d->H, cx->xg, split ? cx->xg_lo : NULL,
                                   d->Kx, r_wg, mr_cuda_fmt_chunk(cx->p.fmt), cx->st));
    if (n_small > 0) {
        const mr_cuda_job *jobs_d = (const mr_cuda_job *)(cx->meta_dev + o_jobs);
        const int nt = max_small <= 8 ? 1 : max_small <= 16 ? 2 : 4;
        const int one_pass = max_small <= 8 * nt;
        const int ck = mr_cuda_fmt_chunk(cx->p.fmt);
        int ks, nsplit;
        cx_pick_split(cx, 0, nt, d->N13 / 32, n_small, d->Kp13 / ck, one_pass, split, &ks, &nsplit);
        MR_CHECK(mr_cuda_wq_launch(cx->p.fmt, 0, nt, ks, nsplit, jobs_d, n_small, cx->xg,
                                   split ? cx->xg_lo : NULL, d->Kx, d->N13, d->Kp13, cx->ab,
                                   split ? cx->ab_lo : NULL, d->Ka, d->I, cx->gpart, cx->gcount,
                                   cx->st));
        cx_pick_split(cx, 1, nt, d->Hp / 32, n_small, d->Kp2 / ck, one_pass, split, &ks, &nsplit);
        MR_CHECK(mr_cuda_wq_launch(cx->p.fmt, 1, nt, ks, nsplit, jobs_d, n_small, cx->ab,
                                   split ? cx->ab_lo : NULL, d->Ka, d->Hp, d->Kp2, cx->y, NULL,
                                   d->H, d->H, cx->gpart, cx->gcount, cx->st));
    }
    if (n_large > 0)
        MR_CHECK(cx_run_large(
            cx, layer, gemm, n_large, r_large, (void *const *)(cx->meta_dev + o_ptr),
            (const mr_cuda_job *)(cx->meta_dev + o_jobs) + n_small, n_wg_jobs, n_tjobs));
    if (n_tiny > 0) MR_CHECK(cx_run_tiny(cx, base, n_tiny, r_tiny, total, x_dev, src_d));
    const int rows16 = cx->p.fmt == MR_CUDA_WFMT_BF16 && gemm == MR_CUDA_GEMM_GROUPED ? r_large : 0;
    MR_CHECK(mr_cuda_combine_launch(cx->y, cx->y16, rows16, (const int32_t *)(cx->meta_dev + o_inv),
                                    (const float *)(cx->meta_dev + o_wts), n, k, d->H, out_dev,
                                    cx->st));
    return MR_OK;
}

/* bf16 in and out use the f32 buffers as staging: the input lands in outd (free until the
 * combine writes it) and is widened into xin; the result is narrowed into xin (free once the
 * combine, last on the stream, has run) and copied down from there. */
mr_status mr_cuda_experts_run_io(mr_cuda_experts *cx, int layer, const void *x, int n, int k,
                                 const int32_t *ids, const float *wts, void *out, mr_dtype io) {
    if (!x || !out || n <= 0 || n > cx->p.max_tokens || (io != MR_DTYPE_F32 && io != MR_DTYPE_BF16))
        return MR_ERR_INVALID;
    const int bf16 = io == MR_DTYPE_BF16;
    const size_t elems = (size_t)n * cx->d.H, bytes = elems * (bf16 ? 2 : 4);
    memcpy(cx->pin_x, x, bytes);
    if (bf16) {
        MR_CUDA_CHECK(cudaMemcpyAsync(cx->outd, cx->pin_x, bytes, cudaMemcpyHostToDevice, cx->st));
        MR_CHECK(mr_cuda_bf16_to_f32((const uint16_t *)(const void *)cx->outd, elems, cx->xin,
                                     (cudaStream_t)cx->st));
    } else {
        MR_CUDA_CHECK(cudaMemcpyAsync(cx->xin, cx->pin_x, bytes, cudaMemcpyHostToDevice, cx->st));
    }
    MR_CHECK(mr_cuda_experts_enqueue(cx, layer, cx->xin, n, k, ids, wts, cx->outd));
    const void *result = cx->outd;
    if (bf16) {
        MR_CHECK(mr_cuda_f32_to_bf16(cx->outd, elems, (uint16_t *)(void *)cx->xin,
                                     (cudaStream_t)cx->st));
        result = cx->xin;
    }
    MR_CUDA_CHECK(cudaMemcpyAsync(cx->pin_out, result, bytes, cudaMemcpyDeviceToHost, cx->st));
    MR_CUDA_CHECK(cudaStreamSynchronize(cx->st));
    memcpy(out, cx->pin_out, bytes);
    return MR_OK;
}

mr_status mr_cuda_experts_run(mr_cuda_experts *cx, int layer, const float *x, int n, int k,
                              const int32_t *ids, const float *wts, float *out) {
    return mr_cuda_experts_run_io(cx, layer, x, n, k, ids, wts, out, MR_DTYPE_F32);
}
