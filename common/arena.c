#include "common/arena.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

void *mr_alloc_aligned(size_t bytes) {
    if (bytes == 0) bytes = 64;
    size_t align = bytes >= (2u << 20) ? (2u << 20) : 64;
    bytes = (bytes + align - 1) & ~(align - 1);
    void *p = NULL;
    if (posix_memalign(&p, align, bytes) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    if (align == (2u << 20)) madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return p;
}

void mr_free_aligned(void *p) {
    free(p);
}

mr_status mr_arena_init(mr_arena *a, size_t cap) {
    memset(a, 0, sizeof *a);
    a->base = mr_alloc_aligned(cap);
    if (!a->base) return MR_ERR_NOMEM;
    a->cap = cap;
    return MR_OK;
}

void mr_arena_fini(mr_arena *a) {
    mr_free_aligned(a->base);
    memset(a, 0, sizeof *a);
}

void mr_arena_wrap(mr_arena *a, void *base, size_t cap) {
    memset(a, 0, sizeof *a);
    a->base = base;
    a->cap = cap;
}

void *mr_arena_alloc(mr_arena *a, size_t bytes) {
    size_t off = (a->used + 63) & ~(size_t)63;
    if (off > a->cap || bytes > a->cap - off) return NULL;
    a->used = off + bytes;
    if (a->used > a->high_water) a->high_water = a->used;
    return a->base + off;
}
