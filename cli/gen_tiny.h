/* gen_tiny.h — deterministic synthetic checkpoints in the real MiniMax-M1 layout.
 *
 * Presets keep the real model's structure at small sizes: a softmax layer every 8th layer,
 * heads·head_dim != hidden_size, rotary_dim < head_dim, several zero-based shards (shard 0 holds
 * only the embeddings, like the release), F32 routers and BF16 everything else. Weights are
 * uniform with variance chosen so activations and logits are O(1). Values come from an integer
 * generator seeded per tensor (seed, tensor name), so files are bit-identical on every machine. */
#ifndef MR_GEN_TINY_H
#define MR_GEN_TINY_H

#include <stdint.h>
#include <stdio.h>

#include "common/model_config.h"
#include "common/status.h"

typedef struct mr_tiny_preset {
    const char *name;
    const char *doc;
    int vocab, hidden, layers, heads, head_dim, kv_heads, rotary_dim;
    double rope_theta;
    int experts, top_k, inter, shards;
} mr_tiny_preset;

const mr_tiny_preset *mr_tiny_preset_find(const char *name);
void mr_tiny_preset_list(FILE *out);
void mr_tiny_preset_config(const mr_tiny_preset *p, mr_model_config *c);
mr_status mr_gen_tiny(const char *out_dir, const mr_tiny_preset *p, uint64_t seed);

#endif
