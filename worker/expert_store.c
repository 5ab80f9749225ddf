#include "worker/expert_store.h"

#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/check.h"
#include "common/log.h"

struct mr_expert_store {
    int n_layers, n_experts;
    mr_expert *experts;  /* [n_layers][n_experts]; data NULL where not held */
    mr_expert_set *sets; /* [n_layers] */
    unsigned char *mem;
    size_t bytes;
    int n_held;
};

void mr_expert_store_free(mr_expert_store *s) {
    if (!s) return;
    mr_free_aligned(s->mem);
    free(s->experts);
    free(s->sets);
    free(s);
}

/* Storage dtype for a stored tensor dtype: bf16 stays bf16, anything else becomes f32. */
static mr_dtype storage_dtype(mr_dtype stored) {
    return stored == MR_DTYPE_BF16 ? MR_DTYPE_BF16 : MR_DTYPE_F32;
}

mr_status mr_expert_store_load(mr_ckpt *ck, const unsigned char *held, mr_load_progress_fn progress,
                               void *user, mr_expert_store **out) {
    const mr_model_config *c = mr_ckpt_config(ck);
    const int L = c->num_hidden_layers, E = c->num_local_experts;
    mr_expert_store *s = calloc(1, sizeof *s);
    if (!s || !(s->experts = calloc((size_t)L * E, sizeof *s->experts)) ||
        !(s->sets = calloc((size_t)L, sizeof *s->sets))) {
        mr_expert_store_free(s);
        return MR_ERR_NOMEM;
    }
    s->n_layers = L;
    s->n_experts = E;
    mr_status st = MR_OK;
    /* pass 1: sizes (maps only the shards of held experts) */
    static const int mats[3] = {MR_EXPERT_W1, MR_EXPERT_W3, MR_EXPERT_W2};
    size_t total = 0;
    mr_dtype dt[3] = {MR_DTYPE_BF16, MR_DTYPE_BF16, MR_DTYPE_BF16};
    for (int l = 0; l < L; l++)
        for (int e = 0; e < E; e++) {
            if (!held[(size_t)l * E + e]) continue;
            s->n_held++;
            for (int m = 0; m < 3; m++) {
                char name[96];
                mr_dtype stored;
                mr_layout_expert_name(name, sizeof name, l, e, mats[m]);
                MR_CHECK_GOTO(mr_ckpt_stored_dtype(ck, name, &stored), err);
                total += ((size_t)c->hidden_size * c->intermediate_size *
                              mr_dtype_size(storage_dtype(stored)) +
                          63) &
                         ~(size_t)63;
            }
        }
    if (total && !(s->mem = mr_alloc_aligned(total))) {
        MR_LOG_ERROR(MR_LOG_CKPT, "cannot allocate %zu bytes for %d experts", total, s->n_held);
        st = MR_ERR_NOMEM;
        goto err;
    }
    s->bytes = total;
    /* pass 2: load */
    size_t off = 0;
    int done = 0;
    for (int l = 0; l < L; l++) {
        s->sets[l] =
            (mr_expert_set){E, c->hidden_size, c->intermediate_size, s->experts + (size_t)l * E};
        for (int e = 0; e < E; e++) {
            if (!held[(size_t)l * E + e]) continue;
            mr_expert *ex = &s->experts[(size_t)l * E + e];
            mr_matrix *dst[3] = {&ex->w1, &ex->w3, &ex->w2};
            for (int m = 0; m < 3; m++) {
                mr_tensor_spec spec;
                memset(&spec, 0, sizeof spec);
                mr_layout_expert_name(spec.name, sizeof spec.name, l, e, mats[m]);
                int down = mats[m] == MR_EXPERT_W2;
                spec.ndim = 2;
                spec.shape[0] = down ? c->hidden_size : c->intermediate_size;
                spec.shape[1] = down ? c->intermediate_size : c->hidden_size;
                mr_dtype stored;
                MR_CHECK_GOTO(mr_ckpt_stored_dtype(ck, spec.name, &stored), err);
                dt[m] = storage_dtype(stored);
                MR_CHECK_GOTO(mr_ckpt_load(ck, &spec, s->mem + off, dt[m]), err);
                *dst[m] = (mr_matrix){s->mem + off, dt[m], (int)spec.shape[0], (int)spec.shape[1]};
                off += ((size_t)spec.shape[0] * spec.shape[1] * mr_dtype_size(dt[m]) + 63) &
                       ~(size_t)63;
            }
            done++;
            if (progress) progress(user, done, s->n_held, off);
        }
    }
    *out = s;
    return MR_OK;
err:
    mr_expert_store_free(s);
    return st;
}

const mr_expert_set *mr_expert_store_layer(const mr_expert_store *s, int layer) {
    return &s->sets[layer];
}
size_t mr_expert_store_bytes(const mr_expert_store *s) {
    return s->bytes;
}
int mr_expert_store_count(const mr_expert_store *s) {
    return s->n_held;
}
