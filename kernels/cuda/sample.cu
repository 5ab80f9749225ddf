/* sample.cu — sampling on the GPU (cuda_sample.h): temperature, top-k, top-p, greedy and the
 * logprobs, with the semantics of kernels/sample.h's reference (kernels/ref/sample_ref.c).
 *
 * One block of THREADS threads per row, or for launches of few rows (where one block per row
 * would leave most SMs idle) a cluster of 8 blocks per row: each block counts its part of the row
 * into its own histogram and adds it to block 0's through distributed shared memory; block 0
 * holds the row's state, selects, sorts and draws. Warp w of the row's NW warps owns the
 * contiguous id range [w·seg, (w+1)·seg) (lanes read it coalesced, UNROLL loads in flight), so that
 * per-warp partial sums are sums of consecutive ids: the draw over the whole vocabulary (no top-k
 * nor top-p) finds its warp from the 32 partial sums and then scans only that warp's range.
 * Passes over the row:
 *   1. the max of the composite key (logit, then lower id) — the greedy token and xmax — and
 *      the histogram of the key's top byte;
 *   2. Σ exp(x - xmax) (the logprobs' normaliser), Σ expf((x - xmax)/T) where the candidate set
 *      or the nucleus needs the whole vocabulary's mass, and the key's next byte's histogram;
 *   3+. radix select: the next bytes' histograms of the keys still tied with the threshold, until
 *      the bucket of the n-th largest key holds exactly the keys still needed (the composite key
 *      is unique per id, so this ends by byte 8);
 *   then the selected keys (n_sel = the candidates and the top logprobs, <= 1024) are gathered
 *   into shared memory and bitonic-sorted, descending: logit descending, ties to the lower id,
 *   the reference's candidate order. Warp 0 then runs the nucleus and the draw over the sorted
 *   candidates with a warp scan of double running sums, in the reference's order.
 * Sums are in double over float expf terms, so they differ from the reference's sequential sums
 * by rounding only (expf's ulp, summation order): a token can differ only where u · mass falls
 * within that rounding of a running-sum boundary. NaN logits are not supported (the result is
 * some id in range). */
#include <cooperative_groups.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_check.h" /* first: status.h and log.h with C linkage */
#include "common/check.h"
#include "kernels/cuda/cuda_sample.h"

