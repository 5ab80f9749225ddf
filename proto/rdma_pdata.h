/* rdma_pdata.h — the RDMA transport's connection offer: the CM private data each side sends (the
 * connector in its connect request, the listener in its accept reply), as pure functions, so the
 * unit tests and the fuzzer reach every check without a verbs device.
 *
 *   mr_rdma_pdata pd;
 *   char why[160];
 *   if (mr_rdma_pdata_parse(ev->param.conn.private_data, ev->param.conn.private_data_len, &pd,
 *                           why, sizeof why) != MR_OK) { log why; reject; }
 *
 * Wire layout (little-endian, 56 bytes: all that a connect request can carry):
 *   0  u32 magic             "MCRD"
 *   4  u16 version           MR_DP_VERSION; anything else is refused
 *   6  u16 slots             receive slots (1 .. 64; a side uses at most its own count)
 *   8  u32 slot_size         bytes per receive slot (whole messages, or headers only: see REGION)
 *   12 u32 rkey              of the receive slots
 *   16 u64 addr              of receive slot 0
 *   24 u16 flags             CAN_SPLIT: this side writes split messages into a region the peer
 *                            offers; REGION: bytes 32..47 offer one (payloads land there)
 *   26 u8  mode              how this side's received payloads land (mr_rdma_rx_mode), for status
 *   27 u8  reserved          0
 *   28 u32 reason            mode STAGED: the errno of the failed dmabuf registration; else 0
 *   32 u64 region_addr       REGION: address of region slot 0 (slot i at + i·region_slot_size)
 *   40 u32 region_rkey
 *   44 u32 region_slot_size  bytes per region slot: a multiple of 64, at most 1 GiB
 *   48 u32 features          MEM_WRITE: this side can write whole messages as memory-polled
 *                            writes (rdma_mem.h); MEM_POLL: this side busy-polls its receive slots
 *                            and wants whole messages written to it that way (never with REGION)
 *   52 u32 reserved2         0
 * The first 32 bytes are the layout of builds without regions (their byte 24.. was a zero
 * reserved field), so such a peer reads as: no region, cannot split; the first 48 bytes are that
 * of builds without memory polling, which ignore bytes 48.. and send none, so such a peer reads
 * as: no features (immediates both ways). Missing bytes of a shorter private data read as zero. */
#ifndef MR_RDMA_PDATA_H
#define MR_RDMA_PDATA_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define MR_RDMA_PD_MAGIC        0x4452434du /* "MCRD" */
#define MR_RDMA_PD_CAN_SPLIT    0x1u
#define MR_RDMA_PD_REGION       0x2u
#define MR_RDMA_PD_MEM_WRITE    0x1u /* features */
#define MR_RDMA_PD_MEM_POLL     0x2u
#define MR_RDMA_PD_SLOTS_MAX    64
#define MR_RDMA_REGION_SLOT_MAX (1u << 30)
/* Header-only receive slots of a side that offers a region: one data-plane header, padded. */
#define MR_RDMA_HDR_SLOT 64

/* How a side's received payloads land. */
typedef enum mr_rdma_rx_mode {
    MR_RDMA_RX_HOST = 0,          /* whole messages in the transport's registered host slots */
    MR_RDMA_RX_REGION_HOST = 1,   /* payloads in the receiver's own host memory (ibv_reg_mr) */
    MR_RDMA_RX_REGION_DMABUF = 2, /* payloads in device memory registered through a dmabuf */
    MR_RDMA_RX_STAGED = 3,        /* host slots, because the dmabuf registration failed */
} mr_rdma_rx_mode;

typedef struct mr_rdma_pdata {
    uint32_t magic;
    uint16_t version;
    uint16_t slots;
    uint32_t slot_size;
    uint32_t rkey;
    uint64_t addr;
    uint16_t flags;
    uint8_t mode;
    uint8_t reserved;
    uint32_t reason;
    uint64_t region_addr;
    uint32_t region_rkey;
    uint32_t region_slot_size;
    uint32_t features;
    uint32_t reserved2;
} mr_rdma_pdata;
_Static_assert(sizeof(mr_rdma_pdata) == 56, "RDMA private data is 56 bytes on the wire");

/* Copies up to 56 bytes of received private data into *out (a shorter one is zero-filled) and
 * checks every field: magic and version, 1..64 slots that hold at least a header and do not wrap
 * the address space, known flags and mode, and for a region offer a slot size that is a
 * multiple of 64 in 64 B .. 1 GiB, slots that do not wrap, a registration mode that has one;
 * known features, reserved2 zero, and MEM_POLL only without a region and with slots that hold a
 * memory-polled message without payload (rdma_mem.h).
 * On failure: MR_ERR_PROTO and a one-line reason in why. NULL data or len < 32: no moerack
 * private data. */
mr_status mr_rdma_pdata_parse(const void *data, size_t len, mr_rdma_pdata *out, char *why,
                              size_t cap);

/* The status label of a receive mode: "rdma/host", "rdma/host-region", "rdma/dmabuf",
 * "rdma/host-staged (dmabuf: <strerror(reason)>)". Returns buf. */
const char *mr_rdma_mode_label(int mode, uint32_t reason, char *buf, size_t cap);

#endif
