/* tokenizer_load.c — builds a tokenizer from a Hugging Face tokenizer.json (in memory or a file).
 * Merges-based sources are turned into the same JSON first (tokenizer_sources.c), so every source
 * goes through this one builder.
 *
 * Every field is checked before use; a problem is logged once, naming the file and the field, and
 * returned as MR_ERR_FORMAT (malformed) or MR_ERR_UNSUPPORTED (valid HF, but not implemented). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/check.h"
#include "common/log.h"
#include "coordinator/tokenizer_internal.h"
#include "coordinator/utf8.h"

#define LOG_T MR_LOG_TEXT

/* GPT-2's pattern, used by ByteLevel with use_regex (HF pre_tokenizers/byte_level.rs). */
const char tok_gpt2_regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ---- the GPT-2 byte <-> character map
 * ------------------------------------------------------------ */

static int byte_printable(unsigned b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

static uint32_t byte_to_cp(unsigned b) {
    if (byte_printable(b)) return b;
    uint32_t n = 0;
    for (unsigned x = 0; x < b; x++) n += !byte_printable(x);
    return 256 + n;
}

void tok_byte_char(unsigned b, char out[3], size_t *len) {
    uint32_t cp = byte_to_cp(b);
    if (cp < 0x80) {
        out[0] = (char)cp;
        *len = 1;
    } else {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        *len = 2;
    }
}

/* Converts a byte-level string to the bytes it stands for; returns 0 if some character is not
 * one of the 256 (the token then decodes to its own UTF-8, as HF's ByteLevel decoder does). */
static int bytelevel_to_bytes(const int16_t *cp_to_byte, const char *s, size_t n, char *out,
                              size_t *out_len) {
    size_t j = 0;
    for (size_t i = 0; i < n;) {
        size_t l = mr_utf8_char_len((const unsigned char *)s + i, n - i);
        if (l == 0 || l > 2) return 0;
        uint32_t cp = mr_utf8_decode((const unsigned char *)s + i, l);
        if (cp >= 512 || cp_to_byte[cp] < 0) return 0;
        out[j++] = (char)cp_to_byte[cp];
        i += l;
    }
    *out_len = j;
    return 1;
}

static void make_cp_to_byte(int16_t cp_to_byte[512]) {
    for (int i = 0; i < 512; i++) cp_to_byte[i] = -1;
    for (unsigned b = 0; b < 256; b++) cp_to_byte[byte_to_cp(b)] = (int16_t)b;
}

/* ---- small JSON helpers
 * ----------------------------------------------------------------------------- */

static int json_bool_field(json_t *o, const char *key, int dflt, int *out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 1;
    }
    if (!json_is_boolean(v)) return 0;
    *out = json_is_true(v);
    return 1;
}

static const char *type_of(json_t *o) {
    json_t *t = json_is_object(o) ? json_object_get(o, "type") : NULL;
    return json_is_string(t) ? json_string_value(t) : NULL;
}

/* Flattens nested Sequences of KEY (normalizers / pretokenizers / decoders) into items[]. */
static mr_status flatten(const char *name, const char *field, const char *key, json_t *o,
                         json_t **items, int *n, int max) {
    const char *ty = type_of(o);
    if (!ty) {
        MR_LOG_ERROR(LOG_T, "%s: %s: an object with a string \"type\" expected", name, field);
        return MR_ERR_FORMAT;
    }
    if (strcmp(ty, "Sequence") == 0) {
        json_t *arr = json_object_get(o, key);
        if (!json_is_array(arr)) {
            MR_LOG_ERROR(LOG_T, "%s: %s: Sequence without a \"%s\" array", name, field, key);
            return MR_ERR_FORMAT;
        }
        size_t i;
        json_t *it;
        json_array_foreach(arr, i, it) MR_CHECK(flatten(name, field, key, it, items, n, max));
        return MR_OK;
    }
    if (*n >= max) {
        MR_LOG_ERROR(LOG_T, "%s: %s: more than %d steps", name, field, max);
        return MR_ERR_UNSUPPORTED;
    }
    items[(*n)++] = o;
    return MR_OK;
}

/* ---- pipeline parts
 * ------------------------------------------------------------------------------ */

