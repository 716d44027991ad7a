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
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from shared.access_controls import AccessControls, Spend
from shared.caller import Caller, identify_caller
from shared.completion import NotACompletion, completion_usage, hide_cached_tokens
from shared.config import Settings, load_settings
from shared.errors import RelayError, upstream_error, upstream_timeout
from shared.logs import RequestLog, quiet_client_loggers
from shared.request_policy import ChatRequest, prepare_chat_request
from shared.sse import SseForwarder, forward_events

if TYPE_CHECKING:
    from shared.upstream import Upstream, UpstreamResponse

log = logging.getLogger("relay")

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_JSON = "application/json"
# App Service's platform CORS cannot expose response headers, so the relay names them itself:
# a cross-origin SPA needs the request ID for support and Retry-After to back off.
_EXPOSE = {"Access-Control-Expose-Headers": "x-request-id, retry-after"}
_JSON_HEADERS = {"Cache-Control": "no-store", **_EXPOSE}
# Bodies larger than this are parsed and serialised in a worker thread, one at a time: the event loop keeps
# serving others (JSON serialisation holds the GIL, so threads side by side would take turns stalling it),
# and however many arrive at once, one parsed body is in memory.
_THREAD_BODY_BYTES = 64 * 1024
# "230 seconds is the maximum amount of time that an HTTP triggered function can take to respond to a
# request", the idle timeout of Azure's load balancer (https://learn.microsoft.com/azure/azure-functions/functions-scale#timeout):
# a whole answer must be back before that, whatever RELAY_UPSTREAM_TIMEOUT_S says. A stream keeps the
# connection busy (keep-alive comments while Azure is silent), so it is not bounded by it.
NON_STREAMED_DEADLINE_S = 220.0
_HEALTHY = Response(b'{"status":"ok"}', media_type=_JSON, headers={"Cache-Control": "no-store"})

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
        self._large_body_gate = asyncio.Semaphore(1)
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
        offers no shutdown hook (docs/design.md, "No shutdown hook in Azure"),
        so in Azure the process exit closes the sockets.
        """
        if self._upstream is not None:
            await self._upstream.aclose()
            self._upstream = None
        await self.controls.aclose()

    # Routes -----------------------------------------------------------------

    async def healthz(self, req: Request) -> Response:
        """Liveness, anonymous: no work and no log line, so that probing it costs nothing."""
        return _HEALTHY

    async def models(self, req: Request) -> Response:
        record = _new_record(req, "models")
        try:
            await self._identify(req, record)
        except RelayError as error:
            return _error_response(error, record)
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "azure-openai"} for name in self.settings.deployments]
        record.emit(200)
        return _json({"object": "list", "data": data}, 200, record.request_id)

    async def me(self, req: Request) -> Response:
        record = _new_record(req, "me")
        try:
            caller = await self._identify(req, record)
        except RelayError as error:
            return _error_response(error, record)
        principal = caller.principal
        body = {
            "principal": {
                "object_id": principal.object_id,
                "tenant_id": principal.tenant_id,
                "home_tenant_id": principal.home_tenant_id,
                "name": principal.name,
                "identity_provider": principal.identity_provider,
                "roles": sorted(principal.roles),
                "is_app": principal.is_app,
            },
            "source_ip": caller.source_ip,
            "user_security_context": caller.security_context(self.settings.application_name),
            "budget": await self.controls.budget_view(caller),
        }
        record.emit(200)
        return _json(body, 200, record.request_id)

    async def unsupported_route(self, req: Request) -> Response:
        record = _new_record(req, "unsupported")
        try:
            await self._identify(req, record)
        except RelayError as error:
            return _error_response(error, record)
        return _error_response(unsupported_route_error(), record)

    async def chat_completions(self, req: Request) -> Response:
        record = _new_record(req, "chat.completions")
        try:
            caller = await self._identify(req, record)
            request = await self._prepare(await self._read_body(req), caller)
            record.deployment, record.stream = request.deployment, request.stream
            spend = await self.controls.admit(caller, request.prompt_bytes, request.output_cap)
            try:
                if spend.output_cap is not None:
                    request = request.with_output_cap(spend.output_cap)
                client = await self.upstream()
                return await _unless_caller_leaves(req, self._answer(client, request, record, spend))
            except BaseException as error:
                spend.failed(error)  # charged already if an answer ended it
                raise
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
        record.home_tid, record.source_ip = caller.principal.home_tenant_id, caller.source_ip
        await self.controls.check_caller(caller, record.request_id)
        return caller

    async def _prepare(self, raw: bytes, caller: Caller) -> ChatRequest:
        if len(raw) <= _THREAD_BODY_BYTES:
            return prepare_chat_request(raw, self.settings, caller)
        async with self._large_body_gate:
            return await asyncio.to_thread(prepare_chat_request, raw, self.settings, caller)

    async def _answer(self, client: Upstream, request: ChatRequest, record: RequestLog, spend: Spend) -> Response:
        if request.stream:
            upstream = await client.open(request.payload, request.deployment, record.request_id)
            forwarder = SseForwarder(hide_usage=request.hide_usage, hide_cached_tokens=not self.settings.expose_cached_tokens)
            return ForwardedStream(upstream, record, forwarder, spend, self.settings)
        return await self._complete(client, request, record, spend)

    async def _complete(self, client: Upstream, request: ChatRequest, record: RequestLog, spend: Spend) -> Response:
        """A non-streamed answer, whole, within NON_STREAMED_DEADLINE_S, retries included (each read within RELAY_UPSTREAM_TIMEOUT_S)."""
        upstream: UpstreamResponse | None = None
        try:
            async with asyncio.timeout(NON_STREAMED_DEADLINE_S):
                upstream = await client.open(request.payload, request.deployment, record.request_id)
                content = await upstream.read()
            record.usage = completion_usage(content)
        except TimeoutError:
            spend.unanswered("upstream_timeout")
            return _error_response(answer_too_slow(), record)
        except RelayError as error:
            if upstream is None:
                spend.failed(error)
            else:
                spend.unanswered(error.code)  # the answer broke off after Azure started it
            return _error_response(answer_too_slow() if error.code == "upstream_timeout" else error, record)
        except NotACompletion:
            spend.unanswered("unreadable_answer")
            return _error_response(upstream_error("Azure OpenAI sent a response the relay could not read."), record)
        finally:
            if upstream is not None:
                upstream.close()
        if not self.settings.expose_cached_tokens:
            content = hide_cached_tokens(content)
        spend(record.usage)
        record.emit(200)
        return Response(content, status_code=200, media_type=_JSON, headers={**_JSON_HEADERS, "x-request-id": record.request_id})

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


_KEEPALIVE = b": keep-alive\n\n"


class ForwardedStream(StreamingResponse):
    """Azure's event stream to the caller.

    While Azure is silent (a reasoning model thinking before its first token) the caller gets an
    SSE comment every ``keepalive_s``, which clients ignore and idle timeouts on the way count as
    traffic. However the stream ends (done, an upstream failure sent as an ``error`` event, the
    caller gone, or the caller reading nothing for ``write_timeout_s``), the upstream response is
    closed, which cancels Azure's generation, and the request's log line is written.
    """

    def __init__(
        self,
        upstream: UpstreamResponse,
        record: RequestLog,
        forwarder: SseForwarder,
        spend: Spend,
        settings: Settings,
    ) -> None:
        self._events = forward_events(upstream.iter_bytes(), forwarder)
        super().__init__(
            self._events,
            status_code=200,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **_EXPOSE, "x-request-id": record.request_id},
        )
        self._upstream, self._record, self._forwarder, self._spend = upstream, record, forwarder, spend
        self._write_timeout_s = settings.caller_write_timeout_s
        self._keepalive_s = settings.stream_keepalive_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream in the request's own task; one watcher task cancels it when the caller leaves, one timer does the rest.

        Starlette's StreamingResponse would run a task group per stream and this class an
        ``asyncio.timeout`` per write: here a single timer, re-armed only when it fires (at
        most every ``keepalive_s``, or when a write has been pending for ``write_timeout_s``),
        sends the keep-alive comments and notices a caller that stopped reading.
        """
        loop = asyncio.get_running_loop()
        streaming = asyncio.current_task()
        assert streaming is not None
        writing = asyncio.Lock()
        last_heard = loop.time()
        write_started: float | None = None
        ending: str | None = None  # why this stream cancelled itself: "gone" or "stalled"
        keepalive_writer: asyncio.Future[None] | None = None
        closing = False
        timer: asyncio.TimerHandle
        status: int = 499
        code: str | None = "client_closed_request"

        def end(reason: str) -> None:
            nonlocal ending
            if ending is None:
                ending = reason
                streaming.cancel()

        async def write(body: bytes, more_body: bool = True) -> None:
            nonlocal write_started
            async with writing:
                write_started = loop.time()
                try:
                    await send({"type": "http.response.body", "body": body, "more_body": more_body})
                finally:
                    write_started = None

        def tick() -> None:
            nonlocal keepalive_writer, last_heard, timer
            now = loop.time()
            if write_started is not None:
                if now - write_started >= self._write_timeout_s:
                    end("stalled")
                    return
                next_at = write_started + self._write_timeout_s
            else:
                if now - last_heard >= self._keepalive_s and not closing and (keepalive_writer is None or keepalive_writer.done()):
                    keepalive_writer = asyncio.ensure_future(write(_KEEPALIVE))
                    last_heard = now
                next_at = min(last_heard + self._keepalive_s, now + self._write_timeout_s)
            timer = loop.call_at(next_at, tick)

        async def watch() -> None:
            await _caller_left(receive)
            end("gone")

        watcher = asyncio.ensure_future(watch())
        timer = loop.call_at(last_heard + min(self._keepalive_s, self._write_timeout_s), tick)
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async with contextlib.aclosing(self._events) as events:
                async for chunk in events:
                    last_heard = loop.time()
                    await write(chunk)
            closing = True
            if keepalive_writer is not None:
                keepalive_writer.cancel()
            await write(b"", more_body=False)
            error = self._forwarder.error
            status, code = (error.status, error.code) if error is not None else (200, None)
        except asyncio.CancelledError:
            if ending is None:
                raise
            streaming.uncancel()  # cancelled by end(): the caller left, or stopped reading (the server then closes the connection)
        finally:
            timer.cancel()
            watcher.cancel()
            if keepalive_writer is not None:
                keepalive_writer.cancel()
            self._finish(status, "caller_stalled" if ending == "stalled" else code)

    def _finish(self, status: int, code: str | None) -> None:
        self._upstream.close()
        self._record.usage = self._forwarder.usage
        self._spend(self._forwarder.usage, self._forwarder.events)
        self._record.emit(status, code)


