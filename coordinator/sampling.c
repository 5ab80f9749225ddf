#include "coordinator/sampling.h"

#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/rng.h"

void mr_sampling_params_default(mr_sampling_params *p) {
    memset(p, 0, sizeof *p);
    p->temperature = 1.0f;
    p->top_p = 1.0f;
    p->repetition_penalty = 1.0f;
}

void mr_sampler_init(mr_sampler *s, const mr_sampling_params *p, int vocab_limit) {
    s->p = *p;
    s->vocab_limit = vocab_limit;
    uint64_t seed = p->seed;
    if (!p->has_seed) {
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || read(fd, &seed, sizeof seed) != (ssize_t)sizeof seed)
            seed = (uint64_t)(uintptr_t)s;
        if (fd >= 0) close(fd);
    }
    s->rng = seed ^ 0x6a09e667f3bcc909ull;
}

/* Uniform in [0, 1) with 53 bits. */
static double uniform(uint64_t *state) {
    return (double)(mr_splitmix64(state) >> 11) * 0x1p-53;
}

/* Index of the n largest of v[0..count) into idx[0..n), descending (ties: lower id first). */
static void top_n(const float *v, int count, int n, int32_t *idx) {
    int have = 0;
    for (int i = 0; i < count; i++) {
        if (have == n && !(v[i] > v[idx[n - 1]])) continue;
        int j = have < n ? have++ : n - 1;
        while (j > 0 && v[i] > v[idx[j - 1]]) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = i;
    }
}

static int cmp_desc(const void *a, const void *b, void *ctx);

int32_t mr_sampler_next(mr_sampler *s, const float *logits, int vocab, const int32_t *seen,
                        int n_seen, int n_top, float *work, mr_sample_result *r) {
    const int V = s->vocab_limit > 0 && s->vocab_limit < vocab ? s->vocab_limit : vocab;
    float *x = work;                                      /* [V] adjusted logits */
    int32_t *idx = (int32_t *)(work + 2 * (size_t)vocab); /* [V] candidate ids */
    memcpy(x, logits, (size_t)V * sizeof *x);
    if (s->p.repetition_penalty != 1.0f && seen)
        for (int i = 0; i < n_seen; i++) {
            int t = seen[i];
            if (t < 0 || t >= V) continue;
            /* applied once per distinct id: mark by a NaN-free check against the original */
            if (x[t] != logits[t]) continue;
            x[t] = x[t] > 0 ? x[t] / s->p.repetition_penalty : x[t] * s->p.repetition_penalty;
        }
    /* logprobs of the model's distribution */
    float mx = -INFINITY;
    for (int i = 0; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
    double z = 0;
    for (int i = 0; i < V; i++) z += exp((double)logits[i] - mx);
    const double logz = mx + log(z);

    int32_t tok;
    if (s->p.temperature <= 0.0f) {
        tok = 0;
        for (int i = 1; i < V; i++)
            if (x[i] > x[tok]) tok = i;
    } else {
        const float inv_t = 1.0f / s->p.temperature;
        float *p = work + vocab; /* probabilities (unnormalised) of the candidates, in idx order */
        float xmax = -INFINITY;
        for (int i = 0; i < V; i++) xmax = x[i] > xmax ? x[i] : xmax;
        /* candidates: the top-k, or for top-p alone the top 1024 (enough unless the
         * distribution is very flat, then every id) */
        int k = s->p.top_k > 0 && s->p.top_k < V ? s->p.top_k : V;
        int n = k;
        if (k == V && s->p.top_p < 1.0f && V > 1024) n = 1024;
        double total = 0; /* mass of the candidate set the nucleus is a fraction of */
        if (n < V) {
            top_n(x, V, n, idx);
            if (k < V) {
                for (int i = 0; i < n; i++) total += exp((double)(x[idx[i]] - xmax) * inv_t);
            } else {
                for (int i = 0; i < V; i++) total += exp((double)(x[i] - xmax) * inv_t);
            }
        } else {
            for (int i = 0; i < V; i++) idx[i] = i;
            for (int i = 0; i < V; i++) total += exp((double)(x[i] - xmax) * inv_t);
        }
        for (int i = 0; i < n; i++) p[i] = expf((x[idx[i]] - xmax) * inv_t);
        double target = s->p.top_p < 1.0f ? s->p.top_p * total : total;
        if (s->p.top_p < 1.0f) {
            if (n == V) { /* every id is a candidate: sort them by probability */
                for (int i = 0; i < n; i++) x[idx[i]] = p[i];
                qsort_r(idx, (size_t)n, sizeof *idx, cmp_desc, x);
                for (int i = 0; i < n; i++) p[i] = x[idx[i]];
            }
            double keep = 0;
            int m = 0;
            while (m < n && (m == 0 || keep < target)) keep += p[m++];
            if (keep < target && n < V) { /* the 1024 were not enough: take every id */
                for (int i = 0; i < V; i++) {
                    idx[i] = i;
                    x[i] = expf((x[i] - xmax) * inv_t);
                }
                qsort_r(idx, (size_t)V, sizeof *idx, cmp_desc, x);
                for (int i = 0; i < V; i++) p[i] = x[idx[i]];
                keep = 0;
                m = 0;
                while (m < V && (m == 0 || keep < target)) keep += p[m++];
            }
            n = m;
            target = keep;
        } else {
            target = 0;
            for (int i = 0; i < n; i++) target += p[i];
        }
        double u = uniform(&s->rng) * target, acc = 0;
        tok = idx[n - 1];
        for (int i = 0; i < n; i++) {
            acc += p[i];
            if (u < acc) {
                tok = idx[i];
                break;
            }
        }
    }
    if (r) {
        r->logprob = (float)(logits[tok] - logz);
        if (n_top > MR_MAX_TOP_LOGPROBS) n_top = MR_MAX_TOP_LOGPROBS;
        if (n_top > V) n_top = V;
        r->n_top = n_top;
        if (n_top > 0) {
            top_n(logits, V, n_top, r->top_ids);
            for (int i = 0; i < n_top; i++)
                r->top_logprobs[i] = (float)(logits[r->top_ids[i]] - logz);
        }
    }
    return tok;
}

static int cmp_desc(const void *a, const void *b, void *ctx) {
    const float *pr = ctx;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (pr[i] != pr[j]) return pr[i] > pr[j] ? -1 : 1;
    return i < j ? -1 : i > j;
}
