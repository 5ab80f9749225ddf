/* cuda_attention.h — the coordinator's attention kernels on one CUDA GPU, on device pointers.
 *
 *   // start-up: workspaces sized once from the largest step
 *   cudaMalloc(&lws, mr_cuda_lightning_prefill_ws_bytes(H, d, max_chunks));
 *   cudaMalloc(&dws, mr_cuda_attention_decode_ws_bytes(max_seqs, H, d));
 *   // per layer and step, on the caller's stream
 *   MR_CHECK(mr_cuda_lightning_decode(&ld, stream));     // one token per sequence
 *   MR_CHECK(mr_cuda_lightning_prefill(&lp, stream));    // chunked, any lengths
 *   MR_CHECK(mr_cuda_attention_prefill(&ap, stream));    // RoPE, cache write, causal flash
 *   MR_CHECK(mr_cuda_attention_decode(&ad, stream));     // RoPE, cache write, split-KV
 *
 * The maths is that of the backend ops `lightning` and `attention` (kernels/backend.h, spec
 * §3.3–§3.4); kernels/ref is the oracle (tests/gpu/test_cuda_attention.c). Differences:
 *  - state and caches live in pools addressed by slot / block ids, not per-segment pointers;
 *  - lightning inputs may be bf16 as well as fp32; the prefill multiplies on tensor cores with
 *    bf16 operands (q, k, v, and the decayed scores rounded to bf16; the carried state as a
 *    hi + lo bf16 pair, so q·S is fp32-accurate) and fp32 accumulation; the state stays fp32;
 *    decode is fp32 throughout;
 *  - the softmax KV cache is bf16; scores, softmax and accumulation are fp32, q and p are rounded
 *    to bf16 for the tensor cores.
 *
 * Every launcher checks its arguments (MR_ERR_INVALID, logged), enqueues on the caller's stream,
 * checks the launches, and neither synchronises nor allocates. Arrays marked "host" are read
 * during the call only; everything else is device memory. Supported head_dim: 16, 32, 64, 128
 * (MR_ERR_UNSUPPORTED otherwise). Sequences in one call must not share a state slot or a cache
 * block written by the call. */
#ifndef MR_CUDA_ATTENTION_H
#define MR_CUDA_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime.h>

#include "common/dtype.h"
#include "common/status.h"
#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- lightning attention ---------------------------------------------------------------------
 * State pool: slot s of one layer is state_pool + s · slot_stride floats, [H][d][d] fp32 (rows =
 * key dim), zero at a sequence's start (the caller clears it). Inputs are the raw qkv_proj output
 * [n][H·3·d] (head j: q = cols [3dj, 3dj+d), k, v next), F32 or BF16 (qkv_dtype); the kernels
 * apply SiLU. Output [n][H·d] fp32, head-major. slope: [H] s_j, λ_j = exp(−s_j). */

/* One decode step: token row i of qkv/out belongs to the sequence whose state is slots[i];
 * S ← λS + kᵀv, o = q·S (after the update). slots[i] < 0 marks a padding row: skipped, out row
 * untouched (lets a captured graph run a fixed batch size). */
typedef struct mr_cuda_lightning_decode_args {
    int n_heads, head_dim;
    const float *slope; /* [H] */
    int n;              /* rows (sequences) */
    mr_dtype qkv_dtype; /* MR_DTYPE_F32 or MR_DTYPE_BF16 */
    const void *qkv;    /* [n][H·3·d] */
    float *out;         /* [n][H·d] */
    const int32_t *slots;
    float *state_pool;
    size_t slot_stride; /* floats between slots, >= H·d·d */
} mr_cuda_lightning_decode_args;

mr_status mr_cuda_lightning_decode(const mr_cuda_lightning_decode_args *a, cudaStream_t st);

