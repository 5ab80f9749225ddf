/* test_cuda_sample — the GPU sampler (kernels/cuda/sample.cu) against the reference
 * (kernels/ref/sample_ref.c, the host sampler's code).
 *
 * Rows of several distributions (normal at several scales: peaked to flat; small integers: many
 * ties; -inf and huge finite values; a vocab_limit below the vocabulary with large logits past
 * it), vocabularies 200064 (the model's), 5000 and 777, under many parameter sets (greedy;
 * temperature with top-k from 1 to 1024 and beyond; top-p alone and with top-k; top
 * logprobs 0..20) and seeds, in launches of 1 to 256 rows. For every row:
 *  - a row the device hands back (MR_SAMPLE_ON_HOST) must be one the reference says needs the
 *    host: too many candidates (mr_sample_row_fits_device) or a nucleus past the top 1024;
 *  - the token must equal the reference's, or else be a near-boundary case: the reference gives
 *    the device's token for u or top_p moved by at most TOL_REL (a fraction of the mass), i.e.
 *    u · mass lies within rounding of a running-sum boundary (counted and reported; more than 1%
 *    of the rows fails the test);
 *  - the logprob of the device's token and the top logprobs within 1e-5 · max(1, |lp|) of the
 *    reference's (double log-softmax), and the top ids identical (logit descending, ties to the
 *    lower id).
 * Bad parameters must be refused with MR_ERR_INVALID. Exit 0 on success, 1 on a failure, 77
 * (ctest SKIP) without a CUDA device; `--probe` only answers that; `--quick` runs fewer rows. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "kernels/cuda/cuda_sample.h"
#include "kernels/sample.h"
#include "tests/gpu/gpu_check.h"

#define TOL_REL 2e-6 /* rounding of a running sum, as a fraction of the mass (expf ulps, order) */
#define TOL_LP  1e-5

enum { DIST_NORMAL, DIST_TIES, DIST_INF, DIST_HUGE, DIST_LIMIT, DIST_COUNT };
static const char *const dist_names[] = {"normal", "ties", "-inf", "huge", "vocab_limit"};

