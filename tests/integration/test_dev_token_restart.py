"""A dev token or session from a previous ``make run`` is refused with the reason and where to get a new one.

Each run of the local host signs its dev tokens with a key it makes at start-up, so a restart ends
every token; the 401 says so instead of App Service's bare "You do not have permission".
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from devhost import jwt
from devhost.appservice_auth import SESSION_COOKIE, DevIdentityProvider, EasyAuth
from tests.support.tokens import claims_of

GENERIC = "You do not have permission to view this directory or page."


def client_of(provider: DevIdentityProvider) -> TestClient:
    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.headers["x-ms-client-principal-id"])

    app = EasyAuth(Starlette(routes=[Route("/api/echo", echo)]), provider)
    return TestClient(app, base_url="http://127.0.0.1:7171", client=("127.0.0.1", 51234))


def test_a_token_from_a_previous_run_gets_a_401_that_says_where_to_get_a_new_one() -> None:
    previous, current = DevIdentityProvider(), DevIdentityProvider()
    old_token = previous.mint()
    client = client_of(current)

    refused = client.get("/api/echo", headers={"Authorization": f"Bearer {old_token}"})
    assert refused.status_code == 401
    assert refused.text == (
        "This dev token was signed by a previous make run (dev tokens end with a restart): "
        "get a new token from http://127.0.0.1:7171/_dev/token"
    )
    assert client.get("/api/echo", headers={"Authorization": f"Bearer {current.mint()}"}).status_code == 200


def test_a_session_cookie_from_a_previous_run_says_to_sign_in_again() -> None:
    refused = client_of(DevIdentityProvider()).get("/api/echo", headers={"Cookie": f"{SESSION_COOKIE}={DevIdentityProvider().mint()}"})
    assert refused.status_code == 401
    assert refused.text.endswith("sign in again at http://127.0.0.1:7171/.auth/login/aad")


def test_other_bad_tokens_keep_app_services_answer() -> None:
    provider = DevIdentityProvider()
    client = client_of(provider)
    expired = jwt.encode({**claims_of(provider.mint()), "exp": 1}, provider.key, key_id=provider.key_id)
    for token in ("garbage", jwt.encode(claims_of(provider.mint()), b"guessed-key"), expired):
        refused = client.get("/api/echo", headers={"Authorization": f"Bearer {token}"})
        assert (refused.status_code, refused.text) == (401, GENERIC)
    assert client.get("/api/echo").text == GENERIC


def test_the_token_names_its_key_without_revealing_it() -> None:
    provider = DevIdentityProvider()
    header = jwt.unverified_header(provider.mint())
    assert header == {"alg": "HS256", "typ": "JWT", "kid": provider.key_id}
    assert provider.key.hex() not in provider.key_id