static mr_status compile_regex(const char *name, const char *field, const char *pat, size_t len,
                               int literal, tok_pre *p) {
    int err;
    PCRE2_SIZE eoff;
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    if (mr_utf8_check(pat, len) != len) {
        MR_LOG_ERROR(LOG_T, "%s: %s: pattern is not valid UTF-8", name, field);
        return MR_ERR_FORMAT;
    }
    p->re = pcre2_compile((PCRE2_SPTR)pat, len, opts, &err, &eoff, NULL);
    if (!p->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        MR_LOG_ERROR(LOG_T, "%s: %s: regex does not compile at offset %zu: %s", name, field,
                     (size_t)eoff, (const char *)msg);
        return MR_ERR_FORMAT;
    }
    p->jit = pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE) == 0;
    if (!p->jit) MR_LOG_DEBUG(LOG_T, "%s: %s: no PCRE2 JIT, interpreting", name, field);
    return MR_OK;
}

static mr_status parse_normalizer(mr_tokenizer *t, json_t *root) {
    json_t *o = json_object_get(root, "normalizer");
    if (!o || json_is_null(o)) return MR_OK;
    json_t *items[16];
    int n = 0;
    MR_CHECK(flatten(t->name, "normalizer", "normalizers", o, items, &n, 16));
    for (int i = 0; i < n; i++) {
        const char *ty = type_of(items[i]);
        if (strcmp(ty, "NFC") == 0) {
            t->nfc = 1;
        } else {
            MR_LOG_ERROR(LOG_T, "%s: normalizer: type '%s' is not supported (only NFC)", t->name,
                         ty);
            return MR_ERR_UNSUPPORTED;
        }
    }
    return MR_OK;
}

static mr_status parse_split(mr_tokenizer *t, json_t *o, tok_pre *p) {
    static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious",
                                        "MergedWithNext", "Contiguous"};
    p->kind = TOK_PRE_SPLIT;
    json_t *pat = json_object_get(o, "pattern");
    json_t *rx = json_is_object(pat) ? json_object_get(pat, "Regex") : NULL;
    json_t *str = json_is_object(pat) ? json_object_get(pat, "String") : NULL;
    json_t *beh = json_object_get(o, "behavior");
    if (!json_is_string(rx) && !json_is_string(str)) {
        MR_LOG_ERROR(LOG_T,
                     "%s: pre_tokenizer Split: pattern must be {\"Regex\": s} or "
                     "{\"String\": s}",
                     t->name);
        return MR_ERR_FORMAT;
    }
    if (!json_is_string(beh)) {
        MR_LOG_ERROR(LOG_T, "%s: pre_tokenizer Split: no behavior", t->name);
        return MR_ERR_FORMAT;
    }
    int found = 0;
    for (size_t i = 0; i < MR_ARRAY_LEN(names); i++) {
        if (strcmp(json_string_value(beh), names[i]) == 0) {
            p->behavior = (tok_split_behavior)i;
            found = 1;
        }
    }
    if (!found) {
        MR_LOG_ERROR(LOG_T, "%s: pre_tokenizer Split: unknown behavior '%s'", t->name,
                     json_string_value(beh));
        return MR_ERR_FORMAT;
    }
    if (!json_bool_field(o, "invert", 0, &p->invert)) {
        MR_LOG_ERROR(LOG_T, "%s: pre_tokenizer Split: invert must be a boolean", t->name);
        return MR_ERR_FORMAT;
    }
    json_t *s = json_is_string(rx) ? rx : str;
    if (!json_is_string(rx) && json_string_length(s) == 0) return MR_OK; /* "" splits nothing */
    return compile_regex(t->name, "pre_tokenizer Split", json_string_value(s),
                         json_string_length(s), !json_is_string(rx), p);
}

