/* tokenizer_bpe.c — hash maps, the BPE merge loop and the pre-token cache.
 *
 * The merge rule is Hugging Face's `Word::merge_all`: repeatedly merge the adjacent pair with the
 * lowest merge rank, the leftmost one among equal ranks, until no adjacent pair has a merge. HF
 * keeps a heap of candidate merges and skips stale entries by comparing the merged id; since
 * symbols only grow, an entry whose pair changed always names a longer, different token, so that
 * check is exactly "the pair is unchanged" and the rule above is what it computes (merge ranks
 * are at most 2^32 - 2 and positions below 2^31, so an entry packs into one 64-bit key). Short
 * pieces (almost all of them) use an O(n^2) array scan, which is fastest for a few symbols; longer
 * ones use HF's heap over a linked list, O(n log n), so a megabyte-long word is not quadratic. */
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "coordinator/tokenizer_internal.h"

/* ---- hashing ------------------------------------------------------------------------------------
 */

static inline uint64_t mix64(uint64_t a, uint64_t b) {
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

uint64_t tok_hash_bytes(const char *p, size_t n, uint64_t seed) {
    uint64_t h = seed ^ ((uint64_t)n * 0x9e3779b97f4a7c15ull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = mix64(h ^ w, 0xbf58476d1ce4e5b9ull);
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    h = mix64(h ^ w ^ ((uint64_t)n << 59), 0x94d049bb133111ebull);
    return h ^ (h >> 29);
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

/* ---- string map
 * ----------------------------------------------------------------------------------- */

mr_status tok_strmap_init(tok_strmap *m, size_t expect, uint64_t seed) {
    memset(m, 0, sizeof *m);
    m->seed = seed;
    m->cap = pow2_at_least(expect * 2);
    m->slots = malloc(m->cap * sizeof *m->slots);
    if (!m->slots) return MR_ERR_NOMEM;
    for (size_t i = 0; i < m->cap; i++) m->slots[i].off = UINT32_MAX;
    return MR_OK;
}

void tok_strmap_free(tok_strmap *m) {
    free(m->slots);
    free(m->keys);
    memset(m, 0, sizeof *m);
}

void tok_strmap_clear(tok_strmap *m) {
    for (size_t i = 0; i < m->cap; i++) m->slots[i].off = UINT32_MAX;
    m->n = 0;
    m->keys_len = 0;
}

int32_t tok_strmap_get(const tok_strmap *m, const char *k, size_t len) {
    uint64_t h = tok_hash_bytes(k, len, m->seed);
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const struct tok_strmap_slot *s = &m->slots[i];
        if (s->off == UINT32_MAX) return -1;
        if (s->hash == (uint32_t)h && s->len == len && memcmp(m->keys + s->off, k, len) == 0)
            return s->val;
    }
}

static mr_status strmap_grow(tok_strmap *m) {
    size_t ncap = m->cap * 2;
    struct tok_strmap_slot *ns = malloc(ncap * sizeof *ns);
    if (!ns) return MR_ERR_NOMEM;
    for (size_t i = 0; i < ncap; i++) ns[i].off = UINT32_MAX;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].off == UINT32_MAX) continue;
        uint64_t h = tok_hash_bytes(m->keys + m->slots[i].off, m->slots[i].len, m->seed);
        size_t j = h & (ncap - 1);
        while (ns[j].off != UINT32_MAX) j = (j + 1) & (ncap - 1);
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return MR_OK;
}

mr_status tok_strmap_put(tok_strmap *m, const char *k, size_t len, int32_t val) {
    if ((m->n + 1) * 2 > m->cap) {
        mr_status st = strmap_grow(m);
        if (st != MR_OK) return st;
    }
    uint64_t h = tok_hash_bytes(k, len, m->seed);
    size_t mask = m->cap - 1, i;
    for (i = h & mask; m->slots[i].off != UINT32_MAX; i = (i + 1) & mask) {
        struct tok_strmap_slot *s = &m->slots[i];
        if (s->hash == (uint32_t)h && s->len == len && memcmp(m->keys + s->off, k, len) == 0) {
            s->val = val;
            return MR_OK;
        }
    }
    if (len > UINT32_MAX / 2 || m->keys_len + len >= UINT32_MAX) return MR_ERR_NOMEM;
    if (m->keys_len + len > m->keys_cap) {
        size_t nc = m->keys_cap ? m->keys_cap * 2 : 4096;
        while (nc < m->keys_len + len) nc *= 2;
        char *nk = realloc(m->keys, nc);
        if (!nk) return MR_ERR_NOMEM;
        m->keys = nk;
        m->keys_cap = nc;
    }
    if (len) memcpy(m->keys + m->keys_len, k, len);
    m->slots[i] = (struct tok_strmap_slot){(uint32_t)m->keys_len, (uint32_t)len, (uint32_t)h, val};
    m->keys_len += len;
    m->n++;
    return MR_OK;
}

