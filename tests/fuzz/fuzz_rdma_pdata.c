/* libFuzzer target: the RDMA connection offer (CM private data) on arbitrary bytes. What is
 * accepted must satisfy what the transport relies on: slots and region inside the address space,
 * region slots a multiple of 64 of at most 1 GiB, a region only with a region mode, memory
 * polling only without a region and with slots that hold a framed message. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proto/dataplane.h"
#include "proto/rdma_mem.h"
#include "proto/rdma_pdata.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t buf[64] = {0};
    size_t n = size < sizeof buf ? size : sizeof buf;
    memcpy(buf, data, n);
    /* bias towards a valid magic and version so the deeper checks run */
    if (n > 0 && (buf[n - 1] & 1) && n >= 8) {
        const uint32_t magic = MR_RDMA_PD_MAGIC;
        const uint16_t version = MR_DP_VERSION;
        memcpy(buf, &magic, 4);
        memcpy(buf + 4, &version, 2);
    }
    mr_rdma_pdata pd;
    char why[256];
    if (mr_rdma_pdata_parse(size ? buf : NULL, n, &pd, why, sizeof why) != MR_OK) return 0;
    if (pd.slots < 1 || pd.slots > MR_RDMA_PD_SLOTS_MAX || pd.slot_size < sizeof(mr_dp_header) ||
        pd.addr > UINT64_MAX - (uint64_t)pd.slots * pd.slot_size)
        __builtin_trap();
    if (pd.flags & MR_RDMA_PD_REGION) {
        if (pd.region_slot_size % 64 || pd.region_slot_size == 0 ||
            pd.region_slot_size > MR_RDMA_REGION_SLOT_MAX ||
            pd.region_addr > UINT64_MAX - (uint64_t)pd.slots * pd.region_slot_size ||
            (pd.mode != MR_RDMA_RX_REGION_HOST && pd.mode != MR_RDMA_RX_REGION_DMABUF))
            __builtin_trap();
    }
    if ((pd.features & MR_RDMA_PD_MEM_POLL) &&
        ((pd.flags & MR_RDMA_PD_REGION) || pd.slot_size < mr_rdma_mem_wire_bytes(0)))
        __builtin_trap();
    char label[96];
    mr_rdma_mode_label(pd.mode, pd.reason, label, sizeof label);
    return 0;
}
