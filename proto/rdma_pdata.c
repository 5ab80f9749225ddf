/* rdma_pdata.c — see rdma_pdata.h. */
#include "proto/rdma_pdata.h"

#include <stdio.h>
#include <string.h>

#include "proto/dataplane.h"
#include "proto/rdma_mem.h"

/* The 32-byte layout of builds without regions; shorter private data is not ours. */
#define PD_MIN_BYTES 32
#define REASON_MAX   4095 /* errno values */

/* 1 if `slots` slots of `size` bytes from `addr` would pass the end of the address space. */
static int wraps(uint64_t addr, uint32_t slots, uint64_t size) {
    const uint64_t span = (uint64_t)slots * size; /* <= 64 * 4 GiB: no overflow */
    return addr > UINT64_MAX - span;
}

mr_status mr_rdma_pdata_parse(const void *data, size_t len, mr_rdma_pdata *out, char *why,
                              size_t cap) {
    mr_rdma_pdata pd;
    memset(&pd, 0, sizeof pd);
    if (!data || len < PD_MIN_BYTES) {
        snprintf(why, cap, "connection without moerack private data (%zu bytes)", data ? len : 0);
        return MR_ERR_PROTO;
    }
    memcpy(&pd, data, len < sizeof pd ? len : sizeof pd);
    if (pd.magic != MR_RDMA_PD_MAGIC || pd.version != MR_DP_VERSION) {
        snprintf(why, cap, "peer speaks data-plane version %u (magic 0x%08x); this build speaks %u",
                 pd.version, pd.magic, MR_DP_VERSION);
        return MR_ERR_PROTO;
    }
    if (pd.slots < 1 || pd.slots > MR_RDMA_PD_SLOTS_MAX ||
        pd.slot_size < sizeof(mr_dp_header) + 8 || wraps(pd.addr, pd.slots, pd.slot_size)) {
        snprintf(why, cap, "peer offers %u slots of %u bytes at 0x%llx", pd.slots, pd.slot_size,
                 (unsigned long long)pd.addr);
        return MR_ERR_PROTO;
    }
    if (pd.flags & ~(MR_RDMA_PD_CAN_SPLIT | MR_RDMA_PD_REGION)) {
        snprintf(why, cap, "unknown flags 0x%x in the connection offer", pd.flags);
        return MR_ERR_PROTO;
    }
    if (pd.mode > MR_RDMA_RX_STAGED || pd.reserved != 0 || pd.reason > REASON_MAX ||
        (pd.reason != 0 && pd.mode != MR_RDMA_RX_STAGED)) {
        snprintf(why, cap, "receive mode %u (reason %u, reserved %u) is not one this build knows",
                 pd.mode, pd.reason, pd.reserved);
        return MR_ERR_PROTO;
    }
    const int region = (pd.flags & MR_RDMA_PD_REGION) != 0;
    if (pd.features & ~(MR_RDMA_PD_MEM_WRITE | MR_RDMA_PD_MEM_POLL) || pd.reserved2 != 0) {
        snprintf(why, cap, "unknown features 0x%x (reserved 0x%x) in the connection offer",
                 pd.features, pd.reserved2);
        return MR_ERR_PROTO;
    }
    if ((pd.features & MR_RDMA_PD_MEM_POLL) &&
        (region || pd.slot_size < mr_rdma_mem_wire_bytes(0))) {
        snprintf(why, cap, "memory polling offered with %s",
                 region ? "a region (split messages need immediates)"
                        : "slots too small for a message");
        return MR_ERR_PROTO;
    }
    const int region_mode =
        pd.mode == MR_RDMA_RX_REGION_HOST || pd.mode == MR_RDMA_RX_REGION_DMABUF;
    if (!region) {
        if (pd.region_addr || pd.region_rkey || pd.region_slot_size || region_mode) {
            snprintf(why, cap, "region fields set (mode %u) without a region offer", pd.mode);
            return MR_ERR_PROTO;
        }
        *out = pd;
        return MR_OK;
    }
    if (!region_mode || pd.region_slot_size < 64 || pd.region_slot_size % 64 != 0 ||
        pd.region_slot_size > MR_RDMA_REGION_SLOT_MAX ||
        wraps(pd.region_addr, pd.slots, pd.region_slot_size)) {
        snprintf(why, cap,
                 "bad region offer: %u slots of %u bytes at 0x%llx (mode %u; slots must be a "
                 "multiple of 64 bytes, at most %u, and not wrap)",
                 pd.slots, pd.region_slot_size, (unsigned long long)pd.region_addr, pd.mode,
                 MR_RDMA_REGION_SLOT_MAX);
        return MR_ERR_PROTO;
    }
    *out = pd;
    return MR_OK;
}

const char *mr_rdma_mode_label(int mode, uint32_t reason, char *buf, size_t cap) {
    switch (mode) {
    case MR_RDMA_RX_REGION_HOST:
        snprintf(buf, cap, "rdma/host-region");
        break;
    case MR_RDMA_RX_REGION_DMABUF:
        snprintf(buf, cap, "rdma/dmabuf");
        break;
    case MR_RDMA_RX_STAGED: {
        char eb[96];
        snprintf(buf, cap, "rdma/host-staged (dmabuf: %s)",
                 reason ? strerror_r((int)reason, eb, sizeof eb) : "not registered");
        break;
    }
    default:
        snprintf(buf, cap, "rdma/host");
        break;
    }
    return buf;
}
