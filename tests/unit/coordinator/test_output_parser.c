/* Output parser: every case is parsed whole, one byte at a time, at every split into two and
 * three chunks, at every chunking for short texts, and at random chunkings; each must give the
 * expected transcript (content, reasoning, tool calls and malformed reports, in order). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/log.h"
#include "common/rng.h"
#include "coordinator/output_parser.h"
#include "coordinator/pyjson.h"

/* Transcript: consecutive content (reasoning) deltas merge into one "C[...]" ("R[...]") entry, so
 * it does not depend on the chunking; a call is "T[name|arguments]", a report "M[why]". */
typedef struct rec {
    mr_sbuf t;
    char last; /* kind of the open entry, 0 if none */
} rec;

static void rec_text(rec *r, char kind, const char *s, size_t n) {
    assert_true(n > 0); /* the parser never delivers empty deltas */
    if (r->last != kind) {
        if (r->last) mr_sbuf_adds(&r->t, "]");
        mr_sbuf_add(&r->t, &kind, 1);
        mr_sbuf_adds(&r->t, "[");
        r->last = kind;
    }
    mr_sbuf_add(&r->t, s, n);
}

static void close_entry(rec *r) {
    if (r->last) mr_sbuf_adds(&r->t, "]");
    r->last = 0;
}

static void on_content(void *u, const char *s, size_t n) {
    rec_text(u, 'C', s, n);
}

static void on_reasoning(void *u, const char *s, size_t n) {
    rec_text(u, 'R', s, n);
}

static void on_call(void *u, const mr_tool_call *c) {
    rec *r = u;
    char idx[16];
    close_entry(r);
    assert_int_equal(strlen(c->name), c->name_len);
    assert_int_equal(strlen(c->arguments), c->arguments_len);
    snprintf(idx, sizeof idx, "T%d[", c->index);
    mr_sbuf_adds(&r->t, idx);
    mr_sbuf_adds(&r->t, c->name);
    mr_sbuf_adds(&r->t, "|");
    mr_sbuf_adds(&r->t, c->arguments);
    mr_sbuf_adds(&r->t, "]");
}

static void on_malformed(void *u, const char *why) {
    rec *r = u;
    close_entry(r);
    mr_sbuf_adds(&r->t, "M[");
    mr_sbuf_adds(&r->t, why);
    mr_sbuf_adds(&r->t, "]");
}

/* Parses TEXT cut at the given offsets; returns the transcript (caller frees). */
static char *parse_chunks(const mr_outparse_params *pp, const char *text, size_t n,
                          const size_t *cuts, size_t n_cuts, int *in_reasoning) {
    rec r = {{0}, 0};
    mr_outparse_sink sink = {&r, on_content, on_reasoning, on_call, on_malformed};
    mr_outparse *p;
    assert_int_equal(mr_outparse_create(pp, &sink, &p), MR_OK);
    size_t at = 0;
    for (size_t i = 0; i <= n_cuts; i++) {
        size_t end = i < n_cuts ? cuts[i] : n;
        assert_int_equal(mr_outparse_feed(p, text + at, end - at), MR_OK);
        at = end;
    }
    assert_int_equal(mr_outparse_finish(p), MR_OK);
    assert_int_equal(mr_outparse_held(p), 0);
    if (in_reasoning) *in_reasoning = mr_outparse_in_reasoning(p);
    mr_outparse_destroy(p);
    close_entry(&r);
    char *out;
    size_t len;
    assert_int_equal(mr_sbuf_take(&r.t, &out, &len), MR_OK);
    return out;
}

static int g_chunkings;

static void expect_chunks(const mr_outparse_params *pp, const char *text, size_t n,
                          const char *want, const size_t *cuts, size_t n_cuts) {
    char *got = parse_chunks(pp, text, n, cuts, n_cuts, NULL);
    if (strcmp(got, want) != 0) {
        fprintf(stderr, "text: %.*s\ncuts:", (int)n, text);
        for (size_t i = 0; i < n_cuts; i++) fprintf(stderr, " %zu", cuts[i]);
        fprintf(stderr, "\nwant: %s\ngot:  %s\n", want, got);
        fail();
    }
    free(got);
    g_chunkings++;
}

/* The case under every chunking family of the file comment. */
static void check_case(const mr_outparse_params *pp, const char *text, size_t n, const char *want) {
    size_t *cuts = malloc((n + 2) * sizeof *cuts); /* the 3-chunk splits write cuts[1] */
    expect_chunks(pp, text, n, want, NULL, 0);
    for (size_t i = 0; i + 1 < n; i++) cuts[i] = i + 1; /* one byte at a time */
    expect_chunks(pp, text, n, want, cuts, n ? n - 1 : 0);
    for (size_t a = 0; a <= n; a++) { /* every split in two and in three */
        cuts[0] = a;
        expect_chunks(pp, text, n, want, cuts, 1);
        if (n > 160) continue;
        for (size_t b = a; b <= n; b++) {
            cuts[1] = b;
            expect_chunks(pp, text, n, want, cuts, 2);
        }
    }
    if (n <= 14) { /* every chunking */
        for (uint32_t mask = 0; mask < (1u << (n ? n - 1 : 0)); mask++) {
            size_t k = 0;
            for (size_t i = 0; i + 1 < n; i++)
                if (mask & (1u << i)) cuts[k++] = i + 1;
            expect_chunks(pp, text, n, want, cuts, k);
        }
    }
    uint64_t rng = 12345 + n;
    for (int r = 0; r < 200; r++) { /* random chunkings */
        size_t k = 0;
        for (size_t i = 1; i < n; i++)
            if (mr_splitmix64(&rng) % 4 == 0) cuts[k++] = i;
        expect_chunks(pp, text, n, want, cuts, k);
    }
    free(cuts);
}

