/* xport_test — transport tests that run over real verbs (inside the Soft-RoCE VMs) or TCP.
 *
 *   xport_test --transport rdma|tcp --role both|server|client --addr IP [--port P]
 *              [--region host|dmabuf] TEST
 * TEST: sizes | order | slow | peers | disconnect | hostile-version | hostile-slot |
 *       hostile-length | hostile-credit | hostile-region-offer | hostile-region-write |
 *       hostile-region-length | dmabuf-fallback | mixed | poll-mixed | hostile-mem |
 *       all (every test but the region and memory-polling ones, in one process: server thread +
 *       client)
 * --busy-poll: both sides busy-poll; rdma connections without regions then carry their messages
 * as memory-polled writes (proto/rdma_mem.h), which the tests check they do. poll-mixed: the
 * client polls the other way from the server (one direction memory-polled, the other with
 * immediates). hostile-mem (with --busy-poll): a raw peer writes malformed memory-polled
 * messages.
 * (The transport benchmark is `moerack bench transport`.)
 * With --role server / client the two halves run on different nodes (two guests).
 * --region host: both sides give every connection a receive region of their own host memory
 * (mmap'd, with a guard page behind it that must stay untouched); payloads are received with
 * recv_zc() and checked where they lie. --region dmabuf: the same memory handed over as a dmabuf
 * (a memfd stands in for one: the guests' kernel has no udmabuf, and rxe registers no dmabuf at
 * all), so the transport must fall back to host staging and say so.
 * Exit 0 pass, 1 fail. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <infiniband/verbs.h>
#include <pthread.h>
#include <rdma/rdma_cma.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/rng.h"
#include "common/timeutil.h"
#include "proto/rdma_mem.h"
#include "proto/rdma_pdata.h"
#include "proto/xport.h"

static const mr_xport_ops *X;
static const char *g_addr = "127.0.0.1";
static int g_port = 7480, g_failures;
static mr_xport_params g_params = {.max_message = 16u << 20}; /* the client's */
static mr_xport_params g_srv_params;                          /* the server's */

/* Log lines of the transport that say a connection chose memory-polled messages, by direction
 * ("both ways", "to this side", "to the peer"); other lines at WARN and above go to stderr. */
static int g_mem_both, g_mem_to_us, g_mem_to_peer;

static void log_sink(void *user, mr_log_level level, unsigned subsys, const char *line) {
    (void)user;
    (void)subsys;
    if (strstr(line, "memory-polled messages both ways"))
        __atomic_add_fetch(&g_mem_both, 1, __ATOMIC_SEQ_CST);
    else if (strstr(line, "memory-polled messages to this side"))
        __atomic_add_fetch(&g_mem_to_us, 1, __ATOMIC_SEQ_CST);
    else if (strstr(line, "memory-polled messages to the peer"))
        __atomic_add_fetch(&g_mem_to_peer, 1, __ATOMIC_SEQ_CST);
    if (level <= MR_LOG_LEVEL_WARN) fprintf(stderr, "%s\n", line);
}

enum { REGION_NONE, REGION_HOST, REGION_DMABUF };
static int g_region; /* --region */

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

/* ---- receive regions: pieces of mmap'd memory with a guard page behind each ------------------ */

#define GUARD      4096
#define GUARD_BYTE 0xa5
#define MAX_PIECES 16

typedef struct region_pool {
    pthread_mutex_t mu;
    int dmabuf; /* memfd-backed, its fd handed over as the dmabuf */
    int limit;  /* pieces handed out at once at most (0: MAX_PIECES) */
    int in_use, handed, guard_errors;
    struct {
        uint8_t *base;
        size_t len;
        int fd, used;
    } p[MAX_PIECES];
} region_pool;

