/* tokenizer_sources.c — the merges-based sources, made into tokenizer.json documents for the
 * one builder of tokenizer_load.c (and for writing out, so HF loads the same tokenizer): a GPT-2
 * style vocab.json + merges.txt, and MiniMax-M1 rebuilt from its merges.txt (spec §7). Also the
 * path dispatcher mr_tokenizer_load(). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/check.h"
#include "common/log.h"
#include "coordinator/tokenizer_internal.h"
#include "coordinator/utf8.h"

#define LOG_T MR_LOG_TEXT

/* The o200k-style pattern of spec §7 (unverified for M1: docs/tokenizer.md). */
const char tok_minimax_regex[] =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* Spec §7: ids 200000..200025. */
static const char *const minimax_special[] = {
    "<pad>",
    "<fim_prefix>",
    "<fim_middle>",
    "<fim_suffix>",
    "<fim_pad>",
    "<reponame>",
    "<filename>",
    "<gh_stars>",
    "<issue_start>",
    "<issue_comment>",
    "<issue_closed>",
    "<jupyter_start>",
    "<jupyter_text>",
    "<jupyter_code>",
    "<jupyter_output>",
    "<empty_output>",
    "<commit_before>",
    "<commit_msg>",
    "<commit_after>",
    "<beginning_of_sentence>",
    "<end_of_sentence>",
    "<end_of_document>",
    "<function_call>",
    "<code_interpreter>",
    "<speech>",
    "<image>",
};
#define MINIMAX_SPECIAL_BASE 200000

/* merges.txt as HF's BPE::read_file reads it: lines (\n or \r\n), "#version" lines skipped, every
 * other line exactly "a b". Returns a JSON array of the lines. */
static mr_status read_merges_txt(const char *path, json_t **out) {
    char *buf;
    size_t len;
    MR_CHECK(tok_read_file(path, &buf, &len));
    json_t *arr = json_array();
    mr_status st = arr ? MR_OK : MR_ERR_NOMEM;
    size_t line_no = 0;
    for (size_t i = 0; i < len && st == MR_OK;) {
        char *nl = memchr(buf + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - buf) : len, n = e - i;
        line_no++;
        if (n && buf[i + n - 1] == '\r') n--;
        const char *s = buf + i;
        i = nl ? e + 1 : len;
        if (n >= 8 && memcmp(s, "#version", 8) == 0) continue;
        const char *sp = memchr(s, ' ', n);
        if (!sp || sp == s || sp == s + n - 1 || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s))) {
            MR_LOG_ERROR(LOG_T, "%s:%zu: not a merge line \"a b\"", path, line_no);
            st = MR_ERR_FORMAT;
            break;
        }
        if (mr_utf8_check(s, n) != n) {
            MR_LOG_ERROR(LOG_T, "%s:%zu: not valid UTF-8", path, line_no);
            st = MR_ERR_FORMAT;
            break;
        }
        if (json_array_append_new(arr, json_stringn(s, n)) != 0) st = MR_ERR_NOMEM;
    }
    free(buf);
    if (st != MR_OK) {
        json_decref(arr);
        return st;
    }
    *out = arr;
    return MR_OK;
}

static json_t *bytelevel_json(int add_prefix_space, int trim_offsets, int use_regex) {
    return json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space",
                     add_prefix_space, "trim_offsets", trim_offsets, "use_regex", use_regex);
}

/* A complete tokenizer.json around VOCAB and MERGES (references stolen). */
static json_t *wrap_json(json_t *vocab, json_t *merges, json_t *added, json_t *pre,
                         json_t *decoder) {
    json_t *model =
        json_pack("{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:o, s:o}", "type", "BPE", "dropout",
                  "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0,
                  "byte_fallback", 0, "ignore_merges", 0, "vocab", vocab, "merges", merges);
    if (!model) return NULL;
    return json_pack("{s:s, s:n, s:n, s:o, s:n, s:o, s:n, s:o, s:o}", "version", "1.0",
                     "truncation", "padding", "added_tokens", added, "normalizer", "pre_tokenizer",
                     pre, "post_processor", "decoder", decoder, "model", model);
}

