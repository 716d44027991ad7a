// Talking to the relay from a browser: JSON calls, chat completions streamed as
// server-sent events over fetch's ReadableStream, and errors turned into what a
// person can act on. No DOM here, so Node can test it too (tests/e2e/js).

export const SIGN_IN_URL = "/.auth/login/aad?post_login_redirect_uri=/";
export const SIGN_OUT_URL = "/.auth/logout?post_logout_redirect_uri=/";

/** An error answer from the relay (or from Easy Auth in front of it), or a stream that broke off. */
export class RelayError extends Error {
  constructor({ status = 0, code = null, message = "", retryAfter = null, filters = [], requestId = null, stage = "request" } = {}) {
    super(message || `HTTP ${status}`);
    this.name = "RelayError";
    this.status = status; // 0: no HTTP answer (network, CORS)
    this.code = code; // the relay's error code, e.g. "rate_limited", "content_filter"
    this.retryAfter = retryAfter; // seconds, from Retry-After
    this.filters = filters; // [{category, severity}] that the content filter flagged
    this.requestId = requestId; // x-request-id, for support
    this.stage = stage; // "request" (nothing answered) or "stream" (broke off mid-answer)
  }
}

/** Retry-After as seconds: delta-seconds or an HTTP date; null when absent or unreadable. */
export function parseRetryAfter(value, now = Date.now()) {
  if (value == null || value === "") return null;
  const text = String(value).trim();
  if (/^\d+$/.test(text)) return Number(text);
  const date = Date.parse(text);
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - now) / 1000));
}

/** The categories an Azure OpenAI content filter result flagged, e.g. [{category: "hate", severity: "high"}]. */
export function flaggedCategories(result) {
  if (!result || typeof result !== "object") return [];
  const flagged = [];
  for (const [category, verdict] of Object.entries(result)) {
    if (verdict && typeof verdict === "object" && (verdict.filtered === true || verdict.detected === true)) {
      flagged.push({ category, severity: typeof verdict.severity === "string" ? verdict.severity : null });
    }
  }
  return flagged;
}

/** Build a RelayError from a non-2xx response: the relay's OpenAI-shaped JSON, or Easy Auth's plain text. */
export async function errorFromResponse(response) {
  const requestId = response.headers.get("x-request-id");
  const retryAfter = parseRetryAfter(response.headers.get("retry-after"));
  let error = null;
  try {
    const body = await response.json();
    error = body && typeof body.error === "object" ? body.error : null;
  } catch {
    // Easy Auth's 401 is text/plain; a proxy's 502 may be HTML.
  }
  return new RelayError({
    status: response.status,
    code: error?.code ?? (response.status === 401 ? "unauthenticated" : null),
    message: typeof error?.message === "string" ? error.message : "",
    retryAfter,
    filters: flaggedCategories(error?.content_filter_result),
    requestId,
  });
}

/**
 * Server-sent events from a byte stream: yields {event, data} per event (WHATWG
 * EventSource parsing: "data:" lines joined by "\n", ":" comments skipped, CRLF/LF/CR).
 */
export async function* parseSse(byteStream) {
  const reader = byteStream.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let event = "message";
  let data = [];
  const line = (text) => {
    if (text === "") {
      const dispatched = data.length ? { event, data: data.join("\n") } : null;
      event = "message";
      data = [];
      return dispatched;
    }
    if (text.startsWith(":")) return null;
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data.push(value);
    else if (field === "event") event = value || "message";
    return null;
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      let match;
      while ((match = /\r\n|\r(?!$)|\n/.exec(buffer)) !== null) {
        const dispatched = line(buffer.slice(0, match.index));
        buffer = buffer.slice(match.index + match[0].length);
        if (dispatched) yield dispatched;
      }
      if (done) break;
    }
    // A stream that ends without a blank line: WHATWG discards the pending event.
  } finally {
    reader.releaseLock();
  }
}

/**
 * A client for one relay. Same origin with the Easy Auth session cookie by default;
 * for an SPA on another origin pass baseUrl and getToken (an MSAL access token).
 */
