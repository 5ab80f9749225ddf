/* openai_serve.h — OpenAI-compatible generation over the scheduler: one session per HTTP request.
 *
 * A session turns a parsed request (openai_request.h) into prompt ids (chat template + tokenizer,
 * or the given ids), submits it, and turns the scheduler's token events into text: incremental
 * UTF-8 assembly, stop strings (held back until they can no longer match), and for chat the
 * reasoning / tool-call split of the output parser. It produces either one JSON response or a
 * sequence of server-sent-event chunks in OpenAI's shape.
 *
 * Threads: scheduler callbacks only append events under the session mutex; all text work happens
 * on the HTTP connection's thread in mr_serve_session_next(). */
#ifndef MR_OPENAI_SERVE_H
#define MR_OPENAI_SERVE_H

#include <stddef.h>
#include <stdint.h>

#include "common/metrics.h"
#include "coordinator/openai_request.h"
#include "coordinator/scheduler.h"
#include "coordinator/tokenizer.h"

typedef struct mr_serve_config {
    mr_scheduler *sched;
    mr_tokenizer *tok;
    const char *model_id; /* served model name */
    int vocab;            /* model rows */
    int vocab_limit;      /* tokenizer ids; ids >= are never sampled */
    long long max_context;
    int32_t eos_id;   /* <end_of_sentence>, -1 if unknown */
    int keepalive_ms; /* SSE comment when nothing happened for this long */
    const int32_t *forced_output, *forced_answer; /* test mode; see scheduler.h */
    int n_forced_output, n_forced_answer;
} mr_serve_config;

typedef struct mr_serve_session mr_serve_session;

/* Validates, tokenises and submits. On failure fills err (status + OpenAI error) and returns
 * non-OK; nothing is submitted. */
mr_status mr_serve_session_start(const mr_serve_config *cfg, mr_oai_kind kind, const char *body,
                                 size_t len, mr_serve_session **out, mr_oai_error *err);
/* 1 if the client asked for a stream. */
int mr_serve_session_streaming(const mr_serve_session *s);
/* Streaming: waits up to keepalive_ms for output and returns the next SSE bytes in *data (owned
 * by the session, valid until the next call): chunks, keep-alive comments, finally the usage
 * chunk and "data: [DONE]". Returns 0 while more will come, 1 when this was the last piece.
 * Non-streaming: blocks until the end and returns the whole JSON body (status in *status). */
int mr_serve_session_next(mr_serve_session *s, const char **data, size_t *len, int *status);
/* Non-streaming waits call check(user) about once a second; a non-zero return cancels the
 * request (the HTTP server passes "has the client hung up?"). */
void mr_serve_session_set_abort_check(mr_serve_session *s, int (*check)(void *user), void *user);
/* The client went away: cancels the request (state is freed at the next step). */
void mr_serve_session_cancel(mr_serve_session *s);
void mr_serve_session_destroy(mr_serve_session *s);

#endif
