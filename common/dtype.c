#include "common/dtype.h"

#include <math.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_info[MR_DTYPE_COUNT] = {
    [MR_DTYPE_F32] = {"F32", 4},         [MR_DTYPE_F16] = {"F16", 2}, [MR_DTYPE_BF16] = {"BF16", 2},
    [MR_DTYPE_F8_E4M3] = {"F8_E4M3", 1}, [MR_DTYPE_I8] = {"I8", 1},   [MR_DTYPE_I32] = {"I32", 4},
};

size_t mr_dtype_size(mr_dtype t) {
    return (unsigned)t < MR_DTYPE_COUNT ? dtype_info[t].size : 0;
}

const char *mr_dtype_name(mr_dtype t) {
    return (unsigned)t < MR_DTYPE_COUNT ? dtype_info[t].name : "?";
}

int mr_dtype_parse(const char *s) {
    for (int i = 0; i < MR_DTYPE_COUNT; i++)
        if (strcmp(s, dtype_info[i].name) == 0) return i;
    return -1;
}

float mr_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    int exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ffu;
    float f;
    if (exp == 0) {
        f = ldexpf((float)man, -24); /* subnormal or zero */
        return sign ? -f : f;
    }
    uint32_t u;
    if (exp == 31)
        u = sign | 0x7f800000u | (man << 13); /* inf / nan */
    else
        u = sign | ((uint32_t)(exp - 15 + 127) << 23) | (man << 13);
    memcpy(&f, &u, sizeof f);
    return f;
}

uint16_t mr_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    float a = fabsf(f);
    if (isnan(f)) return sign | 0x7e00u;
    if (a >= 65520.0f) return sign | 0x7c00u; /* overflow to inf (RNE boundary) */
    if (a < 6.103515625e-05f) {               /* subnormal: round to multiple of 2^-24 */
        return sign | (uint16_t)lrintf(a * 16777216.0f);
    }
    uint32_t au = u & 0x7fffffffu;
    uint32_t exp = (au >> 23) - 127 + 15;
    uint32_t man = au & 0x7fffffu;
    uint32_t h = (exp << 10) | (man >> 13);
    uint32_t rest = man & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
    return sign | (uint16_t)h;
}

float mr_f8e4m3_to_f32(uint8_t v) {
    int sign = v >> 7;
    int exp = (v >> 3) & 0xf;
    int man = v & 0x7;
    float f;
    if (exp == 0xf && man == 0x7) return NAN;
    if (exp == 0)
        f = ldexpf((float)man, -9); /* subnormal: man/8 * 2^-6 */
    else
        f = ldexpf(1.0f + (float)man / 8.0f, exp - 7);
    return sign ? -f : f;
}

void mr_convert_f32_to_bf16(const void *src, void *dst, size_t n) {
    const unsigned char *s = src;
    unsigned char *d = dst;
    for (size_t i = 0; i < n; i++) { /* bytes, not typed pointers: dst may alias src */
        float f;
        memcpy(&f, s + 4 * i, sizeof f);
        const uint16_t b = mr_f32_to_bf16(f);
        memcpy(d + 2 * i, &b, sizeof b);
    }
}

void mr_convert_to_f32(mr_dtype src_type, const void *src, float *dst, size_t n) {
    switch (src_type) {
    case MR_DTYPE_F32:
        memcpy(dst, src, n * sizeof(float));
        break;
    case MR_DTYPE_BF16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = mr_bf16_to_f32(s[i]);
        break;
    }
    case MR_DTYPE_F16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = mr_f16_to_f32(s[i]);
        break;
    }
    case MR_DTYPE_F8_E4M3: {
        const uint8_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = mr_f8e4m3_to_f32(s[i]);
        break;
    }
    case MR_DTYPE_I8: {
        const int8_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
        break;
    }
    case MR_DTYPE_I32: {
        const int32_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
        break;
    }
    default:
        break;
    }
}
