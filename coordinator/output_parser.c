/* output_parser.c — streaming split of model output into content, reasoning and tool calls
 * (see output_parser.h).
 *
 * Each feed processes `work` = the bytes held back from the previous feed + the new bytes, in
 * one of three states, one function each. Held bytes are always a proper prefix of a marker, so
 * they are at most 11 bytes; an open tool block's body is kept in `block` instead. */
#include "coordinator/output_parser.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "coordinator/pyjson.h"

#define LOG_T MR_LOG_TEXT

static const char THINK_OPEN[] = "<think>";
static const char THINK_CLOSE[] = "</think>";
static const char TOOLS_OPEN[] = "<tool_calls>";
static const char TOOLS_CLOSE[] = "</tool_calls>";
#define LIT_LEN(s) (sizeof(s) - 1)

typedef enum parse_state {
    PS_CONTENT,
    PS_REASONING,
    PS_TOOLS,
    PS_TOOLS_OVERFLOW, /* a block longer than the limit: verbatim content up to its end marker */
} parse_state;

struct mr_outparse {
    mr_outparse_params params;
    mr_outparse_sink sink;
    parse_state state;
    int skip_nl;   /* drop the next byte if it is '\n' (it belongs to a marker) */
    char hold[16]; /* a proper prefix of a marker, not yet delivered */
    size_t n_hold;
    mr_sbuf work;  /* hold + new input, rebuilt per feed */
    mr_sbuf block; /* the body of an open <tool_calls> block */
    int n_calls;
};

void mr_outparse_params_default(mr_outparse_params *p) {
    p->reasoning = 1;
    p->tool_calls = 1;
}

mr_status mr_outparse_create(const mr_outparse_params *params, const mr_outparse_sink *sink,
                             mr_outparse **out) {
    mr_outparse *p = calloc(1, sizeof *p);
    if (!p) return MR_ERR_NOMEM;
    if (params)
        p->params = *params;
    else
        mr_outparse_params_default(&p->params);
    if (sink) p->sink = *sink;
    p->state = PS_CONTENT;
    *out = p;
    return MR_OK;
}

void mr_outparse_destroy(mr_outparse *p) {
    if (!p) return;
    mr_sbuf_free(&p->work);
    mr_sbuf_free(&p->block);
    free(p);
}

static void emit_content(mr_outparse *p, const char *s, size_t n) {
    if (n && p->sink.content) p->sink.content(p->sink.user, s, n);
}

static void emit_reasoning(mr_outparse *p, const char *s, size_t n) {
    if (n && p->sink.reasoning) p->sink.reasoning(p->sink.user, s, n);
}

/* 2 if s[0..n) starts with marker m, 1 if it is a proper prefix of m, 0 otherwise. */
static int marker_match(const char *s, size_t n, const char *m, size_t ml) {
    if (n >= ml) return memcmp(s, m, ml) == 0 ? 2 : 0;
    return memcmp(s, m, n) == 0 ? 1 : 0;
}

static void set_hold(mr_outparse *p, const char *s, size_t n) {
    memcpy(p->hold, s, n); /* n < 16: a proper prefix of a marker (+ one newline) */
    p->n_hold = n;
}

