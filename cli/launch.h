/* launch.h — start a whole cluster on this machine as real processes.
 *
 * Writes a cluster config (free loopback ports), spawns moerack-coordinator and N moerack-worker
 * processes from the directory of the running binary, waits until `status` says HEALTHY, and
 * stops them all. Used by `moerack bench cluster` and by the integration tests. */
#ifndef MR_LAUNCH_H
#define MR_LAUNCH_H

#include <sys/types.h>

#include "common/status.h"

#define MR_LAUNCH_MAX_WORKERS 16

typedef struct mr_launch_params {
    const char *bin_dir;  /* directory holding moerack-coordinator and moerack-worker */
    const char *model;    /* checkpoint directory (absolute) */
    const char *work_dir; /* config and logs go here */
    int n_workers;
    int replicas;                      /* 0 = 1 */
    int micro_batches;                 /* 0 = 2 */
    int coord_threads, worker_threads; /* 0 = all CPUs */
    int max_batch_tokens;              /* 0 = 512 */
    int expert_timeout_ms;             /* 0 = 10000 */
    const char *extra_coordinator; /* extra libconfig lines for the coordinator group, or NULL */
    const char *log_level;         /* NULL = info */
    const char *worker_backend;    /* the workers' `backend` ("cuda", ...); NULL = the default */
    const char *extra_cluster;     /* extra libconfig lines for the cluster group, or NULL */
} mr_launch_params;

typedef struct mr_launch {
    mr_launch_params p; /* p.work_dir points at work_dir below */
    char work_dir[1024];
    char config[1024];
    char host[64];
    int port;
    pid_t coord;
    pid_t workers[MR_LAUNCH_MAX_WORKERS];
} mr_launch;

/* Writes the config and starts the coordinator and every worker. */
mr_status mr_launch_start(const mr_launch_params *p, mr_launch *out);
/* Polls status until the verdict is `verdict` ("HEALTHY", ...) or the timeout passes. */
mr_status mr_launch_wait(mr_launch *l, const char *verdict, int timeout_ms);
/* (Re)starts worker i. */
mr_status mr_launch_worker(mr_launch *l, int i);
/* Sends sig to worker i (e.g. SIGKILL, SIGSTOP, SIGCONT); reaps it after SIGKILL. */
void mr_launch_signal_worker(mr_launch *l, int i, int sig);
/* SIGTERM to everything, then SIGKILL after a grace period; reaps all. */
void mr_launch_stop(mr_launch *l);
/* Directory of the running executable (for bin_dir). */
void mr_launch_self_dir(char *out, size_t cap);

#endif
