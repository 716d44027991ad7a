"""uvicorn's HTTP/1.1 protocol with the request-header timeout of the Functions host's web server.

Kestrel gives a client ``RequestHeadersTimeout`` (30 s by default,
https://learn.microsoft.com/aspnet/core/fundamentals/servers/kestrel/options)
to send a request's headers, then answers 408 and closes the connection; uvicorn
has no such bound, so a client trickling header bytes could hold a connection
for ever. This runs before any ASGI app sees the request, hence a protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from devhost.request_limits import Limits

DEFAULT_HEADER_TIMEOUT_S = 30.0

_REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


def with_header_timeout(timeout_s: float) -> type[HttpToolsProtocol]:
    """An uvicorn ``http`` protocol class that closes a connection whose request headers take longer than ``timeout_s``."""

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(timeout_s, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.write(_REQUEST_TIMEOUT)
                self.transport.close()

    return HeaderTimeoutProtocol


def limits_from_env(env: Mapping[str, str]) -> tuple[Limits, float]:
    """Kestrel's defaults, or the ``DEVHOST_*`` overrides tests use to make timeouts short: (limits, header timeout)."""
    limits = Limits(
        body_grace_s=float(env.get("DEVHOST_BODY_GRACE_S") or Limits.body_grace_s),
        min_body_bytes_per_s=float(env.get("DEVHOST_MIN_BODY_RATE") or Limits.min_body_bytes_per_s),
    )
    return limits, float(env.get("DEVHOST_HEADER_TIMEOUT_S") or DEFAULT_HEADER_TIMEOUT_S)


def server_config(app: ASGIApp, port: int, header_timeout_s: float) -> uvicorn.Config:
    """The local host's server on 127.0.0.1: App Service's front end trusts no client-sent address, so neither does it."""
    return uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=with_header_timeout(header_timeout_s),
        log_level="warning",
        access_log=False,
        lifespan="on",
        # Off: uvicorn would otherwise believe a client-sent X-Forwarded-For about the peer.
        proxy_headers=False,
    )
