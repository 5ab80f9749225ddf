#include "coordinator/http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/config_table.h"
#include "common/log.h"

struct mr_http_server {
    mr_http_params p;
    struct MHD_Daemon *d;
    mr_counter *c_http[6]; /* by status class */
};

typedef enum route {
    R_UNKNOWN = 0,
    R_CHAT,
    R_COMPLETIONS,
    R_MODELS,
    R_HEALTH,
    R_READY,
    R_METRICS,
} route;

/* Per-request state, from the first handler call until MHD reports completion. */
typedef struct http_req {
    route r;
    char *body;
    size_t len, cap;
    int too_large;
    mr_serve_session *sess;
    struct MHD_Connection *conn;
    int fd;
} http_req;

static route route_of(const char *url, const char *method, int *method_ok) {
    static const struct {
        const char *url, *method;
        route r;
    } table[] = {
        {"/v1/chat/completions", "POST", R_CHAT}, {"/v1/completions", "POST", R_COMPLETIONS},
        {"/v1/models", "GET", R_MODELS},          {"/health", "GET", R_HEALTH},
        {"/health/ready", "GET", R_READY},        {"/metrics", "GET", R_METRICS}};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(url, table[i].url) == 0) {
            *method_ok = strcmp(method, table[i].method) == 0;
            return table[i].r;
        }
    *method_ok = 1;
    return R_UNKNOWN;
}

static void count_status(mr_http_server *s, unsigned status) {
    unsigned cls = status / 100;
    if (cls < 6) mr_counter_add(s->c_http[cls], 1);
}

static enum MHD_Result send_body(mr_http_server *s, struct MHD_Connection *c, unsigned status,
                                 const char *type, const char *body, size_t len) {
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", type);
    enum MHD_Result r = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    count_status(s, status);
    return r;
}

