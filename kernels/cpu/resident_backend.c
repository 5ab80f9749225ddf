/* resident_backend.c — see resident_backend.h. */
#include "kernels/cpu/resident_backend.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/check.h"
#include "common/log.h"
#include "kernels/cpu/cpu_backend.h"

enum { MAX_REGIONS = 256 };

typedef struct region {
    const unsigned char *p;
    size_t bytes;
    int kind;
} region;

/* Owned by the thread that drives the backend. */
typedef struct resident_be {
    mr_backend *cpu;
    region r[MAX_REGIONS];
    int n_r;
    mr_status err;      /* first contract violation since the last to_host */
    float *sample_work; /* the sample op's scratch: 3 · sample_vocab floats, kept (allocated by
                           the first call: the vocabulary is not among the create params) */
    int sample_vocab;
    int in_segment; /* between segment_begin and segment_end */
} resident_be;

static resident_be *impl(mr_backend *be) {
    return be->impl;
}

/* 1 if [p, p + bytes) lies inside one region of `kind`. */
static int inside(const resident_be *r, const void *p, size_t bytes, int kind) {
    const unsigned char *c = p;
    for (int i = 0; i < r->n_r; i++)
        if (r->r[i].kind == kind && c >= r->r[i].p && bytes <= r->r[i].bytes &&
            (size_t)(c - r->r[i].p) <= r->r[i].bytes - bytes)
            return 1;
    return 0;
}

/* 1 if no byte of [p, p + bytes) is device memory. */
static int outside(const resident_be *r, const void *p, size_t bytes) {
    const unsigned char *c = p;
    for (int i = 0; i < r->n_r; i++)
        if (r->r[i].kind == MR_MEM_DEVICE && c < r->r[i].p + r->r[i].bytes && r->r[i].p < c + bytes)
            return 0;
    return 1;
}

static void violation(resident_be *r, const char *op, const char *what) {
    MR_LOG_ERROR(MR_LOG_KERN, "cpu-resident %s: %s", op, what);
    if (r->err == MR_OK) r->err = MR_ERR_INTERNAL;
}

