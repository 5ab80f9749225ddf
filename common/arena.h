/* arena.h — bump allocation from one block sized at start-up.
 *
 * A forward step never calls malloc: its scratch comes from an arena that is reset at the start
 * of every step. mr_arena_alloc() returns 64-byte aligned memory or NULL when the block is used
 * up (a sizing bug, reported by the caller as MR_ERR_INTERNAL). */
#ifndef MR_ARENA_H
#define MR_ARENA_H

#include <stddef.h>

#include "common/status.h"

typedef struct mr_arena {
    unsigned char *base;
    size_t cap;
    size_t used;
    size_t high_water;
} mr_arena;

mr_status mr_arena_init(mr_arena *a, size_t cap);
void mr_arena_fini(mr_arena *a);
/* An arena over memory the caller owns and frees (device memory, say: the arena only computes
 * addresses, it never reads or writes the block); base must be 64-byte aligned. No fini. */
void mr_arena_wrap(mr_arena *a, void *base, size_t cap);
void *mr_arena_alloc(mr_arena *a, size_t bytes);
static inline void mr_arena_reset(mr_arena *a) {
    a->used = 0;
}

/* 64-byte aligned allocation of large blocks (weights, caches); huge pages advised. */
void *mr_alloc_aligned(size_t bytes);
void mr_free_aligned(void *p);

#endif
