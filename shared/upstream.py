"""The one Azure OpenAI client of this worker process (SPEC §7).

A single ``aiohttp`` session (one connection pool) posts the validated body
and hands back Azure's response unread, so the relay forwards Azure's bytes
instead of parsing and re-serialising them. The official ``openai`` SDK is not
used here: for a byte-forwarding relay its request building and validation
cost more CPU than everything else the relay does (docs/performance.md).
Retries are the relay's own, bounded, and happen only before anything reached
the caller; Azure's errors are mapped to the error table of SPEC §3 without
ever passing on an upstream URL, token or key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from shared.config import Settings
from shared.errors import RelayError, upstream_error, upstream_timeout
from shared.upstream_auth import UpstreamAuth, UpstreamCredentialError

log = logging.getLogger("relay")

MAX_RETRIES = 2
# A 429 whose Retry-After is longer than this goes back to the caller instead of holding its request.
MAX_RETRY_AFTER_S = 2.0
_RETRYABLE_STATUS = frozenset({500, 502, 503, 504})
# What an upstream message may hold that the caller must not see: URLs, Azure host names, tokens.
_UPSTREAM_DETAILS = re.compile(
    r"https?://\S+"
    r"|\b[\w-]+(?:\.[\w-]+)*\.(?:azure\.com|azure\.net|windows\.net|azure\.us|azure\.cn|microsoft\.com)\b"
    r"|\beyJ[\w-]*\.[\w-]+\.[\w-]*",
    re.IGNORECASE,
)
_USER_AGENT = "aoai-defender-relay/0.1"


class UpstreamResponse:
    """A 2xx answer from Azure OpenAI whose body has not been read yet.

    Transport failures while reading surface as :class:`RelayError` (502 or 504).
    """

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except TimeoutError:
            raise upstream_timeout() from None
        except aiohttp.ClientError:
            raise upstream_error("Azure OpenAI's response broke off.") from None

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for data in self._response.content.iter_any():
                yield data
        except TimeoutError:
            raise upstream_timeout("Azure OpenAI stopped sending in time.") from None
        except aiohttp.ClientError:
            leftover = _received_before_the_break(self._response.content)
            if leftover:
                yield leftover
            raise upstream_error("The stream from Azure OpenAI broke off.") from None

    def close(self) -> None:
        """Return the connection to the pool when the body was read to the end, else drop it (cancels upstream)."""
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class Upstream:
    def __init__(self, settings: Settings, auth: UpstreamAuth) -> None:
        """Create inside the worker's event loop (the session binds to it)."""
        self._auth = auth
        self._endpoint = settings.endpoint
        self._api_version = settings.api_version
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=min(10.0, settings.upstream_timeout_s), sock_read=settings.upstream_timeout_s
        )
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=60),
            timeout=timeout,
            headers={"User-Agent": _USER_AGENT},
        )

    async def aclose(self) -> None:
        await self._session.close()

    def url(self, deployment: str) -> str:
        if self._api_version == "v1":
            return f"{self._endpoint}/openai/v1/chat/completions"
        return f"{self._endpoint}/openai/deployments/{deployment}/chat/completions?api-version={self._api_version}"

    async def open(self, body: dict[str, Any], request_id: str) -> UpstreamResponse:
        """Send the chat completion; return once Azure answered 2xx, or raise a mapped RelayError."""
        url = self.url(body["model"])
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        for attempt in range(MAX_RETRIES + 1):
            try:
                return await self._open_once(url, payload, request_id)
            except _Retryable as retry:
                if attempt == MAX_RETRIES:
                    raise retry.error from None
                await asyncio.sleep(retry.delay if retry.delay is not None else _backoff(attempt))
        raise AssertionError("unreachable")

    async def _open_once(self, url: str, payload: bytes, request_id: str) -> UpstreamResponse:
        headers = {"Content-Type": "application/json", "x-ms-client-request-id": request_id}
        try:
            headers.update(await self._auth.headers())
            response = await self._session.post(url, data=payload, headers=headers)
            if response.status == 401:
                retry_headers = await self._auth.after_rejection(headers)
                if retry_headers is not None:
                    response.release()
                    response = await self._session.post(url, data=payload, headers={**headers, **retry_headers})
        except UpstreamCredentialError as exc:
            raise _credential_error(exc) from None
        except TimeoutError:
            raise upstream_timeout() from None
        except aiohttp.ClientError:
            raise _Retryable(upstream_error("Azure OpenAI could not be reached."), None) from None
        if 200 <= response.status < 300:
            return UpstreamResponse(response)
        if response.status in (401, 403):
            log.error(
                json.dumps(
                    {
                        "event": "relay.upstream_auth_rejected",
                        "status": response.status,
                        "request_id": request_id,
                        "detail": self._auth.rejection_hint,
                    }
                )
            )
        try:
            raw = await response.read()
        except (TimeoutError, aiohttp.ClientError):
            raw = b""
        finally:
            response.release()
        raise _status_error(response.status, _json_or_none(raw), response.headers)


def _json_or_none(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _credential_error(exc: UpstreamCredentialError) -> RelayError:
    log.error(json.dumps({"event": "relay.credential_error", "detail": str(exc)}))
    return upstream_error("The relay could not obtain its credentials for Azure OpenAI.")


class _Retryable(Exception):
    def __init__(self, error: RelayError, delay: float | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.delay = delay


def _backoff(attempt: int) -> float:
    return float(0.1 * 2**attempt + random.uniform(0, 0.05))


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
        text = _UPSTREAM_DETAILS.sub("<redacted>", message)[:500] if isinstance(message, str) else "Azure OpenAI rejected the request."
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


def _received_before_the_break(content: aiohttp.StreamReader) -> bytes:
    # aiohttp raises a broken connection before it hands over the bytes that
    # arrived with it; those hold whole events the caller should still get.
    # Its public readers all raise first, so this takes the buffer directly.
    if not content._buffer:
        return b""
    return content._read_nowait(-1)
