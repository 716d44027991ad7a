// The sample SPA: same origin as the relay, signed in with the Easy Auth session
// cookie. The wire work (fetch, SSE, error shapes) is in relay.js.
import { RelayError, SIGN_IN_URL, createRelayClient, describeError, humanWait, localTime } from "./relay.js";

const relay = createRelayClient(); // same origin, credentials: "same-origin"
const $ = (id) => document.getElementById(id);
const ui = {
  accountText: $("account-text"),
  signIn: $("sign-in"),
  signOut: $("sign-out"),
  transcript: $("transcript"),
  welcome: $("welcome"),
  welcomeIn: $("welcome-signed-in"),
  welcomeOut: $("welcome-signed-out"),
  fields: $("composer-fields"),
  status: $("status"),
  error: $("error"),
  errorTitle: $("error-title"),
  errorDetail: $("error-detail"),
  errorRetry: $("error-retry"),
  errorAction: $("error-action"),
  errorRequest: $("error-request"),
  form: $("composer"),
  prompt: $("prompt"),
  model: $("model"),
  send: $("send"),
  stop: $("stop"),
  newChat: $("new-chat"),
  defenderStatus: $("defender-status"),
  usc: $("usc"),
  uscRaw: $("usc-raw"),
  uscJson: $("usc-json"),
  refreshMe: $("refresh-me"),
  budget: $("budget"),
  budgetStatus: $("budget-status"),
  budgetWindows: $("budget-windows"),
};
const USC_FIELDS = ["application_name", "end_user_id", "end_user_tenant_id", "source_ip"];
// The relay's budget windows (/api/me "budget"), in the words the page uses.
const WINDOW_NAMES = {
  user_tokens_per_minute: "You, this minute",
  user_tokens_per_day: "You, today",
  tenant_tokens_per_day: "Your organisation, today",
};
// One function tool, so the emulator's [emulate:tool_call=get_weather] has something to call. It is sent only with a
// message that names it, so every other request is a plain chat; this page never runs it.
const SAMPLE_TOOLS = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "The weather forecast for a city.",
      parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false },
    },
  },
];

let history = []; // [{role, content}] sent with each prompt
let inFlight = null; // AbortController of the answer being streamed
let retryTimer = null;

// Account and the Defender panel --------------------------------------------

function setSignedIn(signedIn) {
  ui.fields.disabled = !signedIn;
  ui.welcomeIn.hidden = !signedIn;
  ui.welcomeOut.hidden = signedIn;
}

/** Forget what the last /api/me said, so no value outlives the session it belonged to. */
function clearAccountPanel() {
  for (const field of USC_FIELDS) $(`usc-${field}`).textContent = "";
  ui.uscJson.textContent = "";
  ui.usc.hidden = true;
  ui.uscRaw.hidden = true;
  ui.budgetWindows.replaceChildren();
  ui.budgetStatus.textContent = "";
  ui.budget.hidden = true;
}

function showSignedOut(message = "You are not signed in.") {
  setSignedIn(false);
  ui.accountText.textContent = message;
  ui.signIn.hidden = false;
  ui.signOut.hidden = true;
  ui.defenderStatus.textContent = "Sign in to see it.";
  clearAccountPanel();
  ui.refreshMe.hidden = true;
}

/** Each budget window: what is left and when it resets, in the person's own time. */
function showBudget(budget) {
  ui.budget.hidden = false;
  const windows = Object.entries(budget || {});
  if (!windows.length) {
    ui.budgetStatus.textContent = "This app sets no token budget.";
    ui.budgetWindows.replaceChildren();
    return;
  }
  ui.budgetStatus.textContent = "Tokens left in each budget:";
  const number = (n) => Number(n).toLocaleString();
  ui.budgetWindows.replaceChildren(
    ...windows.map(([name, window]) => {
      const row = document.createElement("div");
      row.dataset.window = name;
      const term = Object.assign(document.createElement("dt"), { textContent: WINDOW_NAMES[name] || name.replaceAll("_", " ") });
      const value = document.createElement("dd");
      const resets = window.resets_at ? ` · resets at ${localTime(new Date(window.resets_at))}` : "";
      if (window.used == null || window.remaining == null) {
        value.textContent = `${number(window.limit)} tokens; use not loaded yet${resets}`;
      } else if (window.remaining <= 0) {
        value.textContent = `Used up (${number(window.limit)} tokens)${resets}`;
        value.classList.add("used-up");
      } else {
        const left = Object.assign(document.createElement("span"), { className: "budget-left", textContent: number(window.remaining) });
        value.append(left, ` of ${number(window.limit)} tokens left${resets}`);
      }
      row.append(term, value);
      return row;
    }),
  );
}

