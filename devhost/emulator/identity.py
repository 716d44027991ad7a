"""Emulated Microsoft Entra tokens and the App Service managed identity endpoint.

Protocol (api-version 2019-08-01), as documented in "Managed identities for App
Service and Azure Functions" (learn.microsoft.com/azure/app-service/overview-managed-identity,
"REST endpoint reference") and as azure-identity's ``AppServiceCredential`` calls it
(azure/identity/_credentials/app_service.py): ``GET $IDENTITY_ENDPOINT?api-version=2019-08-01
&resource=R[&client_id=ID]`` with header ``X-IDENTITY-HEADER: $IDENTITY_HEADER``; 200 body
``{"access_token", "expires_on" (epoch seconds, string), "resource", "token_type", "client_id"}``
(sample in Azure/azure-sdk-for-python#11346). A missing header is a 400 and a wrong one a 401
(Azure/azure-sdk-for-js#11595); App Service's error body is ``{"statusCode", "message"}``.

Tokens are HS256 JWTs (devhost.jwt) signed with a key made per process, carrying
the claims of an Entra app-only token for a managed identity: aud = the resource
(``/.default`` and a trailing ``/`` removed, as Entra reports it), iss, tid, oid,
appid/azp = client id, idtyp = app, iat/nbf/exp.
"""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from devhost import jwt
from devhost.emulator.state import get_state
from shared.values import is_guid

TENANT_ID = "7e57e000-0000-4000-8000-00000000a001"
DEFAULT_CLIENT_ID = "7e57e000-0000-4000-8000-00000000c001"
API_VERSION = "2019-08-01"


def audience_for(resource: str) -> str:
    """Entra's ``aud`` for a resource or scope: ``https://x/.default`` and ``https://x/`` both give ``https://x``."""
    return resource.removesuffix("/.default").rstrip("/")


class TokenIssuer:
    def __init__(self, lifetime_s: int) -> None:
        self.lifetime_s = lifetime_s
        self._key = secrets.token_bytes(32)

    def issue(self, resource: str, client_id: str, *, now: float | None = None) -> tuple[str, int]:
        issued = int(time.time() if now is None else now)
        expires = issued + self.lifetime_s
        claims = {
            "aud": audience_for(resource),
            "iss": f"https://sts.windows.net/{TENANT_ID}/",
            "iat": issued,
            "nbf": issued,
            "exp": expires,
            "tid": TENANT_ID,
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"managed-identity:{client_id}")),
            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, f"managed-identity:{client_id}")),
            "appid": client_id,
            "azp": client_id,
            "idtyp": "app",
            "ver": "1.0",
        }
        return jwt.encode(claims, self._key), expires

    def verify(self, token: str, audience: str) -> dict[str, Any]:
        """Claims of a valid token for ``audience``; raises :class:`devhost.jwt.InvalidToken`."""
        return jwt.decode(token, self._key, audience=audience)


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
