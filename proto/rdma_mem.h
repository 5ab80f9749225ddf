/* rdma_mem.h — memory-polled messages of the RDMA transport: how a whole message is framed when it
 * is written with a plain RDMA WRITE into a receiver that spins on its slot memory instead of its
 * completion queue (busy-poll connections, xport_rdma.c), as pure functions, so the unit tests
 * and the fuzzer reach every check without a verbs device.
 *
 *   sender:   n = mr_rdma_mem_wire_bytes(pb);            // <= the peer's slot size
 *             mr_rdma_mem_encode(stage, &h, payload, seq, credits);   // one RDMA WRITE of n bytes
 *   receiver: mr_rdma_mem_msg m;
 *             switch (mr_rdma_mem_poll(slot, slot_size, seq, &m)) { ... }
 *
 * Layout in a receive slot (little-endian; the slot starts 8-byte aligned):
 *   0        u64  head word          (below)
 *   8        40 B mr_dp_header
 *   48       pb B payload            (pb = the header's payload_bytes)
 *   48 + pb  0..7 zero bytes         so that the trailer is 8-byte aligned
 *   tpos     u64  trailer            == the head word; tpos = 8 + round_up_8(40 + pb)
 * Word: bits 0-31 message bytes (40 + pb), 32-47 sequence number (per direction, +1 per message,
 * mod 2^16), 48-51 credits returned to the receiver (piggybacked), 52-63 MR_RDMA_MEM_MAGIC.
 *
 * Why this is enough to know a message has landed: RC places an RDMA WRITE's packets in order, so
 * the trailer (the last 8 bytes of the last packet) is written after every earlier packet; the
 * receiver reads the head word, computes where the trailer must be, and takes the message only
 * when the trailer equals the head word (acquire loads, then the header). Within one packet the
 * order of the bytes is not formally guaranteed (perftest's ib_write_lat relies on it just the
 * same: it polls the last byte); the head word at the start and the trailer at the end carry the
 * same sequence number and length, so a slot seen half-written either way is not taken. The
 * receiver zeroes a slot's head word when it releases the slot, before the sender can have the
 * credit to write it again, so a stale message is never taken for a new one. */
#ifndef MR_RDMA_MEM_H
#define MR_RDMA_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "proto/dataplane.h"

#define MR_RDMA_MEM_MAGIC 0xa5du
/* Bytes a memory-polled message needs beyond header and payload: head word, padding, trailer. */
#define MR_RDMA_MEM_OVERHEAD    23
#define MR_RDMA_MEM_CREDITS_MAX 15

/* Bytes written for a payload of pb bytes: 8 + round_up_8(40 + pb) + 8; SIZE_MAX when the message
 * (40 + pb) would not fit the word's 32-bit length. */
size_t mr_rdma_mem_wire_bytes(uint64_t pb);

/* The head word / trailer of a message of msg_bytes (40 + payload) bytes. */
uint64_t mr_rdma_mem_word(uint32_t msg_bytes, uint16_t seq, uint32_t credits);

/* The pieces of a message around its payload, for a sender that gathers them (inline writes):
 * pre = head word + header (48 bytes), tail = padding + trailer. Returns the tail's length (8..15).
 * h->payload_bytes must be < 2^32 - 40 and credits <= MR_RDMA_MEM_CREDITS_MAX. */
size_t mr_rdma_mem_frame(const mr_dp_header *h, uint16_t seq, uint32_t credits, uint8_t pre[48],
                         uint8_t tail[16]);

/* The whole message into dst (mr_rdma_mem_wire_bytes(h->payload_bytes) bytes, 8-byte aligned):
 * head word, header, payload, padding, trailer. Returns the bytes written. */
size_t mr_rdma_mem_encode(void *dst, const mr_dp_header *h, const void *payload, uint16_t seq,
                          uint32_t credits);

typedef enum mr_rdma_mem_state {
    MR_RDMA_MEM_EMPTY = 0, /* the head word is zero: nothing has started to land */
    MR_RDMA_MEM_ARRIVING,  /* something has (the head word is not zero) but no whole message:
                              the trailer does not match the head word yet, or the head word,
                              perhaps still half-written, has no magic or a length that does not
                              fit the slot. One that stays so is a protocol error for the caller
                              to time out. */
    MR_RDMA_MEM_COMPLETE,  /* message `seq` landed whole and consistent: *out filled */
    MR_RDMA_MEM_BAD,       /* a whole message (magic, trailer == head word) that is not message
                              `seq`, or whose header disagrees: wrong magic or version, or
                              payload_bytes != length - 40 */
} mr_rdma_mem_state;

typedef struct mr_rdma_mem_msg {
    uint64_t word;  /* the head word as read (every state) */
    mr_dp_header h; /* COMPLETE, BAD: the header as it lay in the slot, read after the trailer */
    uint32_t msg_bytes; /* COMPLETE: 40 + payload_bytes */
    uint32_t credits;   /* COMPLETE: returned by the sender */
} mr_rdma_mem_msg;

/* 1 if w is the head word of message `seq` (magic and sequence number; any length). */
int mr_rdma_mem_is_seq(uint64_t w, uint16_t seq);

/* Looks at a receive slot of slot_size bytes (8-byte aligned) for message `seq`. Reads nothing
 * outside the slot, whatever it holds; the words with acquire loads (the device writes the slot
 * while this runs), the header only after the trailer matched. The receiver must zero a slot's
 * head word before the sender may write the slot again (slots start zeroed): a head word that is
 * not zero is then always the start of the next message. */
mr_rdma_mem_state mr_rdma_mem_poll(const void *slot, size_t slot_size, uint16_t seq,
                                   mr_rdma_mem_msg *out);

#endif