static mr_status minimax_json(const char *merges_path, json_t **out) {
    json_t *merges;
    MR_CHECK(read_merges_txt(merges_path, &merges));
    json_t *vocab = json_object();
    mr_status st = vocab ? MR_OK : MR_ERR_NOMEM;
    for (unsigned b = 0; b < 256 && st == MR_OK; b++) {
        char c[3];
        size_t cl;
        tok_byte_char(b, c, &cl);
        if (json_object_setn_new_nocheck(vocab, c, cl, json_integer(b)) != 0) st = MR_ERR_NOMEM;
    }
    char *cat = NULL;
    size_t i;
    json_t *m;
    json_array_foreach(merges, i, m) {
        if (st != MR_OK) break;
        const char *s = json_string_value(m), *sp = strchr(s, ' ');
        size_t n = json_string_length(m), al = (size_t)(sp - s);
        if (!json_object_getn(vocab, s, al) || !json_object_getn(vocab, sp + 1, n - al - 1)) {
            MR_LOG_ERROR(LOG_T, "%s: merge %zu ('%s') uses a token no earlier merge made",
                         merges_path, i + 1, s);
            st = MR_ERR_FORMAT;
            break;
        }
        char *nc = realloc(cat, n);
        if (!nc) {
            st = MR_ERR_NOMEM;
            break;
        }
        cat = nc;
        memcpy(cat, s, al);
        memcpy(cat + al, sp + 1, n - al - 1);
        if (json_object_getn(vocab, cat, n - 1)) {
            MR_LOG_ERROR(LOG_T, "%s: merge %zu ('%s') makes a token that already exists",
                         merges_path, i + 1, s);
            st = MR_ERR_FORMAT;
            break;
        }
        if (json_object_setn_new_nocheck(vocab, cat, n - 1, json_integer(256 + (json_int_t)i)))
            st = MR_ERR_NOMEM;
    }
    free(cat);
    if (st == MR_OK && 256 + json_array_size(merges) > MINIMAX_SPECIAL_BASE) {
        MR_LOG_ERROR(LOG_T, "%s: %zu merges overlap the special ids from %d", merges_path,
                     json_array_size(merges), MINIMAX_SPECIAL_BASE);
        st = MR_ERR_FORMAT;
    }
    json_t *added = json_array();
    for (size_t k = 0; k < MR_ARRAY_LEN(minimax_special) && st == MR_OK && added; k++) {
        json_t *a =
            json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", MINIMAX_SPECIAL_BASE + (int)k,
                      "content", minimax_special[k], "single_word", 0, "lstrip", 0, "rstrip", 0,
                      "normalized", 0, "special", 1);
        if (!a || json_array_append_new(added, a) != 0) st = MR_ERR_NOMEM;
    }
    json_t *split = json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "Regex",
                              tok_minimax_regex, "behavior", "Isolated", "invert", 0);
    json_t *pre = json_pack("{s:s, s:[o, o]}", "type", "Sequence", "pretokenizers", split,
                            bytelevel_json(0, 0, 0));
    json_t *root = NULL;
    if (st == MR_OK && added && pre) {
        root = wrap_json(vocab, merges, added, pre, bytelevel_json(0, 0, 0));
        if (!root) st = MR_ERR_NOMEM;
    } else {
        json_decref(vocab);
        json_decref(merges);
        json_decref(added);
        json_decref(pre);
        if (st == MR_OK) st = MR_ERR_NOMEM;
    }
    if (st == MR_OK) *out = root;
    return st;
}

static mr_status vocab_merges_json(const char *vocab_path, const char *merges_path, json_t **out) {
    char *buf;
    size_t len;
    MR_CHECK(tok_read_file(vocab_path, &buf, &len));
    json_t *vocab = tok_parse_json(buf, len, vocab_path);
    free(buf);
    if (!vocab) return MR_ERR_FORMAT;
    if (!json_is_object(vocab)) {
        MR_LOG_ERROR(LOG_T, "%s: must be a JSON object of token -> id", vocab_path);
        json_decref(vocab);
        return MR_ERR_FORMAT;
    }
    json_t *merges;
    mr_status st = read_merges_txt(merges_path, &merges);
    if (st != MR_OK) {
        json_decref(vocab);
        return st;
    }
    json_t *root =
        wrap_json(vocab, merges, json_array(), bytelevel_json(0, 1, 1), bytelevel_json(1, 1, 1));
    if (!root) return MR_ERR_NOMEM;
    *out = root;
    return MR_OK;
}

mr_status mr_tokenizer_load_minimax_merges(const char *merges_path, mr_tokenizer **out) {
    json_t *j;
    MR_CHECK(minimax_json(merges_path, &j));
    mr_status st = tok_build_from_json(j, merges_path, out);
    json_decref(j);
    return st;
}

mr_status mr_tokenizer_load_vocab_merges(const char *vocab_path, const char *merges_path,
                                         mr_tokenizer **out) {
    json_t *j;
    MR_CHECK(vocab_merges_json(vocab_path, merges_path, &j));
    mr_status st = tok_build_from_json(j, vocab_path, out);
    json_decref(j);
    return st;
}

static mr_status write_json(json_t *j, const char *out_path) {
    mr_status st = MR_OK;
    if (json_dump_file(j, out_path, JSON_INDENT(1) | JSON_PRESERVE_ORDER) != 0) {
        MR_LOG_ERROR(LOG_T, "%s: cannot write", out_path);
        st = MR_ERR_IO;
    }
    json_decref(j);
    return st;
}

mr_status mr_tokenizer_write_json_minimax(const char *merges_path, const char *out_path) {
    json_t *j;
    MR_CHECK(minimax_json(merges_path, &j));
    return write_json(j, out_path);
}

mr_status mr_tokenizer_write_json_vocab_merges(const char *vocab_path, const char *merges_path,
                                               const char *out_path) {
    json_t *j;
    MR_CHECK(vocab_merges_json(vocab_path, merges_path, &j));
    return write_json(j, out_path);
}

mr_status mr_tokenizer_load(const char *path, mr_tokenizer **out) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        MR_LOG_ERROR(LOG_T, "%s: %s", path, strerror(errno));
        return MR_ERR_NOT_FOUND;
    }
    if (!S_ISDIR(sb.st_mode)) return mr_tokenizer_load_json(path, out);
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/tokenizer.json", path);
    if (access(a, F_OK) == 0) return mr_tokenizer_load_json(a, out);
    snprintf(a, sizeof a, "%s/vocab.json", path);
    snprintf(b, sizeof b, "%s/merges.txt", path);
    if (access(a, F_OK) == 0 && access(b, F_OK) == 0)
        return mr_tokenizer_load_vocab_merges(a, b, out);
    MR_LOG_ERROR(LOG_T, "%s: no tokenizer.json, nor vocab.json + merges.txt", path);
    return MR_ERR_NOT_FOUND;
}
