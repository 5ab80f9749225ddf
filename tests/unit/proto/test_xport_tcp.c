/* test_xport_tcp.c — the TCP data-plane transport under the two ways a large send can stall:
 *  - messages crossing: one end sends a second request while the other is still writing its reply
 *    to the first, each far larger than the two kernels' socket buffers, each end one thread.
 *    Without the read-ahead of xport_tcp.c both block in send() for ever (the watchdog fails it);
 *  - a peer that stops reading: a send with send_timeout_ms fails with MR_ERR_TIMEOUT instead of
 *    waiting for ever. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <unistd.h>

#include "common/timeutil.h"
#include "proto/dataplane.h"
#include "proto/xport.h"

#define MSG_BYTES  ((size_t)48 << 20) /* well past loopback's autotuned buffers (~10 MB a way) */
#define WATCHDOG_S 60

static void fill(uint8_t *p, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)((i * 2654435761u + seed) >> 13);
}

static int check(const uint8_t *p, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (uint8_t)((i * 2654435761u + seed) >> 13)) return 0;
    return 1;
}

static mr_dp_header header(uint32_t type, uint32_t seq, size_t bytes) {
    mr_dp_header h;
    memset(&h, 0, sizeof h);
    h.magic = MR_DP_MAGIC;
    h.version = MR_DP_VERSION;
    h.kind = (uint16_t)type;
    h.seq = seq;
    h.payload_bytes = (uint32_t)bytes;
    return h;
}

typedef struct server {
    const mr_xport_ops *x;
    mr_xport_listener *l;
    int ok;
} server;

/* The worker: answers requests in order, one thread, recv / send alternating. */
static void *serve(void *arg) {
    server *s = arg;
    mr_xport_conn *c;
    uint8_t *buf = malloc(MSG_BYTES), *reply = malloc(MSG_BYTES);
    s->ok = buf && reply && s->x->accept(s->l, 10000, &c) == MR_OK;
    for (uint32_t i = 0; s->ok && i < 2; i++) {
        mr_dp_header h;
        s->ok = s->x->recv(c, &h, buf, MSG_BYTES, 30000) == MR_OK && h.seq == i &&
                h.payload_bytes == MSG_BYTES && check(buf, MSG_BYTES, 100 + i);
        fill(reply, MSG_BYTES, 200 + i);
        mr_dp_header r = header(MR_DP_REPLY, i, MSG_BYTES);
        s->ok = s->ok && s->x->send(c, &r, reply) == MR_OK;
    }
    if (s->ok) s->x->close(c);
    free(buf);
    free(reply);
    return NULL;
}

static void *watchdog(void *arg) {
    (void)arg;
    sleep(WATCHDOG_S);
    fprintf(stderr,
            "FAIL: crossing messages did not complete in %d s (both ends blocked in send)\n",
            WATCHDOG_S);
    _exit(1);
}

static void test_crossing_messages_complete(void **state) {
    (void)state;
    const mr_xport_ops *x = mr_xport_find("tcp");
    assert_non_null(x);
    mr_xport_params p = {.max_message = MSG_BYTES};
    server s = {x, NULL, 0};
    int port = 0;
    assert_int_equal(x->listen(&p, "127.0.0.1", 0, &s.l, &port), MR_OK);
    pthread_t srv, dog;
    assert_int_equal(pthread_create(&srv, NULL, serve, &s), 0);
    assert_int_equal(pthread_create(&dog, NULL, watchdog, NULL), 0);
    pthread_detach(dog);

    mr_xport_conn *c;
    assert_int_equal(x->connect(&p, "127.0.0.1", port, 10000, &c), MR_OK);
    uint8_t *req = malloc(MSG_BYTES), *buf = malloc(MSG_BYTES);
    assert_non_null(req);
    assert_non_null(buf);
    /* the coordinator's ping-pong: both micro-batches out before the first reply is read */
    for (uint32_t i = 0; i < 2; i++) {
        fill(req, MSG_BYTES, 100 + i);
        mr_dp_header h = header(MR_DP_REQUEST, i, MSG_BYTES);
        assert_int_equal(x->send(c, &h, req), MR_OK);
    }
    /* the first reply arrived (at least partly) while the second request was being sent */
    assert_true(x->buffered && x->buffered(c));
    for (uint32_t i = 0; i < 2; i++) {
        mr_dp_header h;
        assert_int_equal(x->recv(c, &h, buf, MSG_BYTES, 30000), MR_OK);
        assert_int_equal(h.seq, i);
        assert_int_equal(h.payload_bytes, MSG_BYTES);
        assert_true(check(buf, MSG_BYTES, 200 + i));
    }
    assert_false(x->buffered(c));
    pthread_join(srv, NULL);
    assert_true(s.ok);
    x->close(c);
    x->listener_close(s.l);
    free(req);
    free(buf);
}

/* A peer that accepts and never reads: a 48 MB send stalls once the socket buffers are full. */
static void test_send_to_a_peer_that_stopped_reading_times_out(void **state) {
    (void)state;
    const mr_xport_ops *x = mr_xport_find("tcp");
    mr_xport_params p = {.max_message = MSG_BYTES, .send_timeout_ms = 300};
    mr_xport_listener *l;
    int port = 0;
    assert_int_equal(x->listen(&p, "127.0.0.1", 0, &l, &port), MR_OK);
    mr_xport_conn *c, *s;
    assert_int_equal(x->connect(&p, "127.0.0.1", port, 10000, &c), MR_OK);
    assert_int_equal(x->accept(l, 10000, &s), MR_OK);
    uint8_t *req = calloc(1, MSG_BYTES);
    assert_non_null(req);
    mr_dp_header h = header(MR_DP_REQUEST, 1, MSG_BYTES);
    const double t0 = mr_now_s();
    assert_int_equal(x->send(c, &h, req), MR_ERR_TIMEOUT);
    const double waited = mr_now_s() - t0;
    printf("send to a silent peer failed after %.2f s (timeout 0.3 s without progress)\n", waited);
    assert_true(waited < 10.0);
    x->close(c);
    x->close(s);
    x->listener_close(l);
    free(req);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crossing_messages_complete),
        cmocka_unit_test(test_send_to_a_peer_that_stopped_reading_times_out)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
