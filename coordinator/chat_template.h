/* chat_template.h — the official MiniMax-M1 chat template (spec §6.1), implemented natively.
 *
 *   char *prompt; size_t len;
 *   mr_chat_template_render(messages, tools, 1, &prompt, &len);  // then mr_tokenizer_encode()
 *
 * For messages in the template's own shape (content as a list of {"type": "text", "text": ...}
 * parts; tool results as parts with "name" and "text") the output is byte-identical to rendering
 * `chat_template` of tokenizer_config.json with Jinja the way transformers does (trim_blocks,
 * lstrip_blocks, tojson = json.dumps(ensure_ascii=False)); tests/data/chat_template holds the
 * goldens. That includes the template's quirks: system and user messages contribute only their
 * first part, the instruction line of the tools block has no quotes, tool parts print
 * "tool name: " + name.
 *
 * OpenAI-shaped messages are accepted too and first brought into that shape (docs/tokenizer.md):
 *   - content as a string means one text part; null means no parts (assistant, tool);
 *   - an assistant's "reasoning_content" becomes "<think>\n" + it + "\n</think>\n" before the
 *     text, and its "tool_calls" ({"function": {"name", "arguments"}}, arguments an object or a
 *     JSON string) become "<tool_calls>\n" + one {"name": ..., "arguments": ...} per line +
 *     "</tool_calls>" after it (preceded by "\n" when the text does not end with one) — the
 *     format the model itself writes (spec §6.4);
 *   - a tool message with string content is one part named by its "name", or else by the
 *     function name of the earlier assistant tool call whose "id" its "tool_call_id" gives.
 * Inputs the Jinja template would fail on (a role other than system/user/assistant/tool, a missing
 * text or name, a non-string text) are rejected with MR_ERR_INVALID and one error line naming the
 * message. */
#ifndef MR_CHAT_TEMPLATE_H
#define MR_CHAT_TEMPLATE_H

#include <jansson.h>
#include <stddef.h>

#include "common/status.h"

/* MESSAGES: array of message objects. TOOLS: array of tool objects, or NULL / JSON null / [] for
 * none. The result is NUL-terminated (caller frees). */
mr_status mr_chat_template_render(const json_t *messages, const json_t *tools,
                                  int add_generation_prompt, char **out, size_t *out_len);

/* A request object {"messages": [...], "tools": [...], "add_generation_prompt": bool} (the last
 * two optional; add_generation_prompt defaults to true), or a bare array of messages. */
mr_status mr_chat_template_render_request(const json_t *request, char **out, size_t *out_len);

#endif
