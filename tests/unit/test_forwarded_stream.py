"""shared.forwarded_stream: a stream's endings (done, caller gone, upstream failed) each close the upstream, charge once and log once;
a caller that leaves before the answer starts cancels the upstream request.

How a caller that stops reading is ended, and the keep-alive that finds it, are in tests/unit/test_relay.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.requests import ClientDisconnect
from starlette.types import Message

from shared.config import Settings, load_settings
from shared.errors import upstream_error
from shared.forwarded_stream import ForwardedStream, unless_caller_leaves
from shared.logs import RequestLog
from shared.sse import SseForwarder

ENV = {
    "AZURE_OPENAI_ENDPOINT": "https://contoso-aoai.openai.azure.com",
    "AZURE_OPENAI_DEPLOYMENTS": "gpt-4o-mini",
    "APPLICATION_NAME": "contoso-chat-spa",
    "RELAY_STREAM_KEEPALIVE_S": "0.1",
}
CHUNK = b'data: {"choices":[{"delta":{"content":"Once"}}]}\n\n'
USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}\n\n'
DONE = b"data: [DONE]\n\n"


class Upstream:
    """Azure's stream: ``pieces``, each after ``pause`` seconds, then ``error`` if any."""

    def __init__(self, pieces: list[bytes], pause: float = 0.0, error: BaseException | None = None) -> None:
        self.pieces, self.pause, self.error, self.closed = pieces, pause, error, 0

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            await asyncio.sleep(self.pause)
            yield piece
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.closed += 1


class Charges:
    def __init__(self) -> None:
        self.made: list[tuple[dict[str, Any] | None, int]] = []

    def charge(self, usage: dict[str, Any] | None, streamed_chunks: int = 0) -> None:
        self.made.append((usage, streamed_chunks))


@pytest.fixture
def settings() -> Settings:
    return load_settings(ENV)


async def serve(
    upstream: Upstream, settings: Settings, caplog: pytest.LogCaptureFixture, leave_after: float | None = None
) -> tuple[bytes, Charges, list[dict[str, Any]]]:
    charges = Charges()
    response = ForwardedStream(upstream, RequestLog("0" * 32, "chat.completions"), SseForwarder(), charges, settings)  # type: ignore[arg-type]
    body = b""

    async def receive() -> Message:
        if leave_after is None:
            await asyncio.Event().wait()
        await asyncio.sleep(leave_after or 0)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal body
        body += message.get("body", b"")

    with caplog.at_level(logging.INFO, logger="relay.request"):
        await asyncio.wait_for(response({"type": "http"}, receive, send), 5)
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "relay.request"]
    return body, charges, logged


async def test_a_finished_stream_is_forwarded_whole_charged_its_usage_and_logged_200(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    upstream = Upstream([CHUNK, USAGE, DONE])
    body, charges, [line] = await serve(upstream, settings, caplog)
    assert body == CHUNK + USAGE + DONE
    assert charges.made == [({"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}, 3)]
    assert (line["status"], line["code"], line["total_tokens"], upstream.closed) == (200, None, 7, 1)


async def test_keep_alive_comments_fill_azures_silence_and_stop_with_it(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    body, _, [line] = await serve(Upstream([CHUNK, DONE], pause=0.35), settings, caplog)
    assert body.count(b": keep-alive\n\n") >= 2
    assert body.replace(b": keep-alive\n\n", b"") == CHUNK + DONE
    assert line["status"] == 200


async def test_a_caller_that_leaves_mid_stream_ends_it_499_closes_the_upstream_and_is_charged_once(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    upstream = Upstream([CHUNK] * 50, pause=0.02)
    body, charges, [line] = await serve(upstream, settings, caplog, leave_after=0.1)
    assert 0 < body.count(CHUNK) < 50
    assert (line["status"], line["code"], upstream.closed) == (499, "client_closed_request", 1)
    [(usage, events)] = charges.made
    assert usage is None and events == body.count(CHUNK)


async def test_an_upstream_that_fails_mid_stream_ends_with_an_error_event_logged_with_its_code(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    upstream = Upstream([CHUNK], error=upstream_error("The stream from Azure OpenAI broke off."))
    body, charges, [line] = await serve(upstream, settings, caplog)
    assert body.startswith(CHUNK) and b"event: error\n" in body and b'"code":"upstream_error"' in body
    assert (line["status"], line["code"], upstream.closed, len(charges.made)) == (502, "upstream_error", 1, 1)


async def test_a_caller_that_leaves_before_the_answer_cancels_the_work_and_is_a_client_disconnect() -> None:
    cancelled = asyncio.Event()

    async def receive() -> Message:
        await asyncio.sleep(0.05)
        return {"type": "http.disconnect"}

    async def azure_thinking() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "answer"

    with pytest.raises(ClientDisconnect):
        await asyncio.wait_for(unless_caller_leaves(receive, azure_thinking()), 5)
    assert cancelled.is_set()
    await asyncio.sleep(0)  # the request's task is not left cancelled


async def test_work_that_finishes_first_is_returned_and_leaves_no_watcher_behind() -> None:
    async def receive() -> Message:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def quick() -> str:
        return "answer"

    before = len(asyncio.all_tasks())
    assert await unless_caller_leaves(receive, quick()) == "answer"
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == before


async def test_a_server_that_does_not_report_disconnects_this_way_is_not_taken_for_a_departure() -> None:
    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def slow() -> str:
        await asyncio.sleep(0.05)
        return "answer"

    assert await unless_caller_leaves(receive, slow()) == "answer"
