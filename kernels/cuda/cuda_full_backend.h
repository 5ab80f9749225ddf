/* cuda_full_backend.h — the "cuda-full" backend: every op of the ops table on GPU 0.
 *
 * embed, rmsnorm, scale_add, linear, norm_gate and route run the coordinator kernels of
 * coord_ops.h; lightning and attention the kernels of cuda_attention.h; moe and moe_prepare the
 * bf16 expert executor of the "cuda" backend (split activations). Numerics are those of the
 * kernels: linear with bf16 weights rounds activations to bf16 (fp32 weights: fp32 GEMM); the
 * lightning prefill multiplies bf16 operands; the softmax KV cache is mirrored in bf16.
 *
 * This is the correctness vehicle of the GPU coordinator, not its fast path: the ops table works
 * on host pointers, so every op uploads its inputs, runs on the backend's stream, downloads its
 * outputs and synchronises. Weights (matrices, norm vectors) are uploaded once, on first use,
 * and found again by host address and size: they must not change while the backend lives (the
 * model's do not). Device staging buffers grow on demand (cudaMalloc on growth, not per call).
 * An op that fails on the GPU logs the reason and writes NaN into its outputs (ops have no
 * status). Where the softmax kernels are not built (MR_HAVE_CUDA_SOFTMAX unset), attention runs
 * on the cpu backend instead, with a warning at create. */
#ifndef MR_CUDA_FULL_BACKEND_H
#define MR_CUDA_FULL_BACKEND_H

#include "kernels/backend.h"

mr_status mr_cuda_full_backend_create(const mr_backend_params *p, mr_backend **out);

#endif
