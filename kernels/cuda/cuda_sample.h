/* cuda_sample.h — sampling on the GPU (kernels/sample.h's semantics), so that only token ids and
 * logprobs leave the device.
 *
 *   mr_cuda_sampler *sm;  MR_CHECK(mr_cuda_sampler_create(max_rows, &sm));    // at start-up
 *   MR_CHECK(mr_cuda_sample(sm, logits, n_logit_rows, vocab, rows, n, tokens, out, stream));
 *   mr_cuda_sampler_destroy(sm);
 *
 * mr_cuda_sample checks every row (mr_sample_row_check), uploads the rows, runs one block per
 * row on `stream` after the work already enqueued there, and waits for the results: tokens and
 * out (host [n]) are written on return. A row a device sampler does not take (more than
 * MR_SAMPLE_MAX_CANDIDATES candidates, or a nucleus needing the whole vocabulary) gets token
 * MR_SAMPLE_ON_HOST: the caller samples it with mr_sample_ref and the same u. More than max_rows
 * rows run in several launches. Nothing is allocated per call.
 * Owned by the thread that drives the stream. */
#ifndef MR_CUDA_SAMPLE_H
#define MR_CUDA_SAMPLE_H

#include <stdint.h>

#include <cuda_runtime.h>

#include "common/status.h"
#include "kernels/sample.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mr_cuda_sampler mr_cuda_sampler;

/* Launches of at most this many rows split each row over a cluster of 8 blocks (8 SMs read it,
 * sharing the selection through distributed shared memory); larger ones take one block a row. */
#define MR_CUDA_SAMPLE_SPLIT_ROWS 64

mr_status mr_cuda_sampler_create(int max_rows, mr_cuda_sampler **out);
/* For tests and benchmarks: blocks per row, 0 (by batch size, the default), 1 or 8. */
mr_status mr_cuda_sampler_set_split(mr_cuda_sampler *s, int blocks_per_row);
void mr_cuda_sampler_destroy(mr_cuda_sampler *s); /* NULL allowed */

/* logits: device [n_logit_rows][vocab] fp32; rows: host [n]; tokens, out: host [n]. */
mr_status mr_cuda_sample(mr_cuda_sampler *s, const float *logits, int n_logit_rows, int vocab,
                         const mr_sample_row *rows, int n, int32_t *tokens, mr_sample_result *out,
                         cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
