/* test_cuda_dmabuf — device memory exported as a dma-buf (kernels/cuda/dmabuf.h): for sizes from
 * 1 byte to 64 MiB the range is aligned, usable by CUDA, and its fd a real file whose size covers
 * the request; destroy closes the fd. Where RDMA devices are present, each is asked to register
 * the dma-buf (ibv_reg_dmabuf_mr) and the answer is printed (not a failure: a NIC without dma-buf
 * support is what the transport falls back from). Exit 0 pass, 1 fail, 77 no device / no dma-buf
 * export on it (the reason printed). */
#include <errno.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cuda_runtime.h>

#include "kernels/cuda/dmabuf.h"

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* Asks every RDMA device to register the dma-buf; prints what each said. */
static void probe_nics(const mr_cuda_dmabuf *b) {
    int n = 0;
    struct ibv_device **list = ibv_get_device_list(&n);
    if (!list || n == 0) {
        printf("note: no RDMA devices here: ibv_reg_dmabuf_mr not tried\n");
        if (list) ibv_free_device_list(list);
        return;
    }
    for (int i = 0; i < n; i++) {
        struct ibv_context *ctx = ibv_open_device(list[i]);
        struct ibv_pd *pd = ctx ? ibv_alloc_pd(ctx) : NULL;
        struct ibv_mr *mr = NULL;
        if (pd) {
            errno = 0;
            mr = ibv_reg_dmabuf_mr(pd, b->offset, b->bytes, (uintptr_t)b->ptr, b->fd,
                                   IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
        }
        printf("note: RDMA device %s: %s%s\n", ibv_get_device_name(list[i]),
               mr ? "registered the dma-buf (GPUDirect RDMA into device memory works)"
                  : "did not register the dma-buf: ",
               mr ? "" : (pd ? strerror(errno) : "cannot open it"));
        if (mr) ibv_dereg_mr(mr);
        if (pd) ibv_dealloc_pd(pd);
        if (ctx) ibv_close_device(ctx);
    }
    ibv_free_device_list(list);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        printf("SKIP: no CUDA device\n");
        return 77;
    }
    char why[256] = "";
    if (mr_cuda_dmabuf_supported(0, why, sizeof why) != MR_OK) {
        /* the refusal must be clean and explained */
        mr_cuda_dmabuf *b = NULL;
        char why2[256] = "";
        mr_status st = mr_cuda_dmabuf_create(0, 4096, &b, why2, sizeof why2);
        CHECK(st == MR_ERR_UNSUPPORTED && !b && why2[0], "create on an unsupported device: %s",
              mr_status_str(st));
        printf("SKIP: %s\n", why);
        return failures ? 1 : 77;
    }
    const size_t sizes[] = {1, 4096, 65537, (1u << 20) + 1, 64u << 20};
    int probed = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        const size_t want = sizes[i];
        mr_cuda_dmabuf *b = NULL;
        mr_status st = mr_cuda_dmabuf_create(0, want, &b, why, sizeof why);
        CHECK(st == MR_OK && b, "export of %zu bytes: %s (%s)", want, mr_status_str(st), why);
        if (st != MR_OK) continue;
        CHECK((uintptr_t)b->ptr % MR_CUDA_DMABUF_ALIGN == 0, "ptr %p not aligned", b->ptr);
        CHECK(b->bytes >= want && b->bytes % MR_CUDA_DMABUF_ALIGN == 0, "%zu usable bytes",
              b->bytes);
        struct stat sb;
        CHECK(b->fd >= 0 && fstat(b->fd, &sb) == 0, "fstat of fd %d: %s", b->fd, strerror(errno));
        off_t end = lseek(b->fd, 0, SEEK_END);
        CHECK(end >= (off_t)want, "dma-buf of %lld bytes for %zu requested", (long long)end, want);
        /* the range is ordinary device memory: write it, read the last byte back */
        uint8_t last = 0;
        cudaError_t e = cudaMemset(b->ptr, 0x5a, b->bytes);
        if (e == cudaSuccess)
            e = cudaMemcpy(&last, (uint8_t *)b->ptr + b->bytes - 1, 1, cudaMemcpyDeviceToHost);
        CHECK(e == cudaSuccess && last == 0x5a, "device memory unusable: %s",
              cudaGetErrorString(e));
        CHECK(mr_cuda_dmabuf_flush(b) == MR_OK, "flush");
        printf("%s %zu bytes: %zu exported at %p as fd %d, dma-buf size %lld, flush %s\n",
               failures ? "FAIL" : "PASS", want, b->bytes, b->ptr, b->fd, (long long)end,
               b->needs_flush ? "needed" : "not needed");
        if (!probed++) probe_nics(b);
        const int fd = b->fd;
        mr_cuda_dmabuf_destroy(b);
        CHECK(fcntl(fd, F_GETFD) == -1 && errno == EBADF, "fd %d still open after destroy", fd);
    }
    mr_cuda_dmabuf_destroy(NULL);
    printf("test_cuda_dmabuf: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
