/* cuda_gpu_graphs.c — see cuda_gpu_graphs.h. */
#include "kernels/cuda/cuda_gpu_graphs.h"

#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "kernels/cuda/cuda_check.h"

enum {
    GRAPH_SLOTS = 8192,   /* keys kept (open addressing; beyond: eager, with one warning) */
    POS_BUCKET_MIN = 256, /* smallest position bucket of the attention kernels */
};

/* One key and its graph. layer < 0: an empty slot. */
typedef struct seg_graph {
    int layer, rows, pos_bucket;
    int seen;   /* times begun since the last drop: captured at the second */
    int broken; /* a capture failed: always eager */
    uint64_t sig;
    cudaGraphExec_t exec;
} seg_graph;

struct gpu_segs {
    int enabled, max_rows;
    seg_graph *g; /* [GRAPH_SLOTS] */
    int n_g, warned_full;
    /* the segment under way */
    int mode, rows, pos_bucket, block_tokens, stride;
    seg_graph *cur;
    uint64_t sig;
    int failed;
    int32_t *route_ids;
    float *route_wts;
    int route_nk;
    /* metadata: host staging (page-locked) and its device copy, [rows][2 + stride] int32 */
    int32_t *meta_host, *meta_dev;
    size_t meta_cap; /* int32 entries of both */
    void *route_pin;
    size_t route_bytes;
    /* counts since create: segments run eagerly, graphs captured, replays, reruns */
    long n_eager, n_captured, n_replayed, n_rerun;
};

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

mr_status gpu_segs_create(int enabled, int max_rows, size_t route_bytes, gpu_segs **out) {
    gpu_segs *s = calloc(1, sizeof *s);
    if (!s || !(s->g = calloc(GRAPH_SLOTS, sizeof *s->g))) {
        free(s);
        return MR_ERR_NOMEM;
    }
    for (int i = 0; i < GRAPH_SLOTS; i++) s->g[i].layer = -1;
    s->enabled = enabled;
    s->max_rows = max_rows;
    s->route_bytes = route_bytes ? route_bytes : 1;
    if (cudaHostAlloc(&s->route_pin, s->route_bytes, cudaHostAllocDefault) != cudaSuccess) {
        cudaGetLastError();
        gpu_segs_destroy(s);
        return MR_ERR_NOMEM;
    }
    *out = s;
    return MR_OK;
}

void gpu_segs_invalidate(gpu_segs *s) {
    for (int i = 0; s && i < GRAPH_SLOTS; i++)
        if (s->g[i].exec) {
            cudaGraphExecDestroy(s->g[i].exec);
            s->g[i].exec = NULL;
            s->g[i].seen = 0;
        }
}

void gpu_segs_destroy(gpu_segs *s) {
    if (!s) return;
    if (s->enabled)
        MR_LOG_INFO(MR_LOG_GPU,
                    "cuda-gpu: decode segments: %ld graphs captured, %ld replays, %ld eager, %ld "
                    "run again",
                    s->n_captured, s->n_replayed, s->n_eager, s->n_rerun);
    if (s->g) gpu_segs_invalidate(s);
    free(s->g);
    cudaFreeHost(s->meta_host);
    cudaFree(s->meta_dev);
    cudaFreeHost(s->route_pin);
    free(s);
}

static seg_graph *find(gpu_segs *s, int layer, int rows, int pos_bucket) {
    uint64_t h = fnv(0xcbf29ce484222325ull, &layer, sizeof layer);
    h = fnv(h, &rows, sizeof rows);
    h = fnv(h, &pos_bucket, sizeof pos_bucket);
    for (size_t i = 0, j = (size_t)h % GRAPH_SLOTS; i < GRAPH_SLOTS;
         i++, j = (j + 1) % GRAPH_SLOTS) {
        seg_graph *e = &s->g[j];
        if (e->layer == layer && e->rows == rows && e->pos_bucket == pos_bucket) return e;
        if (e->layer < 0) {
            if (2 * (s->n_g + 1) > GRAPH_SLOTS) break; /* keep probes short: stay half empty */
            *e = (seg_graph){.layer = layer, .rows = rows, .pos_bucket = pos_bucket};
            s->n_g++;
            return e;
        }
    }
    if (!s->warned_full) {
        MR_LOG_WARN(MR_LOG_GPU, "cuda-gpu: %d decode graphs kept; further segments run eagerly",
                    s->n_g);
        s->warned_full = 1;
    }
    return NULL;
}

