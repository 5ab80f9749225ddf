#include "proto/frame.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/check.h"
#include "common/log.h"
#include "common/timeutil.h"

mr_status mr_frame_decode(const uint8_t *buf, size_t len, Moerack__Envelope **out) {
    Moerack__Envelope *env = moerack__envelope__unpack(NULL, len, buf);
    if (!env) return MR_ERR_PROTO;
    if (env->msg_case == MOERACK__ENVELOPE__MSG__NOT_SET) {
        moerack__envelope__free_unpacked(env, NULL);
        return MR_ERR_PROTO;
    }
    *out = env;
    return MR_OK;
}

void mr_frame_free(Moerack__Envelope *env) {
    if (env) moerack__envelope__free_unpacked(env, NULL);
}

mr_status mr_frame_encode(const Moerack__Envelope *env, uint8_t **buf, size_t *len) {
    size_t n = moerack__envelope__get_packed_size(env);
    if (n > UINT32_MAX) return MR_ERR_INVALID;
    uint8_t *b = malloc(n + 4);
    if (!b) return MR_ERR_NOMEM;
    for (int i = 0; i < 4; i++) b[i] = (uint8_t)(n >> (8 * i));
    moerack__envelope__pack(env, b + 4);
    *buf = b;
    *len = n + 4;
    return MR_OK;
}

/* Waits for `events` on fd until the deadline (ns, 0 = none). */
static mr_status wait_fd(int fd, short events, uint64_t deadline) {
    for (;;) {
        int ms = -1; /* a passed deadline still polls once, so a ready fd is never missed */
        if (deadline) {
            uint64_t now = mr_now_ns();
            ms = now >= deadline ? 0 : (int)((deadline - now + 999999) / 1000000);
        }
        struct pollfd p = {fd, events, 0};
        int rc = poll(&p, 1, ms);
        if (rc > 0) return MR_OK;
        if (rc == 0) return MR_ERR_TIMEOUT;
        if (errno != EINTR) return MR_ERR_IO;
    }
}

static uint64_t deadline_of(int timeout_ms) {
    return timeout_ms < 0 ? 0 : mr_now_ns() + (uint64_t)timeout_ms * 1000000ull;
}

static mr_status write_all(int fd, const uint8_t *p, size_t n, uint64_t deadline) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            MR_CHECK(wait_fd(fd, POLLOUT, deadline));
            continue;
        }
        return errno == EPIPE || errno == ECONNRESET ? MR_ERR_CLOSED : MR_ERR_IO;
    }
    return MR_OK;
}

static mr_status read_all(int fd, uint8_t *p, size_t n, uint64_t deadline) {
    while (n > 0) {
        ssize_t r = recv(fd, p, n, MSG_DONTWAIT);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
            continue;
        }
        if (r == 0) return MR_ERR_CLOSED;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            MR_CHECK(wait_fd(fd, POLLIN, deadline));
            continue;
        }
        return errno == ECONNRESET ? MR_ERR_CLOSED : MR_ERR_IO;
    }
    return MR_OK;
}

mr_status mr_frame_send(int fd, const Moerack__Envelope *env, int timeout_ms) {
    uint8_t *buf;
    size_t len;
    MR_CHECK(mr_frame_encode(env, &buf, &len));
    mr_status st = write_all(fd, buf, len, deadline_of(timeout_ms));
    free(buf);
    return st;
}

