/* output_parser.h — splits MiniMax-M1 output text into content, reasoning and tool calls, as it
 * streams (spec §6.3, §6.4).
 *
 *   mr_outparse_sink sink = {.user = u, .content = on_text, .reasoning = on_think,
 *                            .tool_call = on_call, .malformed = on_bad};
 *   mr_outparse *p;
 *   mr_outparse_create(NULL, &sink, &p);
 *   while (more) mr_outparse_feed(p, text, len);   // any chunking, down to one byte
 *   mr_outparse_finish(p);
 *   mr_outparse_destroy(p);
 *
 * What it recognises:
 *   <think> ... </think>  reasoning. One newline right after <think>, one right before </think>
 *                         and one right after </think> belong to the markers (the model writes
 *                         "<think>\n" ... "\n</think>\n"). A block may open anywhere in the
 *                         content; an unterminated one is reasoning to the end
 *                         (mr_outparse_in_reasoning() says so after finish).
 *   <tool_calls> ... </tool_calls>  tool calls, one JSON object per non-blank line with a string
 *                         "name" and "arguments" (an object, or a string holding JSON text). The
 *                         calls are delivered when the block closes (or at finish, for an
 *                         unterminated block). If any line is not such an object, the block is
 *                         reported through `malformed` and delivered unchanged, markers included,
 *                         as content. Inside <think> the markers are plain reasoning text.
 * The callbacks receive every byte of the output exactly once, in order, minus the markers; the
 * parser holds back only a suffix that could still become a marker (at most 11 bytes), plus the
 * body of an open <tool_calls> block (up to MR_OUTPARSE_MAX_BLOCK bytes; a longer block is
 * malformed). The result does not depend on how the text is chunked. Bytes are passed through
 * as they are; callers feed whole UTF-8 characters if they want whole characters out. */
#ifndef MR_OUTPUT_PARSER_H
#define MR_OUTPUT_PARSER_H

#include <stddef.h>

#include "common/status.h"

#define MR_OUTPARSE_MAX_BLOCK (1u << 20)

typedef struct mr_outparse mr_outparse;

typedef struct mr_tool_call {
    const char *name;      /* NUL-terminated */
    const char *arguments; /* JSON text: Python json.dumps of the object, or the given string */
    size_t name_len, arguments_len;
    int index; /* 0, 1, ... over the whole output */
} mr_tool_call;

/* Callbacks; any may be NULL. Pointers are valid only during the call. */
typedef struct mr_outparse_sink {
    void *user;
    void (*content)(void *user, const char *text, size_t len);
    void (*reasoning)(void *user, const char *text, size_t len);
    void (*tool_call)(void *user, const mr_tool_call *call);
    void (*malformed)(void *user, const char *why); /* a block left as content, and why */
} mr_outparse_sink;

typedef struct mr_outparse_params {
    int reasoning;  /* split <think> blocks out (default 1) */
    int tool_calls; /* parse <tool_calls> blocks (default 1) */
} mr_outparse_params;

void mr_outparse_params_default(mr_outparse_params *p);
/* PARAMS may be NULL for the defaults. */
mr_status mr_outparse_create(const mr_outparse_params *params, const mr_outparse_sink *sink,
                             mr_outparse **out);
void mr_outparse_destroy(mr_outparse *p);
mr_status mr_outparse_feed(mr_outparse *p, const char *text, size_t len);
/* End of output: flushes what was held back and closes an open block. */
mr_status mr_outparse_finish(mr_outparse *p);
int mr_outparse_in_reasoning(const mr_outparse *p);
/* Bytes fed but not yet delivered (held marker prefix + open block body). */
size_t mr_outparse_held(const mr_outparse *p);

#endif
