"""Emulated Microsoft Entra tokens: HS256 JWTs (devhost.jwt) signed with a key made per process.

They carry the claims of an Entra app-only token for a managed identity: aud =
the resource (``/.default`` and a trailing ``/`` removed, as Entra reports it),
iss, tid, oid, appid/azp = client id, idtyp = app, iat/nbf/exp. The managed
identity endpoint (:mod:`devhost.emulator.identity`) issues them; the Azure
OpenAI and Key Vault emulators verify them.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Mapping
from typing import Any

from devhost import jwt

TENANT_ID = "7e57e000-0000-4000-8000-00000000a001"
DEFAULT_CLIENT_ID = "7e57e000-0000-4000-8000-00000000c001"


def audience_for(resource: str) -> str:
    """Entra's ``aud`` for a resource or scope: ``https://x/.default`` and ``https://x/`` both give ``https://x``."""
    return resource.removesuffix("/.default").rstrip("/")


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; empty when there is none."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


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
