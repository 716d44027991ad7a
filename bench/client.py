"""A minimal HTTP/1.1 keep-alive client on raw asyncio protocols: the lightest load generator we can write.

One request at a time per connection; responses with ``Content-Length`` or
chunked bodies. Every body piece is time-stamped as it arrives (for a stream:
each chunk as the socket delivers it), so time-to-first-byte, time to the first
content event and the gaps between events are measured at the socket, not
after some library buffered them.
"""

from __future__ import annotations

import asyncio
import json
import time
import typing
from dataclasses import dataclass, field

_CRLF = b"\r\n"
_HEAD_END = b"\r\n\r\n"


class HttpError(Exception):
    """The server broke the HTTP/1.1 exchange (closed, malformed, or no answer in time)."""


@dataclass
class Response:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    t_start: float = 0.0
    t_first_byte: float = 0.0
    t_end: float = 0.0
    # (arrival time, bytes) of each body piece: a chunk of a chunked body, or a socket read.
    pieces: list[tuple[float, bytes]] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        return b"".join(piece for _, piece in self.pieces)

    @property
    def latency(self) -> float:
        return self.t_end - self.t_start

    def events(self) -> list[tuple[float, bytes]]:
        """SSE events with the arrival time of the piece that completed each of them."""
        out: list[tuple[float, bytes]] = []
        pending = b""
        for arrived, piece in self.pieces:
            pending += piece
            *complete, pending = pending.split(b"\n\n")
            out.extend((arrived, event) for event in complete if event.strip())
        return out

    def content_times(self) -> list[float]:
        """Arrival times of the events carrying a non-empty ``delta.content`` (what a user sees)."""
        times = []
        for arrived, event in self.events():
            for line in event.split(b"\n"):
                if not line.startswith(b"data:") or line[5:].strip() == b"[DONE]":
                    continue
                payload = json.loads(line[5:])
                if any((choice.get("delta") or {}).get("content") for choice in payload.get("choices") or []):
                    times.append(arrived)
        return times


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.response: Response | None = None
        self.waiter: asyncio.Future[Response] | None = None
        self.state = "idle"
        self.remaining = 0
        self.keep_alive = True
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport, but have its methods.
        self.transport = typing.cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(HttpError(f"connection closed ({exc or 'by peer'})"))

    def _fail(self, error: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)
        self.state = "idle"

    def start(self, raw: bytes, waiter: asyncio.Future[Response], response: Response) -> None:
        assert self.transport is not None and self.state == "idle"
        self.response = response
        self.waiter = waiter
        self.state = "head"
        self.buffer.clear()
        self.response.t_start = time.perf_counter()
        self.transport.write(raw)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        response = self.response
        if response is None or self.state == "idle":
            return
        if not response.t_first_byte:
            response.t_first_byte = now
        self.buffer += data
        try:
            self._parse(response, now)
        except (ValueError, IndexError) as exc:
            self.keep_alive = False
            self._fail(HttpError(f"malformed response: {exc}"))

    def _parse(self, response: Response, now: float) -> None:
        buf = self.buffer
        while True:
            if self.state == "head":
                end = buf.find(_HEAD_END)
                if end < 0:
                    return
                lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
                del buf[: end + 4]
                response.status = int(lines[0].split(" ", 2)[1])
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    response.headers[name.strip().lower()] = value.strip()
                self.keep_alive = response.headers.get("connection", "").lower() != "close"
                if response.headers.get("transfer-encoding", "").lower() == "chunked":
                    self.state = "size"
                else:
                    self.remaining = int(response.headers.get("content-length", "0"))
                    self.state = "length"
            elif self.state == "length":
                if buf and self.remaining:
                    take = bytes(buf[: self.remaining])
                    del buf[: len(take)]
                    self.remaining -= len(take)
                    response.pieces.append((now, take))
                if self.remaining:
                    return
                self._done(response, now)
                return
            elif self.state == "size":
                end = buf.find(_CRLF)
                if end < 0:
                    return
                self.remaining = int(bytes(buf[:end]).split(b";")[0], 16)
                del buf[: end + 2]
                self.state = "chunk" if self.remaining else "trailer"
            elif self.state == "chunk":
                if len(buf) < self.remaining + 2:
                    return
                response.pieces.append((now, bytes(buf[: self.remaining])))
                del buf[: self.remaining + 2]
                self.state = "size"
            elif self.state == "trailer":
                end = buf.find(_CRLF)
                if end < 0:
                    return
                del buf[: end + 2]
                if end == 0:
                    self._done(response, now)
                    return
            else:
                return

    def _done(self, response: Response, now: float) -> None:
        response.t_end = now
        self.state = "idle"
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(response)
        if not self.keep_alive and self.transport is not None:
            self.transport.close()


class Connection:
    """One keep-alive HTTP/1.1 connection to ``host:port``; reconnects when the server closed it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._protocol: _Protocol | None = None

    async def request(self, raw: bytes, timeout: float = 30.0, response: Response | None = None) -> Response:
        """Send ``raw`` and wait for the complete answer; ``response``, when given, is filled in as bytes arrive.

        A caller that passes its own ``response`` keeps what arrived even when it cancels the wait.
        """
        loop = asyncio.get_running_loop()
        if self._protocol is None or self._protocol.lost or not self._protocol.keep_alive:
            self.close()
            _, self._protocol = await loop.create_connection(_Protocol, self.host, self.port)
        waiter: asyncio.Future[Response] = loop.create_future()
        self._protocol.start(raw, waiter, Response() if response is None else response)
        try:
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            self.close()
            raise HttpError(f"no complete answer within {timeout}s") from None

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None


def build_request(method: str, path: str, host: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    """The exact bytes of one request, built once and sent many times."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
