"""``python -m bench.pacer``: the emulator's answers, replayed on the emulator's schedule at a fraction of its CPU.

The capacity ramp needs thousands of streams with chunks every few tens of
milliseconds from a process that shares one CPU with the load generator. The
emulator spends about 40 µs of CPU per streamed chunk (Starlette, a generator
step, ``json.dumps``, a timer per chunk), so it and the load generator run out
of their CPU near 700 streams at 20 chunks/s, below what one relay CPU serves.
This process stands in front of it:

- a chat completion whose body it has not seen is sent to the emulator once
  with the timing directives (``chunk_delay_ms``, ``slow``) taken out, and the
  answer's status, headers and bytes are kept (least recently used first out);
- every call is answered from that recording on the emulator's schedule, read
  from the same directives with the emulator's own parser: the answer after
  ``slow`` seconds; for a stream, the events up to the first content chunk at
  once, then one content chunk every ``chunk_delay_ms``, then the rest after
  one more delay, each event its own HTTP chunk. Times are absolute (no drift),
  so a late chunk at the client is lateness added on the way, not here;
- anything else (the managed identity endpoint, health) is passed to the emulator.

A raw asyncio protocol with httptools' parser: no framework, one timer per stream
event. Used by ``bench.capacity`` only; the other phases call the emulator itself.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import re
import signal
import typing
from dataclasses import dataclass

import aiohttp
import httptools
import uvloop

from devhost.emulator.directives import DirectiveError, parse_directives

CACHE_ENTRIES = 64
_TIMING_DIRECTIVE = re.compile(r"\[emulate:(?:chunk_delay_ms|slow)=[^\]\s]*\]")
_KEPT_HEADERS = ("content-type", "cache-control")
_FORWARDED_HEADERS = ("authorization", "api-key", "content-type", "x-identity-header")
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}


@dataclass(frozen=True)
class Recording:
    """One answer of the emulator, ready to send: the head, and the body as whole bytes or as timed HTTP chunks."""

    head: bytes
    body: bytes = b""
    # For a stream: (content chunks before this event, the event as one HTTP chunk).
    events: tuple[tuple[int, bytes], ...] = ()


@dataclass(frozen=True)
class Timing:
    chunk_delay_s: float = 0.0
    slow_s: float = 0.0


def timing(body: bytes) -> Timing:
    """The emulator's timing directives in the last user message of a chat body (none when it has none or is no chat body)."""
    try:
        messages = json.loads(body).get("messages") or []
        last = next(m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user")
        content = last.get("content")
        text = content if isinstance(content, str) else json.dumps(content)
        directives = parse_directives(text)
    except (ValueError, AttributeError, StopIteration, DirectiveError):
        return Timing()
    return Timing(directives.chunk_delay_ms / 1000, directives.slow_s)


def untimed(body: bytes) -> bytes:
    """``body`` with the timing directives taken out, so that the emulator answers at once (the answer is the same)."""
    return _TIMING_DIRECTIVE.sub("", body.decode()).encode()


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def record(status: int, headers: dict[str, str], body: bytes) -> Recording:
    """A recording of one emulator answer; an event stream is split into events, each counted against the content chunks before it."""
    kept = [(name, headers[name]) for name in _KEPT_HEADERS if name in headers]
    if not headers.get("content-type", "").startswith("text/event-stream") or status != 200:
        return Recording(_head(status, [*kept, ("content-length", str(len(body)))]), body=body)
    events: list[tuple[int, bytes]] = []
    contents = 0
    for event in body.split(b"\n\n")[:-1]:
        whole = event + b"\n\n"
        events.append((contents, b"%x\r\n%s\r\n" % (len(whole), whole)))
        contents += _is_content(event)
    return Recording(_head(status, [*kept, ("transfer-encoding", "chunked")]), events=tuple(events))


def _is_content(event: bytes) -> bool:
    payload = event.removeprefix(b"data: ")
    try:
        choices = json.loads(payload).get("choices") or []
    except (ValueError, AttributeError):  # [DONE], or not an object
        return False
    return any((choice.get("delta") or {}).get("content") for choice in choices)


class Pacer:
    def __init__(self, emulator: str) -> None:
        self.emulator = emulator.rstrip("/")
        self.recordings: collections.OrderedDict[tuple[str, bytes], Recording] = collections.OrderedDict()
        self.session: aiohttp.ClientSession | None = None

    async def fetch(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Recording:
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        forwarded = {name: headers[name] for name in _FORWARDED_HEADERS if name in headers}
        async with self.session.request(method, self.emulator + path, data=body or None, headers=forwarded) as response:
            return record(response.status, {k.lower(): v for k, v in response.headers.items()}, await response.read())

    async def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[Recording, Timing]:
        if method != "POST" or not path.endswith("/chat/completions"):
            return await self.fetch(method, path, headers, body), Timing()
        key = (path, body)
        recording = self.recordings.get(key)
        if recording is None:
            recording = await self.fetch(method, path, headers, untimed(body))
            self.recordings[key] = recording
            while len(self.recordings) > CACHE_ENTRIES:
                self.recordings.popitem(last=False)
        else:
            self.recordings.move_to_end(key)
        return recording, timing(body)


class _Connection(asyncio.Protocol):
    """One client connection: requests one at a time (no pipelining), answers on the recording's schedule."""

    def __init__(self, pacer: Pacer) -> None:
        self.pacer = pacer
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport, but have its methods.
        self.transport = typing.cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url, self.headers, self.body = b"", {}, []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode()
        self.task = self.loop.create_task(self._respond(method, self.url.decode("latin-1"), self.headers, b"".join(self.body)))

    async def _respond(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        try:
            recording, when = await self.pacer.answer(method, path, headers, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            message = json.dumps({"error": {"code": "pacer", "message": f"the emulator did not answer: {exc}"}}).encode()
            recording, when = (
                Recording(_head(502, [("content-type", "application/json"), ("content-length", str(len(message)))]), message),
                Timing(),
            )
        start = self.loop.time() + when.slow_s
        if recording.events:
            self.timer = self.loop.call_at(start, self._stream, recording, start, when.chunk_delay_s, 0)
        else:
            self.timer = self.loop.call_at(start, self._write, recording.head + recording.body)

    def _write(self, data: bytes) -> None:
        self.timer = None
        if self.transport is not None:
            self.transport.write(data)

    def _stream(self, recording: Recording, start: float, delay_s: float, index: int) -> None:
        """Write every event due by now; schedule the next one at its absolute time."""
        self.timer = None
        if self.transport is None:
            return
        if index == 0:
            self.transport.write(recording.head)
        events = recording.events
        now = self.loop.time()
        while index < len(events):
            due = start + events[index][0] * delay_s
            if due > now:
                self.timer = self.loop.call_at(due, self._stream, recording, start, delay_s, index)
                return
            self.transport.write(events[index][1])
            index += 1
        self.transport.write(b"0\r\n\r\n")


async def serve(port: int, emulator: str) -> None:
    pacer = Pacer(emulator)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(pacer), "127.0.0.1", port, backlog=4096)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()
    if pacer.session is not None:
        await pacer.session.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pacer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--emulator", required=True, help="the emulator's base URL, e.g. http://127.0.0.1:7072")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.port, args.emulator))


if __name__ == "__main__":
    main()