#define DEV(r, op, p, bytes)                                                                       \
    do {                                                                                           \
        if (!inside((r), (p), (bytes), MR_MEM_DEVICE))                                             \
            violation((r), (op), #p " is not device memory");                                      \
    } while (0)
#define HOST(r, op, p, bytes)                                                                      \
    do {                                                                                           \
        if (!outside((r), (p), (bytes))) violation((r), (op), #p " is not host memory");           \
    } while (0)

static size_t f32(size_t n) {
    return n * sizeof(float);
}

static size_t matrix_bytes(const mr_matrix *m) {
    return (size_t)m->rows * (size_t)m->cols * mr_dtype_size(m->dtype);
}

static int rows_of(int n_segments, const mr_segment *segs) {
    int nt = 0;
    for (int s = 0; s < n_segments; s++)
        if (segs[s].start + segs[s].len > nt) nt = segs[s].start + segs[s].len;
    return nt;
}

static void rb_embed(mr_backend *be, const mr_matrix *t, const int32_t *ids, int n, float *out) {
    resident_be *r = impl(be);
    HOST(r, "embed", t->data, matrix_bytes(t));
    HOST(r, "embed", ids, (size_t)n * sizeof *ids);
    DEV(r, "embed", out, f32((size_t)n * (size_t)t->cols));
    r->cpu->ops->embed(r->cpu, t, ids, n, out);
}

static void rb_rmsnorm(mr_backend *be, const float *x, const float *w, int n, int dim, float eps,
                       float *y) {
    resident_be *r = impl(be);
    const size_t b = f32((size_t)n * (size_t)dim);
    DEV(r, "rmsnorm", x, b);
    DEV(r, "rmsnorm", y, b);
    HOST(r, "rmsnorm", w, f32((size_t)dim));
    r->cpu->ops->rmsnorm(r->cpu, x, w, n, dim, eps, y);
}

static void rb_scale_add(mr_backend *be, const float *h, const float *y, float a, float b, size_t n,
                         float *out) {
    resident_be *r = impl(be);
    DEV(r, "scale_add", h, f32(n));
    DEV(r, "scale_add", y, f32(n));
    DEV(r, "scale_add", out, f32(n));
    r->cpu->ops->scale_add(r->cpu, h, y, a, b, n, out);
}

static void rb_linear(mr_backend *be, const mr_matrix *w, const float *x, int n, float *y) {
    resident_be *r = impl(be);
    HOST(r, "linear", w->data, matrix_bytes(w));
    DEV(r, "linear", x, f32((size_t)n * (size_t)w->cols));
    DEV(r, "linear", y, f32((size_t)n * (size_t)w->rows));
    r->cpu->ops->linear(r->cpu, w, x, n, y);
}

static void rb_lightning(mr_backend *be, const mr_lightning_args *a) {
    resident_be *r = impl(be);
    const size_t nt = (size_t)rows_of(a->n_segments, a->segs),
                 hd = (size_t)a->n_heads * a->head_dim;
    const size_t sf = hd * (size_t)a->head_dim;
    DEV(r, "lightning", a->qkv, f32(nt * 3 * hd));
    DEV(r, "lightning", a->out, f32(nt * hd));
    HOST(r, "lightning", a->slope, f32((size_t)a->n_heads));
    HOST(r, "lightning", a->segs, (size_t)a->n_segments * sizeof *a->segs);
    for (int s = 0; s < a->n_segments; s++) {
        DEV(r, "lightning", a->state[s], f32(sf));
        const ptrdiff_t off = a->state[s] - a->state_pool;
        if (!a->state_pool || a->slot_stride < sf || off < 0 || (size_t)off % a->slot_stride)
            violation(r, "lightning", "a state is not a slot of state_pool");
    }
    r->cpu->ops->lightning(r->cpu, a);
}

static void rb_norm_gate(mr_backend *be, const float *o, const float *gate, const float *w, int n,
                         int dim, float eps, float *out) {
    resident_be *r = impl(be);
    const size_t b = f32((size_t)n * (size_t)dim);
    DEV(r, "norm_gate", o, b);
    DEV(r, "norm_gate", gate, b);
    DEV(r, "norm_gate", out, b);
    HOST(r, "norm_gate", w, f32((size_t)dim));
    r->cpu->ops->norm_gate(r->cpu, o, gate, w, n, dim, eps, out);
}

static void rb_attention(mr_backend *be, const mr_attention_args *a) {
    resident_be *r = impl(be);
    const size_t nt = (size_t)rows_of(a->n_segments, a->segs);
    const size_t q = (size_t)a->n_heads * a->head_dim, kv = (size_t)a->n_kv_heads * a->head_dim;
    DEV(r, "attention", a->q, f32(nt * q));
    DEV(r, "attention", a->k, f32(nt * kv));
    DEV(r, "attention", a->v, f32(nt * kv));
    DEV(r, "attention", a->out, f32(nt * q));
    DEV(r, "attention", a->k_cache, f32(kv * (size_t)a->block_tokens));
    DEV(r, "attention", a->v_cache, f32(kv * (size_t)a->block_tokens));
    HOST(r, "attention", a->inv_freq, f32((size_t)a->rotary_dim / 2));
    HOST(r, "attention", a->segs, (size_t)a->n_segments * sizeof *a->segs);
    HOST(r, "attention", a->block_tables, (size_t)a->n_segments * sizeof *a->block_tables);
    for (int s = 0; s < a->n_segments; s++)
        HOST(r, "attention", a->block_tables[s], sizeof(int32_t));
    r->cpu->ops->attention(r->cpu, a);
}

static void rb_route(mr_backend *be, const mr_matrix *gate, const float *x, int n, int k,
                     int32_t *ids, float *wts) {
    resident_be *r = impl(be);
    HOST(r, "route", gate->data, matrix_bytes(gate));
    DEV(r, "route", x, f32((size_t)n * (size_t)gate->cols));
    HOST(r, "route", ids, (size_t)n * (size_t)k * sizeof *ids);
    HOST(r, "route", wts, f32((size_t)n * (size_t)k));
    r->cpu->ops->route(r->cpu, gate, x, n, k, ids, wts);
}

static void rb_moe(mr_backend *be, const mr_expert_set *set, const float *x, int n, int k,
                   const int32_t *ids, const float *wts, float *out) {
    resident_be *r = impl(be);
    DEV(r, "moe", x, f32((size_t)n * (size_t)set->hidden));
    DEV(r, "moe", out, f32((size_t)n * (size_t)set->hidden));
    HOST(r, "moe", ids, (size_t)n * (size_t)k * sizeof *ids);
    HOST(r, "moe", wts, f32((size_t)n * (size_t)k));
    r->cpu->ops->moe(r->cpu, set, x, n, k, ids, wts, out);
}

static mr_status rb_alloc(mr_backend *be, size_t bytes, int kind, void **out) {
    resident_be *r = impl(be);
    if (r->n_r == MAX_REGIONS) {
        MR_LOG_ERROR(MR_LOG_KERN, "cpu-resident: more than %d allocations", MAX_REGIONS);
        return MR_ERR_NOMEM;
    }
    void *p = mr_alloc_aligned(bytes);
    if (!p) return MR_ERR_NOMEM;
    if (kind == MR_MEM_DEVICE) memset(p, 0xFF, bytes); /* NaN until written, as a GPU may have */
    r->r[r->n_r++] = (region){p, bytes ? bytes : 1, kind};
    *out = p;
    return MR_OK;
}

static void rb_free(mr_backend *be, void *p, int kind) {
    resident_be *r = impl(be);
    if (!p) return;
    for (int i = 0; i < r->n_r; i++)
        if (r->r[i].p == p) {
            if (r->r[i].kind != kind) violation(r, "free", "kind differs from the allocation's");
            r->r[i] = r->r[--r->n_r];
            mr_free_aligned(p);
            return;
        }
    violation(r, "free", "pointer was not allocated here");
}

static mr_status rb_memset(mr_backend *be, void *p, int value, size_t bytes) {
    resident_be *r = impl(be);
    DEV(r, "memset", p, bytes);
    memset(p, value, bytes);
    return MR_OK;
}

static mr_status rb_copy(mr_backend *be, void *dst, const void *src, size_t bytes) {
    resident_be *r = impl(be);
    DEV(r, "copy", dst, bytes);
    DEV(r, "copy", src, bytes);
    memcpy(dst, src, bytes);
    return MR_OK;
}

static const mr_backend_ops resident_ops;

/* The host fallback of a cross-stage copy: memcpy, with dst checked against this backend's device
 * memory and src against the source backend's (another cpu-resident backend stands in for
 * another GPU: a pointer of the wrong stage is a violation, as it would be a crash there). */
static mr_status rb_copy_from(mr_backend *be, void *dst, mr_backend *src_be, const void *src,
                              size_t bytes) {
    resident_be *r = impl(be);
    if (src_be->ops != &resident_ops) {
        violation(r, "copy_from", "the source backend is not cpu-resident");
        return MR_ERR_INVALID;
    }
    DEV(r, "copy_from", dst, bytes);
    if (!inside(impl(src_be), src, bytes, MR_MEM_DEVICE))
        violation(r, "copy_from", "src is not device memory of the source backend");
    memcpy(dst, src, bytes);
    return MR_OK;
}

static mr_status rb_to_host(mr_backend *be, void *dst, const void *src, size_t bytes) {
    resident_be *r = impl(be);
    if (bytes) {
        HOST(r, "to_host", dst, bytes);
        DEV(r, "to_host", src, bytes);
        memcpy(dst, src, bytes);
    }
    const mr_status st = r->err;
    r->err = MR_OK;
    return st;
}

static mr_status rb_to_device(mr_backend *be, void *dst, const void *src, size_t bytes) {
    resident_be *r = impl(be);
    DEV(r, "to_device", dst, bytes);
    HOST(r, "to_device", src, bytes);
    memcpy(dst, src, bytes);
    return MR_OK;
}

/* The sample op with the reference's code: the device path of the scheduler, run on the host.
 * Rows a device sampler could not take (mr_sample_row_fits_device) are handed back, as
 * cuda-gpu does, so that the host fallback is exercised too. */
static mr_status rb_sample(mr_backend *be, const float *logits, int n_logit_rows, int vocab,
                           const mr_sample_row *rows, int n, int32_t *tokens,
                           mr_sample_result *out) {
    resident_be *r = impl(be);
    if (n < 0 || n_logit_rows < 0) return MR_ERR_INVALID;
    for (int i = 0; i < n; i++) MR_CHECK(mr_sample_row_check(&rows[i], vocab, n_logit_rows));
    if (n == 0) return MR_OK;
    DEV(r, "sample", logits, f32((size_t)n_logit_rows * (size_t)vocab));
    HOST(r, "sample", rows, (size_t)n * sizeof *rows);
    HOST(r, "sample", tokens, (size_t)n * sizeof *tokens);
    HOST(r, "sample", out, (size_t)n * sizeof *out);
    if (r->sample_vocab < vocab) {
        float *w = realloc(r->sample_work, (size_t)vocab * 3 * sizeof(float));
        if (!w) return MR_ERR_NOMEM;
        r->sample_work = w;
        r->sample_vocab = vocab;
    }
    for (int i = 0; i < n; i++) {
        if (!mr_sample_row_fits_device(&rows[i], vocab)) {
            tokens[i] = MR_SAMPLE_ON_HOST;
            continue;
        }
        tokens[i] = mr_sample_ref(&rows[i], logits + (size_t)rows[i].row * (size_t)vocab, vocab,
                                  1.0f, NULL, 0, r->sample_work, &out[i]);
    }
    const mr_status st = r->err;
    r->err = MR_OK;
    return st;
}

static void rb_destroy(mr_backend *be) {
    resident_be *r = be->impl;
    free(r->sample_work);
    if (r->n_r) MR_LOG_ERROR(MR_LOG_KERN, "cpu-resident: %d allocations not freed", r->n_r);
    for (int i = 0; i < r->n_r; i++) mr_free_aligned((void *)r->r[i].p);
    mr_backend_destroy(r->cpu);
    free(r);
    free(be);
}

/* Decode segments (backend.h): nothing to capture on the CPU — the ops run as they come, so a
 * segment always ran — but the bracketing is checked, and the model's padded rows are exercised
 * in CI through this backend. */
static void rb_segment_begin(mr_backend *be, const mr_segment_key *key) {
    resident_be *r = impl(be);
    if (r->in_segment) violation(r, "segment_begin", "a segment is already open");
    if (key->rows < 1 || key->block_tokens < 1 || key->max_pos < 0 || key->max_pos > key->pos_limit)
        violation(r, "segment_begin", "key out of range");
    r->in_segment = 1;
}

static mr_status rb_segment_end(mr_backend *be, int *ran) {
    resident_be *r = impl(be);
    if (!r->in_segment) violation(r, "segment_end", "no segment is open");
    r->in_segment = 0;
    *ran = 1;
    return MR_OK;
}

static const mr_backend_ops resident_ops = {
    .name = "cpu-resident",
    .destroy = rb_destroy,
    .embed = rb_embed,
    .rmsnorm = rb_rmsnorm,
    .scale_add = rb_scale_add,
    .linear = rb_linear,
    .lightning = rb_lightning,
    .norm_gate = rb_norm_gate,
    .attention = rb_attention,
    .route = rb_route,
    .moe = rb_moe,
    .device_resident = 1,
    .kv_dtype = MR_DTYPE_F32,
    .alloc = rb_alloc,
    .free = rb_free,
    .memset = rb_memset,
    .copy = rb_copy,
    .to_host = rb_to_host,
    .to_device = rb_to_device,
    .copy_from = rb_copy_from,
    .sample = rb_sample,
    .segment_begin = rb_segment_begin,
    .segment_end = rb_segment_end,
};

mr_status mr_resident_backend_create(const mr_backend_params *p, mr_backend **out) {
    mr_backend *be = calloc(1, sizeof *be);
    resident_be *r = calloc(1, sizeof *r);
    if (!be || !r) {
        free(be);
        free(r);
        return MR_ERR_NOMEM;
    }
    mr_status st = mr_cpu_backend_create(p, &r->cpu);
    if (st != MR_OK) {
        free(r);
        free(be);
        return st;
    }
    be->ops = &resident_ops;
    be->impl = r;
    *out = be;
    return MR_OK;
}
