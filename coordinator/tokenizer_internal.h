/* tokenizer_internal.h — the tokenizer's data structures, shared by tokenizer_load.c (building
 * them from tokenizer.json), tokenizer_bpe.c (maps, BPE merge loop, cache) and tokenizer.c (the
 * encode pipeline and decode). Not for use outside coordinator/tokenizer*.c and its tests. */
#ifndef MR_TOKENIZER_INTERNAL_H
#define MR_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "coordinator/tokenizer.h"

#define TOK_MAX_ID        (1 << 24) /* ids at or above are rejected at load */
#define TOK_MAX_ADDED_LEN 1024      /* bytes of an added token's content */
#define TOK_MAX_PRE_STEPS 8         /* pre-tokenizer steps after flattening Sequences */
#define TOK_CACHE_MAX_KEY 256       /* pre-tokens longer than this are not cached (as HF) */
#define TOK_CACHE_ENTRIES (1 << 16) /* the cache is cleared when it holds this many */
#define TOK_SCAN_MAX      48        /* pieces of at most this many symbols merge by array scan */

/* ---- maps ---------------------------------------------------------------------------------- */

/* Byte string -> int32, open addressing with linear probing; keys are copied into the map. */
typedef struct tok_strmap {
    struct tok_strmap_slot {
        uint32_t off; /* UINT32_MAX: empty */
        uint32_t len;
        uint32_t hash;
        int32_t val;
    } * slots;
    size_t cap; /* power of two */
    size_t n;
    char *keys;
    size_t keys_len, keys_cap;
    uint64_t seed;
} tok_strmap;

mr_status tok_strmap_init(tok_strmap *m, size_t expect, uint64_t seed);
void tok_strmap_free(tok_strmap *m);
void tok_strmap_clear(tok_strmap *m);
int32_t tok_strmap_get(const tok_strmap *m, const char *k, size_t len);          /* -1 if absent */
mr_status tok_strmap_put(tok_strmap *m, const char *k, size_t len, int32_t val); /* overwrites */

/* (left id, right id) -> (rank, merged id). */
typedef struct tok_pairmap {
    struct tok_pair_slot {
        uint64_t key; /* UINT64_MAX: empty */
        uint32_t rank;
        int32_t new_id;
    } * slots;
    size_t cap, n;
} tok_pairmap;

mr_status tok_pairmap_init(tok_pairmap *m, size_t expect);
void tok_pairmap_free(tok_pairmap *m);
mr_status tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t new_id);
/* Returns the slot or NULL. */
const struct tok_pair_slot *tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b);

/* ---- pipeline description -------------------------------------------------------------------- */

typedef enum tok_split_behavior {
    TOK_SPLIT_REMOVED,
    TOK_SPLIT_ISOLATED,
    TOK_SPLIT_MERGED_PREV,
    TOK_SPLIT_MERGED_NEXT,
    TOK_SPLIT_CONTIGUOUS,
} tok_split_behavior;

typedef enum tok_pre_kind { TOK_PRE_SPLIT, TOK_PRE_BYTELEVEL } tok_pre_kind;

typedef struct tok_pre {
    tok_pre_kind kind;
    /* split (ByteLevel with use_regex is a split with the GPT-2 regex, then the prefix space) */
    pcre2_code *re; /* NULL: no split */
    int jit;        /* re was JIT-compiled */
    tok_split_behavior behavior;
    int invert;
    int add_prefix_space; /* ByteLevel only */
} tok_pre;

typedef struct tok_added {
    int32_t id;
    char *content;
    size_t len;
    uint8_t special, normalized, lstrip, rstrip, single_word;
} tok_added;

/* A byte trie over added-token contents: node 0 is the root; child lists are sorted by byte. */
typedef struct tok_trie {
    struct tok_trie_node {
        int32_t first_child, next_sibling;
        int32_t added; /* index into added[], -1 if no token ends here */
        uint8_t byte;
    } * nodes;
    size_t n, cap;
    int32_t root_child[256]; /* child of the root for each first byte, -1 if none */
} tok_trie;

/* ---- per-encode scratch ------------------------------------------------------------------------
 */

