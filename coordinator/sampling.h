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
 * `work` is caller scratch of 2·vocab floats + vocab ints (no allocation per token). */
#ifndef MR_SAMPLING_H
#define MR_SAMPLING_H

#include <stdint.h>

#define MR_MAX_TOP_LOGPROBS 20

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

typedef struct mr_sample_result {
    float logprob; /* of the chosen token */
    int n_top;     /* top alternatives filled, <= requested */
    int32_t top_ids[MR_MAX_TOP_LOGPROBS];
    float top_logprobs[MR_MAX_TOP_LOGPROBS];
} mr_sample_result;

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

#endif
