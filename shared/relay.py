"""The relay's HTTP handlers (SPEC §3). ``function_app.py`` registers them as routes.

Per request: the Easy Auth gate, the caller's identity and IP, the request
policy, then Azure OpenAI with the relay-built ``user_security_context``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from shared.client_ip import client_ip_from_headers
from shared.config import Settings, load_settings
from shared.easyauth import Principal, principal_from_headers
from shared.errors import RelayError, upstream_error, upstream_timeout
from shared.request_log import RequestLog, quiet_client_loggers
from shared.request_policy import parse_body, prepare_chat_body
from shared.security_context import build_security_context
from shared.sse import MalformedStream, SseForwarder, error_event

if TYPE_CHECKING:
    # Imported on first use: aiohttp alone costs ~0.2 s of cold start.
    from shared.upstream import Upstream, UpstreamResponse

log = logging.getLogger("relay")

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_JSON = "application/json"
# App Service's platform CORS cannot expose response headers, so the relay names them itself:
# a cross-origin SPA needs the request ID for support and Retry-After to back off.
_EXPOSE = {"Access-Control-Expose-Headers": "x-request-id, retry-after"}
_JSON_HEADERS = {"Cache-Control": "no-store", **_EXPOSE}

UpstreamFactory = Callable[[Settings], Awaitable["Upstream"]]
_T = TypeVar("_T")


async def default_upstream(settings: Settings) -> Upstream:
    """The production upstream: managed identity, or a Key Vault key read with it."""
    from shared.upstream import Upstream
    from shared.upstream_auth import COGNITIVE_SERVICES_SCOPE, ApiKeyAuth, BearerTokenAuth, CachedToken, create_credential

    credential = create_credential(settings.client_id)
    if settings.auth_mode == "key":
        from shared.keyvault_key import KeyVaultKeySource

        assert settings.keyvault_url is not None and settings.key_secret_name is not None
        # Bounded like the upstream call: azure-core's default of ten retries would hold requests for a minute.
        timeout = settings.upstream_timeout_s
        keys = KeyVaultKeySource(
            settings.keyvault_url,
            settings.key_secret_name,
            credential,
            retry_total=1,
            connection_timeout=min(10.0, timeout),
            read_timeout=timeout,
        )
        return Upstream(settings, ApiKeyAuth(keys))
    return Upstream(settings, BearerTokenAuth(CachedToken(credential, COGNITIVE_SERVICES_SCOPE)))


class Relay:
    def __init__(self, settings: Settings, upstream_factory: UpstreamFactory = default_upstream) -> None:
        self.settings = settings
        self._upstream_factory = upstream_factory
        self._upstream: Upstream | None = None
        self._upstream_lock = asyncio.Lock()

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Relay:
        quiet_client_loggers()
        return cls(load_settings(env))

    async def upstream(self) -> Upstream:
        """The worker's one upstream client, created on first use inside the event loop."""
        if self._upstream is None:
            async with self._upstream_lock:
                if self._upstream is None:
                    self._upstream = await self._upstream_factory(self.settings)
        return self._upstream

    async def aclose(self) -> None:
        if self._upstream is not None:
            await self._upstream.aclose()
            self._upstream = None

    # Routes -----------------------------------------------------------------

    async def healthz(self, req: Request) -> Response:
        record = RequestLog(_request_id(req), "healthz")
        record.emit(200)
        return _json({"status": "ok"}, 200, record.request_id)

    async def models(self, req: Request) -> Response:
        record = RequestLog(_request_id(req), "models")
        try:
            self._caller(req, record)
        except RelayError as error:
            return _error_response(error, record)
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "azure-openai"} for name in self.settings.deployments]
        record.emit(200)
        return _json({"object": "list", "data": data}, 200, record.request_id)

    async def me(self, req: Request) -> Response:
        record = RequestLog(_request_id(req), "me")
        try:
            principal, source_ip = self._caller(req, record)
        except RelayError as error:
            return _error_response(error, record)
        body = {
            "principal": {
                "object_id": principal.object_id,
                "tenant_id": principal.tenant_id,
                "name": principal.name,
                "identity_provider": principal.identity_provider,
                "roles": sorted(principal.roles),
                "is_app": principal.is_app,
            },
            "source_ip": source_ip,
            "user_security_context": self._security_context(principal, source_ip),
        }
        record.emit(200)
        return _json(body, 200, record.request_id)

    async def chat_completions(self, req: Request) -> Response:
        record = RequestLog(_request_id(req), "chat.completions")
        try:
            principal, source_ip = self._caller(req, record)
            body = prepare_chat_body(parse_body(await self._read_body(req)), self.settings)
            record.deployment = body["model"]
            record.stream = body.get("stream") is True
            hide_usage = record.stream and _request_usage(body)
            body["user_security_context"] = self._security_context(principal, source_ip)
            client = await self.upstream()
            return await _unless_caller_leaves(req, self._answer(client, body, record, hide_usage=hide_usage))
        except RelayError as error:
            return _error_response(error, record)
        except ClientDisconnect:
            # The caller hung up: nobody reads this answer, and it is not a relay failure.
            record.emit(499, "client_closed_request")
            return Response(status_code=499, headers={**_EXPOSE, "x-request-id": record.request_id})
        except Exception:
            log.exception("relay.unhandled request_id=%s", record.request_id)
            return _error_response(RelayError(500, "internal_error", "The relay failed unexpectedly.", error_type="api_error"), record)

    # Steps --------------------------------------------------------------------

    async def _answer(self, client: Upstream, body: dict[str, Any], record: RequestLog, *, hide_usage: bool) -> Response:
        upstream = await client.open(body, record.request_id)
        if record.stream:
            return _stream_response(upstream, record, hide_usage)
        return await _complete_response(upstream, record, self.settings.upstream_timeout_s)

    def _caller(self, req: Request, record: RequestLog) -> tuple[Principal, str | None]:
        if not self.settings.easy_auth_enabled:
            raise RelayError(
                503,
                "easy_auth_disabled",
                "App Service Authentication (Easy Auth) is not enabled on this instance; the relay refuses to serve.",
                error_type="api_error",
            )
        principal = principal_from_headers(req.headers, self.settings.auth_policy)
        record.oid, record.tid = principal.object_id, principal.tenant_id
        source_ip = client_ip_from_headers(req.headers, self.settings.client_ip)
        if source_ip is None:
            log.warning(json.dumps({"event": "relay.client_ip_missing", "request_id": record.request_id}))
        record.source_ip = source_ip
        return principal, source_ip

    def _security_context(self, principal: Principal, source_ip: str | None) -> dict[str, str]:
        return build_security_context(self.settings.application_name, principal.object_id, principal.tenant_id, source_ip)

    async def _read_body(self, req: Request) -> bytes:
        limit = self.settings.max_body_bytes
        too_large = RelayError(413, "request_too_large", f"The request body is larger than {limit} bytes.")
        declared = req.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in req.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)