static double gauss(uint64_t *r) {
    double u1 = ((double)(mr_splitmix64(r) >> 11) + 1.0) * 0x1p-53;
    double u2 = (double)(mr_splitmix64(r) >> 11) * 0x1p-53;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static double uniform01(uint64_t *r) {
    return (double)(mr_splitmix64(r) >> 11) * 0x1p-53;
}

/* Fills one row; returns the vocab_limit to use (0: none). */
static int fill_row(float *x, int vocab, int dist, double scale, uint64_t *r) {
    for (int i = 0; i < vocab; i++) x[i] = (float)(scale * gauss(r));
    switch (dist) {
    case DIST_TIES:
        for (int i = 0; i < vocab; i++) x[i] = (float)(mr_splitmix64(r) % 5);
        break;
    case DIST_INF:
        for (int i = 0; i < vocab; i++)
            if (mr_splitmix64(r) % 3 == 0) x[i] = -INFINITY;
        break;
    case DIST_HUGE:
        for (int i = 0; i < 8; i++) {
            int j = (int)(mr_splitmix64(r) % (uint64_t)vocab);
            x[j] = (i & 1) ? -1e30f : 1e30f * (float)(1 + i);
        }
        break;
    case DIST_LIMIT: {
        int lim = vocab - vocab / 7;
        for (int i = lim; i < vocab; i++) x[i] = 100.0f + (float)(i % 3); /* never chosen */
        return lim;
    }
    default:
        break;
    }
    return 0;
}

typedef struct params {
    float temperature, top_p;
    int top_k;
} params;

static const params param_sets[] = {
    {0.0f, 1.0f, 0},  {1.0f, 1.0f, 0},    {0.7f, 1.0f, 0},     {1.0f, 1.0f, 1},
    {1.0f, 1.0f, 5},  {0.8f, 1.0f, 50},   {1.3f, 1.0f, 1024},  {1.0f, 1.0f, 1025},
    {1.0f, 0.9f, 0},  {0.6f, 0.5f, 0},    {1.0f, 0.99f, 0},    {1.0f, 0.999999f, 0},
    {1.0f, 0.9f, 40}, {0.9f, 0.3f, 1000}, {1.0f, 0.95f, 3000}, {2.0f, 0.8f, 0},
    {0.0f, 0.5f, 10}, {1e-3f, 1.0f, 0},
};
enum { N_PARAMS = sizeof param_sets / sizeof param_sets[0] };

typedef struct stats {
    long rows, exact, near, on_host, failures;
} stats;

static double logz_of(const float *x, int V) {
    float mx = -INFINITY;
    for (int i = 0; i < V; i++) mx = x[i] > mx ? x[i] : mx;
    double z = 0;
    for (int i = 0; i < V; i++) z += exp((double)x[i] - mx);
    return mx + log(z);
}

static int lp_close(float got, double want) {
    return fabs((double)got - want) <= TOL_LP * fmax(1.0, fabs(want));
}

static int cmp_float_desc(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return x > y ? -1 : x < y;
}

/* 1 if the reference's nucleus reaches past the device's candidates (the top-k, or for top-p
 * alone the top 1024) — or within rounding of it: the reference's criterion, recomputed. */
static int nucleus_past_candidates(const mr_sample_row *p, const float *x, int vocab, float *work) {
    if (!(p->temperature > 0.0f) || p->top_p >= 1.0f) return 0;
    const int V = p->vocab_limit > 0 && p->vocab_limit < vocab ? p->vocab_limit : vocab;
    const int k = p->top_k > 0 && p->top_k < V ? p->top_k : V;
    const int n = k < V ? k : MR_SAMPLE_MAX_CANDIDATES;
    if (n >= V) return 0;
    float *v = work;
    memcpy(v, x, (size_t)V * sizeof *v);
    qsort(v, (size_t)V, sizeof *v, cmp_float_desc);
    const float xmax = v[0], inv_t = 1.0f / p->temperature;
    double total = 0, keep = 0;
    for (int i = 0; i < (k < V ? k : V); i++) total += exp((double)(v[i] - xmax) * inv_t);
    for (int i = 0; i < n; i++) keep += expf((v[i] - xmax) * inv_t);
    return keep < (double)p->top_p * total * (1.0 + TOL_REL);
}

/* Checks one row; returns 0 if it passes. */
static int check_row(const mr_sample_row *p, const float *x, int vocab, int32_t tok,
                     const mr_sample_result *dr, float *work, stats *st, const char *what) {
    st->rows++;
    mr_sample_result rr;
    const int32_t want = mr_sample_ref(p, x, vocab, 1.0f, NULL, 0, work, &rr);
    if (tok == MR_SAMPLE_ON_HOST) {
        st->on_host++;
        if (!mr_sample_row_fits_device(p, vocab) || nucleus_past_candidates(p, x, vocab, work))
            return 0;
        fprintf(stderr, "FAIL %s: the device handed back a row it should sample\n", what);
        return 1;
    }
    if (!mr_sample_row_fits_device(p, vocab)) {
        fprintf(stderr, "FAIL %s: the device sampled a row with too many candidates\n", what);
        return 1;
    }
    const int V = p->vocab_limit > 0 && p->vocab_limit < vocab ? p->vocab_limit : vocab;
    if (tok < 0 || tok >= V) {
        fprintf(stderr, "FAIL %s: token %d outside [0, %d)\n", what, tok, V);
        return 1;
    }
    if (tok == want) {
        st->exact++;
    } else {
        int near = 0;
        for (int a = -1; a <= 1 && !near; a++)
            for (int b = -1; b <= 1 && !near; b++) {
                mr_sample_row q = *p;
                q.u = fmin(fmax(p->u + a * TOL_REL, 0.0), nextafter(1.0, 0.0));
                q.top_p = p->top_p >= 1.0f ? 1.0f : (float)fmin(1.0, p->top_p + b * TOL_REL);
                near = mr_sample_ref(&q, x, vocab, 1.0f, NULL, 0, work, NULL) == tok;
            }
        if (!near) {
            fprintf(stderr, "FAIL %s: token %d, reference %d (u %.17g)\n", what, tok, want, p->u);
            return 1;
        }
        st->near++;
    }
    const double logz = logz_of(x, V);
    if (!lp_close(dr->logprob, (double)x[tok] - logz)) {
        fprintf(stderr, "FAIL %s: logprob %.9g, reference %.9g\n", what, dr->logprob,
                (double)x[tok] - logz);
        return 1;
    }
    if (dr->n_top != rr.n_top) {
        fprintf(stderr, "FAIL %s: %d top logprobs, reference %d\n", what, dr->n_top, rr.n_top);
        return 1;
    }
    for (int i = 0; i < rr.n_top; i++)
        if (dr->top_ids[i] != rr.top_ids[i] || !lp_close(dr->top_logprobs[i], rr.top_logprobs[i])) {
            fprintf(stderr, "FAIL %s: top %d: id %d lp %.9g, reference id %d lp %.9g\n", what, i,
                    dr->top_ids[i], dr->top_logprobs[i], rr.top_ids[i], rr.top_logprobs[i]);
            return 1;
        }
    return 0;
}

/* Bad parameters are refused, nothing runs. */
static int check_invalid(mr_cuda_sampler *sm, const float *d_x, int vocab) {
    const mr_sample_row good = {.row = 0, .temperature = 1.0f, .top_p = 1.0f, .u = 0.5};
    mr_sample_row bad[7];
    for (int i = 0; i < 7; i++) bad[i] = good;
    bad[0].row = 1;             /* past the logits */
    bad[1].temperature = -1.0f; /* negative */
    bad[2].temperature = NAN;   /* not a number */
    bad[3].top_p = 0.0f;        /* outside (0, 1] */
    bad[4].top_k = -3;          /* negative */
    bad[5].n_top = 21;          /* too many */
    bad[6].u = 1.0;             /* outside [0, 1) */
    int32_t tok;
    mr_sample_result r;
    int fails = 0;
    printf("bad parameters (each refusal logs its reason):\n");
    fflush(stdout);
    for (int i = 0; i < 7; i++)
        if (mr_cuda_sample(sm, d_x, 1, vocab, &bad[i], 1, &tok, &r, 0) != MR_ERR_INVALID) {
            fprintf(stderr, "FAIL: bad row %d was not refused\n", i);
            fails++;
        }
    if (mr_cuda_sample(sm, d_x, 1, vocab, &good, 1, NULL, &r, 0) != MR_ERR_INVALID) {
        fprintf(stderr, "FAIL: NULL tokens were not refused\n");
        fails++;
    }
    if (mr_cuda_sample(sm, d_x, 1, vocab, &good, 1, &tok, &r, 0) != MR_OK || tok < 0 ||
        tok >= vocab) {
        fprintf(stderr, "FAIL: a good row after the refusals\n");
        fails++;
    }
    return fails;
}

int main(int argc, char **argv) {
    int devs = 0;
    if (cudaGetDeviceCount(&devs) != cudaSuccess || devs == 0) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    if (argc > 1 && strcmp(argv[1], "--probe") == 0) return 0;
    const int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    static const int vocabs[] = {200064, 5000, 777};
    static const int batches[] = {1, 7, 64, 256};
    static const double scales[] = {0.05, 1.0, 4.0, 12.0};
    const int max_rows = 256;
    mr_cuda_sampler *sm;
    CM(mr_cuda_sampler_create(100, &sm)); /* fewer than a launch of 256: chunks too */
    float *x = xmalloc((size_t)max_rows * vocabs[0] * sizeof(float));
    float *work = xmalloc((size_t)vocabs[0] * 3 * sizeof(float));
    float *d_x = dmalloc((size_t)max_rows * vocabs[0] * sizeof(float));
    mr_sample_row *rows = xmalloc((size_t)max_rows * sizeof *rows);
    int32_t *tok = xmalloc((size_t)max_rows * sizeof *tok);
    mr_sample_result *res = xmalloc((size_t)max_rows * sizeof *res);
    int fails = check_invalid(sm, d_x, vocabs[0]);
    uint64_t rng = 12345;
    int launch = 0;
    /* each row over one block, then over a cluster of 8 blocks (the default for few rows) */
    for (int split = 1; split <= 8; split += 7) {
        CM(mr_cuda_sampler_set_split(sm, split));
        printf("%d block(s) per row:\n", split);
        stats all = {0}, by_dist[DIST_COUNT] = {{0}};
        for (int vi = 0; vi < 3; vi++)
            for (int dist = 0; dist < DIST_COUNT; dist++)
                for (int bi = 0; bi < 4; bi++) {
                    const int vocab = vocabs[vi], n = batches[bi];
                    if (quick && bi > 1) continue;
                    if (vi > 0 && n > 64) continue; /* small vocabularies: fewer rows */
                    int lim[256];
                    for (int r = 0; r < n; r++)
                        lim[r] = fill_row(x + (size_t)r * vocab, vocab, dist,
                                          scales[(r + launch) % 4], &rng);
                    CK(cudaMemcpy(d_x, x, (size_t)n * vocab * sizeof(float),
                                  cudaMemcpyHostToDevice));
                    for (int i = 0; i < n; i++) {
                        const params *ps = &param_sets[(i * 7 + launch) % N_PARAMS];
                        rows[i] = (mr_sample_row){.row = n - 1 - i, /* rows in another order */
                                                  .vocab_limit = lim[n - 1 - i],
                                                  .temperature = ps->temperature,
                                                  .top_p = ps->top_p,
                                                  .top_k = ps->top_k,
                                                  .n_top = (int)(mr_splitmix64(&rng) % 21),
                                                  .u = uniform01(&rng)};
                    }
                    CM(mr_cuda_sample(sm, d_x, n, vocab, rows, n, tok, res, 0));
                    for (int i = 0; i < n; i++) {
                        char what[160];
                        const params *ps = &param_sets[(i * 7 + launch) % N_PARAMS];
                        snprintf(what, sizeof what,
                                 "split %d vocab %d %s launch %d row %d (T %g top_p %g top_k %d "
                                 "n_top %d)",
                                 split, vocab, dist_names[dist], launch, i, ps->temperature,
                                 ps->top_p, ps->top_k, rows[i].n_top);
                        const int f = check_row(&rows[i], x + (size_t)rows[i].row * vocab, vocab,
                                                tok[i], &res[i], work, &by_dist[dist], what);
                        by_dist[dist].failures += f;
                        fails += f;
                    }
                    launch++;
                }
        for (int d = 0; d < DIST_COUNT; d++) {
            const stats *s = &by_dist[d];
            printf("%-12s rows %5ld: identical %5ld, near-boundary %3ld, handed to the host %4ld, "
                   "failures %ld\n",
                   dist_names[d], s->rows, s->exact, s->near, s->on_host, s->failures);
            all.rows += s->rows;
            all.exact += s->exact;
            all.near += s->near;
            all.on_host += s->on_host;
        }
        printf("all          rows %5ld: identical %5ld, near-boundary %3ld (tolerance %.0e of the "
               "mass), handed to the host %4ld\n",
               all.rows, all.exact, all.near, TOL_REL, all.on_host);
        if (all.near * 100 > all.rows) {
            fprintf(stderr, "FAIL: %ld near-boundary rows of %ld: more than rounding explains\n",
                    all.near, all.rows);
            fails++;
        }
    }
    mr_cuda_sampler_destroy(sm);
    CK(cudaFree(d_x));
    free(x);
    free(work);
    free(rows);
    free(tok);
    free(res);
    printf("%s (%d failures)\n", fails ? "FAIL" : "PASS", fails);
    return fails ? 1 : 0;
}
