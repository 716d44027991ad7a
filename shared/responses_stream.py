"""The Responses API's event stream to the caller: named events, ids sealed, usage from the terminal event.

A Responses stream is server-sent events with names (``event: response.created`` ...
``event: response.output_text.delta`` ... and last ``response.completed``,
``response.incomplete`` or ``response.failed``, carrying the whole response with its
``usage``; or an ``error`` event). The chat engine (``shared/sse.py``,
``shared/forwarded_stream.py``) frames, forwards, keeps the stream alive and ends it with an
``error`` event on failure; this forwarder checks each event's shape, seals the service's ids
for the caller (``shared/responses_ids.py``: the only bytes changed), takes the usage from the
terminal event and remembers the response's size for its continuations. The ``error`` event
the relay ends a failed stream with is the Responses API's (OpenAI's API reference,
"Streaming events", ``error``: ``type``, ``code``, ``message``, ``param``,
``sequence_number``), which clients that check each event against it (the Vercel AI SDK)
read; the relay's error object rides beside those fields, as on chat, so the official SDKs
raise it as they do there.
"""

from __future__ import annotations

import json
from typing import Any

from shared.errors import RelayError
from shared.responses_ids import OwnerSeal
from shared.responses_usage import ContextSizes, chat_usage
from shared.sse import MalformedStream, SseForwarder, error_event

TERMINAL_EVENTS = frozenset({b"response.completed", b"response.incomplete", b"response.failed", b"error"})
# The events whose message may name an id in its text (shared.responses_ids.OwnerSeal.seal_text).
_FAILURES = frozenset({b"response.failed", b"error"})


class ResponsesForwarder(SseForwarder):
    def __init__(self, seal: OwnerSeal, sizes: ContextSizes, *, hide_cached_tokens: bool = False) -> None:
        super().__init__(hide_cached_tokens=hide_cached_tokens)
        self._seal, self._sizes = seal, sizes
        self._failed = False
        # Events with data forwarded so far: the service numbers them from 0, so the next number.
        self._numbered = 0

    def feed(self, data: bytes) -> bytes:
        out = self._seal.seal_json(super().feed(data))
        return self._seal.seal_messages(out) if self._failed else out

    def error_event(self, error: RelayError) -> bytes:
        """The Responses API's ``error`` event, numbered after the last event forwarded (the service numbers from 0)."""
        fields = {name: error.body()["error"][name] for name in ("code", "message", "param")}
        return error_event(error, {"type": "error", **fields, "sequence_number": self._numbered})

    def finish(self) -> None:
        """The upstream body ended: it must have ended with a terminal event."""
        if self._pending.strip() or not self.done:
            raise MalformedStream("stream ended before its terminal event")

    def _check(self, event: bytes) -> bool:
        if self.done:
            raise MalformedStream("data after the terminal event")
        name = b""
        payload = b""
        for line in event.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip()
            elif line.startswith(b"data:"):
                payload = line[5:].strip()
                if not (payload.startswith(b"{") and payload.endswith(b"}")):
                    raise MalformedStream("data is not a JSON object")
            elif line and not line.startswith((b":", b"id:", b"retry:")):
                raise MalformedStream("not an SSE line")
        if name in TERMINAL_EVENTS:
            self.done = True
            self._failed = name in _FAILURES
            self._terminal(payload)
        if payload:
            self._numbered += 1
        return True

    def _terminal(self, payload: bytes) -> None:
        try:
            event: Any = json.loads(payload)
        except ValueError:
            raise MalformedStream("data is not JSON") from None
        response = event.get("response") if isinstance(event, dict) else None
        if not isinstance(response, dict):
            return  # an ``error`` event: no usage
        self.usage = chat_usage(response.get("usage"))
        if isinstance(response.get("id"), str):
            self._sizes.remember(response["id"], self.usage)
