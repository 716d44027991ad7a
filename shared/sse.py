"""Forward Azure OpenAI's server-sent events as they arrive.

Upstream bytes are framed into whole events and passed on byte-for-byte; they
are never parsed and re-serialised. Each event gets a cheap shape check, so a
malformed stream ends with an ``error`` event rather than garbage, and the
relay never emits half an event before that ``error`` event. The usage chunk
(``stream_options.include_usage``) is the only one decoded, for the request log.
The relay asks Azure for it on every stream; when the caller did not, the
forwarder takes it out (``hide_usage``) so the caller gets the stream it asked for.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterable, Mapping
from typing import Any

from shared.completion import hide_cached_tokens
from shared.errors import RelayError, upstream_error

DONE = b"[DONE]"
MAX_EVENT_BYTES = 4 * 1024 * 1024


class MalformedStream(Exception):
    """The upstream bytes are not an OpenAI chat completion event stream."""


class SseForwarder:
    def __init__(self, *, hide_usage: bool = False, hide_cached_tokens: bool = False) -> None:
        self._hide_usage = hide_usage
        self._hide_cached_tokens = hide_cached_tokens
        self._pending = b""
        self.done = False
        self.usage: dict[str, Any] | None = None
        # The model Azure answered with, as the usage chunk names it (for the request's record).
        self.model: str | None = None
        # Whole events received, for a token estimate when the usage chunk never came.
        self.events = 0
        # Why the stream ended early, once it has (the caller got it as an ``error`` event).
        self.error: RelayError | None = None

    def feed(self, data: bytes) -> bytes:
        """Take upstream bytes; return the complete events among them (possibly b"")."""
        buffer = self._pending + data if self._pending else data
        end = buffer.rfind(b"\n\n")
        if end < 0:
            if len(buffer) > MAX_EVENT_BYTES:
                raise MalformedStream("event too large")
            self._pending = buffer
            return b""
        complete, self._pending = buffer[: end + 2], buffer[end + 2 :]
        events = complete.split(b"\n\n")[:-1]
        self.events += len(events)
        keep = [self._check(event) for event in events]
        if not all(keep):
            complete = b"".join(event + b"\n\n" for event, kept in zip(events, keep, strict=True) if kept)
        return hide_cached_tokens(complete) if self._hide_cached_tokens else complete

    def finish(self) -> None:
        """The upstream body ended: it must have ended with ``data: [DONE]``."""
        if self._pending.strip() or not self.done:
            raise MalformedStream("stream ended before [DONE]")

    def error_event(self, error: RelayError) -> bytes:
        """The event that ends this stream when it fails after it started."""
        return error_event(error)

    def _check(self, event: bytes) -> bool:
        """Raise MalformedStream for a bad event; return whether the caller gets it."""
        if self.done:
            raise MalformedStream("data after [DONE]")
        for line in event.split(b"\n"):
            if not line.startswith(b"data:"):
                if line and not line.startswith((b":", b"event:", b"id:", b"retry:")):
                    raise MalformedStream("not an SSE line")
                continue
            payload = line[5:].strip()
            if payload == DONE:
                self.done = True
            elif not (payload.startswith(b"{") and payload.endswith(b"}")):
                raise MalformedStream("data is not a JSON object")
            elif b'"usage"' in payload and b'"completion_tokens"' in payload and self._record_usage(payload):
                return not self._hide_usage
        return True

    def _record_usage(self, payload: bytes) -> bool:
        """Keep the usage a chunk carries; return whether it is the usage-only chunk (empty choices)."""
        try:
            chunk = json.loads(payload)
            usage, choices = chunk.get("usage"), chunk.get("choices")
        except (ValueError, AttributeError):
            raise MalformedStream("data is not JSON") from None
        if not isinstance(usage, dict):
            return False
        self.usage = usage
        model = chunk.get("model")
        self.model = model if isinstance(model, str) else None
        return isinstance(choices, list) and not choices


def error_event(error: RelayError, fields: Mapping[str, Any] | None = None) -> bytes:
    """The event that ends a stream which failed after it started: the relay's error object, after ``fields`` if given."""
    data = {**fields, **error.body()} if fields else error.body()
    return b"event: error\ndata: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


async def forward_events(upstream: AsyncIterable[bytes], forwarder: SseForwarder) -> AsyncGenerator[bytes]:
    """The caller's stream: whole checked events as they arrive, then either the end or one ``error`` event.

    Upstream bytes that are not a well-formed event stream, or an upstream that
    fails mid-way (a :class:`RelayError`), end the stream with an ``error``
    event; ``forwarder.error`` says which. Nothing else is caught.
    """
    try:
        async for data in upstream:
            events = forwarder.feed(data)
            if events:
                yield events
        forwarder.finish()
    except (MalformedStream, RelayError) as exc:
        forwarder.error = exc.detached() if isinstance(exc, RelayError) else upstream_error("Azure OpenAI sent a malformed stream.")
        yield forwarder.error_event(forwarder.error)
