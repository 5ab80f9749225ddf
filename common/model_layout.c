#include "common/model_layout.h"

#include <stdio.h>
#include <string.h>

static const char *const part_names[MR_PART_COUNT] = {"embeddings", "lm_head", "attention",
                                                      "norms",      "routers", "experts"};

const char *mr_part_name(mr_part p) {
    return (unsigned)p < MR_PART_COUNT ? part_names[p] : "?";
}

uint64_t mr_tensor_spec_bytes(const mr_tensor_spec *s) {
    uint64_t n = mr_dtype_size(s->dtype);
    for (int i = 0; i < s->ndim; i++) n *= (uint64_t)s->shape[i];
    return n;
}

int mr_layout_count(const mr_model_config *c) {
    int n = c->tie_word_embeddings ? 2 : 3; /* embed, norm, lm_head unless tied */
    for (int l = 0; l < c->num_hidden_layers; l++) {
        n += 3; /* two norms + router */
        n += 4; /* qkv_proj/output_gate/norm/out_proj or q/k/v/o_proj */
        n += 3 * c->num_local_experts;
    }
    return n;
}

void mr_layout_expert_name(char *buf, size_t cap, int layer, int expert, int mat) {
    snprintf(buf, cap, "model.layers.%d.block_sparse_moe.experts.%d.w%d.weight", layer, expert,
             mat);
}

static mr_tensor_spec *add(mr_tensor_spec *s, mr_part part, int layer, mr_dtype dt, int64_t d0,
                           int64_t d1, const char *fmt_suffix) {
    memset(s, 0, sizeof *s);
    if (layer >= 0)
        snprintf(s->name, sizeof s->name, "model.layers.%d.%s", layer, fmt_suffix);
    else
        snprintf(s->name, sizeof s->name, "%s", fmt_suffix);
    s->part = part;
    s->layer = layer;
    s->expert = -1;
    s->dtype = dt;
    s->ndim = d1 > 0 ? 2 : 1;
    s->shape[0] = d0;
    s->shape[1] = d1 > 0 ? d1 : 0;
    return s + 1;
}

void mr_layout_build(const mr_model_config *c, mr_tensor_spec *s) {
    const int64_t H = c->hidden_size, V = c->vocab_size, I = c->intermediate_size;
    const int64_t inner = (int64_t)c->num_attention_heads * c->head_dim;
    const int64_t kv = (int64_t)c->num_key_value_heads * c->head_dim;
    const mr_dtype bf = MR_DTYPE_BF16;
    s = add(s, MR_PART_EMBED, -1, bf, V, H, "model.embed_tokens.weight");
    for (int l = 0; l < c->num_hidden_layers; l++) {
        s = add(s, MR_PART_NORM, l, bf, H, 0, "input_layernorm.weight");
        if (c->attn_type[l] == MR_ATTN_LIGHTNING) {
            s = add(s, MR_PART_ATTN, l, bf, 3 * inner, H, "self_attn.qkv_proj.weight");
            s = add(s, MR_PART_ATTN, l, bf, inner, H, "self_attn.output_gate.weight");
            s = add(s, MR_PART_ATTN, l, bf, inner, 0, "self_attn.norm.weight");
            s = add(s, MR_PART_ATTN, l, bf, H, inner, "self_attn.out_proj.weight");
        } else {
            s = add(s, MR_PART_ATTN, l, bf, inner, H, "self_attn.q_proj.weight");
            s = add(s, MR_PART_ATTN, l, bf, kv, H, "self_attn.k_proj.weight");
            s = add(s, MR_PART_ATTN, l, bf, kv, H, "self_attn.v_proj.weight");
            s = add(s, MR_PART_ATTN, l, bf, H, inner, "self_attn.o_proj.weight");
        }
        s = add(s, MR_PART_NORM, l, bf, H, 0, "post_attention_layernorm.weight");
        s = add(s, MR_PART_ROUTER, l, MR_DTYPE_F32, c->num_local_experts, H,
                "block_sparse_moe.gate.weight");
        for (int e = 0; e < c->num_local_experts; e++) {
            static const int mats[3] = {MR_EXPERT_W1, MR_EXPERT_W3, MR_EXPERT_W2};
            for (int m = 0; m < 3; m++) {
                int is_down = mats[m] == MR_EXPERT_W2;
                memset(s, 0, sizeof *s);
                mr_layout_expert_name(s->name, sizeof s->name, l, e, mats[m]);
                s->part = MR_PART_EXPERT;
                s->layer = l;
                s->expert = e;
                s->mat = mats[m];
                s->dtype = bf;
                s->ndim = 2;
                s->shape[0] = is_down ? H : I;
                s->shape[1] = is_down ? I : H;
                s++;
            }
        }
    }
    s = add(s, MR_PART_NORM, -1, bf, H, 0, "model.norm.weight");
    if (!c->tie_word_embeddings) add(s, MR_PART_LM_HEAD, -1, bf, V, H, "lm_head.weight");
}
