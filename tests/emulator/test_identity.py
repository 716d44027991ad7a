"""The App Service managed identity endpoint, driven by azure-identity's real credential."""

from __future__ import annotations

import time

import httpx2
import pytest
from azure.identity.aio import ManagedIdentityCredential

from devhost.emulator.tokens import DEFAULT_CLIENT_ID, TENANT_ID
from tests.support.emulator import COGNITIVE_SCOPE, IDENTITY_HEADER, Emulator
from tests.support.tokens import claims_of as claims

USER_ASSIGNED = "11111111-2222-4333-8444-555555555555"


@pytest.fixture
def identity_env(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", emulator.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)


@pytest.mark.usefixtures("identity_env")
async def test_system_assigned_token_from_real_credential(emulator: Emulator) -> None:
    async with ManagedIdentityCredential() as credential:
        token = await credential.get_token(COGNITIVE_SCOPE)
    assert token.expires_on > time.time() + 3000
    got = claims(token.token)
    assert got["aud"] == "https://cognitiveservices.azure.com"
    assert got["iss"] == f"https://sts.windows.net/{TENANT_ID}/"
    assert got["tid"] == TENANT_ID
    assert got["appid"] == got["azp"] == DEFAULT_CLIENT_ID
    assert got["idtyp"] == "app"
    assert got["iat"] <= got["nbf"] + 1 and got["exp"] == token.expires_on
    assert emulator.stats()["token_requests"] == 1


@pytest.mark.usefixtures("identity_env")
async def test_user_assigned_identity_gets_its_own_client_id_and_oid(emulator: Emulator) -> None:
    async with ManagedIdentityCredential(client_id=USER_ASSIGNED) as credential:
        token = await credential.get_token("https://vault.azure.net/.default")
    got = claims(token.token)
    assert got["appid"] == USER_ASSIGNED
    assert got["aud"] == "https://vault.azure.net"
    assert got["oid"] != claims(emulator.token())["oid"]


async def test_raw_response_shape(http: httpx2.AsyncClient) -> None:
    response = await http.get(
        "/msi/token",
        params={"api-version": "2019-08-01", "resource": "https://cognitiveservices.azure.com"},
        headers={"X-IDENTITY-HEADER": IDENTITY_HEADER},
    )
    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert isinstance(body["expires_on"], str) and int(body["expires_on"]) > time.time()
    assert body["token_type"] == "Bearer" and body["resource"] == "https://cognitiveservices.azure.com"


@pytest.mark.parametrize(
    ("headers", "params", "status"),
    [
        ({}, {"api-version": "2019-08-01", "resource": "r"}, 400),
        ({"X-IDENTITY-HEADER": "wrong"}, {"api-version": "2019-08-01", "resource": "r"}, 401),
        ({"X-IDENTITY-HEADER": IDENTITY_HEADER}, {"api-version": "2019-08-01"}, 400),
        ({"X-IDENTITY-HEADER": IDENTITY_HEADER}, {"api-version": "2017-09-01", "resource": "r"}, 400),
        ({"X-IDENTITY-HEADER": IDENTITY_HEADER}, {"api-version": "2019-08-01", "resource": "r", "client_id": "x"}, 400),
    ],
)
async def test_bad_token_requests_are_refused(
    http: httpx2.AsyncClient, headers: dict[str, str], params: dict[str, str], status: int
) -> None:
    response = await http.get("/msi/token", params=params, headers=headers)
    assert response.status_code == status
    assert response.json()["statusCode"] == status
    assert "access_token" not in response.text


async def test_wrong_header_fails_the_real_credential(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", emulator.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-secret")
    async with ManagedIdentityCredential() as credential:
        with pytest.raises(Exception, match=r"401|X-IDENTITY-HEADER"):
            await credential.get_token(COGNITIVE_SCOPE)
