/* sample.h — choosing a token from a row of logits: the per-row parameters, the result, and the
 * plain-C reference that every implementation follows (the host sampler of
 * coordinator/sampling.c, the cpu-resident backend's sample op, the CUDA kernel of
 * kernels/cuda/sample.cu).
 *
 *   mr_sample_row p = {.temperature = 0.7f, .top_p = 0.9f, .top_k = 0, .vocab_limit = V,
 *                      .n_top = 5, .u = u};             // u: the request's uniform draw
 *   mr_sample_result r;
 *   int32_t tok = mr_sample_ref(&p, logits, vocab, 1.0f, NULL, 0, work, &r);
 *
 * Semantics (V = vocab_limit clamped to vocab; ids >= V are never chosen nor reported):
 *  - temperature 0: greedy, the argmax (ties to the lowest id); u unused.
 *  - else x / temperature, probabilities p_i = expf((x_i - xmax) * (1 / temperature)):
 *    the candidates are the top-k (0 < top_k < V; ordered by logit descending, ties to the lower
 *    id), or for top-p alone the top 1024 (the whole vocabulary when the top 1024 hold less than
 *    top_p of the mass, or when V <= 1024: then ordered by p descending, ties to the lower id),
 *    or with neither every id in id order; top_p < 1 keeps the shortest prefix whose running sum
 *    (double, in candidate order) reaches top_p · total (total: the mass of the top-k, else of
 *    every id); the token is the first candidate whose running sum exceeds u · kept mass.
 *  - logprob and the top n_top alternatives (logit descending, ties to the lower id) are of the
 *    raw logits' log-softmax over [0, V), computed in double.
 *  - a repetition penalty (!= 1) divides positive / multiplies negative logits of the distinct
 *    seen ids before sampling (not before the logprobs).
 * A seeded request gives the same token from every implementation except where u · mass falls
 * within rounding of a running-sum boundary (sums in a different order, expf of another libm). */
#ifndef MR_SAMPLE_H
#define MR_SAMPLE_H

#include <stdint.h>

#include "common/status.h"

#define MR_MAX_TOP_LOGPROBS 20
/* Most candidates a device sampler selects: top_k above it, and top-p alone on a vocabulary this
 * small or whose top 1024 hold less than top_p of the mass, are sampled on the host. */
#define MR_SAMPLE_MAX_CANDIDATES 1024
/* What a device sampler writes as the token of a row it leaves to the host. */
#define MR_SAMPLE_ON_HOST (-1)

/* One row to sample. Written by the caller. */
typedef struct mr_sample_row {
    int row;           /* index of the logits row, [0, n_rows) */
    int vocab_limit;   /* ids >= this are never chosen; <= 0: every id */
    float temperature; /* finite, >= 0; 0: greedy */
    float top_p;       /* (0, 1]; 1: off */
    int top_k;         /* >= 0; 0: off */
    int n_top;         /* top logprobs wanted, 0..MR_MAX_TOP_LOGPROBS */
    double u;          /* uniform in [0, 1) from the request's generator; unused when greedy */
} mr_sample_row;

typedef struct mr_sample_result {
    float logprob; /* of the chosen token */
    int n_top;     /* top alternatives filled, <= requested */
    int32_t top_ids[MR_MAX_TOP_LOGPROBS];
    float top_logprobs[MR_MAX_TOP_LOGPROBS];
} mr_sample_result;

#ifdef __cplusplus
extern "C" {
#endif

/* MR_OK if p is a valid row of a [n_rows][vocab] logits block, else MR_ERR_INVALID (logged). */
mr_status mr_sample_row_check(const mr_sample_row *p, int vocab, int n_rows);

/* 1 if a device sampler (MR_SAMPLE_MAX_CANDIDATES candidates at most) can sample this row; the
 * nucleus may still need the whole vocabulary, which only the data tells (then it answers
 * MR_SAMPLE_ON_HOST too). */
int mr_sample_row_fits_device(const mr_sample_row *p, int vocab);

/* The reference. seen / n_seen: the tokens so far, for repetition_penalty (seen may be NULL).
 * work: 2·vocab floats + vocab int32 of scratch. r may be NULL. Returns the token. */
int32_t mr_sample_ref(const mr_sample_row *p, const float *logits, int vocab,
                      float repetition_penalty, const int32_t *seen, int n_seen, float *work,
                      mr_sample_result *r);

#ifdef __cplusplus
}
#endif

#endif
