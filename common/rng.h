/* rng.h — small deterministic generators (splitmix64) for synthetic weights and tests.
 * Integer-only, so the same seed gives the same bits on every machine and compiler. */
#ifndef MR_RNG_H
#define MR_RNG_H

#include <stdint.h>

#include "common/dtype.h" /* MR_HD */

static inline MR_HD uint64_t mr_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1) with 24 random bits: exactly representable in float32. */
static inline MR_HD float mr_rng_uniform_pm1(uint64_t *state) {
    return (float)(int32_t)((mr_splitmix64(state) >> 40) - (1u << 23)) * (1.0f / (float)(1u << 23));
}

/* FNV-1a of a string, used to derive per-tensor streams from a seed. */
static inline uint64_t mr_fnv1a64(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

#endif
