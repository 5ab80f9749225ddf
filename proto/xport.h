/* xport.h — the data-plane transport interface: an ops table, implemented by tcp and rdma.
 *
 *   const mr_xport_ops *x = mr_xport_find("tcp");
 *   mr_xport_listener *l;  x->listen(&params, "0.0.0.0", 0, &l, &port);   // worker
 *   mr_xport_conn *c;      x->connect(&params, host, port, 5000, &c);      // coordinator
 *   x->send(c, &hdr, payload);  x->recv(c, &hdr, buf, cap, timeout_ms);
 *
 * A connection carries whole messages (header + payload). recv() validates magic, version and the
 * payload size against `cap` before reading the payload; the caller validates the rest with
 * mr_dp_header_check(). Every failure of a connection (peer gone, timeout, protocol violation)
 * is returned as a status for that connection only; the caller closes it. A connection is used
 * by one thread at a time.
 *
 * Zero-copy receive (rdma): a receiver that sets params.region_get gives each new connection a
 * region of its own memory (host memory, or device memory exported as a dmabuf fd); the peer
 * writes payloads straight into it and recv_zc() hands back the header and where the payload
 * lies, until release():
 *
 *   params.region_get = my_get; params.region_put = my_put; params.region_user = pool;
 *   x->listen(&params, ...); x->accept(l, -1, &c);       // my_get(pool, need, &r) ran in accept
 *   mr_xport_msg m;
 *   x->recv_zc(c, &m, timeout_ms);      // m.h checked as by recv(); m.payload in the region
 *   ... use m.payload (device memory when m.in_region and the region is a dmabuf) ...
 *   x->release(c, &m);                  // the slot goes back to the sender as a credit
 *
 * Where the region cannot be registered (a device without dmabuf support, such as Soft-RoCE) the
 * connection falls back to the transport's host slots by itself: recv_zc() then returns payloads
 * with in_region = 0 (host memory), and conn_label() says which way was taken. */
#ifndef MR_XPORT_H
#define MR_XPORT_H

#include <stddef.h>

#include "common/status.h"
#include "proto/dataplane.h"

/* Once a message has started arriving, the rest must arrive within this. */
#define MR_XPORT_BODY_TIMEOUT_MS 5000

typedef struct mr_xport_conn mr_xport_conn;
typedef struct mr_xport_listener mr_xport_listener;

/* Caller memory that receives one connection's payloads (see mr_xport_params.region_get). */
typedef struct mr_xport_region {
    void *base;             /* first byte: host memory, or device memory when dmabuf_fd >= 0; the
                               payload pointers recv_zc() returns are base + offset */
    size_t len;             /* bytes from base that the transport may have written into */
    int dmabuf_fd;          /* -1: host memory (ibv_reg_mr); else a dmabuf fd whose bytes from
                               dmabuf_offset are the memory at base (ibv_reg_dmabuf_mr); the
                               caller keeps it open until region_put */
    uint64_t dmabuf_offset; /* of base within the dmabuf */
    void *cookie;           /* the caller's; handed back to region_put */
} mr_xport_region;

typedef struct mr_xport_params {
    size_t max_message;  /* largest payload either side will send */
    int busy_poll;       /* rdma: spin on the completion queue and, where both sides agree, on
                            the receive slots' memory instead of sleeping on events */
    int busy_cq_only;    /* rdma, with busy_poll: spin on the completion queue alone (never ask
                            for memory-polled messages): the path before them, for comparisons */
    const char *device;  /* rdma: required device name, NULL = whichever the CM resolves (the
                            one that owns the address; port and GID are resolved by the CM too) */
    int send_timeout_ms; /* tcp: a send that makes no progress for this long fails with
                            MR_ERR_TIMEOUT (the peer stopped reading); 0 = wait for ever */
    int sock_buffer;     /* tcp: SO_SNDBUF and SO_RCVBUF of each connection in bytes (set before
                            connect / listen; accepted sockets inherit them); 0 = the kernel's
                            autotuning */
    /* rdma, optional (NULL: host slots only): receive payloads into caller memory. region_get is
     * called once for each new connection (inside accept() or connect(), on that thread) with
     * the bytes the connection needs; it fills *r (r->len >= need, dmabuf_fd preset to -1) and
     * returns 0, or returns non-zero to give that connection none. region_put is called exactly
     * once for every region got, when the transport no longer uses it (deregistered: after a
     * failed registration, a refused connection, or in close()); only then may the caller reuse
     * the memory. A listener offers the region only to peers that can write split messages. */
    int (*region_get)(void *user, size_t need, mr_xport_region *r);
    void (*region_put)(void *user, const mr_xport_region *r);
    void *region_user;
} mr_xport_params;

