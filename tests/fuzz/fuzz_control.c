/* libFuzzer target: the coordinator's control-plane input path — the incremental frame reader
 * and the protobuf Envelope decoder — on arbitrary bytes. Must never crash or leak. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* 1. the whole input as one envelope body */
    Moerack__Envelope *env = NULL;
    if (mr_frame_decode(data, size, &env) == MR_OK) {
        (void)mr_frame_msg_name(env);
        mr_frame_free(env);
    }
    /* 2. the input as a stream of length-prefixed frames */
    mr_frame_reader r;
    mr_frame_reader_init(&r, 1u << 16);
    r.buf = malloc(size + 1);
    if (!r.buf) return 0;
    memcpy(r.buf, data, size);
    r.len = size;
    r.cap = size + 1;
    for (int i = 0; i < 64; i++) {
        env = NULL;
        mr_status st = mr_frame_reader_next(&r, &env);
        if (st == MR_OK)
            mr_frame_free(env);
        else
            break;
    }
    mr_frame_reader_fini(&r);
    return 0;
}
