/* engine.h — the coordinator's step thread: runs generation requests on the model.
 *
 * Requests arrive from the control event loop (mr_engine_submit only enqueues) and are run one
 * after another by the engine thread, which owns the model, its sequence states and the
 * dispatcher. (Continuous batching of many requests per step is the serving layer's job.) */
#ifndef MR_ENGINE_H
#define MR_ENGINE_H

#include "coordinator/cluster.h"
#include "coordinator/dispatcher.h"
#include "coordinator/model.h"

typedef struct mr_engine mr_engine;

mr_status mr_engine_create(mr_model *m, mr_cluster *cl, mr_dispatcher *d, mr_engine **out);
/* Stops the thread (after the running request) and frees queued jobs. */
void mr_engine_destroy(mr_engine *e);
/* Job handler for mr_cluster_set_job_handler. */
void mr_engine_submit(void *engine, mr_client_job *job);

#endif
