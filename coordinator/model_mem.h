/* model_mem.h — the model's memory through its backend.
 *
 * Activations, lightning states and the KV cache live in host memory for a host backend (ref,
 * cpu, cuda, cuda-full) and in the backend's own memory for a device-resident one (cuda-gpu; see
 * the top of kernels/backend.h). The model and the state pool allocate and touch that memory only
 * through these calls, which do the plain host operation or the backend's op:
 *
 *   float *x;  MR_CHECK(mr_mem_alloc(be, bytes, (void **)&x));   // device or host
 *   MR_CHECK(mr_mem_copy(be, rows, x + off, n));                 // within that memory
 *   MR_CHECK(mr_mem_to_host(be, logits, dev_logits, n));         // out to the caller
 *   mr_mem_free(be, x);
 *
 * be may be NULL: host memory. Owned by the thread that drives the backend. */
#ifndef MR_MODEL_MEM_H
#define MR_MODEL_MEM_H

#include <stddef.h>

#include "common/status.h"
#include "kernels/backend.h"

/* 1 when the backend keeps activations in its own memory. */
static inline int mr_mem_on_device(const mr_backend *be) {
    return be && be->ops->device_resident;
}

/* Element size of the KV cache the backend's attention op reads (4: float32, 2: bf16). */
size_t mr_mem_kv_elem_size(const mr_backend *be);

/* Model memory (64-byte aligned on the host); contents undefined. */
mr_status mr_mem_alloc(mr_backend *be, size_t bytes, void **out);
void mr_mem_free(mr_backend *be, void *p);
/* Host memory the device copies to and from (page-locked for a device-resident backend). */
mr_status mr_mem_alloc_staging(mr_backend *be, size_t bytes, void **out);
void mr_mem_free_staging(mr_backend *be, void *p);

/* p[0..bytes) = 0 in model memory. */
mr_status mr_mem_zero(mr_backend *be, void *p, size_t bytes);
/* Model memory → model memory (no overlap). */
mr_status mr_mem_copy(mr_backend *be, void *dst, const void *src, size_t bytes);
/* Model memory → host; also reports a failure of any device op since the last call. */
mr_status mr_mem_to_host(mr_backend *be, void *host, const void *src, size_t bytes);
/* Host → model memory; host may be reused on return. */
mr_status mr_mem_to_device(mr_backend *be, void *dst, const void *host, size_t bytes);
/* Model memory of src_be → model memory of dst_be (two stages of the model: backends of the same
 * kind, e.g. two GPUs), ordered as the copy_from op says; the same backend: mr_mem_copy; host
 * backends: memcpy. MR_ERR_UNSUPPORTED (logged) for device-resident backends without copy_from. */
mr_status mr_mem_copy_across(mr_backend *dst_be, void *dst, mr_backend *src_be, const void *src,
                             size_t bytes);

#endif