/* Cached BPE results of pre-tokens: map value = offset into ids, where ids[off] is the count. */
typedef struct tok_cache {
    tok_strmap map;
    int32_t *ids;
    size_t n_ids, cap_ids;
} tok_cache;

typedef struct tok_ids {
    int32_t *v;
    size_t n, cap;
} tok_ids;

typedef struct tok_scratch {
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit_stack;
    tok_cache *own_cache; /* the shared scratch's cache (NULL in temporary scratches) */
    tok_cache *cache;     /* the one this encode uses: own_cache or NULL */
    /* BPE work arrays, grown as needed */
    int32_t *sym_id, *sym_prev, *sym_next;
    uint32_t *pair_rank;
    int32_t *pair_new;
    size_t sym_cap;
    uint64_t *heap; /* rank << 32 | position */
    size_t heap_cap;
    /* ByteLevel add_prefix_space copies, one per pipeline depth */
    char *prefix_buf[TOK_MAX_PRE_STEPS];
    size_t prefix_cap[TOK_MAX_PRE_STEPS];
    tok_ids *out; /* where this encode appends ids */
} tok_scratch;

/* ---- the tokenizer -----------------------------------------------------------------------------
 */

struct mr_tokenizer {
    char *name; /* file name, for messages */
    int32_t n_ids;
    /* decode: the bytes of each id (added content first, else vocab), in `blob` */
    int64_t *dec_off; /* -1: no token */
    uint32_t *dec_len;
    uint8_t *is_special;
    char *blob;
    size_t blob_len, blob_cap;
    /* model */
    tok_strmap vocab;     /* bytes of byte-level vocab entries -> id */
    int32_t byte_id[256]; /* id of each single byte, -1 if not in vocab */
    tok_pairmap merges;
    int ignore_merges;
    int32_t unk_id; /* -1: none */
    int fuse_unk;
    /* added tokens */
    tok_added *added;
    size_t n_added;
    tok_trie trie_raw;  /* normalized == false */
    tok_trie trie_norm; /* normalized == true, contents normalized */
    int nfc;            /* normalizer */
    tok_pre pre[TOK_MAX_PRE_STEPS];
    int n_pre;
    uint64_t seed;
    /* the shared scratch (with the cache), used by one encode at a time */
    pthread_mutex_t scratch_mu;
    tok_scratch *scratch;
};

/* tokenizer_bpe.c */
/* Appends the ids of one pre-token (raw bytes) to s->out; uses s->cache when set. */
mr_status tok_bpe_piece(const mr_tokenizer *t, tok_scratch *s, const char *p, size_t n);
/* The merge loop alone, on initial symbols (exposed to test the scan and heap variants against
 * each other): merges ids[0..n) in place, returns the new count. force: 0 auto, 1 scan, 2 heap. */
mr_status tok_bpe_merge(const mr_tokenizer *t, tok_scratch *s, int32_t *ids, size_t *n, int force);
mr_status tok_cache_create(tok_cache **out, uint64_t seed);
void tok_cache_destroy(tok_cache *c);
mr_status tok_ids_push(tok_ids *v, int32_t id);
uint64_t tok_hash_bytes(const char *p, size_t n, uint64_t seed);

/* tokenizer.c */
mr_status tok_scratch_create(const mr_tokenizer *t, int with_cache, tok_scratch **out);
void tok_scratch_destroy(tok_scratch *s);
/* NFC of s[0..n) into a new buffer (identity copy when no character can change). */
mr_status tok_nfc(const char *s, size_t n, char **out, size_t *out_len);

/* tokenizer_load.c */
extern const char tok_gpt2_regex[];
/* Builds a tokenizer from a parsed tokenizer.json document; NAME is used in messages. */
mr_status tok_build_from_json(json_t *root, const char *name, mr_tokenizer **out);
/* Reads a regular file of at most 1 GiB into a NUL-terminated buffer (logs failures). */
mr_status tok_read_file(const char *path, char **buf, size_t *len);
/* Parses JSON text (NULs allowed in strings); logs file:line:column on failure. */
json_t *tok_parse_json(const char *buf, size_t len, const char *name);

/* tokenizer_sources.c */
extern const char tok_minimax_regex[];
/* The 256 byte-level characters: UTF-8 of the character byte b maps to. */
void tok_byte_char(unsigned b, char out[3], size_t *len);

#endif
