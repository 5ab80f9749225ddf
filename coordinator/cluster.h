/* cluster.h — the coordinator's view of its workers and its control-plane server.
 *
 * The cluster object owns the control listener and every control connection, and runs them in
 * one event loop (mr_cluster_run, on the thread that calls it): workers join with Hello, get an
 * Assign from the placement, report LoadProgress and Ready, then send Heartbeats; `moerack
 * status` clients get a StatusReply; generation clients hand GenerateRequests to the engine.
 * When a worker is Ready the loop opens the data-plane connection to it and publishes it; the
 * dispatcher (engine thread) adopts it at its next step. Shared worker state is guarded by the
 * cluster mutex; the data connections themselves belong to the dispatcher.
 *
 * Worker states: joining (control connected) -> loading (Assign sent) -> ready (data connected)
 * -> draining; down when its connection closes, it stops heart-beating, or a batch times out. */
#ifndef MR_CLUSTER_H
#define MR_CLUSTER_H

#include <pthread.h>
#include <stdint.h>

#include "common/cluster_config.h"
#include "common/model_config.h"
#include "coordinator/placement.h"
#include "proto/frame.h"
#include "proto/xport.h"

typedef enum mr_worker_state {
    MR_WS_DOWN = 0,
    MR_WS_JOINING,
    MR_WS_LOADING,
    MR_WS_READY,
    MR_WS_DRAINING,
} mr_worker_state;

const char *mr_worker_state_name(mr_worker_state s);

#define MR_RTT_SAMPLES 1024

typedef struct mr_worker_slot {
    const mr_worker_conf *conf;
    mr_worker_state state;
    char host[128];          /* peer address of the control connection */
    char data_endpoint[160]; /* from Hello */
    uint32_t epoch;          /* of the current assignment */
    uint32_t experts_loaded, experts_total;
    int load_phase; /* Moerack__LoadPhase of the last LoadProgress */
    uint64_t bytes_held, memory_used, batches_served, tokens_served, busy_ns;
    double last_heard;      /* mr_now_s() of the last message; 0 = never */
    mr_xport_conn *pending; /* data connection waiting for the dispatcher */
    char transport[96];     /* how requests land at the worker, from its last data connection's
                               offer ("rdma/dmabuf", ...); empty before the first one */
    int failed;             /* set by the dispatcher when a batch failed */
    double rtt_us[MR_RTT_SAMPLES];
    int rtt_n, rtt_next;
} mr_worker_slot;

typedef struct mr_cluster mr_cluster;

/* A GenerateRequest handed to the engine; reply with mr_cluster_reply() then release. */
typedef struct mr_client_job {
    struct mr_conn *conn;
    Moerack__Envelope *env; /* owns the decoded request */
} mr_client_job;

typedef void (*mr_job_fn)(void *user, mr_client_job *job);

mr_status mr_cluster_create(const mr_cluster_config *cc, const mr_model_config *mc,
                            const mr_placement *pl, mr_cluster **out);
void mr_cluster_destroy(mr_cluster *c);
/* Installs the engine's job handler (called from the event loop; must only enqueue). */
void mr_cluster_set_job_handler(mr_cluster *c, mr_job_fn fn, void *user);
/* Runs the event loop until mr_cluster_stop(). */
mr_status mr_cluster_run(mr_cluster *c);
void mr_cluster_stop(mr_cluster *c);

/* Sends a reply envelope on a job's connection (any thread), then frees the job. */
void mr_cluster_reply(mr_cluster *c, mr_client_job *job, const Moerack__Envelope *reply);

/* For the dispatcher (engine thread). All take the cluster mutex briefly. */
int mr_cluster_n_workers(const mr_cluster *c);
const mr_xport_ops *mr_cluster_xport(const mr_cluster *c);
/* Hands over a newly connected data connection for worker w, or NULL. */
mr_xport_conn *mr_cluster_take_pending(mr_cluster *c, int w);
/* 1 if worker w is ready to serve batches. */
int mr_cluster_worker_ready(mr_cluster *c, int w);
/* The dispatcher lost worker w (its connection broke or timed out): mark it down. */
void mr_cluster_worker_failed(mr_cluster *c, int w, const char *why);
void mr_cluster_record_rtt(mr_cluster *c, int w, double us);
void mr_cluster_count_request(mr_cluster *c);
/* (layer, expert) pairs with no ready holder right now (0 = every expert is served). */
int mr_cluster_uncovered(mr_cluster *c);
/* Appends Prometheus lines for every worker (state, RTT, batches) to *text. */
void mr_cluster_metrics(mr_cluster *c, char **text, size_t *len);

#endif