static region_pool g_srv_pool = {.mu = PTHREAD_MUTEX_INITIALIZER},
                   g_cli_pool = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int pool_get(void *user, size_t need, mr_xport_region *r) {
    region_pool *pl = user;
    pthread_mutex_lock(&pl->mu);
    int i = 0, limit = pl->limit ? pl->limit : MAX_PIECES;
    while (i < MAX_PIECES && pl->p[i].used) i++;
    if (i == MAX_PIECES || pl->in_use >= limit) {
        pthread_mutex_unlock(&pl->mu);
        return -1;
    }
    int fd = -1;
    uint8_t *m;
    if (pl->dmabuf) {
        fd = memfd_create("xport_test_region", MFD_CLOEXEC);
        if (fd < 0 || ftruncate(fd, (off_t)(need + GUARD)) != 0) {
            if (fd >= 0) close(fd);
            pthread_mutex_unlock(&pl->mu);
            return -1;
        }
        m = mmap(NULL, need + GUARD, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    } else {
        m = mmap(NULL, need + GUARD, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    }
    if (m == MAP_FAILED) {
        if (fd >= 0) close(fd);
        pthread_mutex_unlock(&pl->mu);
        return -1;
    }
    memset(m + need, GUARD_BYTE, GUARD);
    pl->p[i].base = m;
    pl->p[i].len = need;
    pl->p[i].fd = fd;
    pl->p[i].used = 1;
    pl->in_use++;
    pl->handed++;
    r->base = m;
    r->len = need;
    r->dmabuf_fd = fd;
    r->dmabuf_offset = 0;
    r->cookie = &pl->p[i];
    pthread_mutex_unlock(&pl->mu);
    return 0;
}

/* Takes a piece back: the guard page behind it must be untouched. */
static void pool_put(void *user, const mr_xport_region *r) {
    region_pool *pl = user;
    pthread_mutex_lock(&pl->mu);
    for (int i = 0; i < MAX_PIECES; i++) {
        if (!pl->p[i].used || pl->p[i].base != r->base) continue;
        for (size_t b = 0; b < GUARD; b++)
            if (pl->p[i].base[pl->p[i].len + b] != GUARD_BYTE) {
                pl->guard_errors++;
                break;
            }
        munmap(pl->p[i].base, pl->p[i].len + GUARD);
        if (pl->p[i].fd >= 0) close(pl->p[i].fd);
        pl->p[i].used = 0;
        pl->in_use--;
    }
    pthread_mutex_unlock(&pl->mu);
}

/* 1 if [p, p + n) lies inside one piece in use. */
static int pool_contains(region_pool *pl, const void *p, size_t n) {
    const uint8_t *q = p;
    int in = 0;
    pthread_mutex_lock(&pl->mu);
    for (int i = 0; i < MAX_PIECES && !in; i++)
        in = pl->p[i].used && q >= pl->p[i].base && q + n <= pl->p[i].base + pl->p[i].len;
    pthread_mutex_unlock(&pl->mu);
    return in;
}

static int pool_in_use(region_pool *pl) {
    pthread_mutex_lock(&pl->mu);
    int n = pl->in_use;
    pthread_mutex_unlock(&pl->mu);
    return n;
}

static void use_regions(mr_xport_params *p, region_pool *pl) {
    p->region_get = pool_get;
    p->region_put = pool_put;
    p->region_user = pl;
}

static int label_is(mr_xport_conn *c, int remote, const char *prefix) {
    const char *l = X->conn_label ? X->conn_label(c, remote) : X->label;
    return strncmp(l, prefix, strlen(prefix)) == 0;
}

/* A received message's payload lies where the connection's label says: in a piece of the pool
 * (host-region, dmabuf) or in the transport's host memory. */
static int placed_right(mr_xport_conn *c, const mr_xport_msg *m, region_pool *pl) {
    if (!m->h.payload_bytes) return m->payload == NULL;
    const int region = label_is(c, 0, "rdma/host-region") || label_is(c, 0, "rdma/dmabuf");
    if (m->in_region != region || !m->payload) return 0;
    return !region || pool_contains(pl, m->payload, (size_t)m->h.payload_bytes);
}

/* Receives one message: zero-copy when the connection has recv_zc and regions are on (*m then
 * holds it until X->release), else copied into buf. *data points at the payload either way. */
static mr_status recv_any(mr_xport_conn *c, int zc, mr_xport_msg *m, uint8_t *buf, size_t cap,
                          int timeout_ms, const uint8_t **data) {
    if (zc) {
        mr_status st = X->recv_zc(c, m, timeout_ms);
        *data = m->payload;
        return st;
    }
    *data = buf;
    return X->recv(c, &m->h, buf, cap, timeout_ms);
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
    int n_conns;        /* connections to serve, each until it closes */
    int delay_ms;       /* slow receiver */
    int start_delay_ms; /* sleep before the first receive of a connection */
    int echo;        /* 1: reply with the same payload; 0: reply with 8 bytes (checksum ok flag) */
    int errors_seen; /* connections that ended in an error (not a clean close) */
    int misplaced;   /* zero-copy payloads not where the connection's label says */
    int served;
    int accepted;
    int stop; /* set by the tests when they are done with this in-process server */
    int lone; /* --role server: no stop flag will come; end when the client is done */
    pthread_mutex_t mu;
    char labels[4][96]; /* conn_label(c, 0) of the last connections accepted */
    int n_labels;
} server_arg;

/* Whether a server sees a label among its connections' (the mixed test). */
static int server_saw_label(server_arg *sa, const char *label) {
    int seen = 0;
    pthread_mutex_lock(&sa->mu);
    for (int i = 0; i < sa->n_labels && i < 4; i++) seen |= strcmp(sa->labels[i], label) == 0;
    pthread_mutex_unlock(&sa->mu);
    return seen;
}

static void *serve_conn(void *argp) {
    void **a = argp;
    server_arg *sa = a[0];
    mr_xport_conn *c = a[1];
    free(a);
    const int zc = g_region != REGION_NONE && X->recv_zc;
    uint8_t *buf = malloc(g_params.max_message);
    uint32_t expect = 0;
    if (X->conn_label) {
        pthread_mutex_lock(&sa->mu);
        snprintf(sa->labels[sa->n_labels++ % 4], 96, "%s", X->conn_label(c, 0));
        pthread_mutex_unlock(&sa->mu);
    }
    if (sa->start_delay_ms) usleep((useconds_t)sa->start_delay_ms * 1000);
    for (;;) {
        mr_xport_msg m;
        const uint8_t *data;
        mr_status st = recv_any(c, zc, &m, buf, g_params.max_message, 120000, &data);
        if (st != MR_OK) {
            /* a clean close is not an error; a protocol error, timeout or I/O failure is */
            if (st != MR_ERR_CLOSED) __atomic_add_fetch(&sa->errors_seen, 1, __ATOMIC_SEQ_CST);
            break;
        }
        const mr_dp_header h = m.h;
        if (zc && !placed_right(c, &m, &g_srv_pool))
            __atomic_add_fetch(&sa->misplaced, 1, __ATOMIC_SEQ_CST);
        if (sa->delay_ms) usleep((useconds_t)sa->delay_ms * 1000);
        int ok = h.seq == expect && verify(data, (size_t)h.payload_bytes, h.seq);
        expect++;
        mr_dp_header r;
        mr_dp_header_init(&r, MR_DP_REPLY);
        r.seq = h.seq;
        r.layer = h.layer;
        r.micro_batch = h.micro_batch;
        uint64_t flag = ok ? 1 : 0;
        if (sa->echo) { /* zero-copy: straight from where it arrived, released after the send */
            r.payload_bytes = h.payload_bytes;
            if (!ok) {
                memset(buf, 0, (size_t)h.payload_bytes);
                data = buf;
            }
            st = X->send(c, &r, data);
            if (zc && X->release(c, &m) != MR_OK) st = MR_ERR_INVALID;
        } else {
            if (zc && X->release(c, &m) != MR_OK) break;
            r.payload_bytes = sizeof flag;
            st = X->send(c, &r, &flag);
        }
        if (st != MR_OK) break;
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

static int g_misplaced; /* client side: zero-copy replies not where the label says */

static int roundtrip(mr_xport_conn *c, uint32_t seq, size_t n, uint8_t *buf, uint8_t *rbuf,
                     int echo) {
    mr_dp_header h;
    header(&h, seq, n);
    fill(buf, n, seq);
    if (X->send(c, &h, buf) != MR_OK) return 0;
    const int zc = g_region != REGION_NONE && X->recv_zc;
    mr_xport_msg m;
    const uint8_t *data;
    if (recv_any(c, zc, &m, rbuf, g_params.max_message, 60000, &data) != MR_OK) return 0;
    if (zc && !placed_right(c, &m, &g_cli_pool))
        __atomic_add_fetch(&g_misplaced, 1, __ATOMIC_SEQ_CST);
    const mr_dp_header r = m.h;
    int ok = r.seq == seq;
    if (ok && echo) {
        ok = r.payload_bytes == n && verify(data, n, seq);
    } else if (ok) {
        uint64_t flag = 0;
        if (r.payload_bytes == 8) memcpy(&flag, data, sizeof flag);
        ok = flag == 1;
    }
    if (zc && X->release(c, &m) != MR_OK) ok = 0;
    return ok;
}

static void test_sizes(void) {
    const int mem0 = __atomic_load_n(&g_mem_both, __ATOMIC_SEQ_CST);
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
    double t0 = mr_now_s();
    for (int i = 0; i < ns; i++) {
        int r = roundtrip(c, (uint32_t)i, sizes[i], buf, rbuf, 1);
        CHECK(r, "echo of %zu bytes", sizes[i]);
        ok += r;
    }
    printf("%s sizes: %d/%d messages of 1 B .. %zu B echoed intact in %.2f s\n",
           ok == ns ? "PASS" : "FAIL", ok, ns, sizes[ns - 1], mr_now_s() - t0);
    if (g_params.busy_poll && X->recv_zc) {
        /* busy polling: memory-polled messages both ways, except to a side with a region */
        const int mem = __atomic_load_n(&g_mem_both, __ATOMIC_SEQ_CST) > mem0;
        const int want = g_region == REGION_NONE;
        printf("%s sizes: messages %s memory-polled writes (%s)\n", mem == want ? "PASS" : "FAIL",
               mem ? "went as" : "did not go as",
               want ? "busy polling, no regions" : "regions take split messages");
        CHECK(mem == want, "memory polling chosen wrongly");
    }
    if (g_region == REGION_HOST && X->conn_label) {
        /* both directions zero-copy: the client's replies and (its peer label) the server's
         * requests land in regions, each payload where its label says */
        int here = label_is(c, 0, "rdma/host-region"), there = label_is(c, 1, "rdma/host-region");
        int misplaced = __atomic_load_n(&g_misplaced, __ATOMIC_SEQ_CST);
        printf("%s sizes: zero-copy both ways (client receives %s, server receives %s), %d "
               "payloads misplaced on the client\n",
               here && there && !misplaced ? "PASS" : "FAIL", X->conn_label(c, 0),
               X->conn_label(c, 1), misplaced);
        CHECK(here && there && !misplaced, "region labels / placement");
    }
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
    printf("%s order: %d %s messages, pipelined 3 deep, all arrived intact and in order (%d bad)\n",
           bad == 0 ? "PASS" : "FAIL", n,
           g_params.busy_poll && X->recv_zc ? "busy-polled" : "WRITE_WITH_IMM", bad);
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

/* Both sides hand their regions over as dmabufs (run with --region dmabuf): rxe registers none,
 * so every connection must fall back to host staging by itself, say so in its labels (here and,
 * through the connection offer, at the peer), and carry every size intact. */
static void test_dmabuf_fallback(server_arg *sa) {
    mr_xport_conn *c = connect_retry();
    CHECK(c, "connect");
    if (!c) return;
    const size_t sizes[] = {1, 40, 4096, 65537, 1u << 20, g_params.max_message - 40};
    uint8_t *buf = malloc(g_params.max_message), *rbuf = malloc(g_params.max_message);
    int ok = 0, n = (int)(sizeof sizes / sizeof *sizes);
    for (int i = 0; i < n; i++) ok += roundtrip(c, (uint32_t)i, sizes[i], buf, rbuf, 1);
    const char *staged = "rdma/host-staged (dmabuf: ";
    int here = label_is(c, 0, staged), there = label_is(c, 1, staged);
    int srv = 0;
    if (sa) {
        pthread_mutex_lock(&sa->mu);
        srv = sa->n_labels > 0 &&
              strncmp(sa->labels[(sa->n_labels - 1) % 4], staged, strlen(staged)) == 0;
        pthread_mutex_unlock(&sa->mu);
    }
    int misplaced = __atomic_load_n(&g_misplaced, __ATOMIC_SEQ_CST);
    int pass = ok == n && here && there && (!sa || srv) && !misplaced;
    printf("%s dmabuf fallback: %d/%d sizes 1 B .. %zu B intact; client receives \"%s\", server "
           "receives \"%s\"%s\n",
           pass ? "PASS" : "FAIL", ok, n, sizes[n - 1], X->conn_label(c, 0), X->conn_label(c, 1),
           sa ? (srv ? " (and says so itself)" : " (but the server's own label DIFFERS)") : "");
    CHECK(pass, "dmabuf fallback");
    free(buf);
    free(rbuf);
    X->close(c);
}

/* One server with a single region to give (run with --region host): peer A gets it and offers
 * its own for replies, peer B offers none, peer C offers one but the server has none left. The
 * three talk at once; every payload must arrive intact, where each connection's label says. */
typedef struct mixed_arg {
    mr_xport_params p;
    mr_xport_conn *c;
    int ok;
} mixed_arg;

static void *mixed_main(void *argp) {
    mixed_arg *ma = argp;
    uint8_t *buf = malloc(70000), *rbuf = malloc(g_params.max_message);
    int ok = 1;
    for (int i = 0; i < 150 && ok; i++)
        ok = roundtrip(ma->c, (uint32_t)i, 1 + (size_t)(i * 7919) % 65536, buf, rbuf, 1);
    ma->ok = ok;
    free(buf);
    free(rbuf);
    return NULL;
}

static void test_mixed(server_arg *sa) {
    for (int i = 0; i < 100 && pool_in_use(&g_srv_pool) > 0; i++) usleep(50000);
    g_srv_pool.limit = 1;
    mixed_arg ma[3];
    for (int i = 0; i < 3; i++) {
        ma[i] = (mixed_arg){.p = g_params};
        if (i == 1) ma[i].p.region_get = NULL, ma[i].p.region_put = NULL;
        for (int t = 0; t < 50 && !ma[i].c; t++)
            if (X->connect(&ma[i].p, g_addr, g_port, 3000, &ma[i].c) != MR_OK) usleep(100000);
    }
    CHECK(ma[0].c && ma[1].c && ma[2].c, "connect");
    if (!ma[0].c || !ma[1].c || !ma[2].c) return;
    const char *want[3][2] = {{"rdma/host-region", "rdma/host-region"},
                              {"rdma/host", "rdma/host"},
                              {"rdma/host-region", "rdma/host"}};
    int labels = 1;
    char got[3][2][96];
    for (int i = 0; i < 3; i++) {
        for (int r = 0; r < 2; r++) {
            snprintf(got[i][r], sizeof got[i][r], "%s", X->conn_label(ma[i].c, r));
            labels &= strcmp(got[i][r], want[i][r]) == 0;
        }
    }
    pthread_t th[3];
    for (int i = 0; i < 3; i++) pthread_create(&th[i], NULL, mixed_main, &ma[i]);
    int ok = 0;
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        ok += ma[i].ok;
        X->close(ma[i].c);
    }
    int srv =
        !sa || (server_saw_label(sa, "rdma/host-region") && server_saw_label(sa, "rdma/host"));
    int misplaced = __atomic_load_n(&g_misplaced, __ATOMIC_SEQ_CST) +
                    (sa ? __atomic_load_n(&sa->misplaced, __ATOMIC_SEQ_CST) : 0);
    int pass = ok == 3 && labels && srv && !misplaced;
    printf("%s mixed: one server, peers A (region both ways), B (none), C (its own only): %d/3 x "
           "150 echoes intact, labels %s, %d payloads misplaced\n",
           pass ? "PASS" : "FAIL", ok, labels && srv ? "as expected" : "WRONG", misplaced);
    for (int i = 0; i < 3 && !labels; i++)
        printf("  peer %c: receives %s, server receives %s (wanted %s, %s)\n", 'A' + i, got[i][0],
               got[i][1], want[i][0], want[i][1]);
    CHECK(pass, "mixed peers");
    g_srv_pool.limit = 0;
}

/* The client busy-polls the other way from the server: one direction of the connection carries
 * memory-polled messages, the other immediates; both sides must say so and every size arrive. */
static void test_poll_mixed(void) {
    const int us0 = __atomic_load_n(&g_mem_to_us, __ATOMIC_SEQ_CST),
              peer0 = __atomic_load_n(&g_mem_to_peer, __ATOMIC_SEQ_CST);
    mr_xport_params p = g_params;
    p.busy_poll = !g_srv_params.busy_poll;
    mr_xport_conn *c = NULL;
    for (int i = 0; i < 100 && X->connect(&p, g_addr, g_port, 3000, &c) != MR_OK; i++)
        usleep(100000);
    CHECK(c, "connect");
    if (!c) return;
    const size_t sizes[] = {
        1, 7, 8, 40, 207, 208, 209, 4096, 65537, 1u << 20, g_params.max_message - 40};
    uint8_t *buf = malloc(g_params.max_message), *rbuf = malloc(g_params.max_message);
    int ok = 0, n = (int)(sizeof sizes / sizeof *sizes), small = 0;
    for (int i = 0; i < n; i++) ok += roundtrip(c, (uint32_t)i, sizes[i], buf, rbuf, 1);
    for (int i = 0; i < 300; i++)
        small += roundtrip(c, (uint32_t)(n + i), 1 + (size_t)(i * 37) % 300, buf, rbuf, 1);
    const int us = __atomic_load_n(&g_mem_to_us, __ATOMIC_SEQ_CST) > us0,
              peer = __atomic_load_n(&g_mem_to_peer, __ATOMIC_SEQ_CST) > peer0;
    const int pass = ok == n && small == 300 && us && peer;
    printf("%s poll-mixed: %s client, %s server: %d/%d sizes 1 B .. %zu B and %d/300 small "
           "echoes intact; memory-polled one way (%s), immediates the other (%s)\n",
           pass ? "PASS" : "FAIL", p.busy_poll ? "busy-polling" : "event-driven",
           g_srv_params.busy_poll ? "busy-polling" : "event-driven", ok, n, sizes[n - 1], small,
           us ? "said" : "NOT said", peer ? "said" : "NOT said");
    CHECK(pass, "mixed polling");
    free(buf);
    free(rbuf);
    X->close(c);
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
        char *args[] = {"xport_test",
                        "--transport",
                        (char *)transport,
                        "--role",
                        "client",
                        "--addr",
                        (char *)g_addr,
                        "--port",
                        port,
                        "disconnect-victim",
                        NULL,
                        NULL};
        if (g_params.busy_poll) args[9] = "--busy-poll", args[10] = "disconnect-victim";
        execv("/proc/self/exe", args);
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
    mr_rdma_pdata rpd; /* the server's accept reply, zero-filled */
} raw_conn;

/* Private data of a well-behaved peer (4 slots of 4 KiB at address 0, rkey 0) with flags. */
static void raw_pdata(mr_rdma_pdata *pd, uint16_t flags) {
    memset(pd, 0, sizeof *pd);
    pd->magic = MR_RDMA_PD_MAGIC;
    pd->version = MR_DP_VERSION;
    pd->slots = 4;
    pd->slot_size = 4096 + 64;
    pd->flags = flags;
}

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
        uint8_t n = rc->id->event->param.conn.private_data_len;
        memcpy(&rc->rpd, pd, n < sizeof rc->rpd ? n : sizeof rc->rpd);
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

/* Writes `len` bytes of buf to (addr, rkey), with an immediate when opcode says; returns the
 * completion status. */
static int raw_write(raw_conn *rc, enum ibv_wr_opcode opcode, uint32_t imm, uint32_t len,
                     uint64_t addr, uint32_t rkey) {
    struct ibv_sge sge = {(uintptr_t)rc->buf, len, rc->mr->lkey};
    struct ibv_send_wr wr = {0}, *bad;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = opcode;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.imm_data = htonl(imm);
    wr.wr.rdma.remote_addr = addr;
    wr.wr.rdma.rkey = rkey;
    if (ibv_post_send(rc->id->qp, &wr, &bad)) return -1;
    struct ibv_wc wc;
    double t0 = mr_now_s();
    while (ibv_poll_cq(rc->id->send_cq, 1, &wc) == 0)
        if (mr_now_s() - t0 > 10) return -2;
    return wc.status;
}

/* A write with an immediate into the server's receive slots, `offset` bytes from slot 0. */
static int raw_write_imm(raw_conn *rc, uint32_t imm, uint32_t len, uint64_t offset) {
    return raw_write(rc, IBV_WR_RDMA_WRITE_WITH_IMM, imm, len, rc->r_addr + offset, rc->r_rkey);
}

/* The immediate of a well-formed message header in slot `slot`. */
static uint32_t imm_of(const mr_dp_header *h, uint32_t slot) {
    return slot | (uint32_t)(h->micro_batch & 0xff) << 8 | (uint32_t)(h->layer & 0x7fff) << 16;
}

/* The server still serves a well-behaved peer. */
static void server_alive(void) {
    mr_xport_conn *c = connect_retry();
    uint8_t buf[256], rbuf[256];
    int ok = c && roundtrip(c, 0, 200, buf, rbuf, 1);
    CHECK(ok, "server dead after hostile input");
    if (c) X->close(c);
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
    server_alive();
}

/* Waits up to 10 s for *counter to pass `before`; 1 if it did. */
static int wait_past(int *counter, int before) {
    double t0 = mr_now_s();
    while (__atomic_load_n(counter, __ATOMIC_SEQ_CST) == before && mr_now_s() - t0 < 10)
        usleep(20000);
    return __atomic_load_n(counter, __ATOMIC_SEQ_CST) > before;
}

/* Five header-only messages into the four slots of a receiver that has not read any yet: the
 * fifth came without a credit. (The server sleeps 1.5 s before its first receive.) */
static void test_hostile_credit(server_arg *sa) {
    raw_conn rc = {0};
    mr_rdma_pdata pd;
    raw_pdata(&pd, 0); /* a peer of the layout without regions: whole messages */
    int before = __atomic_load_n(&sa->errors_seen, __ATOMIC_SEQ_CST);
    sa->start_delay_ms = 1500;
    int r = raw_connect(&rc, &pd, sizeof pd);
    CHECK(r == 0, "raw connect");
    int wrote = 0;
    for (uint32_t i = 0; r == 0 && i < 5; i++) {
        mr_dp_header h;
        header(&h, i, 0);
        memcpy(rc.buf, &h, sizeof h);
        wrote += raw_write_imm(&rc, imm_of(&h, i % 4), sizeof h, (uint64_t)(i % 4) * rc.r_slot) ==
                 IBV_WC_SUCCESS;
    }
    int seen = wait_past(&sa->errors_seen, before);
    sa->start_delay_ms = 0;
    printf("%s hostile: %d messages into 4 unread slots -> the fifth had no credit: %s\n",
           seen && wrote == 5 ? "PASS" : "FAIL", wrote,
           seen ? "protocol error, connection closed" : "NOT noticed");
    CHECK(seen && wrote == 5, "write without a credit not rejected");
    raw_close(&rc);
    server_alive();
}

/* Malformed memory-polled messages from a raw peer that offers MEM_WRITE to a busy-polling
 * server (run with --busy-poll), which asks for them in its accept reply:
 *   trailer  head word of message 0, header, payload, and the trailer of message 1: never whole
 *   length   a head word whose length passes the end of the slot: never whole
 *   header   head word == trailer, but the header claims 200 payload bytes where they say 100
 *   seq      a whole, consistent message 1 where message 0 is due
 *   credit   five whole messages into four unread slots: the fifth overwrites the first
 *   imm      a WRITE_WITH_IMM where memory-polled messages were agreed
 * Each time the server must close that connection with a protocol error (the never-whole ones
 * after MR_XPORT_BODY_TIMEOUT_MS) and keep serving others. */
static void test_hostile_mem(server_arg *sa) {
    const char *what[] = {"trailer", "length", "header", "seq", "credit", "imm"};
    const int n = (int)(sizeof what / sizeof *what);
    int passed = 0;
    for (int v = 0; v < n; v++) {
        raw_conn rc = {0};
        mr_rdma_pdata pd;
        raw_pdata(&pd, 0);
        pd.features = MR_RDMA_PD_MEM_WRITE;
        const int before = __atomic_load_n(&sa->errors_seen, __ATOMIC_SEQ_CST);
        if (v == 4) sa->start_delay_ms = 1500;
        const int r = raw_connect(&rc, &pd, sizeof pd);
        CHECK(r == 0, "raw connect");
        const int asked = r == 0 && (rc.rpd.features & MR_RDMA_PD_MEM_POLL);
        CHECK(asked, "the server asked for no memory-polled messages (run with --busy-poll)");
        if (!asked) {
            sa->start_delay_ms = 0;
            raw_close(&rc);
            return;
        }
        mr_dp_header h;
        const uint32_t pb = 100;
        header(&h, 0, pb);
        fill(rc.buf + 1024, pb, 0);
        size_t len = mr_rdma_mem_encode(rc.buf, &h, rc.buf + 1024, 0, 0);
        const size_t tpos = len - 8;
        uint64_t w;
        memcpy(&w, rc.buf, 8);
        int wrote = 1;
        if (v == 0) { /* the trailer of the next message */
            const uint64_t t = mr_rdma_mem_word((uint32_t)(40 + pb), 1, 0);
            memcpy(rc.buf + tpos, &t, 8);
        } else if (v == 1) { /* a length that reaches past the slot; its "trailer" written */
            w = mr_rdma_mem_word(rc.r_slot, 0, 0);
            memcpy(rc.buf, &w, 8);
            memcpy(rc.buf + tpos, &w, 8);
        } else if (v == 2) {
            const uint64_t bad = 200;
            memcpy(rc.buf + 8 + offsetof(mr_dp_header, payload_bytes), &bad, 8);
        } else if (v == 3) {
            len = mr_rdma_mem_encode(rc.buf, &h, rc.buf + 1024, 1, 0);
        }
        if (v <= 3) {
            wrote = raw_write(&rc, IBV_WR_RDMA_WRITE, 0, (uint32_t)len, rc.r_addr, rc.r_rkey) ==
                    IBV_WC_SUCCESS;
        } else if (v == 4) {
            for (uint32_t i = 0; i < 5 && wrote; i++) {
                header(&h, i, pb);
                len = mr_rdma_mem_encode(rc.buf, &h, rc.buf + 1024, (uint16_t)i, 0);
                wrote = raw_write(&rc, IBV_WR_RDMA_WRITE, 0, (uint32_t)len,
                                  rc.r_addr + (uint64_t)(i % 4) * rc.r_slot,
                                  rc.r_rkey) == IBV_WC_SUCCESS;
            }
        } else {
            memcpy(rc.buf, &h, sizeof h);
            wrote = raw_write_imm(&rc, imm_of(&h, 0), sizeof h, 0) == IBV_WC_SUCCESS;
        }
        const int seen = wait_past(&sa->errors_seen, before);
        sa->start_delay_ms = 0;
        printf("%s hostile-mem: %s -> %s\n", seen && wrote ? "PASS" : "FAIL", what[v],
               !wrote ? "the raw writes FAILED"
               : seen ? "protocol error, connection closed"
                      : "NOT noticed");
        CHECK(seen && wrote, "hostile memory-polled message (%s) not rejected", what[v]);
        passed += seen && wrote;
        raw_close(&rc);
        server_alive();
    }
    printf("%s hostile-mem: %d/%d malformed memory-polled messages refused, server alive\n",
           passed == n ? "PASS" : "FAIL", passed, n);
}

/* A listener that answers one connection request with `pd` as its accept reply. */
typedef struct bad_listener {
    int port, done;
    mr_rdma_pdata pd;
} bad_listener;

static void *bad_listener_main(void *arg) {
    bad_listener *bl = arg;
    struct rdma_addrinfo hints = {0}, *res;
    hints.ai_flags = RAI_PASSIVE;
    hints.ai_port_space = RDMA_PS_TCP;
    char port[16];
    snprintf(port, sizeof port, "%d", bl->port);
    struct rdma_cm_id *lid = NULL, *id = NULL;
    if (rdma_getaddrinfo(g_addr, port, &hints, &res) == 0) {
        struct ibv_qp_init_attr attr = {0};
        attr.cap.max_send_wr = attr.cap.max_recv_wr = 8;
        attr.cap.max_send_sge = attr.cap.max_recv_sge = 1;
        attr.qp_type = IBV_QPT_RC;
        if (rdma_create_ep(&lid, res, NULL, &attr) == 0 && rdma_listen(lid, 1) == 0 &&
            rdma_get_request(lid, &id) == 0) {
            struct rdma_conn_param cp = {0};
            cp.private_data = &bl->pd;
            cp.private_data_len = sizeof bl->pd;
            cp.responder_resources = cp.initiator_depth = 1;
            cp.rnr_retry_count = 7;
            if (rdma_accept(id, &cp) == 0) usleep(500000);
            rdma_destroy_ep(id);
        }
        rdma_freeaddrinfo(res);
        if (lid) rdma_destroy_ep(lid);
    }
    __atomic_store_n(&bl->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

/* Bad region offers both ways: in a connection request (the listener refuses it before any verb
 * runs) and in an accept reply (connect() fails with a protocol error). */
static void test_hostile_region_offer(void) {
    struct {
        const char *what;
        uint32_t slot_size;
        uint64_t addr;
        uint16_t flags;
        uint8_t mode;
    } bad[] = {
        {"region slots of 100 bytes", 100, 1u << 20, 3, MR_RDMA_RX_REGION_HOST},
        {"region slots of 2 GiB", 2u << 30, 1u << 20, 3, MR_RDMA_RX_REGION_DMABUF},
        {"a region that wraps the address space", 4096, UINT64_MAX - 8192, 3,
         MR_RDMA_RX_REGION_HOST},
        {"a region in host-slot mode", 4096, 1u << 20, 3, MR_RDMA_RX_HOST},
        {"unknown flag bits", 0, 0, 0x81, MR_RDMA_RX_HOST},
    };
    int refused = 0, n = (int)(sizeof bad / sizeof *bad);
    for (int i = 0; i < n; i++) {
        raw_conn rc = {0};
        mr_rdma_pdata pd;
        raw_pdata(&pd, bad[i].flags);
        pd.mode = bad[i].mode;
        pd.region_slot_size = bad[i].slot_size;
        pd.region_addr = bad[i].addr;
        pd.region_rkey = 1;
        int r = raw_connect(&rc, &pd, sizeof pd);
        refused += r == 1;
        CHECK(r == 1, "connection request with %s accepted", bad[i].what);
        raw_close(&rc);
    }
    printf("%s hostile: %d/%d connection requests with bad region offers refused\n",
           refused == n ? "PASS" : "FAIL", refused, n);
    /* the other way: a listener offering 100-byte region slots to our connect() */
    bad_listener bl = {.port = g_port + 1};
    raw_pdata(&bl.pd, MR_RDMA_PD_CAN_SPLIT | MR_RDMA_PD_REGION);
    bl.pd.mode = MR_RDMA_RX_REGION_HOST;
    bl.pd.region_slot_size = 100;
    bl.pd.region_addr = 1u << 20;
    pthread_t th;
    pthread_create(&th, NULL, bad_listener_main, &bl);
    mr_xport_conn *c = NULL;
    mr_status st = MR_ERR_IO;
    for (int i = 0; i < 50 && st != MR_OK && st != MR_ERR_PROTO; i++) {
        st = X->connect(&g_params, g_addr, bl.port, 3000, &c);
        if (st != MR_OK && st != MR_ERR_PROTO) usleep(100000);
    }
    if (st == MR_OK) X->close(c);
    printf("%s hostile: an accept reply offering 100-byte region slots -> connect() %s\n",
           st == MR_ERR_PROTO ? "PASS" : "FAIL", mr_status_str(st));
    CHECK(st == MR_ERR_PROTO, "bad region offer in an accept reply accepted");
    for (int i = 0; i < 100 && !__atomic_load_n(&bl.done, __ATOMIC_SEQ_CST); i++) usleep(100000);
    if (__atomic_load_n(&bl.done, __ATOMIC_SEQ_CST))
        pthread_join(th, NULL);
    else
        pthread_detach(th);
    server_alive();
}

/* A peer that can split connects to a server with regions and misbehaves with the region it was
 * offered: "write" writes just past its end (the device must refuse: the bytes behind the region
 * stay untouched), "length" sends a header whose payload is larger than a region slot, and one
 * that comes with bytes after the header (split messages are headers alone). */
static void test_hostile_region(server_arg *sa, const char *which) {
    for (int variant = 0; variant < (strcmp(which, "write") == 0 ? 1 : 2); variant++) {
        raw_conn rc = {0};
        mr_rdma_pdata pd;
        raw_pdata(&pd, MR_RDMA_PD_CAN_SPLIT);
        int before_err = __atomic_load_n(&sa->errors_seen, __ATOMIC_SEQ_CST);
        int before_served = __atomic_load_n(&sa->served, __ATOMIC_SEQ_CST);
        int r = raw_connect(&rc, &pd, sizeof pd);
        CHECK(r == 0, "raw connect");
        int region = r == 0 && (rc.rpd.flags & MR_RDMA_PD_REGION);
        CHECK(region, "the server offered no region (run with --region host)");
        if (!region) {
            raw_close(&rc);
            return;
        }
        const uint64_t end = rc.rpd.region_addr + (uint64_t)rc.rpd.slots * rc.rpd.region_slot_size;
        if (strcmp(which, "write") == 0) {
            memset(rc.buf, 0x5a, 64);
            int st = raw_write(&rc, IBV_WR_RDMA_WRITE, 0, 64, end, rc.rpd.region_rkey);
            raw_close(&rc);
            int ended = wait_past(&sa->served, before_served);
            int guard = __atomic_load_n(&g_srv_pool.guard_errors, __ATOMIC_SEQ_CST);
            printf("%s hostile: a write of 64 bytes just past the %u x %u-byte region -> %s "
                   "(completion status %d); connection %s; bytes behind the region %s\n",
                   st != IBV_WC_SUCCESS && ended && !guard ? "PASS" : "FAIL", rc.rpd.slots,
                   rc.rpd.region_slot_size,
                   st == IBV_WC_REM_ACCESS_ERR ? "refused by the device" : "NOT refused", st,
                   ended ? "closed" : "NOT closed", guard ? "OVERWRITTEN" : "untouched");
            CHECK(st != IBV_WC_SUCCESS && ended && !guard, "write past the region");
        } else {
            mr_dp_header h;
            header(&h, 0, variant == 0 ? (uint64_t)rc.rpd.region_slot_size + 64 : 16);
            memcpy(rc.buf, &h, sizeof h);
            raw_write_imm(&rc, imm_of(&h, 0), sizeof h + (variant == 0 ? 0 : 16), 0);
            int seen = wait_past(&sa->errors_seen, before_err);
            printf("%s hostile: %s -> %s\n", seen ? "PASS" : "FAIL",
                   variant == 0 ? "a header claiming more payload than a region slot holds"
                                : "a split message with bytes after its header",
                   seen ? "protocol error, connection closed" : "NOT noticed");
            CHECK(seen, "hostile region length not rejected");
            raw_close(&rc);
        }
    }
    server_alive();
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        {"transport", required_argument, 0, 't'}, {"role", required_argument, 0, 'r'},
        {"addr", required_argument, 0, 'a'},      {"port", required_argument, 0, 'p'},
        {"busy-poll", no_argument, 0, 'b'},       {"max-message", required_argument, 0, 'm'},
        {"region", required_argument, 0, 'g'},    {0, 0, 0, 0}};
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
        case 'g':
            g_region = strcmp(optarg, "host") == 0     ? REGION_HOST
                       : strcmp(optarg, "dmabuf") == 0 ? REGION_DMABUF
                                                       : -1;
            if (g_region < 0) return 2;
            break;
        default:
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr,
                "usage: xport_test --transport rdma|tcp --role both|server|client --addr IP "
                "[--busy-poll] [--max-message BYTES] [--region host|dmabuf] TEST\n");
        return 2;
    }
    const char *test = argv[optind];
    setvbuf(stdout, NULL, _IOLBF, 0);
    mr_log_set_short(1);
    mr_log_set_level(MR_LOG_LEVEL_INFO); /* the sink counts the paths chosen, prints WARN and up */
    mr_log_set_sink(log_sink, NULL);
    signal(SIGPIPE, SIG_IGN);
    X = mr_xport_find(transport);
    if (!X) return 2;
    g_srv_params = g_params;
    if (g_region != REGION_NONE) {
        g_srv_pool.dmabuf = g_cli_pool.dmabuf = g_region == REGION_DMABUF;
        use_regions(&g_srv_params, &g_srv_pool);
        use_regions(&g_params, &g_cli_pool);
    }
    int all = strcmp(test, "all") == 0;
    server_arg sa = {0};
    pthread_mutex_init(&sa.mu, NULL);
    pthread_t srv;
    int server_here = strcmp(role, "client") != 0;
    if (server_here) {
        if (X->listen(&g_srv_params, g_addr, g_port, &sa.l, NULL) != MR_OK) return 1;
        sa.n_conns = 64;
        sa.echo = 1;
        if (strcmp(role, "server") == 0) {
            /* serve until the client side is done (no accept for 30 s) */
            sa.lone = 1;
            if (strcmp(test, "slow") == 0) sa.delay_ms = 30, sa.echo = 0;
            if (strcmp(test, "order") == 0) sa.echo = 0;
            server_main(&sa);
            X->listener_close(sa.l);
            printf("server: served %d connections (receiving %s), %d payloads misplaced, %d "
                   "regions overrun\n",
                   sa.served, sa.n_labels ? sa.labels[(sa.n_labels - 1) % 4] : X->label,
                   sa.misplaced, g_srv_pool.guard_errors);
            return sa.misplaced || g_srv_pool.guard_errors ? 1 : 0;
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
        if (all || !strcmp(test, "hostile-credit")) test_hostile_credit(&sa);
        if (!strcmp(test, "hostile-region-offer")) test_hostile_region_offer();
        if (!strcmp(test, "hostile-region-write")) test_hostile_region(&sa, "write");
        if (!strcmp(test, "hostile-region-length")) test_hostile_region(&sa, "length");
    }
    if (!strcmp(test, "poll-mixed")) test_poll_mixed();
    if (server_here && !strcmp(test, "hostile-mem") && strcmp(transport, "rdma") == 0)
        test_hostile_mem(&sa);
    if (!strcmp(test, "dmabuf-fallback")) test_dmabuf_fallback(server_here ? &sa : NULL);
    if (!strcmp(test, "mixed")) test_mixed(server_here ? &sa : NULL);
    if (server_here) {
        __atomic_store_n(&sa.stop, 1, __ATOMIC_SEQ_CST);
        pthread_join(srv, NULL);
        X->listener_close(sa.l);
        /* every connection closed: every region handed back, none overrun, every zero-copy
         * payload where its connection's label said */
        int left = pool_in_use(&g_srv_pool) + pool_in_use(&g_cli_pool);
        int guard = g_srv_pool.guard_errors + g_cli_pool.guard_errors;
        int misplaced = sa.misplaced + g_misplaced;
        if (g_region != REGION_NONE || left || guard || misplaced) {
            printf("%s regions: %d + %d handed out, %d not returned, %d overrun, %d payloads "
                   "misplaced\n",
                   left || guard || misplaced ? "FAIL" : "PASS", g_srv_pool.handed,
                   g_cli_pool.handed, left, guard, misplaced);
            CHECK(!left && !guard && !misplaced, "regions");
        }
    }
    printf("%s: %d failure(s)\n", test, g_failures);
    return g_failures ? 1 : 0;
}
