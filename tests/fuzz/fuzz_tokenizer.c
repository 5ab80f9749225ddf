/* fuzz_tokenizer — libFuzzer target for the tokenizer (and the replay test's entry point).
 *
 * The first input byte picks what the rest is:
 *   0-3  text for one of four tokenizers (MiniMax from merges.txt, also with special tokens as
 *        text; a tokenizer.json with NFC, unk, added tokens with lstrip/rstrip/single_word/
 *        normalized, every Split behaviour and a regex that can match empty; a tiny one with
 *        most bytes missing): valid UTF-8 must encode to ids in range, the same with and without
 *        the cache, and decode (for MiniMax: back to the text); invalid UTF-8 must be refused with
 *        MR_ERR_INVALID, and its mr_utf8_lossy() repair must then encode;
 *   4    a tokenizer.json: loads or is refused; a loaded one encodes and decodes a few texts;
 *   5    little-endian int32 ids for decode: never fails, output is the ids' token bytes;
 *   6    text for the UTF-8 helpers: their results agree with each other.
 * Any disagreement aborts. Logging goes nowhere. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "coordinator/tokenizer.h"
#include "coordinator/tokenizer_internal.h"
#include "coordinator/utf8.h"

#ifndef MR_SHARED_DIR
#define MR_SHARED_DIR "../shared"
#endif

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_tokenizer: %s:%d: %s\n", __FILE__, __LINE__, #c);                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* NFC; added tokens normalized and not, stripping and single-word; every split behaviour; a
 * pattern with empty matches; ByteLevel with the GPT-2 regex and a prefix space. */
static const char featured_json[] =
    "{\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}]},"
    " \"added_tokens\": ["
    "  {\"id\": 300, \"content\": \"<mask>\", \"lstrip\": true, \"rstrip\": true, \"special\": "
    "true,"
    "   \"normalized\": false},"
    "  {\"id\": 301, \"content\": \"word\", \"single_word\": true, \"normalized\": true},"
    "  {\"id\": 302, \"content\": \"e\\u0301t\\u00e9\", \"normalized\": true},"
    "  {\"id\": 303, \"content\": \"<|x|>\", \"special\": true, \"normalized\": false},"
    "  {\"id\": 304, \"content\": \"<|x|><|y|>\", \"normalized\": false}],"
    " \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
    "  {\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\d{1,2}\"}, \"behavior\": "
    "\"MergedWithNext\"},"
    "  {\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, \"behavior\": "
    "\"MergedWithPrevious\","
    "   \"invert\": true},"
    "  {\"type\": \"Split\", \"pattern\": {\"Regex\": \"x*\"}, \"behavior\": \"Contiguous\"},"
    "  {\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s+\"}, \"behavior\": \"Removed\"},"
    "  {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"use_regex\": true}]},"
    " \"decoder\": {\"type\": \"ByteLevel\"},"
    " \"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"fuse_unk\": true, "
    "\"ignore_merges\": true, \"vocab\": VOCAB, \"merges\": MERGES}}";

static mr_tokenizer *g_tok[4];

static void quiet(void *u, mr_log_level l, unsigned s, const char *line) {
    (void)u;
    (void)l;
    (void)s;
    (void)line;
}

/* A small byte-level vocab: the 256 bytes, "<unk>" and 40 merges of common pairs. */
static char *featured_tokenizer_json(void) {
    static const char *const merges[] = {"t h", "th e", "Ġ t",  "Ġt h",  "Ġth e",  "i n", "e r",
                                         "a n", "o n",  "Ġ a",  "r e",   "e n",    "a t", "o r",
                                         "e s", "Ġ w",  "Ġw o", "Ġwo r", "Ġwor d", "1 2", "- -"};
    char *vocab = malloc(1 << 16), *mj = malloc(1 << 12), *out = malloc(1 << 17);
    int k = sprintf(vocab, "{");
    for (unsigned b = 0; b < 256; b++) {
        char c[3];
        size_t cl;
        if (b == '~') continue; /* a byte without a token: <unk>, fused */
        tok_byte_char(b, c, &cl);
        k += sprintf(vocab + k, "%s\"%s%.*s\": %u", b ? ", " : "",
                     c[0] == '"' || c[0] == '\\' ? "\\" : "", (int)cl, c, b);
    }
    int m = sprintf(mj, "[");
    for (size_t i = 0; i < sizeof merges / sizeof merges[0]; i++) {
        const char *sp = strchr(merges[i], ' ');
        k += sprintf(vocab + k, ", \"%.*s%s\": %zu", (int)(sp - merges[i]), merges[i], sp + 1,
                     256 + i);
        m += sprintf(mj + m, "%s\"%s\"", i ? ", " : "", merges[i]);
    }
    sprintf(vocab + k, ", \"<unk>\": 299}");
    sprintf(mj + m, "]");
    const char *v = strstr(featured_json, "VOCAB"), *mm = strstr(featured_json, "MERGES");
    sprintf(out, "%.*s%s%.*s%s%s", (int)(v - featured_json), featured_json, vocab,
            (int)(mm - v - 5), v + 5, mj, mm + 6);
    free(vocab);
    free(mj);
    return out;
}

