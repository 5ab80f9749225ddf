/* model_config.h — the Hugging Face config.json of MiniMax-M1, with its original key names.
 *
 * mr_model_config_load() reads config.json, checks every field the engine uses for type and range
 * and the relations between them (heads divisible by kv heads, rotary_dim <= head_dim and even,
 * attn_type_list length == num_hidden_layers, ...). An error names the file and the key. Keys the
 * engine does not use are accepted and ignored (the real file carries training-only keys). */
#ifndef MR_MODEL_CONFIG_H
#define MR_MODEL_CONFIG_H

#include <stddef.h>

#include "common/status.h"

#define MR_MAX_LAYERS 512

typedef enum mr_attn_type {
    MR_ATTN_LIGHTNING = 0, /* attn_type_list value 0: linear ("lightning") attention */
    MR_ATTN_SOFTMAX = 1,   /* attn_type_list value 1: softmax attention with RoPE and KV cache */
} mr_attn_type;

typedef struct mr_model_config {
    char model_type[32];
    int hidden_size;
    int num_hidden_layers;
    int num_attention_heads; /* both layer types */
    int num_key_value_heads; /* softmax layers */
    int head_dim;
    int rotary_dim; /* RoPE on dims [0, rotary_dim) of each head, NeoX pairs */
    double rope_theta;
    int vocab_size;
    int intermediate_size; /* per-expert FFN width */
    int num_local_experts;
    int num_experts_per_tok;
    unsigned char attn_type[MR_MAX_LAYERS]; /* mr_attn_type per layer */
    double alpha_full, beta_full;           /* layernorm_full_attention_alpha/beta */
    double alpha_linear, beta_linear;       /* layernorm_linear_attention_alpha/beta */
    double alpha_mlp, beta_mlp;             /* layernorm_mlp_alpha/beta */
    double rms_norm_eps;                    /* input/post-attention/final norms */
    double lightning_norm_eps; /* the 8192-wide lightning output norm: 1e-6 (spec 3.3.5) */
    int postnorm;              /* 1: residual is the normalised input (the real model) */
    int tie_word_embeddings;
    int block_size; /* lightning prefill chunk; optional key, default 256 */
    long long max_position_embeddings;
    int eos_token_id; /* -1 when null in the file */
    int bos_token_id; /* -1 when null in the file */
} mr_model_config;

mr_status mr_model_config_load(const char *path, mr_model_config *out);
/* Parse from a JSON text (for tests and the fuzz target); `origin` names it in errors. */
mr_status mr_model_config_parse(const char *origin, const char *json, size_t len,
                                mr_model_config *out);
/* Write the config as JSON with the original key names (used by gen-tiny). */
mr_status mr_model_config_save(const mr_model_config *c, const char *path);

int mr_model_config_n_lightning(const mr_model_config *c);
int mr_model_config_n_softmax(const mr_model_config *c);
/* Index of `layer` among the layers of its own type (its lightning-state or KV slot). */
int mr_model_config_type_index(const mr_model_config *c, int layer);

#endif
