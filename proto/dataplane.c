#include "proto/dataplane.h"

#include <stdio.h>
#include <string.h>

uint64_t mr_dp_request_bytes(uint32_t n_tokens, uint32_t top_k, uint32_t hidden, mr_dp_dtype dt) {
    uint64_t n = n_tokens;
    return n * top_k * 8 + n * hidden * (dt == MR_DP_BF16 ? 2u : 4u);
}

uint64_t mr_dp_reply_bytes(uint32_t n_tokens, uint32_t hidden, mr_dp_dtype dt) {
    return (uint64_t)n_tokens * hidden * (dt == MR_DP_BF16 ? 2u : 4u);
}

uint64_t mr_dp_max_payload(uint32_t max_tokens, uint32_t top_k, uint32_t hidden) {
    uint64_t req = mr_dp_request_bytes(max_tokens, top_k, hidden, MR_DP_F32);
    uint64_t rep = mr_dp_reply_bytes(max_tokens, hidden, MR_DP_F32);
    uint64_t m = req > rep ? req : rep;
    return m > 4096 ? m : 4096;
}

void mr_dp_header_init(mr_dp_header *h, mr_dp_kind kind) {
    memset(h, 0, sizeof *h);
    h->magic = MR_DP_MAGIC;
    h->version = MR_DP_VERSION;
    h->kind = (uint16_t)kind;
}

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(why, cap, __VA_ARGS__);                                                           \
        return MR_ERR_PROTO;                                                                       \
    } while (0)

mr_status mr_dp_header_check(const mr_dp_header *h, const mr_dp_limits *lim, unsigned kinds,
                             char *why, size_t cap) {
    if (h->magic != MR_DP_MAGIC) FAIL("bad magic 0x%08x", h->magic);
    if (h->version != MR_DP_VERSION)
        FAIL("data-plane version %u, this build speaks %u", h->version, MR_DP_VERSION);
    if (h->kind < MR_DP_HELLO || h->kind > MR_DP_ERROR || !(kinds & (1u << h->kind)))
        FAIL("unexpected message kind %u", h->kind);
    if (h->reserved != 0) FAIL("reserved field is %u, must be 0", h->reserved);
    if (h->payload_bytes > lim->max_payload)
        FAIL("payload of %llu bytes exceeds the limit of %llu",
             (unsigned long long)h->payload_bytes, (unsigned long long)lim->max_payload);
    switch (h->kind) {
    case MR_DP_HELLO:
        if (h->payload_bytes != 0) FAIL("hello carries a payload");
        return MR_OK;
    case MR_DP_ERROR:
        return MR_OK;
    default:
        break;
    }
    if (h->layer >= lim->n_layers) FAIL("layer %u out of range [0, %u)", h->layer, lim->n_layers);
    if (h->n_tokens == 0 || h->n_tokens > lim->max_tokens)
        FAIL("token count %u out of range [1, %u]", h->n_tokens, lim->max_tokens);
    if (h->hidden != lim->hidden) FAIL("hidden width %u, expected %u", h->hidden, lim->hidden);
    if (h->dtype != MR_DP_F32 && h->dtype != MR_DP_BF16) FAIL("unknown dtype %u", h->dtype);
    if (h->kind == MR_DP_REQUEST) {
        if (h->top_k != lim->top_k) FAIL("top_k %u, expected %u", h->top_k, lim->top_k);
        uint64_t want =
            mr_dp_request_bytes(h->n_tokens, h->top_k, h->hidden, (mr_dp_dtype)h->dtype);
        if (h->payload_bytes != want)
            FAIL("request payload of %llu bytes, expected %llu",
                 (unsigned long long)h->payload_bytes, (unsigned long long)want);
    } else {
        uint64_t want = mr_dp_reply_bytes(h->n_tokens, h->hidden, (mr_dp_dtype)h->dtype);
        if (h->payload_bytes != want)
            FAIL("reply payload of %llu bytes, expected %llu", (unsigned long long)h->payload_bytes,
                 (unsigned long long)want);
    }
    return MR_OK;
}
