#include "common/cluster_config.h"

#include <libconfig.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/config_table.h"
#include "common/log.h"

static const char *const transports[] = {"tcp", "rdma", NULL};
static const char *const formats[] = {"bf16", "int8", "int4", NULL};
static const char *const wire_dtypes[] = {"f32", "bf16", NULL};
static const char *const backends[] = {"cpu",       "ref",       "cuda",           "cuda-int8",
                                       "cuda-int4", "cuda-fast", "cuda-int8-fast", "cuda-int4-fast",
                                       NULL};
/* The coordinator's also: the backends that run the attention stack on a GPU (cuda-full,
 * cuda-gpu) and the device-resident test vehicle (cpu-resident). Not for workers: cuda-gpu's moe
 * takes device activations. */
static const char *const coord_backends[] = {
    "cpu",       "ref",       "cuda",           "cuda-int8",
    "cuda-int4", "cuda-fast", "cuda-int8-fast", "cuda-int4-fast",
    "cuda-full", "cuda-gpu",  "cpu-resident",   NULL};

static const mr_opt cluster_opts[] = {
    MR_OPT_STRING_(mr_cluster_conf, name, "moerack", "cluster name, shown by `moerack status`"),
    MR_OPT_STRING_(mr_cluster_conf, model, NULL,
                   "checkpoint directory (config.json, model.safetensors.index.json, shards); "
                   "relative paths are relative to the config file"),
    MR_OPT_ENUM_(mr_cluster_conf, transport, transports, "tcp", "data-plane transport"),
    MR_OPT_ENUM_(mr_cluster_conf, weight_format, formats, "bf16",
                 "expert weight format on workers"),
    MR_OPT_INT64_(mr_cluster_conf, synthetic_weights, -1, (1ll << 62), "-1",
                  "benchmarks and tests: >= 0 generates every weight from this seed and the shapes "
                  "in cluster.model's config.json (no shards needed; the numbers `moerack model "
                  "gen-tiny --seed` writes); -1 loads the checkpoint"),
    MR_OPT_BOOL_(mr_cluster_conf, rdma_busy_poll, "false",
                 "rdma: spin on completion queues (lowest latency, one core per connection) "
                 "instead of sleeping on completion events; whole messages to a busy-polling "
                 "side without a receive region are then written for it to poll in memory "
                 "(`docs/protocol.md`)"),
    MR_OPT_INT_(mr_cluster_conf, tcp_buffer_kb, 0, 1 << 20, "0",
                "tcp: send and receive buffer of each data connection's sockets in KiB "
                "(SO_SNDBUF / SO_RCVBUF); 0 = the kernel's autotuning. Tests set a few KiB so "
                "that every expert batch is larger than what the sockets hold"),
    MR_OPT_ENUM_(mr_cluster_conf, wire_dtype, wire_dtypes, "f32",
                 "expert activations and replies on the data plane: f32 keeps a cluster's logits "
                 "bitwise equal to one process; bf16 halves the bytes (prefill is bound by them) "
                 "at bf16 rounding of the MoE input and output, which the -fast backends apply to "
                 "the input anyway"),
};