static void init(void) {
    static int done;
    if (done) return;
    done = 1;
    mr_log_set_sink(quiet, NULL);
    const char *merges = getenv("MR_FUZZ_MERGES");
    if (!merges) merges = MR_SHARED_DIR "/minimax-m1/merges.txt";
    CHECK(mr_tokenizer_load_minimax_merges(merges, &g_tok[0]) == MR_OK);
    char *j = featured_tokenizer_json();
    CHECK(mr_tokenizer_load_json_buf(j, strlen(j), "featured", &g_tok[1]) == MR_OK);
    free(j);
    static const char gpt2[] =
        "{\"model\": {\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"Ġ\": 3, \"Ġa\": 4}, "
        "\"merges\": [[\"a\", \"b\"], \"Ġ a\"]}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}, "
        "\"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"ByteLevel\"}]}}";
    CHECK(mr_tokenizer_load_json_buf(gpt2, strlen(gpt2), "tiny", &g_tok[2]) == MR_OK);
    g_tok[3] = g_tok[0];
}

static void check_text(int which, const char *s, size_t n) {
    mr_tokenizer *t = g_tok[which];
    int32_t *ids = NULL, *ids2 = NULL;
    size_t k = 0, k2 = 0;
    unsigned flags = which == 3 ? MR_TOK_ENCODE_SPECIAL_AS_TEXT : 0;
    mr_status st = mr_tokenizer_encode(t, s, n, flags, &ids, &k);
    if (mr_utf8_check(s, n) != n) {
        CHECK(st == MR_ERR_INVALID);
        char *fixed;
        size_t fl;
        CHECK(mr_utf8_lossy(s, n, &fixed, &fl) == MR_OK);
        CHECK(mr_utf8_check(fixed, fl) == fl);
        check_text(which, fixed, fl);
        free(fixed);
        return;
    }
    CHECK(st == MR_OK);
    CHECK(mr_tokenizer_encode(t, s, n, flags | MR_TOK_ENCODE_NO_CACHE, &ids2, &k2) == MR_OK);
    CHECK(k == k2 && memcmp(ids, ids2, k * sizeof *ids) == 0);
    for (size_t i = 0; i < k; i++) CHECK(ids[i] >= 0 && ids[i] < mr_tokenizer_n_ids(t));
    char *dec;
    size_t dl;
    CHECK(mr_tokenizer_decode(t, ids, k, 0, &dec, &dl) == MR_OK);
    /* MiniMax has a token for every byte and no normalizer: decoding gives the text back (the
     * featured one strips around <mask>, maps ~ to <unk> and decodes added tokens unnormalized) */
    if (which == 0 || which == 3) CHECK(dl == n && memcmp(dec, s, n) == 0);
    free(dec);
    free(ids);
    free(ids2);
}

static void check_json(const char *s, size_t n) {
    mr_tokenizer *t = NULL;
    if (mr_tokenizer_load_json_buf(s, n, "fuzz.json", &t) != MR_OK) {
        CHECK(t == NULL);
        return;
    }
    static const char *const texts[] = {"", "a", "hello world 123", "<s> \xc3\xa9\xe4\xbd\xa0 x-y",
                                        "   \n\n\t"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int32_t *ids;
        size_t k;
        mr_status st = mr_tokenizer_encode(t, texts[i], strlen(texts[i]), 0, &ids, &k);
        CHECK(st == MR_OK || st == MR_ERR_INVALID); /* a regex may hit its match limit */
        if (st != MR_OK) continue;
        char *dec;
        size_t dl;
        CHECK(mr_tokenizer_decode(t, ids, k, MR_TOK_DECODE_SKIP_SPECIAL, &dec, &dl) == MR_OK);
        free(dec);
        free(ids);
    }
    mr_tokenizer_destroy(t);
}

static void check_decode(const uint8_t *d, size_t n) {
    size_t k = n / 4, want = 0, l;
    int32_t *ids = malloc((k ? k : 1) * sizeof *ids);
    for (size_t i = 0; i < k; i++) {
        uint32_t v = (uint32_t)d[4 * i] | (uint32_t)d[4 * i + 1] << 8 |
                     (uint32_t)d[4 * i + 2] << 16 | (uint32_t)d[4 * i + 3] << 24;
        ids[i] = (int32_t)(v % 2 ? v % 200100 : v); /* mostly near the real id range */
        if (mr_tokenizer_token_bytes(g_tok[0], ids[i], &l)) want += l;
    }
    char *dec;
    size_t dl;
    CHECK(mr_tokenizer_decode(g_tok[0], ids, k, 0, &dec, &dl) == MR_OK);
    CHECK(dl == want && dec[dl] == '\0');
    free(dec);
    free(ids);
}

static void check_utf8(const char *s, size_t n) {
    size_t bad = mr_utf8_check(s, n), cp = mr_utf8_complete_prefix(s, n);
    CHECK(bad <= n && cp <= n && n - cp <= 3);
    char *fixed;
    size_t fl;
    CHECK(mr_utf8_lossy(s, n, &fixed, &fl) == MR_OK);
    CHECK(mr_utf8_check(fixed, fl) == fl);
    CHECK((bad == n) == (fl == n && memcmp(fixed, s, n) == 0));
    if (bad == n) CHECK(cp == n);
    free(fixed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init();
    if (size == 0) return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 7) {
    case 0:
    case 1:
    case 2:
    case 3:
        check_text(data[0] % 7, s, n);
        break;
    case 4:
        check_json(s, n);
        break;
    case 5:
        check_decode(data + 1, n);
        break;
    case 6:
        check_utf8(s, n);
        break;
    }
    return 0;
}
