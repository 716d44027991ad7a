"""The local host's App Service front end and Easy Auth as a browser, an SPA and an attacker meet them.

Most tests go over real sockets to ``python -m devhost`` (the ``stack`` fixture).
What a socket on 127.0.0.1 cannot show (a non-loopback peer, the exact headers a
function receives, an expired token signed with the host's key) goes through the
same ASGI composition, ``create_host_app``, with a client address of our choice.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from typing import Any

import azure.functions as func
import httpx2
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.testclient import TestClient

from devhost import jwt
from devhost.appservice_auth import DevIdentityProvider
from devhost.host_app import create_host_app
from tests.support.identities import ADA_OID, ADA_TID, MALLORY_OID
from tests.support.stack import Stack
from tests.support.tokens import claims_of

OID_TYP = "http://schemas.microsoft.com/identity/claims/objectidentifier"
TID_TYP = "http://schemas.microsoft.com/identity/claims/tenantid"
SCOPE_TYP = "http://schemas.microsoft.com/identity/claims/scope"
SESSION = "AppServiceAuthSession"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
PROTECTED = [("GET", "/api/me"), ("GET", "/api/v1/models"), ("POST", "/api/v1/chat/completions")]
OFF_SITE = ["https://evil.example/", "//evil.example", "/\\evil.example", "javascript:alert(1)"]
MALLORY_PRINCIPAL = {"auth_typ": "aad", "claims": [{"typ": "oid", "val": MALLORY_OID}, {"typ": "tid", "val": ADA_TID}]}
FORGED = {
    "X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(MALLORY_PRINCIPAL).encode()).decode(),
    "X-MS-CLIENT-PRINCIPAL-ID": MALLORY_OID,
    "X-MS-CLIENT-PRINCIPAL-NAME": "mallory@evil.example",
    "X-MS-CLIENT-PRINCIPAL-IDP": "aad",
    "X-MS-TOKEN-AAD-ACCESS-TOKEN": "forged",
    "client-ip": "6.6.6.6:443",
    "X-Client-IP": "6.6.6.6",
    "X-Forwarded-For": "6.6.6.6",
}


def b64url(obj: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def unsigned(claims: dict[str, Any], alg: str) -> str:
    return f"{b64url({'alg': alg, 'typ': 'JWT'})}.{b64url(claims)}."


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=stack.base_url, follow_redirects=False, timeout=20) as client:
        yield client


def sign_in(http: httpx2.Client, redirect: str = "/", **form: str) -> httpx2.Response:
    fields = {"oid": ADA_OID, "tid": ADA_TID, "name": "Ada Lovelace", "roles": "", "post_login_redirect_uri": redirect, **form}
    return http.post("/.auth/login/aad", data=fields)


def set_cookie(response: httpx2.Response) -> Any:
    jar: SimpleCookie = SimpleCookie()
    jar.load(response.headers["set-cookie"])
    return jar[SESSION]


def host_app(provider: DevIdentityProvider, calls: list[str] | None = None) -> Any:
    """The local host's composition in front of one function that echoes the headers it receives."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="echo", methods=[func.HttpMethod.GET])
    async def echo(req: Request) -> JSONResponse:
        if calls is not None:
            calls.append(req.headers.get("authorization", ""))
        return JSONResponse(list(req.headers.items()))

    return create_host_app(app, provider, spa_dir=None)


# /_dev/token ----------------------------------------------------------------


