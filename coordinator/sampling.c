#include "coordinator/sampling.h"

#include <fcntl.h>
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

double mr_sampler_draw(mr_sampler *s) {
    return s->p.temperature > 0.0f ? uniform(&s->rng) : 0.0;
}

void mr_sampler_row(const mr_sampler *s, double u, int n_top, mr_sample_row *row) {
    *row = (mr_sample_row){.row = 0,
                           .vocab_limit = s->vocab_limit,
                           .temperature = s->p.temperature > 0.0f ? s->p.temperature : 0.0f,
                           .top_p = s->p.top_p,
                           .top_k = s->p.top_k,
                           .n_top = n_top < 0                     ? 0
                                    : n_top > MR_MAX_TOP_LOGPROBS ? MR_MAX_TOP_LOGPROBS
                                                                  : n_top,
                           .u = u};
}

int mr_sampler_on_device_ok(const mr_sampler *s) {
    /* parameters the device rejects (mr_sample_row_check) keep the host's lenient reading */
    const mr_sampling_params *p = &s->p;
    return p->repetition_penalty == 1.0f && p->temperature == p->temperature &&
           p->temperature < 1e30f && p->top_p > 0.0f && p->top_p <= 1.0f && p->top_k >= 0;
}

int32_t mr_sampler_next_u(const mr_sampler *s, double u, const float *logits, int vocab,
                          const int32_t *seen, int n_seen, int n_top, float *work,
                          mr_sample_result *r) {
    mr_sample_row row;
    mr_sampler_row(s, u, n_top, &row);
    return mr_sample_ref(&row, logits, vocab, s->p.repetition_penalty, seen, n_seen, work, r);
}

int32_t mr_sampler_next(mr_sampler *s, const float *logits, int vocab, const int32_t *seen,
                        int n_seen, int n_top, float *work, mr_sample_result *r) {
    const double u = mr_sampler_draw(s);
    return mr_sampler_next_u(s, u, logits, vocab, seen, n_seen, n_top, work, r);
}
