"""Minimal HS256 JWTs for the local host's dev tokens and emulated managed-identity tokens.

Real Entra tokens are RS256-signed by Microsoft; locally only the issuer and
the verifier (both in this repository) need to agree, so an HMAC key suffices.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any


class InvalidToken(ValueError):
    """The token is malformed, wrongly signed, expired or for another audience."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(data: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except (ValueError, TypeError) as exc:
        raise InvalidToken("token is not base64url") from exc


def encode(claims: Mapping[str, Any], key: bytes, key_id: str | None = None) -> str:
    """A signed token; ``key_id`` goes into the header as ``kid``, naming the key without revealing it."""
    fields = {"alg": "HS256", "typ": "JWT", **({"kid": key_id} if key_id else {})}
    header = _b64encode(json.dumps(fields, separators=(",", ":")).encode())
    payload = _b64encode(json.dumps(dict(claims), separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = _b64encode(hmac.new(key, signing_input, hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


def unverified_header(token: str) -> dict[str, Any]:
    """The token's header, not verified (to name the key it claims to be signed with); {} when there is none."""
    try:
        header = json.loads(_b64decode(token.split(".", 1)[0]))
    except (InvalidToken, ValueError):
        return {}
    return header if isinstance(header, dict) else {}


def decode(token: str, key: bytes, *, audience: str | None = None, now: float | None = None) -> dict[str, Any]:
    """Verify signature, ``exp``/``nbf`` and (when given) ``aud``; return the claims."""
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("token must have three parts")
    header_b64, payload_b64, signature_b64 = parts
    expected = hmac.new(key, f"{header_b64}.{payload_b64}".encode("ascii"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, _b64decode(signature_b64)):
        raise InvalidToken("bad signature")
    try:
        header = json.loads(_b64decode(header_b64))
        claims = json.loads(_b64decode(payload_b64))
    except ValueError as exc:
        raise InvalidToken("token is not JSON") from exc
    if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(claims, dict):
        raise InvalidToken("unexpected token header or payload")
    current = time.time() if now is None else now
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or exp <= current:
        raise InvalidToken("token expired")
    nbf = claims.get("nbf")
    if isinstance(nbf, (int, float)) and nbf > current + 60:
        raise InvalidToken("token not yet valid")
    if audience is not None and claims.get("aud") != audience:
        raise InvalidToken("token is for another audience")
    return claims