static mr_status parse_pre_tokenizer(mr_tokenizer *t, json_t *root) {
    json_t *o = json_object_get(root, "pre_tokenizer");
    if (!o || json_is_null(o)) {
        MR_LOG_ERROR(LOG_T,
                     "%s: pre_tokenizer: none; only byte-level BPE (a ByteLevel "
                     "pre-tokenizer) is supported",
                     t->name);
        return MR_ERR_UNSUPPORTED;
    }
    json_t *items[TOK_MAX_PRE_STEPS];
    int n = 0;
    MR_CHECK(flatten(t->name, "pre_tokenizer", "pretokenizers", o, items, &n, TOK_MAX_PRE_STEPS));
    for (int i = 0; i < n; i++) {
        const char *ty = type_of(items[i]);
        tok_pre *p = &t->pre[t->n_pre++];
        if (strcmp(ty, "Split") == 0) {
            MR_CHECK(parse_split(t, items[i], p));
        } else if (strcmp(ty, "ByteLevel") == 0) {
            int use_regex;
            p->kind = TOK_PRE_BYTELEVEL;
            p->behavior = TOK_SPLIT_ISOLATED;
            if (!json_bool_field(items[i], "add_prefix_space", 1, &p->add_prefix_space) ||
                !json_bool_field(items[i], "use_regex", 1, &use_regex)) {
                MR_LOG_ERROR(LOG_T, "%s: pre_tokenizer ByteLevel: flags must be booleans", t->name);
                return MR_ERR_FORMAT;
            }
            if (i != n - 1) {
                MR_LOG_ERROR(LOG_T, "%s: pre_tokenizer: ByteLevel must be the last step", t->name);
                return MR_ERR_UNSUPPORTED;
            }
            if (use_regex)
                MR_CHECK(compile_regex(t->name, "pre_tokenizer ByteLevel", tok_gpt2_regex,
                                       strlen(tok_gpt2_regex), 0, p));
        } else {
            MR_LOG_ERROR(LOG_T,
                         "%s: pre_tokenizer: type '%s' is not supported (Split, "
                         "ByteLevel, Sequence)",
                         t->name, ty);
            return MR_ERR_UNSUPPORTED;
        }
    }
    if (n == 0 || t->pre[n - 1].kind != TOK_PRE_BYTELEVEL) {
        MR_LOG_ERROR(LOG_T,
                     "%s: pre_tokenizer: no ByteLevel step; only byte-level BPE is "
                     "supported",
                     t->name);
        return MR_ERR_UNSUPPORTED;
    }
    return MR_OK;
}

static mr_status parse_decoder(mr_tokenizer *t, json_t *root) {
    json_t *o = json_object_get(root, "decoder");
    json_t *items[8];
    int n = 0;
    if (!o || json_is_null(o)) {
        MR_LOG_ERROR(LOG_T, "%s: decoder: none; only the ByteLevel decoder is supported", t->name);
        return MR_ERR_UNSUPPORTED;
    }
    MR_CHECK(flatten(t->name, "decoder", "decoders", o, items, &n, 8));
    for (int i = 0; i < n; i++) {
        if (strcmp(type_of(items[i]), "ByteLevel") != 0) {
            MR_LOG_ERROR(LOG_T, "%s: decoder: type '%s' is not supported (only ByteLevel)", t->name,
                         type_of(items[i]));
            return MR_ERR_UNSUPPORTED;
        }
    }
    if (n == 0) {
        MR_LOG_ERROR(LOG_T, "%s: decoder: empty Sequence; ByteLevel needed", t->name);
        return MR_ERR_UNSUPPORTED;
    }
    return MR_OK;
}

/* ---- vocabulary --------------------------------------------------------------------------------
 */

static mr_status blob_add(mr_tokenizer *t, const char *p, size_t n, int64_t *off) {
    if (t->blob_len + n > t->blob_cap) {
        size_t nc = t->blob_cap ? t->blob_cap * 2 : 1 << 20;
        while (nc < t->blob_len + n) nc *= 2;
        char *b = realloc(t->blob, nc);
        if (!b) return MR_ERR_NOMEM;
        t->blob = b;
        t->blob_cap = nc;
    }
    memcpy(t->blob + t->blob_len, p, n);
    *off = (int64_t)t->blob_len;
    t->blob_len += n;
    return MR_OK;
}

static int get_id(json_t *v, int32_t *id) {
    if (!json_is_integer(v)) return 0;
    json_int_t x = json_integer_value(v);
    if (x < 0 || x >= TOK_MAX_ID) return 0;
    *id = (int32_t)x;
    return 1;
}

