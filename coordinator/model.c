#include "coordinator/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/arena.h"
#include "common/check.h"
#include "common/log.h"
#include "coordinator/model_mem.h"
#include "coordinator/step_prof.h"
#include "worker/expert_store.h"

/* Weights of one decoder layer. Matrices keep the checkpoint's bf16 (else f32); vectors are f32. */
typedef struct layer_weights {
    mr_attn_type type;
    int stage;      /* the stage (backend) that runs this layer */
    int type_index; /* index among layers of the same type (state / KV slot) */
    float alpha_attn, beta_attn;
    float *input_norm, *post_norm;     /* [hidden] */
    mr_matrix qkv, out_gate, out_proj; /* lightning: [3·inner][H], [inner][H], [H][inner] */
    float *attn_norm;                  /* lightning: [inner] */
    float *slope;                      /* lightning: [heads] s_{l,j} */
    mr_matrix q, k, v, o;              /* softmax: [inner][H], [kv][H], [kv][H], [H][inner] */
    mr_matrix router;                  /* [experts][H] f32 */
} layer_weights;

/* Arguments of a local expert call between dispatch and combine. */
typedef struct local_call {
    const float *x;
    const int32_t *ids;
    const float *wts;
    int n, k;
} local_call;

struct mr_model {
    mr_model_config cfg;
    mr_model_params params;
    mr_backend *be; /* stage 0's backend (the embedding's) */
    mr_stage_plan plan;
    mr_backend *stage_be[MR_MAX_STAGES]; /* [plan.n_stages] one backend per stage */
    mr_state_pool *states;
    unsigned char *weight_mem;
    size_t weight_bytes;
    mr_matrix embed, lm_head;
    float *final_norm;
    float *inv_freq; /* [rotary_dim / 2] */
    layer_weights *layers;
    mr_expert_store *experts; /* NULL when experts are remote */
    mr_moe_provider moe;
    local_call local_calls[MR_MAX_MICRO_BATCHES];
    /* Per-step scratch: activations in model memory, one arena per stage in its backend's memory
     * (device memory for a device-resident backend: model_mem.h), and host-side arrays (token
     * ids, segments, routing, state and table pointers) in host memory, shared by the stages. */
    void *act_mem[MR_MAX_STAGES];
    mr_arena act[MR_MAX_STAGES], ws;
    /* Device-resident backend with a provider other than the local experts (cluster mode): the
     * experts' inputs and outputs pass through these host buffers, [max_batch_tokens][hidden]. */
    float *moe_x_host, *moe_y_host;
    /* The last step's logits when left in model memory (mr_model_step with logits NULL):
     * [n_logit_rows][vocab] in the activation arena, valid until the next step. */
    const float *dev_logits;
    int n_logit_rows;
    mr_backend *logits_be; /* the last stage: where dev_logits live */
    mr_step_prof prof;     /* the current step's phases (debug log only) */
};

void mr_model_params_default(mr_model_params *p) {
    memset(p, 0, sizeof *p);
    p->backend = "cpu";
    p->max_batch_tokens = 512;
    p->max_seqs = 4;
    p->max_context = 4096;
    p->kv_block_tokens = 16;
    p->load_experts = 1;
    p->micro_batches = 1;
    p->n_stages = 1;
}

/* ---- weights --------------------------------------------------------------------------------- */

typedef struct weight_loader {
    mr_ckpt *ck;
    unsigned char *mem; /* NULL in the sizing pass */
    size_t off;
    /* sizing pass: bytes per layer [L], of the embedding (first stage) and of the final norm and
     * LM head (last stage); NULL layer_bytes: not counted */
    size_t *layer_bytes, head, tail;
} weight_loader;

/* Reserves (pass 1) or loads (pass 2) one tensor. Matrices keep bf16, else become f32;
 * vectors and routers are always f32. */
static mr_status load_tensor(weight_loader *wl, const mr_tensor_spec *spec, int force_f32,
                             mr_matrix *mat, float **vec) {
    mr_dtype stored;
    MR_CHECK(mr_ckpt_stored_dtype(wl->ck, spec->name, &stored));
    mr_dtype dt = (!force_f32 && !vec && stored == MR_DTYPE_BF16) ? MR_DTYPE_BF16 : MR_DTYPE_F32;
    size_t bytes =
        (size_t)(mr_tensor_spec_bytes(spec) / mr_dtype_size(spec->dtype)) * mr_dtype_size(dt);
    if (wl->mem) {
        void *dst = wl->mem + wl->off;
        MR_CHECK(mr_ckpt_load(wl->ck, spec, dst, dt));
        if (mat) *mat = (mr_matrix){dst, dt, (int)spec->shape[0], (int)spec->shape[1]};
        if (vec) *vec = dst;
    }
    wl->off += (bytes + 63) & ~(size_t)63;
    return MR_OK;
}

static mr_status load_weights(mr_model *m, weight_loader *wl, const mr_tensor_spec *specs, int n) {
    for (int i = 0; i < n; i++) {
        const mr_tensor_spec *s = &specs[i];
        layer_weights *L = s->layer >= 0 ? &m->layers[s->layer] : NULL;
        const char *leaf = L ? strchr(s->name + strlen("model.layers."), '.') + 1 : s->name;
        mr_matrix *mat = NULL;
        float **vec = NULL;
        int f32 = 0;
        switch (s->part) {
        case MR_PART_EXPERT:
            continue; /* held by the expert store or by workers */
        case MR_PART_EMBED:
            mat = &m->embed;
            break;
        case MR_PART_LM_HEAD:
            mat = &m->lm_head;
            break;
        case MR_PART_ROUTER:
            mat = &L->router;
            f32 = 1;
            break;
        case MR_PART_NORM:
            vec = !L                               ? &m->final_norm
                  : strncmp(leaf, "input", 5) == 0 ? &L->input_norm
                                                   : &L->post_norm;
            break;
        case MR_PART_ATTN:
            if (strcmp(leaf, "self_attn.norm.weight") == 0)
                vec = &L->attn_norm;
            else if (strcmp(leaf, "self_attn.qkv_proj.weight") == 0)
                mat = &L->qkv;
            else if (strcmp(leaf, "self_attn.output_gate.weight") == 0)
                mat = &L->out_gate;
            else if (strcmp(leaf, "self_attn.out_proj.weight") == 0)
                mat = &L->out_proj;
            else if (strcmp(leaf, "self_attn.q_proj.weight") == 0)
                mat = &L->q;
            else if (strcmp(leaf, "self_attn.k_proj.weight") == 0)
                mat = &L->k;
            else if (strcmp(leaf, "self_attn.v_proj.weight") == 0)
                mat = &L->v;
            else
                mat = &L->o;
            break;
        default:
            return MR_ERR_INTERNAL;
        }
        const size_t before = wl->off;
        MR_CHECK(load_tensor(wl, s, f32, mat, vec));
        if (wl->layer_bytes) {
            size_t *acct =
                L ? &wl->layer_bytes[s->layer] : (s->part == MR_PART_EMBED ? &wl->head : &wl->tail);
            *acct += wl->off - before;
        }
    }
    if (m->cfg.tie_word_embeddings) {
        m->lm_head = m->embed;
        wl->tail += wl->head; /* the last stage uploads its own copy */
    }
    return MR_OK;
}