mr_status mr_frame_recv(int fd, size_t max_frame, int timeout_ms, Moerack__Envelope **out) {
    uint64_t deadline = deadline_of(timeout_ms);
    uint8_t hdr[4];
    MR_CHECK(read_all(fd, hdr, 4, deadline));
    uint32_t n =
        (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 24;
    if (n == 0 || n > max_frame) {
        MR_LOG_ERROR(MR_LOG_NET, "control frame of %u bytes is outside [1, %zu]", n, max_frame);
        return MR_ERR_PROTO;
    }
    uint8_t *buf = malloc(n);
    if (!buf) return MR_ERR_NOMEM;
    mr_status st = read_all(fd, buf, n, deadline);
    if (st == MR_OK) {
        st = mr_frame_decode(buf, n, out);
        if (st != MR_OK) MR_LOG_ERROR(MR_LOG_NET, "control frame of %u bytes does not decode", n);
    }
    free(buf);
    return st;
}

void mr_frame_reader_init(mr_frame_reader *r, size_t max_frame) {
    memset(r, 0, sizeof *r);
    r->max_frame = max_frame;
}

void mr_frame_reader_fini(mr_frame_reader *r) {
    free(r->buf);
    memset(r, 0, sizeof *r);
}

mr_status mr_frame_reader_fill(mr_frame_reader *r, int fd) {
    for (;;) {
        if (r->cap - r->len < 65536) {
            size_t cap = r->cap ? r->cap * 2 : 131072;
            if (cap > r->max_frame + 4 + 131072) cap = r->max_frame + 4 + 131072;
            if (cap <= r->len) return MR_OK; /* full: the caller must consume (next) first */
            uint8_t *b = realloc(r->buf, cap);
            if (!b) return MR_ERR_NOMEM;
            r->buf = b;
            r->cap = cap;
        }
        ssize_t n = recv(fd, r->buf + r->len, r->cap - r->len, MSG_DONTWAIT);
        if (n > 0) {
            r->len += (size_t)n;
            continue;
        }
        if (n == 0) return MR_ERR_CLOSED;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return MR_OK;
        return MR_ERR_IO;
    }
}

mr_status mr_frame_reader_next(mr_frame_reader *r, Moerack__Envelope **out) {
    if (r->len < 4) return MR_ERR_NOT_FOUND;
    uint32_t n = (uint32_t)r->buf[0] | (uint32_t)r->buf[1] << 8 | (uint32_t)r->buf[2] << 16 |
                 (uint32_t)r->buf[3] << 24;
    if (n == 0 || n > r->max_frame) return MR_ERR_PROTO;
    if (r->len < 4 + (size_t)n) return MR_ERR_NOT_FOUND;
    mr_status st = mr_frame_decode(r->buf + 4, n, out);
    memmove(r->buf, r->buf + 4 + n, r->len - 4 - n);
    r->len -= 4 + (size_t)n;
    return st;
}

const char *mr_frame_msg_name(const Moerack__Envelope *env) {
    switch (env->msg_case) {
    case MOERACK__ENVELOPE__MSG_HELLO:
        return "hello";
    case MOERACK__ENVELOPE__MSG_WELCOME:
        return "welcome";
    case MOERACK__ENVELOPE__MSG_ASSIGN:
        return "assign";
    case MOERACK__ENVELOPE__MSG_LOAD_PROGRESS:
        return "load_progress";
    case MOERACK__ENVELOPE__MSG_READY:
        return "ready";
    case MOERACK__ENVELOPE__MSG_HEARTBEAT:
        return "heartbeat";
    case MOERACK__ENVELOPE__MSG_DRAIN:
        return "drain";
    case MOERACK__ENVELOPE__MSG_SHUTDOWN:
        return "shutdown";
    case MOERACK__ENVELOPE__MSG_ERROR:
        return "error";
    case MOERACK__ENVELOPE__MSG_STATUS_REQUEST:
        return "status_request";
    case MOERACK__ENVELOPE__MSG_STATUS_REPLY:
        return "status_reply";
    case MOERACK__ENVELOPE__MSG_GENERATE_REQUEST:
        return "generate_request";
    case MOERACK__ENVELOPE__MSG_GENERATE_REPLY:
        return "generate_reply";
    default:
        return "unknown";
    }
}

void mr_frame_send_error(int fd, mr_status code, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    Moerack__Error err = MOERACK__ERROR__INIT;
    err.code = (uint32_t)code;
    err.message = msg;
    Moerack__Envelope env = MOERACK__ENVELOPE__INIT;
    env.msg_case = MOERACK__ENVELOPE__MSG_ERROR;
    env.error = &err;
    (void)mr_frame_send(fd, &env, 200);
}
