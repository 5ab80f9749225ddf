/* backend.h — the compute backend interface: one ops table, several implementations.
 *
 *   mr_backend *be;  MR_CHECK(mr_backend_create("cpu", &params, &be));
 *   be->ops->linear(be, &w, x, n_tokens, y);
 *   mr_backend_destroy(be);
 *
 * Implementations: "ref" (kernels/ref, plain single-threaded C: the oracle every other backend is
 * tested against), "cpu" (kernels/cpu, threaded and vectorised) and "cuda*" (kernels/cuda: the
 * experts on a GPU, the rest on the cpu backend).
 *
 * Conventions shared by every op:
 *  - activations are float32, row-major [n_tokens][width];
 *  - a matrix is nn.Linear-shaped [rows = out_features][cols = in_features], bf16 or f32, and
 *    linear computes y = x · Wᵀ with float32 accumulation and float32 output;
 *  - ops never allocate: scratch is reserved once by mr_backend_create() from params;
 *  - an op's result for a token never depends on the other tokens in the batch (per-element
 *    summation order depends only on the reduction length), so batching does not change results. */
#ifndef MR_BACKEND_H
#define MR_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "common/dtype.h"
#include "common/status.h"
#include "common/synth_stream.h"

typedef struct mr_pool mr_pool;

/* A weight matrix [rows][cols] (row stride = cols). */
typedef struct mr_matrix {
    const void *data;
    mr_dtype dtype; /* MR_DTYPE_BF16 or MR_DTYPE_F32 */
    int rows, cols;
} mr_matrix;

/* One expert's SwiGLU FFN: W2 · (silu(W1 x) ⊙ (W3 x)). w1, w3: [inter][hidden]; w2:
 * [hidden][inter]. Synthetic weights may be left ungenerated for a backend that generates them
 * where it keeps them (GPU memory): then the matrices' data are NULL and synth[0..2] give the
 * values of w1, w3, w2 (common/synth_stream.h); only backends with moe_prepare accept that. */
typedef struct mr_expert {
    mr_matrix w1, w3, w2;
    const mr_synth_stream *synth; /* NULL or [3] */
} mr_expert;

static inline int mr_expert_present(const mr_expert *e) {
    return e->w1.data != NULL || e->synth != NULL;
}

/* The experts of one layer that this process holds; !mr_expert_present(&experts[e]) if not
 * held. */
typedef struct mr_expert_set {
    int n_experts;
    int hidden, inter;
    const mr_expert *experts; /* [n_experts] */
} mr_expert_set;

/* A batch is made of segments: consecutive tokens of one sequence. */
typedef struct mr_segment {
    int start;    /* first token row of the segment in the batch */
    int len;      /* number of new tokens */
    int64_t pos0; /* absolute position of the first new token (= tokens already cached) */
} mr_segment;

/* Lightning (linear) attention for one layer over a batch of segments.
 * Input `qkv` is the raw qkv_proj output [n_tokens][H*3*d] with head-major interleaved rows
 * (head j: q = cols [3dj, 3dj+d), k = next d, v = next d); the op applies SiLU to all of it.
 * Per segment s, state[s] is that sequence's [H][d][d] float32 state (rows = key dim), updated in
 * place: S ← λ S + kᵀ v per token; o = q S (after the update). Prefill segments use the chunked
 * form with block `block_size` and λ^(i+1) for the carried state; the result equals the
 * recurrence. Output `out` is [n_tokens][H*d], head-major. */
typedef struct mr_lightning_args {
    int n_heads, head_dim, block_size;
    const float *slope; /* [H] s_{l,j}; λ = exp(-s) */
    int n_segments;
    const mr_segment *segs;
    float *const *state; /* [n_segments] */
    const float *qkv;
    float *out;
} mr_lightning_args;

/* Softmax attention for one layer over a batch of segments, with a paged KV cache.
 * q [n_tokens][H*d], k and v [n_tokens][KV*d] are the projections before RoPE; the op applies
 * partial NeoX RoPE (dims [0, rotary_dim), pairs (c, c + rotary_dim/2), angle
 * fp32(pos)·inv_freq[c]) to q and k in place, writes k and v into the cache at positions pos0..,
 * and attends causally over positions [0, pos] with scale 1/sqrt(d); q head j reads kv head j /
 * (H/KV). Cache layout per layer: k_cache, v_cache [n_blocks][block_tokens][KV][d] float32; a
 * sequence's position p lives in block block_table[s][p / block_tokens], row p % block_tokens. */
