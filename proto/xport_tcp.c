/* xport_tcp.c — the TCP implementation of the data-plane transport. One message = the 40-byte
 * header and its payload written back to back (writev); TCP_NODELAY on.
 *
 * Full duplex on one thread. If both ends have a message on the way to the other at once and both
 * are larger than what the two kernels' socket buffers hold, each would block in send() waiting for
 * the other to read (the coordinator's micro-batch 1 against a worker's reply to micro-batch 0 did,
 * from ~2000 tokens of MiniMax-M1 activations, before the dispatcher stopped sending on top of an
 * unread reply). So a send() that cannot progress reads whatever arrives into the connection's
 * read-ahead buffer (allocated on first need, one message of max_message), and recv() serves from
 * it first; poll() on conn_fd cannot see buffered bytes, which tcp_buffered() reports. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/check.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "proto/xport.h"

struct mr_xport_conn {
    int fd;
    char peer[96];
    size_t max_message;  /* payload bytes; the read-ahead holds one whole message */
    int send_timeout_ms; /* longest wait without progress in a send; 0 = none */
    uint8_t *ra;         /* read-ahead: bytes [ra_off, ra_len) arrived but not yet returned */
    size_t ra_cap, ra_off, ra_len;
};

struct mr_xport_listener {
    int fd;
    size_t max_message;
    int send_timeout_ms;
};

static uint64_t deadline_of(int timeout_ms) {
    return timeout_ms < 0 ? 0 : mr_now_ns() + (uint64_t)timeout_ms * 1000000ull;
}

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

static void set_sock_opts(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/* params.sock_buffer: fixed kernel buffers instead of autotuning (before connect / listen, so the
 * window scale fits them; accepted sockets inherit the listener's). */
static void set_buffers(int fd, const mr_xport_params *p) {
    if (p->sock_buffer <= 0) return;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &p->sock_buffer, sizeof p->sock_buffer);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &p->sock_buffer, sizeof p->sock_buffer);
}

static void describe_peer(int fd, char *out, size_t cap) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[64] = "?";
    int port = 0;
    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
            port = ntohs(a->sin6_port);
        }
    }
    snprintf(out, cap, "%s:%d", host, port);
}

/* Resolves host:port (numeric or name) to the first usable address. */
static mr_status resolve(const char *host, int port, int passive, struct addrinfo **out) {
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = {0};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    int rc = getaddrinfo(host, ps, &hints, out);
    if (rc != 0) {
        MR_LOG_ERROR(MR_LOG_NET, "cannot resolve '%s': %s", host, gai_strerror(rc));
        return MR_ERR_INVALID;
    }
    return MR_OK;
}

static mr_status tcp_listen(const mr_xport_params *p, const char *host, int port,
                            mr_xport_listener **out, int *bound_port) {
    struct addrinfo *ai;
    MR_CHECK(resolve(host, port, 1, &ai));
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd >= 0) set_buffers(fd, p);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 64) != 0) {
        MR_LOG_ERROR(MR_LOG_NET, "cannot listen on %s:%d: %s", host, port, strerror(errno));
        if (fd >= 0) close(fd);
        freeaddrinfo(ai);
        return MR_ERR_IO;
    }
    freeaddrinfo(ai);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &len);
    if (bound_port)
        *bound_port = ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                                              : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    mr_xport_listener *l = calloc(1, sizeof *l);
    if (!l) {
        close(fd);
        return MR_ERR_NOMEM;
    }
    l->fd = fd;
    l->max_message = p ? p->max_message : 0;
    l->send_timeout_ms = p ? p->send_timeout_ms : 0;
    *out = l;
    return MR_OK;
}

static mr_status tcp_accept(mr_xport_listener *l, int timeout_ms, mr_xport_conn **out) {
    uint64_t deadline = deadline_of(timeout_ms);
    for (;;) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) {
            set_sock_opts(fd);
            mr_xport_conn *c = calloc(1, sizeof *c);
            if (!c) {
                close(fd);
                return MR_ERR_NOMEM;
            }
            c->fd = fd;
            c->max_message = l->max_message;
            c->send_timeout_ms = l->send_timeout_ms;
            describe_peer(fd, c->peer, sizeof c->peer);
            *out = c;
            return MR_OK;
        }
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return MR_ERR_IO;
        MR_CHECK(wait_fd(l->fd, POLLIN, deadline));
    }
}

