#include "common/model_config.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"

/* Field readers: each logs "<file>: key '<k>': <problem>" once and returns non-zero on error. */

static int get_int(const char *origin, json_t *root, const char *key, int required, long long lo,
                   long long hi, long long dflt, long long *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required) {
            MR_LOG_ERROR(MR_LOG_CONF, "%s: key '%s' is missing", origin, key);
            return -1;
        }
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v)) {
        MR_LOG_ERROR(MR_LOG_CONF, "%s: key '%s' must be an integer", origin, key);
        return -1;
    }
    long long x = json_integer_value(v);
    if (x < lo || x > hi) {
        MR_LOG_ERROR(MR_LOG_CONF, "%s: key '%s' = %lld is out of range [%lld, %lld]", origin, key,
                     x, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

static int get_num(const char *origin, json_t *root, const char *key, int required, double lo,
                   double hi, double dflt, double *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required) {
            MR_LOG_ERROR(MR_LOG_CONF, "%s: key '%s' is missing", origin, key);
            return -1;
        }
        *out = dflt;
        return 0;
    }
    if (!json_is_number(v)) {
        MR_LOG_ERROR(MR_LOG_CONF, "%s: key '%s' must be a number", origin, key);
        return -1;
    }
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) {
        MR_LOG_ERROR(MR_LOG_CONF, "%s: key '%s' = %g is out of range [%g, %g]", origin, key, x, lo,
                     hi);
        return -1;
    }
    *out = x;
    return 0;
}