namespace {

constexpr int THREADS = 1024, WARPS = THREADS / 32, UNROLL = 4;
constexpr int MAXC = MR_SAMPLE_MAX_CANDIDATES;
constexpr int MAX_CS = 8;              /* blocks per row at most (a portable cluster) */
constexpr int MAX_NW = MAX_CS * WARPS; /* warps per row at most */
constexpr unsigned FULL_MASK = 0xffffffffu;

enum Mode { MODE_GREEDY, MODE_CAND, MODE_FULL, MODE_HOST };

/* Order-preserving map of a float to uint32 (-0 taken as +0, as the reference's == does). */
__device__ __forceinline__ uint32_t ord_of(float f) {
    const uint32_t b = f == 0.0f ? 0u : __float_as_uint(f);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__device__ __forceinline__ float float_of(uint32_t o) {
    return __uint_as_float((o & 0x80000000u) ? (o & 0x7fffffffu) : ~o);
}

/* Composite key: larger logit first, then lower id; unique per id. 0 is below every key. */
__device__ __forceinline__ uint64_t key_of(float v, int j) {
    return ((uint64_t)ord_of(v) << 32) | (uint32_t)(0xffffffffu - (uint32_t)j);
}
__device__ __forceinline__ int id_of(uint64_t k) {
    return (int)(0xffffffffu - (uint32_t)k);
}
__device__ __forceinline__ float val_of(uint64_t k) {
    return float_of((uint32_t)(k >> 32));
}

/* A block's shared memory. With a cluster of CS blocks per row, every block counts into its own
 * `hist`, and the row's state — everything below `hist` — is that of the cluster's block 0, which
 * the others reach through distributed shared memory (and which outlives their accesses: block 0
 * ends last). With CS = 1 it is the block's own. */
struct Shared {
    unsigned hist[256];          /* this block's counts of the current byte */
    unsigned hall[256];          /* the row's counts (block 0) */
    uint64_t cand[MAXC];         /* selected keys, then sorted descending */
    uint64_t wmax[MAX_NW];       /* per warp of the row: max key */
    double wz[MAX_NW];           /* per warp: Σ exp(x - xmax) */
    double wt[MAX_NW];           /* per warp: Σ expf((x - xmax)·inv_t), consecutive id ranges */
    uint64_t kmax, prefix, mask; /* radix select: resolved high bits of the threshold */
    unsigned need;               /* keys still needed inside the prefix's bucket */
    int done, count;
    double logz, total;
};

/* Calls f(j, v, ok) for the ids [beg, end) of this warp, warp-uniformly (ok = j < end). */
template <class F>
__device__ __forceinline__ void for_range(const float *x, int beg, int end, int lane, F f) {
    for (int j0 = beg; j0 < end; j0 += 32 * UNROLL) {
        float v[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            const int j = j0 + u * 32 + lane;
            v[u] = j < end ? __ldg(x + j) : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            const int j = j0 + u * 32 + lane;
            f(j, v[u], j < end);
        }
    }
}

/* hist[bin] += 1 for each lane with on; lanes of one bin add once (warp-uniform call). */
__device__ __forceinline__ void hist_add(unsigned *hist, bool on, unsigned bin) {
    const unsigned act = __ballot_sync(FULL_MASK, on);
    if (on) {
        const unsigned peers = __match_any_sync(act, bin);
        if ((int)(threadIdx.x & 31) == __ffs(peers) - 1) atomicAdd(&hist[bin], __popc(peers));
    }
}

__device__ __forceinline__ double warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

__device__ __forceinline__ double warp_incl_scan(double v, int lane) {
    for (int o = 1; o < 32; o <<= 1) {
        const double t = __shfl_up_sync(FULL_MASK, v, o);
        if (lane >= o) v += t;
    }
    return v;
}

/* Warp 0, after a histogram of the byte at `shift` of the keys inside the prefix: the bucket of
 * the need-th largest becomes part of the prefix; done when that bucket holds exactly the keys
 * still needed. Invariant: 1 <= need <= keys inside the prefix. */
__device__ void radix_step(Shared &s, int shift, int lane) {
    unsigned c[8], sum = 0;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        c[i] = s.hall[255 - 8 * lane - i];
        sum += c[i];
    }
    unsigned incl = sum;
    for (int o = 1; o < 32; o <<= 1) {
        const unsigned t = __shfl_up_sync(FULL_MASK, incl, o);
        if (lane >= o) incl += t;
    }
    const unsigned need = s.need;
    unsigned above = incl - sum;
    if (above < need && need <= incl) { /* exactly one lane */
        for (int i = 0; i < 8; i++) {
            if (above + c[i] >= need) {
                const unsigned b = 255u - 8u * (unsigned)lane - (unsigned)i;
                s.prefix |= (uint64_t)b << shift;
                s.mask |= (uint64_t)0xff << shift;
                s.need = need - above;
                s.done = c[i] == need - above;
                break;
            }
            above += c[i];
        }
    }
}

/* Warp 0: the first i < cnt whose running sum of p_i = expf((x_i - xmax)·inv_t) over the sorted
 * candidates is >= thr (strict: > thr), or -1; *at: that running sum; *sum: over all cnt. */
__device__ int scan_first(const uint64_t *cand, int cnt, float xmax, float inv_t, double thr,
                          bool strict, int lane, double *at, double *sum) {
    double base = 0;
    int hit = -1;
    for (int c0 = 0; c0 < cnt; c0 += 32) {
        const int i = c0 + lane;
        const float p = i < cnt ? expf((val_of(cand[i]) - xmax) * inv_t) : 0.0f;
        const double incl = base + warp_incl_scan((double)p, lane);
        const bool ok = i < cnt && (strict ? thr < incl : incl >= thr);
        const unsigned b = __ballot_sync(FULL_MASK, ok);
        if (hit < 0 && b) {
            const int l = __ffs(b) - 1;
            hit = c0 + l;
            *at = __shfl_sync(FULL_MASK, incl, l);
        }
        base = __shfl_sync(FULL_MASK, incl, 31);
    }
    *sum = base;
    return hit;
}

/* Barrier of the row's blocks (and memory fence for their shared-memory accesses). */
template <int CS> __device__ __forceinline__ void row_sync() {
    if (CS > 1)
        cooperative_groups::this_cluster().sync();
    else
        __syncthreads();
}

/* After a pass: this block's counts into the row's (block 0's `hall`). */
__device__ __forceinline__ void hist_merge(Shared &s, Shared &S, int tid) {
    __syncthreads();
    for (int i = tid; i < 256; i += THREADS)
        if (s.hist[i]) atomicAdd(&S.hall[i], s.hist[i]);
}

/* Zeroes this block's counts and, in block 0, the row's; a row_sync must follow. */
__device__ __forceinline__ void hist_zero(Shared &s, int rank, int tid) {
    for (int i = tid; i < 256; i += THREADS) {
        s.hist[i] = 0;
        if (rank == 0) s.hall[i] = 0;
    }
}

template <int CS>
static __global__ void __launch_bounds__(THREADS)
    sample_kernel(const float *logits, int vocab, const mr_sample_row *rows, int32_t *tokens,
                  mr_sample_result *out) {
    __shared__ Shared s;
    int rank = 0;
    Shared *Sp = &s;
    if (CS > 1) {
        cooperative_groups::cluster_group cl = cooperative_groups::this_cluster();
        rank = (int)cl.block_rank();
        Sp = cl.map_shared_rank(&s, 0);
    }
    Shared &S = *Sp; /* the row's state: block 0's */
    const int ri = (int)blockIdx.x / CS;
    const mr_sample_row P = rows[ri];
    const float *x = logits + (size_t)P.row * (size_t)vocab;
    const int V = P.vocab_limit > 0 && P.vocab_limit < vocab ? P.vocab_limit : vocab;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int NW = CS * WARPS, gw = rank * WARPS + warp; /* warps of the row; this one */
    const int seg = (V + NW - 1) / NW;
    const int beg = min(V, gw * seg), end = min(V, beg + seg);

    /* the candidate set, as the reference chooses it */
    const bool greedy = !(P.temperature > 0.0f);
    const float inv_t = greedy ? 0.0f : 1.0f / P.temperature;
    const int k = P.top_k > 0 && P.top_k < V ? P.top_k : V;
    const bool topp = P.top_p < 1.0f;
    int mode = MODE_FULL, C = 0;
    if (greedy)
        mode = MODE_GREEDY;
    else if (isinf(inv_t))
        mode = MODE_HOST;
    else if (k < V) {
        mode = k <= MAXC ? MODE_CAND : MODE_HOST;
        C = k;
    } else if (topp) {
        mode = V > MAXC ? MODE_CAND : MODE_HOST;
        C = MAXC;
    }
    if (mode == MODE_HOST) { /* uniform over the row's blocks, before any row_sync */
        if (tid == 0 && rank == 0) tokens[ri] = MR_SAMPLE_ON_HOST;
        return;
    }
    const int n_top = max(0, min(min(P.n_top, MR_MAX_TOP_LOGPROBS), V));
    const int n_sel = mode == MODE_CAND ? max(C, n_top) : n_top;
    const bool sel = n_sel > 0;
    /* the whole vocabulary's temperature mass: the draw over every id, or top-p's total */
    const bool want_t = mode == MODE_FULL || (mode == MODE_CAND && k == V);

    if (tid == 0 && rank == 0) {
        s.prefix = 0;
        s.mask = 0;
        s.need = (unsigned)n_sel;
        s.done = !sel;
        s.count = 0;
    }
    hist_zero(s, rank, tid);
    row_sync<CS>();

    /* pass 1: max key; top byte's histogram */
    uint64_t kmax = 0;
    for_range(x, beg, end, lane, [&](int j, float v, bool ok) {
        const uint64_t key = ok ? key_of(v, j) : 0;
        kmax = key > kmax ? key : kmax;
        if (sel) hist_add(s.hist, ok, (unsigned)(key >> 56));
    });
    for (int o = 16; o > 0; o >>= 1) {
        const uint64_t t = __shfl_xor_sync(FULL_MASK, kmax, o);
        kmax = t > kmax ? t : kmax;
    }
    if (lane == 0) S.wmax[gw] = kmax;
    if (sel) hist_merge(s, S, tid);
    row_sync<CS>();
    if (rank == 0 && warp == 0) {
        uint64_t m = 0;
        for (int i = lane; i < NW; i += 32) m = s.wmax[i] > m ? s.wmax[i] : m;
        for (int o = 16; o > 0; o >>= 1) {
            const uint64_t t = __shfl_xor_sync(FULL_MASK, m, o);
            m = t > m ? t : m;
        }
        if (lane == 0) s.kmax = m;
        if (sel) radix_step(s, 56, lane);
    }
    row_sync<CS>();
    const float xmax = val_of(S.kmax);
    const bool hist_on = sel && !S.done;
    row_sync<CS>(); /* every block has read S before block 0 changes it */
    if (hist_on) hist_zero(s, rank, tid);
    row_sync<CS>();

    /* pass 2: the sums; the next byte's histogram */
    {
        const uint64_t pre = S.prefix, msk = S.mask;
        double sz = 0, st = 0;
        for_range(x, beg, end, lane, [&](int j, float v, bool ok) {
            if (ok) {
                sz += (double)expf(v - xmax);
                if (want_t) st += (double)expf((v - xmax) * inv_t);
            }
            if (hist_on) {
                const uint64_t key = ok ? key_of(v, j) : 0;
                hist_add(s.hist, ok && (key & msk) == pre, (unsigned)(key >> 48) & 255u);
            }
        });
        sz = warp_sum(sz);
        st = warp_sum(st);
        if (lane == 0) {
            S.wz[gw] = sz;
            S.wt[gw] = st;
        }
        if (hist_on) hist_merge(s, S, tid);
    }
    row_sync<CS>();
    if (rank == 0) {
        if (warp == 0 && hist_on) radix_step(s, 48, lane);
        if (tid == 0) {
            double z = 0, t = 0;
            for (int w = 0; w < NW; w++) {
                z += s.wz[w];
                t += s.wt[w];
            }
            s.logz = (double)xmax + log(z);
            s.total = t;
        }
    }
    row_sync<CS>();

    /* passes 3+: the remaining bytes, while the threshold's bucket holds more than needed */
    for (int shift = 40; shift >= 0 && sel && !S.done; shift -= 8) {
        row_sync<CS>(); /* every thread of the row has read S.done */
        hist_zero(s, rank, tid);
        row_sync<CS>();
        const uint64_t pre = S.prefix, msk = S.mask;
        for_range(x, beg, end, lane, [&](int j, float v, bool ok) {
            const uint64_t key = ok ? key_of(v, j) : 0;
            hist_add(s.hist, ok && (key & msk) == pre, (unsigned)(key >> shift) & 255u);
        });
        hist_merge(s, S, tid);
        row_sync<CS>();
        if (rank == 0 && warp == 0) radix_step(s, shift, lane);
        row_sync<CS>();
    }

    /* gather the n_sel selected keys into block 0 */
    if (sel) {
        const uint64_t pre = S.prefix, msk = S.mask;
        for_range(x, beg, end, lane, [&](int j, float v, bool ok) {
            const uint64_t key = ok ? key_of(v, j) : 0;
            const bool in = ok && (key & msk) >= pre;
            const unsigned b = __ballot_sync(FULL_MASK, in);
            if (b) {
                int base = 0;
                if (lane == 0) base = atomicAdd(&S.count, __popc(b));
                base = __shfl_sync(FULL_MASK, base, 0);
                const int at = base + __popc(b & ((1u << lane) - 1u));
                if (in && at < MAXC) S.cand[at] = key;
            }
        });
    }
    row_sync<CS>();
    if (rank != 0) return; /* no block touches another's shared memory after the last row_sync */

    /* block 0: sort the selected keys descending */
    int P2 = 1;
    while (P2 < n_sel) P2 <<= 1;
    if (sel) {
        for (int i = min(s.count, MAXC) + tid; i < P2; i += THREADS) s.cand[i] = 0;
        __syncthreads();
        for (int size = 2; size <= P2; size <<= 1)
            for (int stride = size >> 1; stride > 0; stride >>= 1) {
                for (int i = tid; i < P2; i += THREADS) {
                    const int p = i ^ stride;
                    if (p > i) {
                        const uint64_t a = s.cand[i], b = s.cand[p];
                        const bool desc = (i & size) == 0;
                        if (desc ? a < b : a > b) {
                            s.cand[i] = b;
                            s.cand[p] = a;
                        }
                    }
                }
                __syncthreads();
            }
    }

    /* the draw (warp 0 of block 0) */
    if (warp == 0) {
        int tok = id_of(s.kmax);
        float tok_x = xmax;
        bool on_host = false;
        if (mode == MODE_CAND) {
            double total;
            if (k < V) { /* the top-k's mass, as the reference sums it (double exp) */
                double t = 0;
                for (int i = lane; i < C; i += 32)
                    t += exp((double)(val_of(s.cand[i]) - xmax) * inv_t);
                total = warp_sum(t);
            } else {
                total = s.total;
            }
            int m = C;
            double kept = 0, all = 0;
            if (topp) { /* the nucleus: the shortest prefix reaching top_p · total */
                const int hit = scan_first(s.cand, C, xmax, inv_t, (double)P.top_p * total, false,
                                           lane, &kept, &all);
                if (hit < 0)
                    on_host = true; /* the candidates do not reach it: every id is needed */
                else
                    m = hit + 1;
            } else {
                scan_first(s.cand, C, xmax, inv_t, 0.0, false, lane, &kept, &all);
                kept = all;
            }
            if (!on_host) {
                double at = 0, sum = 0;
                const int hit =
                    scan_first(s.cand, m, xmax, inv_t, P.u * kept, true, lane, &at, &sum);
                const int i = hit < 0 ? m - 1 : hit;
                tok = id_of(s.cand[i]);
                tok_x = val_of(s.cand[i]);
            }
        } else if (mode == MODE_FULL) { /* every id, in id order */
            const double uu = P.u * s.total;
            double cum = 0;
            int w = -1;
            for (int i = 0; i < NW; i++) { /* the same on every lane */
                if (w < 0 && uu < cum + s.wt[i]) w = i;
                if (w < 0) cum += s.wt[i];
            }
            tok = V - 1; /* the reference's choice when no running sum exceeds u · mass */
            if (w >= 0) {
                const int b0 = min(V, w * seg), e0 = min(V, b0 + seg);
                int last_pos = -1, found = -1;
                double base = cum;
                for (int j0 = b0; j0 < e0 && found < 0; j0 += 32) {
                    const int j = j0 + lane;
                    const float p = j < e0 ? expf((__ldg(x + j) - xmax) * inv_t) : 0.0f;
                    const double incl = base + warp_incl_scan((double)p, lane);
                    const unsigned b = __ballot_sync(FULL_MASK, j < e0 && uu < incl);
                    const unsigned pos = __ballot_sync(FULL_MASK, p > 0.0f);
                    if (b)
                        found = j0 + __ffs(b) - 1;
                    else if (pos)
                        last_pos = j0 + 31 - __clz(pos);
                    base = __shfl_sync(FULL_MASK, incl, 31);
                }
                /* not found: rounding between the warp's sum and this scan; its last id with
                 * mass is as near the boundary as any */
                tok = found >= 0 ? found : last_pos >= 0 ? last_pos : tok;
            }
            tok_x = __ldg(x + tok);
        }
        if (lane == 0) {
            tokens[ri] = on_host ? MR_SAMPLE_ON_HOST : tok;
            out[ri].logprob = (float)((double)tok_x - s.logz);
            out[ri].n_top = n_top;
        }
        for (int i = lane; i < n_top; i += 32) {
            out[ri].top_ids[i] = id_of(s.cand[i]);
            out[ri].top_logprobs[i] = (float)((double)val_of(s.cand[i]) - s.logz);
        }
    }
}

} // namespace

