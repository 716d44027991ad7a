// The Vercel AI SDK against the relay: createOpenAI with baseURL = the relay and the caller's access token as
// apiKey. Its default provider, openai(model), speaks the Responses API (the project the emulator plays);
// openai.chat(model) speaks Chat Completions. Run by tests/e2e/test_openai_js.py against the local host
// (relay-env.mjs).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";

import { createOpenAI } from "@ai-sdk/openai";
import { APICallError, generateObject, generateText, Output, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

import { apiKey, baseURL, emulatorRecords, expectedContext, otherApiKey } from "./relay-env.mjs";

const openai = createOpenAI({ baseURL, apiKey });
const tag = () => `ai${randomUUID().slice(0, 8)}`;

const getWeather = tool({
  description: "Get the current weather in a city",
  inputSchema: z.object({ city: z.string().describe("The city") }),
  execute: async ({ city }) => ({ city, temperature: 12, unit: "celsius" }),
});

/** The emulator's records of the requests (to a path ending in `suffix`) whose body mentions marker, oldest first. */
async function upstreamRecords(suffix, marker) {
  const records = await emulatorRecords();
  return records.filter((r) => r.path.endsWith(suffix) && JSON.stringify(r.body ?? "").includes(marker));
}

describe("Vercel AI SDK against the relay", () => {
  it("openai(model) calls a tool, runs it and answers after it (generateText, Responses API)", async () => {
    const marker = tag();
    const result = await generateText({
      model: openai("gpt-4o-mini"),
      tools: { get_weather: getWeather },
      stopWhen: stepCountIs(3),
      prompt: `What is the weather in Oslo? ${marker}`,
      maxRetries: 0,
    });
    assert.equal(result.steps.length, 2);
    const [call] = result.steps[0].toolCalls;
    assert.equal(call.toolName, "get_weather");
    assert.deepEqual(call.input, { city: "Oslo" });
    assert.deepEqual(result.steps[0].toolResults[0].output, { city: "Oslo", temperature: 12, unit: "celsius" });
    assert.equal(result.finishReason, "stop");
    assert.match(result.text, /12/);
    const records = await upstreamRecords("/responses", marker);
    assert.equal(records.length, 2);
    for (const record of records) assert.deepEqual(record.user_security_context, expectedContext);
    assert.ok(records[1].body.input.some((item) => item.type === "function_call_output"));
  });

  it("openai(model) continues a conversation, its earlier reply sent back as an item_reference the relay unseals", async () => {
    const marker = tag();
    const ask = (messages) =>
      generateText({ model: openai("gpt-4o-mini"), tools: { get_weather: getWeather }, stopWhen: stepCountIs(3), messages, maxRetries: 0 });
    const messages = [{ role: "user", content: `What is the weather in Oslo? ${marker}` }];
    const first = await ask(messages);
    const reply = first.response.messages.at(-1).content[0];
    const heldId = reply.providerOptions.openai.itemId;
    messages.push(...first.response.messages, { role: "user", content: "What is the weather in Bergen then?" });
    const second = await ask(messages);
    assert.deepEqual(second.steps[0].toolCalls.map((call) => call.input), [{ city: "Bergen" }]);
    assert.match(second.text, /Bergen/);
    const records = await upstreamRecords("/responses", marker);
    assert.equal(records.length, 4);
    const references = records[2].body.input.filter((item) => item.type === "item_reference");
    assert.equal(references.length, 1, JSON.stringify(records[2].body.input));
    // The SDK holds the id the relay sealed to Ada; the project is sent its own id.
    assert.match(heldId, /^msg_\w+_[0-9a-f]{24}$/);
    assert.equal(`${references[0].id}_${heldId.split("_").at(-1)}`, heldId);
    for (const record of records) assert.deepEqual(record.user_security_context, expectedContext);
  });

  it("another user who sends the same conversation, earlier reply and all, gets a 404 and nothing goes upstream", async () => {
    const marker = tag();
    const messages = [{ role: "user", content: `Name a colour ${marker}` }];
    const first = await generateText({ model: openai("gpt-4o-mini"), messages, maxRetries: 0 });
    messages.push(...first.response.messages, { role: "user", content: `And another one ${marker}` });
    const grace = createOpenAI({ baseURL, apiKey: otherApiKey });
    await assert.rejects(generateText({ model: grace("gpt-4o-mini"), messages, maxRetries: 0 }), (error) => {
      assert.ok(APICallError.isInstance(error), error.name);
      assert.equal(error.statusCode, 404);
      assert.equal(JSON.parse(error.responseBody).error.code, "not_found");
      return true;
    });
    assert.equal((await upstreamRecords("/responses", marker)).length, 1);
  });

  it("generateObject returns an object that parses with the schema, asked for as a strict text.format", async () => {
    const marker = tag();
    const schema = z.object({ title: z.string(), points: z.array(z.string()) });
    const { object } = await generateObject({ model: openai("gpt-4o-mini"), schema, prompt: `Summarise the meeting ${marker}`, maxRetries: 0 });
    assert.deepEqual(schema.parse(object), { title: "title", points: ["points"] });
    const [record] = await upstreamRecords("/responses", marker);
    assert.equal(record.body.text.format.type, "json_schema");
    assert.equal(record.body.text.format.strict, true);
    assert.deepEqual(record.body.text.format.schema.required, ["title", "points"]);
  });

  it("generateText with Output.object (the version's replacement of generateObject) returns an object that parses", async () => {
    const schema = z.object({ city: z.string(), celsius: z.number() });
    const { output } = await generateText({ model: openai("gpt-4o-mini"), output: Output.object({ schema }), prompt: "A city and its temperature", maxRetries: 0 });
    assert.deepEqual(schema.parse(output), { city: "city", celsius: 1 });
  });

  it("streamText with openai(model) delivers the text in deltas and reports usage", async () => {
    const marker = tag();
    const result = streamText({ model: openai("gpt-4o-mini"), prompt: `Stream this ${marker}`, maxRetries: 0 });
    const deltas = [];
    for await (const delta of result.textStream) deltas.push(delta);
    assert.ok(deltas.length >= 5, `${deltas.length} deltas`);
    assert.equal(deltas.join(""), await result.text);
    assert.match(await result.text, new RegExp(marker));
    const usage = await result.usage;
    assert.ok(usage.outputTokens > 0 && usage.inputTokens > 0, JSON.stringify(usage));
    const [record] = await upstreamRecords("/responses", marker);
    assert.equal(record.stream, true);
    assert.deepEqual(record.user_security_context, expectedContext);
  });

  it("a Responses stream that breaks off ends in the SDK's stream error with the relay's message, after the first words", async () => {
    const result = streamText({
      model: openai("gpt-4o-mini"),
      prompt: "hi [emulate:midstream_fail] [emulate:chunk_delay_ms=30]",
      maxRetries: 0,
      onError: () => {}, // the error part below is the assertion
    });
    let text = "";
    const errors = [];
    for await (const part of result.fullStream) {
      if (part.type === "text-delta") text += part.text;
      if (part.type === "error") errors.push(part.error);
    }
    assert.equal(text, "Emulated");
    assert.equal(errors.length, 1);
    assert.equal(errors[0].type, "api_error");
    assert.equal(errors[0].message, "The stream from Azure OpenAI broke off.");
    assert.equal(errors[0].code, "upstream_error");
    assert.equal(await result.finishReason, "error");
  });

  it("a provider tool that runs on the service (openai.tools.webSearch) is refused with a 400 that names the setting", async () => {
    await assert.rejects(
      generateText({ model: openai("gpt-4o-mini"), tools: { web_search: openai.tools.webSearch({}) }, prompt: "News today?", maxRetries: 0 }),
      (error) => {
        assert.ok(APICallError.isInstance(error), error.name);
        assert.equal(error.statusCode, 400);
        assert.equal(JSON.parse(error.responseBody).error.code, "parameter_not_allowed");
        assert.match(error.message, /'web_search'.*RELAY_RESPONSES_ALLOWED_TOOLS/);
        return true;
      },
    );
  });

  it("openai.chat(model) calls a tool, then again when the follow-up step forces it (no AI_ToolChoiceViolationError)", async () => {
    const marker = tag();
    const result = await generateText({
      model: openai.chat("gpt-4o-mini"),
      tools: { get_weather: getWeather },
      stopWhen: stepCountIs(3),
      prepareStep: ({ stepNumber }) => (stepNumber === 1 ? { toolChoice: { type: "tool", toolName: "get_weather" } } : {}),
      prompt: `What is the weather in Oslo? ${marker}`,
      maxRetries: 0,
    });
    assert.deepEqual(result.steps.map((step) => step.toolCalls.map((call) => call.toolName)), [["get_weather"], ["get_weather"], []]);
    assert.deepEqual(result.steps[0].toolCalls[0].input, { city: "Oslo" });
    assert.equal(result.finishReason, "stop");
    const records = await upstreamRecords("/chat/completions", marker);
    assert.equal(records.length, 3);
    assert.deepEqual(records[1].body.tool_choice, { type: "function", function: { name: "get_weather" } });
    for (const record of records) assert.deepEqual(record.user_security_context, expectedContext);
  });
});