/* Room for rows × (2 + stride) metadata entries; growing moves the device copy, so every graph
 * (which holds its address) is dropped, after the stream has finished with it. */
static mr_status meta_reserve(gpu_segs *s, cudaStream_t st, size_t need) {
    if (need <= s->meta_cap) return MR_OK;
    const size_t cap = need + need / 2;
    MR_CUDA_CHECK(cudaStreamSynchronize(st));
    gpu_segs_invalidate(s);
    cudaFreeHost(s->meta_host);
    cudaFree(s->meta_dev);
    s->meta_host = NULL;
    s->meta_dev = NULL;
    s->meta_cap = 0;
    MR_CUDA_CHECK(cudaHostAlloc((void **)&s->meta_host, cap * 4, cudaHostAllocDefault));
    MR_CUDA_CHECK(cudaMalloc((void **)&s->meta_dev, cap * 4));
    s->meta_cap = cap;
    return MR_OK;
}

int gpu_segs_begin(gpu_segs *s, cudaStream_t st, const mr_segment_key *k) {
    s->mode = SEG_OFF;
    s->cur = NULL;
    s->route_ids = NULL;
    if (!s->enabled || k->rows < 1 || k->rows > s->max_rows || k->block_tokens < 1) return SEG_OFF;
    int pb = 0, stride = 1;
    if (k->max_pos > 0) { /* the attention kernels' extent: a power of two, at most the pool's */
        pb = POS_BUCKET_MIN;
        while (pb < k->max_pos && pb < k->pos_limit) pb *= 2;
        if (pb > k->pos_limit) pb = k->pos_limit;
        if (pb < k->max_pos) return SEG_OFF;
        stride = (pb + k->block_tokens - 1) / k->block_tokens;
    }
    const size_t per_row = 2 + (size_t)stride;
    if (meta_reserve(s, st, (size_t)k->rows * per_row) != MR_OK) return SEG_OFF;
    seg_graph *e = find(s, k->layer, k->rows, pb);
    if (!e) return SEG_OFF;
    e->seen++;
    s->cur = e;
    s->rows = k->rows;
    s->pos_bucket = pb;
    s->block_tokens = k->block_tokens;
    s->stride = stride;
    s->failed = 0;
    s->sig = 0xcbf29ce484222325ull;
    if (e->broken || e->seen < 2) {
        s->mode = SEG_EAGER;
        s->n_eager++;
        return s->mode;
    }
    /* slots and positions −1 (rows of no sequence); table entries are written for the blocks each
     * row's position reaches, and the kernels read no others */
    for (int i = 0; i < 2 * k->rows; i++) s->meta_host[i] = -1;
    if (e->exec) {
        s->mode = SEG_REPLAY;
    } else if (cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal) == cudaSuccess) {
        s->mode = SEG_CAPTURE;
    } else {
        cudaGetLastError();
        e->broken = 1;
        s->mode = SEG_EAGER;
    }
    return s->mode;
}

int gpu_segs_mode(const gpu_segs *s) {
    return s ? s->mode : SEG_OFF; /* NULL: the backend is still being built */
}

void gpu_segs_note(gpu_segs *s, const void *p, size_t bytes) {
    if (gpu_segs_graphed(s->mode)) s->sig = fnv(s->sig, p, bytes);
}

void gpu_segs_fail(gpu_segs *s, const char *why) {
    if (!s->failed)
        MR_LOG_DEBUG(MR_LOG_GPU, "cuda-gpu: decode segment of layer %d (%d rows) not graphed: %s",
                     s->cur ? s->cur->layer : -1, s->rows, why);
    s->failed = 1;
}