static int get_bool(const char *origin, json_t *root, const char *key, int dflt, int *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v)) {
        MR_LOG_ERROR(MR_LOG_CONF, "%s: key '%s' must be true or false", origin, key);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

static int bad(const char *origin, const char *key, const char *why) {
    MR_LOG_ERROR(MR_LOG_CONF, "%s: key '%s': %s", origin, key, why);
    return -1;
}

static int parse_fields(const char *origin, json_t *root, mr_model_config *c) {
    long long v;
    int rc = 0;
#define INT_FIELD(key, field, lo, hi)                                                              \
    do {                                                                                           \
        if (get_int(origin, root, key, 1, lo, hi, 0, &v)) return -1;                               \
        c->field = (int)v;                                                                         \
    } while (0)
    INT_FIELD("hidden_size", hidden_size, 1, 1 << 16);
    INT_FIELD("num_hidden_layers", num_hidden_layers, 2, MR_MAX_LAYERS);
    INT_FIELD("num_attention_heads", num_attention_heads, 1, 1024);
    INT_FIELD("num_key_value_heads", num_key_value_heads, 1, 1024);
    INT_FIELD("head_dim", head_dim, 2, 1024);
    INT_FIELD("vocab_size", vocab_size, 2, 1 << 24);
    INT_FIELD("intermediate_size", intermediate_size, 1, 1 << 18);
    INT_FIELD("num_local_experts", num_local_experts, 1, 1024);
    INT_FIELD("num_experts_per_tok", num_experts_per_tok, 1, 64);
#undef INT_FIELD
    if (get_int(origin, root, "rotary_dim", 0, 0, 1024, c->head_dim, &v)) return -1;
    c->rotary_dim = (int)v;
    if (get_int(origin, root, "block_size", 0, 1, 4096, 256, &v)) return -1;
    c->block_size = (int)v;
    if (get_int(origin, root, "max_position_embeddings", 0, 1, 1ll << 40, 1 << 20, &v)) return -1;
    c->max_position_embeddings = v;
    if (get_int(origin, root, "eos_token_id", 0, 0, c->vocab_size - 1, -1, &v)) return -1;
    c->eos_token_id = (int)v;
    if (get_int(origin, root, "bos_token_id", 0, 0, c->vocab_size - 1, -1, &v)) return -1;
    c->bos_token_id = (int)v;
    if (get_int(origin, root, "shared_intermediate_size", 0, 0, 1 << 20, 0, &v)) return -1;
    if (v != 0)
        return bad(origin, "shared_intermediate_size",
                   "shared experts are not supported (must be 0)");

    rc |= get_num(origin, root, "rope_theta", 0, 1.0, 1e12, 10000.0, &c->rope_theta);
    rc |= get_num(origin, root, "rms_norm_eps", 1, 1e-12, 1e-1, 0, &c->rms_norm_eps);
    rc |= get_num(origin, root, "layernorm_full_attention_alpha", 1, -1e6, 1e6, 0, &c->alpha_full);
    rc |= get_num(origin, root, "layernorm_full_attention_beta", 1, -1e6, 1e6, 0, &c->beta_full);
    rc |= get_num(origin, root, "layernorm_linear_attention_alpha", 1, -1e6, 1e6, 0,
                  &c->alpha_linear);
    rc |=
        get_num(origin, root, "layernorm_linear_attention_beta", 1, -1e6, 1e6, 0, &c->beta_linear);
    rc |= get_num(origin, root, "layernorm_mlp_alpha", 1, -1e6, 1e6, 0, &c->alpha_mlp);
    rc |= get_num(origin, root, "layernorm_mlp_beta", 1, -1e6, 1e6, 0, &c->beta_mlp);
    rc |= get_bool(origin, root, "postnorm", 0, &c->postnorm);
    rc |= get_bool(origin, root, "tie_word_embeddings", 0, &c->tie_word_embeddings);
    if (rc) return -1;
    c->lightning_norm_eps = 1e-6;

    json_t *mt = json_object_get(root, "model_type");
    if (mt && !json_is_string(mt)) return bad(origin, "model_type", "must be a string");
    snprintf(c->model_type, sizeof c->model_type, "%s", mt ? json_string_value(mt) : "minimax_m1");
    json_t *act = json_object_get(root, "hidden_act");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu") != 0))
        return bad(origin, "hidden_act", "only \"silu\" is supported");
    json_t *sw = json_object_get(root, "sliding_window");
    if (sw && !json_is_null(sw)) return bad(origin, "sliding_window", "must be null");

    json_t *types = json_object_get(root, "attn_type_list");
    if (!types) return bad(origin, "attn_type_list", "is missing");
    if (!json_is_array(types)) return bad(origin, "attn_type_list", "must be an array");
    if ((int)json_array_size(types) != c->num_hidden_layers) {
        MR_LOG_ERROR(MR_LOG_CONF,
                     "%s: key 'attn_type_list' has %zu entries but num_hidden_layers is %d", origin,
                     json_array_size(types), c->num_hidden_layers);
        return -1;
    }
    for (int l = 0; l < c->num_hidden_layers; l++) {
        json_t *t = json_array_get(types, (size_t)l);
        if (!json_is_integer(t) || (json_integer_value(t) != 0 && json_integer_value(t) != 1)) {
            MR_LOG_ERROR(MR_LOG_CONF,
                         "%s: key 'attn_type_list'[%d] must be 0 (lightning) or 1 (softmax)",
                         origin, l);
            return -1;
        }
        c->attn_type[l] = (unsigned char)json_integer_value(t);
    }

    /* Relations between fields. */
    int h = c->num_attention_heads;
    if (h & (h - 1))
        return bad(origin, "num_attention_heads",
                   "must be a power of two (the lightning decay ladder is defined for those)");
    if (h % c->num_key_value_heads)
        return bad(origin, "num_key_value_heads", "must divide num_attention_heads");
    if (c->rotary_dim > c->head_dim || c->rotary_dim % 2)
        return bad(origin, "rotary_dim", "must be even and at most head_dim");
    if (c->num_experts_per_tok > c->num_local_experts)
        return bad(origin, "num_experts_per_tok", "must not exceed num_local_experts");
    if (c->hidden_size % 2) return bad(origin, "hidden_size", "must be even");
    return 0;
}

mr_status mr_model_config_parse(const char *origin, const char *json, size_t len,
                                mr_model_config *out) {
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        MR_LOG_ERROR(MR_LOG_CONF, "%s:%d: invalid JSON: %s", origin, jerr.line, jerr.text);
        return MR_ERR_FORMAT;
    }
    mr_model_config c;
    memset(&c, 0, sizeof c);
    int rc;
    if (!json_is_object(root)) {
        MR_LOG_ERROR(MR_LOG_CONF, "%s: not a JSON object", origin);
        rc = -1;
    } else {
        rc = parse_fields(origin, root, &c);
    }
    json_decref(root);
    if (rc) return MR_ERR_INVALID;
    *out = c;
    return MR_OK;
}

mr_status mr_model_config_load(const char *path, mr_model_config *out) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        MR_LOG_ERROR(MR_LOG_CONF, "%s: cannot open model config", path);
        return MR_ERR_NOT_FOUND;
    }
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, fp);
    int too_big = !feof(fp);
    fclose(fp);
    if (too_big) {
        MR_LOG_ERROR(MR_LOG_CONF, "%s: larger than %zu bytes; not a model config", path,
                     sizeof buf);
        return MR_ERR_FORMAT;
    }
    return mr_model_config_parse(path, buf, n, out);
}

