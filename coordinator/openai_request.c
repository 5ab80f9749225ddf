#include "coordinator/openai_request.h"

#include "coordinator/utf8.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mr_oai_error_set(mr_oai_error *e, int status, const char *param, const char *fmt, ...) {
    e->status = status;
    e->type = status == 429   ? "rate_limit_error"
              : status >= 500 ? (status == 503 ? "service_unavailable" : "internal_error")
                              : "invalid_request_error";
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

char *mr_oai_error_json(const mr_oai_error *e) {
    /* messages may quote bytes of the request (e.g. the JSON parser's context): make them valid
     * UTF-8 before they go into a JSON string */
    char *msg = NULL;
    size_t msg_len = 0;
    if (mr_utf8_lossy(e->message, strlen(e->message), &msg, &msg_len) != MR_OK) msg = NULL;
    json_t *o = json_pack(
        "{s:{s:s,s:s,s:o,s:o}}", "error", "message", msg ? msg : "invalid request", "type",
        e->type ? e->type : "invalid_request_error", "param",
        e->param[0] ? json_string(e->param) : json_null(), "code", json_integer(e->status));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    free(msg);
    if (!s)
        s = strdup(
            "{\"error\":{\"message\":\"invalid request\",\"type\":\"invalid_request_error\"}}");
    return s;
}

void mr_oai_request_free(mr_oai_request *r) {
    json_decref(r->root);
    free(r->prompt_ids);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

#define BAD(param, ...)                                                                            \
    do {                                                                                           \
        mr_oai_error_set(err, 400, param, __VA_ARGS__);                                            \
        return MR_ERR_INVALID;                                                                     \
    } while (0)

/* Optional number in [lo, hi]; leaves *out untouched when absent or null. */
static mr_status opt_number(json_t *root, const char *key, double lo, double hi, double *out,
                            mr_oai_error *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return MR_OK;
    if (!json_is_number(v)) BAD(key, "'%s' must be a number", key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) BAD(key, "'%s' = %g is out of range [%g, %g]", key, x, lo, hi);
    *out = x;
    return MR_OK;
}

static mr_status opt_int(json_t *root, const char *key, long long lo, long long hi, long long *out,
                         mr_oai_error *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return MR_OK;
    if (!json_is_integer(v)) BAD(key, "'%s' must be an integer", key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi) BAD(key, "'%s' = %lld is out of range [%lld, %lld]", key, x, lo, hi);
    *out = x;
    return MR_OK;
}

static mr_status opt_bool(json_t *root, const char *key, int *out, mr_oai_error *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return MR_OK;
    if (!json_is_boolean(v)) BAD(key, "'%s' must be true or false", key);
    *out = json_is_true(v);
    return MR_OK;
}

static mr_status parse_stop(json_t *root, mr_oai_request *r, mr_oai_error *err) {
    json_t *v = json_object_get(root, "stop");
    if (!v || json_is_null(v)) return MR_OK;
    json_t *one[1] = {v};
    size_t n = 1;
    if (json_is_array(v))
        n = json_array_size(v);
    else if (!json_is_string(v))
        BAD("stop", "'stop' must be a string or an array of strings");
    if (n > MR_OAI_MAX_STOP)
        BAD("stop", "'stop' has %zu entries; at most %d are allowed", n, MR_OAI_MAX_STOP);
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_array(v) ? json_array_get(v, i) : one[0];
        if (!json_is_string(s)) BAD("stop", "'stop'[%zu] must be a string", i);
        size_t len = json_string_length(s);
        if (len == 0 || len > MR_OAI_MAX_STOP_LEN)
            BAD("stop", "'stop'[%zu] must be 1 to %d bytes long", i, MR_OAI_MAX_STOP_LEN);
        r->stop[r->n_stop] = malloc(len + 1);
        if (!r->stop[r->n_stop]) BAD(NULL, "out of memory");
        memcpy(r->stop[r->n_stop], json_string_value(s), len + 1);
        r->stop_len[r->n_stop++] = len;
    }
    return MR_OK;
}

static mr_status parse_common(json_t *root, const mr_oai_limits *lim, mr_oai_request *r,
                              mr_oai_error *err) {
    json_t *model = json_object_get(root, "model");
    if (model && !json_is_null(model)) {
        if (!json_is_string(model)) BAD("model", "'model' must be a string");
        if (lim->model && strcmp(json_string_value(model), lim->model) != 0)
            BAD("model", "the model '%.100s' does not exist; this server serves '%s'",
                json_string_value(model), lim->model);
    }
    long long n = 1, mt = -1, mct = -1, top_k = 0, seed = 0;
    double temp = 1.0, top_p = 1.0, rep = 1.0;
    int has_seed = json_object_get(root, "seed") && !json_is_null(json_object_get(root, "seed"));
    mr_status st;
    if ((st = opt_int(root, "n", 1, 1, &n, err)) != MR_OK) return st;
    if ((st = opt_int(root, "max_tokens", 0, lim->max_context, &mt, err)) != MR_OK) return st;
    if ((st = opt_int(root, "max_completion_tokens", 0, lim->max_context, &mct, err)) != MR_OK)
        return st;
    if ((st = opt_number(root, "temperature", 0.0, 2.0, &temp, err)) != MR_OK) return st;
    if ((st = opt_number(root, "top_p", 1e-6, 1.0, &top_p, err)) != MR_OK) return st;
    if ((st = opt_int(root, "top_k", -1, 1 << 20, &top_k, err)) != MR_OK) return st;
    if ((st = opt_int(root, "seed", -(1ll << 62), 1ll << 62, &seed, err)) != MR_OK) return st;
    if ((st = opt_number(root, "repetition_penalty", 0.01, 10.0, &rep, err)) != MR_OK) return st;
    if ((st = opt_bool(root, "stream", &r->stream, err)) != MR_OK) return st;
    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) BAD("stream_options", "'stream_options' must be an object");
        if ((st = opt_bool(so, "include_usage", &r->include_usage, err)) != MR_OK) return st;
    }
    r->max_tokens = (int)(mct >= 0 ? mct : mt);
    mr_sampling_params_default(&r->sampling);
    r->sampling.temperature = (float)temp;
    r->sampling.top_p = (float)top_p;
    r->sampling.top_k = top_k < 0 ? 0 : (int)top_k;
    r->sampling.repetition_penalty = (float)rep;
    r->sampling.has_seed = has_seed;
    r->sampling.seed = (uint64_t)seed;
    return parse_stop(root, r, err);
}