/* ---- pair map
 * ------------------------------------------------------------------------------------- */

static inline size_t pair_index(uint64_t key, size_t cap) {
    return (size_t)((key * 0x9e3779b97f4a7c15ull) >> 32) & (cap - 1);
}

mr_status tok_pairmap_init(tok_pairmap *m, size_t expect) {
    m->n = 0;
    m->cap = pow2_at_least(expect * 2);
    m->slots = malloc(m->cap * sizeof *m->slots);
    if (!m->slots) return MR_ERR_NOMEM;
    for (size_t i = 0; i < m->cap; i++) m->slots[i].key = UINT64_MAX;
    return MR_OK;
}

void tok_pairmap_free(tok_pairmap *m) {
    free(m->slots);
    m->slots = NULL;
    m->cap = m->n = 0;
}

static mr_status pairmap_grow(tok_pairmap *m) {
    size_t ncap = m->cap * 2;
    struct tok_pair_slot *ns = malloc(ncap * sizeof *ns);
    if (!ns) return MR_ERR_NOMEM;
    for (size_t i = 0; i < ncap; i++) ns[i].key = UINT64_MAX;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].key == UINT64_MAX) continue;
        size_t j = pair_index(m->slots[i].key, ncap);
        while (ns[j].key != UINT64_MAX) j = (j + 1) & (ncap - 1);
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return MR_OK;
}

mr_status tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t new_id) {
    if ((m->n + 1) * 2 > m->cap) {
        mr_status st = pairmap_grow(m);
        if (st != MR_OK) return st;
    }
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = pair_index(key, m->cap);
    while (m->slots[i].key != UINT64_MAX && m->slots[i].key != key) i = (i + 1) & (m->cap - 1);
    if (m->slots[i].key == UINT64_MAX) m->n++;
    m->slots[i] = (struct tok_pair_slot){key, rank, new_id};
    return MR_OK;
}

const struct tok_pair_slot *tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    for (size_t i = pair_index(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (m->slots[i].key == key) return &m->slots[i];
        if (m->slots[i].key == UINT64_MAX) return NULL;
    }
}

/* ---- growable id vector -------------------------------------------------------------------------
 */

mr_status tok_ids_push(tok_ids *v, int32_t id) {
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 64;
        int32_t *nv = realloc(v->v, nc * sizeof *nv);
        if (!nv) return MR_ERR_NOMEM;
        v->v = nv;
        v->cap = nc;
    }
    v->v[v->n++] = id;
    return MR_OK;
}

/* ---- merge loop
 * ----------------------------------------------------------------------------------- */

#define NO_RANK UINT32_MAX

static mr_status scratch_reserve(tok_scratch *s, size_t n) {
    if (n <= s->sym_cap) return MR_OK;
    size_t nc = s->sym_cap ? s->sym_cap : 256;
    while (nc < n) nc *= 2;
    int32_t *a = realloc(s->sym_id, nc * sizeof *a);
    if (!a) return MR_ERR_NOMEM;
    s->sym_id = a;
    if (!(a = realloc(s->sym_prev, nc * sizeof *a))) return MR_ERR_NOMEM;
    s->sym_prev = a;
    if (!(a = realloc(s->sym_next, nc * sizeof *a))) return MR_ERR_NOMEM;
    s->sym_next = a;
    if (!(a = realloc(s->pair_new, nc * sizeof *a))) return MR_ERR_NOMEM;
    s->pair_new = a;
    uint32_t *r = realloc(s->pair_rank, nc * sizeof *r);
    if (!r) return MR_ERR_NOMEM;
    s->pair_rank = r;
    uint64_t *h = realloc(s->heap, nc * sizeof *h);
    if (!h) return MR_ERR_NOMEM;
    s->heap = h;
    s->heap_cap = nc;
    s->sym_cap = nc;
    return MR_OK;
}

