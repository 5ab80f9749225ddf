/* checkpoint.h — a model directory: config.json, model.safetensors.index.json and the shards.
 *
 *   mr_ckpt *ck;  MR_CHECK(mr_ckpt_open("/models/MiniMax-M1-80k", &ck));
 *   MR_CHECK(mr_ckpt_load(ck, &spec, dst, MR_DTYPE_BF16));   // validates dtype and shape
 *   mr_ckpt_close(ck);
 *
 * Opening reads config.json and the index (or a single model.safetensors) only. A shard is
 * mapped the first time one of its tensors is asked for, so a worker that loads a few experts
 * touches only the headers of the shards that hold them and the bytes of those experts;
 * mr_ckpt_bytes_read() counts the tensor bytes copied out, for tests and load progress.
 * Shard names come from the index and must be plain file names inside the directory.
 * Not thread-safe: one thread loads. */
#ifndef MR_CHECKPOINT_H
#define MR_CHECKPOINT_H

#include <stdint.h>

#include "common/model_config.h"
#include "common/model_layout.h"
#include "common/safetensors.h"
#include "common/status.h"

typedef struct mr_ckpt mr_ckpt;

mr_status mr_ckpt_open(const char *dir, mr_ckpt **out);
void mr_ckpt_close(mr_ckpt *ck);

const mr_model_config *mr_ckpt_config(const mr_ckpt *ck);
const char *mr_ckpt_dir(const mr_ckpt *ck);

/* Index-only checks, used by `model inspect` and by a test on the real release's index:
 * loads an index file, checks its shard naming (model-XXXXX-of-YYYYY.safetensors, consistent
 * total, numbering from 0 or 1 with every shard present) and that its tensor names are exactly
 * those the config's layout requires. */
typedef struct mr_ckpt_index mr_ckpt_index;
mr_status mr_ckpt_index_load(const char *path, mr_ckpt_index **out);
void mr_ckpt_index_free(mr_ckpt_index *ix);
int mr_ckpt_index_n_tensors(const mr_ckpt_index *ix);
int mr_ckpt_index_n_shards(const mr_ckpt_index *ix);
int mr_ckpt_index_first_shard(const mr_ckpt_index *ix);     /* 0 for the real release */
uint64_t mr_ckpt_index_total_size(const mr_ckpt_index *ix); /* metadata.total_size or 0 */
/* Shard file name holding `tensor`, or NULL. */
const char *mr_ckpt_index_shard_of(const mr_ckpt_index *ix, const char *tensor);
mr_status mr_ckpt_index_check_layout(const mr_ckpt_index *ix, const char *origin,
                                     const mr_model_config *c);

/* Synthetic weights: a model path "synthetic:SEED:DIR" opens DIR/config.json and generates every
 * tensor on load (common/synthetic.h); find fails, stored_dtype and load work, bytes_read counts
 * the bytes generated. */

/* The dtype `name` is stored in (from its file, or the layout for synthetic weights). */
mr_status mr_ckpt_stored_dtype(mr_ckpt *ck, const char *name, mr_dtype *out);
/* Finds `name`, mapping its shard if needed; logs and fails if absent. */
mr_status mr_ckpt_find(mr_ckpt *ck, const char *name, mr_st_file **file,
                       const mr_st_tensor **tensor);
/* Copies the tensor described by `spec` into `dst`, converting to `dst_dtype` (F32 or BF16).
 * The stored shape must equal spec->shape and the stored dtype must be a float type
 * (F32, BF16, F16; BF16 destinations accept F32/BF16 sources only). */
mr_status mr_ckpt_load(mr_ckpt *ck, const mr_tensor_spec *spec, void *dst, mr_dtype dst_dtype);
uint64_t mr_ckpt_bytes_read(const mr_ckpt *ck);

/* Maps every shard and checks that every tensor of the layout is present with the right shape
 * and a float dtype, and that the index total_size matches. Logs each problem found. */
mr_status mr_ckpt_verify(mr_ckpt *ck);

#endif
