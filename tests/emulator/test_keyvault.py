"""The Key Vault emulator over TLS, as a raw client and the real SecretClient see it (the relay's own
Key Vault client is tested in tests/integration/test_keyvault_key.py)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import httpx2
import pytest_asyncio
from azure.identity.aio import ManagedIdentityCredential
from azure.keyvault.secrets.aio import SecretClient

from devhost.emulator.keyvault import CHALLENGE
from tests.support.emulator import API_KEY, Emulator

SECRET = "azure-openai-key"


@pytest_asyncio.fixture
async def vault(emulator: Emulator) -> AsyncIterator[httpx2.AsyncClient]:
    context = ssl.create_default_context(cafile=str(emulator.ca_file))
    async with httpx2.AsyncClient(base_url=emulator.vault_url, verify=context, timeout=5) as client:
        yield client


async def test_unauthenticated_request_gets_the_challenge(vault: httpx2.AsyncClient, emulator: Emulator) -> None:
    response = await vault.get(f"/secrets/{SECRET}", params={"api-version": "7.5"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == CHALLENGE
    assert response.json()["error"]["code"] == "Unauthorized"
    wrong_audience = await vault.get(
        f"/secrets/{SECRET}", params={"api-version": "7.5"}, headers={"Authorization": f"Bearer {emulator.token()}"}
    )
    assert wrong_audience.status_code == 401
    assert emulator.stats()["keyvault_secret_reads"] == 0


async def test_secret_shape_and_missing_secret(vault: httpx2.AsyncClient, emulator: Emulator) -> None:
    auth = {"Authorization": f"Bearer {emulator.token('https://vault.azure.net')}"}
    found = await vault.get(f"/secrets/{SECRET}", params={"api-version": "7.5"}, headers=auth)
    body = found.json()
    assert body["value"] == API_KEY
    assert body["id"].startswith(f"{emulator.vault_url}/secrets/{SECRET}/")
    assert body["attributes"]["enabled"] is True and "recoveryLevel" in body["attributes"]
    missing = await vault.get("/secrets/nope", params={"api-version": "7.5"}, headers=auth)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "SecretNotFound"
    assert emulator.stats() | {"token_requests": 0} == {
        "token_requests": 0,
        "chat_requests": 0,
        "responses_requests": 0,
        "cancelled_streams": 0,
        "keyvault_requests": 2,
        "keyvault_secret_reads": 1,
    }


async def test_real_secret_client_reads_versions(emulator: Emulator, credential: ManagedIdentityCredential) -> None:
    emulator.control("PUT", "keyvault/secrets/other", {"value": "v1"})
    emulator.control("PUT", "keyvault/secrets/other", {"value": "v2"})
    async with SecretClient(
        emulator.vault_url, credential, verify_challenge_resource=False, connection_verify=str(emulator.ca_file)
    ) as client:
        latest = await client.get_secret("other")
        versions = [p.version async for p in client.list_properties_of_secret_versions("other")]
        first = await client.get_secret("other", versions[0])
    assert (latest.value, first.value, len(versions)) == ("v2", "v1", 2)
