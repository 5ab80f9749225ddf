/* xport_rdma.c — the RDMA implementation of the data-plane transport (libibverbs + librdmacm).
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
 * arrive without waking the completion channel: rdma_buffered() reports them to callers that
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
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/arena.h"
#include "common/check.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "proto/rdma_mem.h"
#include "proto/rdma_pdata.h"
#include "proto/xport.h"

#define RDMA_SLOTS    4 /* at most 16: the immediate has 4 bits for a slot and for credits */
#define RDMA_RECV_WRS (4 * RDMA_SLOTS)
#define IMM_CREDIT    0x80000000u
#define RESOLVE_MS    5000
#define RDMA_INLINE   256   /* messages up to this go inline: no staging copy, no DMA read */
#define WR_INLINE     0x100 /* wr_id flag: a write that holds no staging slot */
#define REGION_ALIGN  4096  /* region slots start on page boundaries */

/* One connection. Used by one thread at a time (xport.h). */
struct mr_xport_conn {
    struct rdma_event_channel *ec;
    struct rdma_cm_id *id;
    struct ibv_pd *pd;
    struct ibv_comp_channel *cc;
    struct ibv_cq *cq;  /* receive completions: armed whenever we sleep */
    struct ibv_cq *scq; /* send completions: armed only while waiting for a staging slot, so a
                           finished write never wakes a thread that waits for data */
    int busy_poll;
    uint32_t max_inline; /* bytes the send queue takes inline (0: none) */
    size_t rx_slot_size; /* receive slot: header + largest payload, or MR_RDMA_HDR_SLOT (region) */
    size_t tx_slot_size; /* staging slot: header + largest payload */
    uint8_t *rx, *tx;    /* [RDMA_SLOTS][rx_slot_size], [RDMA_SLOTS][tx_slot_size] */
    struct ibv_mr *rx_mr, *tx_mr;
    uint8_t dummy; /* target of zero-length receives */
    struct ibv_mr *dummy_mr;
    /* this side's region (when have_region): payload of the message in slot i at
     * region.base + i * region_slot; given by params.region_get, handed back by region_put */
    int have_region;
    mr_xport_region region;
    struct ibv_mr *region_mr;
    size_t region_slot;
    void (*region_put)(void *user, const mr_xport_region *r);
    void *region_user;
    int rx_mode;        /* mr_rdma_rx_mode of this side */
    uint32_t rx_reason; /* rx_mode STAGED: errno of the failed dmabuf registration */
    /* remote receive slots; with r_split the peer's region, which takes every payload */
    uint64_t r_addr;
    uint32_t r_rkey, r_slots, r_slot_size;
    int r_can_split, r_split;
    uint64_t r_region_addr;
    uint32_t r_region_rkey, r_region_slot;
    uint32_t tx_next;        /* next remote slot to write */
    int credits;             /* remote slots known to be free */
    int owed;                /* slots released here, not yet returned to the peer */
    int tx_busy[RDMA_SLOTS]; /* staging slot's WRITE not yet completed */
    /* received data, in arrival order, not yet taken by recv() / recv_zc() */
    int ready[RDMA_SLOTS];
    uint32_t ready_len[RDMA_SLOTS], ready_imm[RDMA_SLOTS];
    int n_ready, ready_head;
    uint32_t rx_next;         /* slot the next data write must use */
    int granted;              /* slots the peer may write: credits given minus arrivals */
    int held[RDMA_SLOTS];     /* taken by the caller, not yet released */
    int released[RDMA_SLOTS]; /* released, its credit waiting for an older held slot */
    uint32_t rel_next;        /* oldest arrived slot whose credit is not yet owed */
    uint64_t cm_checked_ns;   /* busy poll: last look at the CM event channel */
    /* memory-polled messages (rdma_mem.h), per direction, fixed at connection set-up */
    uint32_t r_features;  /* the peer's offer: MR_RDMA_PD_MEM_WRITE, MR_RDMA_PD_MEM_POLL */
    int mem_rx, mem_tx;   /* data to us / to the peer as memory-polled writes, not immediates */
    uint16_t rx_seq;      /* mem_rx: sequence number of the next message (slot rx_next) */
    uint16_t tx_seq;      /* mem_tx: of the next message we write */
    uint64_t mem_seen_ns; /* mem_rx: when slot rx_next was first seen begun, not whole (0: not) */
    mr_status failed;     /* a protocol error seen: every later call returns it */
    int broken;
    char peer[96];
    char label[96], peer_label[96]; /* how payloads land here / at the peer (conn_label) */
};

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

