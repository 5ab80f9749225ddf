/* The RDMA connection offer (CM private data): every check of mr_rdma_pdata_parse, the layouts of
 * builds without regions and without memory polling, and the status labels. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/rng.h"
#include "proto/dataplane.h"
#include "proto/rdma_mem.h"
#include "proto/rdma_pdata.h"

/* A valid offer of 4 host slots; with region = 1 also a region of 4 slots of 1 MiB. */
static mr_rdma_pdata offer(int region) {
    mr_rdma_pdata pd;
    memset(&pd, 0, sizeof pd);
    pd.magic = MR_RDMA_PD_MAGIC;
    pd.version = MR_DP_VERSION;
    pd.slots = 4;
    pd.slot_size = region ? MR_RDMA_HDR_SLOT : 4096 + 64;
    pd.rkey = 0x1234;
    pd.addr = 0x7f0000000000ull;
    pd.flags = MR_RDMA_PD_CAN_SPLIT;
    pd.features = MR_RDMA_PD_MEM_WRITE | (region ? 0 : MR_RDMA_PD_MEM_POLL);
    if (region) {
        pd.flags |= MR_RDMA_PD_REGION;
        pd.mode = MR_RDMA_RX_REGION_DMABUF;
        pd.region_addr = 0x7e0000000000ull;
        pd.region_rkey = 0x5678;
        pd.region_slot_size = 1u << 20;
    }
    return pd;
}

static mr_status parse(const mr_rdma_pdata *in, size_t len, mr_rdma_pdata *out, char *why) {
    why[0] = 0;
    return mr_rdma_pdata_parse(in, len, out, why, 200);
}

static void test_valid_offers(void **state) {
    (void)state;
    char why[200];
    mr_rdma_pdata in = offer(0), out;
    assert_int_equal(parse(&in, sizeof in, &out, why), MR_OK);
    assert_memory_equal(&in, &out, sizeof in);
    in = offer(1);
    assert_int_equal(parse(&in, sizeof in, &out, why), MR_OK);
    assert_int_equal(out.region_slot_size, 1u << 20);
    /* private data longer than ours (an accept reply may carry more): the first 56 bytes count */
    uint8_t padded[64] = {0};
    memcpy(padded, &in, sizeof in);
    assert_int_equal(mr_rdma_pdata_parse(padded, sizeof padded, &out, why, sizeof why), MR_OK);
    assert_memory_equal(&in, &out, sizeof in);
    /* a build without memory polling sends 48 bytes (a connect request arrives zero-padded to
     * 56): no features, immediates both ways */
    in = offer(0);
    assert_int_equal(parse(&in, 48, &out, why), MR_OK);
    assert_int_equal(out.features, 0);
    memset(padded, 0, sizeof padded);
    memcpy(padded, &in, 48);
    assert_int_equal(mr_rdma_pdata_parse(padded, 56, &out, why, sizeof why), MR_OK);
    assert_int_equal(out.features, 0);
    /* memory polling in the smallest slots that hold a message without payload */
    in = offer(0);
    in.slot_size = (uint32_t)mr_rdma_mem_wire_bytes(0);
    assert_int_equal(parse(&in, sizeof in, &out, why), MR_OK);
    /* a build without regions sends 32 bytes: no region, cannot split */
    in = offer(0);
    in.flags = 0;
    assert_int_equal(parse(&in, 32, &out, why), MR_OK);
    assert_int_equal(out.flags, 0);
    assert_int_equal(out.region_slot_size, 0);
    /* host slots after a failed dmabuf registration carry the errno */
    in = offer(0);
    in.mode = MR_RDMA_RX_STAGED;
    in.reason = EOPNOTSUPP;
    assert_int_equal(parse(&in, sizeof in, &out, why), MR_OK);
}