mr_status mr_model_config_save(const mr_model_config *c, const char *path) {
    json_t *types = json_array();
    for (int l = 0; l < c->num_hidden_layers; l++)
        json_array_append_new(types, json_integer(c->attn_type[l]));
    json_t *root = json_object();
    json_object_set_new(root, "architectures", json_pack("[s]", "MiniMaxM1ForCausalLM"));
    json_object_set_new(root, "attention_dropout", json_real(0.0));
    json_object_set_new(root, "attn_type_list", types);
    json_object_set_new(root, "bos_token_id",
                        c->bos_token_id < 0 ? json_null() : json_integer(c->bos_token_id));
    json_object_set_new(root, "eos_token_id",
                        c->eos_token_id < 0 ? json_null() : json_integer(c->eos_token_id));
    json_object_set_new(root, "head_dim", json_integer(c->head_dim));
    json_object_set_new(root, "hidden_act", json_string("silu"));
    json_object_set_new(root, "hidden_size", json_integer(c->hidden_size));
    json_object_set_new(root, "initializer_range", json_real(0.02));
    json_object_set_new(root, "intermediate_size", json_integer(c->intermediate_size));
    json_object_set_new(root, "layernorm_full_attention_alpha", json_real(c->alpha_full));
    json_object_set_new(root, "layernorm_full_attention_beta", json_real(c->beta_full));
    json_object_set_new(root, "layernorm_linear_attention_alpha", json_real(c->alpha_linear));
    json_object_set_new(root, "layernorm_linear_attention_beta", json_real(c->beta_linear));
    json_object_set_new(root, "layernorm_mlp_alpha", json_real(c->alpha_mlp));
    json_object_set_new(root, "layernorm_mlp_beta", json_real(c->beta_mlp));
    json_object_set_new(root, "max_position_embeddings", json_integer(c->max_position_embeddings));
    json_object_set_new(root, "model_type", json_string(c->model_type));
    json_object_set_new(root, "num_attention_heads", json_integer(c->num_attention_heads));
    json_object_set_new(root, "num_experts_per_tok", json_integer(c->num_experts_per_tok));
    json_object_set_new(root, "num_hidden_layers", json_integer(c->num_hidden_layers));
    json_object_set_new(root, "num_key_value_heads", json_integer(c->num_key_value_heads));
    json_object_set_new(root, "num_local_experts", json_integer(c->num_local_experts));
    json_object_set_new(root, "output_router_logits", json_false());
    json_object_set_new(root, "postnorm", json_boolean(c->postnorm));
    json_object_set_new(root, "rms_norm_eps", json_real(c->rms_norm_eps));
    json_object_set_new(root, "rope_theta", json_real(c->rope_theta));
    json_object_set_new(root, "rotary_dim", json_integer(c->rotary_dim));
    json_object_set_new(root, "router_aux_loss_coef", json_real(0.001));
    json_object_set_new(root, "router_jitter_noise", json_real(0.0));
    json_object_set_new(root, "shared_intermediate_size", json_integer(0));
    json_object_set_new(root, "shared_moe_mode", json_string("sigmoid"));
    json_object_set_new(root, "sliding_window", json_null());
    json_object_set_new(root, "tie_word_embeddings", json_boolean(c->tie_word_embeddings));
    json_object_set_new(root, "use_cache", json_true());
    json_object_set_new(root, "vocab_size", json_integer(c->vocab_size));
    int rc = json_dump_file(root, path, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
    json_decref(root);
    if (rc) {
        MR_LOG_ERROR(MR_LOG_CONF, "%s: cannot write model config", path);
        return MR_ERR_IO;
    }
    return MR_OK;
}

int mr_model_config_n_lightning(const mr_model_config *c) {
    int n = 0;
    for (int l = 0; l < c->num_hidden_layers; l++) n += c->attn_type[l] == MR_ATTN_LIGHTNING;
    return n;
}

int mr_model_config_n_softmax(const mr_model_config *c) {
    return c->num_hidden_layers - mr_model_config_n_lightning(c);
}

int mr_model_config_type_index(const mr_model_config *c, int layer) {
    int n = 0;
    for (int l = 0; l < layer; l++) n += c->attn_type[l] == c->attn_type[layer];
    return n;
}
