"""``/_emulator/telemetry`` and its page: what the ingestion stand-in accepted, as Azure Monitor would hold it.

The page charts, per end user (``oid``), the tokens and the refusals of the ``relay.request`` records,
as a workbook over ``AppTraces`` would (docs/telemetry.md); the JSON list is every envelope as received.
"""

from __future__ import annotations

import html
from collections import defaultdict
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from devhost.emulator.state import get_state

_REFUSALS = frozenset({"refused", "blocked", "over_budget"})


async def list_telemetry(request: Request) -> Response:
    return JSONResponse(get_state(request).telemetry.as_list())


async def clear_telemetry(request: Request) -> Response:
    get_state(request).telemetry.clear()
    return Response(status_code=204)


def per_user(envelopes: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Tokens, requests and refusals per ``oid`` from the request records among ``envelopes``."""
    users: dict[str, dict[str, int]] = defaultdict(lambda: {"tokens": 0, "requests": 0, "refusals": 0})
    for envelope in envelopes:
        data = envelope.get("data", {}).get("baseData", {})
        properties = data.get("properties", {})
        if data.get("message") != "relay.request" or "oid" not in properties:
            continue
        user = users[str(properties["oid"])]
        user["requests"] += 1
        user["tokens"] += int(properties.get("total_tokens", 0))
        user["refusals"] += properties.get("outcome") in _REFUSALS
    return dict(users)


async def telemetry_page(request: Request) -> Response:
    users = per_user(get_state(request).telemetry.as_list())
    most = max([1, *(max(user["tokens"], user["refusals"]) for user in users.values())])
    rows = "".join(
        f"<tr><td>{html.escape(oid)}</td><td>{user['requests']}</td>"
        f"<td><span class=bar style='width:{200 * user['tokens'] // most}px'></span>{user['tokens']}</td>"
        f"<td><span class='bar refusal' style='width:{200 * user['refusals'] // most}px'></span>{user['refusals']}</td></tr>"
        for oid, user in sorted(users.items(), key=lambda item: -item[1]["tokens"])
    )
    page = (
        "<!doctype html><meta charset=utf-8><title>Telemetry per user</title>"
        "<style>body{font-family:sans-serif}td{padding:2px 8px}.bar{display:inline-block;height:10px;background:#36c;margin-right:4px}"
        ".refusal{background:#c33}</style><h1>Tokens and refusals per user</h1>"
        "<p>From the <code>relay.request</code> records the ingestion stand-in accepted (<a href=/_emulator/telemetry>JSON</a>).</p>"
        f"<table><tr><th>oid</th><th>requests</th><th>tokens</th><th>refusals</th></tr>{rows}</table>"
    )
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})
