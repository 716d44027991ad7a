"""Control and observability endpoints under ``/_emulator`` (plain HTTP, for tests and the dev host)."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from devhost.emulator.state import get_state
from devhost.emulator.vault import is_valid_name


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def list_requests(request: Request) -> Response:
    return JSONResponse(get_state(request).records.as_list())


async def clear_requests(request: Request) -> Response:
    get_state(request).records.clear()
    return Response(status_code=204)


async def stats(request: Request) -> Response:
    return JSONResponse(get_state(request).stats.as_dict())


async def reset(request: Request) -> Response:
    get_state(request).reset()
    return Response(status_code=204)


async def configure(request: Request) -> Response:
    """``{"api_key": "..."}``: the Azure OpenAI key accepted from now on (key rotation)."""
    try:
        body = json.loads(await request.body())
    except ValueError:
        body = None
    api_key = body.get("api_key") if isinstance(body, dict) else None
    if not isinstance(api_key, str) or not api_key:
        return JSONResponse({"error": 'expected {"api_key": "<non-empty string>"}'}, status_code=400)
    get_state(request).api_key = api_key
    return Response(status_code=204)


async def set_secret(request: Request) -> Response:
    """``PUT /_emulator/keyvault/secrets/{name}`` ``{"value": "..."}``: a new version (rotation)."""
    name = request.path_params["name"]
    try:
        body = json.loads(await request.body())
    except ValueError:
        body = None
    value = body.get("value") if isinstance(body, dict) else None
    if not is_valid_name(name) or not isinstance(value, str):
        return JSONResponse({"error": 'expected a valid secret name and {"value": "<string>"}'}, status_code=400)
    version = get_state(request).vault.set(name, value)
    return JSONResponse({"name": name, "version": version.version}, status_code=201)
