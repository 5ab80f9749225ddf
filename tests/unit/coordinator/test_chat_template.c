/* Chat template: byte-identical to Jinja's rendering of the official template (goldens from
 * tests/reference/render_chat_template.py), floats written as Python's repr, and one clear error
 * for each input the template cannot render. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/log.h"
#include "coordinator/chat_template.h"
#include "coordinator/pyjson.h"

#define DATA MR_SOURCE_DIR "/tests/data/chat_template"

static char last_error[4096];
static int n_errors, n_warnings;

static void capture(void *user, mr_log_level level, unsigned subsys, const char *line) {
    (void)user;
    (void)subsys;
    if (level == MR_LOG_LEVEL_ERROR) {
        snprintf(last_error, sizeof last_error, "%s", line);
        n_errors++;
    } else if (level == MR_LOG_LEVEL_WARN) {
        n_warnings++;
    }
}

static int setup(void **state) {
    (void)state;
    mr_log_set_sink(capture, NULL);
    mr_log_set_level(MR_LOG_LEVEL_WARN);
    return 0;
}

static json_t *load(const char *path) {
    json_error_t e;
    json_t *j = json_load_file(path, JSON_DECODE_ANY, &e);
    if (!j) fprintf(stderr, "%s:%d: %s\n", path, e.line, e.text);
    assert_non_null(j);
    return j;
}

static void test_jinja_goldens(void **state) {
    (void)state;
    json_t *convs = load(DATA "/conversations.json"), *g = load(DATA "/goldens.json");
    json_t *cases = json_object_get(g, "cases");
    assert_int_equal(json_array_size(convs), json_array_size(cases));
    size_t i;
    json_t *c;
    json_array_foreach(convs, i, c) {
        json_t *want = json_object_get(json_array_get(cases, i), "rendered");
        char *out;
        size_t len;
        assert_int_equal(mr_chat_template_render_request(json_object_get(c, "request"), &out, &len),
                         MR_OK);
        if (len != json_string_length(want) || memcmp(out, json_string_value(want), len) != 0) {
            fprintf(stderr, "case %s:\n--- jinja\n%s\n--- moerack\n%s\n",
                    json_string_value(json_object_get(c, "name")), json_string_value(want), out);
            fail();
        }
        free(out);
    }
    printf("  %zu conversations byte-identical to jinja2 %s\n", json_array_size(convs),
           json_string_value(json_object_get(json_object_get(g, "meta"), "jinja2")));
    json_decref(convs);
    json_decref(g);
}

static void test_float_repr(void **state) {
    (void)state;
    json_t *reprs = load(DATA "/float_repr.json");
    size_t i;
    json_t *r;
    json_array_foreach(reprs, i, r) {
        const char *want = json_string_value(r);
        json_t *num = json_loads(want, JSON_DECODE_ANY, NULL);
        assert_non_null(num);
        char got[32];
        mr_pyjson_float_repr(json_number_value(num), got);
        if (strcmp(got, want) != 0) {
            fprintf(stderr, "repr: python %s, moerack %s\n", want, got);
            fail();
        }
        json_decref(num);
    }
    printf("  %zu doubles written as Python's repr\n", json_array_size(reprs));
    json_decref(reprs);
}

static void test_pyjson_strings(void **state) {
    (void)state;
    json_t *v = json_pack("{s:s%, s:[i, b, n, f]}", "k\"\\", "a\x01\x1f\x7f\xc3\xa9\n\t\b\f\r/\0z",
                          (size_t)14, "n", -7, 1, 0.5);
    assert_non_null(v);
    mr_sbuf b = {0};
    mr_pyjson_dump(&b, v);
    char *out;
    size_t len;
    assert_int_equal(mr_sbuf_take(&b, &out, &len), MR_OK);
    /* what json.dumps({"k\"\\": "a\x01\x1f\x7fé\n\t\b\f\r/\x00z", "n": [-7, True, None, 0.5]},
     * ensure_ascii=False) writes */
    static const char want[] = "{\"k\\\"\\\\\": \"a\\u0001\\u001f\x7f\xc3\xa9\\n\\t\\b\\f\\r/"
                               "\\u0000z\", \"n\": [-7, true, null, 0.5]}";
    assert_string_equal(out, want);
    free(out);
    json_decref(v);
}