void gpu_segs_route_out(gpu_segs *s, int32_t *ids, float *wts, int nk) {
    s->route_ids = ids;
    s->route_wts = wts;
    s->route_nk = nk;
}

mr_status gpu_segs_end(gpu_segs *s, cudaStream_t st, int *ran) {
    const int mode = s->mode;
    seg_graph *e = s->cur;
    s->mode = SEG_OFF;
    *ran = 1;
    if (!gpu_segs_graphed(mode)) return MR_OK;
    if (mode == SEG_CAPTURE) {
        cudaGraph_t graph = NULL;
        cudaError_t err = cudaStreamEndCapture(st, &graph);
        if (err == cudaSuccess && !s->failed) err = cudaGraphInstantiate(&e->exec, graph, 0);
        if (graph) cudaGraphDestroy(graph);
        if (err != cudaSuccess || s->failed) {
            if (err != cudaSuccess)
                MR_LOG_WARN(MR_LOG_GPU,
                            "cuda-gpu: decode segment of layer %d (%d rows) not captured (%s); it "
                            "runs eagerly",
                            e->layer, e->rows, cudaGetErrorString(err));
            cudaGetLastError();
            if (e->exec) cudaGraphExecDestroy(e->exec);
            e->exec = NULL;
            e->broken = 1;
            *ran = 0;
            s->n_rerun++;
            return MR_OK;
        }
        e->sig = s->sig;
        s->n_captured++;
    } else if (s->failed || s->sig != e->sig) {
        MR_LOG_WARN(MR_LOG_GPU,
                    "cuda-gpu: decode segment of layer %d (%d rows) no longer matches its graph; "
                    "graph dropped, the segment runs eagerly",
                    e->layer, e->rows);
        cudaGraphExecDestroy(e->exec);
        e->exec = NULL;
        e->seen = 0;
        *ran = 0;
        s->n_rerun++;
        return MR_OK;
    }
    if (mode == SEG_REPLAY) s->n_replayed++;
    const size_t meta = (size_t)s->rows * (2 + (size_t)s->stride) * 4;
    MR_CUDA_CHECK(cudaMemcpyAsync(s->meta_dev, s->meta_host, meta, cudaMemcpyHostToDevice, st));
    MR_CUDA_CHECK(cudaGraphLaunch(e->exec, st));
    MR_CUDA_CHECK(cudaStreamSynchronize(st));
    if (s->route_ids) {
        const size_t kb = (size_t)s->route_nk * 4;
        memcpy(s->route_ids, s->route_pin, kb);
        memcpy(s->route_wts, (unsigned char *)s->route_pin + kb, kb);
    }
    return MR_OK;
}

int gpu_segs_rows(const gpu_segs *s) {
    return s->rows;
}
int gpu_segs_pos_bucket(const gpu_segs *s) {
    return s->pos_bucket;
}
int gpu_segs_block_tokens(const gpu_segs *s) {
    return s->block_tokens;
}
int gpu_segs_stride(const gpu_segs *s) {
    return s->stride;
}
int32_t *gpu_segs_host_slots(gpu_segs *s) {
    return s->meta_host;
}
int32_t *gpu_segs_host_pos(gpu_segs *s) {
    return s->meta_host + s->rows;
}
int32_t *gpu_segs_host_table(gpu_segs *s) {
    return s->meta_host + 2 * (size_t)s->rows;
}
const int32_t *gpu_segs_dev_slots(const gpu_segs *s) {
    return s->meta_dev;
}
const int32_t *gpu_segs_dev_pos(const gpu_segs *s) {
    return s->meta_dev + s->rows;
}
const int32_t *gpu_segs_dev_table(const gpu_segs *s) {
    return s->meta_dev + 2 * (size_t)s->rows;
}
void *gpu_segs_route_pin(gpu_segs *s) {
    return s->route_pin;
}
