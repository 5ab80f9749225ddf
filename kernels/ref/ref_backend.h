/* ref_backend.h — constructor of the reference ("ref") backend. */
#ifndef MR_REF_BACKEND_H
#define MR_REF_BACKEND_H

#include "kernels/backend.h"

mr_status mr_ref_backend_create(const mr_backend_params *p, mr_backend **out);

#endif
