/* coordinator_main.c — `moerack-coordinator --config FILE`.
 *
 * Loads the non-expert weights, computes the placement, accepts workers and serves requests until
 * SIGINT/SIGTERM. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/checkpoint.h"
#include "common/cluster_config.h"
#include "common/log.h"
#include "coordinator/cluster.h"
#include "coordinator/dispatcher.h"
#include "coordinator/engine.h"
#include "coordinator/model.h"
#include "coordinator/placement.h"
#include "coordinator/scheduler.h"
#include "coordinator/http_server.h"
#include "coordinator/tokenizer.h"
#include "common/metrics.h"

static mr_cluster *g_cluster; /* for the signal handler only */

static void on_signal(int sig) {
    (void)sig;
    if (g_cluster) mr_cluster_stop(g_cluster);
}

/* Before each step: adopt new workers; fail the step when an expert has no live holder. */
static mr_status dispatcher_pre_step(void *user, char *why, size_t cap) {
    mr_dispatcher *d = user;
    if (why[0]) { /* called after a failed step: give the dispatcher's reason if it has one */
        const char *last = mr_dispatcher_last_error(d);
        if (last[0]) snprintf(why, cap, "%s", last);
        return MR_OK;
    }
    int uncovered = mr_dispatcher_refresh(d);
    if (uncovered) {
        snprintf(
            why, cap,
            "%d experts have no live holder (their workers are down); the cluster cannot serve "
            "until they return (see moerack status)",
            uncovered);
        return MR_ERR_CLOSED;
    }
    return MR_OK;
}

typedef struct serving_ctx {
    mr_cluster *cl;
    mr_dispatcher *d;
} serving_ctx;

static int http_ready(void *user, char *why, size_t cap) {
    serving_ctx *sc = user;
    int uncovered = mr_cluster_uncovered(sc->cl);
    if (uncovered) {
        snprintf(why, cap, "%d experts have no live worker (see moerack status)", uncovered);
        return 0;
    }
    return 1;
}

static void http_metrics(void *user, char **text, size_t *len) {
    serving_ctx *sc = user;
    mr_cluster_metrics(sc->cl, text, len);
    mr_dispatcher_metrics(sc->d, text, len);
}

/* Token ids of a test-mode forced output (config text), or NULL. */
static int32_t *forced_ids(mr_tokenizer *tok, const char *text, int *n) {
    *n = 0;
    if (!text[0]) return NULL;
    int32_t *ids = NULL;
    size_t cnt = 0;
    if (mr_tokenizer_encode(tok, text, strlen(text), 0, &ids, &cnt) != MR_OK) return NULL;
    *n = (int)cnt;
    MR_LOG_WARN(MR_LOG_CORE, "TEST MODE: generations are forced to a configured text (%d tokens)",
                *n);
    return ids;
}

