#include "coordinator/seq_state.h"

#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/log.h"
#include "coordinator/model_mem.h"

void mr_state_pool_destroy(mr_state_pool *p) {
    if (!p) return;
    for (int i = 0; p->lightning && p->lightning_be && i < p->n_lightning; i++)
        mr_mem_free(p->lightning_be[i], p->lightning[i]);
    for (int i = 0; p->softmax_be && i < p->n_softmax; i++) {
        if (p->k_cache) mr_mem_free(p->softmax_be[i], p->k_cache[i]);
        if (p->v_cache) mr_mem_free(p->softmax_be[i], p->v_cache[i]);
    }
    free(p->lightning);
    free(p->lightning_be);
    free(p->softmax_be);
    free(p->k_cache);
    free(p->v_cache);
    free(p->free_slots);
    free(p->free_blocks);
    free(p);
}

mr_status mr_state_pool_create(const mr_model_config *c, int max_seqs, int n_blocks,
                               int block_tokens, mr_state_pool **out) {
    return mr_state_pool_create_on(NULL, c, max_seqs, n_blocks, block_tokens, out);
}

static int alloc_zeroed(mr_backend *be, size_t bytes, float **out) {
    void *p = NULL;
    if (mr_mem_alloc(be, bytes, &p) != MR_OK) return 0;
    *out = p;
    /* device memory is cleared once, so a kernel never reads uninitialised bits; host memory is
     * left untouched (pages committed on use): states are cleared by mr_seq_open, and cache rows
     * are written before they are read */
    return !mr_mem_on_device(be) || mr_mem_zero(be, p, bytes) == MR_OK;
}

mr_status mr_state_pool_create_on(mr_backend *be, const mr_model_config *c, int max_seqs,
                                  int n_blocks, int block_tokens, mr_state_pool **out) {
    mr_backend *layer_be[MR_MAX_LAYERS];
    for (int l = 0; l < c->num_hidden_layers && l < MR_MAX_LAYERS; l++) layer_be[l] = be;
    return mr_state_pool_create_staged(layer_be, c, max_seqs, n_blocks, block_tokens, out);
}

mr_status mr_state_pool_create_staged(mr_backend *const *layer_be, const mr_model_config *c,
                                      int max_seqs, int n_blocks, int block_tokens,
                                      mr_state_pool **out) {
    if (max_seqs < 1 || n_blocks < 1 || block_tokens < 1 || c->num_hidden_layers < 1 ||
        c->num_hidden_layers > MR_MAX_LAYERS)
        return MR_ERR_INVALID;
    mr_state_pool *p = calloc(1, sizeof *p);
    if (!p) return MR_ERR_NOMEM;
    p->be = layer_be[0];
    p->kv_elem_size = mr_mem_kv_elem_size(p->be);
    p->n_lightning = mr_model_config_n_lightning(c);
    p->n_softmax = mr_model_config_n_softmax(c);
    p->n_heads = c->num_attention_heads;
    p->head_dim = c->head_dim;
    p->n_kv_heads = c->num_key_value_heads;
    p->state_floats = (size_t)p->n_heads * p->head_dim * p->head_dim;
    p->max_seqs = max_seqs;
    p->block_tokens = block_tokens;
    p->n_blocks = n_blocks;
    const size_t block_elems = (size_t)block_tokens * p->n_kv_heads * p->head_dim;
    const size_t cache_bytes = (size_t)n_blocks * block_elems * p->kv_elem_size;
    int ok = (p->free_slots = malloc((size_t)max_seqs * sizeof(int))) &&
             (p->free_blocks = malloc((size_t)n_blocks * sizeof(int32_t))) &&
             (p->k_cache = calloc((size_t)p->n_softmax + 1, sizeof(float *))) &&
             (p->v_cache = calloc((size_t)p->n_softmax + 1, sizeof(float *))) &&
             (p->lightning = calloc((size_t)p->n_lightning + 1, sizeof(float *))) &&
             (p->lightning_be = calloc((size_t)p->n_lightning + 1, sizeof(mr_backend *))) &&
             (p->softmax_be = calloc((size_t)p->n_softmax + 1, sizeof(mr_backend *)));
    for (int l = 0; ok && l < c->num_hidden_layers; l++) {
        const int i = mr_model_config_type_index(c, l);
        mr_backend *be = layer_be[l];
        if (c->attn_type[l] == MR_ATTN_LIGHTNING) {
            p->lightning_be[i] = be;
            ok = alloc_zeroed(be, (size_t)max_seqs * p->state_floats * sizeof(float),
                              &p->lightning[i]);
        } else {
            p->softmax_be[i] = be;
            ok = alloc_zeroed(be, cache_bytes, &p->k_cache[i]) &&
                 alloc_zeroed(be, cache_bytes, &p->v_cache[i]);
        }
    }
    if (!ok) {
        MR_LOG_ERROR(MR_LOG_MODEL, "state pool: cannot allocate %d sequence slots and %d KV blocks",
                     max_seqs, n_blocks);
        mr_state_pool_destroy(p);
        return MR_ERR_NOMEM;
    }
    /* free lists hand out low ids first */
    for (int i = 0; i < max_seqs; i++) p->free_slots[i] = max_seqs - 1 - i;
    p->n_free_slots = max_seqs;
    for (int i = 0; i < n_blocks; i++) p->free_blocks[i] = n_blocks - 1 - i;
    p->n_free_blocks = n_blocks;
    *out = p;
    return MR_OK;
}

