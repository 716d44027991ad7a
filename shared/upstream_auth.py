"""How the relay authenticates to Azure OpenAI.

Both modes give the headers for the next upstream request, and say what to
retry with when Azure OpenAI answers 401:

- managed identity: ``Authorization: Bearer <Entra token>``, the token cached
  until shortly before it expires and fetched once however many requests wait;
  a 401 is not retried (a fresh token from the same identity would fail alike);
- key: ``api-key: <key from Key Vault>``; a 401 means the key was rotated, so it
  is re-read once (single flight) and the request retried once.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from shared.errors import UpstreamCredentialError

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken
    from azure.core.credentials_async import AsyncTokenCredential

    from shared.config import Settings

COGNITIVE_SERVICES_SCOPE = "https://cognitiveservices.azure.com/.default"
# Refresh this long before expiry, so a request never leaves with a token about to lapse.
_REFRESH_MARGIN_S = 300.0
# Key Vault is called with bounds like the upstream call: azure-core's default of ten retries would hold requests for a minute.
_KEYVAULT_RETRIES = 1
# The longest wait for a connection to Azure OpenAI or Key Vault (less when RELAY_UPSTREAM_TIMEOUT_S is shorter).
MAX_CONNECT_TIMEOUT_S = 10.0
# What to check when no token can be had, by where the relay runs (create_credential's two cases).
MANAGED_IDENTITY_HINT = "check the identity assigned to the function app and AZURE_CLIENT_ID (IDENTITY_ENDPOINT locally)"
DEVELOPER_LOGIN_HINT = (
    "no managed identity here (IDENTITY_ENDPOINT is unset), so the relay uses your developer login: run `az login` "
    "with an account that has the Cognitive Services OpenAI User role on the resource"
)
# The credential's own message goes into the log line, on one line and at most this long.
MAX_DETAIL_CHARS = 1500
_SECRET_SHAPES = (
    re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]*"),  # a JWT
    re.compile(r"(?i)\b(bearer\s+)[\w.~+/=-]+"),
    re.compile(r"(?i)\b((?:client_secret|secret|password|access_token|refresh_token|assertion|sig)=)[^\s&\"']+"),
)


def create_credential(settings: Settings) -> AsyncTokenCredential:
    """The function's identity: ``ManagedIdentityCredential`` on App Service, else the developer's login."""
    if settings.identity_endpoint:
        from azure.identity.aio import ManagedIdentityCredential

        return ManagedIdentityCredential(client_id=settings.client_id)
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=settings.client_id)


def credential_hint(settings: Settings) -> str:
    """What to check when :func:`create_credential`'s credential gives no token."""
    return MANAGED_IDENTITY_HINT if settings.identity_endpoint else DEVELOPER_LOGIN_HINT


def credential_detail(exc: BaseException) -> str:
    """The credential's own message on one line, bounded, with anything shaped like a token or a secret masked."""
    text = " | ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    for shape in _SECRET_SHAPES:
        text = shape.sub(lambda match: (match.group(1) if match.groups() else "") + "[redacted]", text)
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 1] + "…"


def create_upstream_auth(settings: Settings) -> UpstreamAuth:
    """The production credentials: the managed identity's token, or (key mode) a Key Vault key read with it."""
    credential = create_credential(settings)
    if settings.auth_mode != "key":
        rejection = BearerTokenAuth.MANAGED_IDENTITY_REJECTION if settings.identity_endpoint else BearerTokenAuth.DEVELOPER_LOGIN_REJECTION
        return BearerTokenAuth(CachedToken(credential, COGNITIVE_SERVICES_SCOPE, hint=credential_hint(settings)), rejection)
    from shared.keyvault_key import KeyVaultKeySource

    assert settings.keyvault_url is not None and settings.key_secret_name is not None
    keys = KeyVaultKeySource(
        settings.keyvault_url,
        settings.key_secret_name,
        credential,
        retry_total=_KEYVAULT_RETRIES,
        connection_timeout=min(MAX_CONNECT_TIMEOUT_S, settings.upstream_timeout_s),
        read_timeout=settings.upstream_timeout_s,
    )
    return ApiKeyAuth(keys, credential)


