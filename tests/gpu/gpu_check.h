/* gpu_check.h — what the GPU tests and benchmarks share: exit-on-failure checks of CUDA, cuBLAS and
 * moerack calls, and host/device buffers that exit with their size when they cannot be had. */
#ifndef MR_GPU_CHECK_H
#define MR_GPU_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include <cuda_runtime.h>

#include "common/status.h"

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)
#define CB(call)                                                                                   \
    do {                                                                                           \
        cublasStatus_t s_ = (call);                                                                \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                         \
            fprintf(stderr, "%s:%d: %s: cuBLAS %d\n", __FILE__, __LINE__, #call, (int)s_);         \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)
/* An op launcher's status: anything but MR_OK ends the test or benchmark. */
#define CM(call)                                                                                   \
    do {                                                                                           \
        mr_status s_ = (call);                                                                     \
        if (s_ != MR_OK) {                                                                         \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, mr_status_str(s_));      \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static inline void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of host memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static inline void *dmalloc(size_t n) {
    void *p;
    CK(cudaMalloc(&p, n ? n : 1));
    return p;
}

static inline void *upload(const void *h, size_t n) {
    void *d = dmalloc(n);
    CK(cudaMemcpy(d, h, n, cudaMemcpyHostToDevice));
    return d;
}

/* After everything queued on any stream has finished. */
static inline void download(void *h, const void *d, size_t n) {
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(h, d, n, cudaMemcpyDeviceToHost));
}

#endif
