/* quant.cu — load-time quantisation (round to nearest) into the packed weight layouts of
 * cuda_internal.h, the inverse (dequantise to bf16), and bf16 fills from synthetic streams (weights
 * generated on the GPU; random data for benchmarks). */
#include <cuda_bf16.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_internal.h"
#include "common/synth_stream.h"

__device__ static inline int quant_dst_row(int r, int rowmap) {
    if (rowmap == MR_CUDA_ROWMAP_SAME) return r;
    return 32 * (r / 16) + (r % 16) + (rowmap == MR_CUDA_ROWMAP_UP ? 16 : 0);
}

__device__ static inline float quant_bf16(uint16_t h) {
    return __uint_as_float((uint32_t)h << 16);
}

/* bf16 and int8: one block per source row. int8 scale = absmax/127 (fp32), q = rint(w/scale). */
static __global__ void quant_row_kernel(int fmt, const uint16_t *src, int k, int src_ld, int row0,
                                        int rowmap, uint8_t *q, float *scale, int kp) {
    __shared__ float red[32];
    const int r = blockIdx.x, dr = quant_dst_row(row0 + r, rowmap);
    const uint16_t *s = src + (size_t)r * (size_t)src_ld;
    if (fmt == MR_CUDA_FMT_BF16) {
        uint16_t *d = (uint16_t *)(q + (size_t)dr * (size_t)kp * 2);
        for (int c = threadIdx.x; c < k; c += blockDim.x) d[c] = s[c];
        return;
    }
    float m = 0.0f;
    for (int c = threadIdx.x; c < k; c += blockDim.x) m = fmaxf(m, fabsf(quant_bf16(s[c])));
    for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = m;
    __syncthreads();
    if (threadIdx.x < 32) {
        m = threadIdx.x < (blockDim.x >> 5) ? red[threadIdx.x] : 0.0f;
        for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
        if (threadIdx.x == 0) red[0] = m;
    }
    __syncthreads();
    const float sc = red[0] / 127.0f;
    const int units = kp / 64; /* tiled (cuda_internal.h) */
    for (int c = threadIdx.x; c < k; c += blockDim.x) {
        int qi = sc > 0.0f ? (int)rintf(quant_bf16(s[c]) / sc) : 0;
        qi = qi < -127 ? -127 : qi > 127 ? 127 : qi;
        q[MR_CUDA_PACKED_OFF(units, dr, c)] = (uint8_t)(qi + 128);
    }
    if (threadIdx.x == 0) scale[dr] = sc;
}

/* int4: blocks of 256 threads over (2048 columns, one row); a thread packs one word of 8
 * elements, 16 threads one group of 128 whose absmax they share through shuffles. */
static __global__ void quant_int4_kernel(const uint16_t *src, int k, int src_ld, int row0,
                                         int rowmap, uint32_t *q, __nv_bfloat16 *scale, int np,
                                         int kp) {
    const int r = blockIdx.y, dr = quant_dst_row(row0 + r, rowmap);
    const int k0 = blockIdx.x * 2048 + threadIdx.x * 8;
    const uint16_t *s = src + (size_t)r * (size_t)src_ld;
    float w[8], m = 0.0f;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        w[i] = k0 + i < k ? quant_bf16(s[k0 + i]) : 0.0f;
        m = fmaxf(m, fabsf(w[i]));
    }
    for (int off = 8; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    const __nv_bfloat16 sb = __float2bfloat16_rn(m / 7.0f);
    const float sc = __bfloat162float(sb);
    uint32_t word = 0;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        int qi = sc > 0.0f ? (int)rintf(w[i] / sc) : 0;
        qi = qi < -8 ? -8 : qi > 7 ? 7 : qi;
        word |= (uint32_t)(qi + 8) << (4 * (i / 2) + 16 * (i % 2));
    }
    if (k0 < kp) {
        const size_t b = MR_CUDA_PACKED_OFF(kp / 128, dr, (size_t)(k0 / 8) * 4); /* tiled */
        *(uint32_t *)((uint8_t *)q + b) = word;
        if ((threadIdx.x & 15) == 0) scale[(size_t)(k0 / 128) * (size_t)np + (size_t)dr] = sb;
    }
}

