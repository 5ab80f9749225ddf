/* backend.h — the compute backend interface: one ops table, several implementations.
 *
 *   mr_backend *be;  MR_CHECK(mr_backend_create("cpu", &params, &be));
 *   be->ops->linear(be, &w, x, n_tokens, y);
 *   mr_backend_destroy(be);
 *
 * Implementations: "ref" (kernels/ref, plain single-threaded C: the oracle every other backend is
 * tested against), "cpu" (kernels/cpu, threaded and vectorised), "cpu-resident" (the cpu backend
 * behind the device-resident interface, checking its pointer contract: a test vehicle) and
 * "cuda*" (kernels/cuda).
 *
 * Conventions shared by every op:
 *  - activations are float32, row-major [n_tokens][width];
 *  - a matrix is nn.Linear-shaped [rows = out_features][cols = in_features], bf16 or f32, and
 *    linear computes y = x · Wᵀ with float32 accumulation and float32 output;
 *  - ops never allocate: scratch is reserved once by mr_backend_create() from params;
 *  - an op's result for a token never depends on the other tokens in the batch (per-element
 *    summation order depends only on the reduction length), so batching does not change results.
 *
 * Where the memory lives. A backend with ops.device_resident = 0 (ref, cpu, cuda, cuda-full)
 * takes host pointers everywhere. A device-resident backend (cuda-gpu; cpu-resident checks this
 * contract on the host) keeps the model's
 * activations, lightning states and KV cache in its own memory, allocated through its alloc op;
 * then, per pointer:
 *  - DEVICE (the backend's memory): every activation (x, y, h, qkv, q, k, v, o, gate, out,
 *    logits before to_host), the lightning states (state[s], state_pool), the KV cache
 *    (k_cache, v_cache, in the backend's kv_dtype);
 *  - HOST, read during the call only: token ids of embed, segments, block tables (the array of
 *    pointers and the tables), the ids and wts moe reads;
 *  - HOST, written before the op returns: the ids and wts route writes (route synchronises);
 *  - HOST, weights: mr_matrix data, norm vectors, slopes, inv_freq stay the model's host copies;
 *    the backend uploads each once (on first use, or in moe_prepare for experts) and finds it
 *    again by host address, so they must not change while the backend lives.
 * Device-resident ops run in order on one stream and return before the GPU has finished: an op
 * failure is logged, poisons its outputs with NaN and is reported by the next to_host. */
#ifndef MR_BACKEND_H
#define MR_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "common/dtype.h"
#include "common/status.h"
#include "common/synth_stream.h"
#include "kernels/sample.h"

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
    /* The pool the states belong to: state[s] = state_pool + slot · slot_stride floats. Unused by
     * host backends (may be NULL / 0); a device-resident backend addresses states by slot. */
    float *state_pool;
    size_t slot_stride;
} mr_lightning_args;

/* Softmax attention for one layer over a batch of segments, with a paged KV cache.
 * q [n_tokens][H*d], k and v [n_tokens][KV*d] are the projections before RoPE; the op applies
 * partial NeoX RoPE (dims [0, rotary_dim), pairs (c, c + rotary_dim/2), angle
 * fp32(pos)·inv_freq[c]) to q and k in place, writes k and v into the cache at positions pos0..,
 * and attends causally over positions [0, pos] with scale 1/sqrt(d); q head j reads kv head j /
 * (H/KV). Cache layout per layer: k_cache, v_cache [n_blocks][block_tokens][KV][d] float32; a
 * sequence's position p lives in block block_table[s][p / block_tokens], row p % block_tokens.
 * The cache's element type is the backend's kv_dtype: float32 (the default; k_cache and v_cache
 * point at floats) or bf16 (they point at uint16_t bits: cuda-gpu). */
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

/* A decode segment of one layer (segment_begin below): every row one token, `rows` rows (the
 * real ones first, the rest padding that no sequence owns), the largest position + 1 of the step
 * (softmax layers; 0 for lightning), the most positions the KV pool holds per sequence, rounded
 * up to whole blocks (pos_limit), and the block size. */
