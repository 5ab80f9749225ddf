/* dataplane.h — the fixed binary header of per-layer expert traffic (no protobuf on this path).
 *
 * Every data-plane message is one mr_dp_header (40 bytes, little-endian, checked by
 * _Static_assert) followed by payload_bytes of payload:
 *   MR_DP_HELLO    coordinator -> worker, first message of a data connection: `seq` carries the
 *                  assignment epoch the worker received on its control connection; no payload.
 *   MR_DP_REQUEST  coordinator -> worker: ids int32 [n][k] (expert id, or -1 for a slot this worker
 *                  does not serve), weights f32 [n][k], activations `dtype` [n][hidden].
 *   MR_DP_REPLY    worker -> coordinator: `dtype` [n][hidden] (the request's dtype), Σ over
 * served slots of weight · expert(x), summed in slot order in f32, then rounded to the dtype;
 * `seq`, `layer` and `micro_batch` echo the request. MR_DP_ERROR
 * either way: payload is a UTF-8 message; the connection is closed after it. Hosts are
 * little-endian (x86-64, aarch64); the build refuses big-endian targets. */
#ifndef MR_DATAPLANE_H
#define MR_DATAPLANE_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "moerack's wire formats are little-endian; big-endian hosts are not supported"
#endif

#define MR_DP_MAGIC   0x5044524du /* "MRDP" */
#define MR_DP_VERSION 1

typedef enum mr_dp_kind {
    MR_DP_HELLO = 1,
    MR_DP_REQUEST = 2,
    MR_DP_REPLY = 3,
    MR_DP_ERROR = 4,
} mr_dp_kind;

typedef enum mr_dp_dtype {
    MR_DP_F32 = 0,
    MR_DP_BF16 = 1,
} mr_dp_dtype;

typedef struct mr_dp_header {
    uint32_t magic;         /* MR_DP_MAGIC; written by the sender */
    uint16_t version;       /* MR_DP_VERSION */
    uint16_t kind;          /* mr_dp_kind */
    uint16_t layer;         /* decoder layer of the batch */
    uint16_t micro_batch;   /* which in-flight micro-batch, echoed in the reply */
    uint32_t seq;           /* request sequence number (HELLO: assignment epoch) */
    uint32_t n_tokens;      /* tokens in the batch */
    uint16_t top_k;         /* slots per token */
    uint16_t dtype;         /* mr_dp_dtype of the activations */
    uint32_t hidden;        /* activation width */
    uint32_t reserved;      /* zero */
    uint64_t payload_bytes; /* bytes following the header */
} mr_dp_header;
_Static_assert(sizeof(mr_dp_header) == 40, "data-plane header is 40 bytes on the wire");

/* What a receiver accepts; anything else is a protocol error. */
typedef struct mr_dp_limits {
    uint32_t n_layers;
    uint32_t max_tokens;
    uint32_t top_k;
    uint32_t hidden;
    uint64_t max_payload;
} mr_dp_limits;

/* Payload size a REQUEST / REPLY with these fields must have. */
uint64_t mr_dp_request_bytes(uint32_t n_tokens, uint32_t top_k, uint32_t hidden, mr_dp_dtype dt);
uint64_t mr_dp_reply_bytes(uint32_t n_tokens, uint32_t hidden, mr_dp_dtype dt);
/* The largest payload either side of a data connection sends for batches of up to max_tokens
 * (f32 activations, the widest dtype; error messages are far smaller). RDMA slots are sized by
 * it: each connection registers 2 x 4 slots of this many bytes. */
uint64_t mr_dp_max_payload(uint32_t max_tokens, uint32_t top_k, uint32_t hidden);

/* Validates every field of a received header against the limits and the expected kinds (a bit
 * mask of 1 << kind). On failure writes a one-line reason into why (cap bytes) and returns
 * MR_ERR_PROTO. Pure function: used by every transport and by the fuzz target. */
mr_status mr_dp_header_check(const mr_dp_header *h, const mr_dp_limits *lim, unsigned kinds,
                             char *why, size_t cap);

void mr_dp_header_init(mr_dp_header *h, mr_dp_kind kind);

#endif
