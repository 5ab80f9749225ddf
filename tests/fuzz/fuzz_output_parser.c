/* fuzz_output_parser — libFuzzer target for the output parser (and the replay test's entry).
 *
 * Input: byte 0 = flags (bit 0: reasoning off, bit 1: tool calls off), byte 1 = seed of the
 * chunking, the rest = model output. The output is parsed whole and in random chunks (sizes 0 to
 * 16 from the seed); the two transcripts (content, reasoning, calls, malformed reports) must be
 * identical, and every byte must be delivered unless it belongs to a marker. Aborts otherwise. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "coordinator/output_parser.h"
#include "coordinator/pyjson.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_output_parser: %s:%d: %s\n", __FILE__, __LINE__, #c);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

typedef struct rec {
    mr_sbuf t;
    char last;
    size_t content, reasoning;
} rec;

static void text(rec *r, char kind, const char *s, size_t n) {
    CHECK(n > 0);
    if (r->last != kind) {
        mr_sbuf_add(&r->t, "\n", 1);
        mr_sbuf_add(&r->t, &kind, 1);
        r->last = kind;
    }
    mr_sbuf_add(&r->t, s, n);
}

static void on_content(void *u, const char *s, size_t n) {
    ((rec *)u)->content += n;
    text(u, 'C', s, n);
}

static void on_reasoning(void *u, const char *s, size_t n) {
    ((rec *)u)->reasoning += n;
    text(u, 'R', s, n);
}

static void on_call(void *u, const mr_tool_call *c) {
    rec *r = u;
    r->last = 0;
    CHECK(strlen(c->name) == c->name_len && c->name_len > 0);
    mr_sbuf_adds(&r->t, "\nT");
    mr_sbuf_add(&r->t, c->name, c->name_len);
    mr_sbuf_adds(&r->t, "|");
    mr_sbuf_add(&r->t, c->arguments, c->arguments_len);
}

static void on_malformed(void *u, const char *why) {
    rec *r = u;
    r->last = 0;
    mr_sbuf_adds(&r->t, "\nM");
    mr_sbuf_adds(&r->t, why);
}

static void quiet(void *u, mr_log_level l, unsigned s, const char *line) {
    (void)u;
    (void)l;
    (void)s;
    (void)line;
}

static void run(const mr_outparse_params *pp, const char *s, size_t n, uint64_t seed, rec *r) {
    mr_outparse_sink sink = {r, on_content, on_reasoning, on_call, on_malformed};
    mr_outparse *p;
    CHECK(mr_outparse_create(pp, &sink, &p) == MR_OK);
    size_t at = 0;
    while (at < n) {
        size_t k = n - at;
        if (seed) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            k = (size_t)(seed >> 60);
            if (k > n - at) k = n - at;
        }
        CHECK(mr_outparse_feed(p, s + at, k) == MR_OK);
        CHECK(mr_outparse_held(p) <= MR_OUTPARSE_MAX_BLOCK + 32);
        at += k;
    }
    CHECK(mr_outparse_finish(p) == MR_OK);
    CHECK(mr_outparse_held(p) == 0);
    mr_outparse_destroy(p);
    CHECK(!r->t.oom);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int init;
    if (!init) {
        mr_log_set_sink(quiet, NULL);
        init = 1;
    }
    if (size < 2) return 0;
    mr_outparse_params pp = {!(data[0] & 1), !(data[0] & 2)};
    const char *s = (const char *)data + 2;
    size_t n = size - 2;
    rec a = {{0}, 0, 0, 0}, b = {{0}, 0, 0, 0};
    run(&pp, s, n, 0, &a);
    run(&pp, s, n, (uint64_t)data[1] + 1, &b);
    CHECK(a.t.n == b.t.n && (a.t.n == 0 || memcmp(a.t.p, b.t.p, a.t.n) == 0));
    CHECK(a.content + a.reasoning <= n); /* markers and tool calls are the only bytes taken out */
    if (!pp.reasoning && !pp.tool_calls) CHECK(a.content == n && a.reasoning == 0);
    mr_sbuf_free(&a.t);
    mr_sbuf_free(&b.t);
    return 0;
}
