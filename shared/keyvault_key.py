"""The Azure OpenAI API key, read from Key Vault with the managed identity (``AZURE_OPENAI_AUTH=key``).

The value is cached in the process. After an upstream 401 the relay calls
``refresh(stale)`` with the key it used: only the first caller that still sees
that key re-reads the secret, the others join that read and share its result,
the new key or the failure (single flight), so a rotation costs one Key Vault
read however many requests saw the 401, and an unreachable vault fails them
together instead of one after another. While the vault still holds the refused
key (the key was regenerated in Azure OpenAI before the secret was updated), it
is re-read at most every ``MIN_REREAD_INTERVAL_S``. The value is never logged or
put in an error message.

Key Vault's challenge names ``https://vault.azure.net`` as the resource; the SDK
checks that the vault's host is under that domain, which a loopback emulator
cannot be. The check is turned off only when the vault URL's host is a loopback
address — never through a setting.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.keyvault.secrets.aio import SecretClient

from shared.errors import UpstreamCredentialError
from shared.header_checks import is_loopback_host

MIN_REREAD_INTERVAL_S = 10.0


class KeyVaultKeyError(UpstreamCredentialError):
    """The key could not be read; the message says which setting or secret to check (never the value)."""


class KeyVaultKeySource:
    """``get()`` the cached key (first call reads it); ``refresh(stale)`` after the key was refused."""

    def __init__(self, vault_url: str, secret_name: str, credential: AsyncTokenCredential, **client_options: Any) -> None:
        """``client_options`` go to ``SecretClient`` (azure-core options such as ``retry_total``)."""
        if "verify_challenge_resource" in client_options:
            raise TypeError("verify_challenge_resource is decided by the vault URL, not by the caller")
        self._vault_url = vault_url
        self._secret_name = secret_name
        self._client = SecretClient(
            vault_url,
            credential,
            verify_challenge_resource=not is_loopback_host(urlsplit(vault_url).hostname),
            **client_options,
        )
        self._value: str | None = None
        # When a re-read after a 401 last found the vault still holding the refused key.
        self._unchanged_at = float("-inf")
        self._reading: asyncio.Task[str] | None = None

    async def get(self) -> str:
        if self._value is not None:
            return self._value
        return await self._read_once()

    async def refresh(self, stale: str) -> str:
        """Re-read the secret unless someone already replaced ``stale``; return the current key."""
        current = self._value
        if self._reading is None and current is not None:
            recently_unchanged = time.monotonic() - self._unchanged_at < MIN_REREAD_INTERVAL_S
            if current != stale or recently_unchanged:
                return current
        value = await self._read_once()
        if value == stale:
            self._unchanged_at = time.monotonic()
        return value

    async def _read_once(self) -> str:
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._read_and_keep())
            self._reading.add_done_callback(self._read_done)
        # Shielded: a caller that goes away must not cancel the read the others are waiting for.
        return await asyncio.shield(self._reading)

    def _read_done(self, task: asyncio.Task[str]) -> None:
        self._reading = None
        if not task.cancelled():
            task.exception()  # retrieved here, so a read nobody waits for any more is not reported as unhandled

    async def _read_and_keep(self) -> str:
        self._value = await self._read()
        return self._value

    async def aclose(self) -> None:
        await self._client.close()

    async def _read(self) -> str:
        where = f"secret {self._secret_name!r} (AZURE_OPENAI_KEY_SECRET_NAME) in {self._vault_url} (AZURE_KEYVAULT_URL)"
        try:
            secret = await self._client.get_secret(self._secret_name)
        except ResourceNotFoundError as exc:
            raise KeyVaultKeyError(f"Key Vault has no {where}: check both settings") from exc
        except HttpResponseError as exc:
            raise KeyVaultKeyError(
                f"Key Vault refused to read {where} (HTTP {exc.status_code}): check the settings and that the "
                "managed identity has the Key Vault Secrets User role"
            ) from exc
        except AzureError as exc:
            raise KeyVaultKeyError(f"could not read {where}: {type(exc).__name__}; check AZURE_KEYVAULT_URL") from exc
        if not secret.value:
            raise KeyVaultKeyError(f"the {where} is empty")
        return secret.value