/* The added tokens, with the ids HF gives them when it loads the file (AddedVocabulary::
 * add_tokens), which need not be the file's "id" fields: a token whose content is already an added
 * token or a vocab entry takes that id (and an earlier token of that content takes this one's
 * flags); any other gets the vocab size, or one more than the largest added id once that is at
 * least the vocab size. Empty contents and exact repeats are skipped, as HF does. */
static mr_status parse_added(mr_tokenizer *t, json_t *arr, json_t *vocab, int32_t *max_id) {
    if (!arr || json_is_null(arr)) return MR_OK;
    if (!json_is_array(arr)) {
        MR_LOG_ERROR(LOG_T, "%s: added_tokens must be an array", t->name);
        return MR_ERR_FORMAT;
    }
    size_t n = json_array_size(arr), i, n_moved = 0;
    int64_t vocab_size = (int64_t)json_object_size(vocab), max_added = -1;
    json_t *o;
    tok_strmap by_content; /* content -> index in t->added */
    if (!(t->added = calloc(n ? n : 1, sizeof *t->added))) return MR_ERR_NOMEM;
    MR_CHECK(tok_strmap_init(&by_content, n, t->seed));
    mr_status st = MR_OK;
    json_array_foreach(arr, i, o) {
        json_t *c = json_object_get(o, "content");
        int32_t file_id;
        int sp, nz, ls, rs, sw;
        if (!json_is_object(o) || !get_id(json_object_get(o, "id"), &file_id) ||
            !json_is_string(c) || json_string_length(c) > TOK_MAX_ADDED_LEN ||
            !json_bool_field(o, "special", 0, &sp) || !json_bool_field(o, "normalized", 1, &nz) ||
            !json_bool_field(o, "lstrip", 0, &ls) || !json_bool_field(o, "rstrip", 0, &rs) ||
            !json_bool_field(o, "single_word", 0, &sw)) {
            MR_LOG_ERROR(LOG_T,
                         "%s: added_tokens[%zu]: needs an id in [0, %d), a content of at most "
                         "%d bytes and boolean flags",
                         t->name, i, TOK_MAX_ID, TOK_MAX_ADDED_LEN);
            st = MR_ERR_FORMAT;
            break;
        }
        const char *cs = json_string_value(c);
        size_t cl = json_string_length(c);
        char *norm = NULL; /* HF keeps a normalized token's content normalized (decode too) */
        if (cl == 0) continue;
        if (nz && t->nfc) {
            if ((st = tok_nfc(cs, cl, &norm, &cl)) != MR_OK) break;
            cs = norm;
        }
        tok_added nt = {.special = (uint8_t)sp,
                        .normalized = (uint8_t)nz,
                        .lstrip = (uint8_t)ls,
                        .rstrip = (uint8_t)rs,
                        .single_word = (uint8_t)sw};
        int32_t at = tok_strmap_get(&by_content, cs, cl);
        json_t *vid = json_object_getn(vocab, cs, cl);
        if (at >= 0) {
            nt.id = t->added[at].id;
        } else if (json_is_integer(vid)) {
            nt.id = (int32_t)json_integer_value(vid); /* checked by build_vocab's first pass */
        } else {
            int64_t next = max_added < 0 || (max_added < vocab_size && vocab_size > 0)
                               ? vocab_size
                               : max_added + 1;
            if (next >= TOK_MAX_ID) {
                MR_LOG_ERROR(LOG_T, "%s: added_tokens[%zu]: id %lld is out of range", t->name, i,
                             (long long)next);
                st = MR_ERR_FORMAT;
                break;
            }
            nt.id = (int32_t)next;
        }
        if (nt.id != file_id && n_moved++ == 0)
            MR_LOG_WARN(LOG_T,
                        "%s: added_tokens[%zu] '%.64s' gets id %d as HF assigns it, not "
                        "the file's %d",
                        t->name, i, cs, nt.id, file_id);
        if (at < 0) {
            at = (int32_t)t->n_added++;
            nt.content = norm ? norm : malloc(cl + 1);
            norm = NULL;
            if (!nt.content) {
                st = MR_ERR_NOMEM;
                break;
            }
            if (nt.content != cs) memcpy(nt.content, cs, cl + 1);
            nt.len = cl;
            if ((st = tok_strmap_put(&by_content, nt.content, cl, at)) != MR_OK) break;
        } else {
            nt.content = t->added[at].content;
            nt.len = t->added[at].len;
            nt.special |= t->added[at].special; /* HF's special set only grows */
        }
        free(norm);
        t->added[at] = nt;
        if (nt.id > max_added) max_added = nt.id;
        if (nt.id > *max_id) *max_id = nt.id;
    }
    if (n_moved > 1)
        MR_LOG_WARN(LOG_T, "%s: %zu added tokens in all get other ids than the file's", t->name,
                    n_moved);
    tok_strmap_free(&by_content);
    return st;
}

