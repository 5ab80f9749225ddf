/* Memory-polled RDMA messages (proto/rdma_mem.h): the framing, every state of the receiver's
 * check (a slot landing packet by packet, torn head words, hostile words and headers), and that
 * the check never reads outside the slot it is given. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/rng.h"
#include "proto/dataplane.h"
#include "proto/rdma_mem.h"

#define SLOT 4096

static mr_dp_header hdr(uint64_t pb) {
    mr_dp_header h;
    mr_dp_header_init(&h, MR_DP_REQUEST);
    h.seq = 77;
    h.payload_bytes = pb;
    return h;
}

static void test_wire_bytes(void **state) {
    (void)state;
    assert_int_equal(mr_rdma_mem_wire_bytes(0), 8 + 40 + 8);
    assert_int_equal(mr_rdma_mem_wire_bytes(1), 8 + 48 + 8);
    assert_int_equal(mr_rdma_mem_wire_bytes(8), 8 + 48 + 8);
    assert_int_equal(mr_rdma_mem_wire_bytes(9), 8 + 56 + 8);
    for (uint64_t pb = 0; pb < 100; pb++) {
        const size_t w = mr_rdma_mem_wire_bytes(pb);
        assert_true(w % 8 == 0 && w >= 40 + pb + 16 && w <= 40 + pb + MR_RDMA_MEM_OVERHEAD);
    }
    assert_int_equal(mr_rdma_mem_wire_bytes(UINT32_MAX - 40), 8 + (size_t)UINT32_MAX + 1 + 8);
    assert_int_equal(mr_rdma_mem_wire_bytes(UINT32_MAX - 39), SIZE_MAX);
    assert_int_equal(mr_rdma_mem_wire_bytes(UINT64_MAX), SIZE_MAX);
}

/* Every payload size that fits a slot: encode, and the pieces gathered inline, give the same
 * bytes, and the receiver takes them whole with the header, length and credits sent. */
static void test_roundtrip(void **state) {
    (void)state;
    uint64_t *slot = aligned_alloc(64, SLOT), *gathered = aligned_alloc(64, SLOT);
    uint8_t payload[SLOT];
    for (size_t i = 0; i < sizeof payload; i++) payload[i] = (uint8_t)(i * 7 + 1);
    for (uint64_t pb = 0; mr_rdma_mem_wire_bytes(pb) <= SLOT; pb++) {
        const mr_dp_header h = hdr(pb);
        const uint16_t seq = (uint16_t)(pb * 31);
        const uint32_t credits = (uint32_t)(pb % 5);
        memset(slot, 0, SLOT);
        const size_t n = mr_rdma_mem_encode(slot, &h, payload, seq, credits);
        assert_int_equal(n, mr_rdma_mem_wire_bytes(pb));
        uint8_t pre[48], tail[16];
        const size_t tl = mr_rdma_mem_frame(&h, seq, credits, pre, tail);
        memcpy(gathered, pre, 48);
        memcpy((uint8_t *)gathered + 48, payload, pb);
        memcpy((uint8_t *)gathered + 48 + pb, tail, tl);
        assert_int_equal(48 + pb + tl, n);
        assert_memory_equal(slot, gathered, n);
        mr_rdma_mem_msg m;
        assert_int_equal(mr_rdma_mem_poll(slot, SLOT, seq, &m), MR_RDMA_MEM_COMPLETE);
        assert_int_equal(m.msg_bytes, 40 + pb);
        assert_int_equal(m.credits, credits);
        assert_memory_equal(&m.h, &h, sizeof h);
        assert_memory_equal((uint8_t *)slot + 48, payload, pb);
        assert_true(mr_rdma_mem_is_seq(m.word, seq));
        /* exactly the bytes it needs: a slot of that size is enough, one 8 bytes smaller not */
        assert_int_equal(mr_rdma_mem_poll(slot, n, seq, &m), MR_RDMA_MEM_COMPLETE);
        assert_int_equal(mr_rdma_mem_poll(slot, n - 8, seq, &m), MR_RDMA_MEM_ARRIVING);
        /* another message's sequence number: whole but not the one due */
        assert_int_equal(mr_rdma_mem_poll(slot, SLOT, (uint16_t)(seq + 1), &m), MR_RDMA_MEM_BAD);
        assert_false(mr_rdma_mem_is_seq(m.word, (uint16_t)(seq + 1)));
    }
    free(slot);
    free(gathered);
}

/* A message landing in pieces, in order: empty, then arriving, and complete only with the
 * trailer; a head word half-written (torn against the zeroed slot) is never taken. */
