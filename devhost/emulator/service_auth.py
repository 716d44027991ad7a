"""The credentials an Azure AI data plane accepts, and the ``user_security_context`` it reads.

A key in ``api-key``, or a Microsoft Entra bearer token whose ``aud`` is the service's
audience: ``https://cognitiveservices.azure.com`` for an Azure OpenAI resource,
``https://ai.azure.com`` for a Foundry project endpoint. The security context's fields are
strings ("Use Azure OpenAI with Microsoft Defender for Cloud / user security context";
``AzureUserSecurityContext`` in the Foundry v1 API, learn.microsoft.com/java/api/
com.azure.ai.agents.models.azureusersecuritycontext); unknown fields are accepted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Mapping
from typing import Any

from devhost.emulator.aoai_wire import KEY_REJECTED_MESSAGE, azure_error
from devhost.emulator.state import EmulatorState
from devhost.emulator.tokens import bearer_token
from devhost.jwt import InvalidToken

USC_FIELDS = ("application_name", "end_user_id", "end_user_tenant_id", "source_ip")


def authenticate(
    headers: Mapping[str, str], state: EmulatorState, audience: str, bearer_rejected: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A redacted summary of the credentials and, when they are not accepted, Azure's 401 body."""
    key = headers.get("api-key")
    if key is not None:
        valid = secrets.compare_digest(key.encode(), state.api_key.encode())
        summary = {
            "scheme": "api-key",
            "key_sha256": hashlib.sha256(key.encode()).hexdigest()[:12],
            "valid": valid,
            "authorization_header": "authorization" in headers,
        }
        return summary, None if valid else azure_error("401", KEY_REJECTED_MESSAGE)
    token = bearer_token(headers)
    if not token:
        return {"scheme": "none"}, azure_error("401", KEY_REJECTED_MESSAGE)
    try:
        claims, valid = state.issuer.verify(token, audience), True
    except InvalidToken:
        claims, valid = _unverified_claims(token), False
    summary = {
        "scheme": "bearer",
        **{k: claims.get(k) for k in ("aud", "oid", "appid", "exp")},
        "valid": valid,
    }
    return summary, None if valid else {"statusCode": 401, "message": bearer_rejected}


def security_context_problem(context: Any) -> tuple[str, str] | None:
    """``(message, param)`` of the 400 for a malformed ``user_security_context``, or None when it is well formed."""
    if not isinstance(context, dict):
        return "'user_security_context' must be an object", "user_security_context"
    for name in USC_FIELDS:
        if name in context and not isinstance(context[name], str):
            param = f"user_security_context.{name}"
            return f"'{param}' must be a string", param
    return None


def _unverified_claims(token: str) -> dict[str, Any]:
    """Claims for the record only (never trusted): empty if the token does not parse."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}
