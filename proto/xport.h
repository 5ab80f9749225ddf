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
 * by one thread at a time. */
#ifndef MR_XPORT_H
#define MR_XPORT_H

#include <stddef.h>

#include "common/status.h"
#include "proto/dataplane.h"

/* Once a message has started arriving, the rest must arrive within this. */
#define MR_XPORT_BODY_TIMEOUT_MS 5000

typedef struct mr_xport_conn mr_xport_conn;
typedef struct mr_xport_listener mr_xport_listener;

typedef struct mr_xport_params {
    size_t max_message; /* largest payload either side will send */
    int busy_poll;      /* rdma: poll the completion queue instead of sleeping on events */
    const char *device; /* rdma: required device name, NULL = whichever the CM resolves (the
                           one that owns the address; port and GID are resolved by the CM too) */
} mr_xport_params;

typedef struct mr_xport_ops {
    const char *name;
    /* How payloads meet the wire, for `moerack status`: "rdma/host" = registered host slots (GPU
     * workers stage through host memory; dmabuf GPU registration is not built yet). */
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
    /* timeout_ms bounds the wait for a message to start (MR_ERR_TIMEOUT: nothing consumed). */
    mr_status (*recv)(mr_xport_conn *c, mr_dp_header *h, void *buf, size_t cap, int timeout_ms);
    void (*close)(mr_xport_conn *c);
    /* fd that becomes readable when a message starts arriving (poll/epoll), or -1. */
    int (*conn_fd)(mr_xport_conn *c);
    /* Peer address as "host:port", for logs and status. */
    const char *(*peer)(mr_xport_conn *c);
} mr_xport_ops;

/* "tcp" (always) or "rdma" (when built with verbs); NULL if unknown. */
const mr_xport_ops *mr_xport_find(const char *name);

extern const mr_xport_ops mr_xport_tcp_ops;
extern const mr_xport_ops mr_xport_rdma_ops;

#endif