static void test_errors(void **state) {
    (void)state;
    static const struct {
        const char *request, *msg;
    } cases[] = {
        {"{\"messages\": 5}", "messages must be a list"},
        {"{\"messages\": [], \"tools\": {}}", "tools must be a list"},
        {"{\"messages\": [{\"role\": \"developer\", \"content\": \"x\"}]}",
         "messages[0]: role must be system, user, assistant or tool"},
        {"{\"messages\": [{\"content\": \"x\"}]}", "messages[0]: role must be"},
        {"{\"messages\": [\"hi\"]}", "messages[0]: role must be"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"user\"}]}",
         "messages[1] (user): content must be a string or a list"},
        {"{\"messages\": [{\"role\": \"system\", \"content\": [{\"type\": \"text\"}]}]}",
         "messages[0] (system): content must be"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": []}]}",
         "messages[0] (user): content must be"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": [{\"text\": 5}]}]}",
         "messages[0] (user): content must be"},
        {"{\"messages\": [{\"role\": \"assistant\", \"content\": 5}]}",
         "messages[0] (assistant): content must be a string, a list of parts or null"},
        {"{\"messages\": [{\"role\": \"assistant\", \"content\": [{\"type\": \"text\", \"text\": "
         "[]}]}]}",
         "messages[0].content[0]: \"text\" must be a string"},
        {"{\"messages\": [{\"role\": \"assistant\", \"content\": \"\", \"reasoning_content\": 1}]}",
         "messages[0].reasoning_content must be a string"},
        {"{\"messages\": [{\"role\": \"assistant\", \"tool_calls\": {}}]}",
         "messages[0].tool_calls must be a list"},
        {"{\"messages\": [{\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"name\": "
         "\"f\", \"arguments\": \"{not json\"}}]}]}",
         "messages[0].tool_calls[0]: needs function.name"},
        {"{\"messages\": [{\"role\": \"assistant\", \"tool_calls\": [{\"function\": "
         "{\"arguments\": {}}}]}]}",
         "messages[0].tool_calls[0]: needs function.name"},
        {"{\"messages\": [{\"role\": \"tool\", \"content\": \"r\"}]}",
         "messages[0] (tool): string content needs a \"name\" or a \"tool_call_id\""},
        {"{\"messages\": [{\"role\": \"tool\", \"tool_call_id\": \"c9\", \"content\": \"r\"}]}",
         "messages[0] (tool): string content needs"},
        {"{\"messages\": [{\"role\": \"tool\", \"content\": [{\"type\": \"text\", \"text\": "
         "\"r\"}]}]}",
         "messages[0].content[0] (tool): needs string \"name\" and \"text\""},
        {"{\"messages\": [{\"role\": \"tool\", \"content\": 3}]}",
         "messages[0] (tool): content must be a string, a list or null"},
        {"{\"messages\": [], \"add_generation_prompt\": 1}",
         "add_generation_prompt must be a boolean"},
        {"7", "a request object or a list of messages expected"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *req = json_loads(cases[i].request, JSON_DECODE_ANY, NULL);
        assert_non_null(req);
        char *out = NULL;
        size_t len;
        last_error[0] = '\0';
        n_errors = 0;
        mr_status st = mr_chat_template_render_request(req, &out, &len);
        if (st != MR_ERR_INVALID || n_errors != 1 || !strstr(last_error, cases[i].msg)) {
            fprintf(stderr, "case %zu: %s, %d errors, last '%s'\n", i, mr_status_str(st), n_errors,
                    last_error);
            fail();
        }
        assert_null(out);
        json_decref(req);
    }
}

/* The template reads only the first part of a user message: said once, as a warning. */
static void test_first_part_warning(void **state) {
    (void)state;
    json_t *req = json_loads("[{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": "
                             "\"a\"}, {\"type\": \"text\", \"text\": \"b\"}]}]",
                             0, NULL);
    char *out;
    size_t len;
    n_warnings = 0;
    assert_int_equal(mr_chat_template_render_request(req, &out, &len), MR_OK);
    assert_int_equal(n_warnings, 1);
    assert_null(strstr(out, "b<end_of_sentence>"));
    free(out);
    json_decref(req);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jinja_goldens),      cmocka_unit_test(test_float_repr),
        cmocka_unit_test(test_pyjson_strings),     cmocka_unit_test(test_errors),
        cmocka_unit_test(test_first_part_warning),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
