/* tokenizer.c — the encode pipeline (added tokens, NFC, pre-tokenizer splits, BPE) and decode.
 *
 * The pipeline is HF's TokenizerImpl::encode_single_sequence, streamed: nothing is materialised
 * per piece. Text -> [added tokens with normalized=false, leftmost-longest] -> each remaining
 * segment is normalized (NFC) -> [added tokens with normalized=true] -> each remaining segment
 * runs through the pre-tokenizer steps in order, each step splitting its input piece and handing
 * every non-empty sub-piece to the next step -> the last step's pieces go to BPE. Splitting
 * reproduces HF exactly: the onig crate's find_iter rule for empty matches, the (offsets, is_match)
 * list with empty matches kept, the five split behaviours, and empty pieces dropped afterwards. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "common/check.h"
#include "common/log.h"
#include "coordinator/pyjson.h"
#include "coordinator/tokenizer_internal.h"
#include "coordinator/utf8.h"

#define LOG_T MR_LOG_TEXT

/* ---- scratch -----------------------------------------------------------------------------------
 */

mr_status tok_scratch_create(const mr_tokenizer *t, int with_cache, tok_scratch **out) {
    tok_scratch *s = calloc(1, sizeof *s);
    if (!s) return MR_ERR_NOMEM;
    if (!(s->md = pcre2_match_data_create(1, NULL))) goto err_destroy;
    if (!(s->mctx = pcre2_match_context_create(NULL))) goto err_destroy;
    /* a pattern that backtracks catastrophically fails with an error instead of hanging */
    pcre2_set_match_limit(s->mctx, 50u * 1000 * 1000);
    pcre2_set_depth_limit(s->mctx, 100u * 1000);
    if (!(s->jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL)))
        goto err_destroy;
    pcre2_jit_stack_assign(s->mctx, NULL, s->jit_stack);
    if (with_cache && tok_cache_create(&s->own_cache, t->seed) != MR_OK) goto err_destroy;
    *out = s;
    return MR_OK;
err_destroy:
    tok_scratch_destroy(s);
    return MR_ERR_NOMEM;
}

void tok_scratch_destroy(tok_scratch *s) {
    if (!s) return;
    pcre2_match_data_free(s->md);
    pcre2_match_context_free(s->mctx);
    pcre2_jit_stack_free(s->jit_stack);
    tok_cache_destroy(s->own_cache);
    free(s->sym_id);
    free(s->sym_prev);
    free(s->sym_next);
    free(s->pair_rank);
    free(s->pair_new);
    free(s->heap);
    for (int i = 0; i < TOK_MAX_PRE_STEPS; i++) free(s->prefix_buf[i]);
    free(s);
}

/* ---- NFC ----------------------------------------------------------------------------------------
 */

/* Characters before which NFC never changes anything: canonical combining class 0, NFC quick
 * check Yes, and never the second character of a composition, so nothing reorders or composes
 * across them. Only blocks that are certain are listed; everything else goes to utf8proc. */
static int nfc_boundary(uint32_t c) {
    return c < 0x300 || (c >= 0x400 && c <= 0x45f) || /* Cyrillic letters */
           (c >= 0x3041 && c <= 0x3096) ||            /* Hiragana (not U+3099/309A) */
           (c >= 0x30a1 && c <= 0x30fa) ||            /* Katakana */
           (c >= 0x4e00 && c <= 0x9fff) ||            /* CJK Unified Ideographs */
           (c >= 0xac00 && c <= 0xd7a3) ||            /* Hangul syllables */
           (c >= 0xff01 && c <= 0xff5e);              /* fullwidth ASCII */
}

/* The end of the run of characters from i on that are (want=1) or are not (want=0) boundaries. */
static size_t nfc_scan(const char *s, size_t n, size_t i, int want) {
    while (i < n) {
        if ((unsigned char)s[i] < 0x80) {
            if (!want) return i;
            i++;
            continue;
        }
        size_t l = mr_utf8_char_len((const unsigned char *)s + i, n - i);
        if (l == 0) l = 1; /* not reached: input was validated */
        if (nfc_boundary(mr_utf8_decode((const unsigned char *)s + i, l)) != want) return i;
        i += l;
    }
    return n;
}