static const mr_opt coord_opts[] = {
    MR_OPT_STRING_(mr_coord_conf, listen, "127.0.0.1:7400", "control endpoint host:port"),
    MR_OPT_STRING_(mr_coord_conf, address, "",
                   "endpoint workers connect to (\"\" = listen); set when listen is 0.0.0.0"),
    MR_OPT_ENUM_(mr_coord_conf, backend, coord_backends, "cpu", "compute backend for attention"),
    MR_OPT_INT_(mr_coord_conf, threads, 0, 1024, "0", "CPU threads (0 = all CPUs)"),
    MR_OPT_INT_(mr_coord_conf, max_batch_tokens, 1, 1 << 20, "512", "tokens per forward step"),
    MR_OPT_INT_(mr_coord_conf, max_seqs, 1, 1 << 16, "8", "concurrent sequences (state slots)"),
    MR_OPT_INT64_(mr_coord_conf, max_context, 1, 1ll << 24, "8192", "tokens per sequence"),
    MR_OPT_INT_(mr_coord_conf, kv_block_tokens, 1, 4096, "16", "positions per KV cache block"),
    MR_OPT_INT_(mr_coord_conf, kv_blocks, 0, 1 << 30, "0",
                "KV cache blocks (0 = max_seqs x ceil(max_context / kv_block_tokens), room for "
                "every sequence at full length); fewer lets many short sequences share the cache: "
                "a request waits for blocks like for a slot"),
    MR_OPT_INT_(mr_coord_conf, micro_batches, 1, 2, "2",
                "micro-batches per step; 2 overlaps attention with the expert round trip"),
    MR_OPT_INT_(mr_coord_conf, replicas, 1, 16, "1",
                "workers holding each expert (default placement)"),
    MR_OPT_INT_(
        mr_coord_conf, expert_timeout_ms, 1, 3600000, "10000",
        "a worker that does not answer an expert batch within this (or, over tcp, takes none "
        "of it for this long) is declared down"),
    MR_OPT_INT_(mr_coord_conf, heartbeat_interval_ms, 10, 600000, "1000",
                "worker heartbeat period"),
    MR_OPT_INT_(mr_coord_conf, worker_timeout_ms, 10, 3600000, "5000",
                "no message from a worker for this long: down"),
    MR_OPT_INT_(mr_coord_conf, max_frame_mb, 1, 1024, "64", "largest control-plane frame"),
    MR_OPT_STRING_(mr_coord_conf, http_listen, "", "OpenAI-compatible HTTP endpoint (\"\" = off)"),
    MR_OPT_STRING_(mr_coord_conf, served_model_name, "MiniMax-M1",
                   "model id clients must name (`model` in requests, `GET /v1/models`)"),
    MR_OPT_STRING_(mr_coord_conf, tokenizer, "",
                   "tokenizer.json (or a directory with vocab.json + merges.txt); \"\" = the model "
                   "directory's"),
    MR_OPT_INT_(mr_coord_conf, max_waiting, 0, 1 << 20, "256",
                "requests queued for a sequence slot before new ones get 429"),
    MR_OPT_INT_(mr_coord_conf, max_body_kb, 1, 1 << 20, "4096", "largest request body (413 above)"),
    MR_OPT_INT_(mr_coord_conf, max_header_kb, 4, 1024, "32",
                "header space per connection (431 above)"),
    MR_OPT_INT_(mr_coord_conf, max_connections, 1, 65536, "512", "concurrent HTTP connections"),
    MR_OPT_INT_(mr_coord_conf, idle_timeout_s, 1, 86400, "60",
                "close a connection idle (or sending a request this slowly) for this long"),
    MR_OPT_INT_(mr_coord_conf, keepalive_ms, 100, 600000, "5000",
                "send an SSE keep-alive comment when a stream is silent this long"),
    MR_OPT_STRING_(mr_coord_conf, test_forced_output, "",
                   "TEST ONLY: every generation outputs this text (the model still runs); for "
                   "end-to-end tests of the API with synthetic weights"),
    MR_OPT_STRING_(mr_coord_conf, test_forced_answer, "",
                   "TEST ONLY: the output of requests whose last message is a tool result"),
    MR_OPT_STRING_(mr_coord_conf, rdma_device, "",
                   "rdma: the device data connections must use (e.g. \"mlx5_0\"); \"\" = "
                   "whichever device owns the worker route"),
    MR_OPT_INTS_(
        mr_coord_conf, gpus, 0, 1023, "[0]",
        "backend cuda-gpu: the GPUs the layers are split over, in pipeline order (e.g. "
        "`[0, 1]`: contiguous stages balanced by bytes, the embedding on the first, the LM "
        "head on the last); indices into CUDA_VISIBLE_DEVICES when that is set"),
};

static const mr_opt worker_opts[] = {
    MR_OPT_STRING_(mr_worker_conf, name, NULL, "unique worker name (`moerack-worker --name`)"),
    MR_OPT_STRING_(mr_worker_conf, data_listen, NULL, "data-plane endpoint host:port"),
    MR_OPT_ENUM_(mr_worker_conf, backend, backends, "cpu",
                 "compute backend for experts (cuda*: on GPU 0 in bf16 / int8 / int4)"),
    MR_OPT_INT_(mr_worker_conf, threads, 0, 1024, "0", "CPU threads (0 = all CPUs)"),
    MR_OPT_INT64_(mr_worker_conf, memory_limit_mb, 0, 1ll << 30, "0",
                  "refuse assignments needing more memory (0 = no limit)"),
    MR_OPT_INT_(mr_worker_conf, connect_retry_ms, 10, 600000, "500",
                "pause between attempts to reach the coordinator"),
    MR_OPT_INT_(mr_worker_conf, gpu, -1, 1023, "-1",
                "cuda backends: the GPU this worker uses, an index into CUDA_VISIBLE_DEVICES when "
                "that is set (the worker narrows it to this one GPU); -1 = the first visible"),
    MR_OPT_STRING_(mr_worker_conf, rdma_device, "",
                   "rdma: the device data connections must arrive on; \"\" = whichever owns "
                   "data_listen's address"),
};

