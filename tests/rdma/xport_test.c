/* xport_test — transport tests that run over real verbs (inside the Soft-RoCE VMs) or TCP.
 *
 *   xport_test --transport rdma|tcp --role both|server|client --addr IP [--port P] TEST
 * TEST: sizes | order | slow | peers | disconnect | hostile-version | hostile-slot |
 *       hostile-length | all (every test, in one process: server thread + client)
 * (The transport benchmark is `moerack bench transport`.)
 * With --role server / client the two halves run on different nodes (two guests).
 * Exit 0 pass, 1 fail. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <infiniband/verbs.h>
#include <pthread.h>
#include <rdma/rdma_cma.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/rng.h"
#include "common/timeutil.h"
#include "proto/xport.h"

static const mr_xport_ops *X;
static const char *g_addr = "127.0.0.1";
static int g_port = 7480, g_failures;
static mr_xport_params g_params = {.max_message = 16u << 20};

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            fflush(stdout);                                                                        \
            g_failures++;                                                                          \
        }                                                                                          \
    } while (0)

static void fill(uint8_t *p, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)((i * 131 + seed * 7 + (i >> 8)) & 0xff);
}
static int verify(const uint8_t *p, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (uint8_t)((i * 131 + seed * 7 + (i >> 8)) & 0xff)) return 0;
    return 1;
}

static void header(mr_dp_header *h, uint32_t seq, uint64_t bytes) {
    mr_dp_header_init(h, MR_DP_REQUEST);
    h->seq = seq;
    h->layer = (uint16_t)(seq % 80);
    h->micro_batch = (uint16_t)(seq & 1);
    h->payload_bytes = bytes;
}

static mr_xport_conn *connect_retry(void) {
    mr_xport_conn *c = NULL;
    for (int i = 0; i < 100; i++) {
        if (X->connect(&g_params, g_addr, g_port, 3000, &c) == MR_OK) return c;
        usleep(100000);
    }
    return NULL;
}

/* ---- server side: echo the payload back (or a short ack for big ones) -------------------------
 */

typedef struct server_arg {
    mr_xport_listener *l;
    int n_conns;     /* connections to serve, each until it closes */
    int delay_ms;    /* slow receiver */
    int echo;        /* 1: reply with the same payload; 0: reply with 8 bytes (checksum ok flag) */
    int errors_seen; /* connections that ended in an error (not a clean close) */
    int served;
    int accepted;
    int stop; /* set by the tests when they are done with this in-process server */
    int lone; /* --role server: no stop flag will come; end when the client is done */
} server_arg;

static void *serve_conn(void *argp) {
    void **a = argp;
    server_arg *sa = a[0];
    mr_xport_conn *c = a[1];
    free(a);
    uint8_t *buf = malloc(g_params.max_message);
    uint32_t expect = 0;
    for (;;) {
        mr_dp_header h;
        mr_status st = X->recv(c, &h, buf, g_params.max_message, 120000);
        if (st != MR_OK) {
            /* a clean close is not an error; a protocol error, timeout or I/O failure is */
            if (st != MR_ERR_CLOSED) __atomic_add_fetch(&sa->errors_seen, 1, __ATOMIC_SEQ_CST);
            break;
        }
        if (sa->delay_ms) usleep((useconds_t)sa->delay_ms * 1000);
        int ok = h.seq == expect && verify(buf, (size_t)h.payload_bytes, h.seq);
        expect++;
        mr_dp_header r;
        mr_dp_header_init(&r, MR_DP_REPLY);
        r.seq = h.seq;
        r.layer = h.layer;
        r.micro_batch = h.micro_batch;
        uint64_t flag = ok ? 1 : 0;
        if (sa->echo) {
            r.payload_bytes = h.payload_bytes;
            if (!ok) memset(buf, 0, (size_t)h.payload_bytes);
            if (X->send(c, &r, buf) != MR_OK) break;
        } else {
            r.payload_bytes = sizeof flag;
            if (X->send(c, &r, &flag) != MR_OK) break;
        }
    }
    __atomic_add_fetch(&sa->served, 1, __ATOMIC_SEQ_CST);
    free(buf);
    X->close(c);
    return NULL;
}

