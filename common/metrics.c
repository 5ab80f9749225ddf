#include "common/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double mr_buckets_latency[MR_BUCKETS_LATENCY_N] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                         0.075, 0.1,    0.25,  0.5,  0.75,  1.0,
                                                         2.5,   5.0,    10.0,  20.0, 60.0,  120.0};
const double mr_buckets_batch[MR_BUCKETS_BATCH_N] = {1,   2,   4,   8,    16,   32,   64,
                                                     128, 256, 512, 1024, 2048, 4096, 8192};

typedef enum kind { K_COUNTER, K_GAUGE, K_HISTOGRAM } kind;

/* Doubles kept as bit patterns in 64-bit atomics (C11 has no atomic double add). */
typedef struct series {
    kind k;
    char *name, *help, *labels;
    _Atomic uint64_t value; /* counter / gauge */
    int n_bounds;
    double *bounds;
    _Atomic uint64_t *buckets; /* [n_bounds + 1] counts, last = +Inf */
    _Atomic uint64_t sum;      /* histogram sum, double bits */
    struct series *next;
} series;

struct mr_metrics {
    pthread_mutex_t mu; /* registration only */
    series *head, *tail;
};
struct mr_counter {
    series s;
};
struct mr_gauge {
    series s;
};
struct mr_histogram {
    series s;
};

static double bits_to_d(uint64_t b) {
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}
static uint64_t d_to_bits(double d) {
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}
static void atomic_add_double(_Atomic uint64_t *a, double v) {
    uint64_t old = atomic_load(a), new_;
    do {
        new_ = d_to_bits(bits_to_d(old) + v);
    } while (!atomic_compare_exchange_weak(a, &old, new_));
}

mr_metrics *mr_metrics_create(void) {
    mr_metrics *m = calloc(1, sizeof *m);
    if (m) pthread_mutex_init(&m->mu, NULL);
    return m;
}

void mr_metrics_destroy(mr_metrics *m) {
    if (!m) return;
    series *s = m->head;
    while (s) {
        series *n = s->next;
        free(s->name);
        free(s->help);
        free(s->labels);
        free(s->bounds);
        free((void *)s->buckets);
        free(s);
        s = n;
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static series *add(mr_metrics *m, kind k, const char *name, const char *help, const char *labels) {
    series *s = calloc(1, sizeof(struct mr_histogram));
    if (!s) return NULL;
    s->k = k;
    s->name = strdup(name);
    s->help = strdup(help);
    s->labels = labels ? strdup(labels) : NULL;
    atomic_store(&s->value, d_to_bits(0.0));
    atomic_store(&s->sum, d_to_bits(0.0));
    pthread_mutex_lock(&m->mu);
    /* keep series of one name together: insert after the last one with this name */
    series *after = NULL;
    for (series *p = m->head; p; p = p->next)
        if (strcmp(p->name, name) == 0) after = p;
    if (after) {
        s->next = after->next;
        after->next = s;
        if (m->tail == after) m->tail = s;
    } else {
        if (m->tail)
            m->tail->next = s;
        else
            m->head = s;
        m->tail = s;
    }
    pthread_mutex_unlock(&m->mu);
    return s;
}

mr_counter *mr_metrics_counter(mr_metrics *m, const char *name, const char *help,
                               const char *labels) {
    return (mr_counter *)add(m, K_COUNTER, name, help, labels);
}
mr_gauge *mr_metrics_gauge(mr_metrics *m, const char *name, const char *help, const char *labels) {
    return (mr_gauge *)add(m, K_GAUGE, name, help, labels);
}
mr_histogram *mr_metrics_histogram(mr_metrics *m, const char *name, const char *help,
                                   const char *labels, const double *bounds, int n_bounds) {
    series *s = add(m, K_HISTOGRAM, name, help, labels);
    if (!s) return NULL;
    s->n_bounds = n_bounds;
    s->bounds = malloc((size_t)n_bounds * sizeof(double));
    s->buckets = calloc((size_t)n_bounds + 1, sizeof(_Atomic uint64_t));
    if (s->bounds) memcpy(s->bounds, bounds, (size_t)n_bounds * sizeof(double));
    return (mr_histogram *)s;
}

void mr_counter_add(mr_counter *c, double v) {
    if (c && v >= 0) atomic_add_double(&c->s.value, v);
}
void mr_gauge_set(mr_gauge *g, double v) {
    if (g) atomic_store(&g->s.value, d_to_bits(v));
}
void mr_gauge_add(mr_gauge *g, double v) {
    if (g) atomic_add_double(&g->s.value, v);
}
void mr_histogram_observe(mr_histogram *h, double v) {
    if (!h || !h->s.buckets || isnan(v)) return;
    int i = 0;
    while (i < h->s.n_bounds && v > h->s.bounds[i]) i++;
    atomic_fetch_add(&h->s.buckets[i], 1);
    atomic_add_double(&h->s.sum, v);
}

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static void put(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static void put(buf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 8192;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return;
        b->p = q;
        b->cap = cap;
    }
}

static void fmt_num(char *out, size_t cap, double v) {
    if (isinf(v))
        snprintf(out, cap, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        snprintf(out, cap, "%.0f", v);
    else
        snprintf(out, cap, "%.9g", v);
}

char *mr_metrics_render(mr_metrics *m) {
    buf b = {0};
    put(&b, "%s", "");
    const char *last = "";
    for (series *s = m->head; s; s = s->next) {
        if (strcmp(s->name, last) != 0) {
            static const char *const types[] = {"counter", "gauge", "histogram"};
            put(&b, "# HELP %s %s\n# TYPE %s %s\n", s->name, s->help, s->name, types[s->k]);
            last = s->name;
        }
        char num[64];
        const char *lb = s->labels ? s->labels : "";
        if (s->k != K_HISTOGRAM) {
            fmt_num(num, sizeof num, bits_to_d(atomic_load(&s->value)));
            put(&b, "%s%s%s%s %s\n", s->name, *lb ? "{" : "", lb, *lb ? "}" : "", num);
            continue;
        }
        uint64_t cum = 0;
        for (int i = 0; i <= s->n_bounds; i++) {
            cum += atomic_load(&s->buckets[i]);
            char le[64];
            if (i < s->n_bounds)
                fmt_num(le, sizeof le, s->bounds[i]);
            else
                snprintf(le, sizeof le, "+Inf");
            put(&b, "%s_bucket{%s%sle=\"%s\"} %llu\n", s->name, lb, *lb ? "," : "", le,
                (unsigned long long)cum);
        }
        fmt_num(num, sizeof num, bits_to_d(atomic_load(&s->sum)));
        put(&b, "%s_sum%s%s%s %s\n", s->name, *lb ? "{" : "", lb, *lb ? "}" : "", num);
        put(&b, "%s_count%s%s%s %llu\n", s->name, *lb ? "{" : "", lb, *lb ? "}" : "",
            (unsigned long long)cum);
    }
    return b.p;
}
