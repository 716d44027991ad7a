"""The local host: App Service front end + Easy Auth + CORS in front of the registered functions.

The relay routes are taken from ``function_app.app.get_functions()``: the very
handlers the Functions host indexes, at the routes and methods it would use.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import azure.functions as func
from azure.functions.decorators.http import HttpTrigger
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from devhost.appservice import AppServiceFrontEnd
from devhost.appservice_auth import DevIdentityProvider, EasyAuth, auth_routes
from devhost.request_limits import KESTREL_DEFAULTS, Limits, RequestLimits

SPA_DIR = Path(__file__).parent / "spa"
ROUTE_PREFIX = "/api/"
_CATCH_ALL = re.compile(r"\{\*(\w+)\}")
_ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


def function_routes(function_app: func.FunctionApp) -> list[Route]:
    """One route per HTTP function, most literal segments first, as the Functions host ranks them."""
    routes = []
    for function in function_app.get_functions():
        trigger = function.get_trigger()
        assert isinstance(trigger, HttpTrigger), f"{function.get_function_name()} is not an HTTP function"
        methods = [getattr(method, "value", str(method)) for method in trigger.methods or ("GET", "POST")]
        route = trigger.route or function.get_function_name() or ""
        routes.append(Route(ROUTE_PREFIX + _CATCH_ALL.sub(r"{\1:path}", route), function.get_user_function(), methods=methods))
    return sorted(routes, key=lambda r: -sum(not part.startswith("{") for part in r.path.strip("/").split("/")))


async def _no_function(request: Request) -> Response:
    """The Functions host's answer for an /api path no function serves."""
    return Response(status_code=404)


def create_host_app(
    function_app: func.FunctionApp,
    provider: DevIdentityProvider,
    cors_origins: Sequence[str] = (),
    spa_dir: Path | None = SPA_DIR,
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
    limits: Limits = KESTREL_DEFAULTS,
    dev_routes: Sequence[BaseRoute] = (),
) -> ASGIApp:
    return front_end([*function_routes(function_app), *dev_routes], provider, cors_origins, spa_dir, on_shutdown, limits)


def front_end(
    api_routes: Sequence[BaseRoute],
    provider: DevIdentityProvider,
    cors_origins: Sequence[str] = (),
    spa_dir: Path | None = SPA_DIR,
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
    limits: Limits = KESTREL_DEFAULTS,
) -> ASGIApp:
    """The platform's limits, CORS, the App Service front end, Easy Auth and the sample SPA in front of ``api_routes``."""
    routes: list[BaseRoute] = [*api_routes, Route(ROUTE_PREFIX + "{path:path}", _no_function, methods=_ANY_METHOD), *auth_routes(provider)]
    if spa_dir is not None and spa_dir.is_dir():
        routes.append(Mount("/", StaticFiles(directory=spa_dir, html=True)))

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        for close in on_shutdown:
            await close()

    app: ASGIApp = Starlette(routes=routes, lifespan=lifespan)
    app = EasyAuth(app, provider, cors_origins)
    app = AppServiceFrontEnd(app)
    app = CORSMiddleware(
        app,
        allow_origins=list(cors_origins),
        allow_methods=["GET", "POST", "OPTIONS"],
        # Any request header, as App Service's platform CORS allows: the openai SDK sends X-Stainless-* headers.
        # No expose_headers: the platform cannot set them, so the relay sends its own.
        allow_headers=["*"],
        max_age=600,
    )
    return RequestLimits(app, limits)
