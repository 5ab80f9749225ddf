/* cuda_pdl.cuh — programmatic dependent launch (Hopper): a kernel launched with mr_pdl_launch may
 * be scheduled while the kernel before it in the stream is still finishing, so its blocks can
 * start streaming inputs that do not depend on that kernel (expert weights) during the other's
 * last wave. Contract of such a kernel: call mr_pdl_wait() before reading anything the previous
 * kernel writes (and before writing anything it reads); everything enqueued before the previous
 * kernel is complete as usual. mr_pdl_trigger() in a kernel lets the next one be scheduled once
 * every block of this one has started. Both are no-ops before sm_90 and for plain launches.
 * MOERACK_CUDA_PDL=0 in the environment turns the early scheduling off (plain launches). */
#ifndef MR_CUDA_PDL_CUH
#define MR_CUDA_PDL_CUH

#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

__device__ static __forceinline__ void mr_pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ static __forceinline__ void mr_pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;");
#endif
}

static inline int mr_pdl_enabled() {
    static int on = -1; /* read once; a benign race at worst recomputes the same value */
    if (on < 0) {
        const char *e = getenv("MOERACK_CUDA_PDL");
        on = !(e && strcmp(e, "0") == 0);
    }
    return on;
}

/* kernel<<<grid, block, smem, st>>>(args...), allowed to overlap the previous kernel's end. */
template <typename... P, typename... A>
static cudaError_t mr_pdl_launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem,
                                 cudaStream_t st, A... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = st;
    cudaLaunchAttribute attr[1] = {};
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = mr_pdl_enabled() ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kernel, ((P)args)...);
}

#endif