static mr_status post_recv(mr_xport_conn *c) {
    struct ibv_sge sge = {(uintptr_t)&c->dummy, 0, c->dummy_mr->lkey};
    struct ibv_recv_wr wr = {.wr_id = 1, .sg_list = &sge, .num_sge = 1}, *bad;
    return ibv_post_recv(c->id->qp, &wr, &bad) ? MR_ERR_IO : MR_OK;
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
    for (int i = 0; i < RDMA_RECV_WRS; i++) MR_CHECK(post_recv(c));
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
        MR_RDMA_PD_MEM_WRITE | (c->busy_poll && !c->have_region ? MR_RDMA_PD_MEM_POLL : 0);
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

/* ---- progress -------------------------------------------------------------------------------- */

/* Marks the connection broken (once, with a log line). */
static mr_status broken(mr_xport_conn *c, const char *why) {
    if (!c->broken) MR_LOG_WARN(MR_LOG_NET, "rdma %s: connection lost: %s", c->peer, why);
    c->broken = 1;
    return MR_ERR_CLOSED;
}

/* Handles pending CM events (disconnects). */
static mr_status check_cm(mr_xport_conn *c) {
    struct rdma_cm_event *ev;
    while (rdma_get_cm_event(c->ec, &ev) == 0) {
        enum rdma_cm_event_type t = ev->event;
        rdma_ack_cm_event(ev);
        if (t == RDMA_CM_EVENT_DISCONNECTED || t == RDMA_CM_EVENT_DEVICE_REMOVAL ||
            t == RDMA_CM_EVENT_REJECTED || t == RDMA_CM_EVENT_TIMEWAIT_EXIT)
            return broken(c, rdma_event_str(t));
    }
    return c->broken ? MR_ERR_CLOSED : MR_OK;
}

/* Reaps completions: data arrivals are queued, credits counted, send completions free staging
 * slots. Returns MR_ERR_PROTO for hostile immediates, MR_ERR_CLOSED on any failed completion. */
static mr_status drain_cq(mr_xport_conn *c) {
    struct ibv_wc wc[16];
    int n;
    while ((n = ibv_poll_cq(c->scq, 16, wc)) > 0 || (n = ibv_poll_cq(c->cq, 16, wc)) > 0) {
        for (int i = 0; i < n; i++) {
            if (wc[i].status != IBV_WC_SUCCESS) return broken(c, ibv_wc_status_str(wc[i].status));
            if (wc[i].opcode == IBV_WC_RDMA_WRITE) {
                if (!(wc[i].wr_id & WR_INLINE)) c->tx_busy[wc[i].wr_id % RDMA_SLOTS] = 0;
                continue;
            }
            if (wc[i].opcode == IBV_WC_SEND) continue;
            if (!(wc[i].wc_flags & IBV_WC_WITH_IMM)) return MR_ERR_PROTO;
            uint32_t imm = ntohl(wc[i].imm_data);
            if (post_recv(c) != MR_OK) return broken(c, "cannot repost a receive");
            if (wc[i].opcode == IBV_WC_RECV && (imm & IMM_CREDIT)) {
                uint32_t k = imm & 0xffu;
                if (k == 0 || c->credits + (int)k > (int)c->r_slots) {
                    MR_LOG_ERROR(MR_LOG_NET,
                                 "rdma %s: protocol error: %u credits returned, %d outstanding",
                                 c->peer, k, (int)c->r_slots - c->credits);
                    return MR_ERR_PROTO;
                }
                c->credits += (int)k;
                continue;
            }
            if (wc[i].opcode != IBV_WC_RECV_RDMA_WITH_IMM || (imm & IMM_CREDIT))
                return MR_ERR_PROTO;
            if (c->mem_rx) {
                MR_LOG_ERROR(MR_LOG_NET,
                             "rdma %s: protocol error: a write with an immediate where "
                             "memory-polled messages were agreed",
                             c->peer);
                return MR_ERR_PROTO;
            }
            uint32_t slot = imm & 0xfu, k = (imm >> 4) & 0xfu;
            if (c->granted <= 0) { /* the slot (and its region slot) may still be in use */
                MR_LOG_ERROR(MR_LOG_NET,
                             "rdma %s: protocol error: data in slot %u without a credit (the slot "
                             "was not released)",
                             c->peer, slot);
                return MR_ERR_PROTO;
            }
            if (slot >= RDMA_SLOTS || slot != c->rx_next || c->n_ready == RDMA_SLOTS) {
                MR_LOG_ERROR(MR_LOG_NET,
                             "rdma %s: protocol error: data in slot %u, expected slot %u", c->peer,
                             slot, c->rx_next);
                return MR_ERR_PROTO;
            }
            c->granted--;
            if (c->credits + (int)k > (int)c->r_slots) {
                MR_LOG_ERROR(MR_LOG_NET,
                             "rdma %s: protocol error: %u credits returned, %d outstanding",
                             c->peer, k, (int)c->r_slots - c->credits);
                return MR_ERR_PROTO;
            }
            c->credits += (int)k;
            c->rx_next = (c->rx_next + 1) % RDMA_SLOTS;
            int q = (c->ready_head + c->n_ready) % RDMA_SLOTS;
            c->ready[q] = (int)slot;
            c->ready_len[q] = wc[i].byte_len;
            c->ready_imm[q] = imm;
            c->n_ready++;
        }
    }
    return n < 0 ? broken(c, "ibv_poll_cq failed") : MR_OK;
}

/* mem_rx: takes every message that has landed whole in the next slots, in order, and queues it
 * as drain_cq queues a WRITE_WITH_IMM (rdma_mem.h has the framing and its checks). */
static mr_status mem_poll(mr_xport_conn *c) {
    while (c->n_ready < RDMA_SLOTS) {
        const uint32_t slot = c->rx_next;
        const uint8_t *base = c->rx + (size_t)slot * c->rx_slot_size;
        mr_rdma_mem_msg m;
        const mr_rdma_mem_state s = mr_rdma_mem_poll(base, c->rx_slot_size, c->rx_seq, &m);
        if (c->granted <= 0) { /* the slot may still hold a message the caller has not released */
            if (!mr_rdma_mem_is_seq(m.word, c->rx_seq)) return MR_OK;
            MR_LOG_ERROR(MR_LOG_NET,
                         "rdma %s: protocol error: message %u in slot %u without a credit (the "
                         "slot was not released)",
                         c->peer, c->rx_seq, slot);
            return MR_ERR_PROTO;
        }
        if (s == MR_RDMA_MEM_EMPTY) return MR_OK;
        if (s == MR_RDMA_MEM_ARRIVING) { /* landing, or never will: bounded like a TCP body */
            const uint64_t now = mr_now_ns();
            if (!c->mem_seen_ns) c->mem_seen_ns = now;
            if (now - c->mem_seen_ns <= (uint64_t)MR_XPORT_BODY_TIMEOUT_MS * 1000000) return MR_OK;
            MR_LOG_ERROR(MR_LOG_NET,
                         "rdma %s: protocol error: slot %u holds head word 0x%016llx, and no "
                         "trailer matched it within %d ms (message %u expected)",
                         c->peer, slot, (unsigned long long)m.word, MR_XPORT_BODY_TIMEOUT_MS,
                         c->rx_seq);
            return MR_ERR_PROTO;
        }
        if (s == MR_RDMA_MEM_BAD) {
            MR_LOG_ERROR(MR_LOG_NET,
                         "rdma %s: protocol error: slot %u holds a whole message (head word "
                         "0x%016llx) that is not message %u or whose header disagrees (magic, "
                         "version or length)",
                         c->peer, slot, (unsigned long long)m.word, c->rx_seq);
            return MR_ERR_PROTO;
        }
        if (c->credits + (int)m.credits > (int)c->r_slots) {
            MR_LOG_ERROR(MR_LOG_NET, "rdma %s: protocol error: %u credits returned, %d outstanding",
                         c->peer, m.credits, (int)c->r_slots - c->credits);
            return MR_ERR_PROTO;
        }
        c->credits += (int)m.credits;
        c->granted--;
        c->mem_seen_ns = 0;
        c->rx_seq++;
        c->rx_next = (c->rx_next + 1) % RDMA_SLOTS;
        const int q = (c->ready_head + c->n_ready) % RDMA_SLOTS;
        c->ready[q] = (int)slot;
        c->ready_len[q] = m.msg_bytes;
        c->ready_imm[q] = 0;
        c->n_ready++;
    }
    return MR_OK;
}

/* One look at everything that can arrive: completions, then (mem_rx) the next slots. A protocol
 * error sticks: the caller closes the connection, and until then no call goes past it. */
static mr_status progress_once(mr_xport_conn *c) {
    if (c->failed) return c->failed;
    mr_status st = drain_cq(c);
    if (st == MR_OK && c->mem_rx) st = mem_poll(c);
    if (st == MR_ERR_PROTO) c->failed = st;
    return st;
}

/* Busy poll: CM events (a disconnect) at most once a millisecond. */
static mr_status check_cm_busy(mr_xport_conn *c, uint64_t now) {
    if (now - c->cm_checked_ns <= 1000000) return MR_OK;
    c->cm_checked_ns = now;
    return check_cm(c);
}

static int has_credit(mr_xport_conn *c) {
    return c->credits > 0 && !c->tx_busy[c->tx_next % RDMA_SLOTS];
}
static int has_data(mr_xport_conn *c) {
    return c->n_ready > 0;
}

/* Makes progress until cond(c) or the deadline; sleeps on the completion channel unless busy
 * polling. CM events (a disconnect) are looked at when their channel is readable, or every
 * millisecond when busy polling; a disconnect also flushes the queue pair, which drain_cq sees. */
static mr_status progress_until(mr_xport_conn *c, int (*cond)(mr_xport_conn *), uint64_t deadline) {
    for (;;) {
        MR_CHECK(progress_once(c));
        if (cond(c)) return MR_OK;
        uint64_t now = mr_now_ns();
        if (deadline && now >= deadline) return MR_ERR_TIMEOUT;
        if (c->busy_poll) {
            MR_CHECK(check_cm_busy(c, now));
            /* Nothing yet: let any runnable thread of this CPU go first. A soft device (rxe)
             * finishes packets in a kernel thread (ksoftirqd) when its softirq runs long; a
             * spinner that never yields holds that thread off for a whole scheduler tick (4 ms at
             * HZ=250, seen as a 4 ms p50 on a busy host). With nothing else runnable this returns
             * at once. */
            sched_yield();
            continue;
        }
        /* arm, re-check (a completion may have raced the arming), then sleep */
        ibv_req_notify_cq(c->cq, 0);
        if (cond == has_credit) ibv_req_notify_cq(c->scq, 0);
        MR_CHECK(progress_once(c));
        if (cond(c)) return MR_OK;
        int ms = 100;
        if (deadline) {
            ms = (int)((deadline - now) / 1000000 + 1);
            if (ms > 100) ms = 100;
        }
        struct pollfd p[2] = {{c->cc->fd, POLLIN, 0}, {c->ec->fd, POLLIN, 0}};
        int n = poll(p, 2, ms);
        if (n > 0 && (p[0].revents & POLLIN)) {
            struct ibv_cq *cq;
            void *ctx;
            if (ibv_get_cq_event(c->cc, &cq, &ctx) == 0) ibv_ack_cq_events(cq, 1);
        }
        if (n > 0 && (p[1].revents & POLLIN)) MR_CHECK(check_cm(c));
    }
}

/* ---- send / recv ----------------------------------------------------------------------------- */

/* Returns every owed credit now, with a zero-byte SEND_WITH_IMM. */
static mr_status flush_credits(mr_xport_conn *c) {
    if (c->owed == 0) return MR_OK;
    struct ibv_send_wr wr = {0}, *bad;
    wr.opcode = IBV_WR_SEND_WITH_IMM;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.imm_data = htonl(IMM_CREDIT | (uint32_t)c->owed);
    if (ibv_post_send(c->id->qp, &wr, &bad)) return broken(c, "cannot return credits");
    c->granted += c->owed;
    c->owed = 0;
    return MR_OK;
}

/* A slot is released: once every older slot is too, owe it to the peer; return what is owed
 * once half the slots are. */
static mr_status release_slot(mr_xport_conn *c, uint32_t slot) {
    c->held[slot] = 0;
    /* mem_rx: a slot's next non-zero head word is the next message (mem_poll); zeroed long before
     * the peer can have the credit to write the slot again (ibv_post_send orders it) */
    if (c->mem_rx)
        __atomic_store_n((uint64_t *)(c->rx + (size_t)slot * c->rx_slot_size), 0, __ATOMIC_RELAXED);
    c->released[slot] = 1;
    while (c->released[c->rel_next]) {
        c->released[c->rel_next] = 0;
        c->rel_next = (c->rel_next + 1) % RDMA_SLOTS;
        c->owed++;
    }
    return c->owed < RDMA_SLOTS / 2 ? MR_OK : flush_credits(c);
}

/* The sge of `n` bytes at p: inline (copied by ibv_post_send) when small enough, else copied
 * into `stage` (registered). Returns 1 when staged. */
static int stage_sge(mr_xport_conn *c, struct ibv_sge *sge, const void *p, size_t n,
                     uint8_t *stage) {
    if (n <= c->max_inline) {
        *sge = (struct ibv_sge){(uintptr_t)p, (uint32_t)n, 0};
        return 0;
    }
    memcpy(stage, p, n);
    *sge = (struct ibv_sge){(uintptr_t)stage, (uint32_t)n, c->tx_mr->lkey};
    return 1;
}

/* Writes message h into the peer's receive slot `slot` as a memory-polled message (rdma_mem.h):
 * gathered inline when small enough, else framed in staging slot `slot`. */
static mr_status post_mem(mr_xport_conn *c, const mr_dp_header *h, const void *payload,
                          uint32_t slot) {
    const size_t pb = (size_t)h->payload_bytes, wire = mr_rdma_mem_wire_bytes(pb);
    const uint32_t give = (uint32_t)c->owed; /* piggybacked credits */
    uint8_t pre[48], tail[16];
    struct ibv_sge sge[3];
    struct ibv_send_wr wr = {0}, *bad;
    int staged = 0;
    if (wire <= c->max_inline) { /* copied by ibv_post_send: the stack pieces may go after it */
        const size_t tl = mr_rdma_mem_frame(h, c->tx_seq, give, pre, tail);
        sge[wr.num_sge++] = (struct ibv_sge){(uintptr_t)pre, (uint32_t)sizeof pre, 0};
        if (pb) sge[wr.num_sge++] = (struct ibv_sge){(uintptr_t)payload, (uint32_t)pb, 0};
        sge[wr.num_sge++] = (struct ibv_sge){(uintptr_t)tail, (uint32_t)tl, 0};
        wr.send_flags = IBV_SEND_INLINE;
    } else {
        uint8_t *stage = c->tx + (size_t)slot * c->tx_slot_size;
        mr_rdma_mem_encode(stage, h, payload, c->tx_seq, give);
        sge[wr.num_sge++] = (struct ibv_sge){(uintptr_t)stage, (uint32_t)wire, c->tx_mr->lkey};
        staged = 1;
    }
    wr.sg_list = sge;
    wr.opcode = IBV_WR_RDMA_WRITE;
    wr.send_flags |= IBV_SEND_SIGNALED;
    wr.wr_id = slot | (staged ? 0 : WR_INLINE);
    wr.wr.rdma.remote_addr = c->r_addr + (uint64_t)slot * c->r_slot_size;
    wr.wr.rdma.rkey = c->r_rkey;
    if (ibv_post_send(c->id->qp, &wr, &bad)) return broken(c, "ibv_post_send failed");
    c->tx_busy[slot] = staged;
    c->tx_seq++;
    return MR_OK;
}

/* Writes message h into the peer's receive slot `slot` with WRITE_WITH_IMM: whole (inline, or
 * from staging slot `slot`), or split (payload into region slot `slot`, then the header). */
static mr_status post_imm(mr_xport_conn *c, const mr_dp_header *h, const void *payload,
                          uint32_t slot) {
    const size_t pb = (size_t)h->payload_bytes, total = sizeof *h + pb;
    uint8_t *stage = c->tx + (size_t)slot * c->tx_slot_size;
    struct ibv_send_wr wr[2], *bad;
    struct ibv_sge sge[3];
    memset(wr, 0, sizeof wr);
    struct ibv_send_wr *first = &wr[1], *hw = &wr[1]; /* hw: the WRITE_WITH_IMM of the header */
    int staged = 0, hdr_inline = 1;
    if (c->r_split) { /* payload into the peer's region slot, then the header alone */
        if (pb) {
            const int ps = stage_sge(c, &sge[0], payload, pb, stage + sizeof *h);
            wr[0].opcode = IBV_WR_RDMA_WRITE;
            wr[0].send_flags = ps ? 0 : IBV_SEND_INLINE; /* unsignaled: the header's completes it */
            wr[0].wr_id = slot | WR_INLINE;
            wr[0].sg_list = &sge[0];
            wr[0].num_sge = 1;
            wr[0].wr.rdma.remote_addr = c->r_region_addr + (uint64_t)slot * c->r_region_slot;
            wr[0].wr.rdma.rkey = c->r_region_rkey;
            wr[0].next = hw;
            first = &wr[0];
            staged |= ps;
        }
        hdr_inline = !stage_sge(c, &sge[1], h, sizeof *h, stage);
        staged |= !hdr_inline;
        hw->num_sge = 1;
    } else if (total <= c->max_inline) { /* header and payload from where they are */
        sge[1] = (struct ibv_sge){(uintptr_t)h, (uint32_t)sizeof *h, 0};
        sge[2] = (struct ibv_sge){(uintptr_t)payload, (uint32_t)pb, 0};
        hw->num_sge = pb ? 2 : 1;
    } else {
        memcpy(stage, h, sizeof *h);
        if (pb) memcpy(stage + sizeof *h, payload, pb);
        sge[1] = (struct ibv_sge){(uintptr_t)stage, (uint32_t)total, c->tx_mr->lkey};
        hw->num_sge = 1;
        staged = 1;
        hdr_inline = 0;
    }
    hw->sg_list = &sge[1];
    hw->opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
    hw->send_flags = IBV_SEND_SIGNALED | (hdr_inline ? IBV_SEND_INLINE : 0);
    hw->wr_id = slot | (staged ? 0 : WR_INLINE);
    const uint32_t give = (uint32_t)c->owed; /* piggybacked credits */
    hw->imm_data = htonl(slot | give << 4 | (uint32_t)(h->micro_batch & 0xff) << 8 |
                         (uint32_t)(h->layer & 0x7fff) << 16);
    hw->wr.rdma.remote_addr = c->r_addr + (uint64_t)slot * c->r_slot_size;
    hw->wr.rdma.rkey = c->r_rkey;
    if (ibv_post_send(c->id->qp, first, &bad)) return broken(c, "ibv_post_send failed");
    c->tx_busy[slot] = staged;
    return MR_OK;
}

static mr_status rdma_send_op(mr_xport_conn *c, const mr_dp_header *h, const void *payload) {
    if (c->broken) return MR_ERR_CLOSED;
    if (c->failed) return c->failed;
    /* what the peer's slot (or region slot) and our staging slot must hold */
    const uint64_t pb = h->payload_bytes, hb = sizeof *h;
    const size_t wire = mr_rdma_mem_wire_bytes(pb);
    const int fits = c->mem_tx    ? wire <= c->r_slot_size && wire <= c->tx_slot_size
                     : c->r_split ? pb <= c->r_region_slot && pb <= c->tx_slot_size - hb
                                  : pb <= c->r_slot_size - hb && pb <= c->tx_slot_size - hb;
    if (!fits) {
        MR_LOG_ERROR(MR_LOG_NET,
                     "rdma %s: a payload of %llu bytes exceeds the slots (%u bytes at the peer%s, "
                     "%zu here)",
                     c->peer, (unsigned long long)pb,
                     c->r_split ? c->r_region_slot : c->r_slot_size, c->r_split ? ", region" : "",
                     c->tx_slot_size);
        return MR_ERR_INVALID;
    }
    /* about to wait for a credit: return ours first, or two senders could each wait on the
     * credit the other withholds */
    if (!has_credit(c)) MR_CHECK(flush_credits(c));
    mr_status st =
        progress_until(c, has_credit, mr_now_ns() + (uint64_t)MR_XPORT_BODY_TIMEOUT_MS * 1000000);
    if (st == MR_ERR_TIMEOUT) {
        MR_LOG_WARN(MR_LOG_NET, "rdma %s: receiver returned no slot within %d ms", c->peer,
                    MR_XPORT_BODY_TIMEOUT_MS);
        return MR_ERR_TIMEOUT;
    }
    MR_CHECK(st);
    const uint32_t slot = c->tx_next;
    MR_CHECK(c->mem_tx ? post_mem(c, h, payload, slot) : post_imm(c, h, payload, slot));
    c->credits--;
    c->granted += c->owed;
    c->owed = 0;
    c->tx_next = (slot + 1) % c->r_slots;
    return MR_OK;
}

/* Takes the oldest arrived message and checks it against its slot: the header (and, without a
 * region, the payload behind it) in the receive slot, or the header alone with the payload in
 * the region slot of the same index; with mem_rx, the framed message (rdma_mem.h) again, as a
 * peer writing without a credit could have changed it since mem_poll. The slot is held until
 * release_slot(). */
static mr_status take_msg(mr_xport_conn *c, mr_xport_msg *m, int timeout_ms) {
    if (c->broken) return MR_ERR_CLOSED;
    if (c->failed) return c->failed;
    uint64_t deadline = timeout_ms < 0 ? 0 : mr_now_ns() + (uint64_t)timeout_ms * 1000000;
    if (timeout_ms == 0) deadline = mr_now_ns();
    MR_CHECK(progress_until(c, has_data, deadline));
    const int slot = c->ready[c->ready_head];
    const uint32_t len = c->ready_len[c->ready_head], imm = c->ready_imm[c->ready_head];
    c->ready_head = (c->ready_head + 1) % RDMA_SLOTS;
    c->n_ready--;
    c->held[slot] = 1;
    const uint8_t *src = c->rx + (size_t)slot * c->rx_slot_size;
    mr_dp_header *h = &m->h;
    int ok = len >= sizeof *h;
    if (c->mem_rx) { /* the header behind the head word, the payload behind the header */
        memcpy(h, src + 8, sizeof *h);
        ok = ok && h->magic == MR_DP_MAGIC && h->version == MR_DP_VERSION &&
             h->payload_bytes == (uint64_t)len - sizeof *h &&
             mr_rdma_mem_wire_bytes(h->payload_bytes) <= c->rx_slot_size;
        src += 8;
    } else if (ok) {
        memcpy(h, src, sizeof *h);
        const uint32_t mb = (imm >> 8) & 0xffu, layer = (imm >> 16) & 0x7fffu;
        ok = h->magic == MR_DP_MAGIC && h->version == MR_DP_VERSION &&
             mb == (h->micro_batch & 0xffu) && layer == (h->layer & 0x7fffu);
        if (c->have_region) /* the header alone; the payload fits its region slot */
            ok = ok && len == sizeof *h && h->payload_bytes <= c->region_slot;
        else /* the header and exactly its payload, inside the slot */
            ok = ok && h->payload_bytes == (uint64_t)len - sizeof *h && len <= c->rx_slot_size;
    }
    if (!ok) {
        MR_LOG_ERROR(
            MR_LOG_NET,
            "rdma %s: protocol error: slot %d holds %u bytes that do not match their header "
            "(magic, version, length or immediate)",
            c->peer, slot, len);
        return MR_ERR_PROTO;
    }
    m->slot = (uint32_t)slot;
    m->in_region = c->have_region;
    m->offset = c->have_region ? (size_t)slot * c->region_slot : 0;
    m->payload = NULL;
    if (h->payload_bytes)
        m->payload = c->have_region ? (const uint8_t *)c->region.base + m->offset : src + sizeof *h;
    return MR_OK;
}

static mr_status rdma_recv_op(mr_xport_conn *c, mr_dp_header *h, void *buf, size_t cap,
                              int timeout_ms) {
    mr_xport_msg m;
    MR_CHECK(take_msg(c, &m, timeout_ms));
    if (m.h.payload_bytes > cap) {
        MR_LOG_ERROR(MR_LOG_NET,
                     "rdma %s: protocol error: a payload of %llu bytes for a %zu-byte buffer",
                     c->peer, (unsigned long long)m.h.payload_bytes, cap);
        return MR_ERR_PROTO;
    }
    mr_status st = MR_OK;
    if (m.payload && c->rx_mode == MR_RDMA_RX_REGION_DMABUF) {
        MR_LOG_ERROR(MR_LOG_NET,
                     "rdma %s: recv() cannot copy a payload out of device memory; the message "
                     "is dropped (use recv_zc on connections with a dmabuf region)",
                     c->peer);
        st = MR_ERR_INVALID;
    } else if (m.payload) {
        memcpy(buf, m.payload, (size_t)m.h.payload_bytes);
    }
    *h = m.h;
    MR_CHECK(release_slot(c, m.slot));
    return st;
}

static mr_status rdma_recv_zc_op(mr_xport_conn *c, mr_xport_msg *m, int timeout_ms) {
    return take_msg(c, m, timeout_ms);
}

static mr_status rdma_release_op(mr_xport_conn *c, const mr_xport_msg *m) {
    if (m->slot >= RDMA_SLOTS || !c->held[m->slot]) {
        MR_LOG_ERROR(MR_LOG_NET, "rdma %s: release of slot %u, which is not held", c->peer,
                     m->slot);
        return MR_ERR_INVALID;
    }
    if (c->broken) return MR_ERR_CLOSED;
    return release_slot(c, m->slot);
}

/* Nonzero when recv() has something that conn_fd may not show: a message already taken off the
 * completion queue, a memory-polled one (mem_rx: those never wake the completion channel), or a
 * connection that has failed. Makes progress like one busy poll. */
static int rdma_buffered(mr_xport_conn *c) {
    if (c->n_ready > 0 || c->broken || c->failed) return 1;
    if (!c->mem_rx) return 0;
    return progress_once(c) != MR_OK || check_cm_busy(c, mr_now_ns()) != MR_OK || c->n_ready > 0;
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
    .send = rdma_send_op,
    .recv = rdma_recv_op,
    .close = rdma_close_op,
    .conn_fd = rdma_conn_fd,
    .buffered = rdma_buffered,
    .peer = rdma_peer,
    .recv_zc = rdma_recv_zc_op,
    .release = rdma_release_op,
    .conn_label = rdma_conn_label,
};
