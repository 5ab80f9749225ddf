/* cuda_gpu_backend.h — the "cuda-gpu" backend: the coordinator engine resident on one GPU
 * (params.device; 0 by default).
 *
 *   mr_model_params mp;  mr_model_params_default(&mp);  mp.backend = "cuda-gpu";
 *   mr_model_create(ck, &mp, &m);   // activations, states, KV cache allocated on the GPU
 *   mr_model_step(m, seqs, n, logits);   // ids, segments, block tables up; logits down
 *
 * A device-resident backend (kernels/backend.h, "Where the memory lives"): activations, the
 * lightning state pool and the bf16 KV cache are device memory the model allocates through the
 * alloc op; each op translates its arguments and enqueues the kernels of coord_ops.h and
 * cuda_attention.h on the backend's one stream, without staging activations. What crosses the
 * bus per op: token ids (embed), decode slots, block tables and positions (attention) go up
 * through a page-locked ring; route's ids and weights come down (the expert executor plans on
 * the host: one synchronisation per layer); the logits come down in to_host. Weights (host
 * matrices and vectors of the model) are uploaded once, on first use, found again by host
 * address. moe runs the bf16 expert executor of an inner "cuda" backend (split activations) on
 * device x and out, ordered with the backend's stream by events.
 *
 * Numerics are those of cuda-full (the same kernels): bf16-rounded activations into the bf16
 * projections, bf16 lightning-prefill operands, a bf16 KV cache (here the cache itself is bf16,
 * as in cuda-full's device mirror), with the production prefill variants MR_CUDA_LT_DEFAULT and
 * MR_CUDA_AP_DEFAULT as in cuda-full. Supported head_dim: 16, 32, 64, 128 (refused at create).
 *
 * Errors: an op that fails logs the reason, fills its device outputs with NaN and the next
 * to_host returns the failure (the step fails). Not thread-safe: one thread drives it.
 *
 * Several GPUs (the model's layer stages, coordinator/model_stages.h): one backend per device;
 * every entry point makes its device current first, so one host thread can drive them all, and
 * copy_from moves a stage's activations to the next GPU (cudaMemcpyPeerAsync on the receiving
 * stream, ordered with events on both streams; peer access enabled on first use). */
#ifndef MR_CUDA_GPU_BACKEND_H
#define MR_CUDA_GPU_BACKEND_H

#include "kernels/backend.h"

mr_status mr_cuda_gpu_backend_create(const mr_backend_params *p, mr_backend **out);

#endif
