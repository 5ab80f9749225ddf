/* cuda_backend.c — see cuda_backend.h. */
#include "kernels/cuda/cuda_backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_experts.h"
#include "kernels/cuda/cuda_full_backend.h"
#include "kernels/cuda/cuda_gpu_backend.h"

typedef struct cuda_be {
    mr_backend *cpu;
    int fmt, act;
    mr_backend_params p;
    mr_cuda_experts *cx;        /* NULL until moe_prepare */
    const mr_expert_set **sets; /* [n_layers], the prepared layers' set pointers */
    int n_layers, last;         /* last: layer of the previous call (lookup hint) */
} cuda_be;

static mr_backend *inner(mr_backend *be) {
    return ((cuda_be *)be->impl)->cpu;
}

static void cb_destroy(mr_backend *be) {
    cuda_be *c = be->impl;
    mr_cuda_experts_destroy(c->cx);
    mr_backend_destroy(c->cpu);
    free(c->sets);
    free(c);
    free(be);
}

static void cb_embed(mr_backend *be, const mr_matrix *t, const int32_t *ids, int n, float *out) {
    inner(be)->ops->embed(inner(be), t, ids, n, out);
}
static void cb_rmsnorm(mr_backend *be, const float *x, const float *w, int n, int dim, float eps,
                       float *y) {
    inner(be)->ops->rmsnorm(inner(be), x, w, n, dim, eps, y);
}
static void cb_scale_add(mr_backend *be, const float *h, const float *y, float a, float b, size_t n,
                         float *out) {
    inner(be)->ops->scale_add(inner(be), h, y, a, b, n, out);
}
static void cb_linear(mr_backend *be, const mr_matrix *w, const float *x, int n, float *y) {
    inner(be)->ops->linear(inner(be), w, x, n, y);
}
static void cb_lightning(mr_backend *be, const mr_lightning_args *a) {
    inner(be)->ops->lightning(inner(be), a);
}
static void cb_norm_gate(mr_backend *be, const float *o, const float *gate, const float *w, int n,
                         int dim, float eps, float *out) {
    inner(be)->ops->norm_gate(inner(be), o, gate, w, n, dim, eps, out);
}
static void cb_attention(mr_backend *be, const mr_attention_args *a) {
    inner(be)->ops->attention(inner(be), a);
}
static void cb_route(mr_backend *be, const mr_matrix *gate, const float *x, int n, int k,
                     int32_t *ids, float *wts) {
    inner(be)->ops->route(inner(be), gate, x, n, k, ids, wts);
}

/* The prepared layer index of set, or -1; advances the lookup hint. */
static int find_layer(cuda_be *c, const mr_expert_set *set) {
    int layer = -1;
    if (c->last < c->n_layers && c->sets[c->last] == set) layer = c->last;
    for (int l = 0; layer < 0 && l < c->n_layers; l++)
        if (c->sets[l] == set) layer = l;
    if (layer >= 0) c->last = layer + 1 < c->n_layers ? layer + 1 : 0;
    return layer;
}

static void cb_moe_io(mr_backend *be, const mr_expert_set *set, const void *x, int n, int k,
                      const int32_t *ids, const float *wts, void *out, mr_dtype io) {
    cuda_be *c = be->impl;
    if (n <= 0) return;
    const int layer = find_layer(c, set);
    mr_status st = MR_ERR_INVALID;
    if (c->cx && layer >= 0) st = mr_cuda_experts_run_io(c->cx, layer, x, n, k, ids, wts, out, io);
    if (st != MR_OK) {
        MR_LOG_ERROR(MR_LOG_GPU, "cuda moe: %s",
                     !c->cx || layer < 0 ? "experts of this layer were not prepared"
                                         : mr_status_str(st));
        const size_t elems = (size_t)n * set->hidden;
        if (io == MR_DTYPE_BF16)
            for (size_t i = 0; i < elems; i++) ((uint16_t *)out)[i] = 0x7fc0; /* NaN */
        else
            for (size_t i = 0; i < elems; i++) ((float *)out)[i] = NAN;
    }
}

