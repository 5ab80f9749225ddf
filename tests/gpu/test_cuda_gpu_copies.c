/* test_cuda_gpu_copies — the device-resident backend's host copies (cuda-gpu's to_device and
 * to_host): small and large buffers from pageable and from page-locked host memory (a large
 * page-locked one is copied straight from the caller's buffer, not through the backend's ring),
 * each checked to land exactly, and the source overwritten right after to_device returns, which
 * backend.h allows ("src may be reused on return"): the device must still hold the old bytes.
 * Exit 0 pass, 1 fail, 77 without a CUDA device. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "common/log.h"
#include "kernels/backend.h"

static int failures;

static void fill(uint32_t *p, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) p[i] = seed * 2654435761u + (uint32_t)i * 40503u;
}

/* One round trip of `bytes` from src (of the given kind) through the device. */
static void round_trip(mr_backend *be, void *dev, uint32_t *src, uint32_t *back, size_t bytes,
                       const char *what) {
    const size_t n = bytes / 4;
    fill(src, n, 7);
    mr_status st = be->ops->to_device(be, dev, src, bytes);
    fill(src, n, 8); /* the caller reuses its buffer at once */
    if (st == MR_OK) st = be->ops->to_host(be, back, dev, bytes);
    fill(src, n, 7);
    const int ok = st == MR_OK && memcmp(src, back, bytes) == 0;
    printf("%s %-40s %9zu bytes\n", ok ? "ok  " : "FAIL", what, bytes);
    failures += !ok;
}

int main(void) {
    int devs = 0;
    if (cudaGetDeviceCount(&devs) != cudaSuccess || devs == 0) {
        printf("SKIP: no CUDA device\n");
        return 77;
    }
    mr_log_set_level(MR_LOG_LEVEL_WARN);
    mr_backend_params bp = {.n_threads = 1,
                            .max_tokens = 64,
                            .hidden = 64,
                            .inter = 64,
                            .n_heads = 2,
                            .head_dim = 32,
                            .block_size = 64,
                            .max_experts = 8,
                            .top_k = 2};
    mr_backend *be;
    if (mr_backend_create("cuda-gpu", &bp, &be) != MR_OK) {
        printf("FAIL: cannot create the cuda-gpu backend\n");
        return 1;
    }
    enum { BIG = 24 << 20 }; /* larger than the ring, like a prefill step's MoE result */
    void *dev, *pinned;
    uint32_t *pageable = malloc(BIG), *back = malloc(BIG);
    if (be->ops->alloc(be, BIG, MR_MEM_DEVICE, &dev) != MR_OK ||
        be->ops->alloc(be, BIG, MR_MEM_HOST, &pinned) != MR_OK || !pageable || !back) {
        printf("FAIL: allocation\n");
        return 1;
    }
    static const size_t sizes[] = {4096, (1 << 20) - 64, 1 << 20, BIG};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        round_trip(be, dev, pageable, back, sizes[i], "pageable host memory");
        round_trip(be, dev, pinned, back, sizes[i], "page-locked host memory");
    }
    /* two large uploads in a row into different places, then one read of both */
    uint32_t *p = pinned;
    const size_t half = BIG / 2;
    fill(p, half / 4, 11);
    mr_status st = be->ops->to_device(be, dev, p, half);
    fill(p, half / 4, 12);
    if (st == MR_OK) st = be->ops->to_device(be, (char *)dev + half, p, half);
    if (st == MR_OK) st = be->ops->to_host(be, back, dev, BIG);
    fill(pageable, half / 4, 11);
    fill(pageable + half / 4, half / 4, 12);
    const int ok = st == MR_OK && memcmp(back, pageable, BIG) == 0;
    printf("%s two page-locked uploads back to back\n", ok ? "ok  " : "FAIL");
    failures += !ok;
    be->ops->free(be, dev, MR_MEM_DEVICE);
    be->ops->free(be, pinned, MR_MEM_HOST);
    free(pageable);
    free(back);
    mr_backend_destroy(be);
    printf("%s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
