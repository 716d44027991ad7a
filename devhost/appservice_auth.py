"""App Service Authentication ("Easy Auth") for the local host.

Validates ``Authorization: Bearer <dev token>`` or the ``AppServiceAuthSession``
cookie set by the dev sign-in page, and injects ``X-MS-CLIENT-PRINCIPAL*`` the
way App Service does (claims mapped to their long URI names, base64 JSON).
Unauthenticated requests to protected paths get 401, as with
``unauthenticatedClientAction: Return401``. Shapes follow Microsoft's
"Work with user identities in Azure App Service authentication" and
"Customize sign-in and sign-out" pages.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from devhost import defaults, jwt
from devhost.appservice import peer_address
from devhost.checks import is_guid, is_loopback_host

SESSION_COOKIE = "AppServiceAuthSession"
DEV_OBJECT_ID = "5f1b6c2e-3a4d-4e8f-9b0a-1c2d3e4f5a6b"
DEV_TENANT_ID = "8a9b0c1d-2e3f-4a5b-8c7d-9e0f1a2b3c4d"
DEV_NAME = "Dev User"
TOKEN_LIFETIME_S = 3600
_KEY_ID_PREFIX = "devhost-"
NAME_TYP = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
ROLE_TYP = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
# App Service's default mapping of JWT claim names to the types it puts in the principal.
_CLAIM_TYPES = {
    "oid": "http://schemas.microsoft.com/identity/claims/objectidentifier",
    "tid": "http://schemas.microsoft.com/identity/claims/tenantid",
    "scp": "http://schemas.microsoft.com/identity/claims/scope",
    "upn": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
    "email": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
}


@dataclass
class DevIdentityProvider:
    """Mints and verifies the local stand-ins for Entra access tokens."""

    audience: str = defaults.AUDIENCE
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    # Sessions ended by /.auth/logout (SHA-256 of the cookie -> its expiry), as App Service ends them server-side.
    ended_sessions: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def mint(
        self,
        oid: str = DEV_OBJECT_ID,
        tid: str = DEV_TENANT_ID,
        name: str | None = DEV_NAME,
        roles: tuple[str, ...] = (),
        audience: str | None = None,
        app_only: bool = False,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": audience or self.audience,
            "iss": f"https://login.microsoftonline.com/{tid}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME_S,
            "oid": oid,
            "sub": uuid.uuid5(uuid.NAMESPACE_URL, oid).hex,
            "tid": tid,
            # Entra's unique token identifier: two tokens minted in the same second are still two sessions.
            "uti": secrets.token_urlsafe(16),
            "ver": "2.0",
        }
        if app_only:
            claims["idtyp"] = "app"
            claims["azp"] = oid
        else:
            claims["scp"] = "user_impersonation"
            if name:
                claims["name"] = name
                claims["preferred_username"] = f"{name.lower().replace(' ', '.')}@contoso.example"
        if roles:
            claims["roles"] = list(roles)
        return jwt.encode(claims, self.key, key_id=self.key_id)

    def verify(self, token: str) -> dict[str, Any]:
        return jwt.decode(token, self.key, audience=self.audience)

    @property
    def key_id(self) -> str:
        """Names this provider's key in the tokens it mints (``kid``); a hash, so the key stays unknown."""
        return _KEY_ID_PREFIX + hashlib.sha256(self.key).hexdigest()[:16]

    def signed_by_another_run(self, token: str) -> bool:
        """A dev token minted by another local host's provider: each run makes a new key, so a restart ends every token."""
        kid = jwt.unverified_header(token).get("kid")
        return isinstance(kid, str) and kid.startswith(_KEY_ID_PREFIX) and kid != self.key_id

    def end_session(self, session: str) -> None:
        now = int(time.time())
        for ended, expires in list(self.ended_sessions.items()):
            if expires < now:
                del self.ended_sessions[ended]
        try:
            expires = int(self.verify(session)["exp"])
        except jwt.InvalidToken:
            return
        self.ended_sessions[_digest(session)] = expires

    def session_ended(self, session: str) -> bool:
        return _digest(session) in self.ended_sessions


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def principal_claims(claims: Mapping[str, Any]) -> list[dict[str, str]]:
    mapped: list[dict[str, str]] = []
    for name, value in claims.items():
        typ = _CLAIM_TYPES.get(name, name)
        for item in value if isinstance(value, list) else [value]:
            mapped.append({"typ": typ, "val": str(item)})
    return mapped


