"""shared.forwarded_stream: a stream's endings (done, caller gone, upstream failed, ended from outside with an error event)
each close the upstream, charge once, log once and leave the registry of open streams; a caller that leaves before the
answer starts cancels the upstream request.

How a caller that stops reading is ended, and the keep-alive that finds it, are in tests/unit/test_relay.py.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from starlette.requests import ClientDisconnect
from starlette.types import Message

from shared.blocklist import BlockEntry
from shared.caller import Caller
from shared.config import Settings, load_settings
from shared.easyauth import Principal
from shared.errors import upstream_error, user_blocked
from shared.forwarded_stream import ForwardedStream, unless_caller_leaves
from shared.logs import RequestLog
from shared.open_streams import OpenStream, OpenStreams
from shared.sse import SseForwarder, error_event
from tests.support.app_settings import REQUIRED_SETTINGS
from tests.support.identities import ADA_OID, ADA_TID

ENV = {**REQUIRED_SETTINGS, "RELAY_STREAM_KEEPALIVE_S": "0.1"}
CHUNK = b'data: {"choices":[{"delta":{"content":"Once"}}]}\n\n'
USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}\n\n'
DONE = b"data: [DONE]\n\n"
BLOCKED_EVENT = error_event(user_blocked())
ADA = Caller(Principal(ADA_OID, ADA_TID, None, "Ada", "aad", frozenset(), None, False, ()), "203.0.113.7")
ADA_BLOCKED = BlockEntry("oid", ADA_OID, ADA_OID)


BROKE_OFF = "The stream from Azure OpenAI broke off."


class Upstream:
    """Azure's stream: ``pieces``, each after ``pause`` seconds, then a new ``error()`` if any.

    A new one, as a real stream raises: an error kept here would keep its traceback, and through it the stream.
    """

    def __init__(self, pieces: list[bytes], pause: float = 0.0, error: Callable[[], BaseException] | None = None) -> None:
        self.pieces, self.pause, self.error, self.closed = pieces, pause, error, 0

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            await asyncio.sleep(self.pause)
            yield piece
        if self.error is not None:
            raise self.error()

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
    upstream: Upstream,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    leave_after: float | None = None,
    watch: OpenStream | None = None,
    on_body: Callable[[bytes, ForwardedStream], Awaitable[None]] | None = None,
    served: list[weakref.ref[ForwardedStream]] | None = None,
) -> tuple[bytes, Charges, list[dict[str, Any]]]:
    """Serve one stream; ``on_body`` sees each body write before the caller gets it (a slow reader, or a test acting mid-stream).

    ``served`` gets a weak reference to the response, to tell when it is freed.
    """
    charges = Charges()
    response = ForwardedStream(upstream, RequestLog("0" * 32, "chat.completions"), SseForwarder(), charges, settings, watch)  # type: ignore[arg-type]
    # Weak, so that the writes' hook does not keep the response alive in a cycle of the test's own.
    shown = weakref.ref(response)
    if served is not None:
        served.append(shown)
    body = b""

    async def receive() -> Message:
        if leave_after is None:
            await asyncio.Event().wait()
        await asyncio.sleep(leave_after or 0)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal body
        if on_body is not None and message["type"] == "http.response.body":
            serving = shown()
            assert serving is not None
            await on_body(message["body"], serving)
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
    upstream = Upstream([CHUNK], error=lambda: upstream_error(BROKE_OFF))
    body, charges, [line] = await serve(upstream, settings, caplog)
    assert body.startswith(CHUNK) and b"event: error\n" in body and b'"code":"upstream_error"' in body
    assert (line["status"], line["code"], upstream.closed, len(charges.made)) == (502, "upstream_error", 1, 1)


@pytest.fixture
def collector_off() -> Iterator[None]:
    """No automatic garbage collection: what is freed is freed by reference counting, as soon as nothing holds it."""
    enabled = gc.isenabled()
    gc.disable()
    yield
    if enabled:
        gc.enable()


async def watch_ended() -> None:
    """Two turns of the loop: the stopped caller watch's task ends in one, its done callbacks run in the next."""
    for _ in range(2):
        await asyncio.sleep(0)


