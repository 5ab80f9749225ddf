/* bench_transport.c — `moerack bench transport`: the data-plane transport alone, by message size.
 *
 * Measures what perftest measures, so the two can stand in one table:
 *   latency    ping-pong of n-byte messages (the server echoes each); one-way = round trip / 2,
 *              like ib_write_lat; p50 and p99 over the iterations.
 *   bandwidth  the client streams n-byte messages that the server consumes without replying (the
 *              transport's credits are the only back-pressure), then one 8-byte ack ends the
 *              stream: bytes / time, one direction, like ib_write_bw.
 * The header's `layer` tells the server what to do with a message (BENCH_*). */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "proto/dataplane.h"
#include "proto/xport.h"

enum { BENCH_ECHO = 0, BENCH_SINK = 1, BENCH_SINK_ACK = 2, BENCH_DONE = 3 };

typedef struct bench_opts {
    const mr_xport_ops *x;
    mr_xport_params p;
    const char *addr;
    int port;
    size_t min_bytes, max_bytes;
    int scale;      /* latency iterations cap x scale */
    double seconds; /* time per measurement */
} bench_opts;

/* Serves one client until it sends BENCH_DONE or goes away. */
static void serve_one(const bench_opts *o, mr_xport_conn *c) {
    uint8_t *buf = malloc(o->p.max_message);
    for (; buf;) {
        mr_dp_header h;
        if (o->x->recv(c, &h, buf, o->p.max_message, -1) != MR_OK || h.layer == BENCH_DONE) break;
        if (h.layer == BENCH_SINK) continue;
        mr_dp_header r;
        mr_dp_header_init(&r, MR_DP_REPLY);
        r.seq = h.seq;
        r.payload_bytes = h.layer == BENCH_ECHO ? h.payload_bytes : 8;
        if (o->x->send(c, &r, buf) != MR_OK) break;
    }
    free(buf);
    o->x->close(c);
}

typedef struct server_ctx {
    const bench_opts *o;
    mr_xport_listener *l;
    int n_clients; /* serve this many, one after the other */
} server_ctx;

