/* weight_cache.c — see weight_cache.h. */
#include "kernels/cuda/weight_cache.h"

#include <stdint.h>
#include <stdlib.h>

#include "common/check.h"
#include "common/log.h"
#include "kernels/cuda/cuda_check.h"

/* One uploaded weight: host bytes [host, host + bytes) live at dev; host NULL: an empty slot. */
typedef struct weight_entry {
    const void *host;
    size_t bytes;
    void *dev;
} weight_entry;

struct mr_weight_cache {
    weight_entry *w; /* [cap], a power of 2, at most half full */
    size_t cap, n;
};

static size_t slot_of(const mr_weight_cache *c, const void *host) {
    const uint64_t h = (uint64_t)(uintptr_t)host * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 32) & (c->cap - 1);
}

static mr_status grow(mr_weight_cache *c) {
    const size_t cap = c->cap ? 2 * c->cap : 1024;
    weight_entry *w = calloc(cap, sizeof *w), *old = c->w;
    if (!w) return MR_ERR_NOMEM;
    const size_t old_cap = c->cap;
    c->w = w;
    c->cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].host) {
            size_t j = slot_of(c, old[i].host);
            while (w[j].host) j = (j + 1) & (cap - 1);
            w[j] = old[i];
        }
    free(old);
    return MR_OK;
}

mr_status mr_weight_cache_create(mr_weight_cache **out) {
    mr_weight_cache *c = calloc(1, sizeof *c);
    if (!c) return MR_ERR_NOMEM;
    if (grow(c) != MR_OK) {
        free(c);
        return MR_ERR_NOMEM;
    }
    *out = c;
    return MR_OK;
}

void mr_weight_cache_destroy(mr_weight_cache *c) {
    if (!c) return;
    for (size_t i = 0; i < c->cap; i++)
        if (c->w[i].host) cudaFree(c->w[i].dev);
    free(c->w);
    free(c);
}

int mr_weight_cache_find(const mr_weight_cache *c, const void *host, size_t bytes,
                         const void **dev) {
    for (size_t j = slot_of(c, host); c->w[j].host; j = (j + 1) & (c->cap - 1))
        if (c->w[j].host == host && c->w[j].bytes == bytes) {
            *dev = c->w[j].dev;
            return 1;
        }
    return 0;
}

mr_status mr_weight_cache_get(mr_weight_cache *c, const void *host, size_t bytes, cudaStream_t st,
                              const void **dev) {
    if (!host) {
        MR_LOG_ERROR(MR_LOG_GPU, "weight cache: a weight without host data");
        return MR_ERR_INVALID;
    }
    if (mr_weight_cache_find(c, host, bytes, dev)) return MR_OK;
    if (2 * (c->n + 1) > c->cap) MR_CHECK(grow(c));
    void *d = NULL;
    MR_CUDA_CHECK(cudaMalloc(&d, bytes ? bytes : 1));
    mr_status s = mr_cuda_check_at(cudaMemcpyAsync(d, host, bytes, cudaMemcpyHostToDevice, st),
                                   "weight upload", __FILE__, __LINE__);
    if (s == MR_OK)
        s = mr_cuda_check_at(cudaStreamSynchronize(st), "weight upload", __FILE__, __LINE__);
    if (s != MR_OK) {
        cudaFree(d);
        return s;
    }
    size_t j = slot_of(c, host);
    while (c->w[j].host) j = (j + 1) & (c->cap - 1);
    c->w[j] = (weight_entry){host, bytes, d};
    c->n++;
    *dev = d;
    return MR_OK;
}