@pytest.mark.usefixtures("collector_off")
@pytest.mark.parametrize(
    ("upstream", "leave_after"),
    [
        (Upstream([CHUNK, USAGE, DONE]), None),
        (Upstream([CHUNK] * 50, pause=0.02), 0.1),
        (Upstream([CHUNK], error=lambda: upstream_error(BROKE_OFF)), None),
    ],
    ids=["finished", "caller-left", "upstream-failed"],
)
async def test_a_stream_is_freed_as_soon_as_it_ends_not_at_a_later_garbage_collection(
    upstream: Upstream, leave_after: float | None, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # A reference cycle would keep each ended request's objects until an older collection, whose pauses
    # hold every stream in flight (docs/performance.md, "Garbage collection").
    served: list[weakref.ref[ForwardedStream]] = []
    await serve(upstream, settings, caplog, leave_after=leave_after, served=served)
    await watch_ended()
    assert served[0]() is None


@pytest.mark.usefixtures("collector_off")
async def test_a_stream_whose_caller_leaves_during_a_keep_alive_write_is_freed_as_it_ends(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async def slow_keep_alive(piece: bytes, response: ForwardedStream) -> None:
        if piece == b": keep-alive\n\n":
            await asyncio.sleep(1)  # still writing when the caller leaves: the stream cancels the write

    served: list[weakref.ref[ForwardedStream]] = []
    await serve(Upstream([CHUNK, DONE], pause=1.0), settings, caplog, leave_after=0.3, on_body=slow_keep_alive, served=served)
    await watch_ended()
    assert served[0]() is None


class CallerStays:
    """An ASGI ``receive`` whose caller never leaves."""

    async def __call__(self) -> Message:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def answer_at_once() -> str:
    return "answer"


@pytest.mark.usefixtures("collector_off")
async def test_the_caller_watch_of_work_that_finishes_first_is_freed_at_once() -> None:
    receive = CallerStays()
    watched = weakref.ref(receive)
    assert await unless_caller_leaves(receive, answer_at_once()) == "answer"
    del receive
    await watch_ended()
    assert watched() is None


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
    before = len(asyncio.all_tasks())
    assert await unless_caller_leaves(CallerStays(), answer_at_once()) == "answer"
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == before


async def test_a_server_that_does_not_report_disconnects_this_way_is_not_taken_for_a_departure() -> None:
    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def slow() -> str:
        await asyncio.sleep(0.05)
        return "answer"

    assert await unless_caller_leaves(receive, slow()) == "answer"


async def end_blocked_after(streams: OpenStreams, seconds: float) -> None:
    """What a block-list refresh that blocks Ada does, ``seconds`` from now."""
    await asyncio.sleep(seconds)
    streams.end_blocked(lambda caller: ADA_BLOCKED if caller.principal.object_id == ADA_OID else None)


async def test_a_stream_ended_by_a_block_gets_the_user_blocked_event_after_whole_events_is_charged_and_logged_403(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    streams = OpenStreams()
    upstream = Upstream([CHUNK] * 50, pause=0.02)
    blocking = asyncio.ensure_future(end_blocked_after(streams, 0.2))
    body, charges, [line] = await serve(upstream, settings, caplog, watch=streams.watch(ADA, "0" * 32))
    await blocking
    sent = body.count(CHUNK)
    assert 0 < sent < 50
    assert body == CHUNK * sent + BLOCKED_EVENT
    assert (line["status"], line["code"], upstream.closed) == (403, "user_blocked", 1)
    assert charges.made == [(None, sent)]
    assert len(streams) == 0


async def test_a_stream_waiting_for_azure_is_ended_by_a_block_at_once(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    streams = OpenStreams()
    upstream = Upstream([CHUNK, DONE], pause=3)  # a reasoning model thinking
    blocking = asyncio.ensure_future(end_blocked_after(streams, 0.3))
    started = asyncio.get_running_loop().time()
    body, charges, [line] = await serve(upstream, settings, caplog, watch=streams.watch(ADA, "0" * 32))
    await blocking
    assert asyncio.get_running_loop().time() - started < 2
    assert body.replace(b": keep-alive\n\n", b"") == BLOCKED_EVENT
    assert (line["status"], line["code"], upstream.closed, charges.made) == (403, "user_blocked", 1, [(None, 0)])


async def test_a_blocked_caller_that_stops_reading_is_let_go_after_the_write_timeout(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings({**ENV, "RELAY_CALLER_WRITE_TIMEOUT_S": "0.5"})
    streams = OpenStreams()

    async def stop_reading_at_the_error(piece: bytes, response: ForwardedStream) -> None:
        if piece.startswith(b"event: error"):
            await asyncio.Event().wait()

    blocking = asyncio.ensure_future(end_blocked_after(streams, 0.1))
    started = asyncio.get_running_loop().time()
    body, _, [line] = await serve(
        Upstream([CHUNK] * 50, pause=0.02), settings, caplog, watch=streams.watch(ADA, "0" * 32), on_body=stop_reading_at_the_error
    )
    await blocking
    assert 0.5 <= asyncio.get_running_loop().time() - started < 2.5
    assert BLOCKED_EVENT not in body
    assert (line["status"], line["code"], len(streams)) == (403, "user_blocked", 0)


async def test_a_stream_that_failed_on_its_own_is_not_ended_again(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    async def block_while_the_error_is_written(piece: bytes, response: ForwardedStream) -> None:
        if piece.startswith(b"event: error"):
            response.end_with(user_blocked())

    upstream = Upstream([CHUNK], error=lambda: upstream_error(BROKE_OFF))
    body, charges, [line] = await serve(upstream, settings, caplog, on_body=block_while_the_error_is_written)
    assert body.count(b"event: error") == 1 and b'"code":"upstream_error"' in body
    assert (line["status"], line["code"], len(charges.made)) == (502, "upstream_error", 1)


@pytest.mark.parametrize("ending", ["done", "caller gone", "upstream failed", "blocked"])
async def test_a_stream_is_among_the_open_streams_while_served_and_leaves_however_it_ends(
    ending: str, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    streams = OpenStreams()
    open_while_served: list[int] = []

    async def count(piece: bytes, response: ForwardedStream) -> None:
        open_while_served.append(len(streams))

    error = (lambda: upstream_error(BROKE_OFF)) if ending == "upstream failed" else None
    upstream = Upstream([CHUNK] * 20 + ([DONE] if ending == "done" else []), pause=0.02, error=error)
    blocking = asyncio.ensure_future(end_blocked_after(streams, 0.1 if ending == "blocked" else 5))
    leave_after = 0.1 if ending == "caller gone" else None
    _, _, [line] = await serve(upstream, settings, caplog, leave_after=leave_after, watch=streams.watch(ADA, "0" * 32), on_body=count)
    blocking.cancel()
    expected = {"done": 200, "caller gone": 499, "upstream failed": 502, "blocked": 403}[ending]
    assert line["status"] == expected
    assert open_while_served[0] == 1
    assert len(streams) == 0