static void tcp_listener_close(mr_xport_listener *l) {
    if (!l) return;
    close(l->fd);
    free(l);
}

static int tcp_listener_fd(mr_xport_listener *l) {
    return l->fd;
}

static mr_status tcp_connect(const mr_xport_params *p, const char *host, int port, int timeout_ms,
                             mr_xport_conn **out) {
    struct addrinfo *ai;
    MR_CHECK(resolve(host, port, 0, &ai));
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        freeaddrinfo(ai);
        return MR_ERR_IO;
    }
    set_sock_opts(fd);
    set_buffers(fd, p);
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (rc != 0 && errno != EINPROGRESS) {
        close(fd);
        return MR_ERR_CLOSED;
    }
    if (rc != 0) {
        mr_status st = wait_fd(fd, POLLOUT, deadline_of(timeout_ms));
        int err = 0;
        socklen_t len = sizeof err;
        if (st == MR_OK) getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (st != MR_OK || err != 0) {
            close(fd);
            return st != MR_OK ? st : MR_ERR_CLOSED;
        }
    }
    mr_xport_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return MR_ERR_NOMEM;
    }
    c->fd = fd;
    c->max_message = p ? p->max_message : 0;
    c->send_timeout_ms = p ? p->send_timeout_ms : 0;
    snprintf(c->peer, sizeof c->peer, "%s:%d", host, port);
    *out = c;
    return MR_OK;
}

/* While a send is blocked: read what the peer sends into the read-ahead buffer, so that a peer
 * blocked sending to us can finish and go on to read. MR_OK when the socket may be writable (or
 * the buffer is full and only the peer's reading can unblock us); MR_ERR_TIMEOUT when neither
 * happened by `deadline` (0: none); errors of the connection. */
static mr_status send_wait(mr_xport_conn *c, uint64_t deadline) {
    if (!c->ra && c->max_message) {
        c->ra_cap = sizeof(mr_dp_header) + c->max_message;
        c->ra = malloc(c->ra_cap); /* on failure: plain blocking send, as before */
        if (!c->ra) c->ra_cap = 0;
    }
    if (c->ra && c->ra_off > 0) { /* keep the unread bytes at the front */
        memmove(c->ra, c->ra + c->ra_off, c->ra_len - c->ra_off);
        c->ra_len -= c->ra_off;
        c->ra_off = 0;
    }
    const int room = c->ra && c->ra_len < c->ra_cap;
    struct pollfd p = {c->fd, (short)(POLLOUT | (room ? POLLIN : 0)), 0};
    int ms = -1;
    if (deadline) {
        const uint64_t now = mr_now_ns();
        ms = now >= deadline ? 0 : (int)((deadline - now + 999999) / 1000000);
    }
    int rc = poll(&p, 1, ms);
    if (rc < 0) return errno == EINTR ? MR_OK : MR_ERR_IO;
    if (rc == 0) return MR_ERR_TIMEOUT;
    if (room && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t r = recv(c->fd, c->ra + c->ra_len, c->ra_cap - c->ra_len, 0);
        if (r > 0)
            c->ra_len += (size_t)r;
        else if (r == 0)
            return MR_ERR_CLOSED;
        else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
            return errno == ECONNRESET ? MR_ERR_CLOSED : MR_ERR_IO;
    }
    return MR_OK;
}