static const mr_opt placement_opts[] = {
    MR_OPT_STRING_(mr_placement_conf, worker, NULL, "worker name"),
    MR_OPT_STRING_(mr_placement_conf, layers, "all", "layers: \"all\" or ranges like \"0-39,79\""),
    MR_OPT_STRING_(mr_placement_conf, experts, NULL, "experts: \"all\" or ranges like \"0-15\""),
};

#define TABLE(g, o, d)                                                                             \
    { g, o, (int)(sizeof o / sizeof o[0]), d }
static const mr_opt_table cluster_table =
    TABLE("cluster", cluster_opts, "What is served and how the processes talk.");
static const mr_opt_table coord_table = TABLE(
    "coordinator", coord_opts, "The coordinator process (`moerack-coordinator --config FILE`).");
static const mr_opt_table worker_table =
    TABLE("workers[]", worker_opts,
          "One entry per worker process (`moerack-worker --config FILE --name NAME`).");
static const mr_opt_table placement_table = TABLE(
    "placement[]", placement_opts,
    "Optional explicit expert placement; when present it replaces the default (every worker a "
    "balanced slice of every layer, `replicas` holders per expert).");

static const char *const top_groups[] = {"cluster", "coordinator", "workers", "placement", NULL};

void mr_cluster_config_free(mr_cluster_config *c) {
    free(c->workers);
    free(c->placement);
    c->workers = NULL;
    c->placement = NULL;
}

int mr_cluster_config_worker_index(const mr_cluster_config *c, const char *name) {
    for (int i = 0; i < c->n_workers; i++)
        if (strcmp(c->workers[i].name, name) == 0) return i;
    return -1;
}

int mr_parse_ranges(const char *s, int n, unsigned char *mask) {
    memset(mask, 0, (size_t)n);
    if (strcmp(s, "all") == 0) {
        memset(mask, 1, (size_t)n);
        return 0;
    }
    const char *p = s;
    if (!*p) return -1;
    while (*p) {
        char *end;
        long a = strtol(p, &end, 10), b = a;
        if (end == p) return -1;
        if (*end == '-') {
            const char *q = end + 1;
            b = strtol(q, &end, 10);
            if (end == q) return -1;
        }
        if (a < 0 || b < a || b >= n) return -1;
        for (long i = a; i <= b; i++) mask[i] = 1;
        if (*end == ',')
            end++;
        else if (*end)
            return -1;
        p = end;
    }
    return 0;
}

static int check_endpoint(const char *file, int line, const char *where, const char *key,
                          const char *v) {
    char host[128];
    int port;
    if (mr_parse_endpoint(v, host, sizeof host, &port) != MR_OK) {
        MR_LOG_ERROR(MR_LOG_CONF, "%s:%d: %s.%s = \"%s\" is not host:port", file, line, where, key,
                     v);
        return 1;
    }
    return 0;
}

static int load_list(config_t *cf, const char *name, const mr_opt_table *t, size_t item_size,
                     const char *file, void **items, int *n_items) {
    config_setting_t *list = config_lookup(cf, name);
    *items = NULL;
    *n_items = 0;
    if (!list) return 0;
    if (!config_setting_is_list(list)) {
        MR_LOG_ERROR(MR_LOG_CONF, "%s:%d: %s must be a list ( { ... }, ... )", file,
                     config_setting_source_line(list), name);
        return 1;
    }
    int n = config_setting_length(list), errors = 0;
    if (n > MR_MAX_WORKERS * 4) {
        MR_LOG_ERROR(MR_LOG_CONF, "%s: %s has %d entries (max %d)", file, name, n,
                     MR_MAX_WORKERS * 4);
        return 1;
    }
    char *arr = calloc((size_t)(n ? n : 1), item_size);
    if (!arr) return 1;
    for (int i = 0; i < n; i++) {
        char where[64];
        snprintf(where, sizeof where, "%s[%d]", name, i);
        errors += mr_opt_apply(t, config_setting_get_elem(list, (unsigned)i), file, where,
                               arr + (size_t)i * item_size) != MR_OK;
    }
    *items = arr;
    *n_items = n;
    return errors;
}