#define CALL_PARIS "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}"

static const struct {
    const char *name, *text, *want;
} cases[] = {
    {"reasoning then answer", "<think>\nLet me think.\n</think>\nThe answer is 4.",
     "R[Let me think.]C[The answer is 4.]"},
    {"plain text with angle brackets", "Hello <b>world</b> a<thin b <tool_call> <think",
     "C[Hello <b>world</b> a<thin b <tool_call> <think]"},
    {"spec example: reasoning then a tool call",
     "<think>\nNeed weather.\n</think>\n<tool_calls>\n" CALL_PARIS "\n</tool_calls>",
     "R[Need weather.]T0[get_weather|{\"city\": \"Paris\"}]"},
    {"content, two calls, content",
     "I'll check.\n<tool_calls>\n" CALL_PARIS "\n  {\"name\":\"f\",\"arguments\":{\"x\":[1,2.5,"
     "true,null],\"y\":\"\\u00e9\\n\"}}  \r\n\n</tool_calls>\nDone.",
     "C[I'll check.\n]T0[get_weather|{\"city\": \"Paris\"}]T1[f|{\"x\": [1, 2.5, true, null], "
     "\"y\": \"\xc3\xa9\\n\"}]C[\nDone.]"},
    {"malformed JSON is reported and kept as content",
     "<tool_calls>\n{\"name\": \"x\", \"arguments\": {\"a\": }}\n</tool_calls> after",
     "M[<tool_calls> block left as content: tool call line 2: invalid JSON: unexpected token "
     "near '}']C[<tool_calls>\n{\"name\": \"x\", \"arguments\": {\"a\": }}\n</tool_calls> after]"},
    {"missing arguments", "<tool_calls>\n{\"name\": \"x\"}\n</tool_calls>",
     "M[<tool_calls> block left as content: tool call line 2: needs a string \"name\" and an "
     "object \"arguments\"]C[<tool_calls>\n{\"name\": \"x\"}\n</tool_calls>]"},
    {"a line that is not an object", "<tool_calls>\n" CALL_PARIS "\nsure!\n</tool_calls>",
     "M[<tool_calls> block left as content: tool call line 3 is not a JSON object]"
     "C[<tool_calls>\n" CALL_PARIS "\nsure!\n</tool_calls>]"},
    {"empty block", "x<tool_calls>\n \n</tool_calls>y",
     "C[x]M[<tool_calls> block left as content: no tool call in it]"
     "C[<tool_calls>\n \n</tool_calls>y]"},
    {"calls inside reasoning are reasoning",
     "<think>\n<tool_calls>\n" CALL_PARIS "\n</tool_calls>\n</think>\nok",
     "R[<tool_calls>\n" CALL_PARIS "\n</tool_calls>]C[ok]"},
    {"unterminated reasoning", "<think>\nstill thinking\n</thi", "R[still thinking\n</thi]"},
    {"unterminated block of whole calls", "<tool_calls>\n" CALL_PARIS "\n",
     "T0[get_weather|{\"city\": \"Paris\"}]"},
    {"unterminated block cut inside JSON", "ok <tool_calls>\n{\"name\": \"x\", \"argu",
     "C[ok ]M[unterminated <tool_calls> block left as content: tool call line 2 is not a JSON "
     "object]C[<tool_calls>\n{\"name\": \"x\", \"argu]"},
    {"marker prefix at the end is content", "text <tool_ca", "C[text <tool_ca]"},
    {"arguments given as a JSON string pass through",
     "<tool_calls>\n{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": 1}\"}\n</tool_calls>",
     "T0[f|{\"a\": 1}]"},
    {"markers without newlines", "<think>abc</think>def", "R[abc]C[def]"},
    {"newlines that are not the markers' own stay", "<think>\n\nx\n\n</think>\n\ny",
     "R[\nx\n]C[\ny]"},
    {"end marker at the very end", "<think>\nx\n</think>", "R[x]"},
    {"many angle brackets", "a < b << c <<think>\nx\n</think>\n<", "C[a < b << c <]R[x]C[<]"},
    {"two reasoning blocks", "<think>\na\n</think>\nb<think>\nc\n</think>\nd", "R[a]C[b]R[c]C[d]"},
    {"content before reasoning", "Sure. <think>\nhm\n</think>\nYes.", "C[Sure. ]R[hm]C[Yes.]"},
    {"nested open marker inside reasoning is text", "<think>\n<think>\n</think>\n", "R[<think>]"},
    {"close marker in content is text", "a</think>b</tool_calls>c", "C[a</think>b</tool_calls>c]"},
    {"non-ASCII and odd bytes pass through",
     "\xe4\xbd\xa0\xe5\xa5\xbd<think>\n\xf0\x9f\x98\x80\xff\n</think>\n\xc3\xa9",
     "C[\xe4\xbd\xa0\xe5\xa5\xbd]R[\xf0\x9f\x98\x80\xff]C[\xc3\xa9]"},
    {"empty output", "", ""},
};

