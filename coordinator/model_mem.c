#include "coordinator/model_mem.h"

#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/log.h"

size_t mr_mem_kv_elem_size(const mr_backend *be) {
    return be && be->ops->kv_dtype == MR_DTYPE_BF16 ? 2 : sizeof(float);
}

mr_status mr_mem_alloc(mr_backend *be, size_t bytes, void **out) {
    if (mr_mem_on_device(be)) return be->ops->alloc(be, bytes, MR_MEM_DEVICE, out);
    void *p = mr_alloc_aligned(bytes);
    if (!p) return MR_ERR_NOMEM;
    *out = p;
    return MR_OK;
}

void mr_mem_free(mr_backend *be, void *p) {
    if (!p) return;
    if (mr_mem_on_device(be))
        be->ops->free(be, p, MR_MEM_DEVICE);
    else
        mr_free_aligned(p);
}

mr_status mr_mem_alloc_staging(mr_backend *be, size_t bytes, void **out) {
    if (mr_mem_on_device(be)) return be->ops->alloc(be, bytes, MR_MEM_HOST, out);
    void *p = mr_alloc_aligned(bytes);
    if (!p) return MR_ERR_NOMEM;
    *out = p;
    return MR_OK;
}

void mr_mem_free_staging(mr_backend *be, void *p) {
    if (!p) return;
    if (mr_mem_on_device(be))
        be->ops->free(be, p, MR_MEM_HOST);
    else
        mr_free_aligned(p);
}

mr_status mr_mem_zero(mr_backend *be, void *p, size_t bytes) {
    if (mr_mem_on_device(be)) return be->ops->memset(be, p, 0, bytes);
    memset(p, 0, bytes);
    return MR_OK;
}

mr_status mr_mem_copy(mr_backend *be, void *dst, const void *src, size_t bytes) {
    if (mr_mem_on_device(be)) return be->ops->copy(be, dst, src, bytes);
    memcpy(dst, src, bytes);
    return MR_OK;
}

mr_status mr_mem_to_host(mr_backend *be, void *host, const void *src, size_t bytes) {
    if (mr_mem_on_device(be)) return be->ops->to_host(be, host, src, bytes);
    if (host != src) memcpy(host, src, bytes);
    return MR_OK;
}

mr_status mr_mem_to_device(mr_backend *be, void *dst, const void *host, size_t bytes) {
    if (mr_mem_on_device(be)) return be->ops->to_device(be, dst, host, bytes);
    if (dst != host) memcpy(dst, host, bytes);
    return MR_OK;
}

mr_status mr_mem_copy_across(mr_backend *dst_be, void *dst, mr_backend *src_be, const void *src,
                             size_t bytes) {
    if (dst_be == src_be) return mr_mem_copy(dst_be, dst, src, bytes);
    if (!mr_mem_on_device(dst_be) && !mr_mem_on_device(src_be)) { /* host memory both */
        memcpy(dst, src, bytes);
        return MR_OK;
    }
    if (!dst_be || !src_be || !dst_be->ops->copy_from) {
        MR_LOG_ERROR(MR_LOG_MODEL, "backend %s cannot copy from backend %s",
                     dst_be ? dst_be->ops->name : "host", src_be ? src_be->ops->name : "host");
        return MR_ERR_UNSUPPORTED;
    }
    return dst_be->ops->copy_from(dst_be, dst, src_be, src, bytes);
}
