/* engine.h — control-plane generation requests (`moerack run --coordinator`) on the scheduler.
 *
 * A GenerateRequest is greedy and may ask for the logits rows; it is turned into a scheduler
 * request (so it batches with everything else) and answered from the scheduler's callbacks. */
#ifndef MR_ENGINE_H
#define MR_ENGINE_H

#include "coordinator/cluster.h"
#include "coordinator/model.h"
#include "coordinator/scheduler.h"

typedef struct mr_engine mr_engine;

mr_status mr_engine_create(mr_model *m, mr_cluster *cl, mr_scheduler *sched, mr_engine **out);
void mr_engine_destroy(mr_engine *e);
/* Job handler for mr_cluster_set_job_handler (called on the event loop; only submits). */
void mr_engine_submit(void *engine, mr_client_job *job);

#endif