static void test_cases(void **state) {
    (void)state;
    mr_outparse_params pp;
    mr_outparse_params_default(&pp);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        g_chunkings = 0;
        check_case(&pp, cases[i].text, strlen(cases[i].text), cases[i].want);
        printf("  %-50s %d chunkings\n", cases[i].name, g_chunkings);
    }
}

static void test_nul_bytes(void **state) {
    (void)state;
    static const char text[] = "a\0b<think>\n\0\n</think>\n\0";
    static const char want[] = "C[a\0b]R[\0]C[\0]";
    char *got = parse_chunks(NULL, text, sizeof text - 1, NULL, 0, NULL);
    assert_memory_equal(got, want, sizeof want);
    free(got);
}

static void test_params_off(void **state) {
    (void)state;
    mr_outparse_params pp = {0, 0};
    const char *t = "<think>\nx\n</think>\n<tool_calls>\n" CALL_PARIS "\n</tool_calls>";
    char *w = malloc(strlen(t) + 8);
    sprintf(w, "C[%s]", t);
    check_case(&pp, t, strlen(t), w);
    free(w);
}

static void test_unterminated_flag(void **state) {
    (void)state;
    int in;
    char *got = parse_chunks(NULL, "<think>\nabc", 11, NULL, 0, &in);
    assert_true(in);
    free(got);
    got = parse_chunks(NULL, "<think>\nabc\n</think>\n", 21, NULL, 0, &in);
    assert_false(in);
    free(got);
}

/* Only a possible marker prefix is ever held back. */
static void test_hold_back(void **state) {
    (void)state;
    static const char text[] = "plain text, no markers; a < b; <thin <tool_ca ends <";
    size_t delivered = 0;
    rec r = {{0}, 0};
    mr_outparse_sink sink = {&r, on_content, on_reasoning, on_call, on_malformed};
    mr_outparse *p;
    assert_int_equal(mr_outparse_create(NULL, &sink, &p), MR_OK);
    for (size_t i = 0; i < sizeof text - 1; i++) {
        assert_int_equal(mr_outparse_feed(p, text + i, 1), MR_OK);
        delivered = r.t.n > 2 ? r.t.n - 2 : 0; /* minus "C[" */
        size_t held = mr_outparse_held(p);
        assert_int_equal(delivered + held, i + 1);
        /* what is held starts with '<' and is a prefix of "<think>" or "<tool_calls>" */
        if (held) {
            assert_true(text[i + 1 - held] == '<');
            assert_true(held < 12);
            assert_true(strncmp(text + i + 1 - held, "<think>", held) == 0 ||
                        strncmp(text + i + 1 - held, "<tool_calls>", held) == 0);
        }
    }
    assert_int_equal(mr_outparse_finish(p), MR_OK);
    mr_outparse_destroy(p);
    mr_sbuf_free(&r.t);
}

/* A block over the limit is content up to its end marker, markers inside included, however the
 * text is cut (also inside the end marker, around the point where the limit is crossed). */
static void test_block_too_long(void **state) {
    (void)state;
    size_t n = MR_OUTPARSE_MAX_BLOCK + 5;
    const char *tail = "<think>\nq\n</think></tool_calls><think>\nr\n</think>\nend";
    char *text = malloc(n + 128);
    strcpy(text, "<tool_calls>\n");
    memset(text + 13, 'x', n);
    strcpy(text + 13 + n, tail);
    size_t len = strlen(text);
    char *whole = parse_chunks(NULL, text, len, NULL, 0, NULL);
    assert_string_equal(whole + strlen(whole) - 24, "</tool_calls>]R[r]C[end]");
    assert_non_null(strstr(whole, "M[<tool_calls> block left as content: longer than"));
    assert_non_null(strstr(whole, "<think>\nq\n</think></tool_calls>]"));
    for (size_t c = 13 + n - 40; c < len; c++) {
        size_t cuts[2] = {c - 7, c};
        char *got = parse_chunks(NULL, text, len, cuts, 2, NULL);
        assert_string_equal(got, whole);
        free(got);
    }
    free(whole);
    free(text);
}

int main(void) {
    mr_log_set_level(MR_LOG_LEVEL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),      cmocka_unit_test(test_nul_bytes),
        cmocka_unit_test(test_params_off), cmocka_unit_test(test_unterminated_flag),
        cmocka_unit_test(test_hold_back),  cmocka_unit_test(test_block_too_long),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
