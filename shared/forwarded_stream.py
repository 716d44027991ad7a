"""The stream engine: Azure's event stream to the caller, and noticing a caller that left.

One watcher task per request waits for the caller's ``http.disconnect`` and cancels the
request's own task; one timer per stream, re-armed only when it fires, sends the keep-alive
comments and notices a caller that stopped reading. Starlette's ``StreamingResponse`` would
run a task group per stream (``listen_for_disconnect`` beside ``stream_response``) and this
module an ``asyncio.timeout`` per write: both cost more per event (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from shared.access_controls import TokenCharge
from shared.config import Settings
from shared.errors import RelayError
from shared.logs import RequestLog
from shared.sse import SseForwarder, forward_events

if TYPE_CHECKING:
    from shared.open_streams import OpenStream
    from shared.upstream import UpstreamResponse

_KEEPALIVE = b": keep-alive\n\n"
# App Service's platform CORS cannot expose response headers, so the relay names them itself on every
# answer: a cross-origin SPA needs the request ID for support and Retry-After to back off.
EXPOSE_HEADERS = {"Access-Control-Expose-Headers": "x-request-id, retry-after"}
_T = TypeVar("_T")


async def _caller_left(receive: Receive) -> None:
    """Return when the caller disconnects (the body has been read, so ``receive`` only reports that)."""
    if (await receive())["type"] != "http.disconnect":
        # Not an ASGI server that reports disconnects this way: stop watching rather than spin.
        await asyncio.Event().wait()


class _CallerWatch:
    """One task that waits for the caller to leave, then calls ``on_leave`` (which cancels the watched task)."""

    def __init__(self, receive: Receive, on_leave: Callable[[], None]) -> None:
        self._on_leave = on_leave
        self._task = asyncio.ensure_future(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        await _caller_left(receive)
        self._on_leave()

    def stop(self) -> None:
        _cancel(self._task)


def _cancel(task: asyncio.Future[None]) -> None:
    """Cancel a task of the request's own, and take its CancelledError once it ends, which the task otherwise keeps.

    The error's traceback holds the task's frames, and so their owner (the caller watch, the stream), the
    task and everything the owner reaches (the whole request): a reference cycle that only an older garbage
    collection would free, with the pauses that come with it (docs/performance.md, "Garbage collection").
    """
    task.cancel()
    task.add_done_callback(_let_go_of_cancellation)


def _let_go_of_cancellation(task: asyncio.Future[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        task.exception()


class _Departure:
    """Whether the caller left while ``unless_caller_leaves`` awaited, and the task it cancelled."""

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task = task
        self.left = False

    def __call__(self) -> None:
        self.left = True
        self.task.cancel()


async def unless_caller_leaves(receive: Receive, work: Awaitable[_T]) -> _T:
    """Await ``work``; if the caller disconnects first, cancel it (which closes the upstream request) and raise ClientDisconnect.

    A StreamingResponse watches for the caller itself once it has started; before
    that, nothing would notice, and Azure OpenAI would keep generating for no one.
    One watcher task cancels this one, so ``work`` runs in the request's own task.
    """
    current = asyncio.current_task()
    assert current is not None
    departure = _Departure(current)
    watch = _CallerWatch(receive, departure)
    try:
        result = await work
    except asyncio.CancelledError:
        if not departure.left:
            raise
        current.uncancel()
        raise ClientDisconnect() from None
    finally:
        watch.stop()
    if departure.left:  # ``work`` finished in spite of the cancellation: take it back, or the next await would raise
        current.uncancel()
    return result


class ForwardedStream(StreamingResponse):
    """Azure's event stream to the caller.

    While Azure is silent (a reasoning model thinking before its first token) the caller gets an
    SSE comment every ``keepalive_s``, which clients ignore and idle timeouts on the way count as
    traffic. However the stream ends (done, an upstream failure sent as an ``error`` event, the
    caller gone, the caller reading nothing for ``write_timeout_s``, or ended from outside with an
    ``error`` event by :meth:`end_with`), the upstream response is closed, which cancels Azure's
    generation, the tokens are charged, and the request's log line is written.

    With ``open_stream``, the stream is in the instance's registry of open streams while it is served
    (``shared/open_streams.py``), so a block that reaches the instance ends it.
    """

    def __init__(
        self,
        upstream: UpstreamResponse,
        record: RequestLog,
        forwarder: SseForwarder,
        charge: TokenCharge,
        settings: Settings,
        open_stream: OpenStream | None = None,
    ) -> None:
        self._events = forward_events(upstream.iter_bytes(), forwarder)
        super().__init__(
            self._events,
            status_code=200,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **EXPOSE_HEADERS, "x-request-id": record.request_id},
        )
        self._upstream, self._record, self._forwarder, self._charge = upstream, record, forwarder, charge
        self._open_stream = open_stream
        self._write_timeout_s = settings.caller_write_timeout_s
        self._keepalive_s = settings.stream_keepalive_s
        # The state of one serving, set by __call__ (a response is served once).
        self._loop: asyncio.AbstractEventLoop
        self._streaming: asyncio.Task[object]
        self._send: Send
        self._writing = asyncio.Lock()
        self._last_heard = 0.0
        self._write_started: float | None = None
        self._ending: str | None = None  # why this stream cancelled itself: "gone", "stalled" or "error" (end_with)
        self._keepalive_writer: asyncio.Future[None] | None = None
        self._closing = False
        self._timer: asyncio.TimerHandle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream in the request's own task; one watcher task cancels it when the caller leaves, one timer does the rest.

        The timer is re-armed only when it fires (at most every ``keepalive_s``, or when a write
        has been pending for ``write_timeout_s``), so a stream costs no timer per event.
        """
        loop = self._loop = asyncio.get_running_loop()
        streaming = asyncio.current_task()
        assert streaming is not None
        self._streaming, self._send = streaming, send
        status: int = 499
        code: str | None = "client_closed_request"
        self._last_heard = loop.time()
        watch = _CallerWatch(receive, self._caller_gone)
        self._timer = loop.call_at(self._last_heard + min(self._keepalive_s, self._write_timeout_s), self._tick)
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if self._open_stream is not None:
                self._open_stream.opened(self.end_with)
            await self._stream()
            error = self._forwarder.error
            status, code = (error.status, error.code) if error is not None else (200, None)
        except asyncio.CancelledError:
            if self._ending is None:
                raise
            # cancelled by _end(): the caller left, or stopped reading (the server then closes the connection), or end_with()
            streaming.uncancel()
            error = self._forwarder.error
            if self._ending == "error" and error is not None:
                status, code = error.status, error.code
                await self._write_last(self._forwarder.error_event(error))
        finally:
            if self._open_stream is not None:
                self._open_stream.closed()
            self._timer.cancel()
            watch.stop()
            if self._keepalive_writer is not None:
                _cancel(self._keepalive_writer)
            self._finish(status, "caller_stalled" if self._ending == "stalled" else code)

    async def _stream(self) -> None:
        loop = self._loop
        async with contextlib.aclosing(self._events) as events:
            async for chunk in events:
                self._last_heard = loop.time()
                self._record.mark_first_byte()
                await self._write(chunk)
        self._closing = True
        if self._keepalive_writer is not None:
            _cancel(self._keepalive_writer)
        await self._write(b"", more_body=False)

    async def _write(self, body: bytes, more_body: bool = True) -> None:
        async with self._writing:
            self._write_started = self._loop.time()
            try:
                await self._send({"type": "http.response.body", "body": body, "more_body": more_body})
            finally:
                self._write_started = None

    async def _write_last(self, body: bytes) -> None:
        """Write ``body`` and end the response, within ``write_timeout_s`` (the timer no longer ends a stream already ending)."""
        self._closing = True
        if self._keepalive_writer is not None:
            _cancel(self._keepalive_writer)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._write_timeout_s):
                await self._write(body)
                await self._write(b"", more_body=False)

    def _tick(self) -> None:
        now = self._loop.time()
        write_started = self._write_started
        if write_started is not None:
            if now - write_started >= self._write_timeout_s:
                self._end("stalled")
                return
            next_at = write_started + self._write_timeout_s
        else:
            writer = self._keepalive_writer
            if now - self._last_heard >= self._keepalive_s and not self._closing and (writer is None or writer.done()):
                self._keepalive_writer = asyncio.ensure_future(self._write(_KEEPALIVE))
                self._last_heard = now
            next_at = min(self._last_heard + self._keepalive_s, now + self._write_timeout_s)
        self._timer = self._loop.call_at(next_at, self._tick)

    def _caller_gone(self) -> None:
        self._end("gone")

    def end_with(self, error: RelayError) -> None:
        """End the stream from outside its task: its events stop, the caller gets ``error`` as its last event, logged as ``error``.

        Does nothing to a stream that is already ending, or that has sent its last event or an error of its own.
        """
        if self._ending is None and not self._closing and self._forwarder.error is None:
            self._forwarder.error = error
            self._end("error")

    def _end(self, reason: str) -> None:
        if self._ending is None:
            self._ending = reason
            self._streaming.cancel()

    def _finish(self, status: int, code: str | None) -> None:
        self._upstream.close()
        self._record.usage, self._record.model = self._forwarder.usage, self._forwarder.model
        # No usage from Azure (the caller left, the stream broke): budgets, when on, charge an estimate (TokenCharge).
        self._record.usage_estimated = self._forwarder.usage is None
        self._charge.charge(self._forwarder.usage, self._forwarder.events)
        self._record.emit(status, code)
