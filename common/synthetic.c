#include "common/synthetic.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/rng.h"

#define GOLDEN 0x9e3779b97f4a7c15ull

double mr_synth_std(const mr_tensor_spec *s, const mr_model_config *c) {
    const double H = c->hidden_size, inner = (double)c->num_attention_heads * c->head_dim;
    switch (s->part) {
    case MR_PART_EMBED:
        return 1.0;
    case MR_PART_LM_HEAD:
    case MR_PART_ROUTER:
        return 2.0 / sqrt(H);
    case MR_PART_NORM:
        return 0.0;
    case MR_PART_EXPERT:
        return s->mat == MR_EXPERT_W2 ? 1.0 / sqrt(c->intermediate_size) : 1.0 / sqrt(H);
    case MR_PART_ATTN:
        if (s->ndim == 1) return 0.0;
        return s->shape[1] == (int64_t)inner ? 1.0 / sqrt(inner) : 1.0 / sqrt(H);
    default:
        return 1.0;
    }
}

void mr_synth_fill_range(const mr_tensor_spec *s, const mr_model_config *c, uint64_t seed,
                         uint64_t first, uint64_t count, void *dst, mr_dtype dst_dtype) {
    uint64_t state = (seed * GOLDEN ^ mr_fnv1a64(s->name)) + first * GOLDEN;
    double std = mr_synth_std(s, c);
    float scale = (float)(std * sqrt(3.0)); /* uniform [-a, a) has std a/sqrt(3) */
    for (uint64_t i = 0; i < count; i++) {
        float u = mr_rng_uniform_pm1(&state);
        float v = std > 0.0 ? u * scale : 1.0f + 0.1f * u;
        if (s->dtype == MR_DTYPE_BF16) v = mr_bf16_to_f32(mr_f32_to_bf16(v)); /* as stored */
        if (dst_dtype == MR_DTYPE_F32)
            ((float *)dst)[i] = v;
        else
            ((uint16_t *)dst)[i] = mr_f32_to_bf16(v);
    }
}

typedef struct fill_job {
    const mr_tensor_spec *s;
    const mr_model_config *c;
    uint64_t seed, first, count;
    void *dst;
    mr_dtype dst_dtype;
} fill_job;

static void *fill_main(void *arg) {
    fill_job *j = arg;
    mr_synth_fill_range(j->s, j->c, j->seed, j->first, j->count, j->dst, j->dst_dtype);
    return NULL;
}

void mr_synth_fill(const mr_tensor_spec *s, const mr_model_config *c, uint64_t seed, void *dst,
                   mr_dtype dst_dtype, int threads) {
    uint64_t n = mr_tensor_spec_bytes(s) / mr_dtype_size(s->dtype);
    if (threads <= 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads > 64) threads = 64;
    if (threads < 1 || n < (4u << 20)) threads = 1; /* small tensors: not worth a thread */
    fill_job jobs[64];
    pthread_t th[64];
    int created[64] = {0};
    size_t esz = mr_dtype_size(dst_dtype);
    for (int t = 0; t < threads; t++) {
        uint64_t a = n * (uint64_t)t / (uint64_t)threads;
        uint64_t b = n * (uint64_t)(t + 1) / (uint64_t)threads;
        jobs[t] = (fill_job){s, c, seed, a, b - a, (char *)dst + a * esz, dst_dtype};
        if (t > 0) created[t] = pthread_create(&th[t], NULL, fill_main, &jobs[t]) == 0;
    }
    fill_main(&jobs[0]);
    for (int t = 1; t < threads; t++) {
        if (created[t])
            pthread_join(th[t], NULL);
        else
            fill_main(&jobs[t]); /* no thread: do its share here */
    }
}

int mr_synth_parse_path(const char *path, uint64_t *seed, char *dir, size_t cap) {
    static const char prefix[] = "synthetic:";
    if (strncmp(path, prefix, sizeof prefix - 1) != 0) return 0;
    const char *p = path + sizeof prefix - 1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(p, &end, 10);
    if (end == p || *end != ':' || errno || p[0] == '-' || !end[1] || strlen(end + 1) >= cap) {
        MR_LOG_ERROR(MR_LOG_CKPT,
                     "%s: a synthetic model path is synthetic:SEED:DIR (SEED a non-negative "
                     "integer, DIR the directory holding config.json)",
                     path);
        return -1;
    }
    *seed = v;
    snprintf(dir, cap, "%s", end + 1);
    return 1;
}
