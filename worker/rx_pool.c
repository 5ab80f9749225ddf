/* rx_pool.c — see rx_pool.h. */
#include "worker/rx_pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/log.h"
#ifdef MR_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/dmabuf.h"
#endif

#define RX_PIECES 16 /* regions at once: above the worker's data connections */

struct mr_rx_piece {
    int used;
    void *base; /* the region: host memory (mmap) or device memory (buf->ptr) */
    size_t len;
    int on_device;
#ifdef MR_HAVE_CUDA
    mr_cuda_dmabuf *buf; /* on_device: [region | output scratch] */
#endif
    float *out_dev; /* on_device: output scratch behind the region */
};

struct mr_rx_pool {
    pthread_mutex_t mu;
    int device;       /* CUDA device of new regions, or -1: host */
    size_t out_bytes; /* output scratch behind a device region */
    int warned;       /* the fallback to host memory was logged */
    mr_rx_piece p[RX_PIECES];
};

mr_status mr_rx_pool_create(mr_rx_pool **out) {
    mr_rx_pool *p = calloc(1, sizeof *p);
    if (!p) return MR_ERR_NOMEM;
    pthread_mutex_init(&p->mu, NULL);
    p->device = -1;
    *out = p;
    return MR_OK;
}

static void piece_free(mr_rx_piece *pc) {
#ifdef MR_HAVE_CUDA
    if (pc->on_device) mr_cuda_dmabuf_destroy(pc->buf);
#endif
    if (!pc->on_device) munmap(pc->base, pc->len);
    memset(pc, 0, sizeof *pc);
}

void mr_rx_pool_destroy(mr_rx_pool *p) {
    if (!p) return;
    for (int i = 0; i < RX_PIECES; i++)
        if (p->p[i].used) {
            MR_LOG_WARN(MR_LOG_NET, "receive region %d still in use at teardown", i);
            piece_free(&p->p[i]);
        }
    pthread_mutex_destroy(&p->mu);
    free(p);
}

void mr_rx_pool_set_backend(mr_rx_pool *p, const mr_backend *be, int max_tokens, int hidden) {
    int device = -1;
#ifdef MR_HAVE_CUDA
    if (mr_cuda_backend_is_experts(be)) device = 0; /* the worker's one visible GPU */
#else
    (void)be;
#endif
    pthread_mutex_lock(&p->mu);
    p->device = device;
    p->out_bytes = (size_t)max_tokens * (size_t)hidden * sizeof(float);
    pthread_mutex_unlock(&p->mu);
}

/* Device memory for pc: need bytes of region, then the output scratch. 0 on success. */
static int piece_device(mr_rx_pool *p, mr_rx_piece *pc, size_t need) {
#ifdef MR_HAVE_CUDA
    char why[256];
    mr_cuda_dmabuf *b;
    if (mr_cuda_dmabuf_create(p->device, need + p->out_bytes, &b, why, sizeof why) == MR_OK) {
        pc->buf = b;
        pc->base = b->ptr;
        pc->len = need;
        pc->out_dev = (float *)((char *)b->ptr + need); /* need is a multiple of 4 KiB */
        pc->on_device = 1;
        return 0;
    }
    if (!p->warned++)
        MR_LOG_WARN(MR_LOG_GPU,
                    "receive regions: no dma-buf GPU memory (%s); payloads land in host memory "
                    "and are copied to the GPU",
                    why);
#else
    if (!p->warned++) MR_LOG_WARN(MR_LOG_GPU, "receive regions: built without CUDA; host memory");
#endif
    return -1;
}

int mr_rx_pool_get(void *user, size_t need, mr_xport_region *r) {
    mr_rx_pool *p = user;
    pthread_mutex_lock(&p->mu);
    int i = 0;
    while (i < RX_PIECES && p->p[i].used) i++;
    if (i == RX_PIECES) {
        pthread_mutex_unlock(&p->mu);
        return -1;
    }
    mr_rx_piece *pc = &p->p[i];
    if (p->device < 0 || piece_device(p, pc, need) != 0) {
        void *m = mmap(NULL, need, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            pthread_mutex_unlock(&p->mu);
            return -1;
        }
        pc->base = m;
        pc->len = need;
    }
    pc->used = 1;
    r->base = pc->base;
    r->len = pc->len;
    r->dmabuf_fd = -1;
    r->dmabuf_offset = 0;
#ifdef MR_HAVE_CUDA
    if (pc->on_device) {
        r->dmabuf_fd = pc->buf->fd;
        r->dmabuf_offset = pc->buf->offset;
    }
#endif
    r->cookie = pc;
    pthread_mutex_unlock(&p->mu);
    return 0;
}

void mr_rx_pool_put(void *user, const mr_xport_region *r) {
    mr_rx_pool *p = user;
    pthread_mutex_lock(&p->mu);
    mr_rx_piece *pc = r->cookie;
    if (pc >= p->p && pc < p->p + RX_PIECES && pc->used && pc->base == r->base) piece_free(pc);
    pthread_mutex_unlock(&p->mu);
}

const mr_rx_piece *mr_rx_pool_find(mr_rx_pool *pool, const void *p, size_t n) {
    const char *q = p;
    const mr_rx_piece *hit = NULL;
    pthread_mutex_lock(&pool->mu);
    for (int i = 0; i < RX_PIECES && !hit; i++) {
        const mr_rx_piece *pc = &pool->p[i];
        if (pc->used && q >= (const char *)pc->base && n <= pc->len &&
            (size_t)(q - (const char *)pc->base) <= pc->len - n)
            hit = pc;
    }
    pthread_mutex_unlock(&pool->mu);
    return hit;
}

int mr_rx_piece_on_device(const mr_rx_piece *pc) {
    return pc && pc->on_device;
}

mr_status mr_rx_piece_read(const mr_rx_piece *pc, const void *src, void *dst, size_t bytes) {
#ifdef MR_HAVE_CUDA
    if (pc && pc->on_device) return mr_cuda_dmabuf_read(pc->buf, src, dst, bytes);
#endif
    memcpy(dst, src, bytes);
    return MR_OK;
}

mr_status mr_rx_piece_moe(const mr_rx_piece *pc, mr_backend *be, const mr_expert_set *set,
                          const float *x_dev, int n, int k, const int32_t *ids, const float *wts,
                          float *out) {
#ifdef MR_HAVE_CUDA
    if (pc && pc->on_device && mr_cuda_backend_is_experts(be))
        return mr_cuda_backend_moe_dev(be, set, x_dev, n, k, ids, wts, pc->out_dev, out);
#endif
    (void)pc, (void)be, (void)set, (void)x_dev, (void)n, (void)k, (void)ids, (void)wts, (void)out;
    return MR_ERR_UNSUPPORTED;
}
