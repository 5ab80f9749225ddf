/* cuda_gpu_internal.h — what the cuda-gpu backend's files share (not an API): the backend's
 * state, its scratch roles and the helpers of cuda_gpu_backend.c that the attention ops
 * (cuda_gpu_attention.c) use. Owned by the thread that drives the backend. */
#ifndef MR_CUDA_GPU_INTERNAL_H
#define MR_CUDA_GPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_gpu_graphs.h"
#include "kernels/cuda/cuda_sample.h"
#include "kernels/cuda/weight_cache.h"

/* Device scratch, by role. Sized at create for max_tokens; grown (with a wait) only if a call
 * needs more, e.g. block tables of longer contexts than the first guess. */
enum {
    S_XB,    /* bf16 activations of linear: [n][cols] */
    S_IDS,   /* embed ids, decode slots: [n] int32 */
    S_TAB,   /* block table [rows][stride] + decode positions [n], int32 */
    S_ROUTE, /* router ids [n][k] int32, then wts [n][k] fp32 */
    S_LWS,   /* lightning prefill workspace */
    S_AWS,   /* softmax decode workspace */
    S_Y2,    /* linear: hi and lo products of split activations, [2n][rows] (fixed size) */
    S_COUNT
};

enum { MAX_PEERS = 64 };

typedef struct dev_buf {
    void *p;
    size_t cap;
} dev_buf;

/* Owned by the thread that drives the backend. */
typedef struct gpu_be {
    mr_backend *cuda; /* "cuda": the expert executor (moe_prepare, moe) */
    mr_backend_params p;
    int dev; /* p.device: made current at every entry (one thread may drive several GPUs) */
    cudaStream_t st;
    cublasHandle_t blas;
    cudaEvent_t ev_main, ev_experts;     /* orders the executor's stream with st, both ways */
    cudaEvent_t ev_xfer;                 /* copy_from: orders st with another backend's stream */
    unsigned char peer_tried[MAX_PEERS]; /* copy_from: peer access to device i asked for */
    mr_status err;                       /* first op failure since the last to_host */
    mr_weight_cache *wc;                 /* device copies of the model's host weights */
    dev_buf buf[S_COUNT];
    unsigned char *pin; /* page-locked upload / download ring */
    size_t pin_cap, pin_used;
    int32_t *h_slots; /* host [max_tokens]: prefill slots (read during the launch call) */
    int h_slots_cap;
    /* MOERACK_CUDA_LINEAR=twice: projections as two GEMMs (hi, lo), neither the GEMV kernel nor
     * the stacked GEMM — the route before them, kept for same-run comparisons */
    int linear_twice;
    mr_cuda_sampler *sampler; /* the sample op's buffers, max_tokens rows per launch */
    gpu_segs *segs;           /* decode segments as CUDA graphs (cuda_gpu_graphs.h) */
    size_t route_pin_bytes;   /* the segments' router output buffer */
} gpu_be;

static inline gpu_be *impl(mr_backend *be) {
    return be->impl;
}

/* The backend's device made current; every entry point calls this first (another backend of the
 * same thread may have made its own device current since). */
static inline gpu_be *use(mr_backend *be) {
    gpu_be *g = be->impl;
    int cur = -1; /* cudaGetDevice reads the thread's current device: cheaper than setting it */
    if (cudaGetDevice(&cur) != cudaSuccess || cur != g->dev) cudaSetDevice(g->dev);
    return g;
}

/* Op ids of the decode-segment signature. */
enum {
    OP_RMSNORM = 1,
    OP_SCALE_ADD,
    OP_LINEAR,
    OP_NORM_GATE,
    OP_ROUTE,
    OP_LIGHTNING,
    OP_ATTENTION
};

/* In a graphed decode segment (cuda_gpu_graphs.h): adds the op to the signature and returns 1;
 * the op then notes its arguments (NOTE) and, when replaying, enqueues nothing. */
static inline int graphed(gpu_be *g, int op) {
    if (!gpu_segs_graphed(gpu_segs_mode(g->segs))) return 0;
    gpu_segs_note(g->segs, &op, sizeof op);
    return 1;
}
static inline int replaying(const gpu_be *g) {
    return gpu_segs_mode(g->segs) == SEG_REPLAY;
}
#define NOTE(g, v) gpu_segs_note((g)->segs, &(v), sizeof(v))

/* ---- helpers (cuda_gpu_backend.c) ------------------------------------------------------------ */

/* Device scratch of a role, at least `bytes` (grown with a wait, which drops the graphs). */
mr_status gpu_scratch(gpu_be *g, int which, size_t bytes, void **out);
/* A piece of the page-locked ring for a copy about to be enqueued. */
mr_status gpu_pin_take(gpu_be *g, size_t bytes, void **out);
/* dev[0..bytes) = host[0..bytes), enqueued; host may be reused on return. */
mr_status gpu_upload(gpu_be *g, void *dev, const void *host, size_t bytes);
/* The device copy of a host weight, uploaded on first use. */
mr_status gpu_weight(gpu_be *g, const void *host, size_t bytes, const void **dev);
/* An op failed: logged, its output poisoned, the failure kept for the next to_host (in a graphed
 * segment: the segment runs again instead). */
void gpu_op_failed(gpu_be *g, const char *op, mr_status st, void *out, size_t bytes);
/* MR_OK outside a graphed segment; inside, marks the segment to run again and fails. */
mr_status gpu_not_in_graph(gpu_be *g, const char *what);

/* ---- the attention ops (cuda_gpu_attention.c) ------------------------------------------------ */

void gpu_lightning_op(mr_backend *be, const mr_lightning_args *a);
void gpu_attention_op(mr_backend *be, const mr_attention_args *a);

#endif