export function createRelayClient({ baseUrl = "", getToken = null, credentials = "same-origin", fetchImpl = (...args) => globalThis.fetch(...args) } = {}) {
  async function request(path, init = {}) {
    const headers = new Headers(init.headers || {});
    if (getToken) headers.set("Authorization", `Bearer ${await getToken()}`);
    let response;
    try {
      response = await fetchImpl(`${baseUrl}${path}`, { ...init, headers, credentials });
    } catch (err) {
      if (err?.name === "AbortError") throw err;
      throw new RelayError({ status: 0, code: "network_error", message: "The relay could not be reached." });
    }
    if (!response.ok) throw await errorFromResponse(response);
    return response;
  }

  return {
    /** GET /api/me: the caller and the user_security_context the relay sends for them. */
    async me() {
      return (await request("/api/me")).json();
    },

    /** GET /api/v1/models: the deployment names this instance allows, default first. */
    async models() {
      const body = await (await request("/api/v1/models")).json();
      return Array.isArray(body?.data) ? body.data.map((m) => m.id) : [];
    },

    /**
     * POST /api/v1/chat/completions with stream: true. Calls onDelta(text) for each
     * piece of the answer as it arrives. Resolves to {content, finishReason, filters,
     * usage, requestId, toolCalls: [{name, arguments}]}; rejects with a RelayError (stage "stream" and .partial set
     * when it broke off mid-answer) or an AbortError when signal aborts.
     */
    async chat({ messages, model, tools, signal, onDelta = () => {} }) {
      const response = await request("/api/v1/chat/completions", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ model, messages, tools, stream: true, stream_options: { include_usage: true } }),
        signal,
      });
      const requestId = response.headers.get("x-request-id");
      const result = { content: "", finishReason: null, filters: [], usage: null, requestId, toolCalls: [] };
      for await (const { event, data } of parseSse(response.body)) {
        if (event === "error") {
          let error = {};
          try {
            error = JSON.parse(data).error || {};
          } catch {
            // keep the generic message below
          }
          const failure = new RelayError({
            status: 502,
            code: error.code || "upstream_error",
            message: error.message || "The answer broke off.",
            requestId,
            stage: "stream",
          });
          failure.partial = result.content;
          throw failure;
        }
        if (data === "[DONE]") return result;
        let chunk;
        try {
          chunk = JSON.parse(data);
        } catch {
          continue;
        }
        if (chunk.usage) result.usage = chunk.usage;
        for (const choice of chunk.choices || []) {
          const delta = choice.delta?.content;
          if (typeof delta === "string" && delta) {
            result.content += delta;
            onDelta(delta, result.content);
          }
          for (const call of choice.delta?.tool_calls || []) {
            const index = Number.isInteger(call.index) ? call.index : result.toolCalls.length;
            const sofar = (result.toolCalls[index] ??= { name: "", arguments: "" });
            sofar.name += call.function?.name ?? "";
            sofar.arguments += call.function?.arguments ?? "";
          }
          if (choice.finish_reason) {
            result.finishReason = choice.finish_reason;
            if (choice.finish_reason === "content_filter") result.filters = flaggedCategories(choice.content_filter_results);
          }
        }
      }
      if (signal?.aborted) throw new DOMException("The user aborted a request.", "AbortError");
      const failure = new RelayError({ status: 502, code: "upstream_error", message: "The answer ended early.", requestId, stage: "stream" });
      failure.partial = result.content;
      throw failure;
    },
  };
}

const CATEGORY_NAMES = {
  hate: "hate",
  sexual: "sexual content",
  violence: "violence",
  self_harm: "self-harm",
  jailbreak: "a jailbreak attempt",
  indirect_attack: "an indirect prompt attack",
  protected_material_text: "protected text",
  protected_material_code: "protected code",
  profanity: "profanity",
};

/** "hate (severity high)", "a jailbreak attempt" */
export function describeFilters(filters) {
  if (!filters.length) return "a policy category";
  return filters.map(({ category, severity }) => `${CATEGORY_NAMES[category] || category.replaceAll("_", " ")}${severity ? ` (severity ${severity})` : ""}`).join(", ");
}

