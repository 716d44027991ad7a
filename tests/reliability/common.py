"""Helpers shared by the reliability tests: clients, emulator records by request id, health checks."""

from __future__ import annotations

import dataclasses
import json
import socket
import time
import urllib.request
import uuid
from typing import Any

import openai

from tests.support import rawhttp
from tests.support.chat import user
from tests.support.faultproxy import FaultProxy
from tests.support.stack import Stack

RELAY_TIMEOUT_S = 1.5  # RELAY_UPSTREAM_TIMEOUT_S of the fault stacks


@dataclasses.dataclass
class Proxied:
    """A local host whose relay reaches Azure OpenAI through a :class:`FaultProxy`."""

    stack: Stack
    proxy: FaultProxy


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def client(stack: Stack, request_id: str | None = None, token: str | None = None, **kwargs: Any) -> openai.OpenAI:
    headers = {"x-request-id": request_id} if request_id else None
    return openai.OpenAI(
        base_url=f"{stack.api}/v1", api_key=token or stack.token(), max_retries=0, timeout=20, default_headers=headers, **kwargs
    )


def open_chat_stream(
    stack: Stack, prompt: str, request_id: str, rcvbuf: int | None = None, token: str | None = None
) -> tuple[socket.socket, rawhttp.ResponseReader]:
    """A streamed chat request sent on a bare socket (by the default dev user, or ``token``'s), the response not yet read.

    The caller can read slowly or hang up.
    """
    sock = rawhttp.connect(stack.port, timeout=20, rcvbuf=rcvbuf)
    body = json.dumps({"model": "gpt-4o-mini", "messages": user(prompt), "stream": True}).encode()
    headers = [("Authorization", f"Bearer {token or stack.token()}"), ("Content-Type", "application/json"), ("x-request-id", request_id)]
    rawhttp.send_request(sock, "POST", "/api/v1/chat/completions", headers, body)
    return sock, rawhttp.ResponseReader(sock, read_size=1024)


def records_for(stack: Stack, client_request_id: str) -> list[dict[str, Any]]:
    """What Azure OpenAI received for the request sent with ``x-request-id: client_request_id``.

    The relay sends its own request ID upstream; its log line maps the caller's ID to it.
    """
    request_id = stack.request_log(client_request_id)["request_id"]
    return [r for r in stack.requests() if r["headers"].get("x-ms-client-request-id") == request_id]


def wait_until_upstream_has(stack: Stack, marker: str, timeout: float = 10.0) -> None:
    """Wait until Azure OpenAI has received a request whose body contains ``marker``."""
    deadline = time.monotonic() + timeout
    while not any(marker in json.dumps(r["body"]) for r in stack.requests()):
        assert time.monotonic() < deadline, f"no request with {marker!r} reached Azure OpenAI"
        time.sleep(0.05)


def wait_for_outcomes(stack: Stack, request_id: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The emulator's records for ``request_id`` once ``count`` of them are finished."""
    deadline = time.monotonic() + timeout
    while True:
        records = records_for(stack, request_id)
        if len(records) >= count and all(r["outcome"] is not None for r in records):
            return records
        if time.monotonic() > deadline:
            return records
        time.sleep(0.02)


def probe(stack: Stack, collect: bool = False) -> dict[str, int]:
    with urllib.request.urlopen(f"{stack.base_url}/_probe/stats{'?gc=1' if collect else ''}", timeout=5) as resp:
        return dict(json.load(resp))


def assert_healthy(stack: Stack) -> None:
    """Liveness answers and the next ordinary request, streamed and not, succeeds."""
    with urllib.request.urlopen(f"{stack.api}/healthz", timeout=5) as resp:
        assert resp.status == 200
    sdk = client(stack)
    answer = sdk.chat.completions.create(model="gpt-4o-mini", messages=user("still there?"))
    assert answer.choices[0].message.content
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in sdk.chat.completions.create(model="gpt-4o-mini", messages=user("still there?"), stream=True)
        if c.choices
    )
    assert streamed == answer.choices[0].message.content


def sse_events(raw: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) for each SSE event in ``raw``."""
    events = []
    for block in raw.split(b"\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.decode().split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        events.append((name, "\n".join(data)))
    return events