/* Decay slopes of spec §3.3.2: s_j = start^(j+1) with start = 2^(-2^(-(log2 H - 3))), computed in
 * double and rounded to f32, times the layer factor (1 - l/(L-1) + 1e-5) in f32. */
static void compute_slopes(const mr_model_config *c, int layer, float *slope) {
    const int H = c->num_attention_heads;
    double start = pow(2.0, -pow(2.0, -(log2((double)H) - 3.0)));
    float factor = (float)(1.0 - (double)layer / (double)(c->num_hidden_layers - 1) + 1e-5);
    for (int j = 0; j < H; j++) slope[j] = (float)pow(start, (double)(j + 1)) * factor;
}

/* ---- creation -------------------------------------------------------------------------------- */

static size_t workspace_bytes(const mr_model_config *c, int T, int max_seqs);
static size_t activation_bytes(const mr_model_config *c, int T, int max_seqs, int on_device,
                               int with_head);

/* Prints what this process will allocate, before it allocates any of it, and refuses a plan
 * larger than the machine's physical memory (which overcommit would otherwise turn into an OOM
 * kill in the middle of loading). With a device-resident backend, states, KV cache and
 * activations are device memory: printed, but not counted against the host. */
static mr_status memory_plan(const mr_model_config *c, const mr_model_params *p, size_t weights,
                             int64_t kv_blocks, const mr_backend *backend, int experts_on_host) {
    const int on_device = mr_mem_on_device(backend);
    size_t experts = p->load_experts ? (size_t)c->num_hidden_layers * c->num_local_experts * 3 *
                                           (size_t)c->hidden_size * c->intermediate_size * 2
                                     : 0;
    size_t states = (size_t)p->max_seqs * mr_model_config_n_lightning(c) * c->num_attention_heads *
                    c->head_dim * c->head_dim * sizeof(float);
    size_t kv = (size_t)kv_blocks * p->kv_block_tokens * c->num_key_value_heads * c->head_dim *
                mr_mem_kv_elem_size(backend) * 2 * mr_model_config_n_softmax(c);
    size_t act = activation_bytes(c, p->max_batch_tokens, p->max_seqs, on_device, 1);
    size_t ws = workspace_bytes(c, p->max_batch_tokens, p->max_seqs) + act;
    size_t total = weights + experts + states + kv + ws;
    size_t host_total = on_device ? total - states - kv - act : total;
    if (!experts_on_host) host_total -= experts; /* synthetic, generated on the device */
    char bw[16], be[16], bs[16], bk[16], bws[16], bt[16];
    MR_LOG_INFO(MR_LOG_MODEL,
                "memory plan: non-expert weights %s, experts %s, lightning states %s (%d sequences "
                "x %d layers), KV cache %s (%lld blocks of %d tokens x %d layers), workspace %s "
                "(%d tokens per step): total %s%s",
                mr_human_bytes(weights, bw), mr_human_bytes(experts, be),
                mr_human_bytes(states, bs), p->max_seqs, mr_model_config_n_lightning(c),
                mr_human_bytes(kv, bk), (long long)kv_blocks, p->kv_block_tokens,
                mr_model_config_n_softmax(c), mr_human_bytes(ws, bws), p->max_batch_tokens,
                mr_human_bytes(total, bt),
                on_device ? " (states, KV cache and activations on the device)" : "");
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0 && (double)host_total > (double)pages * (double)page) {
        char have[16];
        MR_LOG_ERROR(MR_LOG_MODEL,
                     "memory plan: %s needed but this machine has %s; lower max_seqs, "
                     "max_context or max_batch_tokens, or hold the experts on workers",
                     mr_human_bytes(host_total, bt),
                     mr_human_bytes((size_t)pages * (size_t)page, have));
        return MR_ERR_FULL;
    }
    return MR_OK;
}

/* Host scratch of a step (model_mem.h: always host memory). */
static size_t workspace_bytes(const mr_model_config *c, int T, int max_seqs) {
    const size_t k = (size_t)c->num_experts_per_tok;
    size_t floats = (size_t)T * k; /* wts */
    size_t other = (size_t)T * k * sizeof(int32_t) + (size_t)T * sizeof(int32_t) +
                   (size_t)(max_seqs + 1) * (sizeof(mr_segment) + 3 * sizeof(void *));
    return floats * sizeof(float) + other + 64 * 16;
}

/* Activations of a step in one stage (model memory); with_head (the last stage): plus the rows
 * of the LM head and the logits rows a device-resident backend writes before they go to the
 * host. alloc_buffers takes exactly these. */
static size_t activation_bytes(const mr_model_config *c, int T, int max_seqs, int on_device,
                               int with_head) {
    const size_t H = (size_t)c->hidden_size, inner = (size_t)c->num_attention_heads * c->head_dim;
    size_t floats = 3 * (size_t)T * H       /* x, h, y */
                    + (size_t)T * 3 * inner /* qkv or q|k|v */
                    + 2 * (size_t)T * inner /* gate, o */
                    + (size_t)max_seqs * H; /* rows for the LM head */
    if (with_head && on_device) floats += (size_t)max_seqs * (size_t)c->vocab_size;
    return floats * sizeof(float) + 64 * 16;
}

static size_t matrix_bytes(const mr_matrix *w) {
    return w->data ? (size_t)w->rows * w->cols * mr_dtype_size(w->dtype) : 0;
}

/* Bytes of one expert, whether its weights are here or generated elsewhere (synthetic). */
static size_t expert_bytes(const mr_expert *e) {
    const mr_matrix *w[3] = {&e->w1, &e->w3, &e->w2};
    size_t b = 0;
    for (int i = 0; i < 3; i++) b += (size_t)w[i]->rows * w[i]->cols * mr_dtype_size(w[i]->dtype);
    return b;
}

