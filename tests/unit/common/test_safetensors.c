/* safetensors: round trip through the writer, and rejection of every malformed header with an
 * error naming the file and the tensor. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/log.h"
#include "common/safetensors.h"

static char last_error[4096];
static int n_errors;

static void capture(void *user, mr_log_level level, unsigned subsys, const char *line) {
    (void)user;
    (void)subsys;
    if (level == MR_LOG_LEVEL_ERROR) {
        snprintf(last_error, sizeof last_error, "%s", line);
        n_errors++;
    }
}

static int setup(void **state) {
    (void)state;
    mr_log_set_sink(capture, NULL);
    last_error[0] = '\0';
    n_errors = 0;
    return 0;
}

static mr_status fill_iota(void *user, const char *name, void *dst, size_t nbytes) {
    (void)user;
    (void)name;
    for (size_t i = 0; i < nbytes; i++) ((unsigned char *)dst)[i] = (unsigned char)(i * 7 + 3);
    return MR_OK;
}

static void test_round_trip(void **state) {
    (void)state;
    char path[] = "/tmp/mr_st_test_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    mr_st_write_item items[2] = {
        {.name = "a.weight", .dtype = MR_DTYPE_BF16, .ndim = 2, .shape = {3, 5}, .fill = fill_iota},
        {.name = "b.router", .dtype = MR_DTYPE_F32, .ndim = 1, .shape = {7}, .fill = fill_iota},
    };
    const char *md[] = {"format", "pt"};
    assert_int_equal(mr_st_write(path, items, 2, md, 1), MR_OK);
    mr_st_file *f;
    assert_int_equal(mr_st_open(path, &f), MR_OK);
    assert_int_equal(mr_st_count(f), 2);
    const mr_st_tensor *t = mr_st_find(f, "a.weight");
    assert_non_null(t);
    assert_int_equal(t->dtype, MR_DTYPE_BF16);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 3);
    assert_int_equal(t->shape[1], 5);
    const unsigned char *d = mr_st_data(f, t);
    for (int i = 0; i < 30; i++) assert_int_equal(d[i], (unsigned char)(i * 7 + 3));
    assert_non_null(mr_st_find(f, "b.router"));
    assert_null(mr_st_find(f, "c"));
    assert_string_equal(mr_st_metadata(f, "format"), "pt");
    mr_st_close(f);

    /* the same file truncated by one byte: the last tensor now runs past the end */
    FILE *fp = fopen(path, "r+b");
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fclose(fp);
    assert_int_equal(truncate(path, size - 1), 0);
    assert_int_equal(mr_st_open(path, &f), MR_ERR_FORMAT);
    assert_non_null(strstr(last_error, path));
    assert_non_null(strstr(last_error, "b.router"));
    assert_non_null(strstr(last_error, "truncated"));
    /* and cut inside the header */
    assert_int_equal(truncate(path, 20), 0);
    assert_int_equal(mr_st_open(path, &f), MR_ERR_FORMAT);
    assert_non_null(strstr(last_error, "header length"));
    assert_int_equal(truncate(path, 3), 0);
    assert_int_equal(mr_st_open(path, &f), MR_ERR_FORMAT);
    unlink(path);
    assert_int_equal(mr_st_open(path, &f), MR_ERR_NOT_FOUND);
}

typedef struct bad_case {
    const char *json;
    uint64_t data_size;
    const char *must_mention; /* substring of the error line */
} bad_case;

static void test_bad_headers(void **state) {
    (void)state;
    static const bad_case cases[] = {
        {"{", 100, "not valid JSON"},
        {"[1,2]", 100, "not a JSON object"},
        {"{\"t\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]},"
         "\"t\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[4,8]}}",
         100, "duplicate"},
        {"{\"t\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,4]}}", 100,
         "'t': unsupported dtype 'Q4'"},
        {"{\"t\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,4]}}", 100,
         "'t': data_offsets [0, 4] hold 4 bytes"},
        {"{\"t\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[96,100]}}", 99,
         "'t': data_offsets [96, 100] run past"},
        {"{\"t\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[8,4]}}", 100,
         "'t': data_offsets must be"},
        {"{\"t\":{\"dtype\":\"BF16\",\"shape\":[-2],\"data_offsets\":[0,4]}}", 100,
         "'t': shape[0]"},
        {"{\"t\":{\"dtype\":\"BF16\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,2]}}", 100,
         "'t': 9 dims"},
        {"{\"t\":{\"dtype\":\"BF16\",\"shape\":[2]}}", 100, "'t': header entry needs"},
        {"{\"t\":5}", 100, "'t': header entry is not an object"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,4]}"
         "}",
         100, "'t': shape too large"},
        {"{\"a\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[4,12]}}",
         100, "overlap"},
        {"{\"__metadata__\":{\"k\":1}}", 100, "__metadata__ value 'k'"},
        {"{\"__metadata__\":[]}", 100, "__metadata__ is not an object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mr_st_file *f = NULL;
        n_errors = 0;
        mr_status st = mr_st_parse_header("x.safetensors", cases[i].json, strlen(cases[i].json),
                                          cases[i].data_size, &f);
        if (st == MR_OK) fail_msg("case %zu accepted: %s", i, cases[i].json);
        if (!strstr(last_error, cases[i].must_mention))
            fail_msg("case %zu: error '%s' does not mention '%s'", i, last_error,
                     cases[i].must_mention);
        assert_non_null(strstr(last_error, "x.safetensors"));
        assert_int_equal(n_errors, 1); /* one clear line, not a cascade */
    }
}

static void test_empty_and_zero_sized(void **state) {
    (void)state;
    mr_st_file *f;
    const char *j = "{\"z\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[0,0]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    assert_int_equal(mr_st_parse_header("x", j, strlen(j), 4, &f), MR_OK);
    assert_int_equal(mr_st_count(f), 2);
    assert_null(mr_st_data(f, mr_st_find(f, "a"))); /* header-only object has no mapping */
    mr_st_close(f);
    assert_int_equal(mr_st_parse_header("x", "{}", 2, 0, &f), MR_OK);
    assert_int_equal(mr_st_count(f), 0);
    mr_st_close(f);
}

/* Random mutations of a valid header never crash and never yield an entry outside the data. */
static void test_mutations_never_crash(void **state) {
    (void)state;
    const char *base = "{\"__metadata__\":{\"format\":\"pt\"},"
                       "\"w\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
                       "\"r\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[12,24]}}";
    size_t n = strlen(base);
    char buf[256];
    uint64_t rng = 12345;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(buf, base, n);
        int edits = 1 + (int)(rng % 4);
        for (int e = 0; e < edits; e++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            buf[(rng >> 33) % n] = (char)(rng >> 56);
        }
        mr_st_file *f = NULL;
        if (mr_st_parse_header("m", buf, n, 24, &f) == MR_OK) {
            for (int i = 0; i < mr_st_count(f); i++) assert_true(mr_st_at(f, i)->end <= 24);
            mr_st_close(f);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_round_trip, setup),
        cmocka_unit_test_setup(test_bad_headers, setup),
        cmocka_unit_test_setup(test_empty_and_zero_sized, setup),
        cmocka_unit_test_setup(test_mutations_never_crash, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