/* ---- tool blocks ----------------------------------------------------------------------------- */

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Parses one stripped line into a call; returns NULL (and fills why) if it is not one. */
static json_t *parse_call_line(const char *s, size_t n, int line, char *why, size_t why_len) {
    if (n < 2 || s[0] != '{' || s[n - 1] != '}') {
        snprintf(why, why_len, "tool call line %d is not a JSON object", line);
        return NULL;
    }
    json_error_t e;
    json_t *o = json_loadb(s, n, 0, &e);
    if (!o) {
        snprintf(why, why_len, "tool call line %d: invalid JSON: %s", line, e.text);
        return NULL;
    }
    json_t *name = json_object_get(o, "name"), *args = json_object_get(o, "arguments");
    if (!json_is_string(name) || json_string_length(name) == 0 ||
        !(json_is_object(args) || json_is_string(args))) {
        snprintf(why, why_len,
                 "tool call line %d: needs a string \"name\" and an object "
                 "\"arguments\"",
                 line);
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Parses the block body. If every non-blank line is a call, delivers them and sets *ok; else
 * reports why (prefixed by WHAT) and delivers "<tool_calls>" + body as content. */
static mr_status close_block(mr_outparse *p, const char *what, int *ok) {
    const char *b = p->block.p ? p->block.p : "";
    size_t n = p->block.n;
    *ok = 0;
    json_t *calls = json_array();
    if (!calls) return MR_ERR_NOMEM;
    char why[256] = "", msg[320];
    int line = 0;
    for (size_t i = 0; i < n && !why[0];) {
        const char *nl = memchr(b + i, '\n', n - i);
        size_t e = nl ? (size_t)(nl - b) : n, s = i;
        i = nl ? e + 1 : n;
        line++;
        while (s < e && is_space(b[s])) s++;
        while (e > s && is_space(b[e - 1])) e--;
        if (s == e) continue;
        json_t *o = parse_call_line(b + s, e - s, line, why, sizeof why);
        if (o && json_array_append_new(calls, o) != 0) {
            json_decref(calls);
            return MR_ERR_NOMEM;
        }
    }
    if (!why[0] && json_array_size(calls) == 0) snprintf(why, sizeof why, "no tool call in it");
    if (why[0]) {
        snprintf(msg, sizeof msg, "%s<tool_calls> block left as content: %s", what, why);
        if (p->sink.malformed) p->sink.malformed(p->sink.user, msg);
        emit_content(p, TOOLS_OPEN, LIT_LEN(TOOLS_OPEN));
        emit_content(p, b, n);
        json_decref(calls);
        p->block.n = 0;
        return MR_OK;
    }
    size_t i;
    json_t *o;
    json_array_foreach(calls, i, o) {
        json_t *name = json_object_get(o, "name"), *args = json_object_get(o, "arguments");
        mr_sbuf a = {0};
        if (json_is_string(args))
            mr_sbuf_add(&a, json_string_value(args), json_string_length(args));
        else
            mr_pyjson_dump(&a, args);
        if (a.oom) {
            mr_sbuf_free(&a);
            json_decref(calls);
            return MR_ERR_NOMEM;
        }
        mr_tool_call c = {json_string_value(name), a.p ? a.p : "", json_string_length(name), a.n,
                          p->n_calls++};
        if (p->sink.tool_call) p->sink.tool_call(p->sink.user, &c);
        mr_sbuf_free(&a);
    }
    json_decref(calls);
    p->block.n = 0;
    *ok = 1;
    return MR_OK;
}

/* ---- states ---------------------------------------------------------------------------------- */

/* Each returns the new position in w; sets *done when the rest of w has been consumed/held. */
static size_t step_content(mr_outparse *p, const char *w, size_t n, size_t i, int *done) {
    for (;;) {
        const char *lt = memchr(w + i, '<', n - i);
        size_t j = lt ? (size_t)(lt - w) : n;
        emit_content(p, w + i, j - i);
        if (j == n) {
            *done = 1;
            return n;
        }
        int t =
            p->params.reasoning ? marker_match(w + j, n - j, THINK_OPEN, LIT_LEN(THINK_OPEN)) : 0;
        int c =
            p->params.tool_calls ? marker_match(w + j, n - j, TOOLS_OPEN, LIT_LEN(TOOLS_OPEN)) : 0;
        if (t == 2) {
            p->state = PS_REASONING;
            p->skip_nl = 1;
            return j + LIT_LEN(THINK_OPEN);
        }
        if (c == 2) {
            p->state = PS_TOOLS;
            p->block.n = 0;
            return j + LIT_LEN(TOOLS_OPEN);
        }
        if (t == 1 || c == 1) { /* could still become a marker */
            set_hold(p, w + j, n - j);
            *done = 1;
            return n;
        }
        emit_content(p, w + j, 1);
        i = j + 1;
    }
}

static size_t step_reasoning(mr_outparse *p, const char *w, size_t n, size_t i, int *done) {
    size_t from = i;
    for (;;) {
        const char *lt = memchr(w + from, '<', n - from);
        size_t j = lt ? (size_t)(lt - w) : n;
        int m = j < n ? marker_match(w + j, n - j, THINK_CLOSE, LIT_LEN(THINK_CLOSE)) : 1;
        if (m == 0) {
            from = j + 1;
            continue;
        }
        /* j is the end marker (m == 2), a prefix of it at the end (m == 1), or the end (j == n) */
        size_t text_end = j > i && w[j - 1] == '\n' ? j - 1 : j;
        emit_reasoning(p, w + i, text_end - i);
        if (m == 2) {
            p->state = PS_CONTENT;
            p->skip_nl = 1;
            return j + LIT_LEN(THINK_CLOSE);
        }
        set_hold(p, w + text_end, n - text_end);
        *done = 1;
        return n;
    }
}

static void report_too_long(mr_outparse *p) {
    if (p->sink.malformed)
        p->sink.malformed(p->sink.user, "<tool_calls> block left as content: longer than "
                                        "MR_OUTPARSE_MAX_BLOCK");
}

static size_t step_tools(mr_outparse *p, const char *w, size_t n, size_t i, int *done,
                         mr_status *st) {
    size_t old = p->block.n;
    const size_t cl = LIT_LEN(TOOLS_CLOSE);
    mr_sbuf_add(&p->block, w + i, n - i);
    if (p->block.oom) {
        *st = MR_ERR_NOMEM;
        return n;
    }
    size_t from = old >= cl ? old - (cl - 1) : 0;
    const char *hit = memmem(p->block.p + from, p->block.n - from, TOOLS_CLOSE, cl);
    if (hit) {
        size_t k = (size_t)(hit - p->block.p);
        size_t resume = i + (k + cl - old); /* first byte after the marker */
        p->state = PS_CONTENT;
        if (k > MR_OUTPARSE_MAX_BLOCK) {
            report_too_long(p);
            emit_content(p, TOOLS_OPEN, LIT_LEN(TOOLS_OPEN));
            emit_content(p, p->block.p, k);
            emit_content(p, TOOLS_CLOSE, cl);
            p->block.n = 0;
            return resume;
        }
        p->block.n = k;
        int ok;
        *st = close_block(p, "", &ok);
        if (*st == MR_OK && !ok) /* malformed: the closing marker goes back into the content */
            emit_content(p, TOOLS_CLOSE, cl);
        return resume;
    }
    if (p->block.n > MR_OUTPARSE_MAX_BLOCK + cl) {
        /* the end marker can no longer come early enough: deliver the block as content as it
         * streams, keeping back what may be the start of the end marker */
        report_too_long(p);
        emit_content(p, TOOLS_OPEN, LIT_LEN(TOOLS_OPEN));
        emit_content(p, p->block.p, p->block.n - (cl - 1));
        set_hold(p, p->block.p + p->block.n - (cl - 1), cl - 1);
        p->block.n = 0;
        p->state = PS_TOOLS_OVERFLOW;
    }
    *done = 1;
    return n;
}

static size_t step_overflow(mr_outparse *p, const char *w, size_t n, size_t i, int *done) {
    const size_t cl = LIT_LEN(TOOLS_CLOSE);
    const char *hit = memmem(w + i, n - i, TOOLS_CLOSE, cl);
    if (hit) {
        size_t j = (size_t)(hit - w) + cl;
        emit_content(p, w + i, j - i);
        p->state = PS_CONTENT;
        return j;
    }
    size_t keep = 0; /* longest suffix that is a proper prefix of the end marker */
    for (size_t k = cl - 1; k > 0 && !keep; k--)
        if (n - i >= k && memcmp(w + n - k, TOOLS_CLOSE, k) == 0) keep = k;
    emit_content(p, w + i, n - i - keep);
    set_hold(p, w + n - keep, keep);
    *done = 1;
    return n;
}

mr_status mr_outparse_feed(mr_outparse *p, const char *text, size_t len) {
    mr_sbuf *wb = &p->work;
    wb->n = 0;
    mr_sbuf_add(wb, p->hold, p->n_hold);
    mr_sbuf_add(wb, text, len);
    if (wb->oom) {
        MR_LOG_ERROR(LOG_T, "output parser: out of memory");
        return MR_ERR_NOMEM;
    }
    p->n_hold = 0;
    const char *w = wb->p;
    size_t n = wb->n, i = 0;
    int done = 0;
    mr_status st = MR_OK;
    while (!done && st == MR_OK) {
        if (p->skip_nl && (p->state == PS_CONTENT || p->state == PS_REASONING)) {
            if (i == n) break; /* decided by the next byte */
            if (w[i] == '\n') i++;
            p->skip_nl = 0;
        }
        switch (p->state) {
        case PS_CONTENT:
            i = step_content(p, w, n, i, &done);
            break;
        case PS_REASONING:
            i = step_reasoning(p, w, n, i, &done);
            break;
        case PS_TOOLS:
            i = step_tools(p, w, n, i, &done, &st);
            break;
        case PS_TOOLS_OVERFLOW:
            i = step_overflow(p, w, n, i, &done);
            break;
        }
    }
    if (st != MR_OK) MR_LOG_ERROR(LOG_T, "output parser: out of memory");
    return st;
}

mr_status mr_outparse_finish(mr_outparse *p) {
    mr_status st = MR_OK;
    switch (p->state) {
    case PS_CONTENT:
    case PS_TOOLS_OVERFLOW:
        emit_content(p, p->hold, p->n_hold);
        break;
    case PS_REASONING:
        emit_reasoning(p, p->hold, p->n_hold);
        break;
    case PS_TOOLS: { /* unterminated: whole calls still count (as vLLM accepts them) */
        int ok;
        st = close_block(p, "unterminated ", &ok);
        p->state = PS_CONTENT;
        break;
    }
    }
    p->n_hold = 0;
    p->skip_nl = 0;
    if (st != MR_OK) MR_LOG_ERROR(LOG_T, "output parser: out of memory");
    return st;
}

int mr_outparse_in_reasoning(const mr_outparse *p) {
    return p->state == PS_REASONING;
}

size_t mr_outparse_held(const mr_outparse *p) {
    return p->n_hold + (p->state == PS_TOOLS ? p->block.n : 0);
}
