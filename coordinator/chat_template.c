/* chat_template.c — the MiniMax-M1 chat template without a Jinja engine (see chat_template.h).
 *
 * The official template, step by step (spec §6.1):
 *   "<begin_of_document>"
 *   system text (first part of every system message, concatenated) if non-empty:
 *     "<beginning_of_sentence>system ai_setting=assistant\n" + text + "<end_of_sentence>\n"
 *   tools, if a non-empty list:
 *     TOOLS_HEAD + for each tool: tojson(tool) + "\n" + TOOLS_TAIL
 *   each message in order:
 *     user:      "<beginning_of_sentence>user name=user\n" + first part + "<end_of_sentence>\n"
 *     assistant: "<beginning_of_sentence>ai name=assistant\n" + every text part +
 * "<end_of_sentence>\n" tool:      "<beginning_of_sentence>tool name=tools\n" + for each part:
 *                "tool name: " + name + "\n" + "tool result: " + text + "\n\n", then
 *                "<end_of_sentence>\n"
 *   "<beginning_of_sentence>ai name=assistant\n" if add_generation_prompt. */
#include "coordinator/chat_template.h"

#include <string.h>

#include "common/log.h"
#include "coordinator/pyjson.h"

#define LOG_T MR_LOG_TEXT

#define BOS "<beginning_of_sentence>"
#define EOS "<end_of_sentence>\n"

static const char TOOLS_HEAD[] = BOS "system tool_setting=tools\n"
                                     "You are provided with these tools:\n"
                                     "<tools>\n";
/* The template writes {''name'': ...} inside a single-quoted Jinja string: '' ends and reopens
 * the literal, so the rendered line has no quotes around name and arguments. */
static const char TOOLS_TAIL[] =
    "</tools>\n\n"
    "If you need to call tools, please respond with <tool_calls></tool_calls> XML tags, and "
    "provide tool-name and json-object of arguments, following the format below:\n"
    "<tool_calls>\n"
    "{name: <tool-name-1>, arguments: <args-json-object-1>}\n"
    "...\n"
    "</tool_calls>" EOS;

static const char *role_of(const json_t *m) {
    json_t *r = json_object_get(m, "role");
    return json_is_string(r) ? json_string_value(r) : NULL;
}

/* Appends a JSON string's bytes. */
static void add_str(mr_sbuf *b, const json_t *s) {
    mr_sbuf_add(b, json_string_value(s), json_string_length(s));
}

/* content[0]['text'] (system and user messages): a string content is its own first part. */
static mr_status first_text(const json_t *m, size_t idx, const json_t **out) {
    json_t *c = json_object_get(m, "content");
    if (json_is_string(c)) {
        *out = c;
        return MR_OK;
    }
    json_t *p0 = json_is_array(c) ? json_array_get(c, 0) : NULL;
    json_t *t = json_is_object(p0) ? json_object_get(p0, "text") : NULL;
    if (!json_is_string(t)) {
        MR_LOG_ERROR(LOG_T,
                     "messages[%zu] (%s): content must be a string or a list whose first "
                     "part has a string \"text\"",
                     idx, role_of(m));
        return MR_ERR_INVALID;
    }
    if (json_array_size(c) > 1)
        MR_LOG_WARN(LOG_T, "messages[%zu] (%s): the template uses only the first of %zu parts", idx,
                    role_of(m), json_array_size(c));
    *out = t;
    return MR_OK;
}

/* Assistant text: every part with type "text" (a part without "text" prints nothing). */
static mr_status assistant_text(mr_sbuf *b, const json_t *m, size_t idx) {
    json_t *c = json_object_get(m, "content");
    if (json_is_string(c)) {
        add_str(b, c);
        return MR_OK;
    }
    if (!c || json_is_null(c)) return MR_OK;
    if (!json_is_array(c)) {
        MR_LOG_ERROR(LOG_T,
                     "messages[%zu] (assistant): content must be a string, a list of "
                     "parts or null",
                     idx);
        return MR_ERR_INVALID;
    }
    size_t i;
    json_t *p;
    json_array_foreach(c, i, p) {
        json_t *ty = json_is_object(p) ? json_object_get(p, "type") : NULL;
        if (!json_is_string(ty) || strcmp(json_string_value(ty), "text") != 0) continue;
        json_t *t = json_object_get(p, "text");
        if (!t) continue;
        if (!json_is_string(t)) {
            MR_LOG_ERROR(LOG_T, "messages[%zu].content[%zu]: \"text\" must be a string", idx, i);
            return MR_ERR_INVALID;
        }
        add_str(b, t);
    }
    return MR_OK;
}

