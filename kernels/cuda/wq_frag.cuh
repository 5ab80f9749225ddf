/* wq_frag.cuh — device helpers shared by the expert matrix kernels (wq_mma.cu: few tokens per
 * expert, weights streamed to registers; wq_tile.cu: many tokens per expert, weights and
 * activations staged in shared memory): the bf16 tensor-core mma, and the weight fragments of the
 * three formats.
 *
 * Fragment trick. The dot product may take the reduction index in any order as long as A and B
 * agree. Lane (g = lane/4, t = lane%4) holds 16 bytes of weight rows g and g+8 at column offset
 * t·CK/4 of a chunk (CK = 32 bf16 / 64 int8 / 128 int4 columns = 64 bytes per row), and the
 * matching CK/4 activations of token g; mma step s of the chunk takes the lane's elements
 * 4s..4s+3 as the fragment's k pairs (2t, 2t+1) and (2t+8, 2t+9). So the weights' own row order
 * (row-major bf16, or the int8 / int4 tiles of cuda_internal.h) serves directly, with no
 * repacking, and one 16-byte piece per lane and row feeds CK/16 mma steps. */
#ifndef MR_CUDA_WQ_FRAG_CUH
#define MR_CUDA_WQ_FRAG_CUH

#include <cuda_bf16.h>
#include <stdint.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_internal.h"

__device__ static inline uint4 wq_ld_stream(const void *p) {
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
}

__device__ static inline void wq_mma(float *c, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                     uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
                 "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ static inline uint32_t wq_word(const uint4 &v, int i) {
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

/* Offset-binary byte i of w as the exact float q = u - 128 (2^23 magic). */
__device__ static inline float wq_i8(uint32_t w, uint32_t i) {
    return __uint_as_float(__byte_perm(w, 0x4B000000u, 0x7440u | i)) - 8388736.0f;
}

/* Two floats as a bf16 pair (round to nearest; exact for the int8 values). Taking their upper
 * halves with one byte permute instead measured 2–5% slower at 16–32 tokens (session 7, run 7). */
__device__ static inline uint32_t wq_pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

/* Nibbles at bits sh and sh+16 as the exact bf16 pair (u - 8): 0x4300|u is 128 + u. The mask
 * and the magic are register operands of one lop3 ((a & b) | c); written in C, the two immediates
 * cost two logic instructions. */
__device__ static inline uint32_t wq_i4pair(uint32_t w, int sh) {
    uint32_t r;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;"
        : "=r"(r)
        : "r"(w >> sh), "r"(0x000F000Fu), "r"(0x43004300u));
    __nv_bfloat162 v = *reinterpret_cast<__nv_bfloat162 *>(&r);
    const uint32_t m = 0x43084308u; /* 136.0 twice */
    v = __hsub2(v, *reinterpret_cast<const __nv_bfloat162 *>(&m));
    return *reinterpret_cast<uint32_t *>(&v);
}

/* Both halves of a bf16 pair times those of b, each rounded once. */
__device__ static inline uint32_t wq_mul2(uint32_t a, uint32_t b) {
    __nv_bfloat162 r = __hmul2(*reinterpret_cast<const __nv_bfloat162 *>(&a),
                               *reinterpret_cast<const __nv_bfloat162 *>(&b));
    return *reinterpret_cast<uint32_t *>(&r);
}

/* The bf16 pairs (elements 4s, 4s+1) and (4s+2, 4s+3) of one lane's 16 weight bytes of a row. */
template <int FMT>
__device__ static inline void wq_frag(const uint4 &w, int s, uint32_t &p01, uint32_t &p23) {
    if (FMT == MR_CUDA_FMT_BF16) {
        p01 = wq_word(w, 2 * s);
        p23 = wq_word(w, 2 * s + 1);
    } else if (FMT == MR_CUDA_FMT_INT8) {
        const uint32_t x = wq_word(w, s);
        p01 = wq_pack(wq_i8(x, 0), wq_i8(x, 1));
        p23 = wq_pack(wq_i8(x, 2), wq_i8(x, 3));
    } else {
        const uint32_t x = wq_word(w, s >> 1);
        const int sh = (s & 1) * 8;
        p01 = wq_i4pair(x, sh);
        p23 = wq_i4pair(x, sh + 4);
    }
}

/* ---- host side, shared by the tile kernels' launchers (wq_tile.cu, wq_wgmma.cu) ---- */

/* The tile kernels' launch contract (cuda_internal.h, mr_cuda_wqt_launch); fmt_ok: the caller's
 * formats include fmt. Logs one line naming `who` and returns 0 when an argument is out of it. */
static inline int wq_tile_args_ok(const char *who, int fmt_ok, int fmt, int which,
                                  const void *jobs_dev, int n_jobs, const void *x, const void *x_lo,
                                  int ldx, int np, int kp, const void *out, const void *out_lo,
                                  int n_out) {
    if (!fmt_ok || (which != 0 && which != 1) || !jobs_dev || n_jobs <= 0 || n_jobs > (1 << 30) ||
        !x || !out || np <= 0 || np % 32 || kp <= 0 || kp % mr_cuda_fmt_chunk(fmt) || ldx < kp ||
        ldx % 8 || n_out <= 0 || (x_lo && which == 0 && !out_lo)) {
        MR_LOG_ERROR(MR_LOG_GPU, "%s: bad arguments (fmt %d which %d jobs %d np %d kp %d)", who,
                     fmt, which, n_jobs, np, kp);
        return 0;
    }
    return 1;
}

#define WQ_MAX_DEVICES 16
/* Lets kernel fn use smem bytes of dynamic shared memory (over 48 KiB needs the opt-in), once per
 * kernel and device: `opted` is the caller's [WQ_MAX_DEVICES][n_kernels] flags, `kernel` this
 * one's index (devices past the table opt in at every launch). */
static inline mr_status wq_opt_in_smem(const void *fn, size_t smem, unsigned char *opted,
                                       int n_kernels, int kernel) {
    int dev = 0;
    MR_CUDA_CHECK(cudaGetDevice(&dev));
    unsigned char *flag = dev < WQ_MAX_DEVICES ? &opted[dev * n_kernels + kernel] : NULL;
    if (flag && __atomic_load_n(flag, __ATOMIC_ACQUIRE)) return MR_OK;
    MR_CUDA_CHECK(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    if (flag) __atomic_store_n(flag, 1, __ATOMIC_RELEASE);
    return MR_OK;
}

#endif