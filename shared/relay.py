"""The relay's HTTP handlers; ``function_app.py`` registers them as routes.

Per request: the Easy Auth gate, the caller's identity and IP, the request
policy, then Azure OpenAI with the relay-built ``user_security_context``
(docs/design.md, "The request path").
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from shared.access_controls import AccessControls, TokenCharge
from shared.caller import Caller, identify_caller
from shared.completion import NotACompletion, answer_model, completion_usage, hide_cached_tokens
from shared.config import Settings, load_settings
from shared.errors import (
    RelayError,
    UpstreamTimeout,
    answer_too_slow,
    internal_error,
    request_too_large,
    upstream_error,
)
from shared.errors import unsupported_route as unsupported_route_error  # Relay.unsupported_route is the handler
from shared.forwarded_stream import EXPOSE_HEADERS, ForwardedStream, unless_caller_leaves
from shared.logs import RequestLog, log_failure, quiet_client_loggers
from shared.request_policy import ChatRequest, prepare_chat_request
from shared.sse import SseForwarder
from shared.telemetry import Telemetry
from shared.telemetry_config import TelemetrySettings

if TYPE_CHECKING:
    from shared.responses_relay import ResponsesAction, ResponsesRelay
    from shared.upstream import Upstream, UpstreamResponse

log = logging.getLogger("relay")

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_JSON = "application/json"
_JSON_HEADERS = {"Cache-Control": "no-store", **EXPOSE_HEADERS}
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


async def production_upstream(settings: Settings) -> Upstream:
    # Imported on first use: aiohttp alone costs ~0.2 s of cold start.
    from shared.upstream import Upstream

    return Upstream.from_settings(settings)


async def production_project_upstream(settings: Settings) -> Upstream:
    from shared.responses_upstream import project_upstream

    return project_upstream(settings)


class Relay:
    def __init__(
        self,
        settings: Settings,
        upstream_factory: UpstreamFactory = production_upstream,
        telemetry: Telemetry | None = None,
        project_upstream_factory: UpstreamFactory = production_project_upstream,
    ) -> None:
        self.settings = settings
        self._upstream_factory = upstream_factory
        self._project_upstream_factory = project_upstream_factory
        self._responses: ResponsesRelay | None = None
        self._upstream: Upstream | None = None
        self._upstream_lock = asyncio.Lock()
        self._large_body_gate = asyncio.Semaphore(1)
        self.controls = AccessControls(settings)
        self.telemetry = telemetry or Telemetry(TelemetrySettings(), settings.application_name)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Relay:
        quiet_client_loggers(env)
        relay = cls(load_settings(env))
        relay.telemetry = Telemetry.from_env(env, relay.settings.application_name, relay.controls.blocklist_age_s)
        return relay

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
        if self._responses is not None:
            await self._responses.aclose()
        await self.controls.aclose()

    # Routes -----------------------------------------------------------------

    async def healthz(self, req: Request) -> Response:
        """Liveness, anonymous: no work and no log line, so that probing it costs nothing."""
        return _HEALTHY

    async def models(self, req: Request) -> Response:
        record = self._new_record(req, "models")
        try:
            await self.identify(req, record)
        except RelayError as error:
            return _error_response(error, record)
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "azure-openai"} for name in self.settings.deployments]
        record.emit(200)
        return _json({"object": "list", "data": data}, 200, record.request_id)

    async def me(self, req: Request) -> Response:
        record = self._new_record(req, "me")
        try:
            caller = await self.identify(req, record)
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
        record = self._new_record(req, "unsupported")
        try:
            await self.identify(req, record)
        except RelayError as error:
            return _error_response(error, record)
        return _error_response(unsupported_route_error(self.settings.responses.enabled), record)

    async def responses(self, req: Request, action: ResponsesAction) -> Response:
        """The Responses and Conversations APIs' routes: relayed to the Foundry project when one is configured, else the guiding 404."""
        if not self.settings.responses.enabled:
            return await self.unsupported_route(req)
        if self._responses is None:
            from shared.responses_relay import ResponsesRelay

            self._responses = ResponsesRelay(self, self._project_upstream_factory, NON_STREAMED_DEADLINE_S)
        record = self._new_record(req, f"responses.{action}")
        return await self.guarded(record, self._responses.handle(req, record, action))

    async def chat_completions(self, req: Request) -> Response:
        record = self._new_record(req, "chat.completions")
        return await self.guarded(record, self._chat_completions(req, record))

    async def _chat_completions(self, req: Request, record: RequestLog) -> Response:
        caller = await self.identify(req, record)
        request = await self._prepare(await self.read_body(req), caller)
        record.deployment, record.stream = request.deployment, request.stream
        charge = await self.controls.admit(caller, request.prompt_bytes, request.output_cap)
        try:
            if charge.output_cap is not None:
                request = request.with_output_cap(charge.output_cap)
            record.budget = "admitted" if self.controls.budgets is not None else None
            client = await self.upstream()
            return await unless_caller_leaves(req.receive, self._answer(client, request, caller, record, charge))
        except BaseException as error:
            charge.failed(error)  # charged already if an answer ended it
            raise

    async def guarded(self, record: RequestLog, work: Awaitable[Response]) -> Response:
        """``work``'s answer; a RelayError as its error answer, a caller gone as 499, anything else as a logged 500."""
        try:
            return await work
        except RelayError as error:
            return _error_response(error, record)
        except ClientDisconnect:
            # The caller hung up: nobody reads this answer, and it is not a relay failure.
            record.emit(499, "client_closed_request")
            return Response(status_code=499, headers={**EXPOSE_HEADERS, "x-request-id": record.request_id})
        except Exception as exc:  # noqa: BLE001 - logged by log_failure (one JSON line, not logging.exception)
            log_failure(log, "relay.unhandled", exc, request_id=record.request_id)
            return _error_response(internal_error(), record)

    # Steps --------------------------------------------------------------------

    async def identify(self, req: Request, record: RequestLog) -> Caller:
        caller = identify_caller(req.headers, self.settings)
        record.oid, record.tid = caller.principal.object_id, caller.principal.tenant_id
        record.home_tid, record.source_ip = caller.principal.home_tenant_id, caller.source_ip
        await self.controls.check_caller(caller, record.request_id)
        record.blocklist = "pass" if self.settings.controls.blocklist.enabled else None
        return caller

    async def _prepare(self, raw: bytes, caller: Caller) -> ChatRequest:
        if len(raw) <= _THREAD_BODY_BYTES:
            return prepare_chat_request(raw, self.settings, caller)
        async with self._large_body_gate:
            return await asyncio.to_thread(prepare_chat_request, raw, self.settings, caller)

    async def _answer(self, client: Upstream, request: ChatRequest, caller: Caller, record: RequestLog, charge: TokenCharge) -> Response:
        if request.stream:
            upstream = await client.open(request.payload, request.deployment, record.request_id, record.upstream)
            forwarder = SseForwarder(hide_usage=request.hide_usage, hide_cached_tokens=not self.settings.expose_cached_tokens)
            open_stream = self.controls.watch_stream(caller, record.request_id)
            return ForwardedStream(upstream, record, forwarder, charge, self.settings, open_stream)
        return await self._complete(client, request, record, charge)

    async def _complete(self, client: Upstream, request: ChatRequest, record: RequestLog, charge: TokenCharge) -> Response:
        """A non-streamed answer, whole, within NON_STREAMED_DEADLINE_S, retries included (each read within RELAY_UPSTREAM_TIMEOUT_S)."""
        upstream: UpstreamResponse | None = None
        try:
            async with asyncio.timeout(NON_STREAMED_DEADLINE_S):
                upstream = await client.open(request.payload, request.deployment, record.request_id, record.upstream)
                content = await upstream.read()
            record.usage, record.model = completion_usage(content), answer_model(content)
        except TimeoutError:
            charge.unanswered("upstream_timeout")
            return _error_response(answer_too_slow(), record)
        except RelayError as error:
            if upstream is None:
                charge.failed(error)
            else:
                charge.unanswered(error.code)  # the answer broke off after Azure started it
            return _error_response(answer_too_slow() if isinstance(error.cause, UpstreamTimeout) else error, record)
        except NotACompletion:
            charge.unanswered("unreadable_answer")
            return _error_response(upstream_error("Azure OpenAI sent a response the relay could not read."), record)
        finally:
            if upstream is not None:
                upstream.close()
        if not self.settings.expose_cached_tokens:
            content = hide_cached_tokens(content)
        charge.charge(record.usage)
        record.emit(200)
        return Response(content, status_code=200, media_type=_JSON, headers={**_JSON_HEADERS, "x-request-id": record.request_id})

    def _new_record(self, req: Request, route: str) -> RequestLog:
        """A record keyed by an ID the relay makes; the caller's own ID, when sane, is kept beside it."""
        sent = req.headers.get("x-request-id", "")
        record = RequestLog(uuid.uuid4().hex, route, client_request_id=sent if _SANE_REQUEST_ID.fullmatch(sent) else None)
        record.app, record.sink, record.upstream = self.settings.application_name, self.telemetry, self.telemetry.upstream_notes()
        record.trace_context, record.operation_id = self.telemetry.invocation_context()
        return record

    async def read_body(self, req: Request) -> bytes:
        limit = self.settings.max_body_bytes
        too_large = request_too_large(limit)
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