static void *server_main(void *argp) {
    server_arg *sa = argp;
    pthread_t th[64];
    int n = 0;
    double idle_since = mr_now_s();
    while (n < sa->n_conns && !__atomic_load_n(&sa->stop, __ATOMIC_SEQ_CST)) {
        mr_xport_conn *c;
        mr_status st = X->accept(sa->l, 200, &c);
        if (st == MR_ERR_TIMEOUT) {
            /* a lone server: the client is done once every connection has ended and none came
             * for 3 s (or none came at all for 60 s) */
            int all_ended = n > 0 && __atomic_load_n(&sa->served, __ATOMIC_SEQ_CST) == n;
            if (sa->lone && mr_now_s() - idle_since > (all_ended ? 3 : 60)) break;
            continue;
        }
        idle_since = mr_now_s();
        if (st != MR_OK) continue; /* a refused peer: keep listening */
        void **a = malloc(2 * sizeof *a);
        a[0] = sa;
        a[1] = c;
        pthread_create(&th[n++], NULL, serve_conn, a);
        __atomic_add_fetch(&sa->accepted, 1, __ATOMIC_SEQ_CST);
    }
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    return NULL;
}

/* ---- tests (client side) --------------------------------------------------------------------- */

static int roundtrip(mr_xport_conn *c, uint32_t seq, size_t n, uint8_t *buf, uint8_t *rbuf,
                     int echo) {
    mr_dp_header h, r;
    header(&h, seq, n);
    fill(buf, n, seq);
    if (X->send(c, &h, buf) != MR_OK) return 0;
    if (X->recv(c, &r, rbuf, g_params.max_message, 60000) != MR_OK) return 0;
    if (r.seq != seq) return 0;
    if (echo) return r.payload_bytes == n && verify(rbuf, n, seq);
    uint64_t flag;
    memcpy(&flag, rbuf, sizeof flag);
    return r.payload_bytes == 8 && flag == 1;
}

static void test_sizes(void) {
    mr_xport_conn *c = connect_retry();
    CHECK(c, "connect");
    if (!c) return;
    uint8_t *buf = malloc(g_params.max_message), *rbuf = malloc(g_params.max_message);
    size_t sizes[64];
    int ns = 0;
    for (size_t s = 1; s <= g_params.max_message - 40; s *= 2) {
        sizes[ns++] = s;
        if (s > 1 && s < (1u << 20)) sizes[ns++] = s + 1, sizes[ns++] = s - 1;
    }
    sizes[ns++] = g_params.max_message - 40; /* the largest message a slot holds */
    int ok = 0;
    for (int i = 0; i < ns; i++) {
        int r = roundtrip(c, (uint32_t)i, sizes[i], buf, rbuf, 1);
        CHECK(r, "echo of %zu bytes", sizes[i]);
        ok += r;
    }
    printf("%s sizes: %d/%d messages of 1 B .. %zu B echoed intact\n", ok == ns ? "PASS" : "FAIL",
           ok, ns, sizes[ns - 1]);
    free(buf);
    free(rbuf);
    X->close(c);
}

static void test_order(void) {
    mr_xport_conn *c = connect_retry();
    CHECK(c, "connect");
    if (!c) return;
    uint8_t buf[4096], rbuf[64];
    /* pipeline: keep up to 3 messages in flight, check replies come back in order */
    int n = 2000, sent = 0, got = 0, bad = 0;
    while (got < n) {
        while (sent < n && sent - got < 3) {
            mr_dp_header h;
            size_t len = 16 + (size_t)(sent * 37 % 4000);
            header(&h, (uint32_t)sent, len);
            fill(buf, len, (uint64_t)sent);
            if (X->send(c, &h, buf) != MR_OK) {
                bad++;
                got = n;
                break;
            }
            sent++;
        }
        mr_dp_header r;
        if (got < n && X->recv(c, &r, rbuf, sizeof rbuf, 30000) != MR_OK) {
            bad++;
            break;
        }
        uint64_t flag;
        memcpy(&flag, rbuf, 8);
        if (r.seq != (uint32_t)got || flag != 1) bad++;
        got++;
    }
    printf("%s order: %d WRITE_WITH_IMM messages, pipelined 3 deep, all arrived intact and in "
           "order (%d bad)\n",
           bad == 0 ? "PASS" : "FAIL", n, bad);
    CHECK(bad == 0, "ordering");
    X->close(c);
}

