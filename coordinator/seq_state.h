/* seq_state.h — per-sequence model state: lightning-state slots and the paged KV cache.
 *
 * A sequence needs, for every lightning layer, an [H][d][d] float32 state (zeroed when it
 * starts) and, for every softmax layer, the keys and values of all its positions. States live in a
 * pool of `max_seqs` slots; keys and values live in a pool of fixed-size blocks of `block_tokens`
 * positions shared by all softmax layers (one block id covers the same positions in every softmax
 * layer). Everything is allocated when the pool is created; opening, growing and closing a
 * sequence only moves slot and block ids between free lists.
 *
 *   mr_seq *s;  MR_CHECK(mr_seq_open(pool, max_tokens, &s));
 *   MR_CHECK(mr_seq_reserve(pool, s, n_new));   // blocks for n_past + n_new positions
 *   ... forward step: writes state and cache, then advances s->n_past ...
 *   mr_seq_close(pool, s);
 *
 * The states and caches are host memory, or the backend's device memory when the pool is created
 * on a device-resident backend (mr_state_pool_create_on; coordinator/model_mem.h): then the
 * pointers below must not be dereferenced on the host, and the KV cache holds the backend's
 * kv_dtype. Each layer's states and cache are one allocation through that layer's backend
 * (mr_state_pool_create_staged: the model's layers split over GPUs keep them on their own GPU);
 * the slot and block ids are the same in every layer. The free lists and block tables are host
 * memory either way.
 *
 * Owned by the engine's step thread. */
#ifndef MR_SEQ_STATE_H
#define MR_SEQ_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "common/model_config.h"
#include "common/status.h"
#include "kernels/backend.h"

typedef struct mr_seq {
    int slot;       /* lightning-state slot */
    int64_t n_past; /* positions already processed (in the state and the cache) */
    int64_t max_tokens;
    int32_t *blocks; /* [max_blocks] KV block ids for positions [0, n_blocks * block_tokens) */
    int n_blocks, max_blocks;
} mr_seq;

typedef struct mr_state_pool {
    mr_backend *be; /* the first layer's backend (NULL: host memory); all are of one kind */
    int n_lightning, n_softmax;
    int n_heads, head_dim, n_kv_heads;
    size_t state_floats;       /* per lightning layer per sequence: H * d * d */
    float **lightning;         /* per lightning layer: [max_seqs][H][d][d] float32 */
    mr_backend **lightning_be; /* per lightning layer: the backend holding its states */
    mr_backend **softmax_be;   /* per softmax layer: the backend holding its cache */
    int max_seqs;
    int *free_slots, n_free_slots;
    int block_tokens, n_blocks;
    int32_t *free_blocks;
    int n_free_blocks;
    int64_t n_promised_blocks;  /* Σ max_blocks of the open sequences (softmax layers only): a
                                   sequence opens only while its whole length is still
                                   promisable, so a step's reserve never runs out */
    size_t kv_elem_size;        /* 4 (float32) or 2 (bf16: the backend's kv_dtype) */
    float **k_cache, **v_cache; /* per softmax layer: [n_blocks][block_tokens][KV][d] */
} mr_state_pool;

/* Host memory, float32 KV cache. */
mr_status mr_state_pool_create(const mr_model_config *c, int max_seqs, int n_blocks,
                               int block_tokens, mr_state_pool **out);
/* In the memory of backend be (which must outlive the pool), KV cache in its kv_dtype. */
mr_status mr_state_pool_create_on(mr_backend *be, const mr_model_config *c, int max_seqs,
                                  int n_blocks, int block_tokens, mr_state_pool **out);
/* Layer l's states or cache in the memory of layer_be[l] (num_hidden_layers entries, backends of
 * one kind that outlive the pool; NULL entries: host memory). */
mr_status mr_state_pool_create_staged(mr_backend *const *layer_be, const mr_model_config *c,
                                      int max_seqs, int n_blocks, int block_tokens,
                                      mr_state_pool **out);
void mr_state_pool_destroy(mr_state_pool *p);
size_t mr_state_pool_bytes(const mr_state_pool *p);

/* Takes a free slot (zeroing its states) and promises the sequence blocks for max_tokens
 * positions; fails with MR_ERR_FULL when no slot is free or the blocks not yet promised to open
 * sequences are fewer than that (a caller retries after a close). */
mr_status mr_seq_open(mr_state_pool *p, int64_t max_tokens, mr_seq **out);
/* Makes room for n_new more positions; MR_ERR_FULL if the sequence would exceed max_tokens or
 * the block pool is exhausted (then nothing is taken). */
mr_status mr_seq_reserve(mr_state_pool *p, mr_seq *s, int n_new);
void mr_seq_close(mr_state_pool *p, mr_seq *s);
/* The [H][d][d] state of the `index`-th lightning layer. */
float *mr_seq_lightning_state(mr_state_pool *p, const mr_seq *s, int index);
/* The states of the `index`-th lightning layer form a pool: slot s at base + s · stride floats. */
float *mr_state_pool_lightning_base(mr_state_pool *p, int index);
size_t mr_state_pool_slot_stride(const mr_state_pool *p);

#endif
