"""Azure Key Vault secrets (data plane), served over HTTPS.

REST shapes from "Get Secret", "Get Secret Versions" (learn.microsoft.com/rest/api/keyvault/secrets)
and "Azure Key Vault authentication" / "Key Vault error codes": a request without a valid bearer
token gets 401 with ``WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/{tenant}",
resource="https://vault.azure.net"`` — the challenge azure-keyvault-secrets' ``ChallengeAuthPolicy``
parses (azure/keyvault/secrets/_shared/http_challenge.py: ``authorization``/``authorization_uri`` and
``resource``/``scope``); errors are ``{"error": {"code", "message"}}`` (``Unauthorized``,
``SecretNotFound``, ``BadParameter``). Secret versions are 32 hex characters.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from devhost.emulator.state import EmulatorState, get_state
from devhost.emulator.tokens import TENANT_ID, bearer_token
from devhost.emulator.vault import SecretVersion
from devhost.jwt import InvalidToken

VAULT_AUDIENCE = "https://vault.azure.net"
CHALLENGE = f'Bearer authorization="https://login.microsoftonline.com/{TENANT_ID}", resource="{VAULT_AUDIENCE}"'


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _refusal(request: Request, state: EmulatorState) -> JSONResponse | None:
    """The response that refuses this request, or None if it may proceed."""
    if not request.query_params.get("api-version"):
        return _error(400, "BadParameter", "The api-version query parameter is missing.")
    token = bearer_token(request.headers)
    if not token:
        message = "AKV10000: Request is missing a Bearer or PoP token."
        return _error(401, "Unauthorized", message, {"WWW-Authenticate": CHALLENGE})
    try:
        state.issuer.verify(token, VAULT_AUDIENCE)
    except InvalidToken as exc:
        message = f"AKV10022: Invalid token ({exc}). Expected audience {VAULT_AUDIENCE}."
        return _error(401, "Unauthorized", message, {"WWW-Authenticate": CHALLENGE})
    return None


def _not_found(name: str) -> JSONResponse:
    return _error(404, "SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault.")


def _attributes(secret: SecretVersion) -> dict[str, Any]:
    return {
        "enabled": True,
        "created": secret.created,
        "updated": secret.created,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": 90,
    }


def _secret_id(request: Request, name: str, secret: SecretVersion) -> str:
    return f"{str(request.base_url).rstrip('/')}/secrets/{name}/{secret.version}"


async def get_secret(request: Request) -> Response:
    state = get_state(request)
    state.stats.keyvault_requests += 1
    if refusal := _refusal(request, state):
        return refusal
    name = request.path_params["name"]
    secret = state.vault.get(name, request.path_params.get("version"))
    if secret is None:
        return _not_found(name)
    state.stats.keyvault_secret_reads += 1
    return JSONResponse({"value": secret.value, "id": _secret_id(request, name, secret), "attributes": _attributes(secret), "tags": {}})


async def list_versions(request: Request) -> Response:
    state = get_state(request)
    state.stats.keyvault_requests += 1
    if refusal := _refusal(request, state):
        return refusal
    name = request.path_params["name"]
    versions = state.vault.secrets.get(name, [])
    items = [{"id": _secret_id(request, name, v), "attributes": _attributes(v), "tags": {}} for v in versions]
    return JSONResponse({"value": items, "nextLink": None})