/* A message received without a copy: see recv_zc. */
typedef struct mr_xport_msg {
    mr_dp_header h;      /* checked as by recv(): magic, version, payload size */
    const void *payload; /* h.payload_bytes bytes; NULL when there are none */
    int in_region;       /* 1: payload lies in this connection's region (device memory when the
                            region is a dmabuf); 0: in the transport's host memory */
    size_t offset;       /* in_region: payload - region.base */
    uint32_t slot;       /* the transport's; identifies the message to release() */
} mr_xport_msg;

typedef struct mr_xport_ops {
    const char *name;
    /* How payloads meet the wire, for `moerack status`, when no connection says more (see
     * conn_label): "tcp", "rdma/host" (registered host slots). */
    const char *label;
    mr_status (*listen)(const mr_xport_params *p, const char *host, int port,
                        mr_xport_listener **out, int *bound_port);
    /* timeout_ms < 0 waits forever; MR_ERR_TIMEOUT when nobody came. */
    mr_status (*accept)(mr_xport_listener *l, int timeout_ms, mr_xport_conn **out);
    void (*listener_close)(mr_xport_listener *l);
    /* fd that becomes readable when accept() would not block, or -1. */
    int (*listener_fd)(mr_xport_listener *l);
    mr_status (*connect)(const mr_xport_params *p, const char *host, int port, int timeout_ms,
                         mr_xport_conn **out);
    mr_status (*send)(mr_xport_conn *c, const mr_dp_header *h, const void *payload);
    /* timeout_ms bounds the wait for a message to start (MR_ERR_TIMEOUT: nothing consumed).
     * On a connection whose payloads land in device memory (rdma/dmabuf) a message with a
     * payload cannot be copied: MR_ERR_INVALID (the message is dropped); use recv_zc there. */
    mr_status (*recv)(mr_xport_conn *c, mr_dp_header *h, void *buf, size_t cap, int timeout_ms);
    void (*close)(mr_xport_conn *c);
    /* fd that becomes readable when a message starts arriving (poll/epoll), or -1. */
    int (*conn_fd)(mr_xport_conn *c);
    /* Optional: nonzero when recv() has something although poll() on conn_fd may not say so:
     * bytes of a message already taken off conn_fd by the transport (tcp reads ahead while a
     * send waits: xport_tcp.c), or (rdma) a message already taken off the completion queue, one
     * written straight into a busy-polled connection's slots (those never make conn_fd
     * readable: a caller with busy_poll must spin on this, not sleep in poll), or a failed
     * connection. Callers that poll must check it first. */
    int (*buffered)(mr_xport_conn *c);
    /* Peer address as "host:port", for logs and status. */
    const char *(*peer)(mr_xport_conn *c);
    /* Optional (NULL in tcp). The next message, like recv(), but its payload stays where it
     * arrived: in the region, or in a host slot. The payload is neither moved nor overwritten
     * until release(c, m): a held message keeps its slot from the sender exactly as an unread
     * one does (the sender blocks, then times out, when every slot is held), so release soon,
     * and before waiting on a send() to the same peer. Messages may be released in any order;
     * credits go back in arrival order. A peer can write into its slots of the region at any
     * time (RDMA); one that writes without a credit is detected and the connection closed, but
     * what it wrote stays: validate payload contents as always. */
    mr_status (*recv_zc)(mr_xport_conn *c, mr_xport_msg *m, int timeout_ms);
    /* Returns a message's slot. MR_ERR_INVALID (logged) for a message not held. */
    mr_status (*release)(mr_xport_conn *c, const mr_xport_msg *m);
    /* Optional (NULL: use label). How payloads land on this connection, for status and logs:
     * remote = 0 for the messages this side receives, 1 for those the peer receives (from its
     * connection offer): "rdma/host", "rdma/host-region", "rdma/dmabuf",
     * "rdma/host-staged (dmabuf: <why the registration failed>)". */
    const char *(*conn_label)(mr_xport_conn *c, int remote);
} mr_xport_ops;

/* "tcp" (always) or "rdma" (when built with verbs); NULL if unknown. */
const mr_xport_ops *mr_xport_find(const char *name);

extern const mr_xport_ops mr_xport_tcp_ops;
extern const mr_xport_ops mr_xport_rdma_ops;

#endif
