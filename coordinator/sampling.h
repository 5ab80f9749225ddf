/* sampling.h — choosing the next token from a row of logits.
 *
 *   mr_sampler s;  mr_sampler_init(&s, &params, vocab_limit);
 *   mr_sample_result r;  int32_t tok = mr_sampler_next(&s, logits, vocab, work, &r);
 *
 * temperature 0 is greedy (argmax, ties to the lowest id). Otherwise logits / temperature, then
 * top-k (0 = off), then top-p (1 = off), then one draw from the request's own generator, seeded by
 * `seed`: the same request gives the same tokens whatever else is batched with it. Ids at or above
 * `vocab_limit` (rows of the LM head that are no token of the tokenizer) are never chosen.
 * Logprobs are of the model's distribution (log-softmax of the raw logits over the valid ids).
 * `work` is caller scratch of 2·vocab floats + vocab ints (no allocation per token).
 * The maths is kernels/sample.h's reference; a device sampler (the backend's sample op) takes
 * the same row parameters with the uniform number drawn here (mr_sampler_draw), so a seeded
 * request gives the same tokens on either path:
 *
 *   double u = mr_sampler_draw(&s);          // one draw per token (none when greedy)
 *   mr_sampler_row(&s, u, n_top, &row);       // for the device
 *   tok = mr_sampler_next_u(&s, u, ...);      // or on the host, with the same u */
#ifndef MR_SAMPLING_H
#define MR_SAMPLING_H

#include <stdint.h>

#include "kernels/sample.h" /* mr_sample_result, MR_MAX_TOP_LOGPROBS */

typedef struct mr_sampling_params {
    float temperature; /* >= 0; 0 = greedy */
    float top_p;       /* (0, 1] */
    int top_k;         /* 0 = off */
    uint64_t seed;
    int has_seed;             /* 0: seeded from the OS */
    float repetition_penalty; /* 1 = off; > 1 divides positive / multiplies negative logits of seen
                                 ids */
} mr_sampling_params;

void mr_sampling_params_default(mr_sampling_params *p);

typedef struct mr_sampler {
    mr_sampling_params p;
    uint64_t rng;
    int vocab_limit;
} mr_sampler;

void mr_sampler_init(mr_sampler *s, const mr_sampling_params *p, int vocab_limit);
/* Chooses a token. seen / n_seen: tokens so far (for the repetition penalty; may be NULL).
 * n_top: how many top logprobs to report (0..MR_MAX_TOP_LOGPROBS); r may be NULL. */
int32_t mr_sampler_next(mr_sampler *s, const float *logits, int vocab, const int32_t *seen,
                        int n_seen, int n_top, float *work, mr_sample_result *r);

/* The request's next uniform number in [0, 1): advances its generator when temperature > 0,
 * else returns 0 (greedy draws nothing). mr_sampler_next = draw + mr_sampler_next_u. */
double mr_sampler_draw(mr_sampler *s);
/* mr_sampler_next with the uniform number already drawn. */
int32_t mr_sampler_next_u(const mr_sampler *s, double u, const float *logits, int vocab,
                          const int32_t *seen, int n_seen, int n_top, float *work,
                          mr_sample_result *r);
/* The device sampler's parameters of this request's next token. */
void mr_sampler_row(const mr_sampler *s, double u, int n_top, mr_sample_row *row);
/* 1 if the request can be sampled by the device (no repetition penalty: that needs the seen
 * tokens; the scheduler samples such rows on the host). */
int mr_sampler_on_device_ok(const mr_sampler *s);

#endif
