/* synthetic.h — deterministic synthetic weights of any model shape, without files.
 *
 * Every element of every tensor is a pure function of (seed, tensor name, element index): element
 * i of tensor T uses splitmix64 at state seed·φ ⊕ fnv1a(T) + i·φ (φ the golden-ratio increment),
 * i.e. the i-th draw of the stream `moerack model gen-tiny` writes. So a checkpoint written by
 * gen-tiny with seed S and the synthetic weights of seed S are bit for bit the same numbers,
 * generated in any order, by any number of threads, on the CPU or a GPU.
 *
 * Values: uniform, scaled per tensor kind so activations and logits stay O(1) (embeddings std 1,
 * projections 1/sqrt(fan_in), lm_head and routers 2/sqrt(hidden), norms 1 + 0.1·u), rounded to the
 * tensor's stored dtype (BF16 or F32) as a file would hold them.
 *
 * A model path "synthetic:SEED:DIR" opens DIR/config.json with these weights (checkpoint.h). */
#ifndef MR_SYNTHETIC_H
#define MR_SYNTHETIC_H

#include <stdint.h>

#include "common/dtype.h"
#include "common/model_config.h"
#include "common/model_layout.h"

/* Standard deviation of a tensor's values; 0 for norm weights (1 + 0.1·u). */
double mr_synth_std(const mr_tensor_spec *s, const mr_model_config *c);

/* Elements [first, first + count) of the tensor into dst (dst[0] is element `first`), converted
 * from the stored dtype to dst_dtype (F32 or BF16). */
void mr_synth_fill_range(const mr_tensor_spec *s, const mr_model_config *c, uint64_t seed,
                         uint64_t first, uint64_t count, void *dst, mr_dtype dst_dtype);

/* The whole tensor, on up to `threads` threads (<= 0: all CPUs). */
void mr_synth_fill(const mr_tensor_spec *s, const mr_model_config *c, uint64_t seed, void *dst,
                   mr_dtype dst_dtype, int threads);

/* Parses "synthetic:SEED:DIR"; returns 1 and fills seed and dir (cap bytes) if `path` has that
 * form, 0 if it does not start with "synthetic:", -1 (logged) if it does but is malformed. */
int mr_synth_parse_path(const char *path, uint64_t *seed, char *dir, size_t cap);

#endif
