#include "cli/gen_tiny.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/check.h"
#include "common/log.h"
#include "common/model_layout.h"
#include "common/synthetic.h"
#include "common/safetensors.h"

static const mr_tiny_preset presets[] = {
    {"tiny", "8 layers (7 lightning + 1 softmax), hidden 64, 4 heads x 32, 4 experts, vocab 512",
     512, 64, 8, 4, 32, 2, 16, 1e7, 4, 2, 96, 4},
    {"small", "16 layers (2 softmax), hidden 96, 8 heads x 16, 8 experts, vocab 1024, theta 1e4",
     1024, 96, 16, 8, 16, 2, 8, 1e4, 8, 2, 64, 6},
    {"demo", "8 layers, hidden 128, 8 heads x 32, 8 experts, the real vocabulary (200064)", 200064,
     128, 8, 8, 32, 2, 16, 1e7, 8, 2, 256, 5},
    {"bench", "16 layers, hidden 1024, 16 heads x 96, 8 experts x 1536, vocab 32000 (~1.5 GB)",
     32000, 1024, 16, 16, 96, 4, 48, 1e7, 8, 2, 1536, 8},
};

const mr_tiny_preset *mr_tiny_preset_find(const char *name) {
    for (size_t i = 0; i < MR_ARRAY_LEN(presets); i++)
        if (strcmp(presets[i].name, name) == 0) return &presets[i];
    return NULL;
}

void mr_tiny_preset_list(FILE *out) {
    for (size_t i = 0; i < MR_ARRAY_LEN(presets); i++)
        fprintf(out, "  %-6s %s\n", presets[i].name, presets[i].doc);
}

void mr_tiny_preset_config(const mr_tiny_preset *p, mr_model_config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->model_type, sizeof c->model_type, "minimax_m1");
    c->hidden_size = p->hidden;
    c->num_hidden_layers = p->layers;
    c->num_attention_heads = p->heads;
    c->num_key_value_heads = p->kv_heads;
    c->head_dim = p->head_dim;
    c->rotary_dim = p->rotary_dim;
    c->rope_theta = p->rope_theta;
    c->vocab_size = p->vocab;
    c->intermediate_size = p->inter;
    c->num_local_experts = p->experts;
    c->num_experts_per_tok = p->top_k;
    for (int l = 0; l < p->layers; l++)
        c->attn_type[l] = (l % 8 == 7) ? MR_ATTN_SOFTMAX : MR_ATTN_LIGHTNING;
    /* DeepNet-style alpha = (2L)^(1/4), as the release's 3.5566 = 160^(1/4) */
    double alpha = pow(2.0 * p->layers, 0.25);
    c->alpha_full = c->alpha_linear = c->alpha_mlp = alpha;
    c->beta_full = c->beta_linear = c->beta_mlp = 1.0;
    c->rms_norm_eps = 1e-5;
    c->lightning_norm_eps = 1e-6;
    c->postnorm = 1;
    c->block_size = 256;
    c->max_position_embeddings = 10240000;
    c->eos_token_id = c->bos_token_id = -1;
}

typedef struct fill_ctx {
    const mr_tensor_spec *spec;
    const mr_model_config *cfg;
    uint64_t seed;
} fill_ctx;

static mr_status fill_tensor(void *user, const char *name, void *dst, size_t nbytes) {
    const fill_ctx *f = user;
    (void)name; /* f->spec->name */
    mr_synth_fill_range(f->spec, f->cfg, f->seed, 0, nbytes / mr_dtype_size(f->spec->dtype), dst,
                        f->spec->dtype);
    return MR_OK;
}

/* Shard of a tensor: 0 for the embeddings, the last shard for the final norm and lm_head, and
 * layers spread in order over shards 1..S-1. */
static int shard_of(const mr_tensor_spec *s, int layers, int shards) {
    if (s->part == MR_PART_EMBED) return 0;
    if (s->layer < 0) return shards - 1;
    return 1 + (int)((int64_t)s->layer * (shards - 1) / layers);
}

mr_status mr_gen_tiny(const char *out_dir, const mr_tiny_preset *p, uint64_t seed) {
    mr_model_config cfg;
    mr_tiny_preset_config(p, &cfg);
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
        MR_LOG_ERROR(MR_LOG_CLI, "%s: cannot create directory: %s", out_dir, strerror(errno));
        return MR_ERR_IO;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", out_dir);
    MR_CHECK(mr_model_config_save(&cfg, path));

    int n = mr_layout_count(&cfg);
    mr_tensor_spec *specs = malloc((size_t)n * sizeof *specs);
    mr_st_write_item *items = malloc((size_t)n * sizeof *items);
    fill_ctx *ctx = malloc((size_t)n * sizeof *ctx);
    json_t *wm = json_object();
    mr_status st = MR_OK;
    if (!specs || !items || !ctx || !wm) {
        st = MR_ERR_NOMEM;
        goto out;
    }
    mr_layout_build(&cfg, specs);
    uint64_t total = 0;
    for (int shard = 0; shard < p->shards; shard++) {
        char fname[64];
        snprintf(fname, sizeof fname, "model-%05d-of-%05d.safetensors", shard, p->shards);
        int k = 0;
        for (int i = 0; i < n; i++) {
            if (shard_of(&specs[i], p->layers, p->shards) != shard) continue;
            ctx[k] = (fill_ctx){&specs[i], &cfg, seed};
            items[k] = (mr_st_write_item){.name = specs[i].name,
                                          .dtype = specs[i].dtype,
                                          .ndim = specs[i].ndim,
                                          .fill = fill_tensor,
                                          .user = &ctx[k]};
            memcpy(items[k].shape, specs[i].shape, sizeof specs[i].shape);
            json_object_set_new(wm, specs[i].name, json_string(fname));
            total += mr_tensor_spec_bytes(&specs[i]);
            k++;
        }
        snprintf(path, sizeof path, "%s/%s", out_dir, fname);
        const char *md[] = {"format", "pt"};
        MR_CHECK_GOTO(mr_st_write(path, items, k, md, 1), out);
    }
    json_t *index =
        json_pack("{s:{s:I},s:o}", "metadata", "total_size", (json_int_t)total, "weight_map", wm);
    wm = NULL;
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", out_dir);
    if (json_dump_file(index, path, JSON_INDENT(4) | JSON_PRESERVE_ORDER) != 0) {
        MR_LOG_ERROR(MR_LOG_CLI, "%s: cannot write index", path);
        st = MR_ERR_IO;
    }
    json_decref(index);
out:
    json_decref(wm);
    free(specs);
    free(items);
    free(ctx);
    return st;
}
