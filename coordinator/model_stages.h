/* model_stages.h — the model's layers split into a pipeline of stages, one per GPU.
 *
 *   size_t layer_bytes[L] = {...};       // device bytes each layer needs (weights, experts, state)
 *   mr_stage_plan plan;
 *   MR_CHECK(mr_stage_plan_make(layer_bytes, L, embed_bytes, head_bytes, n_gpus, &plan));
 *   // stage s runs layers [plan.first_layer[s], plan.first_layer[s + 1])
 *
 * Stages are contiguous ranges of layers, each at least one layer; the first also holds the
 * embedding (first_extra bytes), the last the final norm and the LM head (last_extra). Among all
 * such splits the plan minimises the largest stage's bytes (what decides whether the model fits),
 * ties going to the earliest boundaries. Only the residual stream crosses a stage
 * boundary (model.c), so a split costs one activation copy per boundary per micro-batch. */
#ifndef MR_MODEL_STAGES_H
#define MR_MODEL_STAGES_H

#include <stddef.h>

#include "common/status.h"

#define MR_MAX_STAGES 16

typedef struct mr_stage_plan {
    int n_stages;
    int first_layer[MR_MAX_STAGES + 1]; /* [n_stages + 1]: first_layer[n_stages] = n_layers */
    size_t bytes[MR_MAX_STAGES];        /* the stage's layers plus its extras */
} mr_stage_plan;

/* MR_ERR_INVALID if n_stages is not in [1, min(n_layers, MR_MAX_STAGES)]. */
mr_status mr_stage_plan_make(const size_t *layer_bytes, int n_layers, size_t first_extra,
                             size_t last_extra, int n_stages, mr_stage_plan *out);

/* The stage of a layer (plan made for more than `layer` layers). */
int mr_stage_plan_stage_of(const mr_stage_plan *p, int layer);

#endif
