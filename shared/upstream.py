"""The one Azure OpenAI client of this worker process (SPEC §7).

Uses the official ``openai`` SDK with a raw streaming response, so the relay
forwards Azure's bytes instead of parsing and re-serialising them. Retries are
the relay's own, bounded, and happen only before anything reached the caller;
Azure's errors are mapped to the error table of SPEC §3 without ever passing
on an upstream URL, token or key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import httpx2

from shared.config import Settings
from shared.errors import RelayError
from shared.upstream_auth import UpstreamCredentialError

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai._response import AsyncAPIResponse

log = logging.getLogger("relay")

MAX_RETRIES = 2
# A 429 whose Retry-After is longer than this goes back to the caller instead of holding its request.
MAX_RETRY_AFTER_S = 2.0
_RETRYABLE_STATUS = frozenset({500, 502, 503, 504})
_URL = re.compile(r"https?://\S+")
# The SDK insists on an API key; the real credential is set by the transport's auth flow.
_AUTH_BY_TRANSPORT = "set-by-upstream-auth-flow"


class UpstreamResponse:
    """A 2xx answer from Azure OpenAI whose body has not been read yet."""

    def __init__(self, response: AsyncAPIResponse[Any], context: AbstractAsyncContextManager[Any]) -> None:
        self._response = response
        self._context = context

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    async def read(self) -> bytes:
        return await self._response.read()

    def iter_bytes(self) -> AsyncIterator[bytes]:
        return self._response.iter_bytes()

    async def aclose(self) -> None:
        await self._context.__aexit__(None, None, None)


class Upstream:
    def __init__(self, settings: Settings, auth: httpx2.Auth, transport: httpx2.AsyncBaseTransport | None = None) -> None:
        self._timeout = settings.upstream_timeout_s
        http_client = httpx2.AsyncClient(
            auth=auth,
            transport=transport,
            timeout=httpx2.Timeout(settings.upstream_timeout_s, connect=min(10.0, settings.upstream_timeout_s)),
            limits=httpx2.Limits(max_connections=256, max_keepalive_connections=64),
        )
        self._client = _sdk_client(settings, http_client)

    async def aclose(self) -> None:
        await self._client.close()

    async def open(self, body: dict[str, Any], request_id: str) -> UpstreamResponse:
        """Send the chat completion; return once Azure answered 2xx, or raise a mapped RelayError."""
        for attempt in range(MAX_RETRIES + 1):
            try:
                return await self._open_once(body, request_id)
            except _Retryable as retry:
                if attempt == MAX_RETRIES:
                    raise retry.error from None
                await asyncio.sleep(retry.delay if retry.delay is not None else _backoff(attempt))
        raise AssertionError("unreachable")

    async def _open_once(self, body: dict[str, Any], request_id: str) -> UpstreamResponse:
        from openai import APIConnectionError, APIStatusError, APITimeoutError

        extra = {name: value for name, value in body.items() if name not in ("model", "messages")}
        context = self._client.chat.completions.with_streaming_response.create(
            model=body["model"],
            messages=body["messages"],
            extra_body=extra,
            extra_headers={"x-ms-client-request-id": request_id},
        )
        try:
            response = await context.__aenter__()
        except UpstreamCredentialError as exc:
            raise _credential_error(exc) from None
        except APIStatusError as exc:
            raise _status_error(exc.status_code, exc.body, exc.response.headers) from None
        except APITimeoutError:
            raise RelayError(504, "upstream_timeout", "Azure OpenAI did not answer in time.", error_type="api_error") from None
        except APIConnectionError as exc:
            if isinstance(exc.__cause__, UpstreamCredentialError):
                raise _credential_error(exc.__cause__) from None
            raise _Retryable(upstream_error("Azure OpenAI could not be reached."), None) from None
        return UpstreamResponse(response, context)


def _sdk_client(settings: Settings, http_client: httpx2.AsyncClient) -> AsyncOpenAI:
    from openai import AsyncAzureOpenAI, AsyncOpenAI

    if settings.api_version == "v1":
        return AsyncOpenAI(
            base_url=f"{settings.endpoint}/openai/v1/",
            api_key=_AUTH_BY_TRANSPORT,
            http_client=http_client,
            max_retries=0,
        )
    return AsyncAzureOpenAI(
        azure_endpoint=settings.endpoint,
        api_version=settings.api_version,
        api_key=_AUTH_BY_TRANSPORT,
        http_client=http_client,
        max_retries=0,
    )


class _Retryable(Exception):
    def __init__(self, error: RelayError, delay: float | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.delay = delay


def _backoff(attempt: int) -> float:
    return float(0.1 * 2**attempt + random.uniform(0, 0.05))


def _credential_error(exc: UpstreamCredentialError) -> RelayError:
    log.error(json.dumps({"event": "relay.credential_error", "detail": str(exc)}))
    return upstream_error("The relay could not obtain its credentials for Azure OpenAI.")


def upstream_error(message: str) -> RelayError:
    return RelayError(502, "upstream_error", message, error_type="api_error")


def _retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) / scale
        except ValueError:
            continue
        if math.isfinite(value) and value >= 0:
            return value
    return None


def _error_fields(body: object) -> dict[str, Any]:
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return inner
    return {}


def _status_error(status: int, body: object, headers: Mapping[str, str]) -> Exception:
    fields = _error_fields(body)
    code = fields.get("code")
    if status == 400 and code == "content_filter":
        innererror = fields.get("innererror")
        result = innererror.get("content_filter_result") if isinstance(innererror, dict) else None
        return RelayError(
            400,
            "content_filter",
            "The prompt was blocked by Azure OpenAI's content management policy.",
            param="prompt",
            extra={"content_filter_result": result if isinstance(result, dict) else {}},
        )
    if status == 429:
        retry_after = _retry_after_seconds(headers)
        error = RelayError(
            429,
            "rate_limited",
            "Azure OpenAI is rate limiting this application. Retry after the time in the Retry-After header.",
            error_type="rate_limit_error",
            headers={"Retry-After": str(math.ceil(retry_after if retry_after is not None else 1))},
        )
        if retry_after is not None and retry_after <= MAX_RETRY_AFTER_S:
            return _Retryable(error, retry_after)
        return error
    if status in (400, 422):
        message = fields.get("message")
        text = _URL.sub("<url>", message)[:500] if isinstance(message, str) else "Azure OpenAI rejected the request."
        param = fields.get("param")
        return RelayError(400, "invalid_request", text, param=param if isinstance(param, str) else None)
    if status in (401, 403):
        return upstream_error("The relay could not authenticate to Azure OpenAI.")
    if status == 404:
        return upstream_error("The deployment was not found on Azure OpenAI.")
    error = upstream_error(f"Azure OpenAI answered with status {status}.")
    if status in _RETRYABLE_STATUS:
        return _Retryable(error, None)
    return error
