/* cmd_status.c — `moerack status`: the cluster's health from the coordinator's control port.
 *
 * Exit codes: 0 HEALTHY, 1 DEGRADED, 2 DOWN, 3 coordinator unreachable, 64 usage.
 * --json prints one object per poll (schema in docs/operations.md); --watch S repeats every S s. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cluster_client.h"
#include "common/cluster_config.h"
#include "common/log.h"

static int verdict_code(const char *v) {
    if (strcmp(v, "HEALTHY") == 0) return 0;
    if (strcmp(v, "DEGRADED") == 0) return 1;
    return 2;
}

static void human_bytes(uint64_t b, char *out, size_t cap) {
    if (b >= (1ull << 30))
        snprintf(out, cap, "%.1fG", (double)b / (1ull << 30));
    else if (b >= (1ull << 20))
        snprintf(out, cap, "%.1fM", (double)b / (1ull << 20));
    else
        snprintf(out, cap, "%.1fK", (double)b / 1024);
}

static void print_table(const Moerack__StatusReply *r) {
    printf("%s  model %s (%u layers x %u experts), %llu requests served\n", r->verdict, r->model,
           r->n_layers, r->n_experts, (unsigned long long)r->requests_served);
    int xw = 9; /* the XPORT column fits the longest label ("rdma/host-staged (dmabuf: ...)") */
    for (size_t i = 0; i < r->n_workers; i++) {
        int len = (int)strlen(r->workers[i]->transport);
        if (len + 1 > xw) xw = len < 80 ? len + 1 : 80;
    }
    printf("%-3s %-12s %-22s %-*s %-8s %-9s %-8s %-9s %-9s %-9s %s\n", "ID", "NAME", "HOST", xw,
           "XPORT", "STATE", "EXPERTS", "MEMORY", "BATCHES", "RTT_P50", "RTT_P99", "HEARTBEAT");
    for (size_t i = 0; i < r->n_workers; i++) {
        const Moerack__WorkerStatus *w = r->workers[i];
        char mem[16], experts[48], age[24];
        human_bytes(w->memory_used, mem, sizeof mem);
        snprintf(experts, sizeof experts, "%u/%u%s%s", w->experts_loaded, w->experts_held,
                 w->load_phase[0] ? " " : "", w->load_phase);
        if (w->heartbeat_age_s < 0)
            snprintf(age, sizeof age, "never");
        else
            snprintf(age, sizeof age, "%.1fs ago", w->heartbeat_age_s);
        printf("%-3u %-12s %-22s %-*s %-8s %-9s %-8s %-9llu %-9.0f %-9.0f %s\n", w->id, w->name,
               w->host, xw, w->transport, w->state, experts, mem,
               (unsigned long long)w->batches_served, w->rtt_p50_us, w->rtt_p99_us, age);
    }
    if (r->n_uncovered == 0) {
        printf("coverage: every expert of every layer has a live holder\n");
    } else {
        printf("coverage: %zu experts have no live holder:", r->n_uncovered);
        for (size_t i = 0; i < r->n_uncovered && i < 32; i++)
            printf(" (%u,%u)", r->uncovered[i]->layer, r->uncovered[i]->expert);
        printf("%s\n", r->n_uncovered > 32 ? " ..." : "");
    }
}

