"""The App Service front end's header behaviour, as an ASGI middleware.

Like the real front end (see the wire reference, "App Service front end"):
client-sent ``X-MS-CLIENT-PRINCIPAL*``, ``X-MS-TOKEN-*``, ``client-ip`` and
``X-Client-IP`` are stripped; ``client-ip`` is set to the socket peer with its
port and the same address is appended to ``X-Forwarded-For``.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

_STRIPPED_PREFIXES = (b"x-ms-client-principal", b"x-ms-token-")
_STRIPPED = frozenset({b"client-ip", b"x-client-ip"})


def peer_address(scope: Scope) -> tuple[str, int]:
    client = scope.get("client") or ("0.0.0.0", 0)
    return str(client[0]), int(client[1])


def format_endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class AppServiceFrontEnd:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host, port = peer_address(scope)
        endpoint = format_endpoint(host, port).encode()
        headers: list[tuple[bytes, bytes]] = []
        forwarded: list[bytes] = []
        for name, value in scope["headers"]:
            lower = name.lower()
            if lower in _STRIPPED or lower.startswith(_STRIPPED_PREFIXES):
                continue
            if lower == b"x-forwarded-for":
                forwarded.append(value)
                continue
            headers.append((lower, value))
        forwarded.append(endpoint)
        headers.append((b"x-forwarded-for", b", ".join(forwarded)))
        headers.append((b"client-ip", endpoint))
        headers.append((b"x-client-ip", host.encode()))
        await self.app({**scope, "headers": headers}, receive, send)