static mr_status trie_init(tok_trie *tr) {
    tr->cap = 64;
    tr->n = 1;
    if (!(tr->nodes = malloc(tr->cap * sizeof *tr->nodes))) return MR_ERR_NOMEM;
    tr->nodes[0] = (struct tok_trie_node){-1, -1, -1, 0};
    for (int i = 0; i < 256; i++) tr->root_child[i] = -1;
    return MR_OK;
}

static mr_status trie_insert(tok_trie *tr, const char *s, size_t n, int32_t added) {
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t c = node == 0 ? tr->root_child[b] : tr->nodes[node].first_child;
        while (node != 0 && c >= 0 && tr->nodes[c].byte != b) c = tr->nodes[c].next_sibling;
        if (c < 0) {
            if (tr->n == tr->cap) {
                struct tok_trie_node *nn = realloc(tr->nodes, 2 * tr->cap * sizeof *nn);
                if (!nn) return MR_ERR_NOMEM;
                tr->nodes = nn;
                tr->cap *= 2;
            }
            c = (int32_t)tr->n++;
            tr->nodes[c] = (struct tok_trie_node){-1, -1, -1, b};
            if (node == 0) {
                tr->root_child[b] = c;
            } else {
                tr->nodes[c].next_sibling = tr->nodes[node].first_child;
                tr->nodes[node].first_child = c;
            }
        }
        node = c;
    }
    tr->nodes[node].added = added; /* a later duplicate wins, as in HF's content -> id map */
    return MR_OK;
}

/* The decode bytes of string S (byte-level characters if all are, else S itself). */
static mr_status set_decode(mr_tokenizer *t, const int16_t *cp_to_byte, int32_t id, const char *s,
                            size_t n, char *tmp) {
    size_t bl;
    if (!bytelevel_to_bytes(cp_to_byte, s, n, tmp, &bl)) {
        memcpy(tmp, s, n);
        bl = n;
    }
    MR_CHECK(blob_add(t, tmp, bl, &t->dec_off[id]));
    t->dec_len[id] = (uint32_t)bl;
    return MR_OK;
}