/* OpenAI "tool_calls" -> the model's own <tool_calls> block. */
static mr_status assistant_tool_calls(mr_sbuf *b, const json_t *calls, size_t idx) {
    if (!calls || json_is_null(calls) || (json_is_array(calls) && json_array_size(calls) == 0))
        return MR_OK;
    if (!json_is_array(calls)) {
        MR_LOG_ERROR(LOG_T, "messages[%zu].tool_calls must be a list", idx);
        return MR_ERR_INVALID;
    }
    if (b->n > 0 && b->p[b->n - 1] != '\n') mr_sbuf_add(b, "\n", 1);
    mr_sbuf_adds(b, "<tool_calls>\n");
    size_t i;
    json_t *c;
    json_array_foreach(calls, i, c) {
        json_t *f = json_object_get(c, "function");
        json_t *name = json_is_object(f) ? json_object_get(f, "name") : NULL;
        json_t *args = json_is_object(f) ? json_object_get(f, "arguments") : NULL;
        json_t *parsed = NULL;
        if (json_is_string(args)) {
            parsed = json_loadb(json_string_value(args), json_string_length(args),
                                JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
            args = parsed;
        }
        if (!json_is_string(name) || !args) {
            MR_LOG_ERROR(LOG_T,
                         "messages[%zu].tool_calls[%zu]: needs function.name (a string) "
                         "and function.arguments (an object or JSON text)",
                         idx, i);
            json_decref(parsed);
            return MR_ERR_INVALID;
        }
        json_t *call = json_pack("{s:O, s:O}", "name", name, "arguments", args);
        json_decref(parsed);
        if (!call) return MR_ERR_NOMEM;
        mr_pyjson_dump(b, call);
        json_decref(call);
        mr_sbuf_add(b, "\n", 1);
    }
    mr_sbuf_adds(b, "</tool_calls>");
    return MR_OK;
}

static mr_status render_assistant(mr_sbuf *out, const json_t *m, size_t idx) {
    mr_sbuf b = {0};
    mr_status st = MR_OK;
    json_t *r = json_object_get(m, "reasoning_content");
    if (json_is_string(r) && json_string_length(r) > 0) {
        mr_sbuf_adds(&b, "<think>\n");
        add_str(&b, r);
        mr_sbuf_adds(&b, "\n</think>\n");
    } else if (r && !json_is_null(r) && !json_is_string(r)) {
        MR_LOG_ERROR(LOG_T, "messages[%zu].reasoning_content must be a string", idx);
        st = MR_ERR_INVALID;
    }
    if (st == MR_OK) st = assistant_text(&b, m, idx);
    if (st == MR_OK) st = assistant_tool_calls(&b, json_object_get(m, "tool_calls"), idx);
    if (b.oom) out->oom = 1;
    if (st == MR_OK) {
        mr_sbuf_adds(out, BOS "ai name=assistant\n");
        if (b.n) mr_sbuf_add(out, b.p, b.n);
        mr_sbuf_adds(out, EOS);
    }
    mr_sbuf_free(&b);
    return st;
}

/* The function name of the assistant tool call with this id, searching back from message idx. */
static const json_t *tool_call_name(const json_t *messages, size_t idx, const json_t *id) {
    if (!json_is_string(id)) return NULL;
    for (size_t k = idx; k-- > 0;) {
        json_t *calls = json_object_get(json_array_get(messages, k), "tool_calls");
        size_t i;
        json_t *c;
        json_array_foreach(calls, i, c) {
            if (json_equal(json_object_get(c, "id"), (json_t *)id)) {
                json_t *n = json_object_get(json_object_get(c, "function"), "name");
                return json_is_string(n) ? n : NULL;
            }
        }
    }
    return NULL;
}

static void tool_part(mr_sbuf *b, const json_t *name, const json_t *text) {
    mr_sbuf_adds(b, "tool name: ");
    add_str(b, name);
    mr_sbuf_adds(b, "\ntool result: ");
    add_str(b, text);
    mr_sbuf_adds(b, "\n\n");
}

static mr_status render_tool(mr_sbuf *out, const json_t *messages, const json_t *m, size_t idx) {
    json_t *c = json_object_get(m, "content");
    mr_sbuf_adds(out, BOS "tool name=tools\n");
    if (json_is_string(c)) {
        const json_t *name = json_object_get(m, "name");
        if (!json_is_string(name))
            name = tool_call_name(messages, idx, json_object_get(m, "tool_call_id"));
        if (!name) {
            MR_LOG_ERROR(LOG_T,
                         "messages[%zu] (tool): string content needs a \"name\" or a "
                         "\"tool_call_id\" of an earlier assistant tool call",
                         idx);
            return MR_ERR_INVALID;
        }
        tool_part(out, name, c);
    } else if (json_is_array(c)) {
        size_t i;
        json_t *p;
        json_array_foreach(c, i, p) {
            json_t *name = json_object_get(p, "name"), *text = json_object_get(p, "text");
            if (!json_is_string(name) || !json_is_string(text)) {
                MR_LOG_ERROR(LOG_T,
                             "messages[%zu].content[%zu] (tool): needs string \"name\" "
                             "and \"text\"",
                             idx, i);
                return MR_ERR_INVALID;
            }
            tool_part(out, name, text);
        }
    } else if (c && !json_is_null(c)) {
        MR_LOG_ERROR(LOG_T, "messages[%zu] (tool): content must be a string, a list or null", idx);
        return MR_ERR_INVALID;
    }
    mr_sbuf_adds(out, EOS);
    return MR_OK;
}

mr_status mr_chat_template_render(const json_t *messages, const json_t *tools,
                                  int add_generation_prompt, char **out, size_t *out_len) {
    if (!json_is_array(messages)) {
        MR_LOG_ERROR(LOG_T, "chat template: messages must be a list");
        return MR_ERR_INVALID;
    }
    if (tools && !json_is_null(tools) && !json_is_array(tools)) {
        MR_LOG_ERROR(LOG_T, "chat template: tools must be a list");
        return MR_ERR_INVALID;
    }
    mr_sbuf b = {0};
    mr_status st = MR_OK;
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m) { /* validate roles first: one error, nothing emitted */
        const char *r = json_is_object(m) ? role_of(m) : NULL;
        if (!r || (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") &&
                   strcmp(r, "tool"))) {
            MR_LOG_ERROR(LOG_T, "messages[%zu]: role must be system, user, assistant or tool", i);
            return MR_ERR_INVALID;
        }
    }
    mr_sbuf_adds(&b, "<begin_of_document>");
    mr_sbuf sys = {0};
    json_array_foreach(messages, i, m) {
        const json_t *t;
        if (strcmp(role_of(m), "system") != 0) continue;
        if ((st = first_text(m, i, &t)) != MR_OK) break;
        add_str(&sys, t);
    }
    if (st == MR_OK && sys.n) {
        mr_sbuf_adds(&b, BOS "system ai_setting=assistant\n");
        mr_sbuf_add(&b, sys.p, sys.n);
        mr_sbuf_adds(&b, EOS);
    }
    mr_sbuf_free(&sys);
    if (st == MR_OK && json_array_size(tools) > 0) {
        json_t *tool;
        mr_sbuf_adds(&b, TOOLS_HEAD);
        json_array_foreach(tools, i, tool) {
            mr_pyjson_dump(&b, tool);
            mr_sbuf_add(&b, "\n", 1);
        }
        mr_sbuf_adds(&b, TOOLS_TAIL);
    }
    json_array_foreach(messages, i, m) {
        if (st != MR_OK) break;
        const char *r = role_of(m);
        const json_t *t;
        if (strcmp(r, "user") == 0) {
            if ((st = first_text(m, i, &t)) != MR_OK) break;
            mr_sbuf_adds(&b, BOS "user name=user\n");
            add_str(&b, t);
            mr_sbuf_adds(&b, EOS);
        } else if (strcmp(r, "assistant") == 0) {
            st = render_assistant(&b, m, i);
        } else if (strcmp(r, "tool") == 0) {
            st = render_tool(&b, messages, m, i);
        }
    }
    if (st == MR_OK && add_generation_prompt) mr_sbuf_adds(&b, BOS "ai name=assistant\n");
    if (st != MR_OK) {
        mr_sbuf_free(&b);
        return st;
    }
    if ((st = mr_sbuf_take(&b, out, out_len)) != MR_OK)
        MR_LOG_ERROR(LOG_T, "chat template: out of memory");
    return st;
}

mr_status mr_chat_template_render_request(const json_t *request, char **out, size_t *out_len) {
    if (json_is_array(request)) return mr_chat_template_render(request, NULL, 1, out, out_len);
    if (!json_is_object(request)) {
        MR_LOG_ERROR(LOG_T, "chat template: a request object or a list of messages expected");
        return MR_ERR_INVALID;
    }
    json_t *agp = json_object_get(request, "add_generation_prompt");
    if (agp && !json_is_boolean(agp)) {
        MR_LOG_ERROR(LOG_T, "chat template: add_generation_prompt must be a boolean");
        return MR_ERR_INVALID;
    }
    return mr_chat_template_render(json_object_get(request, "messages"),
                                   json_object_get(request, "tools"), !agp || json_is_true(agp),
                                   out, out_len);
}
