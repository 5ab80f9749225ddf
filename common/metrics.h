/* metrics.h — a small metrics registry with Prometheus text exposition.
 *
 *   mr_metrics *m = mr_metrics_create();
 *   mr_counter *c = mr_metrics_counter(m, "moerack_prompt_tokens_total", "Prompt tokens processed",
 * NULL); mr_counter_add(c, 17); mr_histogram *h = mr_metrics_histogram(m,
 * "moerack_time_to_first_token_seconds", "...", NULL, mr_buckets_latency, MR_BUCKETS_LATENCY_N);
 *   mr_histogram_observe(h, 0.123);
 *   char *text = mr_metrics_render(m);   // Prometheus text format 0.0.4; caller frees
 *
 * Updates are lock-free (atomics) and may come from any thread; registration happens at start-up.
 * A metric with labels is registered once per label set ("reason=\"stop\""); series of one name
 * are rendered together under one HELP/TYPE header. */
#ifndef MR_METRICS_H
#define MR_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct mr_metrics mr_metrics;
typedef struct mr_counter mr_counter;
typedef struct mr_gauge mr_gauge;
typedef struct mr_histogram mr_histogram;

mr_metrics *mr_metrics_create(void);
void mr_metrics_destroy(mr_metrics *m);

/* labels: NULL or a label list in Prometheus syntax without braces, e.g. "reason=\"stop\"". */
mr_counter *mr_metrics_counter(mr_metrics *m, const char *name, const char *help,
                               const char *labels);
mr_gauge *mr_metrics_gauge(mr_metrics *m, const char *name, const char *help, const char *labels);
mr_histogram *mr_metrics_histogram(mr_metrics *m, const char *name, const char *help,
                                   const char *labels, const double *bounds, int n_bounds);

void mr_counter_add(mr_counter *c, double v);
void mr_gauge_set(mr_gauge *g, double v);
void mr_gauge_add(mr_gauge *g, double v);
void mr_histogram_observe(mr_histogram *h, double v);

/* Prometheus text exposition of every metric; NUL-terminated, caller frees. */
char *mr_metrics_render(mr_metrics *m);

extern const double mr_buckets_latency[]; /* seconds: 1 ms ... 120 s */
#define MR_BUCKETS_LATENCY_N 18
extern const double mr_buckets_batch[]; /* sizes: 1 ... 8192 */
#define MR_BUCKETS_BATCH_N 14

#endif
