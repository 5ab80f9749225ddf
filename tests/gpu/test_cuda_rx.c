/* test_cuda_rx — a GPU worker's receive path without the NIC: request payloads placed in a
 * receive region of device memory (worker/rx_pool.h: dma-buf GPU memory where the device exports
 * it, else plain device memory) run through the steps serve_request takes — find the region, read
 * the routing to the host, run the experts on the activations in place — and must give bit for
 * bit what the backend's moe op gives on the same request from host memory. Also: activations
 * that are not 16-byte aligned are refused (the worker then takes the host path).
 * Exit 0 pass, 1 fail, 77 without a CUDA device. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "common/dtype.h"
#include "common/rng.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/dmabuf.h"
#include "proto/dataplane.h"
#include "worker/rx_pool.h"

enum { H = 256, I = 384, E = 8, K = 2, T = 64 };

static int failures;
static uint64_t rng = 0xd11aa;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static uint16_t *rand_bf16(size_t n, float scale) {
    uint16_t *w = malloc(n * sizeof *w);
    for (size_t i = 0; i < n; i++) w[i] = mr_f32_to_bf16(scale * mr_rng_uniform_pm1(&rng));
    return w;
}

/* A request payload as the coordinator sends it: ids int32 [n][k], wts f32 [n][k], x f32 [n][H]. */
static size_t make_request(uint8_t *p, int n, int k) {
    int32_t *ids = (int32_t *)p;
    float *wts = (float *)(ids + (size_t)n * k);
    float *x = wts + (size_t)n * k;
    for (int t = 0; t < n; t++)
        for (int j = 0; j < k; j++) {
            uint64_t r = mr_splitmix64(&rng);
            ids[t * k + j] = (r % 5 == 0) ? -1 : (int32_t)(r % E); /* some slots not served */
            wts[t * k + j] = 0.5f + 0.5f * mr_rng_uniform_pm1(&rng);
        }
    for (size_t i = 0; i < (size_t)n * H; i++) x[i] = mr_rng_uniform_pm1(&rng);
    return (size_t)mr_dp_request_bytes((uint32_t)n, (uint32_t)k, H, MR_DP_F32);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        printf("SKIP: no CUDA device\n");
        return 77;
    }
    /* one layer of E bf16 experts, all held */
    mr_expert ex[E];
    for (int e = 0; e < E; e++) {
        ex[e] = (mr_expert){{rand_bf16((size_t)I * H, 0.05f), MR_DTYPE_BF16, I, H},
                            {rand_bf16((size_t)I * H, 0.05f), MR_DTYPE_BF16, I, H},
                            {rand_bf16((size_t)H * I, 0.05f), MR_DTYPE_BF16, H, I},
                            NULL};
    }
    mr_expert_set set = {E, H, I, ex};
    const mr_expert_set *layers[1] = {&set};
    mr_backend_params bp = {.n_threads = 1,
                            .max_tokens = T,
                            .hidden = H,
                            .inter = I,
                            .n_heads = 1,
                            .head_dim = 1,
                            .block_size = 1,
                            .max_experts = E,
                            .top_k = K};
    mr_backend *be = NULL;
    if (mr_backend_create("cuda", &bp, &be) != MR_OK ||
        be->ops->moe_prepare(be, layers, 1) != MR_OK) {
        printf("FAIL: cannot create the cuda backend\n");
        return 1;
    }
    CHECK(mr_cuda_backend_is_experts(be), "cuda is an expert backend");

    /* the worker's regions: device memory when the device exports dma-bufs */
    char why[256];
    const int dmabuf = mr_cuda_dmabuf_supported(0, why, sizeof why) == MR_OK;
    if (!dmabuf) printf("note: %s: the region below is host memory, not a device region\n", why);
    mr_rx_pool *pool;
    CHECK(mr_rx_pool_create(&pool) == MR_OK, "pool");
    mr_rx_pool_set_backend(pool, be, T, H);
    const size_t req_max = (size_t)mr_dp_request_bytes(T, K, H, MR_DP_F32);
    const size_t slot = (req_max + 4095) / 4096 * 4096, need = 4 * slot;
    mr_xport_region r;
    CHECK(mr_rx_pool_get(pool, need, &r) == 0 && r.len >= need, "region of %zu bytes", need);
    CHECK((r.dmabuf_fd >= 0) == dmabuf, "dma-buf fd %d where export is %s", r.dmabuf_fd,
          dmabuf ? "supported" : "not supported");
    uint8_t *req = malloc(req_max), *meta = malloc(req_max);
    float *out_rx = malloc((size_t)T * H * 4), *out_host = malloc((size_t)T * H * 4);
    const int ns[] = {1, 2, 7, 33, 64};
    int bitwise = 0, runs = 0;
    for (size_t i = 0; i < sizeof ns / sizeof *ns; i++) {
        const int n = ns[i];
        const size_t bytes = make_request(req, n, K), mb = (size_t)n * K * 8;
        uint8_t *payload = (uint8_t *)r.base + (i % 4) * slot; /* as the NIC would place it */
        if (dmabuf)
            CHECK(cudaMemcpy(payload, req, bytes, cudaMemcpyHostToDevice) == cudaSuccess, "copy");
        else
            memcpy(payload, req, bytes);
        /* serve_request's steps */
        const mr_rx_piece *pc = mr_rx_pool_find(pool, payload, bytes);
        CHECK(pc && mr_rx_piece_on_device(pc) == dmabuf, "payload's region found");
        if (!pc) continue;
        CHECK(mr_rx_piece_read(pc, payload, meta, mb) == MR_OK && memcmp(meta, req, mb) == 0,
              "routing read back");
        const int32_t *ids = (const int32_t *)meta;
        const float *wts = (const float *)(ids + (size_t)n * K);
        for (size_t j = 0; j < (size_t)n * H; j++) out_rx[j] = out_host[j] = NAN;
        if (dmabuf)
            CHECK(mr_rx_piece_moe(pc, be, &set, (const float *)(payload + mb), n, K, ids, wts,
                                  out_rx) == MR_OK,
                  "moe on the device region");
        be->ops->moe(be, &set, (const float *)(req + mb), n, K, ids, wts, out_host);
        if (dmabuf) {
            runs++;
            bitwise += memcmp(out_rx, out_host, (size_t)n * H * 4) == 0;
            CHECK(memcmp(out_rx, out_host, (size_t)n * H * 4) == 0,
                  "%d tokens: device-region result differs from the host path", n);
        }
    }
    if (dmabuf)
        printf("%s rx: %d/%d requests of 1 .. %d tokens received in device memory give the host "
               "path's result bit for bit\n",
               bitwise == runs ? "PASS" : "FAIL", bitwise, runs, T);
    mr_rx_pool_put(pool, &r);
    mr_rx_pool_destroy(pool);

    /* the executor on plain device memory (what a dma-buf region is), and the alignment refusal */
    float *xd = NULL, *od = NULL;
    const int n = 33;
    const size_t bytes = make_request(req, n, K), mb = (size_t)n * K * 8;
    CHECK(cudaMalloc((void **)&xd, bytes + 16) == cudaSuccess, "cudaMalloc");
    CHECK(cudaMalloc((void **)&od, (size_t)T * H * 4) == cudaSuccess, "cudaMalloc");
    CHECK(cudaMemcpy(xd, req + mb, bytes - mb, cudaMemcpyHostToDevice) == cudaSuccess, "copy");
    const int32_t *ids = (const int32_t *)req;
    const float *wts = (const float *)(ids + (size_t)n * K);
    CHECK(mr_cuda_backend_moe_dev(be, &set, xd, n, K, ids, wts, od, out_rx) == MR_OK, "moe_dev");
    be->ops->moe(be, &set, (const float *)(req + mb), n, K, ids, wts, out_host);
    int same = memcmp(out_rx, out_host, (size_t)n * H * 4) == 0;
    CHECK(same, "moe_dev differs from moe");
    mr_status st = mr_cuda_backend_moe_dev(be, &set, (const float *)((uint8_t *)xd + 4), n, K, ids,
                                           wts, od, out_rx);
    CHECK(st == MR_ERR_INVALID, "misaligned activations accepted (%s)", mr_status_str(st));
    printf("%s moe on device activations: %d tokens bit for bit as from the host; misaligned "
           "ones refused\n",
           same && st == MR_ERR_INVALID ? "PASS" : "FAIL", n);
    cudaFree(xd);
    cudaFree(od);

    /* bf16 on the wire (cluster.wire_dtype): moe_io converts on the device, and must give what
     * the worker's host path gives — widen, moe, narrow — bit for bit, f32 io the moe op's bits */
    int io_same = 0, io_runs = 0;
    uint16_t *xb = malloc((size_t)T * H * 2), *ob = malloc((size_t)T * H * 2),
             *ob_host = malloc((size_t)T * H * 2);
    float *xw = malloc((size_t)T * H * 4);
    for (size_t i = 0; i < sizeof ns / sizeof *ns; i++) {
        const int nt = ns[i];
        const size_t bt = make_request(req, nt, K), mt = (size_t)nt * K * 8;
        (void)bt;
        const int32_t *id2 = (const int32_t *)req;
        const float *wt2 = (const float *)(id2 + (size_t)nt * K), *xf = (const float *)(req + mt);
        for (size_t j = 0; j < (size_t)nt * H; j++) xb[j] = mr_f32_to_bf16(xf[j]);
        mr_convert_to_f32(MR_DTYPE_BF16, xb, xw, (size_t)nt * H);
        be->ops->moe(be, &set, xw, nt, K, id2, wt2, out_host);
        for (size_t j = 0; j < (size_t)nt * H; j++) ob_host[j] = mr_f32_to_bf16(out_host[j]);
        be->ops->moe_io(be, &set, xb, nt, K, id2, wt2, ob, MR_DTYPE_BF16);
        be->ops->moe_io(be, &set, xw, nt, K, id2, wt2, out_rx, MR_DTYPE_F32);
        const int ok = memcmp(ob, ob_host, (size_t)nt * H * 2) == 0 &&
                       memcmp(out_rx, out_host, (size_t)nt * H * 4) == 0;
        io_runs++;
        io_same += ok;
        CHECK(ok, "%d tokens: moe_io differs from the host conversions around moe", nt);
    }
    printf("%s moe_io: %d/%d batches of 1 .. %d tokens in bf16 (and f32) bit for bit as the host "
           "path\n",
           io_same == io_runs ? "PASS" : "FAIL", io_same, io_runs, T);
    free(xb);
    free(ob);
    free(ob_host);
    free(xw);
    mr_backend_destroy(be);
    for (int e = 0; e < E; e++) {
        free((void *)ex[e].w1.data);
        free((void *)ex[e].w3.data);
        free((void *)ex[e].w2.data);
    }
    free(req);
    free(meta);
    free(out_rx);
    free(out_host);
    printf("test_cuda_rx: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
