/* model_layout.h — the tensors a MiniMax-M1 checkpoint must hold, derived from its config.
 *
 * Names, shapes and release dtypes are exactly those of the official hub layout (spec §2.2):
 * embeddings, per-layer norms, lightning (qkv_proj/output_gate/norm/out_proj) or softmax
 * (q/k/v/o_proj) attention, the fp32 router `block_sparse_moe.gate`, experts w1/w3/w2, final norm
 * and lm_head. The order is that of the real index: embed, layers 0..L-1, norm, lm_head. */
#ifndef MR_MODEL_LAYOUT_H
#define MR_MODEL_LAYOUT_H

#include <stdint.h>

#include "common/dtype.h"
#include "common/model_config.h"

typedef enum mr_part {
    MR_PART_EMBED = 0, /* model.embed_tokens */
    MR_PART_LM_HEAD,   /* lm_head */
    MR_PART_ATTN,      /* self_attn.* */
    MR_PART_NORM,      /* input/post-attention layernorms, final norm */
    MR_PART_ROUTER,    /* block_sparse_moe.gate */
    MR_PART_EXPERT,    /* block_sparse_moe.experts.E.w{1,2,3} */
    MR_PART_COUNT,
} mr_part;

/* Which expert matrix: w1 = gate proj [I, H], w3 = up proj [I, H], w2 = down proj [H, I]. */
typedef enum mr_expert_mat { MR_EXPERT_W1 = 1, MR_EXPERT_W2 = 2, MR_EXPERT_W3 = 3 } mr_expert_mat;

typedef struct mr_tensor_spec {
    char name[96];
    mr_part part;
    int layer;      /* -1 for global tensors */
    int expert;     /* -1 unless MR_PART_EXPERT */
    int mat;        /* mr_expert_mat for experts, else 0 */
    mr_dtype dtype; /* dtype in the official release: F32 for routers, BF16 otherwise */
    int ndim;
    int64_t shape[2];
} mr_tensor_spec;

/* Number of tensors the layout has (8,243 for MiniMax-M1). */
int mr_layout_count(const mr_model_config *c);
/* Fills specs[0..mr_layout_count()) in index order. */
void mr_layout_build(const mr_model_config *c, mr_tensor_spec *specs);
uint64_t mr_tensor_spec_bytes(const mr_tensor_spec *s);
const char *mr_part_name(mr_part p);

void mr_layout_expert_name(char *buf, size_t cap, int layer, int expert, int mat);

#endif
