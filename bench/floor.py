"""``python -m bench.floor``: the bare passthrough the relay's added cost is compared with.

A bare ASGI app (no framework, no checks, no auth) served by the local host's
uvicorn settings (``devhost.server.server_config``: httptools + uvloop, the same
protocol class) with one pooled aiohttp session. It forwards each request's body
bytes to the upstream's chat completions URL with a managed identity token
fetched once at start, and sends the upstream's status, content type and body
bytes back as they arrive. Whatever the relay costs above this floor is the
relay's own work: the framework, the checks, the request building, the log line.

``GET /healthz`` answers 200 without calling upstream (readiness only).
"""

from __future__ import annotations

import argparse
import contextlib
import os

import aiohttp
import uvicorn
from starlette.types import Receive, Scope, Send

from devhost.server import DEFAULT_HEADER_TIMEOUT_S, server_config
from shared.config import DEFAULT_UPSTREAM_CONNECTIONS

COGNITIVE_SERVICES = "https://cognitiveservices.azure.com"
CHAT_PATH = "/openai/v1/chat/completions"
HEALTH_PATH = "/healthz"
_HEALTHY_START = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]}
_HEALTHY_BODY = {"type": "http.response.body", "body": b""}
_PASSED_BACK = ("content-type", "content-length")


class Floor:
    """The ASGI app: one aiohttp session, one token, bytes in and bytes out (Starlette only for its type names)."""

    def __init__(self, upstream: str, identity_header: str, connections: int) -> None:
        self.upstream = upstream.rstrip("/")
        self.identity_header = identity_header
        self.connections = connections
        self.url = self.upstream + CHAT_PATH
        self.headers: dict[str, str] = {}
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.connections, keepalive_timeout=60),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120),
        )
        token_url = f"{self.upstream}/msi/token?api-version=2019-08-01&resource={COGNITIVE_SERVICES}"
        async with self.session.get(token_url, headers={"X-IDENTITY-HEADER": self.identity_header}) as response:
            response.raise_for_status()
            token = (await response.json())["access_token"]
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            if scope["method"] == "GET" and scope["path"] == HEALTH_PATH:
                await send(_HEALTHY_START)
                await send(_HEALTHY_BODY)
            else:
                await self._forward(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except (aiohttp.ClientError, OSError, KeyError) as exc:
                    await send({"type": "lifespan.startup.failed", "message": f"no token from {self.upstream}: {exc}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _forward(self, receive: Receive, send: Send) -> None:
        assert self.session is not None
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        async with self.session.post(self.url, data=body, headers=self.headers) as response:
            headers = [(name.encode(), response.headers[name].encode()) for name in _PASSED_BACK if name in response.headers]
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            async for data in response.content.iter_any():
                await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.floor", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the emulator's base URL, e.g. http://127.0.0.1:7072")
    parser.add_argument(
        "--connections",
        type=int,
        default=DEFAULT_UPSTREAM_CONNECTIONS,
        help=f"the aiohttp pool size (default {DEFAULT_UPSTREAM_CONNECTIONS}, as the relay's)",
    )
    parser.add_argument(
        "--identity-header", default=os.environ.get("IDENTITY_HEADER", ""), help="X-IDENTITY-HEADER (default: $IDENTITY_HEADER)"
    )
    args = parser.parse_args(argv)
    app = Floor(args.upstream, args.identity_header, args.connections)
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(server_config(app, args.port, DEFAULT_HEADER_TIMEOUT_S)).run()


if __name__ == "__main__":
    main()