extern "C" mr_status mr_cuda_quant_launch(int fmt, const uint16_t *src, int row0, int rows, int k,
                                          int src_ld, int rowmap, mr_cuda_qmat dst, int np, int kp,
                                          cudaStream_t st) {
    if (fmt < MR_CUDA_FMT_BF16 || fmt > MR_CUDA_FMT_INT4 || !src || !dst.q || rows <= 0 ||
        row0 < 0 || k <= 0 || k > kp || kp % mr_cuda_fmt_chunk(fmt) || src_ld < k || np % 32) {
        MR_LOG_ERROR(MR_LOG_GPU, "quant: bad arguments (fmt %d, rows %d, k %d, kp %d, np %d)", fmt,
                     rows, k, kp, np);
        return MR_ERR_INVALID;
    }
    if (fmt != MR_CUDA_FMT_BF16 && !dst.scale) return MR_ERR_INVALID;
    if (fmt == MR_CUDA_FMT_INT4) {
        dim3 grid((unsigned)((kp + 2047) / 2048), (unsigned)rows);
        quant_int4_kernel<<<grid, 256, 0, st>>>(src, k, src_ld, row0, rowmap, (uint32_t *)dst.q,
                                                (__nv_bfloat16 *)dst.scale, np, kp);
    } else {
        quant_row_kernel<<<(unsigned)rows, 256, 0, st>>>(fmt, src, k, src_ld, row0, rowmap,
                                                         (uint8_t *)dst.q, (float *)dst.scale, kp);
    }
    MR_CUDA_CHECK_LAUNCH("quant kernel launch");
    return MR_OK;
}

/* One thread per 8 consecutive elements of a row: dst = bf16(q · scale). */
static __global__ void dequant_kernel(int fmt, const uint8_t *q, const void *scale, int np, int kp,
                                      uint16_t *dst) {
    const size_t per_row = (size_t)(kp / 8);
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)np * per_row) return;
    const int r = (int)(i / per_row), c8 = (int)(i % per_row) * 8;
    uint16_t out[8];
    if (fmt == MR_CUDA_FMT_BF16) {
        *(uint4 *)out = *(const uint4 *)(q + ((size_t)r * (size_t)kp + (size_t)c8) * 2);
    } else if (fmt == MR_CUDA_FMT_INT8) {
        const uint8_t *b = q + MR_CUDA_PACKED_OFF(kp / 64, r, c8); /* 8 bytes within one unit */
        const float s = ((const float *)scale)[r];
#pragma unroll
        for (int p = 0; p < 8; p++)
            out[p] = __bfloat16_as_ushort(__float2bfloat16_rn((float)((int)b[p] - 128) * s));
    } else {
        const uint32_t w =
            *(const uint32_t *)(q + MR_CUDA_PACKED_OFF(kp / 128, r, (size_t)(c8 / 8) * 4));
        const float s = __bfloat162float(
            ((const __nv_bfloat16 *)scale)[(size_t)(c8 / 128) * (size_t)np + (size_t)r]);
#pragma unroll
        for (int p = 0; p < 8; p++) {
            int u = (int)((w >> (4 * (p / 2) + 16 * (p % 2))) & 15u);
            out[p] = __bfloat16_as_ushort(__float2bfloat16_rn((float)(u - 8) * s));
        }
    }
    *(uint4 *)(dst + (size_t)r * (size_t)kp + (size_t)c8) = *(const uint4 *)out;
}

extern "C" mr_status mr_cuda_dequant_launch(int fmt, mr_cuda_qmat src, int np, int kp,
                                            uint16_t *dst, cudaStream_t st) {
    if (fmt < MR_CUDA_FMT_BF16 || fmt > MR_CUDA_FMT_INT4 || !src.q || !dst || np <= 0 ||
        kp % mr_cuda_fmt_chunk(fmt) || (fmt != MR_CUDA_FMT_BF16 && !src.scale))
        return MR_ERR_INVALID;
    size_t items = (size_t)np * (size_t)(kp / 8);
    unsigned blocks = (unsigned)((items + 255) / 256);
    dequant_kernel<<<blocks, 256, 0, st>>>(fmt, (const uint8_t *)src.q, src.scale, np, kp, dst);
    MR_CUDA_CHECK_LAUNCH("dequant kernel launch");
    return MR_OK;
}

/* dst[i] = bf16(value first + i of the stream): the host's mr_synth_fill_range, bit for bit. */
static __global__ void synth_fill_kernel(uint16_t *dst, mr_synth_stream st, uint64_t first,
                                         size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = mr_f32_to_bf16(mr_synth_value(&st, first + i));
}

extern "C" mr_status mr_cuda_synth_fill_bf16(uint16_t *dst, const mr_synth_stream *st,
                                             uint64_t first, size_t n, cudaStream_t s) {
    if (!dst || !st || n == 0) return MR_ERR_INVALID;
    const size_t blocks = (n + 255) / 256;
    synth_fill_kernel<<<(unsigned)(blocks < 8192 ? blocks : 8192), 256, 0, s>>>(dst, *st, first, n);
    MR_CUDA_CHECK_LAUNCH("synthetic fill kernel launch");
    return MR_OK;
}

extern "C" mr_status mr_cuda_fill_random_bf16(uint16_t *dst, size_t n, uint64_t seed, float scale,
                                              cudaStream_t st) {
    const mr_synth_stream s = {seed, scale, 0, 0};
    return mr_cuda_synth_fill_bf16(dst, &s, 0, n, st);
}