def principal_headers(claims: Mapping[str, Any]) -> list[tuple[bytes, bytes]]:
    principal = {
        "auth_typ": "aad",
        "claims": principal_claims(claims),
        "name_typ": NAME_TYP,
        "role_typ": ROLE_TYP,
    }
    encoded = base64.b64encode(json.dumps(principal, separators=(",", ":")).encode())
    display = claims.get("preferred_username") or claims.get("name") or claims.get("oid", "")
    return [
        (b"x-ms-client-principal", encoded),
        (b"x-ms-client-principal-id", str(claims.get("oid", "")).encode()),
        (b"x-ms-client-principal-name", str(display).encode("utf-8", "replace")),
        (b"x-ms-client-principal-idp", b"aad"),
    ]


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


def _session(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"cookie":
            cookie: SimpleCookie = SimpleCookie()
            try:
                cookie.load(value.decode("latin-1"))
            except Exception:  # noqa: BLE001 - a garbled cookie header is just "no session"
                return None
            morsel = cookie.get(SESSION_COOKIE)
            return morsel.value if morsel else None
    return None


def authenticate(provider: DevIdentityProvider, scope: Scope) -> dict[str, Any] | None:
    """The caller's token claims, or None. A bearer header, valid or not, wins over the cookie."""
    token = _bearer(scope)
    if token is None:
        token = _session(scope)
        if token and provider.session_ended(token):
            return None
    if not token:
        return None
    try:
        return provider.verify(token)
    except jwt.InvalidToken:
        return None


_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def cross_site_cookie_request(scope: Scope, allowed_origins: Sequence[str]) -> bool:
    """A browser's state-changing request, authenticated by the session cookie, from another site.

    App Service Authentication refuses these (403) as cross-site request forgery: a
    browser-like User-Agent posting with the session cookie and without the app's own
    origin (Azure/azure-functions-host#1602, projectkudu/kudu#1806; the rule is not
    documented further). Bearer-token callers are not affected: a page cannot make a
    browser attach someone's token.
    """
    if scope.get("method") not in _UNSAFE_METHODS or _bearer(scope) is not None or not _session(scope):
        return False
    headers = {name: value.decode("latin-1") for name, value in scope["headers"]}
    if "mozilla/" not in headers.get(b"user-agent", "").lower():
        return False
    own = f"{scope.get('scheme', 'http')}://{headers.get(b'host', '')}"
    return headers.get(b"origin") not in {own, *allowed_origins}


class EasyAuth:
    """Requires authentication on ``/api/*`` except the excluded paths; injects the principal."""

    def __init__(
        self,
        app: ASGIApp,
        provider: DevIdentityProvider,
        cors_origins: Sequence[str] = (),
        excluded_paths: frozenset[str] = frozenset({"/api/healthz"}),
    ) -> None:
        self.app = app
        self.provider = provider
        self.cors_origins = tuple(cors_origins)
        self.excluded_paths = excluded_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/api/") or path in self.excluded_paths:
            await self.app(scope, receive, send)
            return
        if cross_site_cookie_request(scope, self.cors_origins):
            refusal = "The request was refused as possible cross-site request forgery."
            await Response(refusal, status_code=403, media_type="text/plain")(scope, receive, send)
            return
        claims = authenticate(self.provider, scope)
        if claims is None:
            response = Response(
                _stale_token_hint(self.provider, scope) or "You do not have permission to view this directory or page.",
                status_code=401,
                media_type="text/plain",
                headers={"WWW-Authenticate": f'Bearer realm="{self.provider.audience}"'},
            )
            await response(scope, receive, send)
            return
        await self.app({**scope, "headers": [*scope["headers"], *principal_headers(claims)]}, receive, send)


def _stale_token_hint(provider: DevIdentityProvider, scope: Scope) -> str | None:
    """Why a dev token or session that a previous run minted is refused, and where to get a new one (the local host only)."""
    bearer = _bearer(scope)
    token = bearer if bearer is not None else _session(scope)
    if not token or not provider.signed_by_another_run(token):
        return None
    headers = dict(scope["headers"])
    origin = f"{scope.get('scheme', 'http')}://{headers.get(b'host', b'127.0.0.1').decode('latin-1')}"
    if bearer is not None:
        return f"This dev token was signed by a previous make run (dev tokens end with a restart): get a new token from {origin}/_dev/token"
    return f"This session was signed by a previous make run (dev sessions end with a restart): sign in again at {origin}/.auth/login/aad"


def _safe_redirect(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Dev sign-in (local Easy Auth)</title>
<style>body{{font:16px system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;color:#111}}
label{{display:block;margin-top:1rem;font-weight:600}}input{{width:100%;padding:.5rem;font:inherit;box-sizing:border-box}}
button{{margin-top:1.5rem;padding:.6rem 1.2rem;font:inherit;background:#0b5cad;color:#fff;border:0;border-radius:4px}}
p{{color:#333}}</style></head>
<body><main><h1>Dev sign-in</h1>
<p>This page stands in for Microsoft Entra ID on the local host. The identity you enter here is what the relay
sends to Azure OpenAI as <code>user_security_context</code>.</p>
<form method="post" action="/.auth/login/aad">
<input type="hidden" name="post_login_redirect_uri" value="{redirect}">
<label for="name">Display name</label><input id="name" name="name" value="{name}" autocomplete="name">
<label for="oid">Object ID (oid)</label><input id="oid" name="oid" value="{oid}" required>
<label for="tid">Tenant ID (tid)</label><input id="tid" name="tid" value="{tid}" required>
<label for="roles">App roles (comma-separated)</label><input id="roles" name="roles" value="">
<button type="submit">Sign in</button></form></main></body></html>
"""


def auth_routes(provider: DevIdentityProvider) -> list[Route]:
    async def login_page(request: Request) -> Response:
        redirect = _safe_redirect(request.query_params.get("post_login_redirect_uri"))
        page = _LOGIN_PAGE.format(redirect=html.escape(redirect), name=DEV_NAME, oid=DEV_OBJECT_ID, tid=DEV_TENANT_ID)
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    async def login(request: Request) -> Response:
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        oid, tid = form.get("oid", "").strip(), form.get("tid", "").strip()
        if not (is_guid(oid) and is_guid(tid)):
            return HTMLResponse("<p>Object ID and tenant ID must be GUIDs. <a href='/.auth/login/aad'>Back</a></p>", status_code=400)
        roles = tuple(r.strip() for r in form.get("roles", "").split(",") if r.strip())
        token = provider.mint(oid.lower(), tid.lower(), form.get("name", "").strip()[:128] or None, roles)
        response = RedirectResponse(_safe_redirect(form.get("post_login_redirect_uri")), status_code=302)
        response.set_cookie(SESSION_COOKIE, token, max_age=TOKEN_LIFETIME_S, httponly=True, samesite="lax", path="/")
        return response

    async def me(request: Request) -> Response:
        claims = authenticate(provider, request.scope)
        if claims is None:
            return Response(status_code=401)
        token = _bearer(request.scope) or _session(request.scope) or ""
        expires = time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime(int(claims["exp"])))
        return JSONResponse([{
            "access_token": token,
            "expires_on": expires,
            "provider_name": "aad",
            "user_claims": principal_claims(claims),
            "user_id": claims.get("preferred_username") or claims.get("oid"),
        }], headers={"Cache-Control": "no-store"})

    async def logout(request: Request) -> Response:
        session = _session(request.scope)
        if session:
            provider.end_session(session)
        response = RedirectResponse(_safe_redirect(request.query_params.get("post_logout_redirect_uri")), status_code=302)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def dev_token(request: Request) -> Response:
        host, _ = peer_address(request.scope)
        if not is_loopback_host(host):
            return JSONResponse({"error": "dev tokens are issued to loopback callers only"}, status_code=403)
        params = request.query_params
        oid = params.get("oid", DEV_OBJECT_ID).strip().lower()
        tid = params.get("tid", DEV_TENANT_ID).strip().lower()
        if not (is_guid(oid) and is_guid(tid)):
            return JSONResponse({"error": "oid and tid must be GUIDs"}, status_code=400)
        roles = tuple(r.strip() for r in params.get("roles", "").split(",") if r.strip())
        token = provider.mint(
            oid, tid, params.get("name", DEV_NAME)[:128] or None, roles,
            audience=params.get("aud") or None, app_only=params.get("app", "").lower() == "true",
        )
        body = {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME_S}
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    return [
        Route("/.auth/login/aad", login_page, methods=["GET"]),
        Route("/.auth/login/aad", login, methods=["POST"]),
        Route("/.auth/me", me, methods=["GET"]),
        Route("/.auth/logout", logout, methods=["GET"]),
        Route("/_dev/token", dev_token, methods=["GET"]),
    ]
