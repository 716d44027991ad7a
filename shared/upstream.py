"""The one Azure OpenAI client of this worker process.

A single ``aiohttp`` session (one connection pool) posts the validated body
and hands back Azure's response unread, so the relay forwards Azure's bytes
instead of parsing and re-serialising them. The official ``openai`` SDK is not
used here: for a byte-forwarding relay its request building and validation
cost more CPU than everything else the relay does (docs/performance.md).
Retries are the relay's own, bounded, and happen only before anything reached
the caller; Azure's errors are mapped to the relay's error table
(docs/design.md) without ever passing on an upstream URL, token or key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
from collections.abc import AsyncIterator, Callable, Iterator

import aiohttp

from shared.config import Settings
from shared.errors import (
    UpstreamBroken,
    UpstreamCredentialError,
    UpstreamFailure,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamTransportError,
    UpstreamUnreachable,
    server_busy,
)
from shared.logs import UpstreamNotes, log_event
from shared.upstream_auth import MAX_CONNECT_TIMEOUT_S, UpstreamAuth, create_upstream_auth
from shared.upstream_errors import as_caller_errors, relay_error_for, retry_after_seconds

log = logging.getLogger("relay")

MAX_RETRIES = 2
# A 429 whose Retry-After is longer than this goes back to the caller instead of holding its request.
MAX_RETRY_AFTER_S = 2.0
_RETRYABLE_STATUS = frozenset({500, 502, 503, 504})
_USER_AGENT = "aoai-defender-relay/0.1"
# A response header the record keeps: Azure's request ids are GUIDs; anything odd is left out.
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


@contextlib.contextmanager
def transport_causes(
    broken: type[UpstreamTransportError], message: str, timed_out: str = "Azure OpenAI did not answer in time."
) -> Iterator[None]:
    """aiohttp's transport failures as typed causes: :class:`UpstreamTimeout` when too slow, ``broken`` otherwise."""
    try:
        yield
    except TimeoutError:
        raise UpstreamTimeout(timed_out) from None
    except aiohttp.ClientError:
        raise broken(message) from None


class UpstreamResponse:
    """A 2xx answer from Azure OpenAI whose body has not been read yet.

    Transport failures while reading surface as :class:`RelayError` (502 or 504) whose ``cause``
    is :class:`UpstreamBroken` or :class:`UpstreamTimeout`.
    """

    def __init__(self, response: aiohttp.ClientResponse, on_close: Callable[[], None]) -> None:
        self._response = response
        self._on_close: Callable[[], None] | None = on_close

    async def read(self) -> bytes:
        with as_caller_errors(), transport_causes(UpstreamBroken, "Azure OpenAI's response broke off."):
            return await self._response.read()

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        content = self._response.content
        broke_off, stopped = "The stream from Azure OpenAI broke off.", "Azure OpenAI stopped sending in time."
        with as_caller_errors(), transport_causes(UpstreamBroken, broke_off, stopped):
            try:
                async for data in content.iter_any():
                    yield data
            except aiohttp.ClientError:
                leftover = _received_before_the_break(content)
                if leftover:
                    yield leftover
                raise

    def close(self) -> None:
        """Return the connection to the pool when the body was read to the end, else drop it (cancels upstream)."""
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()
        if self._on_close is not None:
            self._on_close()
            self._on_close = None


