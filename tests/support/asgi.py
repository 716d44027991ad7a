"""Call a relay handler directly with a Starlette Request: no server, no dev host."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message


def make_request(
    method: str, path: str, headers: Mapping[str, str] | None = None, body: bytes = b"", client: str = "203.0.113.7"
) -> Request:
    """A request whose caller stays connected after sending ``body``, as with a real server."""
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()],
        "client": (client, 51234),
        "server": ("127.0.0.1", 7071),
        "scheme": "http",
        "http_version": "1.1",
    }
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # like a server: http.disconnect only comes when the caller leaves
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


async def call(
    handler: Callable[[Request], Awaitable[Response]], method: str, path: str, headers: Mapping[str, str] | None = None, body: bytes = b""
) -> tuple[int, Any, Mapping[str, str]]:
    response = await handler(make_request(method, path, headers, body))
    payload = json.loads(bytes(response.body)) if response.body else None
    return response.status_code, payload, response.headers


async def run_response(response: Response) -> tuple[int, bytes]:
    """Serve ``response`` to a caller that stays connected and reads everything; return the status and body."""
    scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "asgi": {"version": "3.0", "spec_version": "2.3"}}
    status, body = 0, b""

    async def receive() -> Message:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        nonlocal status, body
        if message["type"] == "http.response.start":
            status = message["status"]
        else:
            body += message.get("body", b"")

    await response(scope, receive, send)
    return status, body