static enum MHD_Result send_error(mr_http_server *s, struct MHD_Connection *c, int status,
                                  const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
#include <stdarg.h>
static enum MHD_Result send_error(mr_http_server *s, struct MHD_Connection *c, int status,
                                  const char *param, const char *fmt, ...) {
    mr_oai_error e;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    mr_oai_error_set(&e, status, param, "%s", msg);
    char *j = mr_oai_error_json(&e);
    enum MHD_Result r = send_body(s, c, (unsigned)status, "application/json", j, strlen(j));
    free(j);
    return r;
}

static enum MHD_Result send_oai_error(mr_http_server *s, struct MHD_Connection *c,
                                      const mr_oai_error *e) {
    char *j = mr_oai_error_json(e);
    enum MHD_Result r = send_body(s, c, (unsigned)e->status, "application/json", j, strlen(j));
    free(j);
    return r;
}

/* 1 if the client has hung up (EOF or error on its socket). */
static int client_gone(int fd) {
    if (fd < 0) return 0;
    struct pollfd p = {fd, POLLRDHUP, 0};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static int hung_up(void *user) {
    return client_gone(((http_req *)user)->fd);
}

/* ---- streaming ------------------------------------------------------------------------------- */

typedef struct stream_ctx {
    mr_http_server *srv;
    http_req *hr;
    const char *data;
    size_t len, off;
    int last;
} stream_ctx;

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    stream_ctx *st = cls;
    (void)pos;
    while (st->off == st->len) {
        if (st->last) return MHD_CONTENT_READER_END_OF_STREAM;
        if (client_gone(st->hr->fd)) {
            mr_serve_session_cancel(st->hr->sess);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        int status;
        st->last = mr_serve_session_next(st->hr->sess, &st->data, &st->len, &status);
        st->off = 0;
    }
    size_t n = st->len - st->off < max ? st->len - st->off : max;
    memcpy(buf, st->data + st->off, n);
    st->off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    free(cls);
}

/* ---- endpoints ------------------------------------------------------------------------------- */

static enum MHD_Result serve_generation(mr_http_server *s, struct MHD_Connection *c, http_req *hr) {
    char why[512] = "";
    if (s->p.ready && !s->p.ready(s->p.ready_user, why, sizeof why))
        return send_error(s, c, 503, NULL, "not ready: %s", why);
    mr_oai_error err;
    mr_oai_kind kind = hr->r == R_CHAT ? MR_OAI_CHAT : MR_OAI_COMPLETION;
    if (mr_serve_session_start(&s->p.serve, kind, hr->body ? hr->body : "", hr->len, &hr->sess,
                               &err) != MR_OK)
        return send_oai_error(s, c, &err);
    if (!mr_serve_session_streaming(hr->sess)) {
        /* wait, watching the client: a hang-up cancels the request */
        mr_serve_session_set_abort_check(hr->sess, hung_up, hr);
        const char *data;
        size_t len;
        int status;
        mr_serve_session_next(hr->sess, &data, &len, &status);
        return send_body(s, c, (unsigned)status, "application/json", data, len);
    }
    stream_ctx *st = calloc(1, sizeof *st);
    if (!st) return send_error(s, c, 500, NULL, "out of memory");
    st->srv = s;
    st->hr = hr;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_reader, st, stream_free);
    if (!resp) {
        free(st);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    enum MHD_Result r = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
    count_status(s, 200);
    return r;
}

static enum MHD_Result serve_get(mr_http_server *s, struct MHD_Connection *c, route r) {
    char why[512] = "";
    switch (r) {
    case R_HEALTH:
        return send_body(s, c, 200, "application/json", "{\"status\":\"ok\"}", 15);
    case R_READY: {
        if (s->p.ready && !s->p.ready(s->p.ready_user, why, sizeof why))
            return send_error(s, c, 503, NULL, "not ready: %s", why);
        return send_body(s, c, 200, "application/json", "{\"status\":\"ready\"}", 18);
    }
    case R_MODELS: {
        char body[512];
        int n = snprintf(body, sizeof body,
                         "{\"object\":\"list\",\"data\":[{\"id\":\"%s\",\"object\":\"model\","
                         "\"created\":0,\"owned_by\":\"moerack\",\"max_model_len\":%lld}]}",
                         s->p.serve.model_id, s->p.serve.max_context);
        return send_body(s, c, 200, "application/json", body, (size_t)n);
    }
    case R_METRICS: {
        char *text = mr_metrics_render(s->p.metrics);
        size_t len = text ? strlen(text) : 0;
        if (s->p.extra_metrics) s->p.extra_metrics(s->p.extra_user, &text, &len);
        enum MHD_Result res =
            send_body(s, c, 200, "text/plain; version=0.0.4; charset=utf-8", text ? text : "", len);
        free(text);
        return res;
    }
    default:
        return send_error(s, c, 404, NULL, "no such endpoint");
    }
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls) {
    mr_http_server *s = cls;
    (void)version;
    http_req *hr = *con_cls;
    if (!hr) { /* first call: headers only */
        int method_ok;
        route r = route_of(url, method, &method_ok);
        hr = calloc(1, sizeof *hr);
        if (!hr) return MHD_NO;
        hr->r = r;
        hr->conn = c;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        hr->fd = ci ? ci->connect_fd : -1;
        *con_cls = hr;
        if (r == R_UNKNOWN) return send_error(s, c, 404, NULL, "no such endpoint: %.200s", url);
        if (!method_ok)
            return send_error(s, c, 405, NULL, "method %s is not allowed on %s", method, url);
        if (r == R_CHAT || r == R_COMPLETIONS) {
            const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
            if (!ct || strncasecmp(ct, "application/json", 16) != 0)
                return send_error(s, c, 415, NULL, "Content-Type must be application/json");
            const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
            if (cl && strtoull(cl, NULL, 10) > s->p.max_body_bytes)
                return send_error(s, c, 413, NULL, "the body is larger than %zu bytes",
                                  s->p.max_body_bytes);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (hr->len + *upload_size > s->p.max_body_bytes) hr->too_large = 1;
        if (!hr->too_large) {
            if (hr->len + *upload_size + 1 > hr->cap) {
                size_t cap = hr->cap ? hr->cap : 4096;
                while (cap < hr->len + *upload_size + 1) cap *= 2;
                char *b = realloc(hr->body, cap);
                if (!b) return MHD_NO;
                hr->body = b;
                hr->cap = cap;
            }
            memcpy(hr->body + hr->len, upload, *upload_size);
            hr->len += *upload_size;
            hr->body[hr->len] = '\0';
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (hr->too_large)
        return send_error(s, c, 413, NULL, "the body is larger than %zu bytes",
                          s->p.max_body_bytes);
    if (hr->r == R_CHAT || hr->r == R_COMPLETIONS) return serve_generation(s, c, hr);
    return serve_get(s, c, hr->r);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c;
    http_req *hr = *con_cls;
    if (!hr) return;
    if (hr->sess) {
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) mr_serve_session_cancel(hr->sess);
        mr_serve_session_destroy(hr->sess);
    }
    free(hr->body);
    free(hr);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    MR_LOG_DEBUG(MR_LOG_HTTP, "libmicrohttpd: %s", msg);
}

mr_status mr_http_server_start(const mr_http_params *p, mr_http_server **out) {
    mr_http_server *s = calloc(1, sizeof *s);
    if (!s) return MR_ERR_NOMEM;
    s->p = *p;
    char host[128];
    int port;
    if (mr_parse_endpoint(p->listen, host, sizeof host, &port) != MR_OK) {
        MR_LOG_ERROR(MR_LOG_HTTP, "http_listen \"%s\" is not host:port", p->listen);
        free(s);
        return MR_ERR_INVALID;
    }
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, strcmp(host, "localhost") == 0 ? "127.0.0.1" : host, &addr.sin_addr) !=
        1) {
        MR_LOG_ERROR(MR_LOG_HTTP, "http_listen host \"%s\" must be an IPv4 address", host);
        free(s);
        return MR_ERR_INVALID;
    }
    if (p->metrics) {
        static const char *const labels[] = {NULL,           "code=\"1xx\"", "code=\"2xx\"",
                                             "code=\"3xx\"", "code=\"4xx\"", "code=\"5xx\""};
        for (int i = 1; i < 6; i++)
            s->c_http[i] = mr_metrics_counter(p->metrics, "moerack_http_responses_total",
                                              "HTTP responses by status class", labels[i]);
    }
    s->d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
        (uint16_t)port, NULL, NULL, handler, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)p->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)p->idle_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, p->max_header_bytes,
        MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
        MHD_OPTION_END);
    if (!s->d) {
        MR_LOG_ERROR(MR_LOG_HTTP, "cannot start the HTTP server on %s: %s", p->listen,
                     strerror(errno));
        free(s);
        return MR_ERR_IO;
    }
    MR_LOG_INFO(MR_LOG_HTTP, "OpenAI-compatible API on http://%s (model \"%s\")", p->listen,
                p->serve.model_id);
    *out = s;
    return MR_OK;
}

void mr_http_server_stop(mr_http_server *s) {
    if (!s) return;
    MHD_stop_daemon(s->d);
    free(s);
}