static void test_landing(void **state) {
    (void)state;
    uint64_t *msg = aligned_alloc(64, SLOT), *slot = aligned_alloc(64, SLOT);
    uint8_t payload[1000];
    memset(payload, 0x3c, sizeof payload);
    const mr_dp_header h = hdr(sizeof payload);
    const size_t n = mr_rdma_mem_encode(msg, &h, payload, 9, 2);
    mr_rdma_mem_msg m;
    memset(slot, 0, SLOT);
    assert_int_equal(mr_rdma_mem_poll(slot, SLOT, 9, &m), MR_RDMA_MEM_EMPTY);
    for (size_t k = 1; k < n; k++) { /* the first k bytes have landed */
        memcpy(slot, msg, k);
        const mr_rdma_mem_state s = mr_rdma_mem_poll(slot, SLOT, 9, &m);
        assert_true(s == MR_RDMA_MEM_ARRIVING || (k < 8 && s == MR_RDMA_MEM_EMPTY));
    }
    memcpy(slot, msg, n);
    assert_int_equal(mr_rdma_mem_poll(slot, SLOT, 9, &m), MR_RDMA_MEM_COMPLETE);
    /* the head word torn byte by byte (any mix of new bytes and zeros): never whole */
    for (unsigned mask = 1; mask < 255; mask++) {
        uint8_t w[8];
        memcpy(w, msg, 8);
        for (int b = 0; b < 8; b++)
            if (!(mask >> b & 1)) w[b] = 0;
        if (memcmp(w, msg, 8) == 0) continue; /* only bytes that were zero anyway */
        memcpy(slot, w, 8);
        const mr_rdma_mem_state s = mr_rdma_mem_poll(slot, SLOT, 9, &m);
        assert_true(s == MR_RDMA_MEM_ARRIVING || s == MR_RDMA_MEM_EMPTY);
    }
    /* the trailer landed but a byte in the middle of the last 8 has not: still arriving */
    memcpy(slot, msg, n);
    ((uint8_t *)slot)[n - 3] ^= 0xff;
    assert_int_equal(mr_rdma_mem_poll(slot, SLOT, 9, &m), MR_RDMA_MEM_ARRIVING);
    free(msg);
    free(slot);
}

/* Whole messages whose header disagrees with the word, and words no trailer can match. */
static void test_hostile(void **state) {
    (void)state;
    uint64_t *slot = aligned_alloc(64, SLOT);
    uint8_t payload[100] = {0};
    mr_rdma_mem_msg m;
    mr_dp_header h = hdr(sizeof payload);
    const size_t n = mr_rdma_mem_encode(slot, &h, payload, 1, 0);
    const uint64_t bad_pb = 101;
    memcpy((uint8_t *)slot + 8 + offsetof(mr_dp_header, payload_bytes), &bad_pb, 8);
    assert_int_equal(mr_rdma_mem_poll(slot, SLOT, 1, &m), MR_RDMA_MEM_BAD);
    h.magic ^= 1;
    mr_rdma_mem_encode(slot, &h, payload, 1, 0);
    assert_int_equal(mr_rdma_mem_poll(slot, SLOT, 1, &m), MR_RDMA_MEM_BAD);
    h = hdr(sizeof payload);
    h.version = 2;
    mr_rdma_mem_encode(slot, &h, payload, 1, 0);
    assert_int_equal(mr_rdma_mem_poll(slot, SLOT, 1, &m), MR_RDMA_MEM_BAD);
    /* lengths below a header, past the slot, past 4 GiB: arriving for ever (the caller's
     * deadline), and nothing read past the slot (ASan) */
    const uint32_t lens[] = {0, 39, SLOT - 16 - 40 + 1 + 40, UINT32_MAX};
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
        slot[0] = mr_rdma_mem_word(lens[i], 1, 0);
        assert_int_equal(mr_rdma_mem_poll(slot, SLOT, 1, &m), MR_RDMA_MEM_ARRIVING);
    }
    /* no magic */
    slot[0] = mr_rdma_mem_word(140, 1, 0) ^ (1ull << 60);
    memcpy((uint8_t *)slot + n - 8, slot, 8);
    assert_int_equal(mr_rdma_mem_poll(slot, SLOT, 1, &m), MR_RDMA_MEM_ARRIVING);
    /* slots too small to hold a word pair: empty */
    assert_int_equal(mr_rdma_mem_poll(slot, 8, 1, &m), MR_RDMA_MEM_EMPTY);
    free(slot);
}

/* Random bytes in slots of random sizes, with valid-looking words: the check only ever reads
 * the slot (exact-size allocations under ASan), and what it takes is consistent. */
static void test_random(void **state) {
    (void)state;
    uint64_t rng = 4242;
    int complete = 0;
    for (int it = 0; it < 100000; it++) {
        const size_t size = 16 + 8 * (size_t)(mr_splitmix64(&rng) % 64);
        uint64_t *slot = aligned_alloc(8, size);
        for (size_t i = 0; i < size / 8; i++) slot[i] = mr_splitmix64(&rng);
        const uint16_t seq = (uint16_t)(mr_splitmix64(&rng) % 4);
        if (mr_splitmix64(&rng) & 1) { /* a real message, then damage */
            const uint64_t pb = mr_splitmix64(&rng) % (size - 16 - 40 + 1);
            mr_dp_header h = hdr(pb);
            if (mr_rdma_mem_wire_bytes(pb) <= size) {
                uint8_t *pl = malloc(pb + 1);
                memset(pl, 1, pb + 1);
                mr_rdma_mem_encode(slot, &h, pl, seq, 1);
                free(pl);
            }
            const int flips = (int)(mr_splitmix64(&rng) % 3);
            for (int f = 0; f < flips; f++)
                ((uint8_t *)slot)[mr_splitmix64(&rng) % size] ^= (uint8_t)mr_splitmix64(&rng);
        }
        mr_rdma_mem_msg m;
        if (mr_rdma_mem_poll(slot, size, seq, &m) == MR_RDMA_MEM_COMPLETE) {
            complete++;
            assert_true(mr_rdma_mem_wire_bytes(m.h.payload_bytes) <= size);
            assert_int_equal(m.msg_bytes, 40 + m.h.payload_bytes);
            assert_true(m.credits <= MR_RDMA_MEM_CREDITS_MAX);
        }
        free(slot);
    }
    assert_true(complete > 1000);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_bytes), cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_landing),    cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
