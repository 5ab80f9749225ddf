/* dispatcher.h — the remote expert provider: per-layer dispatch to workers and combine.
 *
 * For each micro-batch and layer, every (token, slot) is routed to one live holder of its expert
 * (the lowest-numbered ready worker holding it); each worker receives ONE message with the tokens
 * that have at least one slot for it (a token is sent once per worker, not once per expert), and
 * answers with the gate-weighted pre-sum of its slots per token. combine() adds the workers'
 * partial sums in worker order. A worker whose connection fails, or that does not answer within
 * expert_timeout_ms, is reported down; its slots are redone on other holders when every one of
 * them has one, else the step fails with an error naming the worker and the uncovered experts.
 *
 * Requests in flight: a worker reads its next request only after writing its last reply, so a
 * request sent over an unread reply could wait for it for ever once both outgrow the transport's
 * buffering (a prefill chunk's messages are tens of MB). Over a transport that reads the peer's
 * message while a send waits (TCP's read-ahead) that cannot happen, and one request per
 * micro-batch may be in flight: micro-batch B's request crosses the reply to A, so the worker
 * finds B waiting when it is done with A. Over the others (RDMA: credits) every reply a worker
 * owes is read before anything more is sent to it (into that micro-batch's reply buffer, added at
 * its combine): one request in flight.
 * Owned by the engine thread. */
#ifndef MR_DISPATCHER_H
#define MR_DISPATCHER_H

#include "coordinator/cluster.h"
#include "coordinator/model.h"

typedef struct mr_dispatcher mr_dispatcher;

mr_status mr_dispatcher_create(mr_cluster *cl, const mr_placement *pl, const mr_model_config *mc,
                               int max_tokens, int expert_timeout_ms, mr_dp_dtype wire,
                               mr_dispatcher **out);
void mr_dispatcher_destroy(mr_dispatcher *d);
mr_moe_provider mr_dispatcher_provider(mr_dispatcher *d);
/* Adopts newly connected workers; call before each step. Returns the number of (layer, expert)
 * pairs without a ready holder (the step would fail). */
int mr_dispatcher_refresh(mr_dispatcher *d);
/* Appends moerack_expert_tokens_total{layer,expert} lines (tokens routed to each expert). */
void mr_dispatcher_metrics(mr_dispatcher *d, char **text, size_t *len);
/* The error of the last failed dispatch/combine, for the client. */
const char *mr_dispatcher_last_error(const mr_dispatcher *d);

#endif
