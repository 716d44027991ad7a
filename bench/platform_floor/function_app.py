"""The platform floor: the least a function app on the relay's programming model can do, served by the same worker.

The same model as the relay's ``function_app.py`` (``azure.functions.FunctionApp``, anonymous
routes, HTTP streaming through ``azurefunctions.extensions.http.fastapi``), with none of the
relay's work: no checks, no parsing, no policy, no log line. One aiohttp session forwards the
request body's bytes to Azure OpenAI's chat completions (a managed identity token fetched once)
and streams an event stream's bytes back as they arrive (a whole answer, with its length, whole). Run behind the Functions host stand-in by
``python -m bench.platform_host``; what the relay costs above it, through the same worker and
host, is the relay's own (docs/performance.md).

Settings (as the relay's): ``AZURE_OPENAI_ENDPOINT``, ``IDENTITY_ENDPOINT``, ``IDENTITY_HEADER``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import aiohttp
import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, Response, StreamingResponse

COGNITIVE_SERVICES = "https://cognitiveservices.azure.com"
CHAT_PATH = "/openai/v1/chat/completions"
# As the relay's pool is sized by the capacity phase: never the wall.
CONNECTIONS = int(os.environ.get("RELAY_UPSTREAM_CONNECTIONS", "1000"))

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
_session: aiohttp.ClientSession | None = None
_headers: dict[str, str] = {}


async def _upstream() -> aiohttp.ClientSession:
    """The one session, and the token, on the first request (the worker's event loop runs by then)."""
    global _session
    if _session is None:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONNECTIONS, keepalive_timeout=60),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120),
        )
        token_url = f"{os.environ['IDENTITY_ENDPOINT']}?api-version=2019-08-01&resource={COGNITIVE_SERVICES}"
        async with session.get(token_url, headers={"X-IDENTITY-HEADER": os.environ["IDENTITY_HEADER"]}) as answer:
            answer.raise_for_status()
            token = (await answer.json())["access_token"]
        _headers.update({"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        _session = session
    return _session


@app.route(route="v1/chat/completions", methods=[func.HttpMethod.POST])
async def chat_completions(req: Request) -> Response:
    session = await _upstream()
    url = os.environ["AZURE_OPENAI_ENDPOINT"].rstrip("/") + CHAT_PATH
    upstream = await session.post(url, data=await req.body(), headers=_headers)
    media_type = upstream.headers.get("content-type")
    if "content-length" in upstream.headers:  # a whole answer: passed back whole, as the relay does
        async with upstream:
            return Response(await upstream.read(), status_code=upstream.status, media_type=media_type)

    async def body() -> AsyncIterator[bytes]:
        try:
            async for data in upstream.content.iter_any():
                yield data
        finally:
            upstream.release()

    return StreamingResponse(body(), status_code=upstream.status, media_type=media_type)


@app.route(route="healthz", methods=[func.HttpMethod.GET])
async def healthz(req: Request) -> Response:
    return Response(status_code=200)
