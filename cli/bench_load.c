/* bench_load.c — `moerack bench load`: a running cluster under concurrent greedy requests.
 *
 *   moerack bench load --coordinator HOST:PORT [--concurrency 1,16,64] [--prompt-len 64]
 *                      [--decode 32] [--ttft 1024,8192] [--ttft-runs 2] [--vocab 1000]
 *
 * For each concurrency N, N client threads each send one GenerateRequest (a prompt of
 * --prompt-len random ids, --decode new tokens) at the same moment; the coordinator's scheduler
 * batches them. Reported: the wall time until the last reply, aggregate generated tokens/s
 * (N · decode / wall), per-sequence tokens/s (decode / that request's time, median), the
 * slowest worker's per-layer expert round trip p50/p99 from `status`, and the workers' mean
 * compute time per expert batch in the round (their heartbeats' busy time over batches served;
 * round trip minus it is the transport and queueing). Then for each --ttft length
 * one request of that many prompt ids and 1 new token (best of --ttft-runs, default 2): time to
 * first token.
 * Prompt ids are drawn from [0, --vocab), so any model's vocabulary holds them. */
#include <getopt.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cluster_client.h"
#include "common/log.h"
#include "common/rng.h"
#include "common/timeutil.h"

enum { MAX_CONCURRENCY = 1024 };
/* Workers report their counters in heartbeats (default every second): a snapshot waits this long
 * after a round so that every worker has reported the round's work. */
#define HEARTBEAT_WAIT_S 1.5

typedef struct load_client {
    const char *host;
    int port;
    const int32_t *ids;
    int n_ids, decode;
    pthread_barrier_t *start;
    double seconds; /* < 0: failed */
} load_client;