class CachedToken:
    """An Entra access token for one scope, cached until near expiry, fetched single-flight."""

    def __init__(self, credential: AsyncTokenCredential, scope: str, hint: str = MANAGED_IDENTITY_HINT) -> None:
        """``hint`` says what to check when no token can be had (:func:`credential_hint`)."""
        self._credential = credential
        self._scope = scope
        self._hint = hint
        self._token: str | None = None
        self._refresh_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        if self._token is not None and time.time() < self._refresh_at:
            return self._token
        async with self._lock:
            if self._token is None or time.time() >= self._refresh_at:
                access = await self._get_token()
                lifetime = access.expires_on - time.time()
                self._refresh_at = access.expires_on - min(_REFRESH_MARGIN_S, lifetime / 2)
                self._token = access.token
            return self._token

    async def aclose(self) -> None:
        await self._credential.close()

    async def _get_token(self) -> AccessToken:
        from azure.core.exceptions import AzureError

        try:
            return await self._credential.get_token(self._scope)
        except AzureError as exc:
            raise UpstreamCredentialError(
                f"no token for {self._scope}: {self._hint} ({type(exc).__name__}: {credential_detail(exc)})"
            ) from None


class KeySource(Protocol):
    """``get`` and ``refresh`` raise :class:`UpstreamCredentialError` when the key cannot be read."""

    async def get(self) -> str: ...

    async def refresh(self, stale: str) -> str: ...

    async def aclose(self) -> None: ...


class UpstreamAuth(Protocol):
    # What an operator should check when Azure OpenAI refuses these credentials (logged, never sent to callers).
    rejection_hint: str

    async def headers(self) -> dict[str, str]:
        """Headers that authenticate the next request; raise :class:`UpstreamCredentialError` when unavailable."""
        ...

    async def after_rejection(self, sent: Mapping[str, str]) -> dict[str, str] | None:
        """Headers to retry with once after a 401 to ``sent``, or None when a retry cannot help."""
        ...

    async def aclose(self) -> None:
        """Close the credential and any client behind it."""
        ...


class BearerTokenAuth:
    MANAGED_IDENTITY_REJECTION = (
        "Azure OpenAI refused the managed identity's token: check that the identity (AZURE_CLIENT_ID) has the "
        "Cognitive Services OpenAI User role on the resource named by AZURE_OPENAI_ENDPOINT"
    )
    DEVELOPER_LOGIN_REJECTION = (
        "Azure OpenAI refused your developer login's token (no managed identity here): check that the account "
        "you signed in with (`az account show`) has the Cognitive Services OpenAI User role on the resource "
        "named by AZURE_OPENAI_ENDPOINT"
    )

    def __init__(self, token: CachedToken, rejection_hint: str = MANAGED_IDENTITY_REJECTION) -> None:
        self._token = token
        self.rejection_hint = rejection_hint

    async def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self._token.get()}"}

    async def after_rejection(self, sent: Mapping[str, str]) -> dict[str, str] | None:
        return None

    async def aclose(self) -> None:
        await self._token.aclose()


class ApiKeyAuth:
    rejection_hint = (
        "Azure OpenAI refused the key from Key Vault, also after re-reading it: check that the secret named by "
        "AZURE_OPENAI_KEY_SECRET_NAME holds a current key of the resource named by AZURE_OPENAI_ENDPOINT"
    )

    def __init__(self, keys: KeySource, credential: AsyncTokenCredential) -> None:
        """``credential`` is the one ``keys`` reads Key Vault with; closed with it."""
        self._keys = keys
        self._credential = credential

    async def headers(self) -> dict[str, str]:
        return {"api-key": await self._keys.get()}

    async def after_rejection(self, sent: Mapping[str, str]) -> dict[str, str] | None:
        return {"api-key": await self._keys.refresh(sent["api-key"])}

    async def aclose(self) -> None:
        await self._keys.aclose()
        await self._credential.close()
