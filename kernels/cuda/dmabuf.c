/* dmabuf.c — see dmabuf.h.
 *
 * The memory comes from cudaMalloc (cuMemAlloc underneath, in the device's primary context: the
 * one every other part of kernels/cuda uses, so the pointer works in their kernels and copies).
 * The three driver calls the runtime does not wrap (cuDeviceGet, cuDeviceGetAttribute for
 * CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED, cuMemGetHandleForAddressRange) are looked up through
 * cudaGetDriverEntryPointByVersion rather than linked from libcuda: the CUDA builds' binaries run
 * on machines without a driver too (CI: nvcc but no libcuda.so.1), where a hard link to libcuda
 * would keep every one of them from starting. */
#include "kernels/cuda/dmabuf.h"

#include <cuda.h>
#include <cuda_runtime.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/log.h"

typedef CUresult (*fn_device_get)(CUdevice *dev, int ordinal);
typedef CUresult (*fn_device_attr)(int *v, CUdevice_attribute a, CUdevice dev);
typedef CUresult (*fn_range_handle)(void *handle, CUdeviceptr p, size_t size,
                                    CUmemRangeHandleType type, unsigned long long flags);
typedef CUresult (*fn_error_string)(CUresult r, const char **s);

/* Driver entry points, resolved once; NULL where the driver lacks them. */
static struct {
    fn_device_get device_get;
    fn_device_attr device_attr;
    fn_range_handle range_handle;
    fn_error_string error_string;
    char why[160]; /* why resolution failed, if it did */
} drv;
static pthread_once_t drv_once = PTHREAD_ONCE_INIT;

static void *lookup(const char *sym, unsigned version) {
    void *fn = NULL;
    enum cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
    cudaError_t e = cudaGetDriverEntryPointByVersion(sym, &fn, version, cudaEnableDefault, &q);
    if (e != cudaSuccess || q != cudaDriverEntryPointSuccess || !fn) {
        if (!drv.why[0])
            snprintf(drv.why, sizeof drv.why, "the CUDA driver has no %s (%s)", sym,
                     e != cudaSuccess ? cudaGetErrorString(e) : "symbol not found");
        return NULL;
    }
    return fn;
}

static void resolve(void) {
    drv.device_get = (fn_device_get)lookup("cuDeviceGet", 2000);
    drv.device_attr = (fn_device_attr)lookup("cuDeviceGetAttribute", 2000);
    drv.range_handle = (fn_range_handle)lookup("cuMemGetHandleForAddressRange", 11070);
    drv.error_string = (fn_error_string)lookup("cuGetErrorString", 6000);
}

static const char *cu_str(CUresult r) {
    const char *s = NULL;
    if (drv.error_string) drv.error_string(r, &s);
    return s ? s : "unknown CUDA driver error";
}

static size_t align_of_range(void) {
    long page = sysconf(_SC_PAGESIZE);
    return page > (long)MR_CUDA_DMABUF_ALIGN ? (size_t)page : MR_CUDA_DMABUF_ALIGN;
}

/* The calling thread's current device, so that it can be restored. */
static int current_device(void) {
    int d = 0;
    return cudaGetDevice(&d) == cudaSuccess ? d : 0;
}

mr_status mr_cuda_dmabuf_supported(int device, char *why, size_t cap) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || device < 0 || device >= n) {
        snprintf(why, cap, "no CUDA device %d (%s)", device,
                 e != cudaSuccess ? cudaGetErrorString(e) : "fewer devices");
        return MR_ERR_UNSUPPORTED;
    }
    pthread_once(&drv_once, resolve);
    if (!drv.device_get || !drv.device_attr || !drv.range_handle) {
        snprintf(why, cap, "%s", drv.why);
        return MR_ERR_UNSUPPORTED;
    }
    CUdevice dev;
    int v = 0;
    CUresult r = drv.device_get(&dev, device);
    if (r == CUDA_SUCCESS) r = drv.device_attr(&v, CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED, dev);
    if (r != CUDA_SUCCESS) {
        snprintf(why, cap, "cannot query device %d: %s", device, cu_str(r));
        return MR_ERR_UNSUPPORTED;
    }
    if (!v) {
        snprintf(why, cap,
                 "CUDA device %d does not export dma-bufs (CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED "
                 "is 0: it needs NVIDIA's open GPU kernel modules and a kernel with dma-buf)",
                 device);
        return MR_ERR_UNSUPPORTED;
    }
    return MR_OK;
}

