#include "coordinator/openai_serve.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/rng.h"
#include "common/timeutil.h"
#include "coordinator/chat_template.h"
#include "coordinator/output_parser.h"

/* A growable byte buffer. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static int sbuf_add(sbuf *b, const void *data, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return -1;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static void sbuf_free(sbuf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* One generated token as the scheduler reported it. */
typedef struct gen_token {
    int32_t id;
    mr_sample_result lp;
} gen_token;

struct mr_serve_session {
    const mr_serve_config *cfg;
    mr_oai_request req;
    mr_oai_kind kind;
    char id[48];
    long long created;
    int n_prompt;
    int32_t *prompt_ids; /* owned */
    uint64_t sched_id;

    /* filled by scheduler callbacks, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    gen_token *toks;
    int n_toks, cap_toks;
    gen_token *work; /* the connection thread's copy of new tokens */
    int cap_work;
    int done;
    mr_finish_reason finish;
    char error[512];

    /* text state: the connection thread only */
    int n_seen;            /* tokens consumed from toks */
    sbuf text;             /* generated text, valid UTF-8 */
    size_t committed;      /* bytes of text passed on */
    unsigned char pend[4]; /* an incomplete UTF-8 character */
    int n_pend, pend_need;
    int stopped; /* a stop string matched */
    size_t max_stop;
    mr_outparse *parser;
    sbuf d_content, d_reasoning; /* deltas not yet sent */
    json_t *d_tools;             /* tool calls not yet sent */
    int n_tool_calls;
    json_t *d_logprobs; /* logprob entries not yet sent (chat content / completion parallel) */
    sbuf all_content, all_reasoning; /* for non-streaming replies */
    json_t *all_tools, *all_logprobs;
    size_t text_offset; /* completions logprobs text_offset */
    sbuf out;           /* what next() returns */
    int sent_role, sent_final;
    double last_sent;
    int (*abort_check)(void *user);
    void *abort_user;
};

/* ---- scheduler side -------------------------------------------------------------------------- */

static void on_event(void *user, const mr_gen_event *ev) {
    mr_serve_session *s = user;
    pthread_mutex_lock(&s->mu);
    if (ev->token >= 0 && !ev->is_stop_token) {
        if (s->n_toks == s->cap_toks) {
            int cap = s->cap_toks ? s->cap_toks * 2 : 64;
            gen_token *t = realloc(s->toks, (size_t)cap * sizeof *t);
            if (t) {
                s->toks = t;
                s->cap_toks = cap;
            }
        }
        if (s->n_toks < s->cap_toks) {
            s->toks[s->n_toks].id = ev->token;
            if (ev->lp) s->toks[s->n_toks].lp = *ev->lp;
            s->n_toks++;
        }
    }
    if (ev->finish != MR_FINISH_NONE) {
        s->done = 1;
        s->finish = ev->finish;
        if (ev->error) snprintf(s->error, sizeof s->error, "%s", ev->error);
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* ---- text assembly --------------------------------------------------------------------------- */

static const char replacement[] = "\xEF\xBF\xBD"; /* U+FFFD */

/* Bytes in the UTF-8 sequence led by b, or 0 if b cannot lead one. */
static int utf8_need(unsigned char b) {
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) return 2;
    if (b >= 0xE0 && b <= 0xEF) return 3;
    if (b >= 0xF0 && b <= 0xF4) return 4;
    return 0;
}

/* Continuation byte c valid as the second byte after lead? (excludes overlongs and surrogates) */
static int utf8_second_ok(unsigned char lead, unsigned char c) {
    if (c < 0x80 || c > 0xBF) return 0;
    if (lead == 0xE0) return c >= 0xA0;
    if (lead == 0xED) return c <= 0x9F;
    if (lead == 0xF0) return c >= 0x90;
    if (lead == 0xF4) return c <= 0x8F;
    return 1;
}

/* Appends raw token bytes to the text, keeping it valid UTF-8: a character split across tokens
 * waits in pend; an invalid byte becomes U+FFFD (as Python's errors="replace" would). */
static void add_bytes(mr_serve_session *s, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char b = p[i];
        if (s->n_pend) {
            int ok = s->n_pend == 1 ? utf8_second_ok(s->pend[0], b) : (b >= 0x80 && b <= 0xBF);
            if (ok) {
                s->pend[s->n_pend++] = b;
                if (s->n_pend == s->pend_need) {
                    sbuf_add(&s->text, s->pend, (size_t)s->n_pend);
                    s->n_pend = 0;
                }
                continue;
            }
            sbuf_add(&s->text, replacement, 3);
            s->n_pend = 0;
        }
        int need = utf8_need(b);
        if (need == 1)
            sbuf_add(&s->text, &b, 1);
        else if (need == 0)
            sbuf_add(&s->text, replacement, 3);
        else {
            s->pend[0] = b;
            s->n_pend = 1;
            s->pend_need = need;
        }
    }
}