/* The experts held in this process: dispatch records the arguments, combine computes. */
static mr_status local_dispatch(void *ctx, int layer, int mb, const float *x, int n, int k,
                                const int32_t *ids, const float *wts) {
    mr_model *m = ctx;
    (void)layer;
    m->local_calls[mb] = (local_call){x, ids, wts, n, k};
    return MR_OK;
}

/* out: model memory (device memory with a device-resident backend; its moe op takes device
 * x and out, host ids and wts). */
static mr_status local_combine(void *ctx, int layer, int mb, float *out) {
    mr_model *m = ctx;
    const local_call *c = &m->local_calls[mb];
    mr_backend *be = m->stage_be[m->layers[layer].stage];
    be->ops->moe(be, mr_expert_store_layer(m->experts, layer), c->x, c->n, c->k, c->ids, c->wts,
                 out);
    return MR_OK;
}

/* ---- stages ---------------------------------------------------------------------------------- */

/* One backend per stage, stage s on device params.stage_devices[s]. More than one stage needs
 * backends whose memory the model can copy between: device-resident ones with copy_from (each
 * op on its own device), or the host backends (memcpy). */
static mr_status create_stage_backends(mr_model *m, mr_backend_params *bp) {
    const mr_model_params *p = &m->params;
    const int S = p->n_stages, L = m->cfg.num_hidden_layers;
    if (S < 1 || S > MR_MAX_STAGES || S > L) {
        MR_LOG_ERROR(MR_LOG_MODEL, "model: %d stages (GPUs) for %d layers: need 1 to %d", S, L,
                     L < MR_MAX_STAGES ? L : MR_MAX_STAGES);
        return MR_ERR_INVALID;
    }
    for (int s = 0; s < S; s++) {
        bp->device = p->stage_devices[s];
        MR_CHECK(mr_backend_create(p->backend, bp, &m->stage_be[s]));
    }
    m->be = m->stage_be[0];
    const mr_backend_ops *ops = m->be->ops;
    const int host = strcmp(ops->name, "ref") == 0 || strcmp(ops->name, "cpu") == 0;
    if (S > 1 && !host && !(ops->device_resident && ops->copy_from)) {
        MR_LOG_ERROR(MR_LOG_MODEL,
                     "model: backend %s runs on one GPU; layers split over %d GPUs need backend "
                     "cuda-gpu",
                     ops->name, S);
        return MR_ERR_UNSUPPORTED;
    }
    return MR_OK;
}

/* Splits the layers into the stages by the device bytes each needs (its weights, its local
 * experts, its states or KV cache; the embedding on the first stage, final norm and LM head on
 * the last), prints the plan and refuses one that does not fit a GPU's free memory. */
static mr_status plan_stages(mr_model *m, size_t *layer_bytes, size_t head, size_t tail,
                             int64_t kv_blocks) {
    const mr_model_config *c = &m->cfg;
    const mr_model_params *p = &m->params;
    const int L = c->num_hidden_layers, S = p->n_stages, on_device = mr_mem_on_device(m->be);
    const size_t expert = (size_t)c->num_local_experts * 3 * (size_t)c->hidden_size *
                          (size_t)c->intermediate_size * 2; /* bf16 */
    const size_t state =
        (size_t)p->max_seqs * c->num_attention_heads * c->head_dim * c->head_dim * sizeof(float);
    const size_t kv = 2 * (size_t)kv_blocks * p->kv_block_tokens * c->num_key_value_heads *
                      c->head_dim * mr_mem_kv_elem_size(m->be);
    for (int l = 0; l < L; l++)
        layer_bytes[l] +=
            (p->load_experts ? expert : 0) + (c->attn_type[l] == MR_ATTN_LIGHTNING ? state : kv);
    MR_CHECK(mr_stage_plan_make(layer_bytes, L, head, tail, S, &m->plan));
    for (int l = 0; l < L; l++) m->layers[l].stage = mr_stage_plan_stage_of(&m->plan, l);
    mr_status st = MR_OK;
    for (int s = 0; s < S; s++) {
        mr_backend *be = m->stage_be[s];
        const size_t act =
            activation_bytes(c, p->max_batch_tokens, p->max_seqs, on_device, s == S - 1);
        const size_t need = m->plan.bytes[s] + act;
        size_t free_b = 0, total_b = 0;
        const int known = be->ops->mem_info && be->ops->mem_info(be, &free_b, &total_b) == MR_OK;
        char bn[16], bf[16], bt[16], has[160] = "";
        if (known)
            snprintf(has, sizeof has, "; the GPU has %s free of %s", mr_human_bytes(free_b, bf),
                     mr_human_bytes(total_b, bt));
        MR_LOG_INFO(MR_LOG_MODEL,
                    "stage %d of %d: %s %d, layers %d-%d (%d)%s%s: %s (weights, experts, states "
                    "and KV cache of its layers, activations)%s",
                    s, S, known ? "GPU" : "device", p->stage_devices[s], m->plan.first_layer[s],
                    m->plan.first_layer[s + 1] - 1,
                    m->plan.first_layer[s + 1] - m->plan.first_layer[s],
                    s == 0 ? " + embedding" : "", s == S - 1 ? " + final norm and LM head" : "",
                    mr_human_bytes(need, bn), has);
        /* the backend's own scratch (cuBLAS, attention workspaces) is already allocated: free
         * memory is what is left for the model */
        if (known && need > free_b) {
            MR_LOG_ERROR(MR_LOG_MODEL,
                         "stage %d (GPU %d, layers %d-%d) needs %s but the GPU has %s free; add "
                         "GPUs (coordinator.gpus / --gpus), hold the experts on workers, or lower "
                         "max_seqs, max_context or max_batch_tokens",
                         s, p->stage_devices[s], m->plan.first_layer[s],
                         m->plan.first_layer[s + 1] - 1, mr_human_bytes(need, bn),
                         mr_human_bytes(free_b, bf));
            st = MR_ERR_FULL;
        }
    }
    return st;
}

/* The residual stream rows [base, base + n) move from stage `from` to stage `to` (the next layer's;
 * see the step: x is the only activation live across a layer boundary). */
static mr_status stage_transfer(mr_model *m, int from, int to, const float *src, float *dst,
                                size_t floats) {
    return mr_mem_copy_across(m->stage_be[to], dst, m->stage_be[from], src, floats * sizeof(float));
}

