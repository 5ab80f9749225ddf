/* worker.h — the expert worker process: control client and data-plane server.
 *
 *   mr_worker *w;  MR_CHECK(mr_worker_create(&cluster_config, "w0", &w));
 *   mr_worker_run(w);      // returns on Shutdown or a fatal error
 *   mr_worker_destroy(w);
 *
 * Threads: the caller's thread runs the control connection (connect with retry, Hello/Welcome,
 * Assign -> load -> Ready, heartbeats, Drain/Shutdown); a data thread accepts the coordinator's
 * data connection and serves expert batches. The expert store is swapped under a write lock when
 * an assignment changes; the data thread holds the read lock while it computes. */
#ifndef MR_WORKER_H
#define MR_WORKER_H

#include "common/cluster_config.h"
#include "common/status.h"

typedef struct mr_worker mr_worker;

mr_status mr_worker_create(const mr_cluster_config *cc, const char *name, mr_worker **out);
/* Returns MR_OK after a Shutdown, or the fatal error (e.g. protocol version mismatch). */
mr_status mr_worker_run(mr_worker *w);
void mr_worker_destroy(mr_worker *w);

#endif