static void flush_pending(mr_serve_session *s) {
    if (s->n_pend) sbuf_add(&s->text, replacement, 3);
    s->n_pend = 0;
}

/* ---- output parser sink (chat) --------------------------------------------------------------- */

static void sink_content(void *u, const char *t, size_t n) {
    mr_serve_session *s = u;
    sbuf_add(&s->d_content, t, n);
    sbuf_add(&s->all_content, t, n);
}
static void sink_reasoning(void *u, const char *t, size_t n) {
    mr_serve_session *s = u;
    sbuf_add(&s->d_reasoning, t, n);
    sbuf_add(&s->all_reasoning, t, n);
}
static void sink_tool(void *u, const mr_tool_call *c) {
    mr_serve_session *s = u;
    char id[96];
    snprintf(id, sizeof id, "call_%s_%d", s->id + 9, c->index);
    json_t *call = json_pack("{s:i,s:s,s:s,s:{s:s%,s:s%}}", "index", c->index, "id", id, "type",
                             "function", "function", "name", c->name, c->name_len, "arguments",
                             c->arguments, c->arguments_len);
    if (!call) return;
    json_array_append(s->d_tools, call);
    json_array_append_new(s->all_tools, call);
    s->n_tool_calls++;
}
static void sink_malformed(void *u, const char *why) {
    mr_serve_session *s = u;
    MR_LOG_WARN(MR_LOG_HTTP,
                "%s: the model's tool call block is malformed (%s); returned as content", s->id,
                why);
}

/* ---- logprobs -------------------------------------------------------------------------------- */

static json_t *token_string(const mr_serve_session *s, int32_t id) {
    size_t n = 0;
    const char *b = mr_tokenizer_token_bytes(s->cfg->tok, id, &n);
    sbuf tmp = {0};
    mr_serve_session fake = {0};
    fake.text = tmp;
    add_bytes(&fake, (const unsigned char *)(b ? b : ""), b ? n : 0);
    flush_pending(&fake);
    json_t *str = json_stringn(fake.text.p ? fake.text.p : "", fake.text.len);
    sbuf_free(&fake.text);
    return str ? str : json_string("");
}

static json_t *bytes_array(const mr_serve_session *s, int32_t id) {
    size_t n = 0;
    const char *b = mr_tokenizer_token_bytes(s->cfg->tok, id, &n);
    json_t *a = json_array();
    for (size_t i = 0; b && i < n; i++) json_array_append_new(a, json_integer((unsigned char)b[i]));
    return a;
}

static void add_logprob(mr_serve_session *s, const gen_token *t) {
    if (!s->req.want_logprobs) return;
    if (s->kind == MR_OAI_CHAT) {
        json_t *top = json_array();
        for (int i = 0; i < t->lp.n_top && i < s->req.top_logprobs; i++)
            json_array_append_new(top, json_pack("{s:o,s:f,s:o}", "token",
                                                 token_string(s, t->lp.top_ids[i]), "logprob",
                                                 (double)t->lp.top_logprobs[i], "bytes",
                                                 bytes_array(s, t->lp.top_ids[i])));
        json_t *e =
            json_pack("{s:o,s:f,s:o,s:o}", "token", token_string(s, t->id), "logprob",
                      (double)t->lp.logprob, "bytes", bytes_array(s, t->id), "top_logprobs", top);
        json_array_append(s->d_logprobs, e);
        json_array_append_new(s->all_logprobs, e);
    } else {
        json_t *top = json_object();
        for (int i = 0; i < t->lp.n_top && i < s->req.top_logprobs; i++) {
            json_t *ts = token_string(s, t->lp.top_ids[i]);
            json_object_set_new(top, json_string_value(ts), json_real(t->lp.top_logprobs[i]));
            json_decref(ts);
        }
        json_t *e =
            json_pack("{s:o,s:f,s:o,s:I}", "token", token_string(s, t->id), "logprob",
                      (double)t->lp.logprob, "top", top, "offset", (json_int_t)s->text_offset);
        json_array_append(s->d_logprobs, e);
        json_array_append_new(s->all_logprobs, e);
    }
}