def test_dev_token_carries_the_requested_identity(stack: Stack) -> None:
    user = claims_of(stack.token(oid=ADA_OID.upper(), tid=ADA_TID, name="Ada Lovelace", roles="Relay.User, Relay.Admin"))
    assert {k: user[k] for k in ("aud", "iss", "oid", "tid", "name", "preferred_username", "scp", "roles", "ver")} == {
        "aud": "api://relay-local",
        "iss": f"https://login.microsoftonline.com/{ADA_TID}/v2.0",
        "oid": ADA_OID,
        "tid": ADA_TID,
        "name": "Ada Lovelace",
        "preferred_username": "ada.lovelace@contoso.example",
        "scp": "user_impersonation",
        "roles": ["Relay.User", "Relay.Admin"],
        "ver": "2.0",
    }
    assert user["exp"] - user["iat"] == 3600 and abs(user["iat"] - time.time()) < 60
    assert "idtyp" not in user

    daemon = claims_of(stack.token(oid=MALLORY_OID, tid=ADA_TID, app="true", aud="https://cognitiveservices.azure.com"))
    assert daemon["idtyp"] == "app" and daemon["azp"] == MALLORY_OID
    assert daemon["aud"] == "https://cognitiveservices.azure.com"
    assert not {"scp", "name", "preferred_username"} & daemon.keys()


@pytest.mark.parametrize("params", [{"oid": "ada"}, {"tid": "contoso.onmicrosoft.com"}, {"oid": ADA_OID + "0"}, {"oid": ""}])
def test_dev_token_refuses_ids_that_are_not_guids(http: httpx2.Client, params: dict[str, str]) -> None:
    response = http.get("/_dev/token", params=params)
    assert response.status_code == 400
    assert response.json() == {"error": "oid and tid must be GUIDs"}


def test_dev_token_is_issued_to_loopback_peers_only_whatever_the_headers_say() -> None:
    app = host_app(DevIdentityProvider())
    claims_loopback = {"X-Forwarded-For": "127.0.0.1", "client-ip": "127.0.0.1:1", "X-Client-IP": "127.0.0.1", "Host": "localhost"}
    remote = TestClient(app, base_url="http://localhost", client=("203.0.113.7", 51234)).get("/_dev/token", headers=claims_loopback)
    assert remote.status_code == 403
    assert "access_token" not in remote.text
    for peer in ("127.0.0.1", "::1"):
        local = TestClient(app, base_url="http://localhost", client=(peer, 51234)).get("/_dev/token")
        assert local.status_code == 200, peer
        assert claims_of(local.json()["access_token"])["aud"] == "api://relay-local"


# /.auth/me ------------------------------------------------------------------


def test_auth_me_is_401_without_a_session_or_token(http: httpx2.Client) -> None:
    assert http.get("/.auth/me").status_code == 401
    assert http.get("/.auth/me", headers={"Cookie": f"{SESSION}=not-a-session"}).status_code == 401
    assert http.get("/.auth/me", headers={"Authorization": "Bearer not-a-token"}).status_code == 401


