/* Scalar conversions: bf16 round-to-nearest-even, f16 and f8_e4m3 decoding; the f32 -> bf16 array
 * form. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/dtype.h"

static void test_bf16_round_trip_and_rne(void **state) {
    (void)state;
    /* every bf16 value converts to f32 and back unchanged (NaNs stay NaN) */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = mr_bf16_to_f32((uint16_t)h);
        if (isnan(f))
            assert_true(isnan(mr_bf16_to_f32(mr_f32_to_bf16(f))));
        else
            assert_int_equal(mr_f32_to_bf16(f), h);
    }
    /* halfway cases round to even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 */
    assert_int_equal(mr_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
    assert_int_equal(mr_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
    assert_int_equal(mr_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
}

static void test_f16(void **state) {
    (void)state;
    assert_true(mr_f16_to_f32(0x3c00) == 1.0f);
    assert_true(mr_f16_to_f32(0xc000) == -2.0f);
    assert_true(mr_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(mr_f16_to_f32(0x0001) == 0x1p-24f);
    assert_true(isinf(mr_f16_to_f32(0x7c00)));
    assert_true(isnan(mr_f16_to_f32(0x7e00)));
    for (uint32_t h = 0; h < 65536; h++) {
        float f = mr_f16_to_f32((uint16_t)h);
        if (!isnan(f)) assert_int_equal(mr_f32_to_f16(f), h);
    }
}

static void test_f8_e4m3(void **state) {
    (void)state;
    assert_true(mr_f8e4m3_to_f32(0x38) == 1.0f);   /* exp 7, man 0 */
    assert_true(mr_f8e4m3_to_f32(0x7e) == 448.0f); /* max finite */
    assert_true(mr_f8e4m3_to_f32(0xfe) == -448.0f);
    assert_true(mr_f8e4m3_to_f32(0x01) == 0x1p-9f); /* smallest subnormal */
    assert_true(isnan(mr_f8e4m3_to_f32(0x7f)));
    assert_true(isnan(mr_f8e4m3_to_f32(0xff)));
    assert_true(mr_f8e4m3_to_f32(0x00) == 0.0f);
}

/* The array form gives each element's scalar conversion, also when narrowing in place. */
static void test_f32_to_bf16_array(void **state) {
    (void)state;
    enum { N = 1000 };
    float src[N], inplace[N];
    uint16_t out[N];
    for (int i = 0; i < N; i++)
        src[i] = inplace[i] = (float)(i - N / 2) * 0.37f + (float)i * 1e-4f * (float)(i % 7);
    mr_convert_f32_to_bf16(src, out, N);
    mr_convert_f32_to_bf16(inplace, inplace, N);
    for (int i = 0; i < N; i++) {
        uint16_t narrowed; /* the bytes, not a uint16_t lvalue on float storage */
        memcpy(&narrowed, (const unsigned char *)inplace + 2 * i, sizeof narrowed);
        assert_int_equal(out[i], mr_f32_to_bf16(src[i]));
        assert_int_equal(narrowed, out[i]);
    }
}

static void test_names(void **state) {
    (void)state;
    for (int t = 0; t < MR_DTYPE_COUNT; t++)
        assert_int_equal(mr_dtype_parse(mr_dtype_name((mr_dtype)t)), t);
    assert_int_equal(mr_dtype_parse("BF17"), -1);
    assert_int_equal(mr_dtype_size(MR_DTYPE_BF16), 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_round_trip_and_rne),
        cmocka_unit_test(test_f16),
        cmocka_unit_test(test_f8_e4m3),
        cmocka_unit_test(test_f32_to_bf16_array),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
