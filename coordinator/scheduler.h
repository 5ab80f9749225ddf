/* scheduler.h — continuous batching of generation requests on one model.
 *
 *   mr_scheduler *s;  MR_CHECK(mr_scheduler_create(model, &params, &s));   // starts its thread
 *   uint64_t id;      MR_CHECK(mr_scheduler_submit(s, &req, on_event, user, &id));
 *   ...               on_event(user, &ev) is called for every generated token; the last call has
 *                     ev.finish != MR_FINISH_NONE and no call follows it
 *   mr_scheduler_cancel(s, id);   // e.g. the client went away: state is freed at the next step
 *
 * Every step runs all running sequences' next decode token plus prefill chunks of admitted
 * requests, oldest first, within `max_batched_tokens`; at most `max_num_seqs` sequences hold
 * state at once; further requests wait in FIFO order (up to `max_waiting`, then submit says
 * MR_ERR_FULL). Results of a sequence do not depend on its batch-mates (the model's reductions
 * are batch-invariant and each request samples from its own generator).
 * Callbacks run on the scheduler thread and must not block; submit and cancel may be called from
 * any thread. */
#ifndef MR_SCHEDULER_H
#define MR_SCHEDULER_H

#include <stdint.h>

#include "common/metrics.h"
#include "common/status.h"
#include "coordinator/model.h"
#include "coordinator/sampling.h"

#define MR_MAX_STOP_IDS 64

typedef enum mr_finish_reason {
    MR_FINISH_NONE = 0,
    MR_FINISH_STOP,      /* a stop token */
    MR_FINISH_LENGTH,    /* max_tokens or the context limit */
    MR_FINISH_CANCELLED, /* mr_scheduler_cancel */
    MR_FINISH_ERROR,     /* the step failed (e.g. experts uncovered); ev.error says why */
} mr_finish_reason;

const char *mr_finish_reason_name(mr_finish_reason r);

typedef struct mr_gen_request {
    const int32_t *prompt; /* copied by submit */
    int n_prompt;
    int max_tokens; /* >= 0 */
    mr_sampling_params sampling;
    int32_t stop_ids[MR_MAX_STOP_IDS];
    int n_stop_ids;
    int n_top_logprobs; /* -1: none; 0..MR_MAX_TOP_LOGPROBS */
    int want_logits;    /* events carry the raw logits row */
    /* Test mode only (config `test_forced_output`): when set, the i-th generated token is
     * forced[i] instead of a sample (the model still runs every step); after the last forced
     * token the request ends as if it had produced a stop token. Copied by submit. */
    const int32_t *forced;
    int n_forced;
    int vocab_limit; /* ids >= this are never sampled (rows with no token); 0 = every row */
} mr_gen_request;

typedef struct mr_gen_event {
    uint64_t id;
    int32_t token;              /* -1 when the event carries no token (cancel, error) */
    int is_stop_token;          /* the token is the stop token (not part of the text) */
    int index;                  /* 0-based position among the generated tokens */
    const mr_sample_result *lp; /* logprobs when requested, else NULL */
    const float *logits;        /* when want_logits: the row the token was chosen from */
    int vocab;
    mr_finish_reason finish;
    const char *error; /* MR_FINISH_ERROR: why */
    int n_prompt, n_generated;
} mr_gen_event;

typedef void (*mr_gen_cb)(void *user, const mr_gen_event *ev);

typedef struct mr_scheduler_params {
    int max_num_seqs;       /* <= the model's max_seqs */
    int max_batched_tokens; /* <= the model's max_batch_tokens */
    int max_waiting;        /* queued requests beyond which submit fails with MR_ERR_FULL */
    mr_metrics *metrics;    /* may be NULL */
    /* called before each step; a non-OK status fails the step's requests with `why` */
    mr_status (*pre_step)(void *user, char *why, size_t cap);
    void *pre_step_user;
    /* 1: every row comes down and is sampled on the host, even where the model's backend
     * samples on the device (mr_model_samples_on_device); for comparisons and as a fallback */
    int host_sampling;
} mr_scheduler_params;

typedef struct mr_scheduler mr_scheduler;

mr_status mr_scheduler_create(mr_model *m, const mr_scheduler_params *p, mr_scheduler **out);
/* Stops the thread; pending and running requests get a final MR_FINISH_CANCELLED event. */
void mr_scheduler_destroy(mr_scheduler *s);
/* MR_ERR_INVALID: the request cannot fit the context (prompt + max_tokens) or is malformed;
 * MR_ERR_FULL: the queue is full. Nothing is called back for a refused request. */
mr_status mr_scheduler_submit(mr_scheduler *s, const mr_gen_request *r, mr_gen_cb cb, void *user,
                              uint64_t *id);
void mr_scheduler_cancel(mr_scheduler *s, uint64_t id);
/* Counts for /metrics and tests: running, waiting. */
void mr_scheduler_counts(mr_scheduler *s, int *running, int *waiting);

#endif