typedef struct mr_segment_key {
    int layer, rows, max_pos, pos_limit, block_tokens;
} mr_segment_key;

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
    /* Optional (NULL but in the cuda expert backends): moe on host x and out of element type
     * `io` (MR_DTYPE_F32 or MR_DTYPE_BF16: the data plane's wire formats), converted where the
     * experts run; with bf16, out[t] is the f32 result of moe on the widened x, rounded to bf16
     * (nearest even) — bit for bit what the host would make of the same moe call. */
    void (*moe_io)(mr_backend *be, const mr_expert_set *set, const void *x, int n, int k,
                   const int32_t *ids, const float *wts, void *out, mr_dtype io);

    /* ---- device-resident backends (all NULL / 0 in ref, cpu, cuda, cuda-full) ---------------
     * 1: activations, states and the KV cache are the backend's memory (see the top of this
     * file); the model allocates them with alloc and touches them only through the ops below. */
    int device_resident;
    /* Element type of the KV cache: MR_DTYPE_F32 (0, the default) or MR_DTYPE_BF16. */
    mr_dtype kv_dtype;
    /* bytes of DEVICE memory, or of page-locked HOST memory for kind MR_MEM_HOST (staging that
     * the host reads and writes directly); contents undefined. Fails with MR_ERR_NOMEM, logged. */
    mr_status (*alloc)(mr_backend *be, size_t bytes, int kind, void **out);
    void (*free)(mr_backend *be, void *p, int kind); /* NULL allowed */
    /* Enqueued on the backend's stream: p[0..bytes) = (unsigned char)value (DEVICE p). */
    mr_status (*memset)(mr_backend *be, void *p, int value, size_t bytes);
    /* Enqueued: DEVICE dst[0..bytes) = DEVICE src (no overlap). */
    mr_status (*copy)(mr_backend *be, void *dst, const void *src, size_t bytes);
    /* Waits for everything enqueued, then HOST dst = DEVICE src; returns the first failure of any
     * op since the previous to_host (MR_OK if none). */
    mr_status (*to_host)(mr_backend *be, void *dst, const void *src, size_t bytes);
    /* DEVICE dst = HOST src, ordered after the enqueued work; src may be reused on return. */
    mr_status (*to_device)(mr_backend *be, void *dst, const void *src, size_t bytes);

    /* ---- stages: one backend per GPU (all optional) ------------------------------------------
     * DEVICE dst (this backend's memory) = DEVICE src of `src_be`, another backend of the same
     * ops (e.g. on another GPU; src_be may be be). Ordered after the work enqueued so far on both
     * backends; work enqueued later on either is ordered after the copy (src may then be
     * overwritten, dst read). NULL: model_mem.h copies host backends with memcpy and refuses
     * device-resident ones. */
    mr_status (*copy_from)(mr_backend *be, void *dst, mr_backend *src_be, const void *src,
                           size_t bytes);
    /* Free and total bytes of the backend's device memory (NULL: not a GPU, no limit checked). */
    mr_status (*mem_info)(mr_backend *be, size_t *free_bytes, size_t *total_bytes);
    /* Optional: sampling on the device (kernels/sample.h), so that only tokens and logprobs
     * come down. logits: DEVICE [n_logit_rows][vocab]; rows (HOST [n], read during the call):
     * the rows to sample and their parameters, each checked (mr_sample_row_check: a bad one
     * fails the call with MR_ERR_INVALID before anything runs); tokens and out: HOST [n],
     * written before return (waits for the stream). tokens[i] = MR_SAMPLE_ON_HOST for a row the
     * backend leaves to the host sampler (too many candidates: mr_sample_row_fits_device, or a
     * nucleus that needs the whole vocabulary); out[i] is then undefined. Returns, like
     * to_host, the first failure of any op since the previous to_host. */
    mr_status (*sample)(mr_backend *be, const float *logits, int n_logit_rows, int vocab,
                        const mr_sample_row *rows, int n, int32_t *tokens, mr_sample_result *out);
    /* Optional (device-resident backends): the ops called between segment_begin and
     * segment_end — rmsnorm, linear, lightning, norm_gate, attention, scale_add, route, all of
     * one decode segment (every segment of length 1) — may be captured as a CUDA graph and
     * replayed on later steps with the same key. route's ids and wts are written by segment_end
     * instead. segment_end sets *ran = 0 when nothing was executed (a capture failed, or a
     * replay no longer matched its graph, which is then dropped): the caller calls the segment's
     * ops again, bracketed again (they then run eagerly). Failures of the executed ops are
     * reported like any other (to_host). */
    void (*segment_begin)(mr_backend *be, const mr_segment_key *key);
    mr_status (*segment_end)(mr_backend *be, int *ran);
} mr_backend_ops;

/* Kinds of alloc. */
enum { MR_MEM_DEVICE = 0, MR_MEM_HOST = 1 };

typedef struct mr_backend_params {
    int n_threads;  /* cpu: worker threads incl. the caller; <= 0: all CPUs */
    int max_tokens; /* most tokens in one call */
    int hidden, inter, n_heads, head_dim, block_size, max_experts, top_k;
    /* cuda-gpu: the CUDA device (ordinal among the visible ones) every op, allocation and the
     * expert executor use; the host thread may drive several such backends. Others ignore it. */
    int device;
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
 * kernels/cuda/cuda_backend.h), "cuda-full" (every op on GPU 0 with host pointers;
 * cuda_full_backend.h) and "cuda-gpu" (every op on GPU params.device, device-resident;
 * cuda_gpu_backend.h). */
mr_status mr_backend_create(const char *name, const mr_backend_params *p, mr_backend **out);
void mr_backend_destroy(mr_backend *be);

/* Load one element of a matrix as float (for reference code and tests). */
static inline float mr_matrix_at(const mr_matrix *m, int r, int c) {
    size_t i = (size_t)r * (size_t)m->cols + (size_t)c;
    return m->dtype == MR_DTYPE_BF16 ? mr_bf16_to_f32(((const uint16_t *)m->data)[i])
                                     : ((const float *)m->data)[i];
}

#endif
