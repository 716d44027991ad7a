"""The App Service managed identity endpoint.

Protocol (api-version 2019-08-01), as documented in "Managed identities for App
Service and Azure Functions" (learn.microsoft.com/azure/app-service/overview-managed-identity,
"REST endpoint reference") and as azure-identity's ``AppServiceCredential`` calls it
(azure/identity/_credentials/app_service.py): ``GET $IDENTITY_ENDPOINT?api-version=2019-08-01
&resource=R[&client_id=ID]`` with header ``X-IDENTITY-HEADER: $IDENTITY_HEADER``; 200 body
``{"access_token", "expires_on" (epoch seconds, string), "resource", "token_type", "client_id"}``
(sample in Azure/azure-sdk-for-python#11346). A missing header is a 400 and a wrong one a 401
(Azure/azure-sdk-for-js#11595); App Service's error body is ``{"statusCode", "message"}``.

The tokens themselves: :mod:`devhost.emulator.tokens`.
"""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import JSONResponse

from devhost.checks import is_guid
from devhost.emulator.state import get_state
from devhost.emulator.tokens import DEFAULT_CLIENT_ID

API_VERSION = "2019-08-01"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"statusCode": status, "message": message}, status_code=status)


async def msi_token(request: Request) -> JSONResponse:
    state = get_state(request)
    state.stats.token_requests += 1
    header = request.headers.get("x-identity-header")
    if header is None:
        return _error(400, "The X-IDENTITY-HEADER header is missing.")
    if not secrets.compare_digest(header.encode(), state.config.identity_header.encode()):
        return _error(401, "The X-IDENTITY-HEADER header is invalid.")
    if request.query_params.get("api-version") != API_VERSION:
        return _error(400, f"Unsupported api-version; use {API_VERSION}.")
    resource = request.query_params.get("resource", "")
    if not resource:
        return _error(400, "The resource parameter is required.")
    client_id = request.query_params.get("client_id") or DEFAULT_CLIENT_ID
    if not is_guid(client_id):
        return _error(400, "Unable to load the proper Managed Identity.")
    token, expires = state.issuer.issue(resource, client_id)
    return JSONResponse(
        {
            "access_token": token,
            "expires_on": str(expires),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client_id,
        }
    )