function showSignedIn(me) {
  setSignedIn(true);
  const name = me.principal?.name || me.principal?.object_id || "signed-in user";
  ui.accountText.replaceChildren("Signed in as ", Object.assign(document.createElement("span"), { className: "account-name", textContent: name }));
  ui.signIn.hidden = true;
  ui.signOut.hidden = false;
  const context = me.user_security_context || {};
  for (const field of USC_FIELDS) {
    const cell = $(`usc-${field}`);
    const value = context[field];
    cell.textContent = value ?? "not sent (unknown)";
    cell.classList.toggle("absent", value == null);
  }
  ui.uscJson.textContent = JSON.stringify({ user_security_context: context }, null, 2);
  ui.defenderStatus.textContent = "Sent with each of your prompts:";
  ui.usc.hidden = false;
  ui.uscRaw.hidden = false;
  ui.refreshMe.hidden = false;
  showBudget(me.budget);
}

async function loadAccount() {
  try {
    showSignedIn(await relay.me());
    hideError();
    loadModels();
  } catch (error) {
    if (error instanceof RelayError && error.status === 401) {
      showSignedOut();
    } else {
      ui.accountText.textContent = error instanceof RelayError && error.status === 403 ? "Signed in, without access." : "Session unknown.";
      ui.signOut.hidden = error?.status !== 403; // signing out lets them switch accounts
      ui.welcomeOut.hidden = true;
      ui.defenderStatus.textContent = "Not available: the relay refused the request.";
      clearAccountPanel();
      showError(error);
    }
  }
}

/** After an answer (or a refusal) the budget has moved: show where it stands now. */
async function refreshBudget() {
  try {
    showBudget((await relay.me()).budget);
  } catch {
    // The next Refresh or answer tries again; the error panel already says what went wrong.
  }
}

async function loadModels() {
  try {
    const models = await relay.models();
    const current = ui.model.value;
    ui.model.replaceChildren(...models.map((id) => new Option(id, id)));
    if (models.includes(current)) ui.model.value = current;
  } catch {
    // The chat still works with the instance's default model.
  }
}

// Errors and status -----------------------------------------------------------

function hideError() {
  clearInterval(retryTimer);
  ui.error.hidden = true;
}

function showError(error) {
  const text = describeError(error);
  clearInterval(retryTimer);
  ui.errorTitle.textContent = text.title;
  ui.errorDetail.textContent = text.detail;
  ui.errorAction.hidden = !text.signIn;
  ui.errorRequest.hidden = !error?.requestId;
  ui.errorRequest.textContent = error?.requestId ? `Request ID: ${error.requestId}` : "";
  // Azure OpenAI's rate limit is short: count it down. A used-up budget says when it resets instead.
  const countdown = error?.status === 429 && error.code !== "user_quota_exceeded";
  ui.errorRetry.hidden = !countdown;
  if (countdown) {
    const until = Date.now() + (text.retryAfter ?? 0) * 1000;
    const tick = () => {
      const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      ui.errorRetry.textContent =
        text.retryAfter == null ? "Wait a little before trying again." : left > 0 ? `Try again in ${humanWait(left)}.` : "You can try again now.";
      if (left === 0) clearInterval(retryTimer);
    };
    tick();
    retryTimer = setInterval(tick, 1000);
  }
  if (error?.status === 401) showSignedOut("Your session has ended.");
  ui.error.hidden = false;
}

function setStatus(text) {
  ui.status.textContent = text;
}

// The conversation ------------------------------------------------------------

