/* Sequence state pool: slots and KV blocks move between free lists; a sequence opens only while
 * blocks for its whole length can still be promised; exhaustion is reported without side
 * effects; states start at zero. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "coordinator/model_mem.h"
#include "coordinator/seq_state.h"

static void test_pool(void **state) {
    (void)state;
    mr_model_config c = {0};
    c.num_hidden_layers = 16;
    c.num_attention_heads = 2;
    c.num_key_value_heads = 1;
    c.head_dim = 4;
    for (int l = 0; l < 16; l++) c.attn_type[l] = l % 8 == 7;
    mr_state_pool *p;
    assert_int_equal(mr_state_pool_create(&c, 2, 5, 4, &p), MR_OK);
    assert_int_equal(p->n_lightning, 14);
    assert_int_equal(p->n_softmax, 2);
    mr_seq *a, *b, *x;
    assert_int_equal(mr_seq_open(p, 100, &a), MR_ERR_FULL); /* 25 blocks: more than the pool */
    assert_int_equal(p->n_free_slots, 2);                   /* ... and no slot taken */
    assert_int_equal(mr_seq_open(p, 13, &a), MR_OK);        /* promises 4 of 5 blocks */
    float *st = mr_seq_lightning_state(p, a, 13);
    for (int i = 0; i < 32; i++) assert_true(st[i] == 0.0f);
    st[0] = 5.0f;
    assert_int_equal(mr_seq_open(p, 8, &b), MR_ERR_FULL); /* needs 2, 1 still promisable */
    assert_int_equal(mr_seq_open(p, 4, &b), MR_OK);
    assert_int_equal(p->n_promised_blocks, 5);
    assert_int_equal(mr_seq_open(p, 1, &x), MR_ERR_FULL); /* 2 slots */
    assert_int_equal(mr_seq_reserve(p, a, 13), MR_OK);    /* 4 blocks */
    assert_int_equal(a->n_blocks, 4);
    assert_int_equal(mr_seq_reserve(p, b, 5),
                     MR_ERR_FULL); /* over its own max_tokens: none taken */
    assert_int_equal(b->n_blocks, 0);
    assert_int_equal(mr_seq_reserve(p, b, 4), MR_OK);
    assert_int_equal(p->n_free_blocks, 0);
    int slot_a = a->slot;
    mr_seq_close(p, a);
    assert_int_equal(p->n_free_blocks, 4);
    assert_int_equal(p->n_promised_blocks, 1);
    assert_int_equal(mr_seq_open(p, 16, &a), MR_OK);
    assert_int_equal(a->slot, slot_a);
    assert_true(mr_seq_lightning_state(p, a, 13)[0] == 0.0f); /* zeroed on reuse */
    mr_seq_close(p, a);
    mr_seq_close(p, b);
    assert_int_equal(p->n_free_slots, 2);
    assert_int_equal(p->n_free_blocks, 5);
    assert_int_equal(p->n_promised_blocks, 0);
    mr_state_pool_destroy(p);
}

/* Layers split over two backends (cpu-resident: each checks that every pointer it is handed is its
 * own memory): each layer's states and cache are allocated, cleared and freed through its own. */
static void test_staged(void **state) {
    (void)state;
    mr_model_config c = {0};
    c.num_hidden_layers = 16;
    c.num_attention_heads = 2;
    c.num_key_value_heads = 1;
    c.head_dim = 4;
    for (int l = 0; l < 16; l++) c.attn_type[l] = l % 8 == 7;
    mr_backend_params bp = {.n_threads = 1,
                            .max_tokens = 8,
                            .hidden = 8,
                            .inter = 8,
                            .n_heads = 2,
                            .head_dim = 4,
                            .block_size = 4,
                            .max_experts = 1,
                            .top_k = 1};
    mr_backend *be[2], *layer_be[16];
    for (int i = 0; i < 2; i++)
        assert_int_equal(mr_backend_create("cpu-resident", &bp, &be[i]), MR_OK);
    for (int l = 0; l < 16; l++) layer_be[l] = be[l >= 5]; /* softmax layer 7 on be[1] */
    mr_state_pool *p;
    assert_int_equal(mr_state_pool_create_staged(layer_be, &c, 3, 4, 4, &p), MR_OK);
    assert_true(p->lightning_be[4] == be[0] && p->lightning_be[5] == be[1]);
    assert_true(p->softmax_be[0] == be[1] && p->softmax_be[1] == be[1]);
    assert_int_equal(mr_state_pool_slot_stride(p), 2 * 4 * 4);
    mr_seq *a, *b;
    assert_int_equal(mr_seq_open(p, 8, &a), MR_OK); /* 2 of the 4 blocks each */
    assert_int_equal(mr_seq_open(p, 8, &b), MR_OK);
    for (int i = 0; i < p->n_lightning; i++) { /* slot s of layer i: base + s · stride */
        float *base = mr_state_pool_lightning_base(p, i);
        assert_true(mr_seq_lightning_state(p, b, i) ==
                    base + (size_t)b->slot * mr_state_pool_slot_stride(p));
        const float *st = mr_seq_lightning_state(p, a, i);
        for (int k = 0; k < 32; k++) assert_true(st[k] == 0.0f); /* cleared by its backend */
    }
    /* any pointer handed to the wrong backend would have been reported here */
    for (int i = 0; i < 2; i++) assert_int_equal(mr_mem_to_host(be[i], NULL, NULL, 0), MR_OK);
    mr_seq_close(p, a);
    mr_seq_close(p, b);
    mr_state_pool_destroy(p);
    for (int i = 0; i < 2; i++) mr_backend_destroy(be[i]); /* logs any allocation not freed */
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_pool), cmocka_unit_test(test_staged)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
