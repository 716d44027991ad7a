"""shared.keyvault_key: the Azure OpenAI key read once, re-read once per rotation however many requests saw the 401, never shown."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestError

from shared.keyvault_key import MIN_REREAD_INTERVAL_S, KeyVaultKeyError, KeyVaultKeySource

VAULT = "https://kv-relay.vault.azure.net"


@dataclass
class Secret:
    value: str | None


class Vault:
    """A SecretClient stand-in: the secret's current value, or the failure to raise; counts reads."""

    def __init__(self, value: str | None = "key-1") -> None:
        self.value = value
        self.failure: Exception | None = None
        self.reads = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def get_secret(self, name: str) -> Secret:
        assert name == "aoai-key"
        self.reads += 1
        await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return Secret(self.value)

    async def close(self) -> None:
        pass


class NoCredential:
    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        raise AssertionError("the stand-in vault needs no token")

    async def close(self) -> None:
        pass


def source_with(vault: Vault) -> KeyVaultKeySource:
    source = KeyVaultKeySource(VAULT, "aoai-key", NoCredential())  # type: ignore[arg-type]
    source._client = vault  # type: ignore[assignment]
    return source


async def test_the_key_is_read_once_and_then_served_from_memory() -> None:
    vault = Vault()
    source = source_with(vault)
    assert [await source.get() for _ in range(3)] == ["key-1"] * 3
    assert vault.reads == 1


async def test_many_requests_refused_with_the_same_key_cause_one_read_and_all_get_the_new_key() -> None:
    vault = Vault()
    source = source_with(vault)
    await source.get()
    vault.value = "key-2"
    vault.gate.clear()
    refreshes = [asyncio.ensure_future(source.refresh("key-1")) for _ in range(20)]
    await asyncio.sleep(0)
    vault.gate.set()
    assert await asyncio.gather(*refreshes) == ["key-2"] * 20
    assert vault.reads == 2
    assert await source.refresh("key-1") == "key-2" and vault.reads == 2  # already replaced: no read


async def test_a_vault_still_holding_the_refused_key_is_re_read_at_most_every_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("shared.keyvault_key.time.monotonic", lambda: now[0])
    vault = Vault()
    source = source_with(vault)
    await source.get()
    assert await source.refresh("key-1") == "key-1" and vault.reads == 2
    now[0] += MIN_REREAD_INTERVAL_S / 2
    assert await source.refresh("key-1") == "key-1" and vault.reads == 2
    now[0] += MIN_REREAD_INTERVAL_S
    vault.value = "key-2"
    assert await source.refresh("key-1") == "key-2" and vault.reads == 3


def refused(status: int) -> HttpResponseError:
    error = HttpResponseError(message="Forbidden")
    error.status_code = status
    return error


@pytest.mark.parametrize(
    ("failure", "value", "says"),
    [
        (ResourceNotFoundError("SecretNotFound"), "key-1", "Key Vault has no secret 'aoai-key'"),
        (refused(403), "key-1", "Key Vault Secrets User"),
        (ServiceRequestError("connection refused"), "key-1", "ServiceRequestError; check AZURE_KEYVAULT_URL"),
        (None, "", "is empty"),
    ],
)
async def test_a_key_that_cannot_be_read_is_an_error_naming_what_to_check(failure: Exception | None, value: str, says: str) -> None:
    vault = Vault(value)
    vault.failure = failure
    source = source_with(vault)
    with pytest.raises(KeyVaultKeyError) as caught:
        await source.get()
    assert says in str(caught.value) and VAULT in str(caught.value)


async def test_a_failed_read_is_shared_by_its_waiters_and_the_next_request_reads_again() -> None:
    vault = Vault()
    vault.failure = ServiceRequestError("connection refused")
    vault.gate.clear()
    source = source_with(vault)
    waiters = [asyncio.ensure_future(source.get()) for _ in range(5)]
    await asyncio.sleep(0)
    vault.gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(result, KeyVaultKeyError) for result in results) and vault.reads == 1
    vault.failure = None
    assert await source.get() == "key-1" and vault.reads == 2


async def test_a_caller_that_leaves_does_not_cancel_the_read_others_wait_for() -> None:
    vault = Vault()
    vault.gate.clear()
    source = source_with(vault)
    leaving, staying = asyncio.ensure_future(source.get()), asyncio.ensure_future(source.get())
    await asyncio.sleep(0)
    leaving.cancel()
    vault.gate.set()
    assert await staying == "key-1" and vault.reads == 1


def test_the_challenge_check_cannot_be_turned_off_by_an_option() -> None:
    with pytest.raises(TypeError):
        KeyVaultKeySource(VAULT, "aoai-key", NoCredential(), verify_challenge_resource=False)  # type: ignore[arg-type]