/* The server sleeps 30 ms per message; the client pushes 24 without waiting for replies until
 * credits run out: sends must block (not overwrite), and everything must come back intact. */
static void test_slow(void) {
    mr_xport_conn *c = connect_retry();
    CHECK(c, "connect");
    if (!c) return;
    uint8_t buf[65536], rbuf[64];
    double t0 = mr_now_s();
    int n = 24, sent = 0, got = 0, bad = 0;
    while (got < n && !bad) {
        /* send as many as the transport lets us (send blocks on credits) */
        if (sent < n && sent - got < 8) {
            mr_dp_header h;
            header(&h, (uint32_t)sent, sizeof buf);
            fill(buf, sizeof buf, (uint64_t)sent);
            if (X->send(c, &h, buf) != MR_OK) bad++;
            sent++;
            continue;
        }
        mr_dp_header r;
        if (X->recv(c, &r, rbuf, sizeof rbuf, 30000) != MR_OK) bad++;
        uint64_t flag;
        memcpy(&flag, rbuf, 8);
        if (r.seq != (uint32_t)got || flag != 1) bad++;
        got++;
    }
    double dt = mr_now_s() - t0;
    printf("%s slow receiver: %d x 64 KiB through a receiver sleeping 30 ms each: %.2f s, %d bad "
           "(no overwrite, no deadlock)\n",
           bad == 0 && dt >= 0.6 ? "PASS" : "FAIL", n, dt, bad);
    CHECK(bad == 0 && dt >= 0.6, "slow receiver");
    X->close(c);
}

typedef struct peer_arg {
    int id, ok;
} peer_arg;

static void *peer_main(void *argp) {
    peer_arg *pa = argp;
    mr_xport_conn *c = connect_retry();
    if (!c) return NULL;
    uint8_t buf[8192], rbuf[8192];
    int ok = 1;
    for (int i = 0; i < 100 && ok; i++)
        ok = roundtrip(c, (uint32_t)i, 100 + (size_t)(pa->id * 997 + i * 13) % 8000, buf, rbuf, 1);
    pa->ok = ok;
    X->close(c);
    return NULL;
}

static void test_peers(int n) {
    pthread_t th[16];
    peer_arg pa[16];
    for (int i = 0; i < n; i++) {
        pa[i] = (peer_arg){i, 0};
        pthread_create(&th[i], NULL, peer_main, &pa[i]);
    }
    int ok = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        ok += pa[i].ok;
    }
    printf("%s peers: %d concurrent connections x 100 echoes: %d intact\n",
           ok == n ? "PASS" : "FAIL", n, ok);
    CHECK(ok == n, "many peers");
}

/* The victim of the disconnect test, run as its own process: connects and sends until killed. */
static void disconnect_victim(void) {
    mr_xport_conn *c = connect_retry();
    uint8_t *buf = malloc(1u << 20);
    for (uint32_t i = 0; c; i++) {
        mr_dp_header h;
        header(&h, i, 1u << 20);
        fill(buf, 1u << 20, i);
        if (X->send(c, &h, buf) != MR_OK) break;
        if (X->recv(c, &h, buf, 1u << 20, 10000) != MR_OK) break; /* the echo */
    }
    _exit(0);
}