mr_status mr_cuda_dmabuf_create(int device, size_t bytes, mr_cuda_dmabuf **out, char *why,
                                size_t cap) {
    mr_status st = mr_cuda_dmabuf_supported(device, why, cap);
    if (st != MR_OK) return st;
    const size_t align = align_of_range();
    const size_t size = ((bytes ? bytes : 1) + align - 1) / align * align;
    mr_cuda_dmabuf *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(why, cap, "out of host memory");
        return MR_ERR_NOMEM;
    }
    const int prev = current_device();
    void *raw = NULL;
    cudaError_t e = cudaSetDevice(device);
    /* one alignment more than asked, so that an aligned range of `size` bytes fits inside */
    if (e == cudaSuccess) e = cudaMalloc(&raw, size + align);
    if (e != cudaSuccess) {
        snprintf(why, cap, "cudaMalloc of %zu bytes on device %d: %s", size + align, device,
                 cudaGetErrorString(e));
        st = e == cudaErrorMemoryAllocation ? MR_ERR_NOMEM : MR_ERR_IO;
        goto err_free_struct;
    }
    const uintptr_t p = ((uintptr_t)raw + align - 1) / align * align;
    int fd = -1;
    CUresult r =
        drv.range_handle(&fd, (CUdeviceptr)p, size, CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD, 0);
    if (r != CUDA_SUCCESS || fd < 0) {
        snprintf(why, cap, "cuMemGetHandleForAddressRange(%zu bytes, dma-buf fd): %s", size,
                 r != CUDA_SUCCESS ? cu_str(r) : "no fd returned");
        st = r == CUDA_ERROR_NOT_SUPPORTED ? MR_ERR_UNSUPPORTED : MR_ERR_IO;
        goto err_free_memory;
    }
    int ordering = 0, flush_opts = 0;
    cudaDeviceGetAttribute(&ordering, cudaDevAttrGPUDirectRDMAWritesOrdering, device);
    cudaDeviceGetAttribute(&flush_opts, cudaDevAttrGPUDirectRDMAFlushWritesOptions, device);
    b->ptr = (void *)p;
    b->bytes = size;
    b->fd = fd;
    b->offset = 0;
    b->device = device;
    b->needs_flush = ordering < cudaGPUDirectRDMAWritesOrderingOwner &&
                     (flush_opts & cudaFlushGPUDirectRDMAWritesOptionHost);
    b->alloc = (uint64_t)(uintptr_t)raw;
    cudaSetDevice(prev);
    MR_LOG_INFO(MR_LOG_GPU, "device %d: %zu bytes exported as dma-buf fd %d (remote writes %s)",
                device, size, fd, b->needs_flush ? "need a flush" : "need no flush");
    *out = b;
    return MR_OK;
err_free_memory:
    cudaFree(raw);
err_free_struct:
    cudaSetDevice(prev);
    free(b);
    return st;
}

void mr_cuda_dmabuf_destroy(mr_cuda_dmabuf *b) {
    if (!b) return;
    if (b->fd >= 0) close(b->fd);
    const int prev = current_device();
    if (cudaSetDevice(b->device) == cudaSuccess) cudaFree((void *)(uintptr_t)b->alloc);
    cudaSetDevice(prev);
    free(b);
}

mr_status mr_cuda_dmabuf_flush(mr_cuda_dmabuf *b) {
    if (!b->needs_flush) return MR_OK;
    const int prev = current_device();
    cudaError_t e = cudaSetDevice(b->device);
    if (e == cudaSuccess)
        e = cudaDeviceFlushGPUDirectRDMAWrites(cudaFlushGPUDirectRDMAWritesTargetCurrentDevice,
                                               cudaFlushGPUDirectRDMAWritesToOwner);
    cudaSetDevice(prev);
    if (e != cudaSuccess) {
        MR_LOG_ERROR(MR_LOG_GPU, "device %d: flushing remote writes: %s", b->device,
                     cudaGetErrorString(e));
        return MR_ERR_IO;
    }
    return MR_OK;
}

mr_status mr_cuda_dmabuf_read(mr_cuda_dmabuf *b, const void *src, void *dst, size_t bytes) {
    const uintptr_t s = (uintptr_t)src, lo = (uintptr_t)b->ptr;
    if (s < lo || s - lo > b->bytes || bytes > b->bytes - (s - lo)) {
        MR_LOG_ERROR(MR_LOG_GPU, "dma-buf read of %zu bytes outside its %zu-byte range", bytes,
                     b->bytes);
        return MR_ERR_INVALID;
    }
    if (!bytes) return MR_OK;
    mr_status st = mr_cuda_dmabuf_flush(b);
    if (st != MR_OK) return st;
    const int prev = current_device();
    cudaError_t e = cudaSetDevice(b->device);
    if (e == cudaSuccess) e = cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost);
    cudaSetDevice(prev);
    if (e != cudaSuccess) {
        MR_LOG_ERROR(MR_LOG_GPU, "device %d: reading %zu received bytes: %s", b->device, bytes,
                     cudaGetErrorString(e));
        return MR_ERR_IO;
    }
    return MR_OK;
}