void mr_model_destroy(mr_model *m) {
    if (!m) return;
    mr_expert_store_free(m->experts);
    mr_state_pool_destroy(m->states); /* model memory goes back before its backend */
    for (int s = 0; s < MR_MAX_STAGES; s++) mr_mem_free(m->stage_be[s], m->act_mem[s]);
    mr_mem_free_staging(m->be, m->moe_x_host);
    mr_mem_free_staging(m->be, m->moe_y_host);
    for (int s = 0; s < MR_MAX_STAGES; s++) mr_backend_destroy(m->stage_be[s]);
    mr_arena_fini(&m->ws);
    mr_free_aligned(m->weight_mem);
    if (m->layers)
        for (int l = 0; l < m->cfg.num_hidden_layers; l++) free(m->layers[l].slope);
    free(m->layers);
    free(m->inv_freq);
    free(m);
}

mr_status mr_model_create(mr_ckpt *ck, const mr_model_params *p, mr_model **out) {
    const mr_model_config *c = mr_ckpt_config(ck);
    if (p->max_batch_tokens < 1 || p->max_seqs < 1 || p->max_context < 1 ||
        p->kv_block_tokens < 1) {
        MR_LOG_ERROR(MR_LOG_MODEL,
                     "model: batch tokens, sequences, context and KV block size must be >= 1");
        return MR_ERR_INVALID;
    }
    mr_model *m = calloc(1, sizeof *m);
    if (!m) return MR_ERR_NOMEM;
    mr_status st = MR_ERR_NOMEM;
    mr_tensor_spec *specs = NULL;
    size_t *layer_bytes = NULL;
    m->cfg = *c;
    m->params = *p;
    const int L = c->num_hidden_layers;
    if (!(m->layers = calloc((size_t)L, sizeof *m->layers)) ||
        !(m->inv_freq = malloc((size_t)(c->rotary_dim / 2 + 1) * sizeof(float))))
        goto err;
    for (int i = 0; i < c->rotary_dim / 2; i++)
        m->inv_freq[i] = (float)(1.0 / pow(c->rope_theta, 2.0 * i / (double)c->rotary_dim));
    for (int l = 0; l < L; l++) {
        layer_weights *lw = &m->layers[l];
        lw->type = (mr_attn_type)c->attn_type[l];
        lw->type_index = mr_model_config_type_index(c, l);
        lw->alpha_attn = (float)(lw->type == MR_ATTN_LIGHTNING ? c->alpha_linear : c->alpha_full);
        lw->beta_attn = (float)(lw->type == MR_ATTN_LIGHTNING ? c->beta_linear : c->beta_full);
        if (!(lw->slope = malloc((size_t)c->num_attention_heads * sizeof(float)))) goto err;
        compute_slopes(c, l, lw->slope);
    }

    int n = mr_layout_count(c);
    if (!(specs = malloc((size_t)n * sizeof *specs))) goto err;
    mr_layout_build(c, specs);
    if (!(layer_bytes = calloc((size_t)L, sizeof *layer_bytes))) goto err;
    weight_loader wl = {ck, NULL, 0, layer_bytes, 0, 0};
    MR_CHECK_GOTO(load_weights(m, &wl, specs, n), err);
    m->weight_bytes = wl.off;
    int64_t blocks = p->kv_blocks > 0
                         ? p->kv_blocks
                         : (int64_t)p->max_seqs *
                               ((p->max_context + p->kv_block_tokens - 1) / p->kv_block_tokens);
    if (blocks > INT32_MAX) {
        MR_LOG_ERROR(MR_LOG_MODEL, "KV cache of %lld blocks is too large", (long long)blocks);
        st = MR_ERR_INVALID;
        goto err;
    }
    if (blocks * p->kv_block_tokens < m->params.max_context) {
        /* a sequence promises its whole length at open (seq_state.h): a longer one never opens */
        m->params.max_context = blocks * p->kv_block_tokens;
        MR_LOG_WARN(MR_LOG_MODEL,
                    "max_context lowered to %lld: the KV cache holds %lld blocks of %d",
                    (long long)m->params.max_context, (long long)blocks, p->kv_block_tokens);
    }
    mr_backend_params bp = {
        .n_threads = p->n_threads,
        .max_tokens = p->max_batch_tokens,
        .hidden = c->hidden_size,
        .inter = c->intermediate_size,
        .n_heads = c->num_attention_heads,
        .head_dim = c->head_dim,
        .block_size = c->block_size,
        .max_experts = c->num_local_experts,
        .top_k = c->num_experts_per_tok,
    };
    MR_CHECK_GOTO(create_stage_backends(m, &bp), err);
    /* synthetic experts for a backend that takes them (moe_prepare): generated where they are
     * kept (the GPU), none on the host */
    const int defer_experts = mr_ckpt_is_synthetic(ck) && m->be->ops->moe_prepare != NULL;
    if ((st = memory_plan(c, p, wl.off, blocks, m->be, !defer_experts)) != MR_OK) goto err;
    MR_CHECK_GOTO(plan_stages(m, layer_bytes, wl.head, wl.tail, blocks), err);
    st = MR_ERR_NOMEM;
    if (!(m->weight_mem = mr_alloc_aligned(wl.off))) {
        MR_LOG_ERROR(MR_LOG_MODEL, "cannot allocate %zu bytes of weights", wl.off);
        st = MR_ERR_NOMEM;
        goto err;
    }
    wl = (weight_loader){ck, m->weight_mem, 0, NULL, 0, 0};
    MR_CHECK_GOTO(load_weights(m, &wl, specs, n), err);

    if (p->load_experts) {
        size_t cnt = (size_t)L * c->num_local_experts;
        unsigned char *all = malloc(cnt);
        if (!all) goto err;
        memset(all, 1, cnt);
        st = mr_expert_store_load(ck, all, defer_experts, NULL, NULL, &m->experts);
        free(all);
        if (st != MR_OK) goto err;
        m->moe = (mr_moe_provider){local_dispatch, local_combine, m};
    }

    if (m->experts && m->be->ops->moe_prepare) { /* a GPU backend takes the experts now */
        const mr_expert_set **sets = malloc((size_t)L * sizeof *sets);
        if (!sets) {
            st = MR_ERR_NOMEM;
            goto err;
        }
        for (int l = 0; l < L; l++) sets[l] = mr_expert_store_layer(m->experts, l);
        /* each stage's GPU takes the experts of its layers */
        for (int s = 0; st == MR_OK && s < m->plan.n_stages; s++) {
            mr_backend *be = m->stage_be[s];
            const int first = m->plan.first_layer[s];
            st = be->ops->moe_prepare(be, sets + first, m->plan.first_layer[s + 1] - first);
        }
        free(sets);
        if (st != MR_OK) goto err;
    }
    mr_backend *layer_be[MR_MAX_LAYERS];
    for (int l = 0; l < L; l++) layer_be[l] = m->stage_be[m->layers[l].stage];
    MR_CHECK_GOTO(mr_state_pool_create_staged(layer_be, c, p->max_seqs, (int)blocks,
                                              p->kv_block_tokens, &m->states),
                  err);
    MR_CHECK_GOTO(mr_arena_init(&m->ws, workspace_bytes(c, p->max_batch_tokens, p->max_seqs)), err);
    const int on_device = mr_mem_on_device(m->be);
    for (int s = 0; s < m->plan.n_stages; s++) {
        const size_t act_bytes = activation_bytes(c, p->max_batch_tokens, p->max_seqs, on_device,
                                                  s == m->plan.n_stages - 1);
        MR_CHECK_GOTO(mr_mem_alloc(m->stage_be[s], act_bytes, &m->act_mem[s]), err);
        mr_arena_wrap(&m->act[s], m->act_mem[s], act_bytes);
    }
    if (on_device) {
        const size_t io = (size_t)p->max_batch_tokens * (size_t)c->hidden_size * sizeof(float);
        MR_CHECK_GOTO(mr_mem_alloc_staging(m->be, io, (void **)&m->moe_x_host), err);
        MR_CHECK_GOTO(mr_mem_alloc_staging(m->be, io, (void **)&m->moe_y_host), err);
    }
    free(specs);
    free(layer_bytes);
    *out = m;
    return MR_OK;
err:
    free(specs);
    free(layer_bytes);
    mr_model_destroy(m);
    return st;
}