static mr_status parse_prompt(json_t *root, const mr_oai_limits *lim, mr_oai_request *r,
                              mr_oai_error *err) {
    json_t *p = json_object_get(root, "prompt");
    if (!p) BAD("prompt", "'prompt' is required");
    if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0)))
        p = json_array_get(p, 0); /* ["text"] is a text prompt */
    if (json_is_string(p)) {
        r->prompt_text = json_string_value(p);
        r->prompt_text_len = json_string_length(p);
        if (r->prompt_text_len == 0) BAD("prompt", "'prompt' is empty");
        return MR_OK;
    }
    if (!json_is_array(p) || json_array_size(p) == 0)
        BAD("prompt", "'prompt' must be a non-empty string or a non-empty array of token ids");
    if (json_is_array(json_array_get(p, 0))) {
        if (json_array_size(p) != 1) BAD("prompt", "batched prompts are not supported (n = 1)");
        p = json_array_get(p, 0);
    }
    size_t n = json_array_size(p);
    if (n == 0) BAD("prompt", "'prompt' is empty");
    if ((long long)n > lim->max_prompt_ids || (long long)n >= lim->max_context)
        BAD("prompt", "the prompt has %zu tokens; the context limit is %lld", n, lim->max_context);
    r->prompt_ids = malloc(n * sizeof(int32_t));
    if (!r->prompt_ids) BAD(NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(p, i);
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= lim->vocab)
            BAD("prompt", "prompt token %zu is not an integer id in [0, %d)", i, lim->vocab);
        r->prompt_ids[i] = (int32_t)json_integer_value(t);
    }
    r->n_prompt_ids = (int)n;
    return MR_OK;
}

mr_status mr_oai_parse(mr_oai_kind kind, const char *body, size_t len, const mr_oai_limits *lim,
                       mr_oai_request *out, mr_oai_error *err) {
    memset(out, 0, sizeof *out);
    out->kind = kind;
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        mr_oai_error_set(err, 400, NULL, "the body is not valid JSON: %s (line %d, column %d)",
                         je.text, je.line, je.column);
        return MR_ERR_INVALID;
    }
    out->root = root;
    mr_status st = MR_OK;
    if (!json_is_object(root)) {
        mr_oai_error_set(err, 400, NULL, "the body must be a JSON object");
        st = MR_ERR_INVALID;
        goto done;
    }
    if ((st = parse_common(root, lim, out, err)) != MR_OK) goto done;
    if (kind == MR_OAI_CHAT) {
        json_t *m = json_object_get(root, "messages");
        if (!json_is_array(m) || json_array_size(m) == 0) {
            mr_oai_error_set(err, 400, "messages", "'messages' must be a non-empty array");
            st = MR_ERR_INVALID;
            goto done;
        }
        out->messages = m;
        json_t *tools = json_object_get(root, "tools");
        json_t *choice = json_object_get(root, "tool_choice");
        if (tools && !json_is_null(tools) && !json_is_array(tools)) {
            mr_oai_error_set(err, 400, "tools", "'tools' must be an array");
            st = MR_ERR_INVALID;
            goto done;
        }
        if (choice && !json_is_null(choice) && !json_is_string(choice) && !json_is_object(choice)) {
            mr_oai_error_set(err, 400, "tool_choice",
                             "'tool_choice' must be a string or an object");
            st = MR_ERR_INVALID;
            goto done;
        }
        int none = json_is_string(choice) && strcmp(json_string_value(choice), "none") == 0;
        out->tools =
            tools && json_is_array(tools) && json_array_size(tools) && !none ? tools : NULL;
        int lp = 0;
        long long top = 0;
        if ((st = opt_bool(root, "logprobs", &lp, err)) != MR_OK) goto done;
        if ((st = opt_int(root, "top_logprobs", 0, MR_MAX_TOP_LOGPROBS, &top, err)) != MR_OK)
            goto done;
        out->want_logprobs = lp;
        out->top_logprobs = (int)top;
    } else {
        if ((st = parse_prompt(root, lim, out, err)) != MR_OK) goto done;
        if ((st = opt_bool(root, "echo", &out->echo, err)) != MR_OK) goto done;
        long long lp = -1;
        json_t *v = json_object_get(root, "logprobs");
        if (v && json_is_boolean(v)) { /* tolerated: true means the chosen token only */
            lp = json_is_true(v) ? 0 : -1;
        } else if ((st = opt_int(root, "logprobs", 0, MR_MAX_TOP_LOGPROBS, &lp, err)) != MR_OK) {
            goto done;
        }
        out->want_logprobs = lp >= 0;
        out->top_logprobs = lp > 0 ? (int)lp : 0;
    }
done:
    if (st != MR_OK) mr_oai_request_free(out);
    return st;
}
