/* cluster_config.h — the cluster configuration file (libconfig), read by every process.
 *
 * One file describes the whole cluster; each process validates all of it (so a typo anywhere is
 * caught by whichever process starts first) and then uses its own part:
 *
 *   cluster     = { name; model; transport; weight_format; };
 *   coordinator = { listen; address; backend; threads; max_batch_tokens; ... };
 *   workers     = ( { name; data_listen; backend; threads; ... }, ... );
 *   placement   = ( { worker; layers; experts; }, ... );   # optional, overrides the default
 *
 * Every key, its type, default, bounds and meaning are in the option tables in cluster_config.c,
 * which also generate docs/config.md (`moerack config-doc`). Errors carry file:line. */
#ifndef MR_CLUSTER_CONFIG_H
#define MR_CLUSTER_CONFIG_H

#include <stdio.h>

#include "common/config_table.h"
#include "common/status.h"

typedef struct mr_cluster_conf {
    char name[64];
    char model[1024];            /* checkpoint directory (config.json + shards) */
    char transport[16];          /* data plane: "tcp" | "rdma" */
    char weight_format[16];      /* experts: "bf16" | "int8" | "int4" */
    int rdma_busy_poll;          /* rdma: spin on completion queues instead of sleeping */
    long long synthetic_weights; /* >= 0: seed of generated weights (no shards); -1: load */
    int tcp_buffer_kb;           /* tcp: socket buffers of data connections; 0 = the kernel's */
    char wire_dtype[8];          /* expert activations and replies on the wire: "f32" | "bf16" */
} mr_cluster_conf;

typedef struct mr_coord_conf {
    char listen[128];  /* control endpoint "host:port" (workers, status, clients) */
    char address[128]; /* endpoint workers connect to; "" = listen */
    char backend[16];
    int threads;
    int max_batch_tokens;
    int max_seqs;
    long long max_context;
    int kv_block_tokens;
    int kv_blocks;         /* 0: room for max_seqs sequences of max_context tokens */
    int micro_batches;     /* ping-pong micro-batches per step (1 = no overlap) */
    int replicas;          /* holders per expert in the default placement */
    int expert_timeout_ms; /* a worker that does not answer a batch within this (or, over tcp,
                              stops taking its bytes for this long) is down */
    int heartbeat_interval_ms;
    int worker_timeout_ms; /* no heartbeat for this long: down */
    int max_frame_mb;      /* largest control frame */
    char http_listen[128]; /* OpenAI-compatible API endpoint; "" = off */
    char served_model_name[128];
    char tokenizer[1024]; /* tokenizer.json; "" = <model>/tokenizer.json */
    int max_waiting;      /* queued requests before 429 */
    int max_body_kb, max_header_kb, max_connections, idle_timeout_s, keepalive_ms;
    char test_forced_output[1024]; /* test mode: every request's output is this text */
    char test_forced_answer[1024]; /* test mode: the output after a tool result */
    char rdma_device[64];          /* rdma: required device name, "" = whichever owns the IP */
    mr_opt_ints gpus;              /* cuda-gpu: the layers split over these GPUs, in order */
} mr_coord_conf;

typedef struct mr_worker_conf {
    char name[64];
    char data_listen[128]; /* data-plane endpoint "host:port" this worker listens on */
    char backend[16];
    int threads;
    long long memory_limit_mb; /* 0 = no limit */
    int connect_retry_ms;      /* between attempts to reach the coordinator */
    char rdma_device[64];      /* rdma: required device name, "" = whichever owns the IP */
    int gpu; /* cuda backends: GPU index (within CUDA_VISIBLE_DEVICES); -1 = first */
} mr_worker_conf;

typedef struct mr_placement_conf {
    char worker[64];
    char layers[256];  /* "all" or ranges "0-39,41" */
    char experts[256]; /* "all" or ranges "0-15" */
    int line;          /* for messages */
} mr_placement_conf;

typedef struct mr_cluster_config {
    char path[1024];
    mr_cluster_conf cluster;
    mr_coord_conf coord;
    mr_worker_conf *workers;
    int n_workers;
    mr_placement_conf *placement;
    int n_placement;
    int cluster_line; /* line of the cluster group, for messages */
} mr_cluster_config;

mr_status mr_cluster_config_load(const char *path, mr_cluster_config *out);
void mr_cluster_config_free(mr_cluster_config *c);
/* Checks what the file names on this machine (the model directory); done at start-up, not by
 * --dump-config, so example configs can be checked anywhere. */
mr_status mr_cluster_config_check_paths(const mr_cluster_config *c);
/* The model path processes open: cluster.model, or "synthetic:SEED:cluster.model" when
 * cluster.synthetic_weights >= 0 (common/synthetic.h). */
void mr_cluster_config_model_path(const mr_cluster_config *c, char *out, size_t cap);
int mr_cluster_config_worker_index(const mr_cluster_config *c, const char *name);
void mr_cluster_config_dump(const mr_cluster_config *c, FILE *out);
void mr_cluster_config_markdown(FILE *out);

/* Parses "all" or "a-b,c,..." into mask[0..n) (1 = selected). Returns -1 on a bad list. */
int mr_parse_ranges(const char *s, int n, unsigned char *mask);

#define MR_MAX_WORKERS 256

#endif