mr_status mr_cluster_config_load(const char *path, mr_cluster_config *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->path, sizeof out->path, "%s", path);
    config_t cf;
    config_init(&cf);
    if (config_read_file(&cf, path) != CONFIG_TRUE) {
        if (config_error_type(&cf) == CONFIG_ERR_FILE_IO)
            MR_LOG_ERROR(MR_LOG_CONF, "%s: cannot read config file", path);
        else
            MR_LOG_ERROR(MR_LOG_CONF, "%s:%d: %s", path, config_error_line(&cf),
                         config_error_text(&cf));
        config_destroy(&cf);
        return MR_ERR_INVALID;
    }
    int errors = 0;
    config_setting_t *root = config_root_setting(&cf);
    for (int i = 0; i < config_setting_length(root); i++) {
        config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
        int known = 0;
        for (const char *const *g = top_groups; *g; g++)
            known |= strcmp(*g, config_setting_name(s)) == 0;
        if (!known) {
            MR_LOG_ERROR(MR_LOG_CONF,
                         "%s:%d: unknown top-level key '%s' (expected cluster, "
                         "coordinator, workers, placement)",
                         path, config_setting_source_line(s), config_setting_name(s));
            errors++;
        }
    }
    config_setting_t *cl = config_lookup(&cf, "cluster");
    errors += mr_opt_apply(&cluster_table, cl, path, "cluster", &out->cluster) != MR_OK;
    errors += mr_opt_apply(&coord_table, config_lookup(&cf, "coordinator"), path, "coordinator",
                           &out->coord) != MR_OK;
    void *items;
    errors += load_list(&cf, "workers", &worker_table, sizeof(mr_worker_conf), path, &items,
                        &out->n_workers);
    out->workers = items;
    errors += load_list(&cf, "placement", &placement_table, sizeof(mr_placement_conf), path, &items,
                        &out->n_placement);
    out->placement = items;
    config_setting_t *wl = config_lookup(&cf, "workers"), *pl = config_lookup(&cf, "placement");

    /* relations between entries */
    if (!errors) {
        int line = cl ? config_setting_source_line(cl) : 0;
        /* a relative model path is relative to the config file */
        if (out->cluster.model[0] != '/') {
            char dir[1024];
            snprintf(dir, sizeof dir, "%s", path);
            char *slash = strrchr(dir, '/');
            if (slash) {
                *slash = '\0';
                char joined[2100];
                int n = snprintf(joined, sizeof joined, "%s/%s", dir, out->cluster.model);
                if (n > 0 && (size_t)n < sizeof out->cluster.model)
                    memcpy(out->cluster.model, joined, (size_t)n + 1);
            }
        }
        out->cluster_line = line;
        errors += check_endpoint(path, line, "coordinator", "listen", out->coord.listen);
        if (out->coord.address[0])
            errors += check_endpoint(path, line, "coordinator", "address", out->coord.address);
        if (out->n_workers == 0) {
            MR_LOG_ERROR(MR_LOG_CONF, "%s:%d: workers: at least one worker is required", path,
                         wl ? (int)config_setting_source_line(wl) : line);
            errors++;
        }
        if (out->n_workers > MR_MAX_WORKERS) {
            MR_LOG_ERROR(MR_LOG_CONF, "%s: %d workers (max %d)", path, out->n_workers,
                         MR_MAX_WORKERS);
            errors++;
        }
        for (int i = 0; i < out->n_workers; i++) {
            int wline = config_setting_source_line(config_setting_get_elem(wl, (unsigned)i));
            char where[32];
            snprintf(where, sizeof where, "workers[%d]", i);
            errors +=
                check_endpoint(path, wline, where, "data_listen", out->workers[i].data_listen);
            for (int j = 0; j < i; j++) {
                if (strcmp(out->workers[i].name, out->workers[j].name) == 0) {
                    MR_LOG_ERROR(MR_LOG_CONF,
                                 "%s:%d: duplicate worker name \"%s\" (also workers[%d])", path,
                                 wline, out->workers[i].name, j);
                    errors++;
                } else if (strcmp(out->workers[i].data_listen, out->workers[j].data_listen) == 0) {
                    MR_LOG_ERROR(MR_LOG_CONF,
                                 "%s:%d: workers[%d] and workers[%d] share data_listen %s", path,
                                 wline, i, j, out->workers[i].data_listen);
                    errors++;
                }
            }
        }
        const mr_opt_ints *gpus = &out->coord.gpus;
        if (gpus->n > 1 && strcmp(out->coord.backend, "cuda-gpu") != 0 &&
            strcmp(out->coord.backend, "cpu-resident") != 0) {
            config_setting_t *gs = config_lookup(&cf, "coordinator.gpus");
            MR_LOG_ERROR(MR_LOG_CONF,
                         "%s:%d: coordinator.gpus lists %d GPUs but coordinator.backend = \"%s\" "
                         "runs on one; splitting the layers over GPUs needs backend \"cuda-gpu\"",
                         path, gs ? (int)config_setting_source_line(gs) : line, gpus->n,
                         out->coord.backend);
            errors++;
        }
        if (out->coord.replicas > out->n_workers && out->n_workers > 0) {
            MR_LOG_ERROR(MR_LOG_CONF, "%s: coordinator.replicas = %d exceeds the %d workers", path,
                         out->coord.replicas, out->n_workers);
            errors++;
        }
        for (int i = 0; i < out->n_placement; i++) {
            mr_placement_conf *p = &out->placement[i];
            p->line = config_setting_source_line(config_setting_get_elem(pl, (unsigned)i));
            if (mr_cluster_config_worker_index(out, p->worker) < 0) {
                MR_LOG_ERROR(MR_LOG_CONF, "%s:%d: placement[%d].worker \"%s\" is not in workers",
                             path, p->line, i, p->worker);
                errors++;
            }
        }
    }
    config_destroy(&cf);
    if (errors) {
        mr_cluster_config_free(out);
        return MR_ERR_INVALID;
    }
    return MR_OK;
}

