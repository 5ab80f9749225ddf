/* http_server.h — the OpenAI-compatible HTTP API (libmicrohttpd).
 *
 *   POST /v1/chat/completions, POST /v1/completions, GET /v1/models,
 *   GET /health (alive), GET /health/ready (weights loaded, every expert covered), GET /metrics.
 *
 * One thread per connection (streams block while they wait for tokens), bounded by
 * max_connections; bodies bounded by max_body_bytes (413), headers by max_header_bytes (431),
 * idle connections closed after idle_timeout_s (slowloris). A client that goes away has its
 * request cancelled: the scheduler frees its state at the next step. */
#ifndef MR_HTTP_SERVER_H
#define MR_HTTP_SERVER_H

#include <stddef.h>

#include "common/metrics.h"
#include "common/status.h"
#include "coordinator/openai_serve.h"

typedef struct mr_http_params {
    const char *listen; /* "host:port" */
    size_t max_body_bytes;
    size_t max_header_bytes;
    int max_connections;
    int idle_timeout_s;
    mr_serve_config serve; /* copied */
    mr_metrics *metrics;
    /* readiness: 1 when serving is possible; else 0 and why */
    int (*ready)(void *user, char *why, size_t cap);
    void *ready_user;
    /* appends extra Prometheus lines (per worker, per expert) to the /metrics text */
    void (*extra_metrics)(void *user, char **text, size_t *len);
    void *extra_user;
} mr_http_params;

typedef struct mr_http_server mr_http_server;

mr_status mr_http_server_start(const mr_http_params *p, mr_http_server **out);
void mr_http_server_stop(mr_http_server *s);

#endif