const mr_model_params *mr_model_params_of(const mr_model *m) {
    return &m->params;
}

const mr_model_config *mr_model_config_of(const mr_model *m) {
    return &m->cfg;
}
mr_backend *mr_model_backend(mr_model *m) {
    return m->be;
}
const mr_stage_plan *mr_model_stage_plan(const mr_model *m) {
    return &m->plan;
}
mr_backend *mr_model_stage_backend(mr_model *m, int s) {
    return s >= 0 && s < m->plan.n_stages ? m->stage_be[s] : NULL;
}
mr_state_pool *mr_model_states(mr_model *m) {
    return m->states;
}
void mr_model_set_moe_provider(mr_model *m, mr_moe_provider p) {
    m->moe = p;
}

size_t mr_model_weight_bytes(const mr_model *m, size_t *experts) {
    if (experts) { /* counted from the shapes: synthetic experts may live on the GPU alone */
        *experts = 0;
        for (int l = 0; m->experts && l < m->cfg.num_hidden_layers; l++) {
            const mr_expert_set *set = mr_expert_store_layer(m->experts, l);
            for (int e = 0; e < set->n_experts; e++)
                if (mr_expert_present(&set->experts[e])) *experts += expert_bytes(&set->experts[e]);
        }
    }
    return m->weight_bytes;
}

size_t mr_model_decode_bytes_per_token(const mr_model *m) {
    const mr_model_config *c = &m->cfg;
    size_t b = matrix_bytes(&m->lm_head) + (size_t)c->hidden_size * mr_dtype_size(m->embed.dtype);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const layer_weights *w = &m->layers[l];
        b += matrix_bytes(&w->qkv) + matrix_bytes(&w->out_gate) + matrix_bytes(&w->out_proj) +
             matrix_bytes(&w->q) + matrix_bytes(&w->k) + matrix_bytes(&w->v) + matrix_bytes(&w->o) +
             matrix_bytes(&w->router);
        if (m->experts) {
            const mr_expert_set *set = mr_expert_store_layer(m->experts, l);
            for (int e = 0; e < set->n_experts; e++)
                if (mr_expert_present(&set->experts[e])) {
                    b += (size_t)c->num_experts_per_tok * expert_bytes(&set->experts[e]);
                    break;
                }
        }
    }
    return b;
}

mr_status mr_model_seq_open(mr_model *m, int64_t max_tokens, mr_seq **out) {
    if (max_tokens > m->params.max_context) max_tokens = m->params.max_context;
    return mr_seq_open(m->states, max_tokens, out);
}

void mr_model_seq_close(mr_model *m, mr_seq *s) {
    mr_seq_close(m->states, s);
}

/* ---- the step -------------------------------------------------------------------------------- */

/* Activations (x .. head_rows, logits) are model memory (model_mem.h) of one stage; the rest is
 * host memory, the same arrays in every stage's step_buffers. */
typedef struct step_buffers {
    float *x, *h, *y;       /* [T][hidden] residual stream, normalised input, sub-block output */
    float *big;             /* [T][3·inner]: lightning qkv, or softmax q | k | v */
    float *gate, *o;        /* [T][inner] */
    float *head_rows;       /* [n_seqs][hidden]: the last stage only, else NULL */
    float *logits;          /* [n_seqs][vocab]: the last stage of device-resident backends only */
    int32_t *ids;           /* [T][k] */
    float *wts;             /* [T][k] */
    int32_t *tokens;        /* [T] */
    mr_segment *segs;       /* [n_seqs + 1] pieces, starts relative to their micro-batch */
    mr_seq **seq_of;        /* [n_seqs + 1] sequence of each piece */
    float **states;         /* [n_seqs + 1] lightning states of the current layer */
    const int32_t **tables; /* [n_seqs + 1] */
} step_buffers;

/* A contiguous range of the step's tokens that runs as one unit: [base, base + n). */
typedef struct micro_batch {
    int base, n;
    int first_piece, n_pieces;
    /* Rows the dense ops run on: n, or, for a decode step run as segment graphs (one
     * micro-batch), n padded to a power of two — the graphs' key; rows past n belong to no
     * sequence and their results are never read. */
    int rows;
    int graph;   /* 1: each layer's attention half is a decode segment (backend.h) */
    int max_pos; /* the step's largest position + 1 (the softmax layers' segment key) */
} micro_batch;