/* Completions' logprobs object {tokens, token_logprobs, top_logprobs, text_offset}. */
static json_t *completion_logprobs(json_t *entries) {
    json_t *toks = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e) {
        json_array_append(toks, json_object_get(e, "token"));
        json_array_append(lps, json_object_get(e, "logprob"));
        json_array_append(tops, json_object_get(e, "top"));
        json_array_append(offs, json_object_get(e, "offset"));
    }
    return json_pack("{s:o,s:o,s:o,s:o}", "tokens", toks, "token_logprobs", lps, "top_logprobs",
                     tops, "text_offset", offs);
}

/* ---- the text pipeline ----------------------------------------------------------------------- */

/* Passes text[committed, upto) downstream (to the parser for chat). */
static void commit_text(mr_serve_session *s, size_t upto) {
    if (upto <= s->committed) return;
    const char *t = s->text.p + s->committed;
    size_t n = upto - s->committed;
    if (s->kind == MR_OAI_CHAT)
        mr_outparse_feed(s->parser, t, n);
    else {
        sbuf_add(&s->d_content, t, n);
        sbuf_add(&s->all_content, t, n);
    }
    s->committed = upto;
}

/* Looks for a stop string in the text not yet committed (plus the overlap that could complete
 * one); cuts the text there. Returns 1 if one matched. */
static int match_stop(mr_serve_session *s) {
    if (!s->req.n_stop || s->text.len == 0) return 0;
    size_t from = s->committed > s->max_stop ? s->committed - s->max_stop : 0;
    size_t best = SIZE_MAX;
    for (int i = 0; i < s->req.n_stop; i++) {
        const char *hay = s->text.p + from;
        size_t hl = s->text.len - from;
        const char *hit = memmem(hay, hl, s->req.stop[i], s->req.stop_len[i]);
        if (hit && (size_t)(hit - s->text.p) < best) best = (size_t)(hit - s->text.p);
    }
    if (best == SIZE_MAX) return 0;
    if (best < s->committed) best = s->committed; /* already passed on: cannot take back */
    s->text.len = best;
    s->text.p[best] = '\0';
    return 1;
}