static mr_status build_vocab(mr_tokenizer *t, json_t *model, json_t *root) {
    json_t *vocab = json_object_get(model, "vocab");
    int16_t cp_to_byte[512];
    make_cp_to_byte(cp_to_byte);
    if (!json_is_object(vocab)) {
        MR_LOG_ERROR(LOG_T, "%s: model.vocab must be an object", t->name);
        return MR_ERR_FORMAT;
    }
    int32_t max_id = -1;
    const char *key;
    size_t klen;
    json_t *v;
    void *tmpv;
    json_object_keylen_foreach_safe(vocab, tmpv, key, klen, v) {
        int32_t id;
        if (!get_id(v, &id)) {
            MR_LOG_ERROR(LOG_T,
                         "%s: model.vocab: token '%.*s' has id %s, not an integer in "
                         "[0, %d)",
                         t->name, (int)MR_MIN(klen, 64), key,
                         json_is_integer(v) ? "out of range" : "that", TOK_MAX_ID);
            return MR_ERR_FORMAT;
        }
        if (id > max_id) max_id = id;
    }
    MR_CHECK(parse_added(t, json_object_get(root, "added_tokens"), vocab, &max_id));
    t->n_ids = max_id + 1;
    size_t nid = (size_t)t->n_ids ? (size_t)t->n_ids : 1;
    t->dec_off = malloc(nid * sizeof *t->dec_off);
    t->dec_len = calloc(nid, sizeof *t->dec_len);
    t->is_special = calloc(nid, 1);
    if (!t->dec_off || !t->dec_len || !t->is_special) return MR_ERR_NOMEM;
    for (size_t i = 0; i < nid; i++) t->dec_off[i] = -1;
    MR_CHECK(tok_strmap_init(&t->vocab, json_object_size(vocab), t->seed));

    tok_strmap special; /* contents of special added tokens (HF special_tokens_set) */
    MR_CHECK(tok_strmap_init(&special, t->n_added, t->seed));
    mr_status st = MR_OK;
    char *tmp = malloc(TOK_MAX_ADDED_LEN + 1);
    size_t tmp_cap = TOK_MAX_ADDED_LEN + 1;
    if (!tmp) {
        st = MR_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].special)
            MR_CHECK_GOTO(tok_strmap_put(&special, t->added[i].content, t->added[i].len, 1), out);
    size_t n_dup = 0;
    json_object_keylen_foreach_safe(vocab, tmpv, key, klen, v) {
        int32_t id = (int32_t)json_integer_value(v);
        if (klen > tmp_cap) {
            char *nt = realloc(tmp, klen);
            if (!nt) {
                st = MR_ERR_NOMEM;
                goto out;
            }
            tmp = nt;
            tmp_cap = klen;
        }
        size_t bl;
        if (bytelevel_to_bytes(cp_to_byte, key, klen, tmp, &bl))
            MR_CHECK_GOTO(tok_strmap_put(&t->vocab, tmp, bl, id), out);
        if (tok_strmap_get(&special, key, klen) >= 0) t->is_special[id] = 1;
        if (t->dec_off[id] >= 0) {
            n_dup++; /* two strings for one id: the first decodes */
            continue;
        }
        MR_CHECK_GOTO(set_decode(t, cp_to_byte, id, key, klen, tmp), out);
    }
    if (n_dup)
        MR_LOG_WARN(LOG_T, "%s: model.vocab: %zu ids are given to more than one token", t->name,
                    n_dup);
    for (size_t i = 0; i < t->n_added; i++) { /* added content decodes in place of the vocab's */
        tok_added *a = &t->added[i];
        MR_CHECK_GOTO(set_decode(t, cp_to_byte, a->id, a->content, a->len, tmp), out);
        if (a->special) t->is_special[a->id] = 1;
    }
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_id[b] = tok_strmap_get(&t->vocab, &c, 1);
    }
out:
    free(tmp);
    tok_strmap_free(&special);
    return st;
}

static mr_status build_added_tries(mr_tokenizer *t) {
    MR_CHECK(trie_init(&t->trie_raw));
    MR_CHECK(trie_init(&t->trie_norm));
    for (size_t i = 0; i < t->n_added; i++) { /* normalized contents are NFC already */
        tok_added *a = &t->added[i];
        MR_CHECK(trie_insert(a->normalized ? &t->trie_norm : &t->trie_raw, a->content, a->len,
                             (int32_t)i));
    }
    return MR_OK;
}

/* ---- model
 * ------------------------------------------------------------------------------------------ */

static int merge_parts(json_t *m, const char **a, size_t *al, const char **b, size_t *bl) {
    if (json_is_string(m)) { /* "a b": exactly one space (HF convert_merges_to_hashmap) */
        const char *s = json_string_value(m);
        size_t n = json_string_length(m);
        const char *sp = memchr(s, ' ', n);
        if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s))) return 0;
        *a = s;
        *al = (size_t)(sp - s);
        *b = sp + 1;
        *bl = n - *al - 1;
        return 1;
    }
    if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
        json_is_string(json_array_get(m, 1))) {
        *a = json_string_value(json_array_get(m, 0));
        *al = json_string_length(json_array_get(m, 0));
        *b = json_string_value(json_array_get(m, 1));
        *bl = json_string_length(json_array_get(m, 1));
        return 1;
    }
    return 0;
}