/* bs[s] for every stage s: its activations from its arena, the host arrays shared. */
static mr_status alloc_buffers(mr_model *m, int T, int n_seqs, step_buffers *bs) {
    const mr_model_config *c = &m->cfg;
    const size_t H = (size_t)c->hidden_size, inner = (size_t)c->num_attention_heads * c->head_dim;
    const size_t k = (size_t)c->num_experts_per_tok;
    const int S = m->plan.n_stages;
    step_buffers *b = &bs[0];
    mr_arena *a = &m->ws;
    mr_arena_reset(&m->ws);
#define TAKE(ptr, count) (((ptr) = mr_arena_alloc(a, (size_t)(count) * sizeof *(ptr))) != NULL)
    int ok = TAKE(b->ids, T * k) && TAKE(b->wts, T * k) && TAKE(b->tokens, T) &&
             TAKE(b->segs, n_seqs + 1) && TAKE(b->seq_of, n_seqs + 1) &&
             TAKE(b->states, n_seqs + 1) && TAKE(b->tables, n_seqs + 1);
    for (int s = 0; ok && s < S; s++) {
        b = &bs[s];
        if (s > 0) *b = bs[0];
        a = &m->act[s];
        mr_arena_reset(a);
        ok = TAKE(b->x, T * H) && TAKE(b->h, T * H) && TAKE(b->y, T * H) &&
             TAKE(b->big, T * 3 * inner) && TAKE(b->gate, T * inner) && TAKE(b->o, T * inner);
        b->head_rows = b->logits = NULL;
        if (ok && s == S - 1) {
            ok = TAKE(b->head_rows, n_seqs * H);
            if (ok && mr_mem_on_device(m->be)) ok = TAKE(b->logits, (size_t)n_seqs * c->vocab_size);
        }
    }
#undef TAKE
    return ok ? MR_OK : MR_ERR_INTERNAL;
}

/* Cuts the step into micro-batches. Two are used when the provider can overlap and the step has
 * something to split: between sequences when there are several, else inside a long prefill at a
 * multiple of the lightning block size (so the blocks, and thus the results, are unchanged).
 * Fills b->segs / b->seq_of with the pieces; returns the number of micro-batches. */
static int plan_micro_batches(const mr_model *m, const mr_step_seq *seqs, int n_seqs, int T,
                              step_buffers *b, micro_batch mb[MR_MAX_MICRO_BATCHES]) {
    int n_pieces = 0, t = 0;
    for (int s = 0; s < n_seqs; s++) {
        b->segs[n_pieces] = (mr_segment){t, seqs[s].n_tokens, seqs[s].seq->n_past};
        b->seq_of[n_pieces++] = seqs[s].seq;
        t += seqs[s].n_tokens;
    }
    int split_piece = -1; /* micro-batch 1 starts at this piece */
    if (m->params.micro_batches >= 2 && T > 1) {
        if (n_seqs >= 2) {
            int best = 1, best_gap = T;
            for (int i = 1; i < n_seqs; i++) {
                int gap = abs(2 * b->segs[i].start - T);
                if (gap < best_gap) best_gap = gap, best = i;
            }
            split_piece = best;
        } else {
            const int B = m->cfg.block_size, len = b->segs[0].len;
            int cut = (len / 2 / B) * B;
            if (cut == 0) cut = B;
            if (cut < len) {
                b->segs[1] = (mr_segment){cut, len - cut, b->segs[0].pos0 + cut};
                b->seq_of[1] = b->seq_of[0];
                b->segs[0].len = cut;
                n_pieces = 2;
                split_piece = 1;
            }
        }
    }
    if (split_piece < 0) {
        mb[0] = (micro_batch){0, T, 0, n_pieces, T, 0, 0};
        return 1;
    }
    int base1 = b->segs[split_piece].start;
    mb[0] = (micro_batch){0, base1, 0, split_piece, base1, 0, 0};
    mb[1] = (micro_batch){base1, T - base1, split_piece, n_pieces - split_piece, T - base1, 0, 0};
    for (int i = split_piece; i < n_pieces; i++) b->segs[i].start -= base1; /* relative */
    return 2;
}

static void attention_block(mr_model *m, const layer_weights *w, const micro_batch *mb,
                            step_buffers *b) {
    const mr_model_config *c = &m->cfg;
    mr_backend *be = m->stage_be[w->stage];
    const int inner = c->num_attention_heads * c->head_dim, T = mb->rows;
    const size_t H = (size_t)c->hidden_size;
    const float *h = b->h + (size_t)mb->base * H;
    float *y = b->y + (size_t)mb->base * H, *o = b->o + (size_t)mb->base * inner;
    float *big = b->big + (size_t)mb->base * 3 * inner, *gate = b->gate + (size_t)mb->base * inner;
    const mr_segment *segs = b->segs + mb->first_piece;
    if (w->type == MR_ATTN_LIGHTNING) {
        be->ops->linear(be, &w->qkv, h, T, big);
        be->ops->linear(be, &w->out_gate, h, T, gate);
        for (int s = 0; s < mb->n_pieces; s++)
            b->states[s] =
                mr_seq_lightning_state(m->states, b->seq_of[mb->first_piece + s], w->type_index);
        mr_lightning_args la = {
            .n_heads = c->num_attention_heads,
            .head_dim = c->head_dim,
            .block_size = c->block_size,
            .slope = w->slope,
            .n_segments = mb->n_pieces,
            .segs = segs,
            .state = b->states,
            .qkv = big,
            .out = o,
            .state_pool = mr_state_pool_lightning_base(m->states, w->type_index),
            .slot_stride = mr_state_pool_slot_stride(m->states),
        };
        be->ops->lightning(be, &la);
        be->ops->norm_gate(be, o, gate, w->attn_norm, T, inner, (float)c->lightning_norm_eps, o);
        be->ops->linear(be, &w->out_proj, o, T, y);
    } else {
        const int kvd = c->num_key_value_heads * c->head_dim;
        float *q = big, *k = q + (size_t)T * inner, *v = k + (size_t)T * kvd;
        be->ops->linear(be, &w->q, h, T, q);
        be->ops->linear(be, &w->k, h, T, k);
        be->ops->linear(be, &w->v, h, T, v);
        for (int s = 0; s < mb->n_pieces; s++)
            b->tables[s] = b->seq_of[mb->first_piece + s]->blocks;
        mr_attention_args aa = {
            .n_heads = c->num_attention_heads,
            .n_kv_heads = c->num_key_value_heads,
            .head_dim = c->head_dim,
            .rotary_dim = c->rotary_dim,
            .inv_freq = m->inv_freq,
            .n_segments = mb->n_pieces,
            .segs = segs,
            .block_tables = b->tables,
            .block_tokens = m->states->block_tokens,
            .k_cache = m->states->k_cache[w->type_index],
            .v_cache = m->states->v_cache[w->type_index],
            .q = q,
            .k = k,
            .v = v,
            .out = o,
        };
        be->ops->attention(be, &aa);
        be->ops->linear(be, &w->o, o, T, y);
    }
}

