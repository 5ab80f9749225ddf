/* cuda_check.h — CUDA and cuBLAS error translation at the boundary (style rule 6).
 *
 *   MR_CUDA_CHECK(cudaMalloc(&p, n));          returns MR_ERR_* from the enclosing function
 *   MR_CUDA_CHECK_GOTO(cudaMemcpy(...), lbl);  stores into a local `st` and jumps
 *   MR_CUBLAS_CHECK(cublasGemmEx(...));
 *
 * Each failure is logged once, with the statement text and file:line, under MR_LOG_GPU.
 * Usable from C and from CUDA C++ (.cu) files. */
#ifndef MR_CUDA_CHECK_H
#define MR_CUDA_CHECK_H

#include <cublas_v2.h>
#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "common/log.h"
#include "common/status.h"
#ifdef __cplusplus
}
#endif

static inline mr_status mr_cuda_status(cudaError_t e) {
    switch (e) {
    case cudaSuccess:
        return MR_OK;
    case cudaErrorMemoryAllocation:
        return MR_ERR_NOMEM;
    case cudaErrorInvalidValue:
    case cudaErrorInvalidDevicePointer:
    case cudaErrorInvalidConfiguration:
        return MR_ERR_INVALID;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorNotSupported:
        return MR_ERR_UNSUPPORTED;
    default:
        return MR_ERR_INTERNAL;
    }
}

static inline mr_status mr_cublas_status(cublasStatus_t e) {
    switch (e) {
    case CUBLAS_STATUS_SUCCESS:
        return MR_OK;
    case CUBLAS_STATUS_ALLOC_FAILED:
        return MR_ERR_NOMEM;
    case CUBLAS_STATUS_INVALID_VALUE:
        return MR_ERR_INVALID;
    case CUBLAS_STATUS_NOT_SUPPORTED:
    case CUBLAS_STATUS_ARCH_MISMATCH:
        return MR_ERR_UNSUPPORTED;
    default:
        return MR_ERR_INTERNAL;
    }
}

static inline mr_status mr_cuda_check_at(cudaError_t e, const char *what, const char *file,
                                         int line) {
    if (e == cudaSuccess) return MR_OK;
    MR_LOG_ERROR(MR_LOG_GPU, "%s:%d: %s: %s (%s)", file, line, what, cudaGetErrorString(e),
                 cudaGetErrorName(e));
    return mr_cuda_status(e);
}

static inline mr_status mr_cublas_check_at(cublasStatus_t e, const char *what, const char *file,
                                           int line) {
    if (e == CUBLAS_STATUS_SUCCESS) return MR_OK;
    MR_LOG_ERROR(MR_LOG_GPU, "%s:%d: %s: %s (%d)", file, line, what, cublasGetStatusString(e),
                 (int)e);
    return mr_cublas_status(e);
}

#define MR_CUDA_CHECK(call)                                                                        \
    do {                                                                                           \
        mr_status mr_cuda_st_ = mr_cuda_check_at((call), #call, __FILE__, __LINE__);               \
        if (mr_cuda_st_ != MR_OK) return mr_cuda_st_;                                              \
    } while (0)

#define MR_CUDA_CHECK_GOTO(call, label)                                                            \
    do {                                                                                           \
        st = mr_cuda_check_at((call), #call, __FILE__, __LINE__);                                  \
        if (st != MR_OK) goto label;                                                               \
    } while (0)

#define MR_CUBLAS_CHECK(call)                                                                      \
    do {                                                                                           \
        mr_status mr_cublas_st_ = mr_cublas_check_at((call), #call, __FILE__, __LINE__);           \
        if (mr_cublas_st_ != MR_OK) return mr_cublas_st_;                                          \
    } while (0)

#define MR_CUBLAS_CHECK_GOTO(call, label)                                                          \
    do {                                                                                           \
        st = mr_cublas_check_at((call), #call, __FILE__, __LINE__);                                \
        if (st != MR_OK) goto label;                                                               \
    } while (0)

/* After a kernel launch: the launch's own error (bad configuration, missing image). */
#define MR_CUDA_CHECK_LAUNCH(what)                                                                 \
    do {                                                                                           \
        mr_status mr_cuda_st_ = mr_cuda_check_at(cudaGetLastError(), (what), __FILE__, __LINE__);  \
        if (mr_cuda_st_ != MR_OK) return mr_cuda_st_;                                              \
    } while (0)

#endif