async def _caller_left(receive: Receive) -> None:
    """Return when the caller disconnects (the body has been read, so ``receive`` only reports that)."""
    if (await receive())["type"] != "http.disconnect":
        # Not an ASGI server that reports disconnects this way: stop watching rather than spin.
        await asyncio.Event().wait()


async def _unless_caller_leaves(req: Request, work: Awaitable[_T]) -> _T:
    """Await ``work``; if the caller disconnects first, cancel it (which closes the upstream request) and raise ClientDisconnect.

    A StreamingResponse watches for the caller itself once it has started; before
    that, nothing would notice, and Azure OpenAI would keep generating for no one.
    One watcher task cancels this one, so ``work`` runs in the request's own task.
    """
    current = asyncio.current_task()
    assert current is not None
    left = False

    async def watch() -> None:
        nonlocal left
        await _caller_left(req.receive)
        left = True
        current.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        result = await work
    except asyncio.CancelledError:
        if not left:
            raise
        current.uncancel()
        raise ClientDisconnect() from None
    finally:
        watcher.cancel()
    if left:  # ``work`` finished in spite of the cancellation: take it back, or the next await would raise
        current.uncancel()
    return result


def answer_too_slow() -> RelayError:
    return upstream_timeout(
        'Azure OpenAI did not answer in time. Ask for long answers with "stream": true: the platform ends a response '
        "that has not completed within 230 s, and a stream starts at once."
    )


def unsupported_route_error() -> RelayError:
    return RelayError(
        404,
        "unsupported_route",
        "This relay serves the Chat Completions API only (POST /api/v1/chat/completions): that is where Azure OpenAI accepts "
        "the end-user context (user_security_context) that Microsoft Defender for Cloud attributes every prompt with. "
        "Switch your client to Chat Completions: Vercel AI SDK openai.chat(model); OpenAI Agents SDK "
        "OpenAIChatCompletionsModel (Python) or setOpenAIAPI('chat_completions') (JavaScript); Microsoft Agent Framework "
        "OpenAIChatCompletionClient (Python) or GetChatClient(...).AsAIAgent() (.NET); LangChain "
        "ChatOpenAI(use_responses_api=False); pydantic-ai OpenAIChatModel.",
    )


def _new_record(req: Request, route: str) -> RequestLog:
    """A log record keyed by an ID the relay makes; the caller's own ID, when sane, is kept beside it."""
    sent = req.headers.get("x-request-id", "")
    client_request_id = sent if _SANE_REQUEST_ID.fullmatch(sent) else None
    return RequestLog(uuid.uuid4().hex, route, client_request_id=client_request_id)


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
