/* dmabuf.h — GPU memory that a NIC can write into: a device allocation exported as a dmabuf file
 * descriptor (cuMemGetHandleForAddressRange, CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD), for
 * ibv_reg_dmabuf_mr. Built with the CUDA backend only. The driver calls the runtime does not wrap
 * are looked up at run time (cudaGetDriverEntryPointByVersion), not linked: binaries of a CUDA
 * build must start on machines without the driver too.
 *
 *   char why[256];
 *   mr_cuda_dmabuf *b;
 *   if (mr_cuda_dmabuf_create(0, bytes, &b, why, sizeof why) == MR_OK) {
 *       region = (mr_xport_region){.base = b->ptr, .len = b->bytes, .dmabuf_fd = b->fd,
 *                                  .dmabuf_offset = b->offset};
 *       ...  // after a payload's completion and before a kernel reads it:
 *       mr_cuda_dmabuf_flush(b);
 *   } else {
 *       log why; use pinned host staging instead
 *   }
 *   mr_cuda_dmabuf_destroy(b);   // after the NIC's registration of it is gone
 *
 * The range is aligned to MR_CUDA_DMABUF_ALIGN at both ends (the driver wants host pages; 64 KiB
 * is also the GPU's BAR mapping granule), so bytes may be rounded up. Not thread-safe per object;
 * create/destroy may run on any thread. */
#ifndef MR_CUDA_DMABUF_H
#define MR_CUDA_DMABUF_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MR_CUDA_DMABUF_ALIGN (64u << 10)

typedef struct mr_cuda_dmabuf {
    void *ptr;       /* device memory on `device`, MR_CUDA_DMABUF_ALIGN-aligned */
    size_t bytes;    /* usable bytes at ptr (the request rounded up to the alignment) */
    int fd;          /* dmabuf fd exporting [ptr, ptr + bytes); owned, closed by destroy */
    uint64_t offset; /* of ptr within the dmabuf: 0 */
    int device;
    int needs_flush; /* the device does not order remote writes for its own kernels: flush */
    uint64_t alloc;  /* the cudaMalloc allocation holding the range */
} mr_cuda_dmabuf;

/* Whether `device` (CUDA ordinal) can export its memory as a dmabuf: MR_OK, or
 * MR_ERR_UNSUPPORTED with the reason (no device, a driver without the call, the device attribute
 * CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED off, e.g. the proprietary kernel module before 515 or a
 * kernel without dma-buf) in why. */
mr_status mr_cuda_dmabuf_supported(int device, char *why, size_t cap);

/* Allocates at least `bytes` of device memory on `device` and exports it. On failure nothing is
 * left allocated, *out is untouched and why says what failed (MR_ERR_UNSUPPORTED: see above;
 * MR_ERR_NOMEM; MR_ERR_IO: the export itself failed). */
mr_status mr_cuda_dmabuf_create(int device, size_t bytes, mr_cuda_dmabuf **out, char *why,
                                size_t cap);
/* Closes the fd and frees the memory. Accepts NULL. */
void mr_cuda_dmabuf_destroy(mr_cuda_dmabuf *b);

/* Makes remote (RDMA) writes that completed before this call visible to work launched on the
 * device after it (cudaDeviceFlushGPUDirectRDMAWrites to the owner, only where the device does
 * not order such writes itself). */
mr_status mr_cuda_dmabuf_flush(mr_cuda_dmabuf *b);

/* Copies `bytes` at src (inside b's range) to host memory dst, after a flush: what a received
 * payload holds, for the host to validate. Returns when dst is written. */
mr_status mr_cuda_dmabuf_read(mr_cuda_dmabuf *b, const void *src, void *dst, size_t bytes);

#ifdef __cplusplus
}
#endif

#endif