/* Launches `cnt` rows, CS blocks (one cluster) per row. */
template <int CS>
static mr_status launch(const float *logits, int vocab, const mr_sample_row *d_rows, int32_t *d_tok,
                        mr_sample_result *d_out, int cnt, cudaStream_t stream) {
    if (CS == 1) {
        sample_kernel<1>
            <<<(unsigned)cnt, THREADS, 0, stream>>>(logits, vocab, d_rows, d_tok, d_out);
    } else {
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = dim3((unsigned)(cnt * CS));
        cfg.blockDim = dim3(THREADS);
        cfg.stream = stream;
        cudaLaunchAttribute attr[1];
        attr[0].id = cudaLaunchAttributeClusterDimension;
        attr[0].val.clusterDim.x = CS;
        attr[0].val.clusterDim.y = 1;
        attr[0].val.clusterDim.z = 1;
        cfg.attrs = attr;
        cfg.numAttrs = 1;
        MR_CUDA_CHECK(
            cudaLaunchKernelEx(&cfg, sample_kernel<CS>, logits, vocab, d_rows, d_tok, d_out));
    }
    MR_CUDA_CHECK_LAUNCH("sample kernel launch");
    return MR_OK;
}

struct mr_cuda_sampler {
    int max_rows;
    int split;       /* blocks per row: 0 = by batch size (MR_CUDA_SAMPLE_SPLIT_ROWS), 1, 8 */
    int can_cluster; /* the device launches thread-block clusters */
    mr_sample_row *h_rows, *d_rows; /* [max_rows]: page-locked host, device */
    int32_t *h_tok, *d_tok;
    mr_sample_result *h_out, *d_out;
};

