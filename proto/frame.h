/* frame.h — length-prefixed protobuf frames on the control plane.
 *
 * A frame is a u32 little-endian length L (1 <= L <= max_frame) followed by L bytes of a
 * moerack.Envelope. Blocking helpers (with a timeout) serve the worker and the CLI clients; the
 * incremental reader serves the coordinator's event loop. Decoding rejects frames whose length is
 * out of bounds, that do not parse, or whose envelope carries no message: the caller logs the
 * protocol error and closes that connection. */
#ifndef MR_FRAME_H
#define MR_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "proto/moerack.pb-c.h"

#define MR_PROTO_MAJOR       1
#define MR_PROTO_MINOR       0
#define MR_FRAME_MAX_DEFAULT (32u << 20)

/* Decodes one envelope from `len` bytes; NULL-safe free with mr_frame_free. */
mr_status mr_frame_decode(const uint8_t *buf, size_t len, Moerack__Envelope **out);
void mr_frame_free(Moerack__Envelope *env);

/* Encodes length prefix + envelope into a new buffer (caller frees). */
mr_status mr_frame_encode(const Moerack__Envelope *env, uint8_t **buf, size_t *len);

/* Blocking send / receive on a socket. timeout_ms < 0 waits forever. */
mr_status mr_frame_send(int fd, const Moerack__Envelope *env, int timeout_ms);
mr_status mr_frame_recv(int fd, size_t max_frame, int timeout_ms, Moerack__Envelope **out);

/* Incremental reader for non-blocking sockets. */
typedef struct mr_frame_reader {
    uint8_t *buf;
    size_t len, cap, max_frame;
} mr_frame_reader;

void mr_frame_reader_init(mr_frame_reader *r, size_t max_frame);
void mr_frame_reader_fini(mr_frame_reader *r);
/* Reads what the socket has; MR_ERR_CLOSED on EOF, MR_ERR_IO on error. */
mr_status mr_frame_reader_fill(mr_frame_reader *r, int fd);
/* MR_OK with *out set, MR_ERR_NOT_FOUND if no complete frame yet, MR_ERR_PROTO if invalid. */
mr_status mr_frame_reader_next(mr_frame_reader *r, Moerack__Envelope **out);

/* Short name of an envelope's message ("hello", "assign", ...), for logs. */
const char *mr_frame_msg_name(const Moerack__Envelope *env);

/* Convenience: send an Error{code, message} envelope (best effort, short timeout). */
void mr_frame_send_error(int fd, mr_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
