/* dtype.h — element types of checkpoints and tensors, and scalar conversions.
 *
 * bf16 is stored as the upper 16 bits of an IEEE float32; f32->bf16 rounds to nearest even
 * (NaN stays NaN). f8_e4m3 is the OCP "E4M3FN" format used by safetensors F8_E4M3:
 * bias 7, no infinities, S.1111.111 is NaN, max finite 448. */
#ifndef MR_DTYPE_H
#define MR_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Functions marked MR_HD are also compiled for the GPU when included from CUDA sources. */
#ifdef __CUDACC__
#define MR_HD __host__ __device__
#else
#define MR_HD
#endif

typedef enum mr_dtype {
    MR_DTYPE_F32 = 0,
    MR_DTYPE_F16,
    MR_DTYPE_BF16,
    MR_DTYPE_F8_E4M3,
    MR_DTYPE_I8,
    MR_DTYPE_I32,
    MR_DTYPE_COUNT,
} mr_dtype;

/* Bytes per element. */
size_t mr_dtype_size(mr_dtype t);
/* The safetensors spelling: "F32", "F16", "BF16", "F8_E4M3", "I8", "I32". */
const char *mr_dtype_name(mr_dtype t);
/* Parse the safetensors spelling; returns -1 if unknown. */
int mr_dtype_parse(const char *s);

static inline MR_HD float mr_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline MR_HD uint16_t mr_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float mr_f16_to_f32(uint16_t h);
uint16_t mr_f32_to_f16(float f);
float mr_f8e4m3_to_f32(uint8_t v);

/* Convert n elements of type `src_type` at `src` into float32 `dst`. F32/F16/BF16/F8_E4M3/I8. */
void mr_convert_to_f32(mr_dtype src_type, const void *src, float *dst, size_t n);
/* n float32 values at src as bf16 (mr_f32_to_bf16) at dst, in order. dst may be src itself
 * (narrowing in place: element i's 2 bytes land on bytes already read). */
void mr_convert_f32_to_bf16(const void *src, void *dst, size_t n);

#endif