function addMessage(role, text) {
  const item = document.createElement("li");
  item.className = `message message-${role}`;
  const label = document.createElement("span");
  label.className = "message-role";
  label.textContent = role === "user" ? "You" : "Assistant";
  const body = document.createElement("p");
  body.className = "message-text";
  body.textContent = text;
  item.append(label, body);
  ui.transcript.append(item);
  ui.welcome.hidden = true;
  return { item, body };
}

function addNote(item, text) {
  const note = document.createElement("p");
  note.className = "message-note";
  note.textContent = text;
  item.append(note);
}

function setBusy(busy) {
  ui.send.disabled = busy;
  ui.stop.disabled = !busy;
  ui.model.disabled = busy;
  ui.newChat.disabled = busy;
}

async function send(text) {
  hideError();
  const messages = [...history, { role: "user", content: text }];
  addMessage("user", text);
  const { item, body } = addMessage("assistant", "");
  item.setAttribute("aria-busy", "true"); // screen readers announce the answer once, when complete
  body.classList.add("answer");
  ui.prompt.value = "";
  inFlight = new AbortController();
  setBusy(true);
  setStatus("Waiting for the answer…");
  let answer = "";
  try {
    const result = await relay.chat({
      messages,
      model: ui.model.value || undefined,
      tools: text.includes("get_weather") ? SAMPLE_TOOLS : undefined,
      signal: inFlight.signal,
      onDelta: (_piece, sofar) => {
        answer = sofar;
        body.textContent = sofar;
        setStatus("Answering…");
      },
    });
    answer = result.content;
    history = [...messages, { role: "assistant", content: answer }];
    if (result.toolCalls.length) {
      const calls = result.toolCalls.map((call) => `${call.name}(${call.arguments})`).join(", ");
      body.textContent = answer || `Asked to call ${calls}`;
      addNote(item, "The model asked for a tool call; this sample page does not run tools.");
      history = [...messages, { role: "assistant", content: `I would call ${calls}.` }];
    }
    if (result.finishReason === "content_filter") {
      addNote(item, "The content filter stopped this answer.");
      showError(new RelayError({ status: 200, code: "content_filter", filters: result.filters, requestId: result.requestId, stage: "stream" }));
    } else if (result.finishReason === "length") {
      addNote(item, "The answer reached its length limit.");
    }
    setStatus(result.finishReason === "content_filter" ? "Answer stopped by the content filter." : "Answer complete.");
  } catch (error) {
    if (error?.name === "AbortError") {
      addNote(item, "Stopped.");
      history = [...messages, { role: "assistant", content: answer }];
      setStatus("Stopped. The request to Azure OpenAI was cancelled.");
    } else if (error instanceof RelayError && error.stage === "stream") {
      addNote(item, "Broke off.");
      history = [...messages, { role: "assistant", content: error.partial || answer }];
      setStatus("");
      showError(error);
    } else {
      // Nothing was answered: drop the exchange and give the prompt back to retry.
      item.remove();
      ui.transcript.lastElementChild?.remove();
      ui.welcome.hidden = ui.transcript.childElementCount > 0;
      ui.prompt.value = text;
      setStatus("");
      showError(error);
    }
  } finally {
    item.setAttribute("aria-busy", "false");
    inFlight = null;
    setBusy(false);
    // The relay charges an answer just after its last event: ask for the budget a moment later.
    setTimeout(refreshBudget, 500);
    if (!ui.error.hidden) ui.error.focus();
    else ui.prompt.focus();
  }
}

function stop() {
  inFlight?.abort();
}

// Wiring ----------------------------------------------------------------------

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.prompt.value.trim();
  if (!text || inFlight) {
    if (!text) setStatus("Type a message first.");
    return;
  }
  send(text);
});
ui.prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.form.requestSubmit();
  }
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && inFlight) stop();
});
ui.stop.addEventListener("click", stop);
ui.newChat.addEventListener("click", () => {
  history = [];
  ui.transcript.replaceChildren();
  ui.welcome.hidden = false;
  hideError();
  setStatus("");
  ui.prompt.focus();
});
ui.refreshMe.addEventListener("click", loadAccount);
for (const example of document.querySelectorAll(".example")) {
  example.addEventListener("click", () => {
    ui.prompt.value = example.dataset.prompt;
    ui.prompt.focus();
  });
}
ui.signIn.href = SIGN_IN_URL;

loadAccount();