static mr_status tcp_send(mr_xport_conn *c, const mr_dp_header *h, const void *payload) {
    struct iovec iov[2] = {{(void *)h, sizeof *h}, {(void *)payload, (size_t)h->payload_bytes}};
    int niov = h->payload_bytes ? 2 : 1;
    size_t left = sizeof *h + (size_t)h->payload_bytes;
    /* the deadline restarts whenever bytes go out: it bounds a stall, not the transfer */
    uint64_t deadline = deadline_of(c->send_timeout_ms > 0 ? c->send_timeout_ms : -1);
    while (left > 0) {
        ssize_t w = writev(c->fd, iov, niov);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                MR_CHECK(send_wait(c, deadline));
                continue;
            }
            return errno == EPIPE || errno == ECONNRESET ? MR_ERR_CLOSED : MR_ERR_IO;
        }
        left -= (size_t)w;
        deadline = deadline_of(c->send_timeout_ms > 0 ? c->send_timeout_ms : -1);
        for (int i = 0; i < niov && w > 0; i++) {
            size_t take = (size_t)w < iov[i].iov_len ? (size_t)w : iov[i].iov_len;
            iov[i].iov_base = (char *)iov[i].iov_base + take;
            iov[i].iov_len -= take;
            w -= (ssize_t)take;
        }
    }
    return MR_OK;
}

/* Reads n bytes: first from the read-ahead buffer, then from the socket. */
static mr_status read_all(mr_xport_conn *c, void *buf, size_t n, uint64_t deadline) {
    char *p = buf;
    const int fd = c->fd;
    if (c->ra_len > c->ra_off && n > 0) {
        size_t take = c->ra_len - c->ra_off < n ? c->ra_len - c->ra_off : n;
        memcpy(p, c->ra + c->ra_off, take);
        c->ra_off += take;
        if (c->ra_off == c->ra_len) c->ra_off = c->ra_len = 0;
        p += take;
        n -= take;
    }
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
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

static mr_status tcp_recv(mr_xport_conn *c, mr_dp_header *h, void *buf, size_t cap,
                          int timeout_ms) {
    /* timeout_ms bounds the wait for a message to start; once its first byte is here, the rest
     * must follow within MR_XPORT_BODY_TIMEOUT_MS or the connection is broken. A timeout before
     * the start consumes nothing, so the caller may simply call again. */
    if (c->ra_len == c->ra_off) MR_CHECK(wait_fd(c->fd, POLLIN, deadline_of(timeout_ms)));
    uint64_t deadline = deadline_of(MR_XPORT_BODY_TIMEOUT_MS);
    mr_status st = read_all(c, h, sizeof *h, deadline);
    if (st != MR_OK) return st == MR_ERR_TIMEOUT ? MR_ERR_PROTO : st;
    if (h->magic != MR_DP_MAGIC || h->version != MR_DP_VERSION) return MR_ERR_PROTO;
    if (h->payload_bytes > cap) return MR_ERR_PROTO;
    if (h->payload_bytes) {
        st = read_all(c, buf, (size_t)h->payload_bytes, deadline);
        if (st != MR_OK) return st == MR_ERR_TIMEOUT ? MR_ERR_PROTO : st;
    }
    return MR_OK;
}

static void tcp_close(mr_xport_conn *c) {
    if (!c) return;
    close(c->fd);
    free(c->ra);
    free(c);
}

static int tcp_buffered(mr_xport_conn *c) {
    return c->ra_len > c->ra_off;
}

static const char *tcp_peer(mr_xport_conn *c) {
    return c->peer;
}

static int tcp_conn_fd(mr_xport_conn *c) {
    return c->fd;
}

const mr_xport_ops mr_xport_tcp_ops = {
    .name = "tcp",
    .label = "tcp",
    .listen = tcp_listen,
    .accept = tcp_accept,
    .listener_close = tcp_listener_close,
    .listener_fd = tcp_listener_fd,
    .connect = tcp_connect,
    .send = tcp_send,
    .recv = tcp_recv,
    .close = tcp_close,
    .conn_fd = tcp_conn_fd,
    .buffered = tcp_buffered,
    .peer = tcp_peer,
};

const mr_xport_ops *mr_xport_find(const char *name) {
    if (strcmp(name, "tcp") == 0) return &mr_xport_tcp_ops;
    if (strcmp(name, "rdma") == 0) return &mr_xport_rdma_ops;
    return NULL;
}
