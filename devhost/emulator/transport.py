"""Transport-level behaviour: noticing a client that left, dropping connections, flushed event streams.

ASGI has no way to say "close this connection without answering": uvicorn turns an
exception raised before the response starts into a 500 (uvicorn/protocols/http/h11_impl.py,
``run_asgi``). :class:`RawSendMiddleware` therefore keeps uvicorn's own ``send`` callable in
the scope; it is a bound method of the request cycle that owns the asyncio transport, which
:func:`drop_connection` closes. ``abort()`` sends nothing more; ``close()`` flushes what was
written, then closes, leaving a chunked body unterminated (the client sees an incomplete
transfer, not a clean end).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping

from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from devhost.emulator.records import Outcome

_RAW_SEND = "devhost.emulator.raw_send"
_DROP_GRACE_S = 5.0


class StreamAbort(Exception):
    """Raised by an event generator to end the transfer by dropping the connection."""


class RawSendMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[_RAW_SEND] = send
        await self.app(scope, receive, send)


def drop_connection(scope: Scope, *, flush: bool) -> None:
    transport = getattr(getattr(scope.get(_RAW_SEND), "__self__", None), "transport", None)
    if not isinstance(transport, asyncio.Transport):
        raise TypeError("dropping a connection needs the emulator to run under uvicorn")
    if flush:
        transport.close()
    else:
        transport.abort()


async def wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def sleep_unless_disconnected(receive: Receive, seconds: float) -> bool:
    """Sleep; return True early if the client disconnects meanwhile."""
    if seconds <= 0:
        return False
    try:
        await asyncio.wait_for(wait_for_disconnect(receive), seconds)
    except TimeoutError:
        return False
    return True


class DropConnection(Response):
    """Close the connection without sending a response."""

    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        drop_connection(scope, flush=False)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wait_for_disconnect(receive), _DROP_GRACE_S)


class EventStream(StreamingResponse):
    """A streamed body (by default ``text/event-stream``): each piece is sent as soon as it is produced.

    Watches for the client leaving while it streams; ``on_end`` is told how the
    transfer ended: completed, cancelled (client left) or failed (:class:`StreamAbort`).
    """

    def __init__(
        self,
        events: AsyncIterator[bytes],
        on_end: Callable[[Outcome], None],
        headers: Mapping[str, str] | None = None,
        media_type: str = "text/event-stream",
    ) -> None:
        super().__init__(events, status_code=200, headers=headers, media_type=media_type)
        self.on_end = on_end

    async def _pump(self, send: Send) -> None:
        async for event in self.body_iterator:
            await send({"type": "http.response.body", "body": event, "more_body": True})
            await asyncio.sleep(0)  # a point where a disconnect can cancel us
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": self.status_code,
                "headers": self.raw_headers,
            }
        )
        pump = asyncio.ensure_future(self._pump(send))
        gone = asyncio.ensure_future(wait_for_disconnect(receive))
        left = False
        try:
            await asyncio.wait({pump, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not pump.done():
                pump.cancel()
                left = True
                self.on_end("cancelled")
        if left:
            return
        error = pump.exception()
        if isinstance(error, StreamAbort):
            drop_connection(scope, flush=True)
            self.on_end("failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wait_for_disconnect(receive), _DROP_GRACE_S)
        elif error is not None:
            raise error
        else:
            self.on_end("completed")
