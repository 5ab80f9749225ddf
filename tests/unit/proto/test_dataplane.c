/* The data-plane header check (proto/dataplane.h): what a receiver accepts of a REQUEST and a
 * REPLY in each wire dtype, and the one-line reasons for what it refuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "proto/dataplane.h"

static const mr_dp_limits LIM = {80, 4096, 2, 6144, 1ull << 30};

static mr_dp_header make(mr_dp_kind kind, mr_dp_dtype dt, uint32_t n) {
    mr_dp_header h;
    mr_dp_header_init(&h, kind);
    h.layer = 3;
    h.n_tokens = n;
    h.top_k = 2;
    h.hidden = 6144;
    h.dtype = (uint16_t)dt;
    h.payload_bytes = kind == MR_DP_REQUEST ? mr_dp_request_bytes(n, 2, 6144, dt)
                                            : mr_dp_reply_bytes(n, 6144, dt);
    return h;
}

static mr_status check(const mr_dp_header *h, char *why) {
    return mr_dp_header_check(h, &LIM, 1u << MR_DP_REQUEST | 1u << MR_DP_REPLY, why, 200);
}

static void test_sizes(void **state) {
    (void)state;
    assert_int_equal(mr_dp_request_bytes(5, 2, 6144, MR_DP_F32), 5 * 16 + 5 * 6144 * 4);
    assert_int_equal(mr_dp_request_bytes(5, 2, 6144, MR_DP_BF16), 5 * 16 + 5 * 6144 * 2);
    assert_int_equal(mr_dp_reply_bytes(5, 6144, MR_DP_F32), 5 * 6144 * 4);
    assert_int_equal(mr_dp_reply_bytes(5, 6144, MR_DP_BF16), 5 * 6144 * 2);
    /* slots are sized for the widest dtype */
    assert_true(mr_dp_max_payload(4096, 2, 6144) >= mr_dp_request_bytes(4096, 2, 6144, MR_DP_F32));
}

static void test_both_dtypes_accepted(void **state) {
    (void)state;
    char why[200];
    for (int dt = MR_DP_F32; dt <= MR_DP_BF16; dt++) {
        mr_dp_header rq = make(MR_DP_REQUEST, (mr_dp_dtype)dt, 77),
                     rp = make(MR_DP_REPLY, (mr_dp_dtype)dt, 77);
        assert_int_equal(check(&rq, why), MR_OK);
        assert_int_equal(check(&rp, why), MR_OK);
    }
}

static void test_refused(void **state) {
    (void)state;
    char why[200];
    mr_dp_header h = make(MR_DP_REPLY, MR_DP_BF16, 10);
    h.dtype = 7; /* unknown */
    assert_int_equal(check(&h, why), MR_ERR_PROTO);
    assert_non_null(strstr(why, "dtype 7"));
    h = make(MR_DP_REPLY, MR_DP_BF16, 10);
    h.payload_bytes = mr_dp_reply_bytes(10, 6144, MR_DP_F32); /* f32 bytes labelled bf16 */
    assert_int_equal(check(&h, why), MR_ERR_PROTO);
    assert_non_null(strstr(why, "reply payload"));
    h = make(MR_DP_REQUEST, MR_DP_F32, 10);
    h.payload_bytes = mr_dp_request_bytes(10, 2, 6144, MR_DP_BF16); /* bf16 bytes labelled f32 */
    assert_int_equal(check(&h, why), MR_ERR_PROTO);
    assert_non_null(strstr(why, "request payload"));
    h = make(MR_DP_REPLY, MR_DP_F32, 4097); /* over max_tokens */
    assert_int_equal(check(&h, why), MR_ERR_PROTO);
    assert_non_null(strstr(why, "token count"));
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_sizes),
                                       cmocka_unit_test(test_both_dtypes_accepted),
                                       cmocka_unit_test(test_refused)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
