/* tok_golden.h — shared by the tokenizer tests: compares a tokenizer with the HF goldens of
 * tests/reference/tokenizer_goldens.py on the corpus of tests/data/tokenizer/corpus.json. */
#ifndef MR_TEST_TOK_GOLDEN_H
#define MR_TEST_TOK_GOLDEN_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/tokenizer.h"
#include "coordinator/utf8.h"

#define TOK_DATA MR_SOURCE_DIR "/tests/data/tokenizer"

static inline json_t *tg_load_json(const char *path) {
    json_error_t e;
    json_t *j = json_load_file(path, JSON_ALLOW_NUL, &e);
    if (!j) fprintf(stderr, "%s:%d: %s\n", path, e.line, e.text);
    return j;
}

/* Characters of Unicode 15 that appear in the corpus: HF's Oniguruma knows them (So, Lo); PCRE2
 * before 10.43 (Unicode 14 tables) sees unassigned code points, so a split regex that names
 * \p{S} or \p{L} may cut around them differently (docs/tokenizer.md). */
static inline int tg_has_unicode15(const char *s, size_t n) {
    static const char *const chars[] = {"\xf0\x9f\xab\xa8", "\xf0\x91\xbc\x84", "\xf0\x91\xbc\x85"};
    for (size_t i = 0; i < sizeof chars / sizeof chars[0]; i++)
        if (memmem(s, n, chars[i], strlen(chars[i]))) return 1;
    return 0;
}

static inline int tg_pcre2_unicode_major(void) {
    char v[32] = "0";
    pcre2_config(PCRE2_CONFIG_UNICODE_VERSION, v);
    return atoi(v);
}

typedef struct tg_result {
    int n, same_ids, same_decode, unicode15_excused, failed;
    size_t n_ids;
} tg_result;

/* Encodes every corpus string (with and without the cache) and decodes the ids back; the ids
 * must be the golden's, the text the golden's decoding (listed when it differs from the input,
 * e.g. NFC), else the input itself. */
static inline tg_result tg_compare_corpus(mr_tokenizer *t, const char *corpus_path,
                                          const char *golden_path) {
    tg_result r = {0};
    json_t *corpus = tg_load_json(corpus_path);
    json_t *g = tg_load_json(golden_path);
    if (!corpus || !g) {
        r.failed = 1;
        return r;
    }
    json_t *gids = json_object_get(g, "ids"), *gdec = json_object_get(g, "decoded");
    int u15_ok = tg_pcre2_unicode_major() < 15;
    size_t i;
    json_t *s;
    json_array_foreach(corpus, i, s) {
        const char *text = json_string_value(s);
        size_t len = json_string_length(s);
        json_t *want = json_array_get(gids, i);
        int32_t *ids, *ids2;
        size_t n, n2;
        r.n++;
        if (mr_tokenizer_encode(t, text, len, 0, &ids, &n) != MR_OK ||
            mr_tokenizer_encode(t, text, len, MR_TOK_ENCODE_NO_CACHE, &ids2, &n2) != MR_OK) {
            fprintf(stderr, "  [%zu] encode failed\n", i);
            r.failed = 1;
            continue;
        }
        int same = n == n2 && n == json_array_size(want) && !memcmp(ids, ids2, n * sizeof *ids);
        for (size_t k = 0; same && k < n; k++)
            same = ids[k] == json_integer_value(json_array_get(want, k));
        r.n_ids += n;
        if (same) {
            r.same_ids++;
        } else if (u15_ok && tg_has_unicode15(text, len)) {
            r.unicode15_excused++;
        } else {
            fprintf(stderr, "  [%zu] ids differ from HF: %.60s\n", i, text);
            r.failed = 1;
        }
        char key[32], *raw = NULL, *dec = NULL;
        size_t rl, dl = 0;
        snprintf(key, sizeof key, "%zu", i);
        json_t *wd = json_object_get(gdec, key);
        const char *wtext = wd ? json_string_value(wd) : text;
        size_t wlen = wd ? json_string_length(wd) : len;
        /* HF's ByteLevel decoder ends in from_utf8_lossy; moerack's decode gives the exact bytes
         * and mr_utf8_lossy() is that step */
        if (mr_tokenizer_decode(t, ids, n, 0, &raw, &rl) == MR_OK &&
            mr_utf8_lossy(raw, rl, &dec, &dl) == MR_OK && dl == wlen &&
            memcmp(dec, wtext, wlen) == 0) {
            r.same_decode++;
        } else {
            fprintf(stderr, "  [%zu] decode(encode(x)) differs: %.60s\n", i, text);
            r.failed = 1;
        }
        free(raw);
        free(dec);
        free(ids);
        free(ids2);
    }
    json_decref(corpus);
    json_decref(g);
    return r;
}

static inline tg_result tg_compare(mr_tokenizer *t, const char *golden_path) {
    return tg_compare_corpus(t, TOK_DATA "/corpus.json", golden_path);
}

static inline void tg_print(const char *name, tg_result r) {
    printf("  %-22s %d/%d strings with HF's ids (%zu ids), %d/%d decode to HF's text", name,
           r.same_ids, r.n, r.n_ids, r.same_decode, r.n);
    if (r.unicode15_excused)
        printf("; %d with Unicode 15 characters differ (PCRE2 %d tables)", r.unicode15_excused,
               tg_pcre2_unicode_major());
    printf("\n");
}

#endif