/* A separate process connects and is killed in the middle of a transfer; the server must see an
 * error on that connection and keep serving another peer. (Run with the server in this process.)
 * The victim is exec'd, not just forked: a forked child shares this process's verbs file
 * descriptors, so killing it would not tear its queue pair down. */
static void test_disconnect(server_arg *sa, const char *transport) {
    pid_t child = fork();
    if (child == 0) {
        char port[16];
        snprintf(port, sizeof port, "%d", g_port);
        execl("/proc/self/exe", "xport_test", "--transport", transport, "--role", "client",
              "--addr", g_addr, "--port", port, "disconnect-victim", (char *)NULL);
        _exit(127);
    }
    int accepted0 = __atomic_load_n(&sa->accepted, __ATOMIC_SEQ_CST);
    mr_xport_conn *other = connect_retry();
    /* both connected (an emulated guest may take seconds to start the victim), then mid-transfer */
    double tc = mr_now_s();
    while (__atomic_load_n(&sa->accepted, __ATOMIC_SEQ_CST) < accepted0 + 2 && mr_now_s() - tc < 60)
        usleep(20000);
    usleep(300000);
    int before = __atomic_load_n(&sa->served, __ATOMIC_SEQ_CST);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    double t0 = mr_now_s();
    /* the server thread serving the child must notice and end */
    while (__atomic_load_n(&sa->served, __ATOMIC_SEQ_CST) == before && mr_now_s() - t0 < 25)
        usleep(20000);
    double dt = mr_now_s() - t0;
    uint8_t buf[4096], rbuf[4096];
    int still =
        other && roundtrip(other, 0, 3000, buf, rbuf, 1) && roundtrip(other, 1, 10, buf, rbuf, 1);
    int noticed = __atomic_load_n(&sa->served, __ATOMIC_SEQ_CST) > before;
    printf(
        "%s disconnect: peer killed mid-transfer, server noticed after %.2f s; the other peer %s\n",
        noticed && still ? "PASS" : "FAIL", dt, still ? "keeps working" : "BROKE");
    CHECK(noticed && still, "disconnect handling");
    if (other) X->close(other);
}

/* ---- hostile peers (raw verbs, bypassing the transport's own checks) ---------------------------
 */

typedef struct raw_conn {
    struct rdma_cm_id *id;
    struct ibv_mr *mr;
    uint8_t buf[65536];
    uint64_t r_addr;
    uint32_t r_rkey, r_slot;
    int connected;
} raw_conn;

/* Connects with the given private data; returns 0 when established, 1 when rejected. */
static int raw_connect(raw_conn *rc, const void *pdata, uint8_t plen) {
    struct rdma_addrinfo hints = {0}, *res;
    hints.ai_port_space = RDMA_PS_TCP;
    char port[16];
    snprintf(port, sizeof port, "%d", g_port);
    if (rdma_getaddrinfo(g_addr, port, &hints, &res)) return -1;
    struct ibv_qp_init_attr attr = {0};
    attr.cap.max_send_wr = attr.cap.max_recv_wr = 8;
    attr.cap.max_send_sge = attr.cap.max_recv_sge = 1;
    attr.qp_type = IBV_QPT_RC;
    attr.sq_sig_all = 1;
    if (rdma_create_ep(&rc->id, res, NULL, &attr)) return -1;
    rdma_freeaddrinfo(res);
    rc->mr = ibv_reg_mr(rc->id->pd, rc->buf, sizeof rc->buf, IBV_ACCESS_LOCAL_WRITE);
    struct rdma_conn_param cp = {0};
    cp.private_data = pdata;
    cp.private_data_len = plen;
    cp.responder_resources = cp.initiator_depth = 1;
    cp.rnr_retry_count = 7;
    if (rdma_connect(rc->id, &cp)) return 1; /* synchronous ep: rejected comes back here */
    rc->connected = 1;
    const uint8_t *pd = rc->id->event ? rc->id->event->param.conn.private_data : NULL;
    if (pd) {
        memcpy(&rc->r_rkey, pd + 12, 4);
        memcpy(&rc->r_addr, pd + 16, 8);
        memcpy(&rc->r_slot, pd + 8, 4);
    }
    return 0;
}