static void print_json(const Moerack__StatusReply *r) {
    json_t *workers = json_array(), *unc = json_array();
    for (size_t i = 0; i < r->n_workers; i++) {
        const Moerack__WorkerStatus *w = r->workers[i];
        json_array_append_new(
            workers,
            json_pack("{s:i,s:s,s:s,s:s,s:s,s:s,s:i,s:i,s:I,s:I,s:I,s:I,s:f,s:f,s:f}", "id",
                      (int)w->id, "name", w->name, "host", w->host, "transport", w->transport,
                      "state", w->state, "load_phase", w->load_phase, "experts_held",
                      (int)w->experts_held, "experts_loaded", (int)w->experts_loaded, "memory_used",
                      (json_int_t)w->memory_used, "batches_served", (json_int_t)w->batches_served,
                      "tokens_served", (json_int_t)w->tokens_served, "busy_ns",
                      (json_int_t)w->busy_ns, "rtt_p50_us", w->rtt_p50_us, "rtt_p99_us",
                      w->rtt_p99_us, "heartbeat_age_s", w->heartbeat_age_s));
    }
    for (size_t i = 0; i < r->n_uncovered; i++)
        json_array_append_new(
            unc, json_pack("[i,i]", (int)r->uncovered[i]->layer, (int)r->uncovered[i]->expert));
    json_t *o = json_pack("{s:i,s:s,s:s,s:i,s:i,s:I,s:o,s:o}", "schema", 1, "verdict", r->verdict,
                          "model", r->model, "layers", (int)r->n_layers, "experts",
                          (int)r->n_experts, "requests_served", (json_int_t)r->requests_served,
                          "workers", workers, "uncovered", unc);
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    printf("%s\n", s);
    free(s);
    json_decref(o);
}

/* One poll: returns the exit code. */
static int poll_once(const char *host, int port, int as_json) {
    int fd = mr_client_open(host, port, MOERACK__ROLE__ROLE_STATUS, 3000);
    if (fd < 0) {
        if (as_json)
            printf("{\"schema\":1,\"verdict\":\"UNREACHABLE\",\"coordinator\":\"%s:%d\"}\n", host,
                   port);
        else
            printf("UNREACHABLE  coordinator %s:%d does not answer\n", host, port);
        return 3;
    }
    Moerack__StatusRequest rq = MOERACK__STATUS_REQUEST__INIT;
    Moerack__Envelope env = MOERACK__ENVELOPE__INIT;
    env.msg_case = MOERACK__ENVELOPE__MSG_STATUS_REQUEST;
    env.status_request = &rq;
    Moerack__Envelope *rep = NULL;
    int code = 3;
    if (mr_frame_send(fd, &env, 3000) == MR_OK &&
        mr_frame_recv(fd, MR_FRAME_MAX_DEFAULT, 5000, &rep) == MR_OK &&
        rep->msg_case == MOERACK__ENVELOPE__MSG_STATUS_REPLY) {
        if (as_json)
            print_json(rep->status_reply);
        else
            print_table(rep->status_reply);
        code = verdict_code(rep->status_reply->verdict);
    } else {
        printf("UNREACHABLE  coordinator %s:%d gave no status\n", host, port);
    }
    mr_frame_free(rep);
    close(fd);
    fflush(stdout);
    return code;
}

int mr_cmd_status(int argc, char **argv) {
    static const struct option opts[] = {{"json", no_argument, 0, 'j'},
                                         {"watch", required_argument, 0, 'w'},
                                         {"coordinator", required_argument, 0, 'c'},
                                         {"config", required_argument, 0, 'f'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int as_json = 0, o;
    long long watch = 0;
    const char *endpoint = NULL, *config = NULL;
    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'j':
            as_json = 1;
            break;
        case 'w':
            if ((watch = mr_cli_parse_int("--watch", optarg, 1, 86400)) < 0) return 64;
            break;
        case 'c':
            endpoint = optarg;
            break;
        case 'f':
            config = optarg;
            break;
        case 'h':
            printf("usage: moerack status (--coordinator HOST:PORT | --config FILE) [--json] "
                   "[--watch S]\n"
                   "exit: 0 healthy, 1 degraded, 2 down, 3 unreachable\n");
            return 0;
        default:
            return 64;
        }
    }
    char host[128];
    int port;
    if (mr_client_endpoint(endpoint, config, host, sizeof host, &port) != MR_OK) return 64;
    for (;;) {
        int code = poll_once(host, port, as_json);
        if (!watch) return code;
        sleep((unsigned)watch);
    }
}

int mr_cmd_config_doc(int argc, char **argv) {
    (void)argc;
    (void)argv;
    mr_cluster_config_markdown(stdout);
    return 0;
}