static mr_status build_merges(mr_tokenizer *t, json_t *model) {
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    if (!json_is_array(merges)) {
        MR_LOG_ERROR(LOG_T, "%s: model.merges must be an array", t->name);
        return MR_ERR_FORMAT;
    }
    MR_CHECK(tok_pairmap_init(&t->merges, json_array_size(merges)));
    char *cat = NULL;
    size_t cat_cap = 0, i, rank = 0;
    json_t *m;
    mr_status st = MR_OK;
    json_array_foreach(merges, i, m) {
        const char *a, *b;
        size_t al, bl;
        if (!merge_parts(m, &a, &al, &b, &bl)) {
            MR_LOG_ERROR(LOG_T, "%s: model.merges[%zu]: not \"a b\" or [\"a\", \"b\"]", t->name, i);
            st = MR_ERR_FORMAT;
            break;
        }
        if (json_is_string(m) && al >= 8 && memcmp(a, "#version", 8) == 0) continue;
        if (al + bl > cat_cap) {
            cat_cap = 2 * (al + bl) + 64;
            char *nc = realloc(cat, cat_cap);
            if (!nc) {
                st = MR_ERR_NOMEM;
                break;
            }
            cat = nc;
        }
        memcpy(cat, a, al);
        memcpy(cat + al, b, bl);
        json_t *ja = json_object_getn(vocab, a, al), *jb = json_object_getn(vocab, b, bl);
        json_t *jc = json_object_getn(vocab, cat, al + bl);
        if (!ja || !jb || !jc) {
            const char *miss = !ja ? a : !jb ? b : cat;
            size_t ml = !ja ? al : !jb ? bl : al + bl;
            MR_LOG_ERROR(LOG_T, "%s: model.merges[%zu]: token '%.*s' is not in the vocab", t->name,
                         i, (int)MR_MIN(ml, 64), miss);
            st = MR_ERR_FORMAT;
            break;
        }
        st = tok_pairmap_put(&t->merges, (int32_t)json_integer_value(ja),
                             (int32_t)json_integer_value(jb), (uint32_t)rank++,
                             (int32_t)json_integer_value(jc));
        if (st != MR_OK) break;
    }
    free(cat);
    return st;
}

static mr_status parse_model(mr_tokenizer *t, json_t *root) {
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) {
        MR_LOG_ERROR(LOG_T, "%s: no \"model\" object", t->name);
        return MR_ERR_FORMAT;
    }
    const char *ty = type_of(model);
    if (ty && strcmp(ty, "BPE") != 0) {
        MR_LOG_ERROR(LOG_T, "%s: model.type '%s' is not supported (only BPE)", t->name, ty);
        return MR_ERR_UNSUPPORTED;
    }
    json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout) &&
        !(json_is_number(dropout) && json_number_value(dropout) == 0.0)) {
        MR_LOG_ERROR(LOG_T, "%s: model.dropout is not supported", t->name);
        return MR_ERR_UNSUPPORTED;
    }
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (size_t i = 0; i < 2; i++) {
        json_t *a = json_object_get(model, affixes[i]);
        if (a && !json_is_null(a) && !(json_is_string(a) && json_string_length(a) == 0)) {
            MR_LOG_ERROR(LOG_T, "%s: model.%s is not supported (byte-level BPE has none)", t->name,
                         affixes[i]);
            return MR_ERR_UNSUPPORTED;
        }
    }
    int byte_fallback;
    if (!json_bool_field(model, "fuse_unk", 0, &t->fuse_unk) ||
        !json_bool_field(model, "ignore_merges", 0, &t->ignore_merges) ||
        !json_bool_field(model, "byte_fallback", 0, &byte_fallback)) {
        MR_LOG_ERROR(LOG_T, "%s: model: fuse_unk, ignore_merges, byte_fallback must be booleans",
                     t->name);
        return MR_ERR_FORMAT;
    }
    MR_CHECK(build_vocab(t, model, root));
    t->unk_id = -1;
    json_t *unk = json_object_get(model, "unk_token");
    if (unk && !json_is_null(unk)) {
        json_t *uid = json_is_string(unk)
                          ? json_object_getn(json_object_get(model, "vocab"),
                                             json_string_value(unk), json_string_length(unk))
                          : NULL;
        if (!uid) {
            MR_LOG_ERROR(LOG_T, "%s: model.unk_token is not a token of the vocab", t->name);
            return MR_ERR_FORMAT;
        }
        t->unk_id = (int32_t)json_integer_value(uid);
    }
    for (int b = 0; b < 256; b++) {
        if (t->byte_id[b] < 0 && byte_fallback) {
            MR_LOG_ERROR(LOG_T,
                         "%s: model.byte_fallback with byte %d missing from the vocab is "
                         "not supported",
                         t->name, b);
            return MR_ERR_UNSUPPORTED;
        }
    }
    return build_merges(t, model);
}

