/* xport_rdma.c — the RDMA implementation of the data-plane transport (libibverbs + librdmacm):
 * its design, and set-up (registration, regions, the connection offer, connect / listen /
 * accept, close); the data path is xport_rdma_io.c, the connection's fields xport_rdma_conn.h.
 *
 * Connection set-up with rdma_cm (RDMA_PS_TCP, RC queue pairs). Each side registers, once, a
 * receive region of RDMA_SLOTS slots and a send staging region of RDMA_SLOTS slots of
 * `tx_slot_size` bytes, and tells the peer where its receive slots are in the CM private data
 * (rdma_pdata.h; it also carries the data-plane version: a mismatch is rejected before any verb
 * runs).
 *
 * A message (40-byte header + payload) is copied into a staging slot and written into the peer's
 * next receive slot with RDMA WRITE_WITH_IMM; the immediate encodes slot (bits 0-3), credits
 * returned (bits 4-7), micro-batch (8-15) and layer (16-30), bit 31 clear. Slots are used round
 * robin and, RC being ordered, consumed in order. A consumed slot is owed back to the sender as a
 * credit: piggybacked on the next message the other way (a reply costs no extra packet), or, once
 * half the slots are owed, returned at once with a zero-byte SEND_WITH_IMM (bit 31 set, low bits =
 * number of slots). A sender writes only while it holds credits, so a slot is never overwritten
 * before the receiver has copied it out; a sender that gets no credit within
 * MR_XPORT_BODY_TIMEOUT_MS reports MR_ERR_TIMEOUT instead of waiting forever. (A sender is out of
 * credits only when at least half the slots hold unconsumed data, which the receiver's next recv()
 * turns into an explicit return; and a sender about to wait for a credit first returns what it
 * owes, so two senders never wait on each other's withheld credits.) The receiver counts the
 * credits it has given (`granted`): a write that arrives without one is a protocol error.
 *
 * Split messages (zero-copy receive). A receiver with params.region_get offers, per connection, a
 * region of its own memory (RDMA_SLOTS slots of `region_slot` bytes; ibv_reg_dmabuf_mr for device
 * memory, ibv_reg_mr for host memory) to a peer that declared it can split; its receive slots
 * then hold only headers (MR_RDMA_HDR_SLOT bytes). The sender writes message i's payload with a
 * plain RDMA WRITE into region slot i, then its header with WRITE_WITH_IMM into header slot i:
 * one chain, the first unsignaled. RC places the WRITE before the WRITE_WITH_IMM completes, so
 * the payload is in place when the header's completion arrives. Region slot i is covered by the
 * same credit as header slot i and comes back only when the caller releases the message, so it
 * is never overwritten while held. When the dmabuf registration fails (EOPNOTSUPP on rxe, which
 * has no dmabuf support) the connection falls back to whole messages in host slots by itself,
 * logs why once per process, and says so in its label.
 *
 * Memory-polled messages (busy_poll). A side that busy-polls and has no region offers MEM_POLL in
 * its private data; a peer that can (MEM_WRITE: every build that knows the flag) then writes each
 * message to it with a plain RDMA WRITE framed by a head word and a trailer (rdma_mem.h), and the
 * receiver spins on its next slot's memory instead of the completion queue: no receive work
 * request, completion or repost per message, as perftest's ib_write_lat. Both sides decide each
 * direction from the two offers (choose_paths); a peer whose offer has no features (an older
 * build) gets and sends immediates as before. Credits piggyback in the word; a zero-byte
 * SEND_WITH_IMM still returns them explicitly, so receive work requests stay posted for those.
 * The receiver zeroes a slot's head word when it releases the slot (before its credit can go
 * back), so a non-zero head word in the next slot is always the next message: a whole one with
 * the wrong sequence number or a header that disagrees is a protocol error at once, one that
 * does not become whole within MR_XPORT_BODY_TIMEOUT_MS of its first sight too. Such messages
 * arrive without waking the completion channel: mr_rdma_buffered() reports them to callers that
 * poll conn_fd.
 *
 * Completions: the CQ is armed on a completion channel, whose fd is the connection's pollable fd;
 * recv() either sleeps on it or, with busy_poll, spins on ibv_poll_cq and the memory-polled slot
 * (yielding the CPU between empty polls). Any failed completion, a queue pair in error, or a CM
 * DISCONNECTED / REJECTED / DEVICE_REMOVAL event marks the connection broken: every later call
 * returns MR_ERR_CLOSED. Hostile input (an immediate naming a slot out of range or out of order,
 * a write without a credit, a length that disagrees with the header, an immediate where memory
 * polling was agreed, a memory-polled message out of sequence, torn or inconsistent) is
 * MR_ERR_PROTO, and stays so for the connection; a write outside the registered slots or region
 * never lands: the device refuses it and the queue pair fails. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <netdb.h>
#include <poll.h>
#include <rdma/rdma_cma.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/arena.h"
#include "common/check.h"
#include "common/log.h"
#include "proto/rdma_mem.h"
#include "proto/rdma_pdata.h"
#include "proto/xport.h"
#include "proto/xport_rdma_conn.h"

struct mr_xport_listener {
    struct rdma_event_channel *ec;
    struct rdma_cm_id *id;
    mr_xport_params p;
};

static size_t max_payload(const mr_xport_params *p) {
    return p->max_message ? p->max_message : (1u << 20);
}

/* A slot holds the largest message whole, with the framing of a memory-polled one (rdma_mem.h). */
static size_t slot_bytes(const mr_xport_params *p) {
    size_t s = sizeof(mr_dp_header) + max_payload(p) + MR_RDMA_MEM_OVERHEAD;
    return (s + 63) & ~(size_t)63;
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

static void conn_free(mr_xport_conn *c) {
    if (!c) return;
    if (c->id && c->id->qp) rdma_destroy_qp(c->id);
    if (c->region_mr) ibv_dereg_mr(c->region_mr);
    if (c->have_region && c->region_put) c->region_put(c->region_user, &c->region);
    if (c->rx_mr) ibv_dereg_mr(c->rx_mr);
    if (c->tx_mr) ibv_dereg_mr(c->tx_mr);
    if (c->dummy_mr) ibv_dereg_mr(c->dummy_mr);
    if (c->cq) ibv_destroy_cq(c->cq);
    if (c->scq) ibv_destroy_cq(c->scq);
    if (c->cc) ibv_destroy_comp_channel(c->cc);
    if (c->pd) ibv_dealloc_pd(c->pd);
    if (c->id) rdma_destroy_id(c->id);
    if (c->ec) rdma_destroy_event_channel(c->ec);
    mr_free_aligned(c->rx);
    mr_free_aligned(c->tx);
    free(c);
}

/* Set once the first failed dmabuf registration was logged: later ones log at debug level. */
static atomic_int dmabuf_warned;

/* Asks the caller for a region for this connection and registers it. Leaves have_region = 0 and
 * the host slots in charge (rx_mode says why) when none is given or it cannot be registered. */
static void take_region(mr_xport_conn *c, const mr_xport_params *p) {
    const size_t slot = (max_payload(p) + REGION_ALIGN - 1) & ~(size_t)(REGION_ALIGN - 1);
    const size_t need = (size_t)RDMA_SLOTS * slot;
    if (slot > MR_RDMA_REGION_SLOT_MAX) {
        MR_LOG_WARN(MR_LOG_NET, "rdma %s: %zu-byte payloads exceed a region slot; host slots",
                    c->peer, slot);
        return;
    }
    mr_xport_region r = {.dmabuf_fd = -1};
    if (p->region_get(p->region_user, need, &r) != 0) {
        MR_LOG_INFO(MR_LOG_NET, "rdma %s: no receive region left for this connection; host slots",
                    c->peer);
        return;
    }
    if (!r.base || r.len < need) {
        MR_LOG_ERROR(MR_LOG_NET,
                     "rdma %s: a region of %zu bytes was given, %zu are needed; host "
                     "slots",
                     c->peer, r.base ? r.len : 0, need);
        if (p->region_put) p->region_put(p->region_user, &r);
        return;
    }
    const int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
    if (r.dmabuf_fd >= 0) {
        errno = 0;
        c->region_mr =
            ibv_reg_dmabuf_mr(c->pd, r.dmabuf_offset, need, (uintptr_t)r.base, r.dmabuf_fd, access);
        if (!c->region_mr) {
            const int e = errno ? errno : EOPNOTSUPP;
            char eb[96];
            const char *why = strerror_r(e, eb, sizeof eb);
            if (atomic_exchange(&dmabuf_warned, 1) == 0)
                MR_LOG_WARN(MR_LOG_NET,
                            "rdma %s: device %s cannot register the %zu-byte dmabuf region (%s); "
                            "payloads go through registered host slots (host staging)",
                            c->peer, ibv_get_device_name(c->pd->context->device), need, why);
            else
                MR_LOG_DEBUG(MR_LOG_NET, "rdma %s: dmabuf region not registered (%s); host slots",
                             c->peer, why);
            c->rx_mode = MR_RDMA_RX_STAGED;
            c->rx_reason = (uint32_t)(e > 0 && e <= 4095 ? e : EOPNOTSUPP);
            if (p->region_put) p->region_put(p->region_user, &r);
            return;
        }
        c->rx_mode = MR_RDMA_RX_REGION_DMABUF;
    } else {
        c->region_mr = ibv_reg_mr(c->pd, r.base, need, access);
        if (!c->region_mr) {
            MR_LOG_ERROR(MR_LOG_NET, "rdma %s: cannot register the %zu-byte region: %s; host slots",
                         c->peer, need, strerror(errno));
            if (p->region_put) p->region_put(p->region_user, &r);
            return;
        }
        c->rx_mode = MR_RDMA_RX_REGION_HOST;
    }
    c->have_region = 1;
    c->region = r;
    c->region_slot = slot;
    c->region_put = p->region_put;
    c->region_user = p->region_user;
}

/* PD, completion channel, CQ, QP and the registered slots on the id's device; a region too when
 * offer_region and the caller gives one. */
static mr_status setup_resources(mr_xport_conn *c, const mr_xport_params *p, int offer_region) {
    const size_t slot_size = slot_bytes(p);
    c->tx_slot_size = c->rx_slot_size = slot_size;
    c->granted = RDMA_SLOTS;
    struct ibv_context *ctx = c->id->verbs;
    if (!ctx) return MR_ERR_IO;
    if (!(c->pd = ibv_alloc_pd(ctx)) || !(c->cc = ibv_create_comp_channel(ctx)) ||
        !(c->cq = ibv_create_cq(ctx, 2 * RDMA_RECV_WRS, NULL, c->cc, 0)) ||
        !(c->scq = ibv_create_cq(ctx, 4 * RDMA_SLOTS + 16, NULL, c->cc, 0))) {
        MR_LOG_ERROR(MR_LOG_NET, "rdma: cannot create PD/CQ on %s: %s",
                     ibv_get_device_name(ctx->device), strerror(errno));
        return MR_ERR_IO;
    }
    fcntl(c->cc->fd, F_SETFL, fcntl(c->cc->fd, F_GETFL) | O_NONBLOCK);
    struct ibv_qp_init_attr qa = {0};
    qa.send_cq = c->scq;
    qa.recv_cq = c->cq;
    qa.qp_type = IBV_QPT_RC;
    qa.cap.max_send_wr = 4 * RDMA_SLOTS + 8; /* a split message is two work requests */
    qa.cap.max_recv_wr = RDMA_RECV_WRS;
    qa.cap.max_send_sge = 3; /* inline memory-polled message: head + header, payload, trailer */
    qa.cap.max_recv_sge = 1;
    qa.cap.max_inline_data = RDMA_INLINE;
    if (rdma_create_qp(c->id, c->pd, &qa)) { /* a device without inline data: try without */
        qa.cap.max_inline_data = 0;
        if (rdma_create_qp(c->id, c->pd, &qa)) qa.cap.max_send_wr = 0;
    }
    c->max_inline = qa.cap.max_inline_data;
    if (qa.cap.max_send_wr == 0) {
        MR_LOG_ERROR(MR_LOG_NET, "rdma: cannot create the queue pair: %s", strerror(errno));
        return MR_ERR_IO;
    }
    if (slot_size > UINT32_MAX) {
        MR_LOG_ERROR(MR_LOG_NET, "rdma: %zu-byte slots exceed the 4 GiB the private data can name",
                     slot_size);
        return MR_ERR_INVALID;
    }
    if (offer_region && p->region_get) take_region(c, p);
    if (c->have_region) c->rx_slot_size = MR_RDMA_HDR_SLOT;
    const size_t rx_bytes = (size_t)RDMA_SLOTS * c->rx_slot_size;
    const size_t tx_bytes = (size_t)RDMA_SLOTS * c->tx_slot_size;
    char lab[96];
    MR_LOG_INFO(
        MR_LOG_NET,
        "rdma %s: registering %.1f MB (%d receive slots of %zu B, %d send slots of %zu B)%s%s",
        c->peer, (double)(rx_bytes + tx_bytes) / 1e6, RDMA_SLOTS, c->rx_slot_size, RDMA_SLOTS,
        c->tx_slot_size, c->have_region ? "; payloads land in " : "",
        c->have_region ? mr_rdma_mode_label(c->rx_mode, 0, lab, sizeof lab) : "");
    if (!(c->rx = mr_alloc_aligned(rx_bytes)) || !(c->tx = mr_alloc_aligned(tx_bytes)))
        return MR_ERR_NOMEM;
    memset(c->rx, 0, rx_bytes);
    c->rx_mr = ibv_reg_mr(c->pd, c->rx, rx_bytes, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
    c->tx_mr = ibv_reg_mr(c->pd, c->tx, tx_bytes, IBV_ACCESS_LOCAL_WRITE);
    c->dummy_mr = ibv_reg_mr(c->pd, &c->dummy, 1, IBV_ACCESS_LOCAL_WRITE);
    if (!c->rx_mr || !c->tx_mr || !c->dummy_mr) {
        MR_LOG_ERROR(MR_LOG_NET, "rdma: cannot register %zu bytes of slots: %s",
                     rx_bytes + tx_bytes, strerror(errno));
        return MR_ERR_IO;
    }
    mr_rdma_mode_label(c->rx_mode, c->rx_reason, c->label, sizeof c->label);
    for (int i = 0; i < RDMA_RECV_WRS; i++) MR_CHECK(mr_rdma_post_recv(c));
    ibv_req_notify_cq(c->cq, 0);
    return MR_OK;
}

static void fill_pdata(const mr_xport_conn *c, mr_rdma_pdata *pd) {
    memset(pd, 0, sizeof *pd);
    pd->magic = MR_RDMA_PD_MAGIC;
    pd->version = MR_DP_VERSION;
    pd->slots = RDMA_SLOTS;
    pd->slot_size = (uint32_t)c->rx_slot_size;
    pd->rkey = c->rx_mr->rkey;
    pd->addr = (uintptr_t)c->rx;
    pd->flags = MR_RDMA_PD_CAN_SPLIT | (c->have_region ? MR_RDMA_PD_REGION : 0);
    /* memory polling for what we receive: only when we spin anyway, and only for whole messages
     * (split ones complete with an immediate) */
    pd->features =
        MR_RDMA_PD_MEM_WRITE | (c->offer_mem_poll && !c->have_region ? MR_RDMA_PD_MEM_POLL : 0);
    pd->mode = (uint8_t)c->rx_mode;
    pd->reason = c->rx_reason;
    if (c->have_region) {
        pd->region_addr = (uintptr_t)c->region.base;
        pd->region_rkey = c->region_mr->rkey;
        pd->region_slot_size = (uint32_t)c->region_slot;
    }
}

/* Validates the peer's private data; logs why not. */
static mr_status take_pdata(mr_xport_conn *c, const void *data, uint8_t len) {
    mr_rdma_pdata pd;
    char why[256];
    if (mr_rdma_pdata_parse(data, len, &pd, why, sizeof why) != MR_OK) {
        MR_LOG_ERROR(MR_LOG_NET, "rdma %s: %s; refused", c->peer, why);
        return MR_ERR_PROTO;
    }
    c->r_addr = pd.addr;
    c->r_rkey = pd.rkey;
    c->r_slots = pd.slots < RDMA_SLOTS ? pd.slots : RDMA_SLOTS;
    c->r_slot_size = pd.slot_size;
    c->credits = (int)c->r_slots;
    c->r_can_split = (pd.flags & MR_RDMA_PD_CAN_SPLIT) != 0;
    c->r_split = (pd.flags & MR_RDMA_PD_REGION) != 0;
    c->r_region_addr = pd.region_addr;
    c->r_region_rkey = pd.region_rkey;
    c->r_region_slot = pd.region_slot_size;
    c->r_features = pd.features;
    mr_rdma_mode_label(pd.mode, pd.reason, c->peer_label, sizeof c->peer_label);
    return MR_OK;
}

/* How each direction's messages go, from our offer and the peer's (the peer computes the same):
 * as memory-polled writes to a side that offered MEM_POLL from one that offered MEM_WRITE,
 * else with WRITE_WITH_IMM. */
static void choose_paths(mr_xport_conn *c, const mr_rdma_pdata *mine) {
    c->mem_rx = (mine->features & MR_RDMA_PD_MEM_POLL) && (c->r_features & MR_RDMA_PD_MEM_WRITE);
    c->mem_tx = (c->r_features & MR_RDMA_PD_MEM_POLL) && (mine->features & MR_RDMA_PD_MEM_WRITE);
    if (c->mem_rx || c->mem_tx)
        MR_LOG_INFO(MR_LOG_NET, "rdma %s: memory-polled messages %s", c->peer,
                    c->mem_rx && c->mem_tx ? "both ways"
                    : c->mem_rx            ? "to this side (immediates to the peer)"
                                           : "to the peer (immediates to this side)");
}

/* Waits for one CM event of type `want` on the channel (others are errors). */
static mr_status wait_cm(struct rdma_event_channel *ec, enum rdma_cm_event_type want,
                         int timeout_ms, struct rdma_cm_event **out, const char *peer) {
    struct pollfd p = {ec->fd, POLLIN, 0};
    int rc = poll(&p, 1, timeout_ms);
    if (rc == 0) return MR_ERR_TIMEOUT;
    if (rc < 0) return MR_ERR_IO;
    struct rdma_cm_event *ev;
    if (rdma_get_cm_event(ec, &ev)) return MR_ERR_IO;
    if (ev->event != want) {
        MR_LOG_WARN(MR_LOG_NET, "rdma %s: expected %s, got %s (status %d)", peer,
                    rdma_event_str(want), rdma_event_str(ev->event), ev->status);
        mr_status st = ev->event == RDMA_CM_EVENT_REJECTED ? MR_ERR_CLOSED : MR_ERR_IO;
        rdma_ack_cm_event(ev);
        return st;
    }
    *out = ev;
    return MR_OK;
}

static mr_status resolve_host(const char *host, int port, struct sockaddr_storage *ss) {
    struct addrinfo hints = {0}, *ai;
    hints.ai_family = AF_INET;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    if (getaddrinfo(host, ps, &hints, &ai) != 0) {
        MR_LOG_ERROR(MR_LOG_NET, "rdma: cannot resolve '%s'", host);
        return MR_ERR_INVALID;
    }
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    return MR_OK;
}

/* ---- connect / listen / accept --------------------------------------------------------------- */

static mr_status rdma_connect_op(const mr_xport_params *p, const char *host, int port,
                                 int timeout_ms, mr_xport_conn **out) {
    mr_xport_conn *c = calloc(1, sizeof *c);
    if (!c) return MR_ERR_NOMEM;
    c->busy_poll = p->busy_poll;
    c->offer_mem_poll = p->busy_poll && !p->busy_cq_only;
    snprintf(c->peer, sizeof c->peer, "%s:%d", host, port);
    struct sockaddr_storage ss;
    mr_status st = resolve_host(host, port, &ss);
    struct rdma_cm_event *ev = NULL;
    if (st != MR_OK) goto err;
    st = MR_ERR_IO;
    if (!(c->ec = rdma_create_event_channel()) || rdma_create_id(c->ec, &c->id, c, RDMA_PS_TCP)) {
        MR_LOG_ERROR(MR_LOG_NET, "rdma: no RDMA device or rdma_cm unavailable: %s",
                     strerror(errno));
        goto err;
    }
    if (rdma_resolve_addr(c->id, NULL, (struct sockaddr *)&ss, RESOLVE_MS) ||
        (st = wait_cm(c->ec, RDMA_CM_EVENT_ADDR_RESOLVED, timeout_ms, &ev, c->peer)) != MR_OK)
        goto err;
    rdma_ack_cm_event(ev);
    if (rdma_resolve_route(c->id, RESOLVE_MS) ||
        (st = wait_cm(c->ec, RDMA_CM_EVENT_ROUTE_RESOLVED, timeout_ms, &ev, c->peer)) != MR_OK)
        goto err;
    rdma_ack_cm_event(ev);
    if (p->device && strcmp(p->device, ibv_get_device_name(c->id->verbs->device)) != 0) {
        MR_LOG_ERROR(MR_LOG_NET, "rdma: %s routes through device %s, not the configured %s",
                     c->peer, ibv_get_device_name(c->id->verbs->device), p->device);
        st = MR_ERR_INVALID;
        goto err;
    }
    if ((st = setup_resources(c, p, 1)) != MR_OK) goto err;
    mr_rdma_pdata pd;
    fill_pdata(c, &pd);
    struct rdma_conn_param cp = {0};
    cp.private_data = &pd;
    cp.private_data_len = sizeof pd;
    cp.responder_resources = cp.initiator_depth = 1;
    cp.retry_count = 7;
    cp.rnr_retry_count = 7;
    if (rdma_connect(c->id, &cp)) {
        st = MR_ERR_IO;
        goto err;
    }
    if ((st = wait_cm(c->ec, RDMA_CM_EVENT_ESTABLISHED, timeout_ms, &ev, c->peer)) != MR_OK)
        goto err;
    st = take_pdata(c, ev->param.conn.private_data, ev->param.conn.private_data_len);
    rdma_ack_cm_event(ev);
    if (st == MR_OK) choose_paths(c, &pd);
    if (st == MR_OK && c->have_region && !c->r_can_split) {
        MR_LOG_ERROR(MR_LOG_NET,
                     "rdma %s: the peer cannot write split messages into the region offered to it "
                     "(an older build?); closing",
                     c->peer);
        st = MR_ERR_PROTO;
    }
    if (st != MR_OK) {
        rdma_disconnect(c->id);
        goto err;
    }
    fcntl(c->ec->fd, F_SETFL, fcntl(c->ec->fd, F_GETFL) | O_NONBLOCK);
    *out = c;
    return MR_OK;
err:
    conn_free(c);
    return st;
}

static mr_status rdma_listen_op(const mr_xport_params *p, const char *host, int port,
                                mr_xport_listener **out, int *bound_port) {
    mr_xport_listener *l = calloc(1, sizeof *l);
    if (!l) return MR_ERR_NOMEM;
    l->p = *p;
    struct sockaddr_storage ss;
    mr_status st = resolve_host(host, port, &ss);
    if (st != MR_OK) goto err;
    if (!(l->ec = rdma_create_event_channel()) || rdma_create_id(l->ec, &l->id, l, RDMA_PS_TCP) ||
        rdma_bind_addr(l->id, (struct sockaddr *)&ss) || rdma_listen(l->id, 16)) {
        MR_LOG_ERROR(MR_LOG_NET, "rdma: cannot listen on %s:%d: %s", host, port, strerror(errno));
        st = MR_ERR_IO;
        goto err;
    }
    fcntl(l->ec->fd, F_SETFL, fcntl(l->ec->fd, F_GETFL) | O_NONBLOCK);
    if (bound_port) *bound_port = ntohs(rdma_get_src_port(l->id));
    *out = l;
    return MR_OK;
err:
    if (l->id) rdma_destroy_id(l->id);
    if (l->ec) rdma_destroy_event_channel(l->ec);
    free(l);
    return st;
}

static mr_status rdma_accept_op(mr_xport_listener *l, int timeout_ms, mr_xport_conn **out) {
    struct rdma_cm_event *ev;
    for (;;) {
        struct pollfd p = {l->ec->fd, POLLIN, 0};
        int rc = poll(&p, 1, timeout_ms);
        if (rc == 0) return MR_ERR_TIMEOUT;
        if (rc < 0) return MR_ERR_IO;
        if (rdma_get_cm_event(l->ec, &ev)) return errno == EAGAIN ? MR_ERR_TIMEOUT : MR_ERR_IO;
        if (ev->event == RDMA_CM_EVENT_CONNECT_REQUEST) break;
        rdma_ack_cm_event(ev); /* e.g. the established/disconnected events of migrated ids */
    }
    mr_xport_conn *c = calloc(1, sizeof *c);
    struct rdma_cm_id *id = ev->id;
    if (!c) {
        rdma_reject(id, NULL, 0);
        rdma_ack_cm_event(ev);
        return MR_ERR_NOMEM;
    }
    c->busy_poll = l->p.busy_poll;
    c->offer_mem_poll = l->p.busy_poll && !l->p.busy_cq_only;
    struct sockaddr *sa = rdma_get_peer_addr(id);
    char host[64] = "?";
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, host, sizeof host);
    snprintf(c->peer, sizeof c->peer, "%s:%d", host, ntohs(rdma_get_dst_port(id)));
    mr_status st = take_pdata(c, ev->param.conn.private_data, ev->param.conn.private_data_len);
    rdma_ack_cm_event(ev);
    if (st != MR_OK) {
        const char reason[] = "moerack: connection offer not accepted (version, slots or region)";
        rdma_reject(id, reason, sizeof reason);
        rdma_destroy_id(id);
        free(c);
        return st;
    }
    /* give the connection its own event channel, so its events never reach the listener */
    if (!(c->ec = rdma_create_event_channel()) || rdma_migrate_id(id, c->ec)) {
        rdma_reject(id, NULL, 0);
        rdma_destroy_id(id);
        conn_free(c);
        return MR_ERR_IO;
    }
    c->id = id;
    if (l->p.device && strcmp(l->p.device, ibv_get_device_name(id->verbs->device)) != 0) {
        MR_LOG_ERROR(MR_LOG_NET, "rdma: %s arrived on device %s, not the configured %s", c->peer,
                     ibv_get_device_name(id->verbs->device), l->p.device);
        rdma_reject(id, NULL, 0);
        conn_free(c);
        return MR_ERR_INVALID;
    }
    if ((st = setup_resources(c, &l->p, c->r_can_split)) != MR_OK) {
        rdma_reject(id, NULL, 0);
        conn_free(c);
        return st;
    }
    mr_rdma_pdata pd;
    fill_pdata(c, &pd);
    choose_paths(c, &pd);
    struct rdma_conn_param cp = {0};
    cp.private_data = &pd;
    cp.private_data_len = sizeof pd;
    cp.responder_resources = cp.initiator_depth = 1;
    cp.rnr_retry_count = 7;
    if (rdma_accept(id, &cp) ||
        (st = wait_cm(c->ec, RDMA_CM_EVENT_ESTABLISHED, 5000, &ev, c->peer)) != MR_OK) {
        conn_free(c);
        return st != MR_OK ? st : MR_ERR_IO;
    }
    rdma_ack_cm_event(ev);
    fcntl(c->ec->fd, F_SETFL, fcntl(c->ec->fd, F_GETFL) | O_NONBLOCK);
    *out = c;
    return MR_OK;
}

static void rdma_listener_close(mr_xport_listener *l) {
    if (!l) return;
    rdma_destroy_id(l->id);
    rdma_destroy_event_channel(l->ec);
    free(l);
}

static int rdma_listener_fd(mr_xport_listener *l) {
    return l->ec->fd;
}

static const char *rdma_conn_label(mr_xport_conn *c, int remote) {
    return remote ? c->peer_label : c->label;
}

static void rdma_close_op(mr_xport_conn *c) {
    if (!c) return;
    if (c->id && !c->broken) rdma_disconnect(c->id);
    conn_free(c);
}

static int rdma_conn_fd(mr_xport_conn *c) {
    ibv_req_notify_cq(c->cq, 0);
    return c->cc->fd;
}

static const char *rdma_peer(mr_xport_conn *c) {
    return c->peer;
}

const mr_xport_ops mr_xport_rdma_ops = {
    .name = "rdma",
    .label = "rdma/host",
    .listen = rdma_listen_op,
    .accept = rdma_accept_op,
    .listener_close = rdma_listener_close,
    .listener_fd = rdma_listener_fd,
    .connect = rdma_connect_op,
    .send = mr_rdma_send,
    .recv = mr_rdma_recv,
    .close = rdma_close_op,
    .conn_fd = rdma_conn_fd,
    .buffered = mr_rdma_buffered,
    .peer = rdma_peer,
    .recv_zc = mr_rdma_recv_zc,
    .release = mr_rdma_release,
    .conn_label = rdma_conn_label,
};