size_t mr_state_pool_bytes(const mr_state_pool *p) {
    size_t block_elems = (size_t)p->block_tokens * p->n_kv_heads * p->head_dim;
    return (size_t)p->max_seqs * p->n_lightning * p->state_floats * sizeof(float) +
           2 * (size_t)p->n_softmax * p->n_blocks * block_elems * p->kv_elem_size;
}

mr_status mr_seq_open(mr_state_pool *p, int64_t max_tokens, mr_seq **out) {
    if (p->n_free_slots == 0) return MR_ERR_FULL;
    if (max_tokens < 1) return MR_ERR_INVALID;
    int64_t max_blocks = (max_tokens + p->block_tokens - 1) / p->block_tokens;
    if (p->n_softmax > 0 && max_blocks > p->n_blocks - p->n_promised_blocks) return MR_ERR_FULL;
    mr_seq *s = calloc(1, sizeof *s);
    if (!s || max_blocks > INT32_MAX ||
        !(s->blocks = malloc((size_t)max_blocks * sizeof(int32_t)))) {
        free(s);
        return MR_ERR_NOMEM;
    }
    s->slot = p->free_slots[--p->n_free_slots];
    s->max_tokens = max_tokens;
    s->max_blocks = (int)max_blocks;
    if (p->n_softmax > 0) p->n_promised_blocks += max_blocks;
    for (int i = 0; i < p->n_lightning; i++) {
        mr_status st = mr_mem_zero(p->lightning_be[i], mr_seq_lightning_state(p, s, i),
                                   p->state_floats * sizeof(float));
        if (st != MR_OK) {
            p->free_slots[p->n_free_slots++] = s->slot;
            if (p->n_softmax > 0) p->n_promised_blocks -= max_blocks;
            free(s->blocks);
            free(s);
            return st;
        }
    }
    *out = s;
    return MR_OK;
}

mr_status mr_seq_reserve(mr_state_pool *p, mr_seq *s, int n_new) {
    int64_t need_tokens = s->n_past + n_new;
    if (n_new < 0 || need_tokens > s->max_tokens) return MR_ERR_FULL;
    if (p->n_softmax == 0) return MR_OK;
    int need = (int)((need_tokens + p->block_tokens - 1) / p->block_tokens);
    if (need - s->n_blocks > p->n_free_blocks) return MR_ERR_FULL;
    while (s->n_blocks < need) s->blocks[s->n_blocks++] = p->free_blocks[--p->n_free_blocks];
    return MR_OK;
}

void mr_seq_close(mr_state_pool *p, mr_seq *s) {
    if (!s) return;
    while (s->n_blocks > 0) p->free_blocks[p->n_free_blocks++] = s->blocks[--s->n_blocks];
    if (p->n_softmax > 0) p->n_promised_blocks -= s->max_blocks;
    p->free_slots[p->n_free_slots++] = s->slot;
    free(s->blocks);
    free(s);
}

float *mr_seq_lightning_state(mr_state_pool *p, const mr_seq *s, int index) {
    return p->lightning[index] + (size_t)s->slot * p->state_floats;
}

float *mr_state_pool_lightning_base(mr_state_pool *p, int index) {
    return p->lightning[index];
}

size_t mr_state_pool_slot_stride(const mr_state_pool *p) {
    return p->state_floats;
}
