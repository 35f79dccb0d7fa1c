// The official `openai` client against reasoner-service: models, a chat completion whole and streamed, a text
// completion, and requests the server must refuse. Usage: node check.mjs http://127.0.0.1:PORT/v1 MODEL MEMORY_MODEL
// Prints one JSON line with what it saw; OpenAiClientsTest checks it.
import OpenAI from "openai";

const [baseURL, model, memoryModel] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "test-key", maxRetries: 0, timeout: 60_000 });
const messages = [
  { role: "system", content: "You add numbers." },
  { role: "user", content: "What is 2+3?" },
];
const out = {};

out.models = (await client.models.list()).data.map((m) => m.id);

const whole = await client.chat.completions.create({ model, messages, max_tokens: 12, temperature: 0 });
out.whole = { content: whole.choices[0].message.content, finish_reason: whole.choices[0].finish_reason,
  usage: whole.usage, object: whole.object, memgen: whole.memgen };

const stream = await client.chat.completions.create({ model, messages, max_tokens: 12, temperature: 0, stream: true,
  stream_options: { include_usage: true } });
let streamed = "";
let chunks = 0;
let finish = null;
let usage = null;
let memgen = null;
for await (const chunk of stream) {
  chunks++;
  if (chunk.usage) usage = chunk.usage;
  if (chunk.memgen) memgen = chunk.memgen;
  const c = chunk.choices[0];
  if (c) {
    streamed += c.delta?.content ?? "";
    if (c.finish_reason) finish = c.finish_reason;
  }
}
out.streamed = { content: streamed, chunks, finish_reason: finish, usage, memgen };

const withMemory = await client.chat.completions.create({ model: memoryModel, messages, max_tokens: 12, temperature: 0 });
out.memory = { content: withMemory.choices[0].message.content, memgen: withMemory.memgen };

const text = await client.completions.create({ model, prompt: "2+3=", max_tokens: 6, temperature: 0 });
out.completion = { text: text.choices[0].text, finish_reason: text.choices[0].finish_reason, usage: text.usage };

async function refused(request) {
  try {
    await client.chat.completions.create(request);
    return { status: 200 };
  } catch (e) {
    return { status: e.status, code: e.code ?? null, type: e.type ?? null, param: e.param ?? null, message: e.message };
  }
}
out.unknownModel = await refused({ model: "no-such-model", messages });
out.negativeMaxTokens = await refused({ model, messages, max_tokens: -1 });
out.hugeMaxTokens = await refused({ model, messages, max_tokens: 10_000_000 });
console.log(JSON.stringify(out));
