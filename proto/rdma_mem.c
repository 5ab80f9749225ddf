/* rdma_mem.c — see rdma_mem.h. */
#include "proto/rdma_mem.h"

#include <string.h>

#define HDR ((size_t)sizeof(mr_dp_header))

size_t mr_rdma_mem_wire_bytes(uint64_t pb) {
    if (pb > UINT32_MAX - HDR) return SIZE_MAX;
    const uint64_t msg = HDR + pb;
    return (size_t)(8 + ((msg + 7) & ~(uint64_t)7) + 8);
}

uint64_t mr_rdma_mem_word(uint32_t msg_bytes, uint16_t seq, uint32_t credits) {
    return (uint64_t)MR_RDMA_MEM_MAGIC << 52 | (uint64_t)(credits & 0xfu) << 48 |
           (uint64_t)seq << 32 | msg_bytes;
}

size_t mr_rdma_mem_frame(const mr_dp_header *h, uint16_t seq, uint32_t credits, uint8_t pre[48],
                         uint8_t tail[16]) {
    const uint32_t msg = (uint32_t)(HDR + h->payload_bytes);
    const uint64_t w = mr_rdma_mem_word(msg, seq, credits);
    memcpy(pre, &w, 8);
    memcpy(pre + 8, h, HDR);
    const size_t pad = (8 - msg % 8) % 8;
    memset(tail, 0, pad);
    memcpy(tail + pad, &w, 8);
    return pad + 8;
}

size_t mr_rdma_mem_encode(void *dst, const mr_dp_header *h, const void *payload, uint16_t seq,
                          uint32_t credits) {
    uint8_t pre[48], tail[16], *d = dst;
    const size_t pb = (size_t)h->payload_bytes, tl = mr_rdma_mem_frame(h, seq, credits, pre, tail);
    memcpy(d, pre, sizeof pre);
    if (pb) memcpy(d + sizeof pre, payload, pb);
    memcpy(d + sizeof pre + pb, tail, tl); /* the trailer last, though the device reads it all */
    return sizeof pre + pb + tl;
}

int mr_rdma_mem_is_seq(uint64_t w, uint16_t seq) {
    return (w >> 52) == MR_RDMA_MEM_MAGIC && (uint16_t)(w >> 32) == seq;
}

mr_rdma_mem_state mr_rdma_mem_poll(const void *slot, size_t slot_size, uint16_t seq,
                                   mr_rdma_mem_msg *out) {
    const uint8_t *s = slot;
    out->word = 0;
    if (slot_size < 16) return MR_RDMA_MEM_EMPTY;
    const uint64_t w = __atomic_load_n((const uint64_t *)s, __ATOMIC_ACQUIRE);
    out->word = w;
    if (w == 0) return MR_RDMA_MEM_EMPTY;
    /* a message has begun; its head word may still be half-written (then the trailer found
     * through it cannot match it), or hostile (then it never will, and the caller times it out) */
    const uint32_t msg = (uint32_t)w;
    if ((w >> 52) != MR_RDMA_MEM_MAGIC || msg < HDR) return MR_RDMA_MEM_ARRIVING;
    const size_t wire = mr_rdma_mem_wire_bytes(msg - HDR);
    if (wire > slot_size) return MR_RDMA_MEM_ARRIVING;
    const uint64_t t = __atomic_load_n((const uint64_t *)(s + wire - 8), __ATOMIC_ACQUIRE);
    if (t != w) return MR_RDMA_MEM_ARRIVING;
    /* the trailer is the last thing placed: the header below is final */
    memcpy(&out->h, s + 8, HDR);
    out->msg_bytes = msg;
    out->credits = (uint32_t)(w >> 48) & 0xfu;
    if ((uint16_t)(w >> 32) != seq || out->h.magic != MR_DP_MAGIC ||
        out->h.version != MR_DP_VERSION || out->h.payload_bytes != (uint64_t)msg - HDR)
        return MR_RDMA_MEM_BAD;
    return MR_RDMA_MEM_COMPLETE;
}