static uint64_t random_seed(void) {
    uint64_t s;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) == (ssize_t)sizeof s) return s;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)&s;
}

mr_status tok_build_from_json(json_t *root, const char *name, mr_tokenizer **out) {
    if (!json_is_object(root)) {
        MR_LOG_ERROR(LOG_T, "%s: top level must be a JSON object", name);
        return MR_ERR_FORMAT;
    }
    mr_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return MR_ERR_NOMEM;
    mr_status st = MR_ERR_NOMEM;
    pthread_mutex_init(&t->scratch_mu, NULL);
    t->seed = random_seed();
    if (!(t->name = strdup(name))) goto err_destroy;
    MR_CHECK_GOTO(parse_normalizer(t, root), err_destroy);
    MR_CHECK_GOTO(parse_pre_tokenizer(t, root), err_destroy);
    MR_CHECK_GOTO(parse_decoder(t, root), err_destroy);
    MR_CHECK_GOTO(parse_model(t, root), err_destroy);
    MR_CHECK_GOTO(build_added_tries(t), err_destroy);
    MR_CHECK_GOTO(tok_scratch_create(t, 1, &t->scratch), err_destroy);
    *out = t;
    return MR_OK;
err_destroy:
    mr_tokenizer_destroy(t);
    return st;
}

void mr_tokenizer_destroy(mr_tokenizer *t) {
    if (!t) return;
    tok_scratch_destroy(t->scratch);
    for (int i = 0; i < t->n_pre; i++) pcre2_code_free(t->pre[i].re);
    for (size_t i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    free(t->trie_raw.nodes);
    free(t->trie_norm.nodes);
    tok_strmap_free(&t->vocab);
    tok_pairmap_free(&t->merges);
    free(t->dec_off);
    free(t->dec_len);
    free(t->is_special);
    free(t->blob);
    free(t->name);
    pthread_mutex_destroy(&t->scratch_mu);
    free(t);
}

/* ---- loading files
 * ----------------------------------------------------------------------------------- */

#define MAX_FILE_BYTES ((size_t)1 << 30)

mr_status tok_read_file(const char *path, char **buf, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        MR_LOG_ERROR(LOG_T, "%s: cannot open: %s", path, strerror(errno));
        return errno == ENOENT ? MR_ERR_NOT_FOUND : MR_ERR_IO;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (size_t)sb.st_size > MAX_FILE_BYTES) {
        MR_LOG_ERROR(LOG_T, "%s: not a regular file of at most 1 GiB", path);
        close(fd);
        return MR_ERR_IO;
    }
    size_t n = (size_t)sb.st_size, got = 0;
    char *b = malloc(n + 1);
    if (!b) {
        close(fd);
        return MR_ERR_NOMEM;
    }
    while (got < n) {
        ssize_t r = MR_SYSCHECK(read(fd, b + got, n - got));
        if (r <= 0) {
            MR_LOG_ERROR(LOG_T, "%s: read failed", path);
            free(b);
            close(fd);
            return MR_ERR_IO;
        }
        got += (size_t)r;
    }
    close(fd);
    b[n] = '\0';
    *buf = b;
    *len = n;
    return MR_OK;
}

json_t *tok_parse_json(const char *buf, size_t len, const char *name) {
    json_error_t e;
    json_t *j = json_loadb(buf, len, JSON_ALLOW_NUL, &e);
    if (!j) MR_LOG_ERROR(LOG_T, "%s:%d:%d: invalid JSON: %s", name, e.line, e.column, e.text);
    return j;
}

mr_status mr_tokenizer_load_json_buf(const char *buf, size_t len, const char *name,
                                     mr_tokenizer **out) {
    json_t *j = tok_parse_json(buf, len, name);
    if (!j) return MR_ERR_FORMAT;
    mr_status st = tok_build_from_json(j, name, out);
    json_decref(j);
    return st;
}

mr_status mr_tokenizer_load_json(const char *path, mr_tokenizer **out) {
    char *buf;
    size_t len;
    MR_CHECK(tok_read_file(path, &buf, &len));
    mr_status st = mr_tokenizer_load_json_buf(buf, len, path, out);
    free(buf);
    return st;
}