static void test_refused_basics(void **state) {
    (void)state;
    char why[200];
    mr_rdma_pdata in = offer(0), out;
    assert_int_equal(mr_rdma_pdata_parse(NULL, 0, &out, why, sizeof why), MR_ERR_PROTO);
    assert_int_equal(parse(&in, 31, &out, why), MR_ERR_PROTO);
    assert_non_null(strstr(why, "without moerack private data"));
    in.version = 99;
    assert_int_equal(parse(&in, sizeof in, &out, why), MR_ERR_PROTO);
    assert_non_null(strstr(why, "version 99"));
    in = offer(0);
    in.magic ^= 1;
    assert_int_equal(parse(&in, sizeof in, &out, why), MR_ERR_PROTO);
    const uint16_t bad_slots[] = {0, MR_RDMA_PD_SLOTS_MAX + 1};
    for (int i = 0; i < 2; i++) {
        in = offer(0);
        in.slots = bad_slots[i];
        assert_int_equal(parse(&in, sizeof in, &out, why), MR_ERR_PROTO);
    }
    in = offer(0);
    in.slot_size = sizeof(mr_dp_header) + 7;
    assert_int_equal(parse(&in, sizeof in, &out, why), MR_ERR_PROTO);
    in = offer(0); /* slots that wrap the address space */
    in.addr = UINT64_MAX - 1000;
    assert_int_equal(parse(&in, sizeof in, &out, why), MR_ERR_PROTO);
    in = offer(0);
    in.flags |= 0x80;
    assert_int_equal(parse(&in, sizeof in, &out, why), MR_ERR_PROTO);
    assert_non_null(strstr(why, "unknown flags"));
    in = offer(0);
    in.mode = MR_RDMA_RX_STAGED + 1;
    assert_int_equal(parse(&in, sizeof in, &out, why), MR_ERR_PROTO);
    in = offer(0); /* a reason without the mode that has one */
    in.reason = EOPNOTSUPP;
    assert_int_equal(parse(&in, sizeof in, &out, why), MR_ERR_PROTO);
    in = offer(0);
    in.mode = MR_RDMA_RX_STAGED;
    in.reason = 5000;
    assert_int_equal(parse(&in, sizeof in, &out, why), MR_ERR_PROTO);
    in = offer(0);
    in.reserved = 1;
    assert_int_equal(parse(&in, sizeof in, &out, why), MR_ERR_PROTO);
}

static void test_refused_features(void **state) {
    (void)state;
    char why[200];
    mr_rdma_pdata in = offer(0), out;
    in.features |= 0x4;
    assert_int_equal(parse(&in, sizeof in, &out, why), MR_ERR_PROTO);
    assert_non_null(strstr(why, "unknown features"));
    in = offer(0);
    in.reserved2 = 1;
    assert_int_equal(parse(&in, sizeof in, &out, why), MR_ERR_PROTO);
    in = offer(1); /* a region receives split messages, which complete with an immediate */
    in.features |= MR_RDMA_PD_MEM_POLL;
    assert_int_equal(parse(&in, sizeof in, &out, why), MR_ERR_PROTO);
    assert_non_null(strstr(why, "memory polling offered with a region"));
    in = offer(0); /* slots that hold a header but not a framed message */
    in.slot_size = (uint32_t)mr_rdma_mem_wire_bytes(0) - 8;
    assert_int_equal(parse(&in, sizeof in, &out, why), MR_ERR_PROTO);
    in.features = MR_RDMA_PD_MEM_WRITE; /* fine for a side that wants immediates */
    assert_int_equal(parse(&in, sizeof in, &out, why), MR_OK);
}

static void test_refused_regions(void **state) {
    (void)state;
    char why[200];
    mr_rdma_pdata in, out;
    const uint32_t bad_sizes[] = {0, 32, 100, 4096 + 1, MR_RDMA_REGION_SLOT_MAX + 64, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad_sizes / sizeof *bad_sizes; i++) {
        in = offer(1);
        in.region_slot_size = bad_sizes[i];
        assert_int_equal(parse(&in, sizeof in, &out, why), MR_ERR_PROTO);
        assert_non_null(strstr(why, "bad region offer"));
    }
    in = offer(1); /* the largest slot is fine */
    in.region_slot_size = MR_RDMA_REGION_SLOT_MAX;
    assert_int_equal(parse(&in, sizeof in, &out, why), MR_OK);
    in = offer(1); /* region slots that reach the top of the address space */
    in.region_addr = UINT64_MAX - 4 * (1ull << 20) + 1;
    assert_int_equal(parse(&in, sizeof in, &out, why), MR_ERR_PROTO);
    in.region_addr = UINT64_MAX - 4 * (1ull << 20); /* one byte below it: fine */
    assert_int_equal(parse(&in, sizeof in, &out, why), MR_OK);
    in = offer(1); /* a region needs a region mode */
    in.mode = MR_RDMA_RX_HOST;
    assert_int_equal(parse(&in, sizeof in, &out, why), MR_ERR_PROTO);
    in.mode = MR_RDMA_RX_STAGED;
    assert_int_equal(parse(&in, sizeof in, &out, why), MR_ERR_PROTO);
    in = offer(1); /* region fields without the flag */
    in.flags = MR_RDMA_PD_CAN_SPLIT;
    assert_int_equal(parse(&in, sizeof in, &out, why), MR_ERR_PROTO);
    assert_non_null(strstr(why, "without a region offer"));
    in = offer(0);
    in.mode = MR_RDMA_RX_REGION_HOST;
    assert_int_equal(parse(&in, sizeof in, &out, why), MR_ERR_PROTO);
}