static inline void pair_lookup(const mr_tokenizer *t, int32_t a, int32_t b, uint32_t *rank,
                               int32_t *new_id) {
    const struct tok_pair_slot *p = tok_pairmap_get(&t->merges, a, b);
    *rank = p ? p->rank : NO_RANK;
    *new_id = p ? p->new_id : -1;
}

/* O(n^2) in the number of symbols: for short pieces. */
static size_t merge_scan(const mr_tokenizer *t, tok_scratch *s, int32_t *ids, size_t k) {
    uint32_t *rank = s->pair_rank;
    int32_t *nid = s->pair_new;
    for (size_t i = 0; i + 1 < k; i++) pair_lookup(t, ids[i], ids[i + 1], &rank[i], &nid[i]);
    while (k > 1) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < k; i++)
            if (rank[i] < rank[best]) best = i;
        if (rank[best] == NO_RANK) break;
        ids[best] = nid[best];
        k--;
        memmove(ids + best + 1, ids + best + 2, (k - best - 1) * sizeof *ids);
        size_t np = k - 1; /* pairs now */
        if (np > best + 1) {
            memmove(rank + best + 1, rank + best + 2, (np - best - 1) * sizeof *rank);
            memmove(nid + best + 1, nid + best + 2, (np - best - 1) * sizeof *nid);
        }
        if (best > 0) pair_lookup(t, ids[best - 1], ids[best], &rank[best - 1], &nid[best - 1]);
        if (best < np) pair_lookup(t, ids[best], ids[best + 1], &rank[best], &nid[best]);
    }
    return k;
}

/* Heap entries are rank << 32 | position: one compare orders by rank, then leftmost. */
static void heap_push(uint64_t *h, size_t *n, uint64_t it) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (it >= h[p]) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = it;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (h[c] >= last) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

#define HEAP_ITEM(rank, pos) (((uint64_t)(rank) << 32) | (uint32_t)(pos))

/* HF's Word::merge_all: a heap of (rank, position) over a doubly linked list of symbols. An entry
 * is stale when the pair at its position no longer has its rank (a rank names one pair, so this
 * is HF's "merged id differs" check). At most one push per initial pair and two per merge: 3n. */
static mr_status merge_heap(const mr_tokenizer *t, tok_scratch *s, int32_t *ids, size_t *kp) {
    size_t k = *kp;
    if (k > SIZE_MAX / 4 / sizeof(uint64_t)) return MR_ERR_NOMEM;
    if (s->heap_cap < 3 * k) {
        uint64_t *h = realloc(s->heap, 3 * k * sizeof *h);
        if (!h) return MR_ERR_NOMEM;
        s->heap = h;
        s->heap_cap = 3 * k;
    }
    int32_t *sym = s->sym_id, *prev = s->sym_prev, *next = s->sym_next;
    uint64_t *h = s->heap;
    size_t hn = 0;
    for (size_t i = 0; i < k; i++) {
        sym[i] = ids[i];
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < k ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < k; i++) {
        const struct tok_pair_slot *ps = tok_pairmap_get(&t->merges, sym[i], sym[i + 1]);
        if (ps) heap_push(h, &hn, HEAP_ITEM(ps->rank, i));
    }
    while (hn > 0) {
        uint64_t top = heap_pop(h, &hn);
        int32_t p = (int32_t)(uint32_t)top;
        if (sym[p] < 0 || next[p] < 0) continue; /* removed, or now last */
        int32_t q = next[p];
        const struct tok_pair_slot *ps = tok_pairmap_get(&t->merges, sym[p], sym[q]);
        if (!ps || ps->rank != (uint32_t)(top >> 32)) continue; /* stale */
        sym[p] = ps->new_id;
        sym[q] = -1;
        next[p] = next[q];
        if (next[q] >= 0) prev[next[q]] = p;
        if (prev[p] >= 0) {
            ps = tok_pairmap_get(&t->merges, sym[prev[p]], sym[p]);
            if (ps) heap_push(h, &hn, HEAP_ITEM(ps->rank, prev[p]));
        }
        if (next[p] >= 0) {
            ps = tok_pairmap_get(&t->merges, sym[p], sym[next[p]]);
            if (ps) heap_push(h, &hn, HEAP_ITEM(ps->rank, p));
        }
    }
    size_t out = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) ids[out++] = sym[i];
    *kp = out;
    return MR_OK;
}

