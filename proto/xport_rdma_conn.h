/* xport_rdma_conn.h — the RDMA transport's connection, shared by its two files: xport_rdma.c
 * (set-up: registration, regions, the connection offer, connect / listen / accept, close) and
 * xport_rdma_io.c (the data path: progress, send, receive, credits). Not for other users: they
 * see mr_xport_conn through xport.h only. The design is described at the top of xport_rdma.c. */
#ifndef MR_XPORT_RDMA_CONN_H
#define MR_XPORT_RDMA_CONN_H

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include <stdint.h>

#include "common/status.h"
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
    int offer_mem_poll;  /* busy_poll without busy_cq_only: ask for memory-polled messages */
    uint32_t max_inline; /* bytes the send queue takes inline (0: none) */
    size_t rx_slot_size; /* receive slot: header + largest payload + the framing of a memory-
                            polled message (rdma_mem.h), or MR_RDMA_HDR_SLOT (region) */
    size_t tx_slot_size; /* staging slot: as large as a whole receive slot */
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

/* ---- xport_rdma_io.c ---- */

/* Posts one zero-length receive (for a WRITE_WITH_IMM or a credit return). */
mr_status mr_rdma_post_recv(mr_xport_conn *c);
/* The data-path entries of mr_xport_rdma_ops (xport.h says what each does). */
mr_status mr_rdma_send(mr_xport_conn *c, const mr_dp_header *h, const void *payload);
mr_status mr_rdma_recv(mr_xport_conn *c, mr_dp_header *h, void *buf, size_t cap, int timeout_ms);
mr_status mr_rdma_recv_zc(mr_xport_conn *c, mr_xport_msg *m, int timeout_ms);
mr_status mr_rdma_release(mr_xport_conn *c, const mr_xport_msg *m);
int mr_rdma_buffered(mr_xport_conn *c);

#endif
