"""The relay's HTTP handlers; ``function_app.py`` registers them as routes.

Per request: the Easy Auth gate, the caller's identity and IP, the request
policy, then Azure OpenAI with the relay-built ``user_security_context``
(docs/design.md, "The request path").
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

from shared.access_controls import AccessControls, Spend
from shared.caller import Caller, identify_caller
from shared.config import Settings, load_settings
from shared.errors import RelayError, upstream_error, upstream_timeout
from shared.logs import RequestLog, log_event, quiet_client_loggers
from shared.request_policy import parse_body, prepare_chat_body
from shared.sse import SseForwarder, forward_events

if TYPE_CHECKING:
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


async def production_upstream(settings: Settings) -> Upstream:
    # Imported on first use: aiohttp alone costs ~0.2 s of cold start.
    from shared.upstream import Upstream

    return Upstream.from_settings(settings)


class Relay:
    def __init__(self, settings: Settings, upstream_factory: UpstreamFactory = production_upstream) -> None:
        self.settings = settings
        self._upstream_factory = upstream_factory
        self._upstream: Upstream | None = None
        self._upstream_lock = asyncio.Lock()
        self.controls = AccessControls(settings)

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
        """Close the upstream client and its credentials.

        The local host calls this at shutdown. The Azure Functions Python worker
        offers no shutdown hook (Azure/azure-functions-python-worker#1521, #1904),
        so in Azure the process exit closes the sockets.
        """
        if self._upstream is not None:
            await self._upstream.aclose()
            self._upstream = None
        await self.controls.aclose()

    # Routes -----------------------------------------------------------------

    async def healthz(self, req: Request) -> Response:
        record = RequestLog(_request_id(req), "healthz")
        record.emit(200)
        return _json({"status": "ok"}, 200, record.request_id)

    async def models(self, req: Request) -> Response:
        record = RequestLog(_request_id(req), "models")
        try:
            await self._identify(req, record)
        except RelayError as error:
            return _error_response(error, record)
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "azure-openai"} for name in self.settings.deployments]
        record.emit(200)
        return _json({"object": "list", "data": data}, 200, record.request_id)

    async def me(self, req: Request) -> Response:
        record = RequestLog(_request_id(req), "me")
        try:
            caller = await self._identify(req, record)
        except RelayError as error:
            return _error_response(error, record)
        principal = caller.principal
        body = {
            "principal": {
                "object_id": principal.object_id,
                "tenant_id": principal.tenant_id,
                "name": principal.name,
                "identity_provider": principal.identity_provider,
                "roles": sorted(principal.roles),
                "is_app": principal.is_app,
            },
            "source_ip": caller.source_ip,
            "user_security_context": caller.security_context(self.settings.application_name),
            "budget": self.controls.budget_view(caller),
        }
        record.emit(200)
        return _json(body, 200, record.request_id)

    async def chat_completions(self, req: Request) -> Response:
        record = RequestLog(_request_id(req), "chat.completions")
        try:
            caller = await self._identify(req, record)
            body = prepare_chat_body(parse_body(await self._read_body(req)), self.settings)
            record.deployment = body["model"]
            record.stream = body.get("stream") is True
            # The log line needs a stream's usage, so Azure is always asked for it; the caller gets it only if it asked.
            hide_usage = record.stream and not _asked_for_usage(body)
            if record.stream:
                body["stream_options"] = {**body.get("stream_options", {}), "include_usage": True}
            body["user_security_context"] = caller.security_context(self.settings.application_name)
            spend = self.controls.admit(caller, body)
            client = await self.upstream()
            return await _unless_caller_leaves(req, self._answer(client, body, record, spend, hide_usage=hide_usage))
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

    async def _identify(self, req: Request, record: RequestLog) -> Caller:
        caller = identify_caller(req.headers, self.settings)
        record.oid, record.tid = caller.principal.object_id, caller.principal.tenant_id
        record.source_ip = caller.source_ip
        if caller.source_ip is None:
            log_event(log, logging.WARNING, "relay.client_ip_missing", request_id=record.request_id)
        await self.controls.check_caller(caller, record.request_id)
        return caller

    async def _answer(self, client: Upstream, body: dict[str, Any], record: RequestLog, spend: Spend, *, hide_usage: bool) -> Response:
        upstream = await client.open(body, record.request_id)
        if record.stream:
            return _stream_response(upstream, record, spend, hide_usage)
        return await _complete_response(upstream, record, spend, self.settings.upstream_timeout_s)

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


def _asked_for_usage(body: Mapping[str, Any]) -> bool:
    return body.get("stream_options", {}).get("include_usage") is True


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


async def _complete_response(upstream: UpstreamResponse, record: RequestLog, spend: Spend, timeout_s: float) -> Response:
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
    spend(record.usage)
    record.emit(200)
    return Response(content, status_code=200, media_type=_JSON, headers={**_JSON_HEADERS, "x-request-id": record.request_id})


def _stream_response(upstream: UpstreamResponse, record: RequestLog, spend: Spend, hide_usage: bool) -> StreamingResponse:
    return StreamingResponse(
        _logged_stream(upstream, record, SseForwarder(hide_usage=hide_usage), spend),
        status_code=200,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **_EXPOSE, "x-request-id": record.request_id},
    )


async def _logged_stream(upstream: UpstreamResponse, record: RequestLog, forwarder: SseForwarder, spend: Spend) -> AsyncIterator[bytes]:
    """The caller's stream; when it ends, however it ends, the upstream response is closed and the log line written."""
    left = False
    try:
        async for events in forward_events(upstream.iter_bytes(), forwarder):
            yield events
    except BaseException:
        # The caller went away (the server cancels or closes this generator): stop the upstream request too.
        left = True
        raise
    finally:
        upstream.close()
        record.usage = forwarder.usage
        spend(forwarder.usage, forwarder.events)
        if left:
            record.emit(499, "client_closed_request")
        elif forwarder.error is not None:
            record.emit(forwarder.error.status, forwarder.error.code)
        else:
            record.emit(200)
