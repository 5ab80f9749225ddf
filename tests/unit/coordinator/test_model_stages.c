/* The layer split into stages: contiguous, every stage at least one layer, the first holding the
 * embedding's bytes and the last the LM head's, and no other split has a smaller largest stage
 * (checked against every split by brute force); bad stage counts are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/rng.h"
#include "coordinator/model_stages.h"

/* Checks the plan's shape and byte counts; returns its largest stage. */
static size_t check_shape(const mr_stage_plan *p, const size_t *lb, int L, size_t first,
                          size_t last, int S) {
    assert_int_equal(p->n_stages, S);
    assert_int_equal(p->first_layer[0], 0);
    assert_int_equal(p->first_layer[S], L);
    size_t worst = 0;
    for (int s = 0; s < S; s++) {
        assert_true(p->first_layer[s] < p->first_layer[s + 1]); /* at least one layer */
        size_t b = (s == 0 ? first : 0) + (s == S - 1 ? last : 0);
        for (int l = p->first_layer[s]; l < p->first_layer[s + 1]; l++) {
            b += lb[l];
            assert_int_equal(mr_stage_plan_stage_of(p, l), s);
        }
        assert_true(p->bytes[s] == b);
        if (b > worst) worst = b;
    }
    return worst;
}

/* The smallest largest stage over every split of layers [from, L) into stages s.. S-1. */
static size_t brute(const size_t *lb, int L, size_t first, size_t last, int S, int s, int from) {
    if (s == S - 1) {
        size_t b = last + (s == 0 ? first : 0);
        for (int l = from; l < L; l++) b += lb[l];
        return b;
    }
    size_t best = SIZE_MAX;
    for (int end = from + 1; end <= L - (S - 1 - s); end++) {
        size_t b = s == 0 ? first : 0;
        for (int l = from; l < end; l++) b += lb[l];
        const size_t rest = brute(lb, L, first, last, S, s + 1, end);
        const size_t worst = b > rest ? b : rest;
        if (worst < best) best = worst;
    }
    return best;
}

static void test_even(void **state) {
    (void)state;
    size_t lb[8] = {10, 10, 10, 10, 10, 10, 10, 10};
    mr_stage_plan p;
    assert_int_equal(mr_stage_plan_make(lb, 8, 0, 0, 2, &p), MR_OK);
    assert_int_equal(p.first_layer[1], 4);
    assert_true(check_shape(&p, lb, 8, 0, 0, 2) == 40);
    assert_int_equal(mr_stage_plan_make(lb, 8, 0, 0, 1, &p), MR_OK); /* one stage: everything */
    assert_true(check_shape(&p, lb, 8, 0, 0, 1) == 80);
    assert_int_equal(mr_stage_plan_make(lb, 8, 0, 0, 8, &p), MR_OK); /* one layer each */
    assert_true(check_shape(&p, lb, 8, 0, 0, 8) == 10);
}

static void test_extras(void **state) {
    (void)state;
    size_t lb[4] = {10, 10, 10, 10};
    mr_stage_plan p;
    /* the embedding weighs 25: stage 0 takes only layer 0 (35 vs 30), not two (45 vs 20) */
    assert_int_equal(mr_stage_plan_make(lb, 4, 25, 0, 2, &p), MR_OK);
    assert_int_equal(p.first_layer[1], 1);
    assert_true(check_shape(&p, lb, 4, 25, 0, 2) == 35);
    /* the LM head weighs 25: the last stage takes one layer */
    assert_int_equal(mr_stage_plan_make(lb, 4, 0, 25, 2, &p), MR_OK);
    assert_int_equal(p.first_layer[1], 3);
    assert_true(check_shape(&p, lb, 4, 0, 25, 2) == 35);
}

/* MiniMax-M1's shape: 7 lightning layers then a softmax one, embedding and LM head of 2.46 GB. */
static void test_m1_like(void **state) {
    (void)state;
    size_t lb[80];
    for (int l = 0; l < 80; l++) lb[l] = l % 8 == 7 ? 176160768u : 377487360u;
    for (int S = 1; S <= 8; S++) {
        mr_stage_plan p;
        assert_int_equal(mr_stage_plan_make(lb, 80, 2458386432u, 2458386432u, S, &p), MR_OK);
        const size_t worst = check_shape(&p, lb, 80, 2458386432u, 2458386432u, S);
        size_t best = SIZE_MAX;
        for (int s = 0; s < S; s++) best = p.bytes[s] < best ? p.bytes[s] : best;
        /* balanced: moving any boundary layer cannot help, so stages differ by about a layer
         * plus the extras' granularity */
        if (S > 1) assert_true(worst - best <= 2 * 377487360u);
    }
}

static void test_optimal_random(void **state) {
    (void)state;
    uint64_t rs = 7;
    for (int trial = 0; trial < 300; trial++) {
        const int L = 1 + (int)(mr_splitmix64(&rs) % 10);
        const int S = 1 + (int)(mr_splitmix64(&rs) % (uint64_t)L);
        size_t lb[10];
        for (int l = 0; l < L; l++) lb[l] = 1 + mr_splitmix64(&rs) % 100;
        const size_t first = mr_splitmix64(&rs) % 150, last = mr_splitmix64(&rs) % 150;
        mr_stage_plan p;
        assert_int_equal(mr_stage_plan_make(lb, L, first, last, S, &p), MR_OK);
        const size_t worst = check_shape(&p, lb, L, first, last, S);
        assert_true(worst == brute(lb, L, first, last, S, 0, 0));
    }
}

static void test_invalid(void **state) {
    (void)state;
    size_t lb[4] = {1, 2, 3, 4};
    mr_stage_plan p;
    assert_int_equal(mr_stage_plan_make(lb, 4, 0, 0, 0, &p), MR_ERR_INVALID);
    assert_int_equal(mr_stage_plan_make(lb, 4, 0, 0, 5, &p), MR_ERR_INVALID); /* > layers */
    assert_int_equal(mr_stage_plan_make(lb, 0, 0, 0, 1, &p), MR_ERR_INVALID);
    size_t many[MR_MAX_STAGES + 1] = {0};
    assert_int_equal(mr_stage_plan_make(many, MR_MAX_STAGES + 1, 0, 0, MR_MAX_STAGES + 1, &p),
                     MR_ERR_INVALID);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_even),    cmocka_unit_test(test_extras),
        cmocka_unit_test(test_m1_like), cmocka_unit_test(test_optimal_random),
        cmocka_unit_test(test_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