static void *client_main(void *arg) {
    load_client *c = arg;
    pthread_barrier_wait(c->start);
    c->seconds = mr_client_generate(c->host, c->port, c->ids, c->n_ids, c->decode);
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* What the workers reported in their last heartbeats: batches and expert compute time summed,
 * and the slowest worker's expert round-trip percentiles (µs). */
typedef struct worker_snapshot {
    uint64_t batches, busy_ns;
    double rtt_p50, rtt_p99;
} worker_snapshot;

static void worker_snapshot_take(const char *host, int port, worker_snapshot *s) {
    Moerack__Envelope *env;
    memset(s, 0, sizeof *s);
    if (mr_client_status(host, port, &env) != MR_OK) return;
    for (size_t i = 0; i < env->status_reply->n_workers; i++) {
        const Moerack__WorkerStatus *w = env->status_reply->workers[i];
        s->batches += w->batches_served;
        s->busy_ns += w->busy_ns;
        if (w->rtt_p50_us > s->rtt_p50) s->rtt_p50 = w->rtt_p50_us;
        if (w->rtt_p99_us > s->rtt_p99) s->rtt_p99 = w->rtt_p99_us;
    }
    mr_frame_free(env);
}

static int32_t *random_ids(int n, int vocab, uint64_t seed) {
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    for (int i = 0; ids && i < n; i++) ids[i] = (int32_t)(mr_splitmix64(&seed) % (uint64_t)vocab);
    return ids;
}

/* One round of n concurrent requests; returns 0 if all succeeded. `before` holds the workers'
 * counters before it and is advanced to those after it. */
static int run_round(const char *host, int port, int n, int plen, int decode, int vocab,
                     worker_snapshot *before) {
    load_client *cl = calloc((size_t)n, sizeof *cl);
    pthread_t *th = calloc((size_t)n, sizeof *th);
    int32_t **ids = calloc((size_t)n, sizeof *ids);
    double *t = calloc((size_t)n, sizeof *t);
    pthread_barrier_t start;
    int rc = 1, started = 0;
    if (!cl || !th || !ids || !t || pthread_barrier_init(&start, NULL, (unsigned)n + 1) != 0)
        goto out;
    for (int i = 0; i < n; i++) {
        if (!(ids[i] = random_ids(plen, vocab, 1000 + (uint64_t)i))) goto out_barrier;
        cl[i] = (load_client){host, port, ids[i], plen, decode, &start, -1};
    }
    for (; started < n; started++)
        if (pthread_create(&th[started], NULL, client_main, &cl[started]) != 0) break;
    if (started < n) { /* stand in for the threads that did not start: the barrier counts n + 1 */
        MR_LOG_ERROR(MR_LOG_CLI, "bench load: could only start %d of %d client threads", started,
                     n);
        for (int i = started; i < n; i++) pthread_barrier_wait(&start);
    }
    double t0 = mr_now_s();
    pthread_barrier_wait(&start);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    double wall = mr_now_s() - t0;
    int ok = 0;
    for (int i = 0; i < started; i++)
        if (cl[i].seconds > 0) t[ok++] = (double)decode / cl[i].seconds;
    qsort(t, (size_t)ok, sizeof *t, cmp_double);
    worker_snapshot after;
    mr_sleep_s(HEARTBEAT_WAIT_S);
    worker_snapshot_take(host, port, &after);
    const uint64_t batches = after.batches - before->batches;
    printf("%-12d %10d %10.2f %14.2f %16.3f %12.0f %12.0f %14.0f\n", n, ok, wall,
           (double)ok * decode / wall, ok ? t[ok / 2] : 0.0, after.rtt_p50, after.rtt_p99,
           batches ? (double)(after.busy_ns - before->busy_ns) / 1e3 / (double)batches : 0.0);
    *before = after;
    fflush(stdout);
    rc = ok == n ? 0 : 1;
out_barrier:
    pthread_barrier_destroy(&start);
out:
    for (int i = 0; ids && i < n; i++) free(ids[i]);
    free(ids);
    free(cl);
    free(th);
    free(t);
    return rc;
}

/* Time to first token: one request of n prompt ids and 1 new token, best of `runs`; -1 if all
 * failed. */
static double ttft(const char *host, int port, int n, int vocab, int runs) {
    int32_t *ids = random_ids(n, vocab, 77);
    double best = -1;
    for (int rep = 0; ids && rep < runs; rep++) {
        double s = mr_client_generate(host, port, ids, n, 1);
        if (s > 0 && (best < 0 || s < best)) best = s;
    }
    free(ids);
    return best;
}

int mr_bench_load(int argc, char **argv) {
    static const struct option opts[] = {{"coordinator", required_argument, 0, 'c'},
                                         {"config", required_argument, 0, 'f'},
                                         {"concurrency", required_argument, 0, 'n'},
                                         {"prompt-len", required_argument, 0, 'p'},
                                         {"decode", required_argument, 0, 'd'},
                                         {"ttft", required_argument, 0, 't'},
                                         {"ttft-runs", required_argument, 0, 'r'},
                                         {"vocab", required_argument, 0, 'v'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *endpoint = NULL, *config = NULL, *conc = "1,16,64", *ttft_arg = "";
    long long plen = 64, decode = 32, vocab = 1000, ttft_runs = 2;
    optind = 1;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'c':
            endpoint = optarg;
            break;
        case 'f':
            config = optarg;
            break;
        case 'n':
            conc = optarg;
            break;
        case 't':
            ttft_arg = optarg;
            break;
        case 'p':
            if ((plen = mr_cli_parse_int("--prompt-len", optarg, 1, 1 << 20)) < 0) return 2;
            break;
        case 'd':
            if ((decode = mr_cli_parse_int("--decode", optarg, 1, 1 << 16)) < 0) return 2;
            break;
        case 'r':
            if ((ttft_runs = mr_cli_parse_int("--ttft-runs", optarg, 1, 100)) < 0) return 2;
            break;
        case 'v':
            if ((vocab = mr_cli_parse_int("--vocab", optarg, 1, 1 << 30)) < 0) return 2;
            break;
        case 'h':
            printf("usage: moerack bench load (--coordinator H:P | --config F) [--concurrency "
                   "1,16,64] [--prompt-len 64] [--decode 32] [--ttft 1024,8192] [--ttft-runs 2] "
                   "[--vocab 1000]\n");
            return 0;
        default:
            return 2;
        }
    }
    char host[256];
    int port;
    if (mr_client_endpoint(endpoint, config, host, sizeof host, &port) != MR_OK) return 2;
    int32_t *conc_list = NULL, *ttft_list = NULL;
    int n_conc = mr_cli_parse_ids(conc, MAX_CONCURRENCY + 1, &conc_list);
    int n_ttft = *ttft_arg ? mr_cli_parse_ids(ttft_arg, 1 << 24, &ttft_list) : 0;
    if (n_conc < 0 || n_ttft < 0) {
        MR_LOG_ERROR(MR_LOG_CLI, "bench load: --concurrency and --ttft take lists like 1,16,64");
        free(conc_list);
        free(ttft_list);
        return 2;
    }
    int rc = 0;
    int rounds = 0;
    for (int i = 0; i < n_conc; i++) rounds += conc_list[i] >= 1;
    worker_snapshot snap;
    if (rounds) {
        printf("prompt %lld ids, %lld new tokens per request\n", plen, decode);
        printf("%-12s %10s %10s %14s %16s %12s %12s %14s\n", "concurrency", "completed", "wall s",
               "aggregate t/s", "per-seq t/s p50", "rtt p50 us", "rtt p99 us", "busy us/batch");
        mr_sleep_s(HEARTBEAT_WAIT_S);
        worker_snapshot_take(host, port, &snap);
    }
    for (int i = 0; i < n_conc; i++)
        if (conc_list[i] >= 1)
            rc |= run_round(host, port, conc_list[i], (int)plen, (int)decode, (int)vocab, &snap);
    if (n_ttft) printf("%-12s %12s %lld)\n", "prompt ids", "TTFT s (best of", ttft_runs);
    for (int i = 0; i < n_ttft; i++) {
        if (ttft_list[i] < 1) continue;
        double s = ttft(host, port, ttft_list[i], (int)vocab, (int)ttft_runs);
        printf("%-12d %12.3f\n", ttft_list[i], s);
        fflush(stdout);
        if (s < 0) rc = 1;
    }
    free(conc_list);
    free(ttft_list);
    return rc;
}