/* Consumes new tokens; updates deltas. Returns 1 when the generation has ended (finish known). */
static int pump(mr_serve_session *s, int wait_ms) {
    pthread_mutex_lock(&s->mu);
    if (wait_ms > 0 && s->n_seen == s->n_toks && !s->done) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += wait_ms / 1000;
        ts.tv_nsec += (long)(wait_ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    /* copy the new tokens out: the callback may reallocate toks once we unlock */
    int n = s->n_toks, done = s->done, fresh = n - s->n_seen;
    if (fresh > s->cap_work) {
        gen_token *w = realloc(s->work, (size_t)fresh * sizeof *w);
        if (w) {
            s->work = w;
            s->cap_work = fresh;
        } else {
            fresh = s->cap_work;
            n = s->n_seen + fresh;
            done = 0;
        }
    }
    if (fresh > 0) memcpy(s->work, s->toks + s->n_seen, (size_t)fresh * sizeof *s->work);
    pthread_mutex_unlock(&s->mu);
    for (int k = 0; s->n_seen < n && !s->stopped; s->n_seen++, k++) {
        const gen_token *t = &s->work[k];
        size_t before = s->text.len;
        if (!mr_tokenizer_is_special(s->cfg->tok, t->id)) {
            size_t len = 0;
            const char *b = mr_tokenizer_token_bytes(s->cfg->tok, t->id, &len);
            if (b) add_bytes(s, (const unsigned char *)b, len);
        }
        s->text_offset = before;
        add_logprob(s, t);
        if (match_stop(s)) {
            s->stopped = 1;
            mr_scheduler_cancel(s->cfg->sched, s->sched_id);
        }
    }
    int ended = done || s->stopped;
    if (ended) {
        if (!s->stopped) flush_pending(s);
        if (!s->stopped && match_stop(s)) s->stopped = 1;
        commit_text(s, s->text.len);
        if (s->kind == MR_OAI_CHAT && s->parser) {
            mr_outparse_finish(s->parser);
            mr_outparse_destroy(s->parser);
            s->parser = NULL;
        }
    } else {
        /* hold back what could still be the start of a stop string, at a character boundary */
        size_t upto = s->text.len > s->max_stop ? s->text.len - s->max_stop : 0;
        while (upto > s->committed && ((unsigned char)s->text.p[upto] & 0xC0) == 0x80) upto--;
        if (s->max_stop == 0) upto = s->text.len;
        commit_text(s, upto);
    }
    return ended;
}

static const char *finish_reason(const mr_serve_session *s) {
    if (s->stopped) return "stop";
    if (s->finish == MR_FINISH_LENGTH) return "length";
    if (s->kind == MR_OAI_CHAT && s->n_tool_calls > 0) return "tool_calls";
    return "stop";
}

static json_t *usage(const mr_serve_session *s) {
    return json_pack("{s:i,s:i,s:i}", "prompt_tokens", s->n_prompt, "completion_tokens", s->n_seen,
                     "total_tokens", s->n_prompt + s->n_seen);
}

/* ---- responses ------------------------------------------------------------------------------- */

static void put_sse(mr_serve_session *s, json_t *obj) {
    char *j = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    if (!j) return;
    sbuf_add(&s->out, "data: ", 6);
    sbuf_add(&s->out, j, strlen(j));
    sbuf_add(&s->out, "\n\n", 2);
    free(j);
    s->last_sent = mr_now_s();
}

static json_t *chunk(mr_serve_session *s, json_t *choice) {
    return json_pack("{s:s,s:s,s:I,s:s,s:[o]}", "id", s->id, "object",
                     s->kind == MR_OAI_CHAT ? "chat.completion.chunk" : "text_completion",
                     "created", (json_int_t)s->created, "model", s->cfg->model_id, "choices",
                     choice);
}

/* Emits one SSE chunk with whatever deltas are pending (and the finish reason if final). */
static void emit_delta(mr_serve_session *s, int final) {
    int have = s->d_content.len || s->d_reasoning.len || json_array_size(s->d_tools) ||
               json_array_size(s->d_logprobs) || (!s->sent_role && s->kind == MR_OAI_CHAT);
    if (!have && !final) return;
    json_t *fin = final ? json_string(finish_reason(s)) : json_null();
    json_t *lp = json_null();
    if (json_array_size(s->d_logprobs))
        lp = s->kind == MR_OAI_CHAT ? json_pack("{s:O}", "content", s->d_logprobs)
                                    : completion_logprobs(s->d_logprobs);
    json_t *choice;
    if (s->kind == MR_OAI_CHAT) {
        json_t *delta = json_object();
        if (!s->sent_role) {
            json_object_set_new(delta, "role", json_string("assistant"));
            s->sent_role = 1;
        }
        if (s->d_reasoning.len)
            json_object_set_new(delta, "reasoning_content",
                                json_stringn(s->d_reasoning.p, s->d_reasoning.len));
        if (s->d_content.len)
            json_object_set_new(delta, "content", json_stringn(s->d_content.p, s->d_content.len));
        if (json_array_size(s->d_tools)) json_object_set(delta, "tool_calls", s->d_tools);
        choice = json_pack("{s:i,s:o,s:o,s:o}", "index", 0, "delta", delta, "logprobs", lp,
                           "finish_reason", fin);
    } else {
        choice = json_pack("{s:i,s:s%,s:o,s:o}", "index", 0, "text",
                           s->d_content.p ? s->d_content.p : "", s->d_content.len, "logprobs", lp,
                           "finish_reason", fin);
    }
    put_sse(s, chunk(s, choice));
    s->d_content.len = s->d_reasoning.len = 0;
    json_array_clear(s->d_tools);
    json_array_clear(s->d_logprobs);
}

static json_t *error_object(mr_serve_session *s, int *status) {
    mr_oai_error e;
    int unavailable = s->finish == MR_FINISH_ERROR;
    mr_oai_error_set(&e, unavailable ? 503 : 500, NULL, "%s",
                     s->error[0] ? s->error : "the request was cancelled");
    if (status) *status = e.status;
    char *j = mr_oai_error_json(&e);
    json_t *o = json_loads(j, 0, NULL);
    free(j);
    return o;
}

static void build_full_response(mr_serve_session *s, int *status) {
    json_t *o;
    *status = 200;
    if (s->finish == MR_FINISH_ERROR || (s->finish == MR_FINISH_CANCELLED && !s->stopped)) {
        o = error_object(s, status);
    } else if (s->kind == MR_OAI_CHAT) {
        json_t *msg = json_pack(
            "{s:s,s:o}", "role", "assistant", "content",
            s->all_content.len || !s->n_tool_calls
                ? json_stringn(s->all_content.p ? s->all_content.p : "", s->all_content.len)
                : json_null());
        if (s->all_reasoning.len)
            json_object_set_new(msg, "reasoning_content",
                                json_stringn(s->all_reasoning.p, s->all_reasoning.len));
        if (s->n_tool_calls) {
            size_t i;
            json_t *c;
            json_array_foreach(s->all_tools, i, c) json_object_del(c, "index");
            json_object_set(msg, "tool_calls", s->all_tools);
        }
        json_t *lp =
            s->req.want_logprobs ? json_pack("{s:O}", "content", s->all_logprobs) : json_null();
        o = json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:o,s:o,s:s}],s:o}", "id", s->id, "object",
                      "chat.completion", "created", (json_int_t)s->created, "model",
                      s->cfg->model_id, "choices", "index", 0, "message", msg, "logprobs", lp,
                      "finish_reason", finish_reason(s), "usage", usage(s));
    } else {
        sbuf full = {0};
        if (s->req.echo && s->req.prompt_text)
            sbuf_add(&full, s->req.prompt_text, s->req.prompt_text_len);
        else if (s->req.echo) { /* token-id prompt: echo its decoded text */
            mr_serve_session tmp = {0};
            for (int i = 0; i < s->n_prompt; i++) {
                size_t n = 0;
                const char *b = mr_tokenizer_is_special(s->cfg->tok, s->prompt_ids[i])
                                    ? NULL
                                    : mr_tokenizer_token_bytes(s->cfg->tok, s->prompt_ids[i], &n);
                if (b) add_bytes(&tmp, (const unsigned char *)b, n);
            }
            flush_pending(&tmp);
            if (tmp.text.len) sbuf_add(&full, tmp.text.p, tmp.text.len);
            sbuf_free(&tmp.text);
        }
        if (s->all_content.len) sbuf_add(&full, s->all_content.p, s->all_content.len);
        json_t *lp = s->req.want_logprobs ? completion_logprobs(s->all_logprobs) : json_null();
        o = json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:s%,s:o,s:s}],s:o}", "id", s->id, "object",
                      "text_completion", "created", (json_int_t)s->created, "model",
                      s->cfg->model_id, "choices", "index", 0, "text", full.p ? full.p : "",
                      full.len, "logprobs", lp, "finish_reason", finish_reason(s), "usage",
                      usage(s));
        sbuf_free(&full);
    }
    char *j = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    s->out.len = 0;
    if (j)
        sbuf_add(&s->out, j, strlen(j));
    else {
        *status = 500;
        sbuf_add(&s->out,
                 "{\"error\":{\"message\":\"internal error\",\"type\":\"internal_error\"}}", 62);
    }
    free(j);
}

