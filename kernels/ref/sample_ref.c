/* sample_ref.c — the reference sampler (kernels/sample.h). Plain C, single-threaded: it is the
 * host path of the scheduler and the oracle of the device samplers. */
#include "kernels/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

static int effective_vocab(const mr_sample_row *p, int vocab) {
    return p->vocab_limit > 0 && p->vocab_limit < vocab ? p->vocab_limit : vocab;
}

mr_status mr_sample_row_check(const mr_sample_row *p, int vocab, int n_rows) {
    const char *why = NULL;
    if (vocab < 1)
        why = "vocab < 1";
    else if (p->row < 0 || p->row >= n_rows)
        why = "row outside the logits";
    else if (!(p->temperature >= 0.0f) || isinf(p->temperature))
        why = "temperature is not finite and >= 0";
    else if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        why = "top_p outside (0, 1]";
    else if (p->top_k < 0)
        why = "top_k < 0";
    else if (p->n_top < 0 || p->n_top > MR_MAX_TOP_LOGPROBS)
        why = "n_top outside [0, 20]";
    else if (!(p->u >= 0.0 && p->u < 1.0))
        why = "u outside [0, 1)";
    if (!why) return MR_OK;
    MR_LOG_ERROR(MR_LOG_KERN, "sample: row %d: %s", p->row, why);
    return MR_ERR_INVALID;
}

int mr_sample_row_fits_device(const mr_sample_row *p, int vocab) {
    const int V = effective_vocab(p, vocab);
    if (p->temperature <= 0.0f) return 1;
    if (isinf(1.0f / p->temperature)) return 0; /* a denormal temperature: inv_t overflows */
    if (p->top_k > 0 && p->top_k < V) return p->top_k <= MR_SAMPLE_MAX_CANDIDATES;
    /* top-p alone: the top 1024 unless the vocabulary is no larger (then sorted by p) */
    return p->top_p >= 1.0f || V > MR_SAMPLE_MAX_CANDIDATES;
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

static int cmp_desc(const void *a, const void *b, void *ctx) {
    const float *pr = ctx;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (pr[i] != pr[j]) return pr[i] > pr[j] ? -1 : 1;
    return i < j ? -1 : i > j;
}

/* The draw for temperature > 0 over x[0..V) (adjusted logits, overwritten). */
static int32_t draw(const mr_sample_row *s, float *x, int V, float *work, int vocab) {
    int32_t *idx = (int32_t *)(work + 2 * (size_t)vocab); /* [V] candidate ids */
    const float inv_t = 1.0f / s->temperature;
    float *p = work + vocab; /* probabilities (unnormalised) of the candidates, in idx order */
    float xmax = -INFINITY;
    for (int i = 0; i < V; i++) xmax = x[i] > xmax ? x[i] : xmax;
    /* candidates: the top-k, or for top-p alone the top 1024 (enough unless the
     * distribution is very flat, then every id) */
    int k = s->top_k > 0 && s->top_k < V ? s->top_k : V;
    int n = k;
    if (k == V && s->top_p < 1.0f && V > MR_SAMPLE_MAX_CANDIDATES) n = MR_SAMPLE_MAX_CANDIDATES;
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
    double target = s->top_p < 1.0f ? s->top_p * total : total;
    if (s->top_p < 1.0f) {
        if (n == V) { /* every id is a candidate: sort them by probability */
            for (int i = 0; i < n; i++) x[idx[i]] = p[i];
            qsort_r(idx, (size_t)n, sizeof *idx, cmp_desc, x);
            for (int i = 0; i < n; i++) p[i] = x[idx[i]];
        }
        double keep = 0;
        int m = 0;
        while (m < n && (m == 0 || keep < target)) keep += p[m++];
        if (keep < target && n < V) { /* the candidates were not enough: take every id */
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
    double u = s->u * target, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += p[i];
        if (u < acc) return idx[i];
    }
    return idx[n - 1];
}

int32_t mr_sample_ref(const mr_sample_row *s, const float *logits, int vocab,
                      float repetition_penalty, const int32_t *seen, int n_seen, float *work,
                      mr_sample_result *r) {
    const int V = effective_vocab(s, vocab);
    float *x = work; /* [V] adjusted logits */
    memcpy(x, logits, (size_t)V * sizeof *x);
    if (repetition_penalty != 1.0f && seen)
        for (int i = 0; i < n_seen; i++) {
            int t = seen[i];
            if (t < 0 || t >= V) continue;
            /* applied once per distinct id: mark by a NaN-free check against the original */
            if (x[t] != logits[t]) continue;
            x[t] = x[t] > 0 ? x[t] / repetition_penalty : x[t] * repetition_penalty;
        }
    int32_t tok = 0;
    if (s->temperature <= 0.0f) {
        for (int i = 1; i < V; i++)
            if (x[i] > x[tok]) tok = i;
    } else {
        tok = draw(s, x, V, work, vocab);
    }
    if (r) {
        /* logprobs of the model's distribution */
        float mx = -INFINITY;
        for (int i = 0; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
        double z = 0;
        for (int i = 0; i < V; i++) z += exp((double)logits[i] - mx);
        const double logz = mx + log(z);
        r->logprob = (float)(logits[tok] - logz);
        int n_top = s->n_top < MR_MAX_TOP_LOGPROBS ? s->n_top : MR_MAX_TOP_LOGPROBS;
        if (n_top > V) n_top = V;
        if (n_top < 0) n_top = 0;
        r->n_top = n_top;
        if (n_top > 0) {
            top_n(logits, V, n_top, r->top_ids);
            for (int i = 0; i < n_top; i++)
                r->top_logprobs[i] = (float)(logits[r->top_ids[i]] - logz);
        }
    }
    return tok;
}