/* Prefill over segments (rows [start, start+len) of one sequence each, len >= 1): the chunked
 * form of spec §3.3.4 with blocks of MR_CUDA_LIGHTNING_CHUNK tokens counted from each segment's
 * start, λ^(i+1) on the carried state; equals the recurrence. A segment continues from its slot's
 * state and leaves the final state there. Work runs in groups of as many chunks as the workspace
 * holds (one chunk: 256 tokens of one segment, all heads), so a small workspace only costs more
 * launches. */
enum { MR_CUDA_LIGHTNING_CHUNK = 256, MR_CUDA_LIGHTNING_MAX_GROUP = 128 };

typedef struct mr_cuda_lightning_prefill_args {
    int n_heads, head_dim;
    const float *slope; /* [H] */
    mr_dtype qkv_dtype; /* MR_DTYPE_F32 or MR_DTYPE_BF16 */
    const void *qkv;    /* [n_tokens][H·3·d] */
    float *out;         /* [n_tokens][H·d] */
    int n_segments;
    const mr_segment *segs; /* host [n_segments]; pos0 is not used */
    const int32_t *slots;   /* host [n_segments] */
    float *state_pool;
    size_t slot_stride;
    void *ws; /* workspace, 256-byte aligned */
    size_t ws_bytes;
    int variant; /* MR_CUDA_LT_* bits: MR_CUDA_LT_DEFAULT in production; 0 = no bits */
} mr_cuda_lightning_prefill_args;

/* Tuning variants of the prefill, a bit set (as MR_CUDA_AP_* below): each computes the same
 * function and passes the same tests; 0 is the plain kernel, MR_CUDA_LT_DEFAULT the measured
 * default. */
enum {
    MR_CUDA_LT_STATE_HI = 1,   /* q·S with the state's bf16 hi plane only (no lo plane: half
                                  the inter-chunk multiplies; ~2^-9 relative, like q itself) */
    MR_CUDA_LT_DECAY_FOLD = 2, /* the intra-chunk decay folded into the operands: q rows scaled
                                  by λ^(i mod 64), k rows by λ^-(j mod 64), one multiply per
                                  score by λ^(tile distance) instead of an exponential */
    MR_CUDA_LT_KV_PIPE = 4,    /* launch 1 loads the next 64 rows of k, v while it multiplies
                                  the current ones (bf16 inputs; fp32 inputs ignore it) */
    MR_CUDA_LT_VARIANTS = 8,
    /* The production default. Issue 7 run C (H200, H = 64, d = 128, bf16 inputs, test
     * --perf): variant 7 117 TFLOP/s at 32K and 128K tokens (111 at 4K), variant 5 108, 0 96;
     * run D, same run as the PyTorch peer: variant 5 11.1/9.9/9.9× the HF chunked algorithm at
     * 4K/32K/128K, variant 0 10.0/8.8/8.7×. The fold is exact up to the bf16 rounding of the
     * scaled operands (the runs' one-token "fold failures" were the test's conditioning: the
     * fold changes nothing at one token, see test_cuda_attention.c). */
    MR_CUDA_LT_DEFAULT = MR_CUDA_LT_STATE_HI | MR_CUDA_LT_DECAY_FOLD | MR_CUDA_LT_KV_PIPE
};

/* Workspace bytes for groups of up to max_chunks chunks (capped at MR_CUDA_LIGHTNING_MAX_GROUP;
 * 64 chunks = 16K tokens per group is plenty for full speed). */
size_t mr_cuda_lightning_prefill_ws_bytes(int n_heads, int head_dim, int max_chunks);

mr_status mr_cuda_lightning_prefill(const mr_cuda_lightning_prefill_args *a, cudaStream_t st);

