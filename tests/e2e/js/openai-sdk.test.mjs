// The relay as a drop-in OpenAI endpoint for JS: the official openai npm package, unchanged,
// with baseURL = the relay and the caller's access token as apiKey.
// Run by tests/e2e/test_openai_js.py against the local host (relay-env.mjs).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";

import OpenAI from "openai";

import { apiKey, baseURL, emulatorRecords, expectedContext } from "./relay-env.mjs";

const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 20_000 });
const tag = () => `js${randomUUID().slice(0, 8)}`;

/** The emulator's record of the request whose last message contains marker. */
async function upstreamRecord(marker) {
  const records = await emulatorRecords();
  return records.reverse().find((r) => JSON.stringify(r.body?.messages?.at(-1) ?? "").includes(marker));
}

describe("openai npm package against the relay", () => {
  it("lists the allowed deployments as models", async () => {
    const ids = [];
    for await (const model of client.models.list()) ids.push(model.id);
    assert.deepEqual(ids, ["gpt-4o-mini", "gpt-4o"]);
  });

  it("completes without streaming", async () => {
    const marker = tag();
    const { data: completion, response } = await client.chat.completions
      .create({ model: "gpt-4o", messages: [{ role: "user", content: `Say hello ${marker}` }] })
      .withResponse();
    assert.equal(completion.object, "chat.completion");
    assert.match(completion.choices[0].message.content, new RegExp(`^Emulated gpt-4o answer to: Say hello ${marker}`));
    assert.equal(completion.choices[0].finish_reason, "stop");
    assert.ok(completion.usage.total_tokens > 0);
    assert.match(response.headers.get("x-request-id"), /^[0-9a-f]{32}$/);
    const record = await upstreamRecord(marker);
    assert.deepEqual(record.user_security_context, expectedContext);
    assert.equal(record.stream, false);
  });

  it("streams, chunk by chunk, the same answer", async () => {
    const marker = tag();
    const messages = [{ role: "user", content: `Stream this ${marker}` }];
    const whole = await client.chat.completions.create({ model: "gpt-4o-mini", messages });
    const stream = await client.chat.completions.create({ model: "gpt-4o-mini", messages, stream: true, stream_options: { include_usage: true } });
    let text = "";
    let contentChunks = 0;
    let usage = null;
    let finish = null;
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      if (choice?.delta?.content) {
        text += choice.delta.content;
        contentChunks += 1;
      }
      finish = choice?.finish_reason ?? finish;
      usage = chunk.usage ?? usage;
    }
    assert.equal(text, whole.choices[0].message.content);
    assert.ok(contentChunks >= 10, `${contentChunks} content chunks`);
    assert.equal(finish, "stop");
    assert.ok(usage && usage.completion_tokens > 0);
    const record = await upstreamRecord(marker);
    assert.equal(record.stream, true);
    assert.deepEqual(record.user_security_context, expectedContext);
  });

  it("streams with the SDK's stream helper and final message", async () => {
    const runner = client.chat.completions.stream({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Helper" }] });
    const deltas = [];
    runner.on("content", (delta) => deltas.push(delta));
    const final = await runner.finalChatCompletion();
    assert.equal(deltas.join(""), final.choices[0].message.content);
    assert.ok(deltas.length > 1);
  });

  it("takes the token from an async function, called before each request (MSAL's acquireTokenSilent)", async () => {
    let calls = 0;
    const refreshing = new OpenAI({ baseURL, apiKey: async () => (calls++, apiKey), maxRetries: 0 });
    await refreshing.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "one" }] });
    const stream = await refreshing.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "two" }], stream: true });
    for await (const _ of stream);
    assert.equal(calls, 2);
  });

  it("aborting a stream cancels the upstream request", async () => {
    const marker = tag();
    const controller = new AbortController();
    const stream = await client.chat.completions.create(
      { model: "gpt-4o-mini", stream: true, messages: [{ role: "user", content: `Long ${marker} [emulate:words=400] [emulate:chunk_delay_ms=20]` }] },
      { signal: controller.signal },
    );
    let seen = 0;
    for await (const chunk of stream) {
      // The SDK's stream simply ends once its signal aborts.
      if (chunk.choices[0]?.delta?.content && ++seen === 5) controller.abort();
    }
    assert.ok(seen >= 5 && seen < 400, `${seen} chunks`);
    const deadline = Date.now() + 5000; // the stream would run another 8 s
    let record;
    while (Date.now() < deadline && (record = await upstreamRecord(marker))?.outcome !== "cancelled") {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(record?.outcome, "cancelled");
  });

  it("maps relay errors to the SDK's error classes", async () => {
    const ask = (content) => client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content }] });
    await assert.rejects(ask("hi [emulate:rate_limit=30]"), (error) => {
      assert.ok(error instanceof OpenAI.RateLimitError);
      assert.equal(error.status, 429);
      assert.equal(error.code, "rate_limited");
      assert.equal(error.headers.get("retry-after"), "30");
      return true;
    });
    await assert.rejects(ask("hi [emulate:content_filter]"), (error) => {
      assert.ok(error instanceof OpenAI.BadRequestError);
      assert.equal(error.code, "content_filter");
      assert.equal(error.error.content_filter_result.hate.filtered, true);
      // Azure's shape, which Microsoft's agent SDKs read, is kept beside the flat copy.
      assert.equal(error.error.innererror.code, "ResponsibleAIPolicyViolation");
      assert.deepEqual(error.error.innererror.content_filter_result, error.error.content_filter_result);
      return true;
    });
    await assert.rejects(
      client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }], data_sources: [{ type: "azure_search" }] }),
      (error) => error instanceof OpenAI.BadRequestError && error.code === "parameter_not_allowed" && error.param === "data_sources",
    );
    await assert.rejects(client.chat.completions.create({ model: "gpt-5-huge", messages: [{ role: "user", content: "hi" }] }), (error) => error.code === "model_not_allowed");
    const stranger = new OpenAI({ baseURL, apiKey: "not-a-token", maxRetries: 0 });
    await assert.rejects(stranger.models.list(), (error) => error instanceof OpenAI.AuthenticationError && error.status === 401);
  });

  it("a stream that breaks off surfaces as an error, after the first words", async () => {
    const stream = await client.chat.completions.create({ model: "gpt-4o-mini", stream: true, messages: [{ role: "user", content: "hi [emulate:midstream_fail] [emulate:chunk_delay_ms=30]" }] });
    let text = "";
    await assert.rejects(async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
    }, (error) => error instanceof OpenAI.APIError && /broke off/.test(error.message));
    assert.equal(text, "Emulated gpt-4o-mini answer");
  });

  it("runs a tool round trip", async () => {
    const weather = {
      type: "function",
      function: {
        name: "get_weather",
        parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false },
        strict: true,
      },
    };
    const messages = [{ role: "user", content: "Weather in Oslo?" }];
    const first = await client.chat.completions.create({
      model: "gpt-4o-mini", messages, tools: [weather], tool_choice: { type: "function", function: { name: "get_weather" } },
    });
    const [call] = first.choices[0].message.tool_calls;
    assert.equal(first.choices[0].finish_reason, "tool_calls");
    assert.deepEqual(JSON.parse(call.function.arguments), { city: "city" });
    messages.push(first.choices[0].message, { role: "tool", tool_call_id: call.id, content: "12 degrees" });
    const answer = await client.chat.completions.create({ model: "gpt-4o-mini", messages, tools: [weather] });
    assert.equal(answer.choices[0].finish_reason, "stop");
    assert.match(answer.choices[0].message.content, /12 degrees/);
  });

  it("parses a structured output with the SDK's parse helper", async () => {
    const completion = await client.chat.completions.parse({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "Summarise" }],
      response_format: {
        type: "json_schema",
        json_schema: {
          name: "summary",
          strict: true,
          schema: { type: "object", properties: { title: { type: "string" }, points: { type: "array", items: { type: "string" } } }, required: ["title", "points"], additionalProperties: false },
        },
      },
    });
    const parsed = completion.choices[0].message.parsed;
    assert.equal(parsed.title, "title");
    assert.ok(Array.isArray(parsed.points));
  });

  it("creates a response and continues it with previous_response_id (the Responses API, the project the emulator plays)", async () => {
    const first = await client.responses.create({ model: "gpt-4o-mini", input: "hello from npm" });
    assert.equal(first.status, "completed");
    assert.match(first.output_text, /hello from npm/);
    const second = await client.responses.create({ model: "gpt-4o-mini", input: "and again", previous_response_id: first.id });
    assert.ok(second.usage.input_tokens > first.usage.input_tokens);
  });

  it("gets a 404 naming the Chat Completions switch from an API the relay does not serve", async () => {
    await assert.rejects(client.embeddings.create({ model: "gpt-4o-mini", input: "hi" }), (error) => {
      assert.ok(error instanceof OpenAI.NotFoundError);
      assert.equal(error.code, "unsupported_route");
      assert.match(error.message, /openai\.chat\(model\)/);
      return true;
    });
  });

  it("streams through a long think, the keep-alive comments unseen", async () => {
    // The e2e stack sends a comment after 0.5 s of silence from Azure; this think lasts 1.6 s.
    const started = Date.now();
    const stream = await client.chat.completions.create({ model: "gpt-4o-mini", stream: true, messages: [{ role: "user", content: "ponder [emulate:think=1.6] [emulate:words=6]" }] });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
    assert.ok(Date.now() - started >= 1600);
    assert.equal(text, "Emulated gpt-4o-mini answer to: ponder ponder");
  });

  it("gets a 504 that says to stream when a whole answer is too slow", async () => {
    // The e2e stack's upstream read timeout is 3 s; this non-streamed think lasts 4 s.
    await assert.rejects(
      client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "[emulate:think=4] hi" }] }, { maxRetries: 0 }),
      (error) => {
        assert.ok(error instanceof OpenAI.APIError);
        assert.equal(error.status, 504);
        assert.equal(error.code, "upstream_timeout");
        assert.match(error.message, /"stream": true/);
        assert.match(error.message, /230 s/);
        return true;
      },
    );
  });
});