extern "C" void mr_cuda_sampler_destroy(mr_cuda_sampler *s) {
    if (!s) return;
    cudaFreeHost(s->h_rows);
    cudaFreeHost(s->h_tok);
    cudaFreeHost(s->h_out);
    cudaFree(s->d_rows);
    cudaFree(s->d_tok);
    cudaFree(s->d_out);
    free(s);
}

extern "C" mr_status mr_cuda_sampler_create(int max_rows, mr_cuda_sampler **out) {
    mr_status st = MR_OK;
    if (max_rows < 1) {
        MR_LOG_ERROR(MR_LOG_GPU, "mr_cuda_sampler_create: max_rows %d < 1", max_rows);
        return MR_ERR_INVALID;
    }
    mr_cuda_sampler *s = (mr_cuda_sampler *)calloc(1, sizeof *s);
    if (!s) return MR_ERR_NOMEM;
    const size_t n = (size_t)max_rows;
    s->max_rows = max_rows;
    int dev = 0, cl = 0;
    MR_CUDA_CHECK_GOTO(cudaGetDevice(&dev), err_free);
    MR_CUDA_CHECK_GOTO(cudaDeviceGetAttribute(&cl, cudaDevAttrClusterLaunch, dev), err_free);
    s->can_cluster = cl;
    MR_CUDA_CHECK_GOTO(cudaHostAlloc((void **)&s->h_rows, n * sizeof *s->h_rows, 0), err_free);
    MR_CUDA_CHECK_GOTO(cudaHostAlloc((void **)&s->h_tok, n * sizeof *s->h_tok, 0), err_free);
    MR_CUDA_CHECK_GOTO(cudaHostAlloc((void **)&s->h_out, n * sizeof *s->h_out, 0), err_free);
    MR_CUDA_CHECK_GOTO(cudaMalloc((void **)&s->d_rows, n * sizeof *s->d_rows), err_free);
    MR_CUDA_CHECK_GOTO(cudaMalloc((void **)&s->d_tok, n * sizeof *s->d_tok), err_free);
    MR_CUDA_CHECK_GOTO(cudaMalloc((void **)&s->d_out, n * sizeof *s->d_out), err_free);
    *out = s;
    return MR_OK;
err_free:
    mr_cuda_sampler_destroy(s); /* accepts the half-built sampler */
    return st;
}

