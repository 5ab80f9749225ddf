/* expert_store.h — the expert weights a process holds, loaded from the checkpoint shards.
 *
 * `held` is a [num_hidden_layers][num_local_experts] byte mask. Only the tensors of held experts
 * are read (shards holding none of them are never opened); mr_ckpt_bytes_read() on the checkpoint
 * afterwards equals mr_expert_store_bytes() for a BF16 checkpoint. Weights stay bf16 when stored
 * bf16 (F32/F16 are kept as f32). mr_expert_store_layer() gives the backend's view of a layer.
 *
 * defer_synthetic (for backends with moe_prepare, which generate weights where they keep them):
 * with synthetic weights nothing is generated or kept here; each matrix carries its stream
 * (mr_matrix.synth, data NULL) and mr_expert_store_bytes() is 0. Ignored for real checkpoints. */
#ifndef MR_EXPERT_STORE_H
#define MR_EXPERT_STORE_H

#include <stddef.h>

#include "common/checkpoint.h"
#include "kernels/backend.h"

typedef struct mr_expert_store mr_expert_store;

/* Called after each expert is loaded: done/total experts and bytes so far. */
typedef void (*mr_load_progress_fn)(void *user, int done, int total, size_t bytes);

mr_status mr_expert_store_load(mr_ckpt *ck, const unsigned char *held, int defer_synthetic,
                               mr_load_progress_fn progress, void *user, mr_expert_store **out);
void mr_expert_store_free(mr_expert_store *s);
const mr_expert_set *mr_expert_store_layer(const mr_expert_store *s, int layer);
size_t mr_expert_store_bytes(const mr_expert_store *s);
int mr_expert_store_count(const mr_expert_store *s);

#endif
