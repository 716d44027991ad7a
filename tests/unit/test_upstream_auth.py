"""The relay's managed-identity token: cached, refreshed before it lapses, fetched once however many wait."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

from shared import upstream_auth
from shared.config import load_settings
from shared.upstream_auth import COGNITIVE_SERVICES_SCOPE, CachedToken, UpstreamCredentialError


class FakeCredential:
    """Hands out token-1, token-2, ... each valid for ``lifetime_s``, after ``delay_s``."""

    def __init__(self, lifetime_s: float = 3600, delay_s: float = 0.0, fail: bool = False, clock: Any = time) -> None:
        self.clock = clock
        self.lifetime_s = lifetime_s
        self.delay_s = delay_s
        self.fail = fail
        self.calls: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls.append(scopes)
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise ClientAuthenticationError("IDENTITY_ENDPOINT answered 400: secret-detail")
        return AccessToken(f"token-{len(self.calls)}", int(self.clock.time() + self.lifetime_s))


async def test_a_warm_token_is_reused_without_asking_the_identity_again() -> None:
    credential = FakeCredential()
    token = CachedToken(credential, COGNITIVE_SERVICES_SCOPE)  # type: ignore[arg-type]
    assert [await token.get() for _ in range(50)] == ["token-1"] * 50
    assert credential.calls == [(COGNITIVE_SERVICES_SCOPE,)]


async def test_many_requests_waiting_on_a_cold_cache_cause_one_token_request() -> None:
    credential = FakeCredential(delay_s=0.05)
    token = CachedToken(credential, COGNITIVE_SERVICES_SCOPE)  # type: ignore[arg-type]
    got = await asyncio.gather(*(token.get() for _ in range(20)))
    assert set(got) == {"token-1"} and len(credential.calls) == 1


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("lifetime_s", "reused_until_s"),
    [(3600, 3300), (600, 300), (300, 150)],  # refreshed five minutes before expiry, or at half a shorter lifetime
)
async def test_a_token_is_replaced_before_it_lapses(monkeypatch: pytest.MonkeyPatch, lifetime_s: int, reused_until_s: int) -> None:
    clock = Clock()
    monkeypatch.setattr(upstream_auth, "time", clock)
    credential = FakeCredential(lifetime_s=lifetime_s, clock=clock)
    token = CachedToken(credential, COGNITIVE_SERVICES_SCOPE)  # type: ignore[arg-type]
    assert await token.get() == "token-1"
    clock.now += reused_until_s - 1
    assert await token.get() == "token-1"
    clock.now += 1
    assert await token.get() == "token-2"
    assert len(credential.calls) == 2


CLI_MISSING = (
    "DefaultAzureCredential failed to retrieve a token from the included credentials.\nAttempted credentials:\n"
    "\tEnvironmentCredential: EnvironmentCredential authentication unavailable.\n"
    "\tAzureCliCredential: Please run 'az login' to set up an account\n"
    "\tManagedIdentityCredential: IDENTITY_ENDPOINT answered 400: Bearer abc.def-secret, "
    "token eyJhbGciOiJSUzI1NiJ9.eyJvaWQiOiJ4In0.c2lnbmF0dXJl, https://kv.example/?sig=SIGVALUE&x=1"
)


class FailingCredential:
    def __init__(self, message: str) -> None:
        self.message = message

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        raise ClientAuthenticationError(self.message)


async def failure_of(hint: str, message: str = CLI_MISSING) -> str:
    token = CachedToken(FailingCredential(message), COGNITIVE_SERVICES_SCOPE, hint=hint)  # type: ignore[arg-type]
    with pytest.raises(UpstreamCredentialError) as caught:
        await token.get()
    return str(caught.value)


async def test_on_app_service_a_missing_token_points_at_the_function_apps_identity() -> None:
    settings = load_settings({**SETTINGS_ENV, "IDENTITY_ENDPOINT": "http://localhost:8081/msi/token"})
    message = await failure_of(upstream_auth.credential_hint(settings))
    assert "the identity assigned to the function app and AZURE_CLIENT_ID" in message
    assert "az login" not in message.split("(ClientAuthenticationError")[0]


async def test_on_a_laptop_a_missing_token_says_az_login_and_keeps_the_credentials_own_message() -> None:
    message = await failure_of(upstream_auth.credential_hint(load_settings(SETTINGS_ENV)))
    hint, _, detail = message.partition(" (ClientAuthenticationError: ")
    assert "run `az login`" in hint and "function app" not in hint
    assert "\n" not in message
    assert "AzureCliCredential: Please run 'az login' to set up an account" in detail
    assert "EnvironmentCredential authentication unavailable." in detail


async def test_the_credentials_message_loses_its_tokens_and_secrets() -> None:
    message = await failure_of(upstream_auth.MANAGED_IDENTITY_HINT)
    for secret in ("abc.def-secret", "eyJhbGciOiJSUzI1NiJ9", "c2lnbmF0dXJl", "SIGVALUE"):
        assert secret not in message
    assert "Bearer [redacted]" in message and "sig=[redacted]&x=1" in message


async def test_a_long_credential_message_is_cut_to_a_bounded_line() -> None:
    message = await failure_of(upstream_auth.MANAGED_IDENTITY_HINT, "x" * 10_000)
    detail = message.partition("(ClientAuthenticationError: ")[2]
    assert len(detail) == upstream_auth.MAX_DETAIL_CHARS + 1 and detail.endswith("…)")


SETTINGS_ENV = {"AZURE_OPENAI_ENDPOINT": "https://contoso-aoai.openai.azure.com", "AZURE_OPENAI_DEPLOYMENTS": "gpt-4o", "APPLICATION_NAME": "spa"}


async def test_the_managed_identity_is_used_where_the_settings_name_its_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    # The settings decide, read once at start-up: not the process environment at the time a credential is made.
    monkeypatch.delenv("IDENTITY_ENDPOINT", raising=False)
    settings = load_settings({**SETTINGS_ENV, "IDENTITY_ENDPOINT": "http://localhost:8081/msi/token"})
    credential = upstream_auth.create_credential(settings)
    try:
        assert isinstance(credential, ManagedIdentityCredential)
    finally:
        await credential.close()


async def test_without_a_managed_identity_endpoint_the_developers_login_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", "http://localhost:8081/msi/token")
    credential = upstream_auth.create_credential(load_settings(SETTINGS_ENV))
    try:
        assert isinstance(credential, DefaultAzureCredential)
    finally:
        await credential.close()


@pytest.mark.parametrize(
    ("identity_endpoint", "names"),
    [("http://localhost:8081/msi/token", "the identity (AZURE_CLIENT_ID)"), ("", "the account you signed in with (`az account show`)")],
)
async def test_a_refused_token_points_at_the_identity_that_asked_for_it(identity_endpoint: str, names: str) -> None:
    auth = upstream_auth.create_upstream_auth(load_settings({**SETTINGS_ENV, "IDENTITY_ENDPOINT": identity_endpoint}))
    try:
        assert names in auth.rejection_hint and "Cognitive Services OpenAI User" in auth.rejection_hint
    finally:
        await auth.aclose()