extern "C" mr_status mr_cuda_sampler_set_split(mr_cuda_sampler *s, int blocks_per_row) {
    if (!s || (blocks_per_row != 0 && blocks_per_row != 1 && blocks_per_row != MAX_CS)) {
        MR_LOG_ERROR(MR_LOG_GPU, "mr_cuda_sampler_set_split: %d blocks per row (0, 1 or %d)",
                     blocks_per_row, MAX_CS);
        return MR_ERR_INVALID;
    }
    s->split = blocks_per_row;
    return MR_OK;
}

extern "C" mr_status mr_cuda_sample(mr_cuda_sampler *s, const float *logits, int n_logit_rows,
                                    int vocab, const mr_sample_row *rows, int n, int32_t *tokens,
                                    mr_sample_result *out, cudaStream_t stream) {
    if (!s || n < 0 || (n > 0 && (!logits || !rows || !tokens || !out))) {
        MR_LOG_ERROR(MR_LOG_GPU, "mr_cuda_sample: NULL argument or n %d < 0", n);
        return MR_ERR_INVALID;
    }
    for (int i = 0; i < n; i++)
        if (mr_sample_row_check(&rows[i], vocab, n_logit_rows) != MR_OK) return MR_ERR_INVALID;
    for (int c0 = 0; c0 < n; c0 += s->max_rows) {
        const int cnt = n - c0 < s->max_rows ? n - c0 : s->max_rows;
        memcpy(s->h_rows, rows + c0, (size_t)cnt * sizeof *rows);
        MR_CUDA_CHECK(cudaMemcpyAsync(s->d_rows, s->h_rows, (size_t)cnt * sizeof *rows,
                                      cudaMemcpyHostToDevice, stream));
        const int split = s->split ? s->split : cnt <= MR_CUDA_SAMPLE_SPLIT_ROWS ? MAX_CS : 1;
        if (split > 1 && s->can_cluster)
            MR_CHECK(launch<MAX_CS>(logits, vocab, s->d_rows, s->d_tok, s->d_out, cnt, stream));
        else
            MR_CHECK(launch<1>(logits, vocab, s->d_rows, s->d_tok, s->d_out, cnt, stream));
        MR_CUDA_CHECK(cudaMemcpyAsync(s->h_tok, s->d_tok, (size_t)cnt * sizeof *tokens,
                                      cudaMemcpyDeviceToHost, stream));
        MR_CUDA_CHECK(cudaMemcpyAsync(s->h_out, s->d_out, (size_t)cnt * sizeof *out,
                                      cudaMemcpyDeviceToHost, stream));
        MR_CUDA_CHECK(cudaStreamSynchronize(stream));
        memcpy(tokens + c0, s->h_tok, (size_t)cnt * sizeof *tokens);
        memcpy(out + c0, s->h_out, (size_t)cnt * sizeof *out);
    }
    return MR_OK;
}
