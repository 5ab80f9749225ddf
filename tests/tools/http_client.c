#include "http_client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "proto/sock.h"

static int fill(http_conn *c, int timeout_ms) {
    if (c->bpos > 0 && c->bpos == c->blen) c->bpos = c->blen = 0;
    if (c->blen == sizeof c->buf) {
        memmove(c->buf, c->buf + c->bpos, c->blen - c->bpos);
        c->blen -= c->bpos;
        c->bpos = 0;
    }
    struct pollfd p = {c->fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return -1;
    ssize_t n = read(c->fd, c->buf + c->blen, sizeof c->buf - c->blen);
    if (n <= 0) {
        c->eof = 1;
        return n == 0 ? 0 : -1;
    }
    c->blen += (size_t)n;
    return (int)n;
}

/* Reads one CRLF-terminated line (without the CRLF). */
static int read_line(http_conn *c, char *out, size_t cap, int timeout_ms) {
    for (;;) {
        char *nl = memchr(c->buf + c->bpos, '\n', c->blen - c->bpos);
        if (nl) {
            size_t n = (size_t)(nl - (c->buf + c->bpos));
            size_t copy = n < cap - 1 ? n : cap - 1;
            memcpy(out, c->buf + c->bpos, copy);
            out[copy] = '\0';
            if (copy && out[copy - 1] == '\r') out[copy - 1] = '\0';
            c->bpos += n + 1;
            return 0;
        }
        if (fill(c, timeout_ms) <= 0) return -1;
    }
}

int http_request(http_conn *c, const char *host, int port, const char *method, const char *path,
                 const char *content_type, const char *body, size_t body_len,
                 const char *extra_headers, int timeout_ms) {
    memset(c, 0, sizeof *c);
    c->content_length = -1;
    c->chunk_left = -1;
    c->fd = mr_sock_connect(host, port, timeout_ms);
    if (c->fd < 0) return -1;
    size_t hcap = 4096 + (extra_headers ? strlen(extra_headers) : 0);
    char *head = malloc(hcap);
    int n = snprintf(head, hcap, "%s %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n%s%s%s",
                     method, path, host, port, content_type ? "Content-Type: " : "",
                     content_type ? content_type : "", content_type ? "\r\n" : "");
    if (body) n += snprintf(head + n, hcap - (size_t)n, "Content-Length: %zu\r\n", body_len);
    n += snprintf(head + n, hcap - (size_t)n, "%s\r\n", extra_headers ? extra_headers : "");
    for (int off = 0; off < n;) { /* the server may answer and close early: stop writing then */
        ssize_t w = write(c->fd, head + off, (size_t)(n - off));
        if (w <= 0) break;
        off += (int)w;
    }
    free(head);
    for (size_t off = 0; body && off < body_len;) {
        ssize_t w = write(c->fd, body + off, body_len - off);
        if (w <= 0) return -1;
        off += (size_t)w;
    }
    char line[8192];
    if (read_line(c, line, sizeof line, timeout_ms) != 0) return -1;
    if (sscanf(line, "HTTP/1.%*d %d", &c->status) != 1) return -1;
    for (;;) {
        if (read_line(c, line, sizeof line, timeout_ms) != 0) return -1;
        if (!line[0]) break;
        if (strncasecmp(line, "Content-Length:", 15) == 0) c->content_length = atoll(line + 15);
        if (strncasecmp(line, "Transfer-Encoding:", 18) == 0 && strstr(line, "chunked"))
            c->chunked = 1;
    }
    return 0;
}

long http_read(http_conn *c, char *out, size_t cap, int timeout_ms) {
    if (c->chunked) {
        if (c->chunk_left == 0) { /* the CRLF after a chunk, then the next size */
            char line[64];
            if (read_line(c, line, sizeof line, timeout_ms) != 0) return -1;
            c->chunk_left = -1;
        }
        if (c->chunk_left < 0) {
            char line[64];
            if (read_line(c, line, sizeof line, timeout_ms) != 0) return -1;
            c->chunk_left = strtoll(line, NULL, 16);
            if (c->chunk_left == 0) return 0;
        }
        while (c->bpos == c->blen)
            if (fill(c, timeout_ms) <= 0) return -1;
        size_t n = c->blen - c->bpos;
        if ((long long)n > c->chunk_left) n = (size_t)c->chunk_left;
        if (n > cap) n = cap;
        memcpy(out, c->buf + c->bpos, n);
        c->bpos += n;
        c->chunk_left -= (long long)n;
        return (long)n;
    }
    if (c->content_length == 0) return 0;
    while (c->bpos == c->blen) {
        int r = fill(c, timeout_ms);
        if (r == 0) return 0;
        if (r < 0) return -1;
    }
    size_t n = c->blen - c->bpos;
    if (c->content_length > 0 && (long long)n > c->content_length) n = (size_t)c->content_length;
    if (n > cap) n = cap;
    memcpy(out, c->buf + c->bpos, n);
    c->bpos += n;
    if (c->content_length > 0) c->content_length -= (long long)n;
    return (long)n;
}

char *http_read_all(http_conn *c, size_t *len, int timeout_ms) {
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    for (;;) {
        if (n + 4096 + 1 > cap) b = realloc(b, cap *= 2);
        long r = http_read(c, b + n, cap - n - 1, timeout_ms);
        if (r < 0) {
            free(b);
            return NULL;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    b[n] = '\0';
    if (len) *len = n;
    return b;
}

void http_close(http_conn *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

int http_simple(const char *host, int port, const char *method, const char *path, const char *body,
                char **resp, int timeout_ms) {
    http_conn c;
    *resp = NULL;
    if (http_request(&c, host, port, method, path, body ? "application/json" : NULL, body,
                     body ? strlen(body) : 0, NULL, timeout_ms) != 0) {
        http_close(&c);
        return -1;
    }
    *resp = http_read_all(&c, NULL, timeout_ms);
    http_close(&c);
    return c.status;
}
