"""The caller, as App Service Authentication ("Easy Auth") describes it (docs/design.md, "Identity").

Only meaningful when Easy Auth is enabled: App Service strips client-sent
``X-MS-CLIENT-PRINCIPAL*`` headers and injects its own. Anything malformed or
inconsistent is a 401; a well-formed caller this instance does not accept is a
403. Error messages name what failed but never echo header content.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.config import AuthPolicy
from shared.errors import RelayError, forbidden, unauthenticated
from shared.header_checks import header_values, is_guid, same_guid

PRINCIPAL_HEADER = "x-ms-client-principal"
PRINCIPAL_ID_HEADER = "x-ms-client-principal-id"
PRINCIPAL_IDP_HEADER = "x-ms-client-principal-idp"
MAX_PRINCIPAL_HEADER_CHARS = 16 * 1024

OID_CLAIMS = frozenset({"http://schemas.microsoft.com/identity/claims/objectidentifier", "oid"})
TID_CLAIMS = frozenset({"http://schemas.microsoft.com/identity/claims/tenantid", "tid"})
ROLE_CLAIMS = frozenset({"roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"})
SCOPE_CLAIMS = frozenset({"scp", "http://schemas.microsoft.com/identity/claims/scope"})
# The identity provider that authenticated the user: for a guest, the issuer of its home tenant
# ("idp" in https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference).
IDP_CLAIMS = frozenset({"idp", "http://schemas.microsoft.com/identity/claims/identityprovider"})
_ENTRA_ISSUER = re.compile(
    r"https://(?:sts\.windows\.net|login\.microsoftonline\.com)/([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})/(?:v2\.0)?"
)
_UPN_URI = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
# Claims Entra puts only in tokens issued to or about a signed-in user (ID tokens,
# delegated access tokens), never in app-only (client credentials) access tokens.
USER_CLAIMS = frozenset(
    {
        "name",
        "preferred_username",
        "upn",
        _UPN_URI,
        "unique_name",
        "given_name",
        "family_name",
        "email",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    }
)
_NAME_CLAIMS = ("name", "preferred_username", _UPN_URI, "upn")

_BASE64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")

Claims = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Principal:
    object_id: str
    tenant_id: str
    # A B2B guest's home tenant, when the token names it and it differs from tenant_id (the resource tenant).
    home_tenant_id: str | None
    name: str | None
    identity_provider: str
    roles: frozenset[str]
    audience: str | None
    is_app: bool
    claims: Claims


def principal_from_headers(headers: Mapping[str, str], policy: AuthPolicy) -> Principal:
    """Decode and check the Easy Auth principal, then apply ``policy``.

    Raises :class:`RelayError` (401 or 403), and nothing else, for any header content.
    """
    parsed = _parsed(_single(headers, PRINCIPAL_HEADER, required=True) or "")
    idp_header = _single(headers, PRINCIPAL_IDP_HEADER, required=False)
    if idp_header is not None and idp_header.strip(" \t").lower() != parsed.provider:
        raise unauthenticated("X-MS-CLIENT-PRINCIPAL-IDP does not match the principal's auth_typ")
    if parsed.provider != "aad":
        raise forbidden("identity provider not allowed: sign in with Microsoft Entra ID")
    if parsed.principal is None:
        raise unauthenticated(parsed.problem)
    id_header = _single(headers, PRINCIPAL_ID_HEADER, required=False)
    if id_header is not None and not same_guid(id_header.strip(" \t"), parsed.principal.object_id):
        raise unauthenticated("X-MS-CLIENT-PRINCIPAL-ID does not match the principal's object ID")
    _apply_policy(parsed.principal, policy)
    return parsed.principal


@dataclass(frozen=True)
class _Parsed:
    """What one X-MS-CLIENT-PRINCIPAL value says: its provider and, for Entra ID, the principal or what is wrong with it."""

    provider: str
    principal: Principal | None
    problem: str = ""


# A signed-in user sends the same X-MS-CLIENT-PRINCIPAL on every request until their session
# is renewed, and parsing it is a pure function of the value: recent values are kept (at most
# 256 of at most MAX_PRINCIPAL_HEADER_CHARS each). A value that is not a principal document
# raises, and exceptions are not cached.
@functools.lru_cache(maxsize=256)
def _parsed(raw: str) -> _Parsed:
    document = _decode(raw)
    claims = _claims(document.get("claims"))
    auth_typ = _optional_str(document, "auth_typ")
    name_typ = _optional_str(document, "name_typ")
    role_typ = _optional_str(document, "role_typ")
    if not auth_typ:
        raise unauthenticated("X-MS-CLIENT-PRINCIPAL has no auth_typ")
    provider = auth_typ.lower()
    if provider != "aad":
        return _Parsed(provider, None)
    try:
        object_id = _guid_claim(claims, OID_CLAIMS, "object ID (oid)")
        tenant_id = _guid_claim(claims, TID_CLAIMS, "tenant ID (tid)")
    except RelayError as error:
        return _Parsed(provider, None, error.message)
    audiences = {val for typ, val in claims if typ == "aud" and val}
    if len(audiences) > 1:
        return _Parsed(provider, None, "X-MS-CLIENT-PRINCIPAL has conflicting aud claims")
    principal = Principal(
        object_id=object_id,
        tenant_id=tenant_id,
        home_tenant_id=_home_tenant(claims, tenant_id),
        name=_first_value(claims, (*_NAME_CLAIMS, name_typ)),
        identity_provider=provider,
        roles=frozenset(val for typ, val in claims if val and (typ in ROLE_CLAIMS or typ == role_typ)),
        audience=audiences.pop() if audiences else None,
        is_app=_is_app_only(claims),
        claims=claims,
    )
    return _Parsed(provider, principal)


def _home_tenant(claims: Claims, tenant_id: str) -> str | None:
    for typ, val in claims:
        if typ in IDP_CLAIMS and (match := _ENTRA_ISSUER.fullmatch(val)) and match.group(1).lower() != tenant_id:
            return match.group(1).lower()
    return None


def _is_app_only(claims: Claims) -> bool:
    """``idtyp=app``, or neither a scope nor any user claim.

    An Easy Auth session from a browser sign-in carries the ID token's claims:
    no scope, but user claims, so it counts as a user. A client-credentials
    token carries neither, whether or not the optional ``idtyp`` claim is on.
    """
    if any(typ == "idtyp" and val.lower() == "app" for typ, val in claims):
        return True
    present = {typ for typ, val in claims if val}
    return not (present & SCOPE_CLAIMS or present & USER_CLAIMS)


def _apply_policy(principal: Principal, policy: AuthPolicy) -> None:
    if principal.is_app and not policy.allow_app_tokens:
        raise forbidden("app-only tokens are not allowed: call with a user's delegated token")
    if policy.allowed_tenants is not None and principal.tenant_id not in policy.allowed_tenants:
        raise forbidden("tenant not allowed")
    if policy.allowed_audiences is not None and principal.audience not in policy.allowed_audiences:
        raise forbidden("token audience not allowed")
    if policy.required_roles and not principal.roles & policy.required_roles:
        raise forbidden("required app role missing")


def _single(headers: Mapping[str, str], name: str, *, required: bool) -> str | None:
    values = set(header_values(headers, name))
    if len(values) > 1:
        raise unauthenticated(f"conflicting {name} headers")
    if not values:
        if required:
            raise unauthenticated("no X-MS-CLIENT-PRINCIPAL header: is App Service Authentication enabled?")
        return None
    return values.pop()


def _decode(raw: str) -> dict[str, Any]:
    if len(raw) > MAX_PRINCIPAL_HEADER_CHARS:
        raise unauthenticated("X-MS-CLIENT-PRINCIPAL is too large")
    raw = raw.strip(" \t")
    if not raw:
        raise unauthenticated("X-MS-CLIENT-PRINCIPAL is empty")
    if not _BASE64.fullmatch(raw):
        raise unauthenticated("X-MS-CLIENT-PRINCIPAL is not base64")
    unpadded = raw.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        data = base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except binascii.Error:
        raise unauthenticated("X-MS-CLIENT-PRINCIPAL is not base64") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise unauthenticated("X-MS-CLIENT-PRINCIPAL is not UTF-8") from None
    try:
        document = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except (ValueError, RecursionError):
        raise unauthenticated("X-MS-CLIENT-PRINCIPAL is not valid JSON") from None
    if not isinstance(document, dict):
        raise unauthenticated("X-MS-CLIENT-PRINCIPAL is not a JSON object")
    return document


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ValueError("duplicate key")
    return document


def _claims(raw: object) -> Claims:
    if not isinstance(raw, list):
        raise unauthenticated("X-MS-CLIENT-PRINCIPAL claims is not a list")
    claims = []
    for item in raw:
        typ = item.get("typ") if isinstance(item, dict) else None
        val = item.get("val") if isinstance(item, dict) else None
        if not isinstance(typ, str) or not isinstance(val, str) or not (_utf8(typ) and _utf8(val)):
            raise unauthenticated("X-MS-CLIENT-PRINCIPAL claims must be {typ, val} string pairs")
        claims.append((typ, val))
    return tuple(claims)


def _optional_str(document: Mapping[str, Any], key: str) -> str | None:
    value = document.get(key)
    if value is not None and not (isinstance(value, str) and _utf8(value)):
        raise unauthenticated(f"X-MS-CLIENT-PRINCIPAL {key} is not a string")
    return value


def _utf8(value: str) -> bool:
    """False for lone surrogates (valid JSON escapes), which later break UTF-8 encoding."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _guid_claim(claims: Claims, types: frozenset[str], label: str) -> str:
    values = [val for typ, val in claims if typ in types]
    if not values:
        raise unauthenticated(f"X-MS-CLIENT-PRINCIPAL has no {label} claim")
    if not all(is_guid(value) for value in values):
        raise unauthenticated(f"X-MS-CLIENT-PRINCIPAL {label} is not a GUID")
    distinct = {value.lower() for value in values}
    if len(distinct) > 1:
        raise unauthenticated(f"X-MS-CLIENT-PRINCIPAL has conflicting {label} claims")
    return distinct.pop()


def _first_value(claims: Claims, types: Iterable[str | None]) -> str | None:
    for wanted in types:
        for typ, val in claims:
            if typ == wanted and val:
                return val
    return None