mr_status tok_nfc(const char *s, size_t n, char **out, size_t *out_len) {
    mr_sbuf b = {0};
    size_t i = 0;
    while (i < n) {
        size_t u = nfc_scan(s, n, i, 1); /* first character that may change or combine */
        if (u == n) {
            mr_sbuf_add(&b, s + i, n - i);
            break;
        }
        size_t rs = u; /* the boundary character before it may compose with it */
        if (rs > i)
            while (--rs > i && ((unsigned char)s[rs] & 0xc0) == 0x80) {
            }
        size_t re = nfc_scan(s, n, u, 0);
        mr_sbuf_add(&b, s + i, rs - i);
        utf8proc_uint8_t *dst = NULL;
        utf8proc_ssize_t r =
            utf8proc_map((const utf8proc_uint8_t *)s + rs, (utf8proc_ssize_t)(re - rs), &dst,
                         UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        if (r < 0) {
            free(dst);
            mr_sbuf_free(&b);
            MR_LOG_ERROR(LOG_T, "NFC normalization failed: %s", utf8proc_errmsg(r));
            return r == UTF8PROC_ERROR_NOMEM ? MR_ERR_NOMEM : MR_ERR_INVALID;
        }
        mr_sbuf_add(&b, (const char *)dst, (size_t)r);
        free(dst);
        i = re;
    }
    return mr_sbuf_take(&b, out, out_len);
}

/* ---- character classes for added-token options (Rust char semantics)
 * -------------------------------- */

static int is_white_space(uint32_t c) { /* char::is_whitespace: the White_Space property */
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

static int is_word_char(uint32_t c) { /* char::is_alphanumeric() || '_' (letters and numbers) */
    if (c == '_') return 1;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
           (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO);
}

static uint32_t last_char(const char *s, size_t n) {
    size_t i = n;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) i--;
    if (i == 0) i = 1; /* unreachable for valid input */
    return mr_utf8_decode((const unsigned char *)s + i - 1, n - (i - 1));
}

static uint32_t first_char(const char *s, size_t n, size_t *len) {
    *len = mr_utf8_char_len((const unsigned char *)s, n);
    if (*len == 0) *len = 1;
    return mr_utf8_decode((const unsigned char *)s, *len);
}

/* ---- pre-tokenizer steps
 * -------------------------------------------------------------------------- */

static mr_status pre_step(const mr_tokenizer *t, tok_scratch *s, int i, const char *p, size_t n);

/* The behaviour state machine of one split step: items (offsets, is_match) go in, pieces come out
 * to the next step. `pending` is the piece that a later item may still extend. */
typedef struct split_emit {
    const mr_tokenizer *t;
    tok_scratch *s;
    int next_step;
    const char *p;
    tok_split_behavior beh;
    int have_pending, pending_match, prev_match;
    size_t ps, pe;
} split_emit;

static mr_status emit_piece(split_emit *e, size_t a, size_t b) {
    if (b <= a) return MR_OK; /* HF drops empty splits */
    return pre_step(e->t, e->s, e->next_step, e->p + a, b - a);
}

static mr_status flush_pending(split_emit *e) {
    if (!e->have_pending) return MR_OK;
    e->have_pending = 0;
    return emit_piece(e, e->ps, e->pe);
}

static mr_status split_item(split_emit *e, size_t a, size_t b, int is_match) {
    switch (e->beh) {
    case TOK_SPLIT_ISOLATED:
        return emit_piece(e, a, b);
    case TOK_SPLIT_REMOVED:
        return is_match ? MR_OK : emit_piece(e, a, b);
    case TOK_SPLIT_MERGED_PREV: /* a match joins the non-match before it */
        if (is_match && !e->prev_match && e->have_pending) {
            e->pe = b;
        } else {
            MR_CHECK(flush_pending(e));
            e->have_pending = 1;
            e->ps = a;
            e->pe = b;
        }
        e->prev_match = is_match;
        return MR_OK;
    case TOK_SPLIT_MERGED_NEXT: /* a match joins the non-match after it */
        if (e->have_pending && e->pending_match && !is_match) {
            e->have_pending = 0;
            return emit_piece(e, e->ps, b);
        }
        MR_CHECK(flush_pending(e));
        if (!is_match) return emit_piece(e, a, b);
        e->have_pending = 1;
        e->pending_match = 1;
        e->ps = a;
        e->pe = b;
        return MR_OK;
    case TOK_SPLIT_CONTIGUOUS: /* runs of matches (and of non-matches) join */
        if (is_match == e->prev_match && e->have_pending) {
            e->pe = b;
        } else {
            MR_CHECK(flush_pending(e));
            e->have_pending = 1;
            e->ps = a;
            e->pe = b;
        }
        e->prev_match = is_match;
        return MR_OK;
    }
    return MR_ERR_INTERNAL;
}

static mr_status run_split(const mr_tokenizer *t, tok_scratch *s, int i, const char *p, size_t n) {
    const tok_pre *pr = &t->pre[i];
    split_emit e = {.t = t, .s = s, .next_step = i + 1, .p = p, .beh = pr->behavior};
    size_t last_end = 0, prev = 0;
    int64_t last_match = -1;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
    while (last_end <= n) {
        int rc = pr->jit ? pcre2_jit_match(pr->re, (PCRE2_SPTR)p, n, last_end, 0, s->md, s->mctx)
                         : pcre2_match(pr->re, (PCRE2_SPTR)p, n, last_end, PCRE2_NO_UTF_CHECK,
                                       s->md, s->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            MR_LOG_ERROR(LOG_T, "%s: pre-tokenizer regex failed on a %zu-byte piece: %s", t->name,
                         n, (const char *)msg);
            return MR_ERR_INVALID;
        }
        size_t ms = ov[0], me = ov[1];
        if (ms == me && last_match == (int64_t)me) {
            /* the onig crate's find_iter: no empty match right after the previous match */
            if (last_end >= n) break;
            size_t cl = mr_utf8_char_len((const unsigned char *)p + last_end, n - last_end);
            last_end += cl ? cl : 1;
            continue;
        }
        last_end = me;
        last_match = (int64_t)me;
        if (prev != ms) MR_CHECK(split_item(&e, prev, ms, pr->invert));
        MR_CHECK(split_item(&e, ms, me, !pr->invert));
        prev = me;
    }
    if (prev != n) MR_CHECK(split_item(&e, prev, n, pr->invert));
    return flush_pending(&e);
}

static mr_status pre_step(const mr_tokenizer *t, tok_scratch *s, int i, const char *p, size_t n) {
    if (i == t->n_pre) return tok_bpe_piece(t, s, p, n);
    const tok_pre *pr = &t->pre[i];
    if (pr->kind == TOK_PRE_BYTELEVEL && pr->add_prefix_space && p[0] != ' ') {
        if (n + 1 > s->prefix_cap[i]) {
            size_t nc = 2 * (n + 1);
            char *b = realloc(s->prefix_buf[i], nc);
            if (!b) return MR_ERR_NOMEM;
            s->prefix_buf[i] = b;
            s->prefix_cap[i] = nc;
        }
        s->prefix_buf[i][0] = ' ';
        memcpy(s->prefix_buf[i] + 1, p, n);
        p = s->prefix_buf[i];
        n++;
    }
    if (!pr->re) return pre_step(t, s, i + 1, p, n);
    return run_split(t, s, i, p, n);
}

/* ---- added tokens
 * ---------------------------------------------------------------------------------- */

/* Longest added token starting at p[0..n); returns its index in t->added or -1. */
static int32_t trie_longest(const tok_trie *tr, const char *p, size_t n, size_t *len) {
    int32_t node = tr->root_child[(unsigned char)p[0]], best = -1;
    size_t i = 0;
    while (node >= 0) {
        i++;
        if (tr->nodes[node].added >= 0) {
            best = tr->nodes[node].added;
            *len = i;
        }
        if (i == n) break;
        int32_t c = tr->nodes[node].first_child;
        while (c >= 0 && tr->nodes[c].byte != (unsigned char)p[i]) c = tr->nodes[c].next_sibling;
        node = c;
    }
    return best;
}

typedef mr_status (*segment_fn)(const mr_tokenizer *t, tok_scratch *s, const char *p, size_t n,
                                unsigned flags);

/* HF AddedVocabulary::find_matches + split_with_indices: token ids and the text between them. */
static mr_status split_added(const mr_tokenizer *t, tok_scratch *s, const tok_trie *tr,
                             const char *p, size_t n, unsigned flags, segment_fn text_fn) {
    size_t start_offset = 0, pos = 0;
    while (pos < n) {
        size_t len = 0;
        int32_t ai = tr->root_child[(unsigned char)p[pos]] >= 0
                         ? trie_longest(tr, p + pos, n - pos, &len)
                         : -1;
        if (ai < 0) {
            pos++;
            continue;
        }
        size_t start = pos, stop = pos + len;
        pos = stop;
        const tok_added *a = &t->added[ai];
        if ((flags & MR_TOK_ENCODE_SPECIAL_AS_TEXT) && a->special) continue;
        if (a->single_word) {
            size_t cl;
            int start_space = start == 0 || !is_word_char(last_char(p, start));
            int stop_space = stop == n || !is_word_char(first_char(p + stop, n - stop, &cl));
            if (!start_space || !stop_space) continue;
        }
        if (a->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                size_t b = ns - 1;
                while (b > 0 && ((unsigned char)p[b] & 0xc0) == 0x80) b--;
                if (!is_white_space(mr_utf8_decode((const unsigned char *)p + b, ns - b))) break;
                ns = b;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip) {
            size_t cl;
            while (stop < n && is_white_space(first_char(p + stop, n - stop, &cl))) stop += cl;
        }
        if (start > start_offset)
            MR_CHECK(text_fn(t, s, p + start_offset, start - start_offset, flags));
        MR_CHECK(tok_ids_push(s->out, a->id));
        start_offset = stop; /* matching goes on after the token itself, as HF's */
    }
    if (start_offset < n) MR_CHECK(text_fn(t, s, p + start_offset, n - start_offset, flags));
    return MR_OK;
}

static mr_status pretokenize_fn(const mr_tokenizer *t, tok_scratch *s, const char *p, size_t n,
                                unsigned flags) {
    (void)flags;
    return pre_step(t, s, 0, p, n);
}

static mr_status normalize_fn(const mr_tokenizer *t, tok_scratch *s, const char *p, size_t n,
                              unsigned flags) {
    if (!t->nfc) return split_added(t, s, &t->trie_norm, p, n, flags, pretokenize_fn);
    char *np;
    size_t nn;
    MR_CHECK(tok_nfc(p, n, &np, &nn));
    mr_status st = split_added(t, s, &t->trie_norm, np, nn, flags, pretokenize_fn);
    free(np);
    return st;
}

/* ---- public
 * ----------------------------------------------------------------------------------------- */

mr_status mr_tokenizer_encode(mr_tokenizer *t, const char *text, size_t len, unsigned flags,
                              int32_t **ids, size_t *n_ids) {
    if (len > INT32_MAX) { /* symbol positions of the merge loop are 31-bit */
        MR_LOG_ERROR(LOG_T, "encode: text of %zu bytes is over the 2 GiB limit", len);
        return MR_ERR_INVALID;
    }
    size_t bad = mr_utf8_check(text, len);
    if (bad != len) {
        MR_LOG_ERROR(LOG_T, "encode: text is not valid UTF-8 at byte %zu (0x%02x)", bad,
                     (unsigned char)text[bad]);
        return MR_ERR_INVALID;
    }
    tok_scratch *s;
    int shared = pthread_mutex_trylock(&t->scratch_mu) == 0;
    if (shared) {
        s = t->scratch;
    } else {
        MR_CHECK(tok_scratch_create(t, 0, &s));
    }
    s->cache = (flags & MR_TOK_ENCODE_NO_CACHE) ? NULL : s->own_cache;
    tok_ids out = {0};
    s->out = &out;
    mr_status st = len ? split_added(t, s, &t->trie_raw, text, len, flags, normalize_fn) : MR_OK;
    s->out = NULL;
    if (shared)
        pthread_mutex_unlock(&t->scratch_mu);
    else
        tok_scratch_destroy(s);
    if (st == MR_OK && !out.v && !(out.v = malloc(sizeof *out.v))) st = MR_ERR_NOMEM;
    if (st != MR_OK) {
        if (st == MR_ERR_NOMEM) MR_LOG_ERROR(LOG_T, "encode: out of memory (%zu bytes)", len);
        free(out.v);
        return st;
    }
    *ids = out.v;
    *n_ids = out.n;
    return MR_OK;
}

const char *mr_tokenizer_token_bytes(const mr_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_ids || t->dec_off[id] < 0) return NULL;
    *len = t->dec_len[id];
    return t->blob + t->dec_off[id];
}

