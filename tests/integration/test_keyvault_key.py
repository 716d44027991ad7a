"""shared.keyvault_key: the relay's Key Vault key source, with the real SecretClient against the Key Vault emulator.

In-process clients trust the emulator's CA through azure-core's ``connection_verify``
transport option; the relay process is expected to use ``SSL_CERT_FILE`` (checked in a
subprocess below, as aiohttp reads it when it is imported).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from azure.identity.aio import ManagedIdentityCredential

from shared import keyvault_key
from shared.keyvault_key import KeyVaultKeyError, KeyVaultKeySource
from tests.support.emulator import API_KEY, IDENTITY_HEADER, Emulator
from tests.support.servers import ROOT, free_port

SECRET = "azure-openai-key"


def source(emulator: Emulator, credential: ManagedIdentityCredential, name: str = SECRET) -> KeyVaultKeySource:
    return KeyVaultKeySource(emulator.vault_url, name, credential, connection_verify=str(emulator.ca_file))


@pytest.mark.asyncio
async def test_many_gets_cause_one_read(emulator: Emulator, credential: ManagedIdentityCredential) -> None:
    keys = source(emulator, credential)
    try:
        concurrent = await asyncio.gather(*(keys.get() for _ in range(100)))
        sequential = [await keys.get() for _ in range(100)]
    finally:
        await keys.aclose()
    assert set(concurrent) == set(sequential) == {API_KEY}
    assert emulator.stats()["keyvault_secret_reads"] == 1


@pytest.mark.asyncio
async def test_rotation_refresh_reads_once(emulator: Emulator, credential: ManagedIdentityCredential) -> None:
    emulator.control("PUT", "keyvault/secrets/rotating", {"value": "first-key"})
    keys = source(emulator, credential, name="rotating")
    try:
        old = await keys.get()
        emulator.control("PUT", "keyvault/secrets/rotating", {"value": "rotated-key"})
        assert await keys.get() == old  # cached until the relay says it was refused
        refreshed = await asyncio.gather(*(keys.refresh(old) for _ in range(20)))
        again = await keys.refresh("some-older-key")
    finally:
        await keys.aclose()
    assert old == "first-key" and set(refreshed) == {"rotated-key"} and again == "rotated-key"
    assert emulator.stats()["keyvault_secret_reads"] == 2


@pytest.mark.asyncio
async def test_a_vault_still_holding_the_refused_key_is_re_read_at_most_every_interval(
    emulator: Emulator, credential: ManagedIdentityCredential, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The key was regenerated in Azure OpenAI before the secret was updated: every request sees a 401.
    emulator.control("PUT", "keyvault/secrets/lagging", {"value": "refused-key"})
    keys = source(emulator, credential, name="lagging")
    try:
        old = await keys.get()
        after_401s = [await keys.refresh(old) for _ in range(10)]
        reads_while_unchanged = emulator.stats()["keyvault_secret_reads"]
        emulator.control("PUT", "keyvault/secrets/lagging", {"value": "updated-key"})
        monkeypatch.setattr(keyvault_key, "MIN_REREAD_INTERVAL_S", 0.0)  # the interval has passed
        updated = await keys.refresh(old)
    finally:
        await keys.aclose()
    assert after_401s == ["refused-key"] * 10 and reads_while_unchanged == 2  # the first get, then one re-read
    assert updated == "updated-key"


@pytest.mark.asyncio
async def test_callers_waiting_on_a_failing_read_share_its_failure(emulator: Emulator, credential: ManagedIdentityCredential) -> None:
    keys = source(emulator, credential, name="not-there")
    before = emulator.stats()["keyvault_requests"]
    try:
        results = await asyncio.gather(*(keys.get() for _ in range(20)), return_exceptions=True)
    finally:
        await keys.aclose()
    assert all(isinstance(result, KeyVaultKeyError) for result in results)
    # One read (after Key Vault's authentication challenge), not one per waiting caller.
    assert emulator.stats()["keyvault_requests"] - before <= 2


@pytest.mark.asyncio
async def test_missing_secret_names_the_settings(emulator: Emulator, credential: ManagedIdentityCredential) -> None:
    keys = source(emulator, credential, name="not-there")
    try:
        with pytest.raises(KeyVaultKeyError) as caught:
            await keys.get()
    finally:
        await keys.aclose()
    message = str(caught.value)
    assert "not-there" in message and "AZURE_OPENAI_KEY_SECRET_NAME" in message and "AZURE_KEYVAULT_URL" in message
    assert API_KEY not in message


@pytest.mark.asyncio
async def test_unreachable_vault_names_the_url_setting(credential: ManagedIdentityCredential) -> None:
    keys = KeyVaultKeySource(f"https://127.0.0.1:{free_port()}", SECRET, credential, retry_total=0)
    try:
        with pytest.raises(KeyVaultKeyError, match="AZURE_KEYVAULT_URL"):
            await keys.get()
    finally:
        await keys.aclose()


@pytest.mark.asyncio
async def test_challenge_verification_is_off_only_for_loopback(credential: ManagedIdentityCredential) -> None:
    def verifies(url: str) -> bool:
        keys = KeyVaultKeySource(url, SECRET, credential)
        # The SDK has no public accessor for this flag.
        return bool(keys._client._client._config.authentication_policy._verify_challenge_resource)

    assert verifies("https://myvault.vault.azure.net")
    assert not verifies("https://127.0.0.1:8443") and not verifies("https://localhost:8443")
    with pytest.raises(TypeError):
        KeyVaultKeySource("https://myvault.vault.azure.net", SECRET, credential, verify_challenge_resource=False)


def test_relay_process_trusts_the_ca_through_ssl_cert_file(emulator: Emulator) -> None:
    script = (
        "import asyncio\n"
        "from azure.identity.aio import ManagedIdentityCredential\n"
        "from shared.keyvault_key import KeyVaultKeySource\n"
        "async def main():\n"
        "    async with ManagedIdentityCredential() as credential:\n"
        f"        keys = KeyVaultKeySource({emulator.vault_url!r}, {SECRET!r}, credential)\n"
        "        print(len(await keys.get()))\n"
        "        await keys.aclose()\n"
        "asyncio.run(main())\n"
    )
    env = {
        **os.environ,
        "SSL_CERT_FILE": str(emulator.ca_file),
        "IDENTITY_ENDPOINT": emulator.identity_endpoint,
        "IDENTITY_HEADER": IDENTITY_HEADER,
    }
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert json.loads(done.stdout) == len(API_KEY)