static void usage(FILE *out) {
    fprintf(out, "usage: moerack-coordinator --config FILE [--log-level LEVEL] [--dump-config]\n"
                 "         [--synthetic-weights SEED]  (generated weights, no shards: "
                 "cluster.synthetic_weights)\n");
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"log-level", required_argument, 0, 'l'},
        {"dump-config", no_argument, 0, 'd'},  {"synthetic-weights", required_argument, 0, 's'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    const char *config = NULL;
    long long synthetic = -1;
    int dump = 0, o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'c':
            config = optarg;
            break;
        case 'd':
            dump = 1;
            break;
        case 's': {
            char *end;
            synthetic = strtoll(optarg, &end, 10);
            if (end == optarg || *end || synthetic < 0) {
                fprintf(stderr,
                        "error: --synthetic-weights: '%s' is not a seed (an integer >= 0)\n",
                        optarg);
                return 2;
            }
            break;
        }
        case 'l': {
            int lv = mr_log_level_parse(optarg);
            if (lv < 0) {
                fprintf(stderr, "error: --log-level: unknown level '%s'\n", optarg);
                return 2;
            }
            mr_log_set_level((mr_log_level)lv);
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!config) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    mr_cluster_config cc;
    if (mr_cluster_config_load(config, &cc) != MR_OK) return 1;
    if (synthetic >= 0) cc.cluster.synthetic_weights = synthetic;
    if (dump) {
        mr_cluster_config_dump(&cc, stdout);
        mr_cluster_config_free(&cc);
        return 0;
    }
    if (mr_cluster_config_check_paths(&cc) != MR_OK) {
        mr_cluster_config_free(&cc);
        return 1;
    }
    int rc = 1;
    mr_ckpt *ck = NULL;
    mr_model *m = NULL;
    mr_placement pl = {0};
    mr_cluster *cl = NULL;
    mr_dispatcher *d = NULL;
    mr_engine *e = NULL;
    mr_scheduler *sched = NULL;
    mr_http_server *http = NULL;
    mr_tokenizer *tok = NULL;
    int32_t *forced_out = NULL, *forced_ans = NULL;
    serving_ctx sctx = {0};
    mr_metrics *metrics = mr_metrics_create();
    char model_path[1100];
    mr_cluster_config_model_path(&cc, model_path, sizeof model_path);
    if (mr_ckpt_open(model_path, &ck) != MR_OK) goto out;
    mr_model_config mcv = *mr_ckpt_config(ck);
    const mr_model_config *mc = &mcv;
    if (mr_placement_build(&cc, mc, &pl) != MR_OK) goto out;
    mr_model_params mp;
    mr_model_params_default(&mp);
    mp.backend = cc.coord.backend;
    mp.n_threads = cc.coord.threads;
    mp.max_batch_tokens = cc.coord.max_batch_tokens;
    mp.max_seqs = cc.coord.max_seqs;
    mp.max_context = cc.coord.max_context;
    mp.kv_block_tokens = cc.coord.kv_block_tokens;
    mp.kv_blocks = cc.coord.kv_blocks;
    mp.load_experts = 0;
    mp.micro_batches = cc.coord.micro_batches;
    _Static_assert(MR_OPT_INTS_MAX == MR_MAX_STAGES, "coordinator.gpus holds one GPU per stage");
    mp.n_stages = cc.coord.gpus.n;
    memcpy(mp.stage_devices, cc.coord.gpus.v, sizeof cc.coord.gpus.v);
    if (mr_model_create(ck, &mp, &m) != MR_OK) goto out;
    /* the weights are copied: unmap the shards (their page cache can go; workers read theirs) */
    mr_ckpt_close(ck);
    ck = NULL;
    size_t nonexpert = mr_model_weight_bytes(m, NULL);
    MR_LOG_INFO(MR_LOG_CORE,
                "coordinator %s: %.1f MB of non-expert weights, %d workers expected, %s data plane",
                cc.cluster.name, (double)nonexpert / 1e6, cc.n_workers, cc.cluster.transport);
    if (mr_cluster_create(&cc, mc, &pl, &cl) != MR_OK) goto out;
    const mr_dp_dtype wire = strcmp(cc.cluster.wire_dtype, "bf16") == 0 ? MR_DP_BF16 : MR_DP_F32;
    if (mr_dispatcher_create(cl, &pl, mc, cc.coord.max_batch_tokens, cc.coord.expert_timeout_ms,
                             wire, &d) != MR_OK)
        goto out;
    mr_model_set_moe_provider(m, mr_dispatcher_provider(d));
    mr_scheduler_params sp = {.max_num_seqs = cc.coord.max_seqs,
                              .max_batched_tokens = cc.coord.max_batch_tokens,
                              .max_waiting = cc.coord.max_waiting,
                              .metrics = metrics,
                              .pre_step = dispatcher_pre_step,
                              .pre_step_user = d};
    if (mr_scheduler_create(m, &sp, &sched) != MR_OK) goto out;
    if (mr_engine_create(m, cl, sched, &e) != MR_OK) goto out;
    sctx = (serving_ctx){cl, d};
    mr_cluster_set_job_handler(cl, mr_engine_submit, e);
    g_cluster = cl;
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (cc.coord.http_listen[0]) {
        char tpath[2100];
        snprintf(tpath, sizeof tpath, "%s",
                 cc.coord.tokenizer[0] ? cc.coord.tokenizer : cc.cluster.model);
        if (mr_tokenizer_load(tpath, &tok) != MR_OK) {
            MR_LOG_ERROR(MR_LOG_CONF,
                         "%s: coordinator.http_listen needs a tokenizer: none at %s "
                         "(set coordinator.tokenizer)",
                         cc.path, tpath);
            goto out;
        }
        mr_http_params hp = {.listen = cc.coord.http_listen,
                             .max_body_bytes = (size_t)cc.coord.max_body_kb << 10,
                             .max_header_bytes = (size_t)cc.coord.max_header_kb << 10,
                             .max_connections = cc.coord.max_connections,
                             .idle_timeout_s = cc.coord.idle_timeout_s,
                             .metrics = metrics,
                             .ready = http_ready,
                             .ready_user = &sctx,
                             .extra_metrics = http_metrics,
                             .extra_user = &sctx};
        hp.serve = (mr_serve_config){.sched = sched,
                                     .tok = tok,
                                     .model_id = cc.coord.served_model_name,
                                     .vocab = mc->vocab_size,
                                     .vocab_limit = mr_tokenizer_n_ids(tok) < mc->vocab_size
                                                        ? mr_tokenizer_n_ids(tok)
                                                        : mc->vocab_size,
                                     .max_context = mr_model_params_of(m)->max_context,
                                     .eos_id = mr_tokenizer_token_id(tok, "<end_of_sentence>", 17),
                                     .keepalive_ms = cc.coord.keepalive_ms};
        forced_out = forced_ids(tok, cc.coord.test_forced_output, &hp.serve.n_forced_output);
        forced_ans = forced_ids(tok, cc.coord.test_forced_answer, &hp.serve.n_forced_answer);
        hp.serve.forced_output = forced_out;
        hp.serve.forced_answer = forced_ans;
        if (mr_http_server_start(&hp, &http) != MR_OK) goto out;
    }
    MR_LOG_INFO(MR_LOG_CORE, "listening on %s", cc.coord.listen);
    rc = mr_cluster_run(cl) == MR_OK ? 0 : 1;
    MR_LOG_INFO(MR_LOG_CORE, "shutting down");
out:
    mr_http_server_stop(http);   /* first: its sessions wait for the scheduler's last callbacks */
    mr_scheduler_destroy(sched); /* before the engine: its callbacks use the engine */
    mr_tokenizer_destroy(tok);
    free(forced_out);
    free(forced_ans);
    mr_engine_destroy(e);
    mr_metrics_destroy(metrics);
    g_cluster = NULL;
    mr_dispatcher_destroy(d);
    mr_cluster_destroy(cl);
    mr_model_destroy(m);
    mr_placement_free(&pl);
    mr_ckpt_close(ck);
    mr_cluster_config_free(&cc);
    return rc;
}
