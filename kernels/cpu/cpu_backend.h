/* cpu_backend.h — constructor of the threaded, vectorised "cpu" backend. */
#ifndef MR_CPU_BACKEND_H
#define MR_CPU_BACKEND_H

#include "kernels/backend.h"

mr_status mr_cpu_backend_create(const mr_backend_params *p, mr_backend **out);
/* "avx512", "avx2" or "scalar": the kernels picked for this CPU. */
const char *mr_cpu_backend_isa(void);

#endif
