"""Application Insights' ingestion endpoint (the "Breeze" ``/v2.1/track`` API), with local authentication off.

The wire format is the Azure Monitor exporter's (azure-monitor-opentelemetry-exporter,
``_generated/exporter``: ``POST {IngestionEndpoint}/v2.1/track``, a JSON array of envelopes,
gzip'd when ``Content-Encoding: gzip``; the answer ``{"itemsReceived", "itemsAccepted", "errors":
[{"index", "statusCode", "message"}]}``). With local authentication off, Azure accepts only a
Microsoft Entra bearer token for Azure Monitor ("Microsoft Entra authentication for Application
Insights", https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication): a request
without one, or with a token for another audience, is refused with 401 and nothing is kept.

What it accepted is listed at ``/_emulator/telemetry`` (JSON) and charted per user at
``/_emulator/telemetry/page`` (devhost/emulator/telemetry_page.py).
"""

from __future__ import annotations

import gzip
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from devhost.emulator.state import get_state
from devhost.emulator.tokens import bearer_token
from devhost.jwt import InvalidToken

MONITOR_AUDIENCE = "https://monitor.azure.com"


def _answer(received: int, status: int, message: str | None = None) -> JSONResponse:
    errors = [] if message is None else [{"index": index, "statusCode": status, "message": message} for index in range(received)]
    accepted = received if message is None else 0
    return JSONResponse({"itemsReceived": received, "itemsAccepted": accepted, "errors": errors}, status_code=status)


def _envelopes(body: bytes, encoding: str) -> list[dict[str, Any]] | None:
    try:
        raw = gzip.decompress(body) if encoding.lower() == "gzip" else body
        text = raw.decode()
        parsed = json.loads(text) if text.lstrip().startswith("[") else [json.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, EOFError, UnicodeDecodeError, ValueError):
        return None
    return parsed if isinstance(parsed, list) and all(isinstance(item, dict) for item in parsed) else None


async def track(request: Request) -> Response:
    state = get_state(request)
    envelopes = _envelopes(await request.body(), request.headers.get("content-encoding", ""))
    if envelopes is None:
        return _answer(0, 400, "The request body is not a JSON array of telemetry items.")
    token = bearer_token(request.headers)
    if not token:
        return _answer(len(envelopes), 401, "Authentication is required: local authentication is disabled on this resource.")
    try:
        state.issuer.verify(token, MONITOR_AUDIENCE)
    except InvalidToken as exc:
        return _answer(len(envelopes), 401, f"The token is not valid for {MONITOR_AUDIENCE} ({exc}).")
    state.telemetry.add(envelopes)
    return _answer(len(envelopes), 200)
