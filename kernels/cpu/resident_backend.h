/* resident_backend.h — "cpu-resident": the cpu backend behind the device-resident interface.
 *
 * The test vehicle of the device-resident path of the model (kernels/backend.h, "Where the
 * memory lives") on machines without a GPU: its "device memory" is host memory from its own
 * alloc, and every op first checks the pointer contract — activations, states and the KV cache
 * inside memory it allocated, weights, ids, segments and block tables outside it, the lightning
 * states at state_pool + slot · slot_stride — then runs the cpu op. A violation is logged and
 * fails the step at the next to_host, so the goldens run on it catch a model that reads device
 * memory directly, forgets a copy, or passes a host buffer where device memory is expected.
 * Same results as "cpu" (the KV cache stays float32). */
#ifndef MR_RESIDENT_BACKEND_H
#define MR_RESIDENT_BACKEND_H

#include "kernels/backend.h"

mr_status mr_resident_backend_create(const mr_backend_params *p, mr_backend **out);

#endif