mr_status tok_bpe_merge(const mr_tokenizer *t, tok_scratch *s, int32_t *ids, size_t *n, int force) {
    if (*n < 2) return MR_OK;
    mr_status st = scratch_reserve(s, *n);
    if (st != MR_OK) return st;
    if (force == 1 || (force == 0 && *n <= TOK_SCAN_MAX)) {
        *n = merge_scan(t, s, ids, *n);
        return MR_OK;
    }
    return merge_heap(t, s, ids, n);
}

/* ---- cache
 * ------------------------------------------------------------------------------------------ */

mr_status tok_cache_create(tok_cache **out, uint64_t seed) {
    tok_cache *c = calloc(1, sizeof *c);
    if (!c) return MR_ERR_NOMEM;
    if (tok_strmap_init(&c->map, TOK_CACHE_ENTRIES, seed) != MR_OK) {
        free(c);
        return MR_ERR_NOMEM;
    }
    *out = c;
    return MR_OK;
}

void tok_cache_destroy(tok_cache *c) {
    if (!c) return;
    tok_strmap_free(&c->map);
    free(c->ids);
    free(c);
}

static void cache_put(tok_cache *c, const char *p, size_t n, const int32_t *ids, size_t k) {
    if (c->map.n >= TOK_CACHE_ENTRIES || c->n_ids + k + 1 > (size_t)8 * TOK_CACHE_ENTRIES) {
        tok_strmap_clear(&c->map); /* bounded memory: start over */
        c->n_ids = 0;
    }
    if (c->n_ids + k + 1 > c->cap_ids) {
        size_t nc = c->cap_ids ? c->cap_ids * 2 : 4096;
        while (nc < c->n_ids + k + 1) nc *= 2;
        int32_t *v = realloc(c->ids, nc * sizeof *v);
        if (!v) return; /* caching is best effort */
        c->ids = v;
        c->cap_ids = nc;
    }
    size_t off = c->n_ids;
    if (tok_strmap_put(&c->map, p, n, (int32_t)off) != MR_OK) return;
    c->ids[off] = (int32_t)k;
    memcpy(c->ids + off + 1, ids, k * sizeof *ids);
    c->n_ids += k + 1;
}

/* ---- one pre-token
 * -------------------------------------------------------------------------------- */

mr_status tok_bpe_piece(const mr_tokenizer *t, tok_scratch *s, const char *p, size_t n) {
    tok_ids *out = s->out;
    if (n == 0) return MR_OK;
    int cacheable = s->cache && n <= TOK_CACHE_MAX_KEY;
    if (t->ignore_merges) {
        int32_t id = tok_strmap_get(&t->vocab, p, n);
        if (id >= 0) return tok_ids_push(out, id);
    }
    if (cacheable) {
        int32_t off = tok_strmap_get(&s->cache->map, p, n);
        if (off >= 0) {
            const int32_t *c = s->cache->ids + off;
            for (int32_t i = 0; i < c[0]; i++) MR_CHECK(tok_ids_push(out, c[1 + i]));
            return MR_OK;
        }
    }
    /* initial symbols, appended to out and merged in place there (HF merge_word) */
    size_t base = out->n;
    int32_t unk = -1;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[(unsigned char)p[i]];
        if (id >= 0) {
            if (unk >= 0) MR_CHECK(tok_ids_push(out, unk));
            unk = -1;
            MR_CHECK(tok_ids_push(out, id));
        } else if (t->unk_id >= 0) {
            if (unk >= 0 && !t->fuse_unk) MR_CHECK(tok_ids_push(out, unk));
            unk = t->unk_id;
        }
    }
    if (unk >= 0) MR_CHECK(tok_ids_push(out, unk));
    size_t k = out->n - base;
    if (k == 0) return MR_OK; /* every byte unknown and no unk token: nothing (HF drops them) */
    MR_CHECK(tok_bpe_merge(t, s, out->v + base, &k, 0));
    out->n = base + k;
    if (cacheable) cache_put(s->cache, p, n, out->v + base, k);
    return MR_OK;
}
