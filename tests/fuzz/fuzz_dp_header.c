/* libFuzzer target: the data-plane header validator on arbitrary 40-byte headers and limits. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proto/dataplane.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < sizeof(mr_dp_header) + 4) return 0;
    mr_dp_header h;
    memcpy(&h, data, sizeof h);
    /* bias towards valid magic/version so the deeper checks run */
    if (data[sizeof h] & 1) {
        h.magic = MR_DP_MAGIC;
        h.version = MR_DP_VERSION;
    }
    mr_dp_limits lim = {80, 8192, 2, 6144, 1ull << 30};
    char why[256];
    unsigned kinds = data[sizeof h + 1];
    if (mr_dp_header_check(&h, &lim, kinds, why, sizeof why) == MR_OK &&
        (h.kind == MR_DP_REQUEST || h.kind == MR_DP_REPLY)) {
        /* an accepted header's payload size is exactly what its fields imply */
        uint64_t want =
            h.kind == MR_DP_REQUEST
                ? mr_dp_request_bytes(h.n_tokens, h.top_k, h.hidden, (mr_dp_dtype)h.dtype)
                : mr_dp_reply_bytes(h.n_tokens, h.hidden, (mr_dp_dtype)h.dtype);
        if (want != h.payload_bytes || h.layer >= lim.n_layers || h.n_tokens > lim.max_tokens)
            __builtin_trap();
    }
    return 0;
}