static void cb_moe(mr_backend *be, const mr_expert_set *set, const float *x, int n, int k,
                   const int32_t *ids, const float *wts, float *out) {
    cb_moe_io(be, set, x, n, k, ids, wts, out, MR_DTYPE_F32);
}

/* Progress over all layers: the layer's counts on top of the layers before it. */
typedef struct prepare_progress {
    const mr_backend_params *p;
    int layer, before, total;
    size_t bytes_before, layer_bytes;
} prepare_progress;

static void on_layer_progress(void *user, int done, int total, size_t bytes) {
    prepare_progress *pp = user;
    (void)total;
    pp->layer_bytes = bytes;
    MR_LOG_DEBUG(MR_LOG_GPU, "layer %d: %d experts on the GPU (%zu bytes)", pp->layer, done, bytes);
    if (pp->p->progress)
        pp->p->progress(pp->p->progress_user, pp->before + done, pp->total,
                        pp->bytes_before + bytes);
}

static mr_status cb_moe_prepare(mr_backend *be, const mr_expert_set *const *layers, int n_layers) {
    cuda_be *c = be->impl;
    if (n_layers <= 0 || !layers || !layers[0]) return MR_ERR_INVALID;
    const int E = layers[0]->n_experts;
    unsigned char *held = calloc((size_t)n_layers * (size_t)E, 1);
    const mr_expert_set **sets = malloc((size_t)n_layers * sizeof *sets);
    if (!held || !sets) {
        free(held);
        free(sets);
        return MR_ERR_NOMEM;
    }
    for (int l = 0; l < n_layers; l++) {
        sets[l] = layers[l];
        for (int e = 0; e < E && e < layers[l]->n_experts; e++)
            held[(size_t)l * E + e] = mr_expert_present(&layers[l]->experts[e]);
    }
    mr_cuda_experts_params p = {.device = c->p.device,
                                .fmt = c->fmt,
                                .n_layers = n_layers,
                                .n_experts = E,
                                .hidden = layers[0]->hidden,
                                .inter = layers[0]->inter,
                                .top_k = c->p.top_k,
                                .max_tokens = c->p.max_tokens,
                                .held = held,
                                .small_max = -1,
                                .gemm = MR_CUDA_GEMM_PER_EXPERT,
                                .act = c->act};
    mr_cuda_experts *cx = NULL;
    mr_status st = mr_cuda_experts_create(&p, &cx);
    free(held);
    prepare_progress pp = {&c->p, 0, 0, 0, 0, 0};
    for (int l = 0; l < n_layers; l++)
        for (int e = 0; e < E && e < layers[l]->n_experts; e++)
            pp.total += mr_expert_present(&layers[l]->experts[e]);
    for (int l = 0; st == MR_OK && l < n_layers; l++) {
        pp.layer = l;
        st = mr_cuda_experts_load(cx, l, layers[l], on_layer_progress, &pp);
        for (int e = 0; e < E && e < layers[l]->n_experts; e++)
            pp.before += mr_expert_present(&layers[l]->experts[e]);
        pp.bytes_before += pp.layer_bytes;
        pp.layer_bytes = 0;
    }
    if (st != MR_OK) {
        mr_cuda_experts_destroy(cx);
        free(sets);
        return st;
    }
    mr_cuda_experts_destroy(c->cx);
    free(c->sets);
    c->cx = cx;
    c->sets = sets;
    c->n_layers = n_layers;
    c->last = 0;
    return MR_OK;
}

static const mr_backend_ops cuda_ops = {
    .name = "cuda",
    .destroy = cb_destroy,
    .embed = cb_embed,
    .rmsnorm = cb_rmsnorm,
    .scale_add = cb_scale_add,
    .linear = cb_linear,
    .lightning = cb_lightning,
    .norm_gate = cb_norm_gate,
    .attention = cb_attention,
    .route = cb_route,
    .moe = cb_moe,
    .moe_prepare = cb_moe_prepare,
    .moe_io = cb_moe_io,
};

