/* config.json and the checkpoint index: the real MiniMax-M1 release files load and validate as-is,
 * and each bad value is rejected with one error naming the file and the key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "common/checkpoint.h"
#include "common/log.h"
#include "common/model_config.h"
#include "common/model_layout.h"

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
    n_errors = 0;
    last_error[0] = '\0';
    return 0;
}

static void test_real_config(void **state) {
    (void)state;
    mr_model_config c;
    assert_int_equal(mr_model_config_load(MR_SHARED_DIR "/minimax-m1/config.json", &c), MR_OK);
    assert_int_equal(c.hidden_size, 6144);
    assert_int_equal(c.num_hidden_layers, 80);
    assert_int_equal(c.num_attention_heads, 64);
    assert_int_equal(c.num_key_value_heads, 8);
    assert_int_equal(c.head_dim, 128);
    assert_int_equal(c.rotary_dim, 64);
    assert_int_equal(c.vocab_size, 200064);
    assert_int_equal(c.intermediate_size, 9216);
    assert_int_equal(c.num_local_experts, 32);
    assert_int_equal(c.num_experts_per_tok, 2);
    assert_true(c.postnorm);
    assert_int_equal(c.eos_token_id, -1); /* null in the release */
    assert_true(c.rope_theta == 1e7);
    /* alpha = (2*80)^(1/4) for all three */
    assert_true(c.alpha_linear == 3.5565588200778455 && c.alpha_full == c.alpha_linear &&
                c.alpha_mlp == c.alpha_linear);
    for (int l = 0; l < 80; l++)
        assert_int_equal(c.attn_type[l], l % 8 == 7 ? MR_ATTN_SOFTMAX : MR_ATTN_LIGHTNING);
    assert_int_equal(mr_model_config_n_lightning(&c), 70);
    assert_int_equal(mr_model_config_type_index(&c, 15), 1);
    assert_int_equal(mr_model_config_type_index(&c, 16), 14);
}

static void test_real_index(void **state) {
    (void)state;
    mr_model_config c;
    assert_int_equal(mr_model_config_load(MR_SHARED_DIR "/minimax-m1/config.json", &c), MR_OK);
    mr_ckpt_index *ix;
    assert_int_equal(
        mr_ckpt_index_load(MR_SHARED_DIR "/minimax-m1/model.safetensors.index.json", &ix), MR_OK);
    assert_int_equal(mr_ckpt_index_n_tensors(ix), 8243);
    assert_int_equal(mr_ckpt_index_n_shards(ix), 413);
    assert_int_equal(mr_ckpt_index_first_shard(ix), 0); /* zero-based, as released */
    assert_string_equal(mr_ckpt_index_shard_of(ix, "model.embed_tokens.weight"),
                        "model-00000-of-00413.safetensors");
    assert_string_equal(mr_ckpt_index_shard_of(ix, "lm_head.weight"),
                        "model-00321-of-00413.safetensors");
    assert_int_equal(mr_ckpt_index_check_layout(ix, "index", &c), MR_OK);
    /* the layout's byte count with F32 routers equals the release's total_size exactly */
    int n = mr_layout_count(&c);
    assert_int_equal(n, 8243);
    static mr_tensor_spec specs[8243];
    mr_layout_build(&c, specs);
    uint64_t total = 0, params = 0;
    for (int i = 0; i < n; i++) {
        total += mr_tensor_spec_bytes(&specs[i]);
        params += mr_tensor_spec_bytes(&specs[i]) / mr_dtype_size(specs[i].dtype);
    }
    assert_true(total == mr_ckpt_index_total_size(ix));
    assert_true(total == 912210767872ull);
    assert_true(params == 456089655296ull);
    mr_ckpt_index_free(ix);
}

/* Applies `edit` (a "key": value replacement or removal) to the real config and parses it. */
static mr_status parse_edited(const char *key, const char *value) {
    static char buf[1 << 16];
    FILE *f = fopen(MR_SHARED_DIR "/minimax-m1/config.json", "rb");
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char needle[128];
    snprintf(needle, sizeof needle, "\"%s\":", key);
    char *p = strstr(buf, needle);
    assert_non_null(p);
    char *v = p + strlen(needle);
    char *end = v;
    int depth = 0;
    while (*end && (depth > 0 || (*end != ',' && *end != '\n'))) {
        if (*end == '[') depth++;
        if (*end == ']') depth--;
        end++;
    }
    static char out[1 << 16];
    if (value)
        snprintf(out, sizeof out, "%.*s %s%s", (int)(v - buf), buf, value, end);
    else /* remove the key: rename it */
        snprintf(out, sizeof out, "%.*s\"removed_%s\":%s", (int)(p - buf), buf, key, v);
    mr_model_config c;
    return mr_model_config_parse("config.json", out, strlen(out), &c);
}

static void test_bad_values(void **state) {
    (void)state;
    static const struct {
        const char *key, *value, *mention;
    } cases[] = {
        {"hidden_size", "\"6144\"", "'hidden_size' must be an integer"},
        {"hidden_size", "0", "'hidden_size' = 0 is out of range"},
        {"num_hidden_layers", NULL, "'num_hidden_layers' is missing"},
        {"num_attention_heads", "48", "'num_attention_heads'"},
        {"num_key_value_heads", "7", "'num_key_value_heads'"},
        {"rotary_dim", "63", "'rotary_dim'"},
        {"rotary_dim", "256", "'rotary_dim'"},
        {"num_experts_per_tok", "33", "'num_experts_per_tok'"},
        {"attn_type_list", "[0, 1]", "'attn_type_list' has 2 entries"},
        {"rms_norm_eps", "-1", "'rms_norm_eps'"},
        {"postnorm", "1", "'postnorm' must be true or false"},
        {"hidden_act", "\"gelu\"", "'hidden_act'"},
        {"shared_intermediate_size", "128", "'shared_intermediate_size'"},
        {"layernorm_mlp_alpha", "\"x\"", "'layernorm_mlp_alpha' must be a number"},
        {"vocab_size", "-5", "'vocab_size'"},
        {"sliding_window", "4096", "'sliding_window'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        n_errors = 0;
        last_error[0] = '\0';
        assert_int_not_equal(parse_edited(cases[i].key, cases[i].value), MR_OK);
        if (!strstr(last_error, cases[i].mention))
            fail_msg("case %s=%s: error '%s' lacks '%s'", cases[i].key,
                     cases[i].value ? cases[i].value : "(removed)", last_error, cases[i].mention);
        assert_non_null(strstr(last_error, "config.json"));
        if (n_errors != 1)
            fail_msg("case %s: %d error lines, last '%s'", cases[i].key, n_errors, last_error);
    }
    /* and the unedited text is accepted */
    assert_int_equal(parse_edited("hidden_size", "6144"), MR_OK);
    mr_model_config c;
    assert_int_not_equal(mr_model_config_parse("config.json", "{\"a\":1,\"a\":2}", 13, &c), MR_OK);
    assert_int_not_equal(mr_model_config_load("/nonexistent/config.json", &c), MR_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_real_config, setup),
        cmocka_unit_test_setup(test_real_index, setup),
        cmocka_unit_test_setup(test_bad_values, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