mr_status mr_tokenizer_decode(const mr_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                              char **text, size_t *len) {
    size_t total = 0, l;
    for (size_t i = 0; i < n; i++) {
        if ((flags & MR_TOK_DECODE_SKIP_SPECIAL) && mr_tokenizer_is_special(t, ids[i])) continue;
        if (mr_tokenizer_token_bytes(t, ids[i], &l)) total += l;
    }
    char *o = malloc(total + 1);
    if (!o) {
        MR_LOG_ERROR(LOG_T, "decode: out of memory (%zu bytes)", total);
        return MR_ERR_NOMEM;
    }
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if ((flags & MR_TOK_DECODE_SKIP_SPECIAL) && mr_tokenizer_is_special(t, ids[i])) continue;
        const char *b = mr_tokenizer_token_bytes(t, ids[i], &l);
        if (b) {
            memcpy(o + j, b, l);
            j += l;
        }
    }
    o[j] = '\0';
    *text = o;
    *len = j;
    return MR_OK;
}

int32_t mr_tokenizer_n_ids(const mr_tokenizer *t) {
    return t->n_ids;
}

int32_t mr_tokenizer_token_id(const mr_tokenizer *t, const char *s, size_t len) {
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == len && memcmp(t->added[i].content, s, len) == 0)
            return t->added[i].id;
    return tok_strmap_get(&t->vocab, s, len);
}

int mr_tokenizer_is_special(const mr_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_ids && t->is_special[id];
}
