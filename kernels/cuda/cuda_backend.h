/* cuda_backend.h — the "cuda", "cuda-int8", "cuda-int4" backends of the ops table, and their
 * "-fast" variants.
 *
 * Every op but moe runs on an inner cpu backend; moe runs on the CUDA expert executor
 * (cuda_experts.h) of GPU 0 (one process per GPU: select it with CUDA_VISIBLE_DEVICES), in the
 * weight format the name gives (bf16, int8, int4). Activations are split in two bf16 parts
 * (fp32-accurate products with the stored weights); the -fast variants round them to bf16 (half
 * the tensor work, ~4e-3 relative error per expert). The experts are uploaded by the optional
 * moe_prepare op, once, for all layers (the model and the worker call it after loading the expert
 * store); moe then finds the layer by its set pointer. A moe call before moe_prepare, or one that
 * fails on the GPU, writes NaN into out and logs the reason (the op has no status).
 * "cuda-full" (cuda_full_backend.h) runs every op on the GPU; "cuda-gpu" (cuda_gpu_backend.h)
 * does too, on device-resident activations. */
#ifndef MR_CUDA_BACKEND_H
#define MR_CUDA_BACKEND_H

#include "kernels/backend.h"
#include "kernels/cuda/cuda_experts.h"

mr_status mr_cuda_backend_create(const char *name, const mr_backend_params *p, mr_backend **out);

/* For a backend that runs its experts on device activations (cuda-gpu): the executor of a
 * "cuda"-family backend `be` (not cuda-full / cuda-gpu) and the layer index of a set prepared by
 * its moe_prepare. MR_ERR_INVALID (not logged) for another backend, before moe_prepare, or for a
 * set it was not given. */
mr_status mr_cuda_backend_experts(mr_backend *be, const mr_expert_set *set, mr_cuda_experts **cx,
                                  int *layer);

/* 1 if `be` is a "cuda"-family expert backend (cuda, cuda-int8, cuda-int4, their -fast variants).
 */
int mr_cuda_backend_is_experts(const mr_backend *be);

/* The moe op of a "cuda"-family backend on activations already in device memory (a worker's
 * dma-buf receive region): x_dev f32 [n][hidden] (16-byte aligned), ids / wts on the host,
 * out_dev device scratch of [n][hidden] f32, out the host result. Returns when out is written.
 * MR_ERR_INVALID (logged) before moe_prepare, for an unknown set, or a misaligned x_dev. */
mr_status mr_cuda_backend_moe_dev(mr_backend *be, const mr_expert_set *set, const float *x_dev,
                                  int n, int k, const int32_t *ids, const float *wts,
                                  float *out_dev, float *out);

#endif