void mr_cluster_config_dump(const mr_cluster_config *c, FILE *out) {
    fprintf(out, "# effective configuration of %s\ncluster = {\n", c->path);
    mr_opt_dump(&cluster_table, &c->cluster, out, 2);
    fprintf(out, "};\ncoordinator = {\n");
    mr_opt_dump(&coord_table, &c->coord, out, 2);
    fprintf(out, "};\nworkers = (\n");
    for (int i = 0; i < c->n_workers; i++) {
        fprintf(out, "  {\n");
        mr_opt_dump(&worker_table, &c->workers[i], out, 4);
        fprintf(out, "  }%s\n", i + 1 < c->n_workers ? "," : "");
    }
    fprintf(out, ");\n");
    if (c->n_placement) {
        fprintf(out, "placement = (\n");
        for (int i = 0; i < c->n_placement; i++) {
            fprintf(out, "  {\n");
            mr_opt_dump(&placement_table, &c->placement[i], out, 4);
            fprintf(out, "  }%s\n", i + 1 < c->n_placement ? "," : "");
        }
        fprintf(out, ");\n");
    }
}

void mr_cluster_config_markdown(FILE *out) {
    fprintf(out,
            "# Configuration reference\n\n"
            "Generated by `moerack config-doc` from the option tables in "
            "`common/cluster_config.c`; a test keeps this file and the tables identical.\n\n"
            "One libconfig file describes the whole cluster; every process reads and validates "
            "all of it. Unknown keys, wrong types and out-of-range values are errors reported "
            "with file:line. Examples: `configs/local.cfg`, `configs/rack-example.cfg`.\n\n");
    mr_opt_markdown(&cluster_table, out);
    mr_opt_markdown(&coord_table, out);
    mr_opt_markdown(&worker_table, out);
    mr_opt_markdown(&placement_table, out);
}

void mr_cluster_config_model_path(const mr_cluster_config *c, char *out, size_t cap) {
    if (c->cluster.synthetic_weights >= 0)
        snprintf(out, cap, "synthetic:%lld:%s", c->cluster.synthetic_weights, c->cluster.model);
    else
        snprintf(out, cap, "%s", c->cluster.model);
}

mr_status mr_cluster_config_check_paths(const mr_cluster_config *c) {
    struct stat sb;
    if (stat(c->cluster.model, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        MR_LOG_ERROR(MR_LOG_CONF, "%s:%d: cluster.model \"%s\" is not a directory", c->path,
                     c->cluster_line, c->cluster.model);
        return MR_ERR_NOT_FOUND;
    }
    return MR_OK;
}