static void *server_main(void *arg) {
    server_ctx *s = arg;
    for (int i = 0; i < s->n_clients; i++) {
        mr_xport_conn *c;
        if (s->o->x->accept(s->l, 120000, &c) != MR_OK) break;
        serve_one(s->o, c);
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static mr_status send_msg(const bench_opts *o, mr_xport_conn *c, int what, uint32_t seq, size_t n,
                          const void *buf) {
    mr_dp_header h;
    mr_dp_header_init(&h, MR_DP_REQUEST);
    h.layer = (uint16_t)what;
    h.seq = seq;
    h.payload_bytes = n;
    return o->x->send(c, &h, buf);
}

/* One row of the table; returns 0 on success. Each half runs for o->seconds (at least 5
 * messages, at most 2000 x scale for latency), so slow links (emulated guests) stay quick. */
static int measure(const bench_opts *o, mr_xport_conn *c, size_t n, uint8_t *buf, uint8_t *rbuf) {
    int cap = 2000 * o->scale;
    double *lat = malloc((size_t)cap * sizeof *lat);
    if (!lat) return -1;
    mr_dp_header r;
    int lat_iters = 0;
    for (double start = mr_now_s(); lat_iters < cap;) {
        double t0 = mr_now_s();
        if (send_msg(o, c, BENCH_ECHO, (uint32_t)lat_iters, n, buf) != MR_OK ||
            o->x->recv(c, &r, rbuf, o->p.max_message, 60000) != MR_OK || r.payload_bytes != n) {
            free(lat);
            return -1;
        }
        double t1 = mr_now_s();
        lat[lat_iters++] = (t1 - t0) / 2 * 1e6;
        if (lat_iters >= 5 && t1 - start > o->seconds) break;
    }
    qsort(lat, (size_t)lat_iters, sizeof *lat, cmp_double);
    /* bandwidth: a stream of n-byte messages, then a 0-byte one the server acknowledges */
    double t0 = mr_now_s();
    long long sent = 0;
    while (sent < 5 || mr_now_s() - t0 < o->seconds) {
        if (send_msg(o, c, BENCH_SINK, (uint32_t)sent, n, buf) != MR_OK) {
            free(lat);
            return -1;
        }
        sent++;
    }
    int ok = send_msg(o, c, BENCH_SINK_ACK, (uint32_t)sent, 0, buf) == MR_OK &&
             o->x->recv(c, &r, rbuf, o->p.max_message, 120000) == MR_OK;
    double bw = (double)n * (double)sent / (mr_now_s() - t0) / 1e6;
    double mean = 0;
    for (int i = 0; i < lat_iters; i++) mean += lat[i] / lat_iters;
    printf("%-10zu %12.2f %12.2f %12.1f %8d %8lld %12.2f\n", n, lat[lat_iters / 2],
           lat[(int)((lat_iters - 1) * 0.99)], bw, lat_iters, sent, mean);
    fflush(stdout);
    free(lat);
    return ok ? 0 : -1;
}

static int run_client(const bench_opts *o) {
    mr_xport_conn *c = NULL;
    for (int i = 0; i < 100 && o->x->connect(&o->p, o->addr, o->port, 3000, &c) != MR_OK; i++)
        usleep(100000);
    if (!c) {
        MR_LOG_ERROR(MR_LOG_CLI, "bench transport: cannot connect to %s:%d over %s", o->addr,
                     o->port, o->x->name);
        return 1;
    }
    uint8_t *buf = malloc(o->p.max_message), *rbuf = malloc(o->p.max_message);
    int rc = buf && rbuf ? 0 : 1;
    if (buf) memset(buf, 0x5a, o->p.max_message);
    printf("# moerack bench transport: %s to %s:%d%s; latency one-way (round trip / 2), "
           "bandwidth one direction\n",
           o->x->name, o->addr, o->port,
           o->p.busy_cq_only ? ", busy poll (completion queue only)"
           : o->p.busy_poll  ? ", busy poll"
                             : "");
    printf("%-10s %12s %12s %12s %8s %8s %12s\n", "bytes", "lat_p50_us", "lat_p99_us", "bw_MB/s",
           "lat_n", "bw_n", "lat_mean_us");
    for (size_t n = o->min_bytes; rc == 0 && n <= o->max_bytes; n *= 4)
        if (measure(o, c, n, buf, rbuf) != 0) {
            MR_LOG_ERROR(MR_LOG_CLI, "bench transport: the connection failed at %zu bytes", n);
            rc = 1;
        }
    if (rc == 0) send_msg(o, c, BENCH_DONE, 0, 0, NULL);
    free(buf);
    free(rbuf);
    o->x->close(c);
    return rc;
}

static size_t parse_size(const char *opt, const char *s) {
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end == 'K' || *end == 'k')
        v <<= 10, end++;
    else if (*end == 'M' || *end == 'm')
        v <<= 20, end++;
    if (end == s || *end || v < 1 || v > (256ull << 20)) {
        MR_LOG_ERROR(MR_LOG_CLI, "%s: \"%s\" is not a size from 1 to 256M (e.g. 64, 4K, 16M)", opt,
                     s);
        return 0;
    }
    return (size_t)v;
}

int mr_bench_transport(int argc, char **argv) {
    static const struct option opts[] = {{"transport", required_argument, 0, 't'},
                                         {"role", required_argument, 0, 'r'},
                                         {"addr", required_argument, 0, 'a'},
                                         {"port", required_argument, 0, 'p'},
                                         {"busy-poll", no_argument, 0, 'b'},
                                         {"busy-cq", no_argument, 0, 'B'},
                                         {"min", required_argument, 0, 'n'},
                                         {"max", required_argument, 0, 'x'},
                                         {"scale", required_argument, 0, 's'},
                                         {"clients", required_argument, 0, 'c'},
                                         {"seconds", required_argument, 0, 'S'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    bench_opts o = {.addr = "127.0.0.1",
                    .port = 7470,
                    .min_bytes = 64,
                    .max_bytes = 16u << 20,
                    .scale = 1,
                    .seconds = 1.0};
    const char *transport = "tcp", *role = "both";
    long long clients = 1;
    optind = 1;
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 't':
            transport = optarg;
            break;
        case 'r':
            role = optarg;
            break;
        case 'a':
            o.addr = optarg;
            break;
        case 'p':
            if ((o.port = (int)mr_cli_parse_int("--port", optarg, 1, 65535)) < 0) return 2;
            break;
        case 'b':
            o.p.busy_poll = 1;
            break;
        case 'B': /* busy polling as before memory-polled messages, for comparison */
            o.p.busy_poll = o.p.busy_cq_only = 1;
            break;
        case 'n':
            if (!(o.min_bytes = parse_size("--min", optarg))) return 2;
            break;
        case 'x':
            if (!(o.max_bytes = parse_size("--max", optarg))) return 2;
            break;
        case 's':
            if ((o.scale = (int)mr_cli_parse_int("--scale", optarg, 1, 1000)) < 0) return 2;
            break;
        case 'S':
            o.seconds = atof(optarg);
            if (!(o.seconds > 0 && o.seconds <= 600)) {
                MR_LOG_ERROR(MR_LOG_CLI, "--seconds: \"%s\" is not in (0, 600]", optarg);
                return 2;
            }
            break;
        case 'c':
            if ((clients = mr_cli_parse_int("--clients", optarg, 1, 1000000)) < 0) return 2;
            break;
        case 'h':
            printf("usage: moerack bench transport [--transport tcp|rdma]\n"
                   "         [--role both|server|client] [--addr IP] [--port N] [--busy-poll]\n"
                   "         [--busy-cq]  (rdma: busy polling on the completion queue alone)\n"
                   "         [--min 64] [--max 16M] [--seconds 1] [--scale 1]\n"
                   "         [--clients 1]  (server: clients to serve before exiting)\n");
            return 0;
        default:
            return 2;
        }
    }
    if (!(o.x = mr_xport_find(transport))) {
        MR_LOG_ERROR(MR_LOG_CLI, "--transport: \"%s\" is not built into this binary", transport);
        return 2;
    }
    if (strcmp(role, "both") && strcmp(role, "server") && strcmp(role, "client")) {
        MR_LOG_ERROR(MR_LOG_CLI, "--role: \"%s\" is not both, server or client", role);
        return 2;
    }
    if (o.min_bytes > o.max_bytes) {
        MR_LOG_ERROR(MR_LOG_CLI, "--min is larger than --max");
        return 2;
    }
    o.p.max_message = o.max_bytes;
    signal(SIGPIPE, SIG_IGN);
    if (strcmp(role, "client") == 0) return run_client(&o);
    server_ctx s = {&o, NULL, strcmp(role, "server") == 0 ? (int)clients : 1};
    if (o.x->listen(&o.p, o.addr, o.port, &s.l, NULL) != MR_OK) return 1;
    if (strcmp(role, "server") == 0) {
        server_main(&s);
        o.x->listener_close(s.l);
        return 0;
    }
    pthread_t th;
    if (pthread_create(&th, NULL, server_main, &s) != 0) return 1;
    int rc = run_client(&o);
    pthread_join(th, NULL);
    o.x->listener_close(s.l);
    return rc;
}
