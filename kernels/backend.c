#include "kernels/backend.h"

#include <string.h>

#include "common/log.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/resident_backend.h"
#include "kernels/ref/ref_backend.h"
#ifdef MR_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

mr_status mr_backend_create(const char *name, const mr_backend_params *p, mr_backend **out) {
    if (strcmp(name, "ref") == 0) return mr_ref_backend_create(p, out);
    if (strcmp(name, "cpu") == 0) return mr_cpu_backend_create(p, out);
    if (strcmp(name, "cpu-resident") == 0) return mr_resident_backend_create(p, out);
    if (strncmp(name, "cuda", 4) == 0) {
#ifdef MR_HAVE_CUDA
        return mr_cuda_backend_create(name, p, out);
#else
        MR_LOG_ERROR(MR_LOG_KERN, "backend '%s': this build has no CUDA (nvcc was not found)",
                     name);
        return MR_ERR_UNSUPPORTED;
#endif
    }
    MR_LOG_ERROR(MR_LOG_KERN,
                 "unknown backend '%s' (expected ref, cpu, cpu-resident, cuda[-int8|-int4][-fast], "
                 "cuda-full, cuda-gpu)",
                 name);
    return MR_ERR_INVALID;
}

void mr_backend_destroy(mr_backend *be) {
    if (be) be->ops->destroy(be);
}
