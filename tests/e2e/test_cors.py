"""CORS as the platform applies it (CORS_ALLOWED_ORIGINS = the Bicep's spaOrigins): an SPA hosted elsewhere, with a bearer token."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.e2e.support import ADA, REQUIRED_ROLE, Site, record_for
from tests.support.stack import Stack

# fetch() from the page, with an MSAL-style bearer token: the relay's /api/me and a streamed completion.
CALL_RELAY = """async ({relay, token, prompt}) => {
  const auth = {Authorization: `Bearer ${token}`};
  try {
    const me = await fetch(`${relay}/api/me`, {headers: auth});
    const chat = await fetch(`${relay}/api/v1/chat/completions`, {
      method: 'POST', headers: {...auth, 'Content-Type': 'application/json'},
      body: JSON.stringify({stream: true, messages: [{role: 'user', content: prompt}]}),
    });
    return {ok: true, me: await me.json(), status: chat.status, requestId: chat.headers.get('x-request-id'), sse: await chat.text()};
  } catch (error) {
    return {ok: false, error: `${error.name}: ${error.message}`};
  }
}"""

# A non-streamed request the emulator rate-limits: can the page read Retry-After and the request ID?
CALL_RATE_LIMITED = """async ({relay, token, prompt}) => {
  try {
    const chat = await fetch(`${relay}/api/v1/chat/completions`, {
      method: 'POST', headers: {Authorization: `Bearer ${token}`, 'Content-Type': 'application/json'},
      body: JSON.stringify({messages: [{role: 'user', content: prompt}]}),
    });
    const body = await chat.json();
    return {ok: true, status: chat.status, code: body.error.code, retryAfter: chat.headers.get('retry-after'),
            requestId: chat.headers.get('x-request-id')};
  } catch (error) {
    return {ok: false, error: `${error.name}: ${error.message}`};
  }
}"""

# The official openai package's ES modules, loaded as-is by the browser (no build step).
CALL_WITH_OPENAI_SDK = """async ({relay, token, prompt}) => {
  const { default: OpenAI } = await import('/vendor/openai/index.mjs');
  const client = new OpenAI({ baseURL: `${relay}/api/v1`, apiKey: token, dangerouslyAllowBrowser: true, maxRetries: 0 });
  try {
    const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: prompt }] });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    return { ok: true, text };
  } catch (error) {
    return { ok: false, error: `${error.name}: ${error.message}` };
  }
}"""


def call(page: Page, site: Site, stack: Stack, script: str, prompt: str) -> dict[str, Any]:
    page.goto(f"{site.origin}/cors.html")
    token = stack.token(oid=ADA.oid, tid=ADA.tid, name=ADA.name, roles=REQUIRED_ROLE)
    result: dict[str, Any] = page.evaluate(script, {"relay": stack.base_url, "token": token, "prompt": prompt})
    return result


def test_a_listed_origin_calls_the_relay_with_a_bearer_token(page: Page, e2e_stack: Stack, allowed_site: Site) -> None:
    tag = f"c{uuid.uuid4().hex[:8]}"
    result = call(page, allowed_site, e2e_stack, CALL_RELAY, f"Hello from another origin {tag}")
    assert result["ok"], result
    assert result["me"]["user_security_context"]["end_user_id"] == ADA.oid
    assert result["status"] == 200
    assert result["requestId"], "x-request-id is exposed to the page"
    assert tag in result["sse"] and result["sse"].rstrip().endswith("data: [DONE]")
    record = record_for(e2e_stack, tag)
    assert record is not None and record["user_security_context"]["end_user_id"] == ADA.oid


def test_a_listed_origin_reads_retry_after_and_the_request_id_of_a_429(page: Page, e2e_stack: Stack, allowed_site: Site) -> None:
    # The relay names these headers itself: App Service's platform CORS has no setting to expose them.
    result = call(page, allowed_site, e2e_stack, CALL_RATE_LIMITED, "[emulate:rate_limit=7] hello")
    assert result["ok"], result
    assert (result["status"], result["code"], result["retryAfter"]) == (429, "rate_limited", "7")
    assert result["requestId"], result


def test_an_unlisted_origin_is_blocked_by_the_browser(page: Page, e2e_stack: Stack, unlisted_site: Site) -> None:
    tag = f"c{uuid.uuid4().hex[:8]}"
    result = call(page, unlisted_site, e2e_stack, CALL_RELAY, f"Hello from nowhere {tag}")
    assert not result["ok"]
    assert result["error"].startswith("TypeError"), result  # "Failed to fetch": the preflight was refused
    assert record_for(e2e_stack, tag) is None, "the prompt never reached Azure OpenAI"


def test_the_openai_sdk_in_the_browser_from_a_listed_origin(page: Page, e2e_stack: Stack, allowed_site: Site) -> None:
    tag = f"c{uuid.uuid4().hex[:8]}"
    result = call(page, allowed_site, e2e_stack, CALL_WITH_OPENAI_SDK, f"Hello from the SDK {tag}")
    assert result["ok"], result
    assert result["text"].startswith(f"Emulated gpt-4o-mini answer to: Hello from the SDK {tag}")


def test_the_openai_sdk_in_the_browser_from_an_unlisted_origin(page: Page, e2e_stack: Stack, unlisted_site: Site) -> None:
    result = call(page, unlisted_site, e2e_stack, CALL_WITH_OPENAI_SDK, "Hello")
    assert not result["ok"]
    assert "Connection error" in result["error"], result


pytestmark = pytest.mark.usefixtures("browser")