class Upstream:
    def __init__(self, settings: Settings, auth: UpstreamAuth) -> None:
        """Create inside the worker's event loop (the session binds to it)."""
        self._auth = auth
        self._endpoint = settings.endpoint
        self._api_version = settings.api_version
        self._busy_timeout_s = settings.busy_timeout_s
        # One slot per pooled connection, held from the request until its answer is closed: waiting
        # for a slot is bounded (503 when the instance is saturated), waiting inside aiohttp's pool is not.
        self._slots = asyncio.Semaphore(settings.upstream_connections)
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=min(MAX_CONNECT_TIMEOUT_S, settings.upstream_timeout_s), sock_read=settings.upstream_timeout_s
        )
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=settings.upstream_connections, keepalive_timeout=60),
            timeout=timeout,
            headers={"User-Agent": _USER_AGENT},
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Upstream:
        """The production client: managed identity, or a Key Vault key read with it."""
        return cls(settings, create_upstream_auth(settings))

    async def aclose(self) -> None:
        await self._session.close()
        await self._auth.aclose()

    def url(self, deployment: str) -> str:
        if self._api_version == "v1":
            return f"{self._endpoint}/openai/v1/chat/completions"
        return f"{self._endpoint}/openai/deployments/{deployment}/chat/completions?api-version={self._api_version}"

    async def open(self, payload: bytes, deployment: str, request_id: str, notes: UpstreamNotes | None = None) -> UpstreamResponse:
        """Send the chat completion; return once Azure answered 2xx, or raise the caller's RelayError (its ``cause`` typed).

        ``notes`` gets what the request's record keeps: the retries, Azure's request ids, the traceparent sent.
        """
        return await self.send("POST", self.url(deployment), payload, request_id, notes)

    async def send(
        self, method: str, url: str, payload: bytes | None, request_id: str, notes: UpstreamNotes | None = None
    ) -> UpstreamResponse:
        """Send a request to ``url`` (the Responses API's routes too), with the same slots, retries, errors and notes as ``open``."""
        notes = notes if notes is not None else UpstreamNotes()
        if self._slots.locked():
            try:
                async with asyncio.timeout(self._busy_timeout_s):
                    await self._slots.acquire()
            except TimeoutError:
                raise server_busy() from None
        else:
            await self._slots.acquire()  # a free slot: taken at once, without arming a timer
        try:
            with notes.tracer.dependency(method, url, notes) if notes.tracer is not None else contextlib.nullcontext():
                response = await self._open(method, url, payload, request_id, notes)
        except BaseException:
            self._slots.release()
            raise
        return UpstreamResponse(response, self._slots.release)

    async def _open(self, method: str, url: str, payload: bytes | None, request_id: str, notes: UpstreamNotes) -> aiohttp.ClientResponse:
        for attempt in range(MAX_RETRIES + 1):
            notes.retries = attempt
            outcome = await self._open_once(method, url, payload, request_id, notes)
            if isinstance(outcome, aiohttp.ClientResponse):
                return outcome
            delay = retry_delay(outcome, attempt)
            if delay is None or attempt == MAX_RETRIES:
                raise relay_error_for(outcome) from outcome
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _open_once(
        self, method: str, url: str, payload: bytes | None, request_id: str, notes: UpstreamNotes
    ) -> aiohttp.ClientResponse | UpstreamFailure:
        headers = {"Content-Type": "application/json", "x-ms-client-request-id": request_id}
        if notes.traceparent is not None:
            headers["traceparent"] = notes.traceparent
        try:
            headers.update(await self._auth.headers())
            with transport_causes(UpstreamUnreachable, "Azure OpenAI could not be reached."):
                response = await self._session.request(method, url, data=payload, headers=headers)
                if response.status == 401:
                    retry_headers = await self._auth.after_rejection(headers)
                    if retry_headers is not None:
                        response.release()
                        response = await self._session.request(method, url, data=payload, headers={**headers, **retry_headers})
        except UpstreamCredentialError as cause:
            log_event(log, logging.ERROR, "relay.credential_error", request_id=request_id, detail=str(cause))
            return cause
        except UpstreamTransportError as cause:
            return cause
        _note_answer(notes, response)
        if 200 <= response.status < 300:
            return response
        if response.status in (401, 403):
            hint = self._auth.rejection_hint
            log_event(log, logging.ERROR, "relay.upstream_auth_rejected", status=response.status, request_id=request_id, detail=hint)
        try:
            raw = await response.read()
        except (TimeoutError, aiohttp.ClientError):
            raw = b""
        finally:
            response.release()
        return UpstreamRejected(response.status, _json_or_none(raw), response.headers)


def retry_delay(cause: UpstreamFailure, attempt: int) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``, or None when another attempt would not help.

    A connection that could not be made and a 5xx are retried after a backoff, a 429 after
    its Retry-After when that is short; a timeout is not (its time is spent), nor is a refusal.
    """
    if isinstance(cause, UpstreamUnreachable):
        return _backoff(attempt)
    if isinstance(cause, UpstreamRejected):
        if cause.status == 429:
            retry_after = retry_after_seconds(cause.headers)
            return retry_after if retry_after is not None and retry_after <= MAX_RETRY_AFTER_S else None
        if cause.status in _RETRYABLE_STATUS:
            return _backoff(attempt)
    return None


def _note_answer(notes: UpstreamNotes, response: aiohttp.ClientResponse) -> None:
    """Keep Azure's ids for this answer: ``apim-request-id`` is what its diagnostic logs call ``correlationId``."""
    notes.status = response.status
    notes.azure_request_id = _sane_id(response.headers.get("apim-request-id"))
    notes.azure_x_request_id = _sane_id(response.headers.get("x-request-id"))


def _sane_id(value: str | None) -> str | None:
    return value if value is not None and _SANE_ID.fullmatch(value) else None


def _json_or_none(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _backoff(attempt: int) -> float:
    return float(0.1 * 2**attempt + random.uniform(0, 0.05))


def _received_before_the_break(content: aiohttp.StreamReader) -> bytes:
    # aiohttp raises a broken connection before it hands over the bytes that
    # arrived with it; those hold whole events the caller should still get.
    # Its public readers all raise first, so this takes the buffer directly.
    if not content._buffer:
        return b""
    return content._read_nowait(-1)
