"""``DEVHOST_RUNTIME=worker``: the local host serves ``/api/*`` through the Functions host stand-in and the real worker.

The App Service front end, Easy Auth, CORS and the sample SPA stay in front, as with the in-process runtime;
only the relay's routes change hands. ``GET /_dev/functions-host`` (loopback callers only) shows the worker's
``HttpUri``, capabilities, functions and the ``RpcLog`` lines it sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from devhost.appservice import peer_address
from devhost.appservice_auth import DevIdentityProvider
from devhost.checks import is_loopback_host
from devhost.functions_host.host_config import function_timeout
from devhost.functions_host.http_proxy import FunctionsHttp
from devhost.functions_host.worker_channel import FunctionsHost
from devhost.host_app import front_end
from devhost.server import limits_from_env, server_config

APP_DIR = Path(__file__).resolve().parents[2]
STATUS_PATH = "/_dev/functions-host"


def status_route(host: FunctionsHost) -> Route:
    async def status(request: Request) -> Response:
        if not is_loopback_host(peer_address(request.scope)[0]):
            return JSONResponse({"error": "loopback callers only"}, status_code=403)
        return JSONResponse(host.status(), headers={"Cache-Control": "no-store"})

    return Route(STATUS_PATH, status, methods=["GET"])


async def serve_through_worker(
    env: Mapping[str, str],
    port: int,
    provider: DevIdentityProvider,
    cors_origins: Sequence[str],
    wrap: Callable[[ASGIApp], ASGIApp],
    app_dir: Path = APP_DIR,
) -> None:
    log = logging.getLogger("functions.host")
    host = FunctionsHost(app_dir, env, log, function_timeout(app_dir, env))
    http = FunctionsHttp(host, log)
    try:
        await host.start()
        limits, header_timeout_s = limits_from_env(env)
        app = wrap(front_end([Route("/api/{path:path}", http), status_route(host)], provider, cors_origins, limits=limits))
        config = server_config(app, port, header_timeout_s)
        print(f"relay: http://127.0.0.1:{port}/api through the Python worker {host.worker.http_uri or '(not running)'}", flush=True)
        await uvicorn.Server(config).serve()
    finally:
        await http.aclose()
        await host.stop()


def serve(
    env: Mapping[str, str], port: int, provider: DevIdentityProvider, cors_origins: Sequence[str], wrap: Callable[[ASGIApp], ASGIApp]
) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_through_worker(env, port, provider, cors_origins, wrap))
