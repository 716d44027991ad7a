"""The relay's telemetry under ``make run``: pointed at the emulator's Application Insights ingestion endpoint.

As App Service would set ``APPLICATIONINSIGHTS_CONNECTION_STRING`` for an app with Application Insights,
the dev host sets one naming the ingestion stand-in (devhost/emulator/ingestion.py), so that the real
Azure Monitor exporter runs unchanged: over HTTPS (azure-core's bearer-token policy refuses plain HTTP),
trusting the emulator's CA through ``REQUESTS_CA_BUNDLE`` (the exporter's transport is azure-core's
``RequestsTransport``, and ``requests`` reads that variable), and with its own calls to fixed Azure hosts
turned off: statsbeat (``APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL``), its SDK stats
(``APPLICATIONINSIGHTS_SDKSTATS_DISABLED``) and its remote configuration
(``APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED``), the variables the exporter reads
(azure/monitor/opentelemetry/exporter/_constants.py).

In Azure the Functions host starts a trace for each invocation and the Python worker attaches its
context before it calls the function (azure_functions_runtime/otel.py, ``configure_opentelemetry``, with
``PYTHON_ENABLE_OPENTELEMETRY``); :class:`InvocationTraceContext` does that for the in-process relay.

``DEVHOST_TELEMETRY=off`` leaves telemetry off; a connection string already set is kept.
``POST /_dev/telemetry/flush`` (loopback callers only) sends what the in-process relay's exporters
hold, so that a test reads what ingestion received without sleeping.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, MutableMapping
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from devhost.appservice import peer_address
from devhost.checks import is_loopback_host

# Application Insights' instrumentation key for the local resource: a name, not a secret.
LOCAL_INSTRUMENTATION_KEY = "7e57e000-0000-4000-8000-0000000a1e01"
_CALLS_TO_AZURE_OFF = (
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL",
    "APPLICATIONINSIGHTS_SDKSTATS_DISABLED",
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED",
)


def point_at_local_ingestion(env: MutableMapping[str, str], ingestion_port: int, ca_file: Path) -> bool:
    """Set the relay's telemetry environment for the emulator's ingestion endpoint; False when left off."""
    if env.get("DEVHOST_TELEMETRY", "on").strip().lower() == "off" or "APPLICATIONINSIGHTS_CONNECTION_STRING" in env:
        return False
    env["APPLICATIONINSIGHTS_CONNECTION_STRING"] = (
        f"InstrumentationKey={LOCAL_INSTRUMENTATION_KEY};IngestionEndpoint=https://127.0.0.1:{ingestion_port}/"
    )
    env["REQUESTS_CA_BUNDLE"] = str(ca_file)
    # As main.bicep sets it: with DEVHOST_RUNTIME=worker, the worker attaches each invocation's trace context.
    env["PYTHON_ENABLE_OPENTELEMETRY"] = "true"
    for name in _CALLS_TO_AZURE_OFF:
        env[name] = "true"
    return True


def flush_route(flush: Callable[[], bool]) -> Route:
    """``POST /_dev/telemetry/flush``: 204 once the exporters sent what they held, 504 when they could not."""

    async def flush_telemetry(request: Request) -> Response:
        host, _ = peer_address(request.scope)
        if not is_loopback_host(host):
            return JSONResponse({"error": "loopback callers only"}, status_code=403)
        return Response(status_code=204 if await asyncio.to_thread(flush) else 504)

    return Route("/_dev/telemetry/flush", flush_telemetry, methods=["POST"])


class InvocationTraceContext:
    """Each ``/api/`` request runs in a trace context of its own, as an invocation does in Azure."""

    def __init__(self, app: ASGIApp) -> None:
        from opentelemetry import context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._app = app
        self._context = context
        self._propagator = TraceContextTextMapPropagator()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self._app(scope, receive, send)
            return
        traceparent = f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"
        token = self._context.attach(self._propagator.extract({"traceparent": traceparent}))
        try:
            await self._app(scope, receive, send)
        finally:
            self._context.detach(token)
