/* libFuzzer target: the receiver's check of a memory-polled RDMA message (proto/rdma_mem.h) on
 * arbitrary slot contents and sizes. It must read nothing outside the slot (the slot is an
 * exact-size allocation), and what it takes whole must fit the slot and agree with its header. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/dataplane.h"
#include "proto/rdma_mem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    const uint16_t seq = (uint16_t)(data[0] | data[1] << 8);
    data += 2;
    size -= 2;
    const size_t slot_size = size & ~(size_t)7; /* slots are whole words */
    uint64_t *slot = malloc(slot_size ? slot_size : 8);
    if (!slot) return 0;
    memcpy(slot, data, slot_size);
    /* bias towards the magic and sequence number so the deeper checks run */
    if (slot_size >= 8 && (data[0] & 1))
        slot[0] = mr_rdma_mem_word((uint32_t)(slot[0] & 0xffffffu), seq, 0);
    mr_rdma_mem_msg m;
    if (mr_rdma_mem_poll(slot, slot_size, seq, &m) == MR_RDMA_MEM_COMPLETE &&
        (mr_rdma_mem_wire_bytes(m.h.payload_bytes) > slot_size ||
         m.msg_bytes != sizeof(mr_dp_header) + m.h.payload_bytes || m.h.magic != MR_DP_MAGIC))
        __builtin_trap();
    free(slot);
    return 0;
}