async def _caller_left(req: Request) -> None:
    """Return when the caller disconnects (the body has been read, so ``receive`` only reports that)."""
    while (await req.receive())["type"] != "http.disconnect":
        # Not an ASGI server that reports disconnects this way: stop watching rather than spin.
        await asyncio.Event().wait()


async def _unless_caller_leaves(req: Request, work: Awaitable[_T]) -> _T:
    """Await ``work``; if the caller disconnects first, cancel it (which closes the upstream request) and raise ClientDisconnect.

    A StreamingResponse watches for the caller itself once it has started; before
    that, nothing would notice, and Azure OpenAI would keep generating for no one.
    """
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_caller_left(req))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise ClientDisconnect()
    return task.result()


def _request_usage(body: dict[str, Any]) -> bool:
    """Ask Azure for a stream's usage chunk, which the log line needs; return True if the caller had not asked (so it is hidden)."""
    options = body.get("stream_options", {})
    if options.get("include_usage") is True:
        return False
    body["stream_options"] = {**options, "include_usage": True}
    return True


def _request_id(req: Request) -> str:
    sent = req.headers.get("x-request-id", "")
    return sent if _SANE_REQUEST_ID.match(sent) else uuid.uuid4().hex


def _json(body: Any, status: int, request_id: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        media_type=_JSON,
        headers={**_JSON_HEADERS, **(headers or {}), "x-request-id": request_id},
    )


def _error_response(error: RelayError, record: RequestLog) -> Response:
    record.emit(error.status, error.code)
    return _json(error.body(), error.status, record.request_id, error.headers)


async def _complete_response(upstream: UpstreamResponse, record: RequestLog, timeout_s: float) -> Response:
    try:
        async with asyncio.timeout(timeout_s):
            content = await upstream.read()
        answer = json.loads(content)
        if not isinstance(answer, dict) or not isinstance(answer.get("choices"), list):
            raise ValueError("not a chat completion")
    except TimeoutError:
        return _error_response(upstream_timeout(), record)
    except RelayError as error:
        return _error_response(error, record)
    except ValueError:
        return _error_response(upstream_error("Azure OpenAI sent a response the relay could not read."), record)
    finally:
        upstream.close()
    usage = answer.get("usage")
    record.usage = usage if isinstance(usage, dict) else None
    record.emit(200)
    return Response(content, status_code=200, media_type=_JSON, headers={**_JSON_HEADERS, "x-request-id": record.request_id})


def _stream_response(upstream: UpstreamResponse, record: RequestLog, hide_usage: bool) -> StreamingResponse:
    return StreamingResponse(
        _forward(upstream, record, SseForwarder(hide_usage=hide_usage)),
        status_code=200,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **_EXPOSE, "x-request-id": record.request_id},
    )


async def _forward(upstream: UpstreamResponse, record: RequestLog, forwarder: SseForwarder) -> AsyncIterator[bytes]:
    status, code = 200, None
    try:
        async for data in upstream.iter_bytes():
            events = forwarder.feed(data)
            if events:
                yield events
        forwarder.finish()
    except (MalformedStream, RelayError) as exc:
        error = exc if isinstance(exc, RelayError) else upstream_error("Azure OpenAI sent a malformed stream.")
        status, code = error.status, error.code
        yield error_event(error)
    except BaseException:
        # The caller went away (the server cancels or closes this generator): stop the upstream request too.
        status, code = 499, "client_closed_request"
        raise
    finally:
        upstream.close()
        record.usage = forwarder.usage
        record.emit(status, code)
