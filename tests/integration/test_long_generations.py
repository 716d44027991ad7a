"""Long generations: keep-alive comments while Azure is silent, and the bound on a whole (non-streamed) answer.

A reasoning model can think for a long time before its first token; idle timeouts between the caller
and the relay must not cut that stream, so the relay sends an SSE comment (``: keep-alive``) whenever
Azure has been silent for ``RELAY_STREAM_KEEPALIVE_S``, and the official SDKs ignore it. A non-streamed
answer must complete before the platform's 230-second limit: it is bounded, and the 504 says to stream.
Both runtimes (tests/integration/conftest.py); the npm SDK's side is in tests/e2e/js/openai-sdk.test.mjs.
"""

from __future__ import annotations

import time

import openai
import pytest

from shared.config import load_settings
from shared.relay import NON_STREAMED_DEADLINE_S
from tests.integration.conftest import KEEPALIVE_S
from tests.reliability.common import client, new_id, open_chat_stream
from tests.support.app_settings import REQUIRED_SETTINGS
from tests.support.stack import Stack

THINK_S = 3.2 * KEEPALIVE_S  # under this stack's 2 s upstream read timeout
PROMPT = f"ponder [emulate:think={THINK_S}] [emulate:words=6]"


def test_a_long_think_gets_keep_alive_comments_before_the_first_token(stack: Stack) -> None:
    sock, reader = open_chat_stream(stack, PROMPT, new_id("think"))
    with sock:
        status, _ = reader.head()
        raw = b"".join(reader.body_pieces())
    assert status == 200
    before_first_token = raw.split(b'"role":"assistant"', 1)[0]
    comments = before_first_token.count(b": keep-alive\n\n")
    assert comments >= 2, before_first_token[-400:]
    assert raw.endswith(b"data: [DONE]\n\n")


def test_the_python_sdk_ignores_the_comments(stack: Stack) -> None:
    started = time.monotonic()
    text = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client(stack).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}], stream=True)
        if chunk.choices
    )
    assert time.monotonic() - started >= THINK_S
    assert text == "Emulated gpt-4o-mini answer to: ponder ponder"


def test_a_whole_answer_slower_than_its_bound_is_504_saying_to_stream(stack: Stack) -> None:
    # This stack's RELAY_UPSTREAM_TIMEOUT_S is 2 s; a non-streamed think of 8 s is over it.
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        client(stack).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "[emulate:think=8] hi"}])
    assert (caught.value.status_code, caught.value.code) == (504, "upstream_timeout")
    assert '"stream": true' in caught.value.message and "230 s" in caught.value.message
    # Well before the answer would have come: room for a loaded machine, none for waiting the think out.
    assert time.monotonic() - started < 5


def test_the_bound_stays_under_the_platforms_230_seconds_whatever_the_timeout_setting() -> None:
    assert load_settings({**REQUIRED_SETTINGS, "RELAY_UPSTREAM_TIMEOUT_S": "600"}).upstream_timeout_s == 600
    assert NON_STREAMED_DEADLINE_S < 230