/* Random offers near valid ones: the parser never reads past what it is given, and what it
 * accepts satisfies every invariant the transport relies on. */
static void test_random_offers(void **state) {
    (void)state;
    uint64_t rng = 12345;
    int accepted = 0;
    for (int it = 0; it < 200000; it++) {
        mr_rdma_pdata in = offer((int)(mr_splitmix64(&rng) & 1)), out;
        uint8_t *b = (uint8_t *)&in;
        int flips = 1 + (int)(mr_splitmix64(&rng) % 3);
        for (int f = 0; f < flips; f++)
            b[mr_splitmix64(&rng) % sizeof in] ^= (uint8_t)mr_splitmix64(&rng);
        size_t len = (mr_splitmix64(&rng) & 7) ? sizeof in : mr_splitmix64(&rng) % (sizeof in + 1);
        char why[200];
        if (mr_rdma_pdata_parse(&in, len, &out, why, sizeof why) != MR_OK) {
            assert_true(why[0] != 0);
            continue;
        }
        accepted++;
        assert_true(out.slots >= 1 && out.slots <= MR_RDMA_PD_SLOTS_MAX);
        assert_true(out.slot_size >= sizeof(mr_dp_header) + 8);
        assert_true(out.addr <= UINT64_MAX - (uint64_t)out.slots * out.slot_size);
        if (out.flags & MR_RDMA_PD_REGION) {
            assert_true(out.region_slot_size >= 64 && out.region_slot_size % 64 == 0 &&
                        out.region_slot_size <= MR_RDMA_REGION_SLOT_MAX);
            assert_true(out.region_addr <= UINT64_MAX - (uint64_t)out.slots * out.region_slot_size);
            assert_true(out.mode == MR_RDMA_RX_REGION_HOST || out.mode == MR_RDMA_RX_REGION_DMABUF);
        } else {
            assert_true(out.region_slot_size == 0 && out.region_addr == 0);
        }
        assert_true((out.features & ~(MR_RDMA_PD_MEM_WRITE | MR_RDMA_PD_MEM_POLL)) == 0);
        if (out.features & MR_RDMA_PD_MEM_POLL)
            assert_true(!(out.flags & MR_RDMA_PD_REGION) &&
                        out.slot_size >= mr_rdma_mem_wire_bytes(0));
    }
    assert_true(accepted > 1000);
}

static void test_labels(void **state) {
    (void)state;
    char b[96];
    assert_string_equal(mr_rdma_mode_label(MR_RDMA_RX_HOST, 0, b, sizeof b), "rdma/host");
    assert_string_equal(mr_rdma_mode_label(MR_RDMA_RX_REGION_HOST, 0, b, sizeof b),
                        "rdma/host-region");
    assert_string_equal(mr_rdma_mode_label(MR_RDMA_RX_REGION_DMABUF, 0, b, sizeof b),
                        "rdma/dmabuf");
    assert_string_equal(mr_rdma_mode_label(MR_RDMA_RX_STAGED, EOPNOTSUPP, b, sizeof b),
                        "rdma/host-staged (dmabuf: Operation not supported)");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_offers),     cmocka_unit_test(test_refused_basics),
        cmocka_unit_test(test_refused_features), cmocka_unit_test(test_refused_regions),
        cmocka_unit_test(test_random_offers),    cmocka_unit_test(test_labels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
