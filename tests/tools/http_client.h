/* http_client.h — a minimal HTTP/1.1 client for the API tests (loopback only): one request per
 * connection, Content-Length or chunked bodies, and incremental reading of streamed bodies. */
#ifndef MR_TEST_HTTP_CLIENT_H
#define MR_TEST_HTTP_CLIENT_H

#include <stddef.h>

typedef struct http_conn {
    int fd;
    int status;
    int chunked;
    long long content_length; /* -1 unknown */
    char buf[65536];
    size_t blen, bpos;    /* buffered raw bytes */
    long long chunk_left; /* bytes left in the current chunk; -1 before the first */
    int eof;
} http_conn;

/* Sends `method path` with an optional body; reads the status line and headers.
 * Returns 0 on success. extra_headers: "Name: value\r\n..." or NULL. */
int http_request(http_conn *c, const char *host, int port, const char *method, const char *path,
                 const char *content_type, const char *body, size_t body_len,
                 const char *extra_headers, int timeout_ms);
/* Reads up to cap body bytes (de-chunked); 0 at the end, -1 on error/timeout. */
long http_read(http_conn *c, char *out, size_t cap, int timeout_ms);
/* Reads the whole body into a malloc'd NUL-terminated string. */
char *http_read_all(http_conn *c, size_t *len, int timeout_ms);
void http_close(http_conn *c);

/* One-shot helper: returns the status, *body malloc'd (may be NULL). */
int http_simple(const char *host, int port, const char *method, const char *path, const char *body,
                char **resp, int timeout_ms);

#endif
