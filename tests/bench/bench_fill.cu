/* bench_fill.cu — random fills for the benchmarks (bench_util.h): uniform in [-scale, scale) from
 * a counter hash of (seed, i), so any element is reproducible without a generator state. */
#include <cuda_bf16.h>
#include <stdint.h>

#include "tests/bench/bench_util.h"

__device__ static __forceinline__ float fill_uniform(uint64_t seed, size_t i) {
    uint64_t z = seed + (i + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)((int32_t)((z >> 40) - (1u << 23))) * (1.0f / (float)(1u << 23));
}

static __global__ void fill_f32_kernel(float *dst, size_t n, uint64_t seed, float scale) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = scale * fill_uniform(seed, i);
}

static __global__ void fill_bf16_kernel(uint16_t *dst, size_t n, uint64_t seed, float scale) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __bfloat16_as_ushort(__float2bfloat16_rn(scale * fill_uniform(seed, i)));
}

extern "C" void bench_fill_f32(float *dst, size_t n, uint64_t seed, float scale, cudaStream_t st) {
    if (n == 0) return;
    fill_f32_kernel<<<4096, 256, 0, st>>>(dst, n, seed, scale);
    CK(cudaGetLastError());
}

extern "C" void bench_fill_bf16(uint16_t *dst, size_t n, uint64_t seed, float scale,
                                cudaStream_t st) {
    if (n == 0) return;
    fill_bf16_kernel<<<4096, 256, 0, st>>>(dst, n, seed, scale);
    CK(cudaGetLastError());
}