typedef struct mr_attention_args {
    int n_heads, n_kv_heads, head_dim, rotary_dim;
    const float *inv_freq; /* [rotary_dim/2] */
    int n_segments;
    const mr_segment *segs;
    const int32_t *const *block_tables; /* [n_segments] */
    int block_tokens;
    float *k_cache, *v_cache;
    float *q, *k, *v; /* rotated in place */
    float *out;       /* [n_tokens][H*d] */
} mr_attention_args;

typedef struct mr_backend mr_backend;

typedef struct mr_backend_ops {
    const char *name;
    void (*destroy)(mr_backend *be);
    /* out[t] = table[ids[t]] (row gather, converted to f32); ids already validated. */
    void (*embed)(mr_backend *be, const mr_matrix *table, const int32_t *ids, int n, float *out);
    /* y[t] = x[t] / sqrt(mean(x[t]²) + eps) ⊙ w ; in place allowed (y == x). */
    void (*rmsnorm)(mr_backend *be, const float *x, const float *w, int n, int dim, float eps,
                    float *y);
    /* out = a·h + b·y elementwise over n values; out may alias h or y. */
    void (*scale_add)(mr_backend *be, const float *h, const float *y, float a, float b, size_t n,
                      float *out);
    /* y[n][w->rows] = x[n][w->cols] · Wᵀ. */
    void (*linear)(mr_backend *be, const mr_matrix *w, const float *x, int n, float *y);
    void (*lightning)(mr_backend *be, const mr_lightning_args *a);
    /* out[t] = sigmoid(gate[t]) ⊙ (o[t] / sqrt(mean(o[t]²) + eps) ⊙ w), width dim; out may alias o.
     */
    void (*norm_gate)(mr_backend *be, const float *o, const float *gate, const float *w, int n,
                      int dim, float eps, float *out);
    void (*attention)(mr_backend *be, const mr_attention_args *a);
    /* Router: logits = x · gateᵀ (f32), softmax, top-k (ties to the lower index), renormalised.
     * ids [n][k] expert ids, in descending probability; wts [n][k]. */
    void (*route)(mr_backend *be, const mr_matrix *gate, const float *x, int n, int k, int32_t *ids,
                  float *wts);
    /* out[t] = Σ_j wts[t][j] · expert_{ids[t][j]}(x[t]) summed in j order, skipping ids < 0 and
     * experts the set does not hold; out is overwritten (zero if nothing is held). */
    void (*moe)(mr_backend *be, const mr_expert_set *set, const float *x, int n, int k,
                const int32_t *ids, const float *wts, float *out);
    /* Optional (NULL in ref and cpu): a backend that keeps experts elsewhere (a GPU) uploads
     * them here, once, after they are loaded and before any moe call; layers[l] is the set later
     * passed to moe for layer l (same pointer). Fails, logging why, if they do not fit. */
    mr_status (*moe_prepare)(mr_backend *be, const mr_expert_set *const *layers, int n_layers);
} mr_backend_ops;

typedef struct mr_backend_params {
    int n_threads;  /* cpu: worker threads incl. the caller; <= 0: all CPUs */
    int max_tokens; /* most tokens in one call */
    int hidden, inter, n_heads, head_dim, block_size, max_experts, top_k;
    /* Optional: called by moe_prepare after each expert is on the device (done of total over
     * all layers, device bytes so far). */
    void (*progress)(void *user, int done, int total, size_t bytes);
    void *progress_user;
} mr_backend_params;

struct mr_backend {
    const mr_backend_ops *ops;
    void *impl;
};

/* name: "ref", "cpu", or where built with CUDA "cuda", "cuda-int8", "cuda-int4" and their "-fast"
 * variants (cpu for every op but moe, which runs on GPU 0 with bf16 / int8 / int4 weights; see
 * kernels/cuda/cuda_backend.h), and "cuda-full" (every op on GPU 0; cuda_full_backend.h). */
mr_status mr_backend_create(const char *name, const mr_backend_params *p, mr_backend **out);
void mr_backend_destroy(mr_backend *be);

/* Load one element of a matrix as float (for reference code and tests). */
static inline float mr_matrix_at(const mr_matrix *m, int r, int c) {
    size_t i = (size_t)r * (size_t)m->cols + (size_t)c;
    return m->dtype == MR_DTYPE_BF16 ? mr_bf16_to_f32(((const uint16_t *)m->data)[i])
                                     : ((const float *)m->data)[i];
}

#endif