/* 1 when the experts' inputs and outputs pass through host buffers: a device-resident backend
 * with a provider other than the local experts (whose moe op takes device memory). */
static int moe_staged(const mr_model *m) {
    return mr_mem_on_device(m->be) && m->moe.dispatch != local_dispatch;
}

/* Attention sub-block of layer `l` for one micro-batch, then the router; ends by dispatching the
 * experts: x ← α·r + β·Attn(h) with h = RMS(x); h ← RMS(x); route(h). b: the layer's stage's. */
static mr_status attention_half(mr_model *m, int l, const micro_batch *mb, int mb_index,
                                step_buffers *b) {
    const mr_model_config *c = &m->cfg;
    const layer_weights *w = &m->layers[l];
    mr_backend *be = m->stage_be[w->stage];
    const size_t H = (size_t)c->hidden_size, off = (size_t)mb->base * H;
    const int k = c->num_experts_per_tok, R = mb->rows;
    float *x = b->x + off, *h = b->h + off, *y = b->y + off;
    int32_t *ids = b->ids + (size_t)mb->base * k;
    float *wts = b->wts + (size_t)mb->base * k;
    const int bt = m->states->block_tokens;
    const mr_segment_key key = {
        .layer = l,
        .rows = R,
        .max_pos = w->type == MR_ATTN_SOFTMAX ? mb->max_pos : 0,
        .pos_limit = (int)((m->params.max_context + bt - 1) / bt * bt),
        .block_tokens = bt,
    };
    mr_prof_mark(&m->prof);
    /* A graphed segment that did not run (its capture failed, or its graph no longer matched)
     * enqueued nothing: it runs again, then eagerly (backend.h). */
    for (int attempt = 0, ran = 0; !ran; attempt++) {
        if (attempt == 2) {
            MR_LOG_ERROR(MR_LOG_MODEL, "layer %d: the decode segment did not run", l);
            return MR_ERR_INTERNAL;
        }
        ran = 1;
        if (mb->graph) be->ops->segment_begin(be, &key);
        be->ops->rmsnorm(be, x, w->input_norm, R, (int)H, (float)c->rms_norm_eps, h);
        attention_block(m, w, mb, b);
        be->ops->scale_add(be, c->postnorm ? h : x, y, w->alpha_attn, w->beta_attn, (size_t)R * H,
                           x);
        be->ops->rmsnorm(be, x, w->post_norm, R, (int)H, (float)c->rms_norm_eps, h);
        be->ops->route(be, &w->router, h, R, k, ids, wts);
        if (mb->graph) MR_CHECK(be->ops->segment_end(be, &ran));
    }
    mr_prof_add(&m->prof, w->type == MR_ATTN_LIGHTNING ? MR_PROF_LIGHTNING : MR_PROF_SOFTMAX);
    const float *moe_x = h;
    if (moe_staged(m)) { /* a remote provider reads host memory */
        moe_x = m->moe_x_host + off;
        MR_CHECK(mr_mem_to_host(be, m->moe_x_host + off, h, (size_t)mb->n * H * sizeof(float)));
        mr_prof_add(&m->prof, MR_PROF_STAGE_DOWN);
    }
    mr_status st = m->moe.dispatch(m->moe.ctx, l, mb_index, moe_x, mb->n, k, ids, wts);
    mr_prof_add(&m->prof, MR_PROF_DISPATCH);
    return st;
}

/* MoE sub-block after the experts came back: x ← α·g + β·MoE(g). b: the layer's stage's. */
static mr_status moe_half(mr_model *m, int l, int mb_index, const micro_batch *mb,
                          step_buffers *b) {
    const mr_model_config *c = &m->cfg;
    const size_t H = (size_t)c->hidden_size, off = (size_t)mb->base * H;
    mr_backend *be = m->stage_be[m->layers[l].stage];
    float *x = b->x + off, *h = b->h + off, *y = b->y + off;
    mr_prof_mark(&m->prof);
    if (moe_staged(m)) {
        MR_CHECK(m->moe.combine(m->moe.ctx, l, mb_index, m->moe_y_host + off));
        mr_prof_add(&m->prof, MR_PROF_COMBINE);
        MR_CHECK(mr_mem_to_device(be, y, m->moe_y_host + off, (size_t)mb->n * H * sizeof(float)));
    } else {
        MR_CHECK(m->moe.combine(m->moe.ctx, l, mb_index, y));
        mr_prof_add(&m->prof, MR_PROF_COMBINE);
    }
    be->ops->scale_add(be, c->postnorm ? h : x, y, (float)c->alpha_mlp, (float)c->beta_mlp,
                       (size_t)mb->n * H, x);
    mr_prof_add(&m->prof, MR_PROF_STAGE_UP);
    return MR_OK;
}