static void raw_close(raw_conn *rc) {
    if (!rc->id) return;
    /* a synchronous id's rdma_disconnect waits for DISCONNECTED, which a rejected one never gets */
    if (rc->connected) rdma_disconnect(rc->id);
    if (rc->mr) ibv_dereg_mr(rc->mr);
    rdma_destroy_ep(rc->id);
    rc->id = NULL;
}

/* Writes `len` bytes of buf with an immediate; returns the completion status. */
static int raw_write_imm(raw_conn *rc, uint32_t imm, uint32_t len, uint64_t offset) {
    struct ibv_sge sge = {(uintptr_t)rc->buf, len, rc->mr->lkey};
    struct ibv_send_wr wr = {0}, *bad;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.imm_data = htonl(imm);
    wr.wr.rdma.remote_addr = rc->r_addr + offset;
    wr.wr.rdma.rkey = rc->r_rkey;
    if (ibv_post_send(rc->id->qp, &wr, &bad)) return -1;
    struct ibv_wc wc;
    double t0 = mr_now_s();
    while (ibv_poll_cq(rc->id->send_cq, 1, &wc) == 0)
        if (mr_now_s() - t0 > 10) return -2;
    return wc.status;
}

static void test_hostile(server_arg *sa, const char *which) {
    raw_conn rc = {0};
    int before_err = __atomic_load_n(&sa->errors_seen, __ATOMIC_SEQ_CST);
    if (strcmp(which, "version") == 0) {
        uint8_t pd[32] = {0};
        uint32_t magic = 0x4452434du;
        uint16_t version = 99;
        memcpy(pd, &magic, 4);
        memcpy(pd + 4, &version, 2);
        int r = raw_connect(&rc, pd, sizeof pd);
        printf("%s hostile: peer with data-plane version 99 in the CM private data was %s\n",
               r == 1 ? "PASS" : "FAIL", r == 1 ? "rejected" : "NOT rejected");
        CHECK(r == 1, "wrong version accepted");
    } else {
        /* a real moerack connection first (to get valid private data), then raw writes */
        uint8_t pd[32] = {0};
        uint32_t magic = 0x4452434du, slot_size = 4096 + 64, rkey = 0;
        uint16_t version = MR_DP_VERSION, slots = 4;
        uint64_t addr = 0;
        memcpy(pd, &magic, 4);
        memcpy(pd + 4, &version, 2);
        memcpy(pd + 6, &slots, 2);
        memcpy(pd + 8, &slot_size, 4);
        memcpy(pd + 12, &rkey, 4);
        memcpy(pd + 16, &addr, 8);
        int r = raw_connect(&rc, pd, sizeof pd);
        CHECK(r == 0, "raw connect");
        int st = -1;
        if (r == 0 && strcmp(which, "slot") == 0) {
            st = raw_write_imm(&rc, 9u /* slot 9 of 4 */, 64, 0);
        } else if (r == 0) { /* header claims 1000 payload bytes, 100 written */
            mr_dp_header h;
            header(&h, 0, 1000);
            memcpy(rc.buf, &h, sizeof h);
            st = raw_write_imm(&rc, 0u, (uint32_t)sizeof h + 100, 0);
        }
        (void)st;
        double t0 = mr_now_s();
        while (__atomic_load_n(&sa->errors_seen, __ATOMIC_SEQ_CST) == before_err &&
               mr_now_s() - t0 < 10)
            usleep(20000);
        int seen = __atomic_load_n(&sa->errors_seen, __ATOMIC_SEQ_CST) > before_err;
        printf("%s hostile: %s -> the server closed that connection with a protocol error\n",
               seen ? "PASS" : "FAIL",
               strcmp(which, "slot") == 0 ? "immediate naming slot 9 of 4"
                                          : "header length disagreeing with the write");
        CHECK(seen, "hostile %s not rejected", which);
    }
    raw_close(&rc);
    /* the server is alive for others */
    mr_xport_conn *c = connect_retry();
    uint8_t buf[256], rbuf[256];
    int ok = c && roundtrip(c, 0, 200, buf, rbuf, 1);
    CHECK(ok, "server dead after hostile input");
    if (c) X->close(c);
}