/* ---- softmax attention -----------------------------------------------------------------------
 * KV cache of one layer: k_cache, v_cache bf16 [n_blocks][block_tokens][KV][d]; position p of a
 * sequence lives in block block_table[row][p / block_tokens], row p % block_tokens, where row is
 * the sequence's row of the block table [*][block_table_stride] (int32 block ids).
 * q [n][H·d] and k [n][KV·d] (fp32) are rotated in place (partial NeoX RoPE on dims
 * [0, rotary_dim), pairs (c, c + rotary_dim/2), angle fp32(pos)·inv_freq[c]); k (rotated) and v
 * are written to the cache at their positions, then each query attends causally over positions
 * [0, pos] with scale 1/sqrt(d); q head j reads kv head j / (H/KV). out [n][H·d] fp32. */

typedef struct mr_cuda_attention_prefill_args {
    int n_heads, n_kv_heads, head_dim, rotary_dim;
    const float *inv_freq; /* [rotary_dim/2] */
    int n_segments;
    const mr_segment *segs;     /* host [n_segments]: rows, and pos0 = positions already cached */
    const int32_t *block_table; /* [n_segments][block_table_stride]: segment s uses row s */
    int block_table_stride, block_tokens;
    uint16_t *k_cache, *v_cache; /* bf16 */
    float *q, *k;                /* rotated in place */
    const float *v;
    float *out;
    int variant; /* MR_CUDA_AP_* bits: MR_CUDA_AP_DEFAULT in production; 0 = no bits */
} mr_cuda_attention_prefill_args;

/* Tuning variants of the prefill, a bit set: each computes the same function (within rounding)
 * and passes the same tests; 0 is the plain kernel, MR_CUDA_AP_DEFAULT the measured default; the
 * others are there so that one GPU run can time them side by side (tests/gpu/test_cuda_attention
 * --perf, bench_cuda_attention --sp-variant). */
enum {
    MR_CUDA_AP_FUSED_ROPE = 1, /* q rotated in the attention kernel's query-tile load, launch 1
                                  only k and v (when rotary_dim % 8 == 0; else ignored) */
    MR_CUDA_AP_EXP2_FTZ = 2,   /* the softmax exponentials as bare ex2.approx.ftz */
    MR_CUDA_AP_KEYS64 = 4,     /* 64-key tiles at head_dim 128 (default 32; 64 below 128) */
    MR_CUDA_AP_VARIANTS = 8,   /* variants are 0 .. MR_CUDA_AP_VARIANTS − 1 */
    /* The production default. Issue 7 run D (H200, H = 64, KV = 8, d = 128, same run as the
     * PyTorch peer): variant 6 0.91/0.91/0.97× SDPA flash at 4K/32K/128K tokens, variant 0
     * 0.83/0.85/0.90×. */
    MR_CUDA_AP_DEFAULT = MR_CUDA_AP_EXP2_FTZ | MR_CUDA_AP_KEYS64
};

mr_status mr_cuda_attention_prefill(const mr_cuda_attention_prefill_args *a, cudaStream_t st);

/* One decode step: row i is sequence i's new token at position pos[i] (keys [0, pos[i]] after the
 * cache write); pos[i] < 0 marks a padding row (skipped). max_pos (host) bounds every pos[i] + 1
 * and sizes the split-KV grid; the partial results go through ws. */
typedef struct mr_cuda_attention_decode_args {
    int n_heads, n_kv_heads, head_dim, rotary_dim;
    const float *inv_freq; /* [rotary_dim/2] */
    int n;
    const int32_t *pos;         /* [n] */
    const int32_t *block_table; /* [n][block_table_stride]: row i for sequence i */
    int block_table_stride, block_tokens;
    int max_pos;
    uint16_t *k_cache, *v_cache;
    float *q, *k;
    const float *v;
    float *out;
    float *ws; /* split partials */
    size_t ws_bytes;
} mr_cuda_attention_decode_args;

/* Workspace bytes for up to n rows (any max_pos). */
size_t mr_cuda_attention_decode_ws_bytes(int n, int n_heads, int head_dim);

mr_status mr_cuda_attention_decode(const mr_cuda_attention_decode_args *a, cudaStream_t st);

#ifdef __cplusplus
}
#endif

#endif
