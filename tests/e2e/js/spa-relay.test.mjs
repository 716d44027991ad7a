// Unit tests of the sample SPA's wire module (devhost/spa/relay.js): SSE parsing and error wording.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  RelayError,
  createRelayClient,
  describeError,
  errorFromResponse,
  flaggedCategories,
  humanWait,
  parseRetryAfter,
  parseSse,
} from "../../../devhost/spa/relay.js";

const streamOf = (...pieces) =>
  new ReadableStream({
    start(controller) {
      for (const piece of pieces) controller.enqueue(new TextEncoder().encode(piece));
      controller.close();
    },
  });

async function collect(stream) {
  const events = [];
  for await (const event of parseSse(stream)) events.push(event);
  return events;
}

describe("parseSse", () => {
  it("joins events split anywhere, including inside a UTF-8 character and a CRLF", async () => {
    const bytes = new TextEncoder().encode('data: {"a":"é"}\r\n\r\nevent: error\ndata: x\ndata: y\n\n: comment\n\ndata: [DONE]\n\n');
    const stream = new ReadableStream({
      start(controller) {
        for (const b of bytes) controller.enqueue(new Uint8Array([b])); // one byte at a time
        controller.close();
      },
    });
    assert.deepEqual(await collect(stream), [
      { event: "message", data: '{"a":"é"}' },
      { event: "error", data: "x\ny" },
      { event: "message", data: "[DONE]" },
    ]);
  });

  it("drops an event that never got its blank line", async () => {
    assert.deepEqual(await collect(streamOf("data: one\n\ndata: half")), [{ event: "message", data: "one" }]);
  });
});

describe("errors", () => {
  it("reads Retry-After as seconds or a date", () => {
    assert.equal(parseRetryAfter("7"), 7);
    assert.equal(parseRetryAfter(new Date(Date.now() + 10_000).toUTCString()) >= 9, true);
    assert.equal(parseRetryAfter(null), null);
    assert.equal(parseRetryAfter("soon"), null);
  });

  it("names the categories the content filter flagged", () => {
    const result = { hate: { filtered: true, severity: "high" }, sexual: { filtered: false, severity: "safe" }, jailbreak: { filtered: true, detected: true } };
    assert.deepEqual(flaggedCategories(result), [
      { category: "hate", severity: "high" },
      { category: "jailbreak", severity: null },
    ]);
    const text = describeError(new RelayError({ status: 400, code: "content_filter", filters: flaggedCategories(result) }));
    assert.equal(text.title, "Blocked by the content filter");
    assert.match(text.detail, /hate \(severity high\), a jailbreak attempt/);
  });

  it("turns Easy Auth's plain-text 401 and the relay's 429 into actions", async () => {
    const unauthenticated = await errorFromResponse(new Response("You do not have permission", { status: 401 }));
    assert.equal(describeError(unauthenticated).signIn, true);
    const limited = await errorFromResponse(
      new Response(JSON.stringify({ error: { code: "rate_limited", message: "slow down" } }), { status: 429, headers: { "retry-after": "12", "x-request-id": "abc" } }),
    );
    assert.deepEqual([limited.code, limited.retryAfter, limited.requestId], ["rate_limited", 12, "abc"]);
    assert.equal(describeError(limited).retryAfter, 12);
    assert.equal(describeError(new RelayError({ status: 403, message: "required app role missing" })).detail.startsWith("Required app role missing."), true);
  });

  it("names the used-up budget and says when it resets, not how many seconds", () => {
    const now = Date.UTC(2026, 11, 7, 5, 0, 0);
    const day = new RelayError({
      status: 429,
      code: "user_quota_exceeded",
      message: "You have used your token budget for this day (UTC). Retry after the time in the Retry-After header.",
      retryAfter: 19 * 3600,
    });
    const text = describeError(day, now);
    assert.equal(text.title, "Token budget used up");
    assert.match(text.detail, /^You have used your daily token budget\. It resets at .+ \(your time\)\.$/);
    assert.doesNotMatch(text.detail, /68400|seconds/);
    assert.equal(text.resetsAt.getTime(), Date.UTC(2026, 11, 8, 0, 0, 0));
    const tenant = new RelayError({ status: 429, code: "user_quota_exceeded", message: "You have used your tenant's token budget for this day (UTC).", retryAfter: 60 });
    assert.match(describeError(tenant, now).detail, /your organisation's daily token budget/);
    const minute = new RelayError({ status: 429, code: "user_quota_exceeded", message: "You have used your token budget for this minute.", retryAfter: 40 });
    assert.match(describeError(minute, now).detail, /your per-minute token budget/);
  });

  it("gives the block list and a busy instance their own words, and a blocked user one instruction", () => {
    const blocked = describeError(new RelayError({ status: 403, code: "user_blocked", message: "Access is blocked. Contact your administrator." }));
    assert.equal(blocked.title, "Your access is blocked");
    assert.doesNotMatch(blocked.detail, /owner/);
    assert.equal(describeError(new RelayError({ status: 503, code: "blocklist_unavailable" })).title, "Access checks are unavailable");
    assert.equal(describeError(new RelayError({ status: 503, code: "server_busy" })).title, "The relay is busy");
    const crowded = describeError(new RelayError({ status: 429, code: "user_concurrency_exceeded", retryAfter: 1 }));
    assert.equal(crowded.title, "Too many answers at once");
    assert.equal(crowded.retryAfter, undefined);
  });

  it("says a wait as a person would", () => {
    assert.deepEqual([1, 30, 89, 90, 600, 5399, 71621].map(humanWait), [
      "1 second", "30 seconds", "89 seconds", "2 minutes", "10 minutes", "90 minutes", "about 20 hours",
    ]);
  });

  it("sends the bearer token when an SPA on another origin gives one", async () => {
    let seen;
    const client = createRelayClient({
      baseUrl: "https://relay.example",
      getToken: async () => "tok",
      credentials: "omit",
      fetchImpl: async (url, init) => {
        seen = { url, auth: init.headers.get("authorization"), credentials: init.credentials };
        return new Response(JSON.stringify({ data: [{ id: "gpt-4o-mini" }] }), { headers: { "content-type": "application/json" } });
      },
    });
    assert.deepEqual(await client.models(), ["gpt-4o-mini"]);
    assert.deepEqual(seen, { url: "https://relay.example/api/v1/models", auth: "Bearer tok", credentials: "omit" });
  });
});