int mr_serve_session_next(mr_serve_session *s, const char **data, size_t *len, int *status) {
    s->out.len = 0;
    if (!s->req.stream) {
        while (!pump(s, 1000))
            if (s->abort_check && s->abort_check(s->abort_user)) mr_serve_session_cancel(s);
        build_full_response(s, status);
        *data = s->out.p;
        *len = s->out.len;
        return 1;
    }
    *status = 200;
    if (s->sent_final) {
        *data = "";
        *len = 0;
        return 1;
    }
    int ended = pump(s, s->cfg->keepalive_ms);
    if (!ended) {
        emit_delta(s, 0);
        if (!s->out.len && mr_now_s() - s->last_sent >= s->cfg->keepalive_ms / 1000.0) {
            sbuf_add(&s->out, ": keep-alive\n\n", 14);
            s->last_sent = mr_now_s();
        }
    } else {
        if (s->finish == MR_FINISH_ERROR || (s->finish == MR_FINISH_CANCELLED && !s->stopped)) {
            put_sse(s, error_object(s, NULL));
        } else {
            emit_delta(s, 1);
            if (s->req.include_usage)
                put_sse(s, json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", s->id, "object",
                                     s->kind == MR_OAI_CHAT ? "chat.completion.chunk"
                                                            : "text_completion",
                                     "created", (json_int_t)s->created, "model", s->cfg->model_id,
                                     "choices", "usage", usage(s)));
        }
        sbuf_add(&s->out, "data: [DONE]\n\n", 14);
        s->sent_final = 1;
    }
    *data = s->out.p ? s->out.p : "";
    *len = s->out.len;
    return s->sent_final;
}

