// The official `openai` npm client against a running moerack cluster (started by
// tests/tools/http_check openai, with a forced-output test mode so a demo model "calls" a tool).
// Usage: node openai_client_test.mjs http://127.0.0.1:PORT      (exit 0 on success)
import OpenAI from 'openai';
import parsePrometheus from 'parse-prometheus-text-format';
import assert from 'node:assert/strict';

const base = process.argv[2];
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'not-needed', maxRetries: 0 });
const model = 'MiniMax-M1';
let failures = 0;
async function check(name, fn) {
  try {
    await fn();
    console.log(`PASS ${name}`);
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}: ${e.stack || e}`);
  }
}

const tools = [{
  type: 'function',
  function: {
    name: 'get_weather', description: 'Get the weather of a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
}];

await check('GET /v1/models lists the served model', async () => {
  const list = await client.models.list();
  assert.equal(list.data[0].id, model);
});

await check('chat completion (non-streaming), reasoning split from content', async () => {
  const r = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Hello!' }], max_tokens: 64,
  });
  assert.equal(r.object, 'chat.completion');
  const m = r.choices[0].message;
  assert.equal(m.role, 'assistant');
  assert.equal(m.reasoning_content, 'The user wants the weather.');
  // no tools in the request: the tool-call block is plain content
  assert.match(m.content, /<tool_calls>/);
  assert.ok(r.usage.prompt_tokens > 0 && r.usage.completion_tokens > 0);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

let toolCall;
await check('tool call: the model calls get_weather (finish_reason tool_calls)', async () => {
  const r = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'What is the weather in Paris?' }], tools, max_tokens: 64,
  });
  const c = r.choices[0];
  assert.equal(c.finish_reason, 'tool_calls');
  assert.equal(c.message.tool_calls.length, 1);
  toolCall = c.message.tool_calls[0];
  assert.equal(toolCall.type, 'function');
  assert.equal(toolCall.function.name, 'get_weather');
  assert.deepEqual(JSON.parse(toolCall.function.arguments), { city: 'Paris' });
  assert.equal(c.message.reasoning_content, 'The user wants the weather.');
});

await check('tool call round trip: tool result -> final answer', async () => {
  const r = await client.chat.completions.create({
    model, tools, max_tokens: 64,
    messages: [
      { role: 'user', content: 'What is the weather in Paris?' },
      { role: 'assistant', content: null, tool_calls: [toolCall] },
      { role: 'tool', tool_call_id: toolCall.id, content: 'sunny, 24 C' },
    ],
  });
  assert.equal(r.choices[0].message.content, 'It is sunny in Paris.');
  assert.equal(r.choices[0].finish_reason, 'stop');
});

await check('streaming chat: deltas, tool call, usage chunk, [DONE]', async () => {
  const stream = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Weather?' }], tools, max_tokens: 64,
    stream: true, stream_options: { include_usage: true },
  });
  let reasoning = '', calls = [], finish = null, usage = null, roles = 0;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const ch of chunk.choices) {
      if (ch.delta.role) roles++;
      if (ch.delta.reasoning_content) reasoning += ch.delta.reasoning_content;
      if (ch.delta.tool_calls) calls.push(...ch.delta.tool_calls);
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert.equal(roles, 1);
  assert.equal(reasoning, 'The user wants the weather.');
  assert.equal(calls.length, 1);
  assert.equal(calls[0].function.name, 'get_weather');
  assert.equal(finish, 'tool_calls');
  assert.ok(usage && usage.completion_tokens > 0);
});

await check('completions with a token-id prompt and logprobs', async () => {
  const r = await client.completions.create({
    model, prompt: [200019, 1, 2, 3], max_tokens: 5, logprobs: 2, temperature: 0,
  });
  const c = r.choices[0];
  assert.equal(r.object, 'text_completion');
  assert.equal(c.logprobs.tokens.length, c.logprobs.token_logprobs.length);
  assert.equal(c.logprobs.top_logprobs.length, c.logprobs.tokens.length);
  assert.ok(c.logprobs.token_logprobs.every((x) => x <= 0));
  assert.ok(Object.keys(c.logprobs.top_logprobs[0]).length >= 1);
  assert.equal(typeof c.text, 'string');
});

await check('completions: streaming and non-streaming give the same text', async () => {
  const params = { model, prompt: 'The capital of France is', max_tokens: 12, temperature: 0 };
  const whole = await client.completions.create(params);
  const stream = await client.completions.create({ ...params, stream: true });
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
  assert.equal(text, whole.choices[0].text);
});

await check('errors come back in OpenAI shape', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e.status === 400 && typeof e.message === 'string');
  await assert.rejects(
    client.completions.create({ model, prompt: [1, 2], max_tokens: -1 }),
    (e) => e.status === 400);
});

await check('/metrics parses as Prometheus text', async () => {
  const text = await (await fetch(`${base}/metrics`)).text();
  const families = parsePrometheus(text);
  const names = new Set(families.map((f) => f.name));
  for (const n of ['moerack_num_requests_running', 'moerack_prompt_tokens_total',
    'moerack_time_to_first_token_seconds', 'moerack_request_success_total',
    'moerack_worker_round_trip_seconds', 'moerack_expert_tokens_total'])
    assert.ok(names.has(n), `missing ${n}`);
  const ttft = families.find((f) => f.name === 'moerack_time_to_first_token_seconds');
  assert.equal(ttft.type, 'HISTOGRAM');
  assert.ok(Number(ttft.metrics[0].count) > 0);
});

console.log(failures ? `${failures} check(s) failed` : 'all openai client checks passed');
process.exit(failures ? 1 : 0);