/** "required app role missing" -> "Required app role missing." */
function sentence(text) {
  const trimmed = String(text || "").trim();
  if (!trimmed) return "";
  const capital = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

/** A wait as a person says it: "45 seconds", "3 minutes", "about 2 hours". */
export function humanWait(seconds) {
  const s = Math.max(1, Math.round(seconds));
  if (s < 90) return `${s} second${s === 1 ? "" : "s"}`;
  const minutes = Math.round(s / 60);
  if (s < 90 * 60) return `${minutes} minute${minutes === 1 ? "" : "s"}`;
  const hours = Math.round(s / 3600);
  return `about ${hours} hour${hours === 1 ? "" : "s"}`;
}

/** A moment in the person's own time zone: "14:05", or "Tue 00:00" when it is not today. */
export function localTime(when, now = new Date(), locale = undefined) {
  const time = when.toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit" });
  if (when.toDateString() === now.toDateString()) return time;
  return `${when.toLocaleDateString(locale, { weekday: "short" })} ${time}`;
}

/** Which of the relay's token budgets a user_quota_exceeded message names (shared/budget.py words it). */
export function exhaustedBudget(message) {
  const text = String(message || "");
  const tenant = text.includes("tenant's");
  if (/for this minute/.test(text)) return "your per-minute token budget";
  if (/for this day/.test(text)) return tenant ? "your organisation's daily token budget" : "your daily token budget";
  return tenant ? "your organisation's token budget" : "your token budget";
}

/**
 * What to tell the person: {title, detail, signIn?, retryAfter?, resetsAt?}. The relay's own
 * message is shown for the cases where it says something specific (403, 400).
 */
export function describeError(error, now = Date.now()) {
  if (!(error instanceof RelayError)) {
    return { title: "Something went wrong", detail: "The page hit an unexpected problem. Reload and try again." };
  }
  const said = sentence(error.message && error.message !== `HTTP ${error.status}` ? error.message : "");
  if (error.code === "content_filter" && error.stage === "stream") {
    return { title: "Answer stopped by the content filter", detail: `Azure OpenAI's content filter stopped the answer: ${describeFilters(error.filters)}.` };
  }
  if (error.code === "content_filter") {
    return { title: "Blocked by the content filter", detail: `Azure OpenAI's content filter blocked this prompt: ${describeFilters(error.filters)}. Rephrase it and try again.` };
  }
  if (error.stage === "stream") {
    return { title: "The answer broke off", detail: `${said || "Azure OpenAI stopped sending."} What arrived is kept above; send again to retry.` };
  }
  if (error.status === 0) {
    return { title: "Cannot reach the relay", detail: "Check your connection (or, for an SPA on another origin, the relay's CORS setting) and try again." };
  }
  switch (error.status) {
    case 401:
      return { title: "You are not signed in", detail: "Your session is missing or has expired. Sign in to continue.", signIn: true };
    case 403:
      if (error.code === "user_blocked") {
        return { title: "Your access is blocked", detail: "This app has blocked your account or network. Contact your administrator to have it reviewed." };
      }
      return { title: "You don't have access", detail: `${said || "The relay refused this account."} Ask the app's owner to give your account access.` };
    case 413:
      return { title: "That message is too long", detail: said || "Shorten the conversation and try again." };
    case 429:
      if (error.code === "user_quota_exceeded") {
        const resetsAt = error.retryAfter == null ? null : new Date(now + error.retryAfter * 1000);
        const when = resetsAt ? `It resets at ${localTime(resetsAt, new Date(now))} (your time).` : "It resets at the end of its period.";
        return { title: "Token budget used up", detail: `You have used ${exhaustedBudget(error.message)}. ${when}`, resetsAt };
      }
      if (error.code === "user_concurrency_exceeded") {
        return {
          title: "Too many answers at once",
          detail: "You already have as many requests in flight as one user may. Let one finish (or stop it), then send again.",
        };
      }
      return {
        title: "Too many requests",
        detail: "Azure OpenAI is rate limiting this app.",
        retryAfter: error.retryAfter,
      };
    case 503:
      if (error.code === "blocklist_unavailable") {
        return {
          title: "Access checks are unavailable",
          detail: "The relay cannot check its block list right now, so it is not accepting requests. This is on the service's side; try again in a minute.",
        };
      }
      if (error.code === "server_busy") {
        return { title: "The relay is busy", detail: "It is handling as many answers as it can right now. Try again in a few seconds." };
      }
      return { title: "The relay is not available", detail: said || "The service is not ready. Try again later." };
    case 504:
      return { title: "Azure OpenAI took too long", detail: said || "Try again in a moment." };
    default:
      if (error.status >= 500) return { title: "Azure OpenAI could not answer", detail: said || "Try again in a moment." };
      return { title: "The request was rejected", detail: said || `The relay answered ${error.status}.` };
  }
}
