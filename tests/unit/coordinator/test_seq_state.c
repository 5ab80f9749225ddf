/* Sequence state pool: slots and KV blocks move between free lists; exhaustion is reported
 * without side effects; states start at zero. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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
    assert_int_equal(mr_seq_open(p, 100, &a), MR_OK);
    float *st = mr_seq_lightning_state(p, a, 13);
    for (int i = 0; i < 32; i++) assert_true(st[i] == 0.0f);
    st[0] = 5.0f;
    assert_int_equal(mr_seq_open(p, 8, &b), MR_OK);
    assert_int_equal(mr_seq_open(p, 8, &x), MR_ERR_FULL); /* 2 slots */
    assert_int_equal(mr_seq_reserve(p, a, 13), MR_OK);    /* 4 blocks */
    assert_int_equal(a->n_blocks, 4);
    assert_int_equal(mr_seq_reserve(p, b, 8), MR_ERR_FULL); /* needs 2, 1 free: takes none */
    assert_int_equal(b->n_blocks, 0);
    assert_int_equal(mr_seq_reserve(p, b, 9), MR_ERR_FULL); /* over its own max_tokens */
    assert_int_equal(mr_seq_reserve(p, b, 4), MR_OK);
    assert_int_equal(p->n_free_blocks, 0);
    int slot_a = a->slot;
    mr_seq_close(p, a);
    assert_int_equal(p->n_free_blocks, 4);
    assert_int_equal(mr_seq_open(p, 100, &a), MR_OK);
    assert_int_equal(a->slot, slot_a);
    assert_true(mr_seq_lightning_state(p, a, 13)[0] == 0.0f); /* zeroed on reuse */
    mr_seq_close(p, a);
    mr_seq_close(p, b);
    assert_int_equal(p->n_free_slots, 2);
    assert_int_equal(p->n_free_blocks, 5);
    mr_state_pool_destroy(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_pool)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