mr_status mr_cuda_backend_experts(mr_backend *be, const mr_expert_set *set, mr_cuda_experts **cx,
                                  int *layer) {
    if (!be || be->ops != &cuda_ops) return MR_ERR_INVALID;
    cuda_be *c = be->impl;
    const int l = c->cx ? find_layer(c, set) : -1;
    if (l < 0) return MR_ERR_INVALID;
    *cx = c->cx;
    *layer = l;
    return MR_OK;
}

int mr_cuda_backend_is_experts(const mr_backend *be) {
    return be && be->ops == &cuda_ops;
}

mr_status mr_cuda_backend_moe_dev(mr_backend *be, const mr_expert_set *set, const float *x_dev,
                                  int n, int k, const int32_t *ids, const float *wts,
                                  float *out_dev, float *out) {
    mr_cuda_experts *cx;
    int layer;
    if (n <= 0 || !x_dev || !out_dev || !out || (uintptr_t)x_dev % 16 != 0 ||
        mr_cuda_backend_experts(be, set, &cx, &layer) != MR_OK) {
        MR_LOG_ERROR(MR_LOG_GPU, "cuda moe on device input: %s",
                     n > 0 && x_dev && (uintptr_t)x_dev % 16 != 0
                         ? "activations not 16-byte aligned"
                         : "bad arguments, or experts of this layer not prepared");
        return MR_ERR_INVALID;
    }
    MR_CHECK(mr_cuda_experts_enqueue(cx, layer, x_dev, n, k, ids, wts, out_dev));
    cudaStream_t st = (cudaStream_t)mr_cuda_experts_stream(cx);
    MR_CUDA_CHECK(cudaMemcpyAsync(out, out_dev, (size_t)n * set->hidden * sizeof(float),
                                  cudaMemcpyDeviceToHost, st));
    MR_CUDA_CHECK(cudaStreamSynchronize(st));
    return MR_OK;
}

mr_status mr_cuda_backend_create(const char *name, const mr_backend_params *p, mr_backend **out) {
    static const struct {
        const char *name;
        int fmt, act;
    } names[] = {
        {"cuda", MR_CUDA_WFMT_BF16, MR_CUDA_ACT_SPLIT},
        {"cuda-int8", MR_CUDA_WFMT_INT8, MR_CUDA_ACT_SPLIT},
        {"cuda-int4", MR_CUDA_WFMT_INT4, MR_CUDA_ACT_SPLIT},
        {"cuda-fast", MR_CUDA_WFMT_BF16, MR_CUDA_ACT_BF16},
        {"cuda-int8-fast", MR_CUDA_WFMT_INT8, MR_CUDA_ACT_BF16},
        {"cuda-int4-fast", MR_CUDA_WFMT_INT4, MR_CUDA_ACT_BF16},
    };
    if (strcmp(name, "cuda-full") == 0) return mr_cuda_full_backend_create(p, out);
    if (strcmp(name, "cuda-gpu") == 0) return mr_cuda_gpu_backend_create(p, out);
    int fmt = -1, act = 0;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strcmp(name, names[i].name) == 0) {
            fmt = names[i].fmt;
            act = names[i].act;
        }
    if (fmt < 0) {
        MR_LOG_ERROR(MR_LOG_KERN,
                     "unknown backend '%s' (expected cuda, cuda-int8, cuda-int4, one of them with "
                     "-fast, cuda-full or cuda-gpu)",
                     name);
        return MR_ERR_INVALID;
    }
    mr_backend *be = calloc(1, sizeof *be);
    cuda_be *c = calloc(1, sizeof *c);
    if (!be || !c) {
        free(be);
        free(c);
        return MR_ERR_NOMEM;
    }
    c->fmt = fmt;
    c->act = act;
    c->p = *p;
    mr_status st = mr_backend_create("cpu", p, &c->cpu);
    if (st != MR_OK) {
        free(c);
        free(be);
        return st;
    }
    be->ops = &cuda_ops;
    be->impl = c;
    *out = be;
    return MR_OK;
}