/* ---- start / stop ---------------------------------------------------------------------------- */

static void new_id(mr_serve_session *s) {
    uint64_t st = mr_now_ns() ^ (uint64_t)(uintptr_t)s;
    snprintf(s->id, sizeof s->id, "%s-%016llx", s->kind == MR_OAI_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)mr_splitmix64(&st));
    s->created = (long long)time(NULL);
}

/* Prompt ids for the request: chat template + tokenizer, a text prompt, or the given ids. */
static mr_status prompt_ids(mr_serve_session *s, mr_oai_error *err) {
    const mr_serve_config *cfg = s->cfg;
    char *text = NULL;
    size_t text_len = 0;
    if (s->kind == MR_OAI_CHAT) {
        if (mr_chat_template_render(s->req.messages, s->req.tools, 1, &text, &text_len) != MR_OK) {
            mr_oai_error_set(err, 400, "messages",
                             "the messages cannot be rendered with the chat template (each needs a "
                             "role of system/user/assistant/tool and text content)");
            return MR_ERR_INVALID;
        }
    } else if (s->req.prompt_text) {
        text = (char *)s->req.prompt_text;
        text_len = s->req.prompt_text_len;
    } else {
        s->prompt_ids = s->req.prompt_ids;
        s->req.prompt_ids = NULL;
        s->n_prompt = s->req.n_prompt_ids;
        return MR_OK;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    mr_status st = mr_tokenizer_encode(cfg->tok, text, text_len, 0, &ids, &n);
    if (s->kind == MR_OAI_CHAT) free(text);
    if (st != MR_OK) {
        mr_oai_error_set(err, 400, s->kind == MR_OAI_CHAT ? "messages" : "prompt",
                         "the text is not valid UTF-8 or cannot be tokenized");
        return MR_ERR_INVALID;
    }
    s->prompt_ids = ids;
    s->n_prompt = (int)n;
    return MR_OK;
}

mr_status mr_serve_session_start(const mr_serve_config *cfg, mr_oai_kind kind, const char *body,
                                 size_t len, mr_serve_session **out, mr_oai_error *err) {
    mr_serve_session *s = calloc(1, sizeof *s);
    if (!s) {
        mr_oai_error_set(err, 500, NULL, "out of memory");
        return MR_ERR_NOMEM;
    }
    s->cfg = cfg;
    s->kind = kind;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->d_tools = json_array();
    s->d_logprobs = json_array();
    s->all_tools = json_array();
    s->all_logprobs = json_array();
    new_id(s);
    mr_oai_limits lim = {cfg->model_id, cfg->max_context, (int)cfg->max_context, cfg->vocab};
    mr_status st = mr_oai_parse(kind, body, len, &lim, &s->req, err);
    if (st == MR_OK) st = prompt_ids(s, err);
    if (st != MR_OK) {
        mr_serve_session_destroy(s);
        return st;
    }
    for (int i = 0; i < s->req.n_stop; i++)
        if (s->req.stop_len[i] > s->max_stop) s->max_stop = s->req.stop_len[i];
    if (s->n_prompt >= cfg->max_context) {
        mr_oai_error_set(err, 400, kind == MR_OAI_CHAT ? "messages" : "prompt",
                         "the prompt has %d tokens; the context limit is %lld", s->n_prompt,
                         cfg->max_context);
        mr_serve_session_destroy(s);
        return MR_ERR_INVALID;
    }
    long long room = cfg->max_context - s->n_prompt - 1;
    int max_tokens = s->req.max_tokens;
    if (max_tokens < 0) max_tokens = (int)room;
    if (max_tokens > room) {
        mr_oai_error_set(
            err, 400, "max_tokens",
            "max_tokens = %d does not fit: the prompt has %d tokens and the context limit is %lld",
            max_tokens, s->n_prompt, cfg->max_context);
        mr_serve_session_destroy(s);
        return MR_ERR_INVALID;
    }
    if (kind == MR_OAI_CHAT) {
        mr_outparse_params pp;
        mr_outparse_params_default(&pp);
        pp.tool_calls = s->req.tools != NULL;
        mr_outparse_sink sink = {.user = s,
                                 .content = sink_content,
                                 .reasoning = sink_reasoning,
                                 .tool_call = sink_tool,
                                 .malformed = sink_malformed};
        if (mr_outparse_create(&pp, &sink, &s->parser) != MR_OK) {
            mr_oai_error_set(err, 500, NULL, "out of memory");
            mr_serve_session_destroy(s);
            return MR_ERR_NOMEM;
        }
    }
    mr_gen_request r = {.prompt = s->prompt_ids,
                        .n_prompt = s->n_prompt,
                        .max_tokens = max_tokens,
                        .sampling = s->req.sampling,
                        .n_top_logprobs = s->req.want_logprobs ? s->req.top_logprobs : -1,
                        .vocab_limit = cfg->vocab_limit};
    if (cfg->eos_id >= 0) r.stop_ids[r.n_stop_ids++] = cfg->eos_id;
    if (cfg->n_forced_output) { /* test mode */
        json_t *last = s->kind == MR_OAI_CHAT
                           ? json_array_get(s->req.messages, json_array_size(s->req.messages) - 1)
                           : NULL;
        int after_tool = last && json_is_string(json_object_get(last, "role")) &&
                         strcmp(json_string_value(json_object_get(last, "role")), "tool") == 0;
        r.forced = after_tool && cfg->n_forced_answer ? cfg->forced_answer : cfg->forced_output;
        r.n_forced =
            after_tool && cfg->n_forced_answer ? cfg->n_forced_answer : cfg->n_forced_output;
    }
    st = mr_scheduler_submit(cfg->sched, &r, on_event, s, &s->sched_id);
    if (st != MR_OK) {
        if (st == MR_ERR_FULL)
            mr_oai_error_set(err, 429, NULL, "too many requests are queued; retry later");
        else
            mr_oai_error_set(err, 400, NULL, "the request does not fit the server's limits");
        mr_serve_session_destroy(s);
        return st;
    }
    s->last_sent = mr_now_s();
    *out = s;
    return MR_OK;
}

int mr_serve_session_streaming(const mr_serve_session *s) {
    return s->req.stream;
}

void mr_serve_session_set_abort_check(mr_serve_session *s, int (*check)(void *user), void *user) {
    s->abort_check = check;
    s->abort_user = user;
}

void mr_serve_session_cancel(mr_serve_session *s) {
    if (s->sched_id) mr_scheduler_cancel(s->cfg->sched, s->sched_id);
}

void mr_serve_session_destroy(mr_serve_session *s) {
    if (!s) return;
    if (s->sched_id) { /* wait for the scheduler's last callback before freeing */
        mr_scheduler_cancel(s->cfg->sched, s->sched_id);
        pthread_mutex_lock(&s->mu);
        while (!s->done) pthread_cond_wait(&s->cv, &s->mu);
        pthread_mutex_unlock(&s->mu);
    }
    if (s->parser) mr_outparse_destroy(s->parser);
    mr_oai_request_free(&s->req);
    free(s->prompt_ids);
    free(s->toks);
    free(s->work);
    sbuf_free(&s->text);
    sbuf_free(&s->d_content);
    sbuf_free(&s->d_reasoning);
    sbuf_free(&s->all_content);
    sbuf_free(&s->all_reasoning);
    sbuf_free(&s->out);
    json_decref(s->d_tools);
    json_decref(s->d_logprobs);
    json_decref(s->all_tools);
    json_decref(s->all_logprobs);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
