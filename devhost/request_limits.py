"""Limits the platform in front of the app enforces on every request, and the local host's own Host rule.

In Azure the Functions host's web server (Kestrel) bounds what reaches the
worker; locally uvicorn does not, so this middleware does, with Kestrel's
documented defaults (https://learn.microsoft.com/aspnet/core/fundamentals/servers/kestrel/options):

- request headers at most 32 KiB in total (``MaxRequestHeadersTotalSize``): 431;
- a request body at most 30,000,000 bytes (``MaxRequestBodySize``): 413;
- a request body arriving at no less than 240 bytes/s after a 5 s grace period
  (``MinRequestBodyDataRate``): 408, and the application sees the caller gone.

The header read timeout (``RequestHeadersTimeout``) acts before any ASGI app
runs: :mod:`devhost.server`.

The local host answers only to loopback host names (``127.0.0.1``, ``localhost``,
``[::1]``, any port): a web page that rebinds its own name to 127.0.0.1 must not
reach the dev-token endpoint or the relay with the developer's credentials.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devhost.checks import is_loopback_host


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 32 * 1024
    max_body_bytes: int = 30_000_000
    min_body_bytes_per_s: float = 240.0
    body_grace_s: float = 5.0


KESTREL_DEFAULTS = Limits()


def host_name(host_header: str) -> str:
    """``127.0.0.1:7071`` -> ``127.0.0.1``, ``[::1]:7071`` -> ``[::1]``."""
    if host_header.startswith("["):
        return host_header[: host_header.find("]") + 1] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class RequestLimits:
    def __init__(self, app: ASGIApp, limits: Limits = KESTREL_DEFAULTS) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        hosts = [value.decode("latin-1") for name, value in headers if name == b"host"]
        if len(hosts) != 1 or not is_loopback_host(host_name(hosts[0]).strip("[]")):
            refusal = PlainTextResponse("The local host answers to 127.0.0.1, localhost and [::1] only.", status_code=403)
            await refusal(scope, receive, send)
            return
        if sum(len(name) + len(value) + 4 for name, value in headers) > self.limits.max_header_bytes:
            await PlainTextResponse("Request Header Fields Too Large", status_code=431)(scope, receive, send)
            return
        declared = next((value for name, value in headers if name == b"content-length"), b"")
        if declared.isdigit() and int(declared) > self.limits.max_body_bytes:
            await PlainTextResponse("Request Entity Too Large", status_code=413)(scope, receive, send)
            return
        await _BodyGuard(self.app, self.limits, scope, receive, send).run()


class _BodyGuard:
    """Passes the body through while it arrives fast enough and stays small enough; else answers for the app."""

    def __init__(self, app: ASGIApp, limits: Limits, scope: Scope, receive: Receive, send: Send) -> None:
        self.app, self.limits, self.scope = app, limits, scope
        self._receive, self._send = receive, send
        self._started = time.monotonic()
        self._received = 0
        self._body_done = False
        self._answered = False
        self._app_answered = False

    async def run(self) -> None:
        await self.app(self.scope, self.receive, self.send)

    async def receive(self) -> Message:
        if self._answered:
            return {"type": "http.disconnect"}
        if self._body_done:
            return await self._receive()
        allowed = self._started + self.limits.body_grace_s + (self._received + 1) / self.limits.min_body_bytes_per_s
        try:
            async with asyncio.timeout(max(0.0, allowed - time.monotonic())):
                message = await self._receive()
        except TimeoutError:
            await self._answer(408, "Request Timeout: the request body arrived too slowly.")
            return {"type": "http.disconnect"}
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            self._body_done = not message.get("more_body", False)
            if self._received > self.limits.max_body_bytes:
                await self._answer(413, "Request Entity Too Large")
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if not self._answered:
            self._app_answered = True
            await self._send(message)

    async def _answer(self, status: int, text: str) -> None:
        if self._app_answered:
            return
        self._answered = True
        await PlainTextResponse(text, status_code=status, headers={"Connection": "close"})(self.scope, self._receive, self._send)