int main(int argc, char **argv) {
    static const struct option opts[] = {{"transport", required_argument, 0, 't'},
                                         {"role", required_argument, 0, 'r'},
                                         {"addr", required_argument, 0, 'a'},
                                         {"port", required_argument, 0, 'p'},
                                         {"busy-poll", no_argument, 0, 'b'},
                                         {"max-message", required_argument, 0, 'm'},
                                         {0, 0, 0, 0}};
    const char *transport = "rdma", *role = "both";
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 't':
            transport = optarg;
            break;
        case 'r':
            role = optarg;
            break;
        case 'a':
            g_addr = optarg;
            break;
        case 'p':
            g_port = atoi(optarg);
            break;
        case 'b':
            g_params.busy_poll = 1;
            break;
        case 'm': /* slot payload size; every connection registers 2 x 4 slots of it */
            g_params.max_message = strtoull(optarg, NULL, 0);
            if (g_params.max_message < 4096) return 2;
            break;
        default:
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr,
                "usage: xport_test --transport rdma|tcp --role both|server|client --addr IP "
                "[--busy-poll] [--max-message BYTES] TEST\n");
        return 2;
    }
    const char *test = argv[optind];
    setvbuf(stdout, NULL, _IOLBF, 0);
    mr_log_set_short(1);
    mr_log_set_level(MR_LOG_LEVEL_WARN);
    signal(SIGPIPE, SIG_IGN);
    X = mr_xport_find(transport);
    if (!X) return 2;
    int all = strcmp(test, "all") == 0;
    server_arg sa = {0};
    pthread_t srv;
    int server_here = strcmp(role, "client") != 0;
    if (server_here) {
        if (X->listen(&g_params, g_addr, g_port, &sa.l, NULL) != MR_OK) return 1;
        sa.n_conns = 64;
        sa.echo = 1;
        if (strcmp(role, "server") == 0) {
            /* serve until the client side is done (no accept for 30 s) */
            sa.lone = 1;
            if (strcmp(test, "slow") == 0) sa.delay_ms = 30, sa.echo = 0;
            if (strcmp(test, "order") == 0) sa.echo = 0;
            server_main(&sa);
            X->listener_close(sa.l);
            printf("server: served %d connections\n", sa.served);
            return 0;
        }
        pthread_create(&srv, NULL, server_main, &sa);
    }
    if (strcmp(test, "disconnect-victim") == 0) disconnect_victim();
    if (all || !strcmp(test, "sizes")) test_sizes();
    if (all || !strcmp(test, "order")) {
        sa.echo = 0;
        test_order();
        sa.echo = 1;
    }
    if (all || !strcmp(test, "slow")) {
        sa.delay_ms = 30;
        sa.echo = 0;
        test_slow();
        sa.delay_ms = 0;
        sa.echo = 1;
    }
    if (all || !strcmp(test, "peers")) test_peers(8);
    if (server_here && (all || !strcmp(test, "disconnect"))) test_disconnect(&sa, transport);
    if (server_here && strcmp(transport, "rdma") == 0) {
        if (all || !strcmp(test, "hostile-version")) test_hostile(&sa, "version");
        if (all || !strcmp(test, "hostile-slot")) test_hostile(&sa, "slot");
        if (all || !strcmp(test, "hostile-length")) test_hostile(&sa, "length");
    }
    if (server_here) {
        __atomic_store_n(&sa.stop, 1, __ATOMIC_SEQ_CST);
        pthread_join(srv, NULL);
        X->listener_close(sa.l);
    }
    printf("%s: %d failure(s)\n", test, g_failures);
    return g_failures ? 1 : 0;
}
