"""The Azure OpenAI API key, read from Key Vault with the managed identity (SPEC §7, ``AZURE_OPENAI_AUTH=key``).

The value is cached in the process. After an upstream 401 the relay calls
``refresh(stale)`` with the key it used: only the first caller that still sees
that key re-reads the secret, the others wait for it and share the new value
(single flight), so a rotation costs one Key Vault read however many requests
saw the 401. The value is never logged or put in an error message.

Key Vault's challenge names ``https://vault.azure.net`` as the resource; the SDK
checks that the vault's host is under that domain, which a loopback emulator
cannot be. The check is turned off only when the vault URL's host is a loopback
address — never through a setting.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.keyvault.secrets.aio import SecretClient

from shared.config import is_loopback_host
from shared.upstream_auth import UpstreamCredentialError


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
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        if self._value is not None:
            return self._value
        async with self._lock:
            if self._value is None:
                self._value = await self._read()
            return self._value

    async def refresh(self, stale: str) -> str:
        """Re-read the secret unless someone already replaced ``stale``; return the current key."""
        async with self._lock:
            if self._value is None or self._value == stale:
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
