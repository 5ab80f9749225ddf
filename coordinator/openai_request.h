/* openai_request.h — parsing and validating OpenAI-style request bodies.
 *
 * Pure functions over the request body (no model, no tokenizer), so the HTTP server, the tests and
 * the fuzz target share them. Every problem is reported as an OpenAI error (message + offending
 * parameter) and an HTTP status, never as a crash:
 *
 *   mr_oai_request r;  mr_oai_error e;
 *   if (mr_oai_parse(MR_OAI_CHAT, body, len, &limits, &r, &e) != MR_OK) reply(e.status, e.message);
 *   ...
 *   mr_oai_request_free(&r);
 */
#ifndef MR_OPENAI_REQUEST_H
#define MR_OPENAI_REQUEST_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "coordinator/sampling.h"

typedef enum mr_oai_kind { MR_OAI_CHAT = 0, MR_OAI_COMPLETION = 1 } mr_oai_kind;

#define MR_OAI_MAX_STOP     16
#define MR_OAI_MAX_STOP_LEN 256

typedef struct mr_oai_limits {
    const char *model;     /* the served model id: requests must name it */
    long long max_context; /* prompt + max_tokens must fit */
    int max_prompt_ids;    /* longest token-id prompt accepted before tokenising */
    int vocab;             /* token ids must be < vocab */
} mr_oai_limits;

typedef struct mr_oai_request {
    mr_oai_kind kind;
    json_t *root; /* the parsed body (owned) */
    /* chat */
    json_t *messages; /* borrowed from root */
    json_t *tools;    /* borrowed; NULL when absent or tool_choice is "none" */
    /* completions: text or ids */
    const char *prompt_text; /* borrowed */
    size_t prompt_text_len;
    int32_t *prompt_ids; /* owned; NULL for text prompts */
    int n_prompt_ids;
    int echo;
    /* common */
    int max_tokens; /* -1: as many as fit */
    mr_sampling_params sampling;
    char *stop[MR_OAI_MAX_STOP]; /* owned copies */
    size_t stop_len[MR_OAI_MAX_STOP];
    int n_stop;
    int stream, include_usage;
    int logprobs;     /* chat: bool; completions: 0 none, else top N + 1 */
    int top_logprobs; /* 0..20 */
    int want_logprobs;
} mr_oai_request;

typedef struct mr_oai_error {
    int status; /* HTTP status */
    char message[512];
    char param[64];   /* offending parameter, "" if none */
    const char *type; /* "invalid_request_error", ... */
} mr_oai_error;

mr_status mr_oai_parse(mr_oai_kind kind, const char *body, size_t len, const mr_oai_limits *lim,
                       mr_oai_request *out, mr_oai_error *err);
void mr_oai_request_free(mr_oai_request *r);
/* {"error": {"message", "type", "param", "code"}} as a new JSON string (caller frees). */
char *mr_oai_error_json(const mr_oai_error *e);
void mr_oai_error_set(mr_oai_error *e, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