mr_status mr_model_step(mr_model *m, const mr_step_seq *seqs, int n_seqs, float *logits) {
    const mr_model_config *c = &m->cfg;
    mr_backend *be = m->be;
    const int H = c->hidden_size, L = c->num_hidden_layers, S = m->plan.n_stages;
    if (n_seqs < 1 || n_seqs > m->params.max_seqs) return MR_ERR_INVALID;
    if (!logits && !mr_mem_on_device(be)) {
        MR_LOG_ERROR(MR_LOG_MODEL, "model step: logits may stay on the device only with a "
                                   "device-resident backend");
        return MR_ERR_INVALID;
    }
    m->dev_logits = NULL; /* the arena is about to be reused */
    m->n_logit_rows = 0;
    if (!m->moe.dispatch) {
        MR_LOG_ERROR(MR_LOG_MODEL, "model step: no expert provider installed");
        return MR_ERR_INTERNAL;
    }
    /* validate the whole batch before touching any state */
    int T = 0;
    for (int s = 0; s < n_seqs; s++) {
        const mr_step_seq *q = &seqs[s];
        if (q->n_tokens < 1 || T + q->n_tokens > m->params.max_batch_tokens) {
            MR_LOG_ERROR(MR_LOG_MODEL, "model step: %d tokens exceed the batch budget of %d",
                         T + q->n_tokens, m->params.max_batch_tokens);
            return MR_ERR_INVALID;
        }
        for (int i = 0; i < q->n_tokens; i++)
            if (q->tokens[i] < 0 || q->tokens[i] >= c->vocab_size) {
                MR_LOG_ERROR(MR_LOG_MODEL, "token id %d is outside the vocabulary [0, %d)",
                             q->tokens[i], c->vocab_size);
                return MR_ERR_INVALID;
            }
        if (q->seq->n_past + q->n_tokens > q->seq->max_tokens) {
            MR_LOG_ERROR(MR_LOG_MODEL, "sequence would grow to %lld tokens; its limit is %lld",
                         (long long)(q->seq->n_past + q->n_tokens), (long long)q->seq->max_tokens);
            return MR_ERR_FULL;
        }
        T += q->n_tokens;
    }
    for (int s = 0; s < n_seqs; s++) {
        mr_status st = mr_seq_reserve(m->states, seqs[s].seq, seqs[s].n_tokens);
        if (st != MR_OK) {
            MR_LOG_ERROR(MR_LOG_MODEL, "KV cache exhausted (%d free blocks)",
                         m->states->n_free_blocks);
            return st;
        }
    }
    /* A decode step of one micro-batch on a backend with segment graphs: the dense ops run on
     * the rows padded to a power of two (within the batch budget), the graphs' key. */
    int decode = 1, max_pos = 0, rows = T;
    for (int s = 0; s < n_seqs; s++) {
        decode &= seqs[s].n_tokens == 1;
        if (seqs[s].seq->n_past + 1 > max_pos) max_pos = (int)(seqs[s].seq->n_past + 1);
    }
    const int graph = decode && be->ops->segment_begin && !m->params.no_segments &&
                      (m->params.micro_batches < 2 || T == 1);
    if (graph) {
        rows = 1; /* the next power of two */
        while (rows < T) rows *= 2;
        if (rows > m->params.max_batch_tokens) rows = T;
    }
    mr_prof_begin(&m->prof);
    step_buffers bs[MR_MAX_STAGES];
    MR_CHECK(alloc_buffers(m, rows, n_seqs, bs));
    for (int s = 0, t = 0; s < n_seqs; t += seqs[s].n_tokens, s++)
        memcpy(bs[0].tokens + t, seqs[s].tokens, (size_t)seqs[s].n_tokens * sizeof(int32_t));
    micro_batch mb[MR_MAX_MICRO_BATCHES];
    const int M = plan_micro_batches(m, seqs, n_seqs, T, &bs[0], mb);
    if (graph && M == 1) {
        mb[0].rows = rows;
        mb[0].graph = 1;
        mb[0].max_pos = max_pos;
    }

    /* Ping-pong: while one micro-batch's experts are out, the other runs its attention. Between
     * layers of two stages the micro-batch's rows of x go to the next stage: x is the only
     * activation live across a layer boundary (attention_half recomputes h from x first; y, the
     * projections and the routing are per layer), postnorm or not. */
    be->ops->embed(be, &m->embed, bs[0].tokens, T, bs[0].x);
    for (int i = 0; i < M; i++) MR_CHECK(attention_half(m, 0, &mb[i], i, &bs[m->layers[0].stage]));
    for (int l = 0; l < L; l++)
        for (int i = 0; i < M; i++) {
            const int from = m->layers[l].stage;
            MR_CHECK(moe_half(m, l, i, &mb[i], &bs[from]));
            if (l + 1 == L) continue;
            const int to = m->layers[l + 1].stage;
            const size_t off = (size_t)mb[i].base * H;
            if (to != from)
                MR_CHECK(stage_transfer(m, from, to, bs[from].x + off, bs[to].x + off,
                                        (size_t)mb[i].n * H));
            MR_CHECK(attention_half(m, l + 1, &mb[i], i, &bs[to]));
        }

    /* the final norm and LM head on the last stage (the last layer's: model_stages.h) */
    step_buffers b = bs[S - 1];
    be = m->stage_be[S - 1];
    int n_rows = 0;
    int64_t held = 0; /* the longest sequence after the step (for the debug line) */
    for (int s = 0, t = 0; s < n_seqs; t += seqs[s].n_tokens, s++) {
        if (seqs[s].want_logits) {
            int last = t + seqs[s].n_tokens - 1;
            MR_CHECK(mr_mem_copy(be, b.head_rows + (size_t)n_rows * H, b.x + (size_t)last * H,
                                 (size_t)H * sizeof(float)));
            n_rows++;
        }
        seqs[s].seq->n_past += seqs[s].n_tokens;
        if (seqs[s].seq->n_past > held) held = seqs[s].seq->n_past;
    }
    if (n_rows) {
        be->ops->rmsnorm(be, b.head_rows, m->final_norm, n_rows, H, (float)c->rms_norm_eps,
                         b.head_rows);
        be->ops->linear(be, &m->lm_head, b.head_rows, n_rows, b.logits ? b.logits : logits);
    }
    /* a device-resident backend: the logits come down (and any failure of the step comes out, the
     * other stages' first: their streams are done, the last stage waited for them), or stay on
     * the last stage for mr_model_sample / mr_model_logits_row (which report such a failure) */
    for (int s = 0; b.logits && s < S - 1; s++)
        MR_CHECK(mr_mem_to_host(m->stage_be[s], NULL, NULL, 0));
    if (b.logits && logits)
        MR_CHECK(mr_mem_to_host(be, logits, b.logits,
                                (size_t)n_rows * (size_t)c->vocab_size * sizeof(float)));
    if (b.logits && !logits) {
        m->dev_logits = b.logits;
        m->n_logit_rows = n_rows;
        m->logits_be = be;
    }
    mr_prof_end(&m->prof, T, n_seqs, M, (long long)held);
    return MR_OK;
}

int mr_model_samples_on_device(const mr_model *m) {
    return mr_mem_on_device(m->be) && m->be->ops->sample != NULL; /* every stage: the same ops */
}

mr_status mr_model_sample(mr_model *m, const mr_sample_row *rows, int n, int32_t *tokens,
                          mr_sample_result *out) {
    if (!mr_model_samples_on_device(m) || !m->dev_logits) {
        MR_LOG_ERROR(MR_LOG_MODEL, "model sample: no logits left on a device that samples");
        return MR_ERR_INVALID;
    }
    mr_backend *be = m->logits_be;
    return be->ops->sample(be, m->dev_logits, m->n_logit_rows, m->cfg.vocab_size, rows, n, tokens,
                           out);
}

mr_status mr_model_logits_row(mr_model *m, int row, float *host) {
    if (!m->dev_logits || row < 0 || row >= m->n_logit_rows) {
        MR_LOG_ERROR(MR_LOG_MODEL, "model logits row %d: the last step left %d rows on the device",
                     row, m->n_logit_rows);
        return MR_ERR_INVALID;
    }
    const size_t V = (size_t)m->cfg.vocab_size;
    return mr_mem_to_host(m->logits_be, host, m->dev_logits + (size_t)row * V, V * sizeof(float));
}
