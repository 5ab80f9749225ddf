/* xport_rdma_io.c — the data path of the RDMA transport: progress (send and receive
 * completions, memory-polled receive slots, CM events), send, receive, credits. Set-up and the
 * design of the whole are in xport_rdma.c; the connection's fields in xport_rdma_conn.h. */
#include <arpa/inet.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "proto/rdma_mem.h"
#include "proto/rdma_pdata.h"
#include "proto/xport_rdma_conn.h"

mr_status mr_rdma_post_recv(mr_xport_conn *c) {
    struct ibv_sge sge = {(uintptr_t)&c->dummy, 0, c->dummy_mr->lkey};
    struct ibv_recv_wr wr = {.wr_id = 1, .sg_list = &sge, .num_sge = 1}, *bad;
    return ibv_post_recv(c->id->qp, &wr, &bad) ? MR_ERR_IO : MR_OK;
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
            if (mr_rdma_post_recv(c) != MR_OK) return broken(c, "cannot repost a receive");
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

mr_status mr_rdma_send(mr_xport_conn *c, const mr_dp_header *h, const void *payload) {
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

mr_status mr_rdma_recv(mr_xport_conn *c, mr_dp_header *h, void *buf, size_t cap, int timeout_ms) {
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

mr_status mr_rdma_recv_zc(mr_xport_conn *c, mr_xport_msg *m, int timeout_ms) {
    return take_msg(c, m, timeout_ms);
}

mr_status mr_rdma_release(mr_xport_conn *c, const mr_xport_msg *m) {
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
int mr_rdma_buffered(mr_xport_conn *c) {
    if (c->n_ready > 0 || c->broken || c->failed) return 1;
    if (!c->mem_rx) return 0;
    return progress_once(c) != MR_OK || check_cm_busy(c, mr_now_ns()) != MR_OK || c->n_ready > 0;
}
