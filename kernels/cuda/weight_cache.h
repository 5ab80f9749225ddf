/* weight_cache.h — the device copies of host weights, found again by host address (the cuda-full
 * and cuda-gpu backends: their ops take the model's host weights and upload each once).
 *
 *   mr_weight_cache *wc;  MR_CHECK(mr_weight_cache_create(&wc));
 *   const void *dw;  MR_CHECK(mr_weight_cache_get(wc, w->data, bytes, stream, &dw));
 *   mr_weight_cache_destroy(wc);   // frees the device copies (their device current)
 *
 * A weight is identified by its host address and size; the host bytes must not change while the
 * cache lives. Open addressing on the address (lookups are O(1): every op of every layer asks).
 * Owned by the backend's thread. */
#ifndef MR_CUDA_WEIGHT_CACHE_H
#define MR_CUDA_WEIGHT_CACHE_H

#include <stddef.h>

#include <cuda_runtime.h>

#include "common/status.h"

typedef struct mr_weight_cache mr_weight_cache;

mr_status mr_weight_cache_create(mr_weight_cache **out);
void mr_weight_cache_destroy(mr_weight_cache *c);

/* The device copy of host [host, host + bytes) if it is in the cache (1), else 0. */
int mr_weight_cache_find(const mr_weight_cache *c, const void *host, size_t bytes,
                         const void **dev);
/* The device copy, uploaded first if absent: on stream st and waited for (the host bytes are
 * pageable, and a kernel enqueued next must see the whole weight). */
mr_status mr_weight_cache_get(mr_weight_cache *c, const void *host, size_t bytes, cudaStream_t st,
                              const void **dev);

#endif
