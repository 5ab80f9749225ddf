/* The sampler's split into draw + reference (coordinator/sampling.h, kernels/sample.h): the host
 * path with its own draw equals the device path's inputs (mr_sampler_draw, mr_sampler_row,
 * mr_sampler_next_u) token for token; the row checks refuse bad parameters; which rows a device
 * sampler takes; the sample op of cpu-resident (validation, contract, hand-backs). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/rng.h"
#include "coordinator/sampling.h"
#include "kernels/backend.h"

enum { V = 3000 };

static void fill(float *x, uint64_t seed) {
    for (int i = 0; i < V; i++) x[i] = 3.0f * mr_rng_uniform_pm1(&seed);
}

/* mr_sampler_next == mr_sampler_draw + mr_sampler_next_u, over many tokens and settings. */
static void test_draw_split(void **state) {
    (void)state;
    float *x = malloc(V * sizeof *x), *work = malloc(3 * V * sizeof *work);
    static const float temps[] = {0.0f, 1.0f, 0.7f, 1.3f};
    static const float topps[] = {1.0f, 0.9f, 0.5f, 1.0f};
    static const int topks[] = {0, 0, 40, 2000};
    for (int c = 0; c < 4; c++) {
        mr_sampling_params p;
        mr_sampling_params_default(&p);
        p.temperature = temps[c];
        p.top_p = topps[c];
        p.top_k = topks[c];
        p.has_seed = 1;
        p.seed = 77 + (uint64_t)c;
        mr_sampler a, b;
        mr_sampler_init(&a, &p, 0);
        mr_sampler_init(&b, &p, 0);
        int distinct = 0;
        int32_t first = -1;
        for (int t = 0; t < 40; t++) {
            fill(x, 1000 + (uint64_t)t);
            mr_sample_result ra, rb;
            const int32_t ta = mr_sampler_next(&a, x, V, NULL, 0, 3, work, &ra);
            const double u = mr_sampler_draw(&b);
            const int32_t tb = mr_sampler_next_u(&b, u, x, V, NULL, 0, 3, work, &rb);
            assert_int_equal(ta, tb);
            assert_true(ra.logprob == rb.logprob);
            if (temps[c] == 0.0f) assert_true(u == 0.0);
            mr_sample_row row;
            mr_sampler_row(&b, u, 3, &row);
            assert_int_equal(mr_sample_row_check(&row, V, 1), MR_OK);
            assert_int_equal(mr_sample_ref(&row, x, V, 1.0f, NULL, 0, work, NULL), ta);
            distinct += t > 0 && ta != first;
            if (t == 0) first = ta;
        }
        assert_true(distinct > 0);
    }
    free(x);
    free(work);
}

static void test_row_check(void **state) {
    (void)state;
    const mr_sample_row good = {.row = 0, .temperature = 1.0f, .top_p = 1.0f, .u = 0.25};
    assert_int_equal(mr_sample_row_check(&good, V, 1), MR_OK);
    mr_sample_row r = good;
    r.row = 1;
    assert_int_equal(mr_sample_row_check(&r, V, 1), MR_ERR_INVALID);
    r = good, r.temperature = -0.5f;
    assert_int_equal(mr_sample_row_check(&r, V, 1), MR_ERR_INVALID);
    r = good, r.temperature = INFINITY;
    assert_int_equal(mr_sample_row_check(&r, V, 1), MR_ERR_INVALID);
    r = good, r.top_p = 1.5f;
    assert_int_equal(mr_sample_row_check(&r, V, 1), MR_ERR_INVALID);
    r = good, r.top_k = -1;
    assert_int_equal(mr_sample_row_check(&r, V, 1), MR_ERR_INVALID);
    r = good, r.n_top = MR_MAX_TOP_LOGPROBS + 1;
    assert_int_equal(mr_sample_row_check(&r, V, 1), MR_ERR_INVALID);
    r = good, r.u = 1.0;
    assert_int_equal(mr_sample_row_check(&r, V, 1), MR_ERR_INVALID);
    /* what a device sampler takes */
    r = good, r.top_k = MR_SAMPLE_MAX_CANDIDATES;
    assert_true(mr_sample_row_fits_device(&r, V));
    r.top_k = MR_SAMPLE_MAX_CANDIDATES + 1;
    assert_false(mr_sample_row_fits_device(&r, V));
    r.temperature = 0.0f; /* greedy: always */
    assert_true(mr_sample_row_fits_device(&r, V));
    r = good, r.top_p = 0.9f;
    assert_true(mr_sample_row_fits_device(&r, V));
    r.vocab_limit = 1000; /* top-p alone on <= 1024 ids: ordered by probability, on the host */
    assert_false(mr_sample_row_fits_device(&r, V));
}

/* The op of cpu-resident: the reference's tokens, hand-backs, refusals. */
static void test_resident_op(void **state) {
    (void)state;
    mr_backend_params bp = {.n_threads = 1,
                            .max_tokens = 4,
                            .hidden = 8,
                            .inter = 8,
                            .n_heads = 1,
                            .head_dim = 8,
                            .block_size = 4,
                            .max_experts = 1,
                            .top_k = 1};
    mr_backend *be;
    assert_int_equal(mr_backend_create("cpu-resident", &bp, &be), MR_OK);
    assert_non_null(be->ops->sample);
    float *d_x;
    assert_int_equal(be->ops->alloc(be, 2 * V * sizeof(float), MR_MEM_DEVICE, (void **)&d_x),
                     MR_OK);
    float *x = malloc(2 * V * sizeof *x), *work = malloc(3 * V * sizeof *work);
    fill(x, 5);
    fill(x + V, 6);
    memcpy(d_x, x, 2 * V * sizeof *x);
    mr_sample_row rows[3] = {
        {.row = 1, .temperature = 0.8f, .top_p = 0.9f, .n_top = 4, .u = 0.3},
        {.row = 0, .temperature = 0.0f, .top_p = 1.0f, .n_top = 2},
        {.row = 0, .temperature = 1.0f, .top_p = 1.0f, .top_k = 1500, .u = 0.6}, /* handed back */
    };
    int32_t tok[3];
    mr_sample_result res[3];
    assert_int_equal(be->ops->sample(be, d_x, 2, V, rows, 3, tok, res), MR_OK);
    for (int i = 0; i < 2; i++) {
        mr_sample_result r;
        assert_int_equal(tok[i], mr_sample_ref(&rows[i], x + (size_t)rows[i].row * V, V, 1.0f, NULL,
                                               0, work, &r));
        assert_true(res[i].logprob == r.logprob);
        assert_int_equal(res[i].n_top, rows[i].n_top);
    }
    assert_int_equal(tok[2], MR_SAMPLE_ON_HOST);
    rows[0].row = 2; /* past the logits: refused */
    assert_int_equal(be->ops->sample(be, d_x, 2, V, rows, 3, tok, res), MR_ERR_INVALID);
    be->ops->free(be, d_x, MR_MEM_DEVICE);
    mr_backend_destroy(be);
    free(x);
    free(work);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_draw_split),
                                       cmocka_unit_test(test_row_check),
                                       cmocka_unit_test(test_resident_op)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