def test_auth_me_with_a_bearer_token_is_shaped_as_app_service_documents(stack: Stack, http: httpx2.Client) -> None:
    token = stack.token(oid=ADA_OID, tid=ADA_TID, name="Ada Lovelace", roles="Relay.User")
    response = http.get("/.auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    [entry] = response.json()
    claims = claims_of(token)
    assert entry["access_token"] == token
    assert entry["expires_on"] == datetime.fromtimestamp(claims["exp"], UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    assert entry["provider_name"] == "aad"
    assert entry["user_id"] == "ada.lovelace@contoso.example"
    expected = [
        ("aud", "api://relay-local"),
        ("iss", f"https://login.microsoftonline.com/{ADA_TID}/v2.0"),
        *((name, str(claims[name])) for name in ("iat", "nbf", "exp", "sub", "uti")),
        (OID_TYP, ADA_OID),
        (TID_TYP, ADA_TID),
        ("ver", "2.0"),
        (SCOPE_TYP, "user_impersonation"),
        ("name", "Ada Lovelace"),
        ("preferred_username", "ada.lovelace@contoso.example"),
        ("roles", "Relay.User"),
    ]
    assert sorted((c["typ"], c["val"]) for c in entry["user_claims"]) == sorted(expected)
    assert set(entry) == {"access_token", "expires_on", "provider_name", "user_claims", "user_id"}


# Dev sign-in and sign-out -----------------------------------------------------


def test_dev_sign_in_sets_the_session_cookie_and_the_relay_sees_that_user(http: httpx2.Client) -> None:
    page = http.get("/.auth/login/aad", params={"post_login_redirect_uri": "/chat?tab=2"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="/.auth/login/aad">' in page.text
    assert '<input type="hidden" name="post_login_redirect_uri" value="/chat?tab=2">' in page.text

    signed_in = sign_in(http, "/chat?tab=2", oid=ADA_OID.upper(), roles="Relay.User")
    assert signed_in.status_code == 302 and signed_in.headers["location"] == "/chat?tab=2"
    cookie = set_cookie(signed_in)
    assert cookie["httponly"] is True and cookie["samesite"].lower() == "lax"
    assert cookie["path"] == "/" and cookie["max-age"] == "3600"

    me = http.get("/api/me", headers={"Cookie": f"{SESSION}={cookie.value}"})
    assert me.status_code == 200
    assert me.json()["principal"] == {
        "object_id": ADA_OID,
        "tenant_id": ADA_TID,
        "home_tenant_id": None,
        "name": "Ada Lovelace",
        "identity_provider": "aad",
        "roles": ["Relay.User"],
        "is_app": False,
    }
    assert me.json()["source_ip"] == "127.0.0.1"


def test_dev_sign_in_refuses_ids_that_are_not_guids(http: httpx2.Client) -> None:
    response = sign_in(http, tid="contoso.onmicrosoft.com")
    assert response.status_code == 400 and "set-cookie" not in response.headers


@pytest.mark.parametrize("target", OFF_SITE)
def test_sign_in_and_sign_out_never_redirect_off_site(http: httpx2.Client, target: str) -> None:
    page = http.get("/.auth/login/aad", params={"post_login_redirect_uri": target})
    assert 'name="post_login_redirect_uri" value="/">' in page.text
    assert sign_in(http, target).headers["location"] == "/"
    signed_out = http.get("/.auth/logout", params={"post_logout_redirect_uri": target})
    assert signed_out.status_code == 302 and signed_out.headers["location"] == "/"


def test_sign_out_clears_the_session_cookie_and_returns_to_the_app(http: httpx2.Client) -> None:
    session = set_cookie(sign_in(http)).value
    signed_out = http.get("/.auth/logout", params={"post_logout_redirect_uri": "/goodbye"}, headers={"Cookie": f"{SESSION}={session}"})
    assert signed_out.status_code == 302 and signed_out.headers["location"] == "/goodbye"
    cleared = set_cookie(signed_out)
    assert cleared.value in ("", '""') and cleared["max-age"] == "0" and cleared["path"] == "/"


def test_a_session_cookie_replayed_after_sign_out_is_refused(http: httpx2.Client) -> None:
    # Two sign-ins within one second are two sessions: ending one must not end the other.
    other = {"Cookie": f"{SESSION}={set_cookie(sign_in(http)).value}"}
    session = {"Cookie": f"{SESSION}={set_cookie(sign_in(http)).value}"}
    assert http.get("/api/me", headers=session).status_code == 200
    http.get("/.auth/logout", headers=session)
    assert http.get("/.auth/me", headers=session).status_code == 401
    assert http.get("/api/me", headers=session).status_code == 401
    assert http.get("/api/me", headers=other).status_code == 200


# The gate in front of the relay -----------------------------------------------


def test_relay_routes_need_credentials_and_healthz_does_not(http: httpx2.Client) -> None:
    for method, path in PROTECTED:
        response = http.request(method, path, json=CHAT)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == 'Bearer realm="api://relay-local"'
    healthz = http.get("/api/healthz")
    assert healthz.status_code == 200 and healthz.json() == {"status": "ok"}


def bad_authorization(stack: Stack, kind: str) -> str:
    genuine = stack.token(oid=ADA_OID, tid=ADA_TID)
    header, _, signature = genuine.split(".")
    mallory = {**claims_of(genuine), "oid": MALLORY_OID}
    return {
        "other key": f"Bearer {DevIdentityProvider().mint(oid=ADA_OID, tid=ADA_TID)}",
        "alg none": f"Bearer {unsigned(mallory, 'none')}",
        "payload swapped": f"Bearer {header}.{b64url(mallory)}.{signature}",
        "other audience": f"Bearer {stack.token(oid=ADA_OID, tid=ADA_TID, aud='https://cognitiveservices.azure.com')}",
        "garbage": "Bearer not.a-jwt",
        "basic scheme": f"Basic {genuine}",
    }[kind]


@pytest.mark.parametrize("kind", ["other key", "alg none", "payload swapped", "other audience", "garbage", "basic scheme"])
def test_a_bad_token_is_401_and_nothing_reaches_azure(stack: Stack, http: httpx2.Client, kind: str) -> None:
    authorization = bad_authorization(stack, kind)
    before = stack.stats()["chat_requests"]
    for method, path in PROTECTED:
        assert http.request(method, path, json=CHAT, headers={"Authorization": authorization}).status_code == 401, path
    assert http.get("/.auth/me", headers={"Authorization": authorization}).status_code == 401
    assert stack.stats()["chat_requests"] == before


def test_expired_or_wrong_alg_tokens_signed_with_the_host_key_are_401_and_the_function_never_runs() -> None:
    provider, calls = DevIdentityProvider(), list[str]()
    client = TestClient(host_app(provider, calls), base_url="http://localhost", client=("127.0.0.1", 51234))
    fresh = provider.mint(oid=ADA_OID, tid=ADA_TID)
    expired = jwt.encode({**claims_of(fresh), "exp": int(time.time()) - 1}, provider.key)
    signing_input = unsigned(claims_of(fresh), "none").rstrip(".")
    signature = base64.urlsafe_b64encode(hmac.new(provider.key, signing_input.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
    alg_none = f"{signing_input}.{signature}"
    assert client.get("/api/echo", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200
    for token in (expired, alg_none):
        assert client.get("/api/echo", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        assert client.get("/api/echo", headers={"Cookie": f"{SESSION}={token}"}).status_code == 401
    assert calls == [f"Bearer {fresh}"]


# The App Service front end ----------------------------------------------------


def test_forged_principal_and_ip_headers_never_change_who_the_relay_sees(stack: Stack, http: httpx2.Client) -> None:
    token = stack.token(oid=ADA_OID, tid=ADA_TID, name="Ada Lovelace")
    assert http.get("/api/me", headers=FORGED).status_code == 401
    me = http.get("/api/me", headers={**FORGED, "Authorization": f"Bearer {token}"}).json()
    assert me["principal"]["object_id"] == ADA_OID and me["principal"]["name"] == "Ada Lovelace"
    assert me["source_ip"] == "127.0.0.1"
    assert me["user_security_context"]["end_user_id"] == ADA_OID
    assert me["user_security_context"]["source_ip"] == "127.0.0.1"


@pytest.mark.parametrize(("peer", "endpoint"), [("203.0.113.7", "203.0.113.7:51234"), ("2001:db8::7", "[2001:db8::7]:51234")])
def test_the_function_receives_app_service_headers_not_the_clients(peer: str, endpoint: str) -> None:
    provider = DevIdentityProvider()
    token = provider.mint(oid=ADA_OID, tid=ADA_TID, name="Ada Lovelace")
    response = TestClient(host_app(provider), base_url="http://localhost", client=(peer, 51234)).get("/api/echo", headers={**FORGED, "Authorization": f"Bearer {token}"})
    pairs = response.json()
    seen = dict(pairs)
    assert len(seen) == len(pairs), "a header reached the function twice"
    assert seen["x-forwarded-for"] == f"6.6.6.6, {endpoint}"
    assert seen["client-ip"] == endpoint and seen["x-client-ip"] == peer
    assert seen["x-ms-client-principal-id"] == ADA_OID
    assert seen["x-ms-client-principal-name"] == "ada.lovelace@contoso.example"
    assert seen["x-ms-client-principal-idp"] == "aad"
    assert "x-ms-token-aad-access-token" not in seen
    principal = json.loads(base64.b64decode(seen["x-ms-client-principal"]))
    assert principal["auth_typ"] == "aad"
    assert {"typ": OID_TYP, "val": ADA_OID} in principal["claims"]
    assert MALLORY_OID not in json.dumps(principal)
