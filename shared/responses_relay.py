"""The Responses API's handlers: create (streamed or not), retrieve, delete, cancel and input items.

Served only when the relay has a Foundry project endpoint (``AZURE_AI_PROJECT_ENDPOINT``);
``Relay.responses`` answers the guiding 404 otherwise. Per request, as for chat: the Easy Auth
gate and the block list (``Relay.identify``); for a create the request policy
(``shared/responses_policy.py``), the budgets and the caller's concurrency
(``AccessControls.admit``). Every id a request names is unsealed for its caller before anything
goes upstream, and every id an answer carries is sealed for its caller
(``shared/responses_ids.py``): one user never reaches another's state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import unquote, urlencode

from starlette.requests import Request
from starlette.responses import Response

from shared.caller import Caller
from shared.completion import hide_cached_tokens
from shared.errors import RelayError, UpstreamRejected, UpstreamTimeout, answer_too_slow, invalid_request, upstream_error
from shared.forwarded_stream import EXPOSE_HEADERS, ForwardedStream, unless_caller_leaves
from shared.logs import RequestLog
from shared.responses_ids import IdSeal, Owner, OwnerSeal
from shared.responses_key import shared_seal_key
from shared.responses_policy import ResponsesRequest, prepare_conversation, prepare_responses_request, unknown_id
from shared.responses_stream import ResponsesForwarder
from shared.responses_upstream import project_url
from shared.responses_usage import ContextSizes, NotAResponse, chat_usage, response_of

if TYPE_CHECKING:
    from shared.access_controls import AccessControls, TokenCharge
    from shared.config import Settings
    from shared.upstream import Upstream

ResponsesAction = Literal[
    "create", "retrieve", "delete", "cancel", "input_items",
    "conversation_create", "conversation_retrieve", "conversation_delete", "conversation_items",
]  # fmt: skip
# The routes of one stored object: its collection, the method and the route under the object.
_OBJECT_ROUTES: dict[str, tuple[str, str, str | None]] = {
    "retrieve": ("responses", "GET", None),
    "delete": ("responses", "DELETE", None),
    "cancel": ("responses", "POST", "cancel"),
    "input_items": ("responses", "GET", "input_items"),
    "conversation_retrieve": ("conversations", "GET", None),
    "conversation_delete": ("conversations", "DELETE", None),
    "conversation_items": ("conversations", "GET", "items"),
}

# The list routes' query parameters (the Responses API reference, "List input items").
_LIST_QUERY = ("limit", "order", "include[]", "include")
_THREAD_BODY_BYTES = 64 * 1024
_JSON_HEADERS = {"Cache-Control": "no-store", **EXPOSE_HEADERS}


class RelaySteps(Protocol):
    """What the Responses handlers share with chat's (``shared.relay.Relay``)."""

    settings: Settings
    controls: AccessControls

    async def identify(self, req: Request, record: RequestLog) -> Caller: ...

    async def read_body(self, req: Request) -> bytes: ...


class ResponsesRelay:
    def __init__(self, relay: RelaySteps, upstream_factory: Callable[[Settings], Awaitable[Upstream]], deadline_s: float) -> None:
        """``deadline_s``: the most a non-streamed answer may take, retries included (``shared.relay.NON_STREAMED_DEADLINE_S``)."""
        self._relay = relay
        self._settings = relay.settings
        self._deadline_s = deadline_s
        self._upstream_factory = upstream_factory
        self._upstream: Upstream | None = None
        self._upstream_lock = asyncio.Lock()
        self._large_body_gate = asyncio.Semaphore(1)
        key = self._settings.responses.seal_key
        self._seal: IdSeal | None = IdSeal(key) if key else None
        self._seal_lock = asyncio.Lock()
        self.sizes = ContextSizes()

    async def upstream(self) -> Upstream:
        if self._upstream is None:
            async with self._upstream_lock:
                if self._upstream is None:
                    self._upstream = await self._upstream_factory(self._settings)
        return self._upstream

    async def owner_seal(self, caller: Caller) -> OwnerSeal:
        """The caller's sealing, with the key of RELAY_RESPONSES_SEAL_KEY or, read once, the one in RELAY_RESPONSES_TABLE."""
        if self._seal is None:
            async with self._seal_lock:
                if self._seal is None:
                    table = self._relay.controls.table(self._settings.responses.table)
                    self._seal = IdSeal(await shared_seal_key(table))
        return self._seal.for_owner(Owner.of(caller))

    async def aclose(self) -> None:
        if self._upstream is not None:
            await self._upstream.aclose()
            self._upstream = None

    async def handle(self, req: Request, record: RequestLog, action: ResponsesAction) -> Response:
        """The route's answer; raises the caller's RelayError (``Relay.guarded`` answers it).

        The project's error messages may name the ids the request named (``Previous response with id
        '...' not found``): the caller gets them sealed, as it sent them, never the service's own.
        """
        caller = await self._relay.identify(req, record)
        seal = await self.owner_seal(caller)
        try:
            if action == "create":
                return await self._create(req, record, caller, seal)
            if action == "conversation_create":
                return await self._create_conversation(req, record, seal)
            return await self._on_object(req, record, action, seal)
        except RelayError as error:
            if error.cause is None:
                raise
            raise error.reworded(seal.seal_text(error.message)) from error.__cause__

    # Create -------------------------------------------------------------------------------

    async def _create(self, req: Request, record: RequestLog, caller: Caller, seal: OwnerSeal) -> Response:
        request = await self._prepare(await self._relay.read_body(req), caller, seal)
        record.deployment, record.stream = request.deployment, request.stream
        client = await self.upstream()
        context = await self._context_tokens(client, request, record)
        charge = await self._relay.controls.admit(caller, request.prompt_bytes, request.output_cap, context)
        try:
            if charge.output_cap is not None:
                request = request.with_output_cap(charge.output_cap)
            record.budget = "admitted" if self._relay.controls.budgets is not None else None
            return await unless_caller_leaves(req.receive, self._answer(client, request, caller, seal, record, charge))
        except BaseException as error:
            charge.failed(error)  # charged already if an answer ended it
            raise

    async def _prepare(self, raw: bytes, caller: Caller, seal: OwnerSeal) -> ResponsesRequest:
        if len(raw) <= _THREAD_BODY_BYTES:
            return prepare_responses_request(raw, self._settings, caller, seal)
        async with self._large_body_gate:
            return await asyncio.to_thread(prepare_responses_request, raw, self._settings, caller, seal)

    async def _context_tokens(self, client: Upstream, request: ResponsesRequest, record: RequestLog) -> int:
        """The stored context a continuation brings: remembered, or (budgets on) read once from the previous response."""
        previous = request.previous_response_id
        if previous is None:
            return 0
        known = self.sizes.get(previous)
        if known is not None or self._relay.controls.budgets is None:
            return known or 0
        try:
            async with asyncio.timeout(self._settings.upstream_timeout_s):
                upstream = await client.send("GET", project_url(self._settings, "responses", previous), None, record.request_id)
                try:
                    response = response_of(await upstream.read())
                finally:
                    upstream.close()
        except (RelayError, NotAResponse, TimeoutError):
            return 0  # the create itself will say what is wrong with the previous response
        self.sizes.remember(previous, chat_usage(response.get("usage")))
        return self.sizes.get(previous) or 0

    async def _answer(
        self, client: Upstream, request: ResponsesRequest, caller: Caller, seal: OwnerSeal, record: RequestLog, charge: TokenCharge
    ) -> Response:
        url = project_url(self._settings)
        if request.stream:
            upstream = await client.send("POST", url, request.payload, record.request_id, record.upstream)
            forwarder = ResponsesForwarder(seal, self.sizes, hide_cached_tokens=not self._settings.expose_cached_tokens)
            open_stream = self._relay.controls.watch_stream(caller, record.request_id)
            return ForwardedStream(upstream, record, forwarder, charge, self._settings, open_stream)
        try:
            content = await self._whole("POST", url, request.payload, record)
            response = response_of(content)
        except TimeoutError:
            charge.unanswered("upstream_timeout")
            raise answer_too_slow() from None
        except NotAResponse:
            charge.unanswered("unreadable_answer")
            raise upstream_error("The Foundry project sent a response the relay could not read.") from None
        except RelayError as error:
            charge.failed(error)
            raise
        record.usage = chat_usage(response.get("usage"))
        self.sizes.remember(response["id"], record.usage)
        charge.charge(record.usage)
        return self._sealed_answer(content, seal, record)

    # Conversations, and the routes of one response or conversation ---------------------------

    async def _create_conversation(self, req: Request, record: RequestLog, seal: OwnerSeal) -> Response:
        payload = prepare_conversation(await self._relay.read_body(req), self._settings, seal)
        return await self._sealed_call(req, record, seal, "POST", project_url(self._settings, "conversations"), payload)

    async def _on_object(self, req: Request, record: RequestLog, action: ResponsesAction, seal: OwnerSeal) -> Response:
        collection, method, route = _OBJECT_ROUTES[action]
        sealed = _path_id(req, collection)
        object_id = seal.unseal(sealed)
        if object_id is None:
            raise unknown_id(sealed)
        url = project_url(self._settings, collection, object_id, route)
        if method == "GET" and route is not None:
            url += _list_query(req, seal)
        return await self._sealed_call(req, record, seal, method, url, None, sealed)

    async def _sealed_call(
        self, req: Request, record: RequestLog, seal: OwnerSeal, method: str, url: str, payload: bytes | None, sealed: str | None = None
    ) -> Response:
        """The project's answer to one call, its ids sealed; a 404 for the object ``sealed`` names is the relay's own 404."""
        client = await self.upstream()
        try:
            content = await unless_caller_leaves(req.receive, self._whole(method, url, payload, record, client))
        except TimeoutError:
            raise answer_too_slow() from None
        except RelayError as error:
            if sealed is not None and isinstance(error.cause, UpstreamRejected) and error.cause.status == 404:
                raise unknown_id(sealed) from None
            raise
        return self._sealed_answer(content, seal, record)

    # Steps --------------------------------------------------------------------------------

    async def _whole(self, method: str, url: str, payload: bytes | None, record: RequestLog, client: Upstream | None = None) -> bytes:
        """The upstream answer's body, whole, within the relay's deadline for non-streamed answers."""
        client = client or await self.upstream()
        async with asyncio.timeout(self._deadline_s):
            upstream = await client.send(method, url, payload, record.request_id, record.upstream)
            try:
                return await upstream.read()
            except RelayError as error:
                if isinstance(error.cause, UpstreamTimeout):
                    raise TimeoutError from None
                raise
            finally:
                upstream.close()

    def _sealed_answer(self, content: bytes, seal: OwnerSeal, record: RequestLog) -> Response:
        content = seal.seal_messages(seal.seal_json(content))  # a failed response's error message may name ids
        if not self._settings.expose_cached_tokens:
            content = hide_cached_tokens(content)
        record.emit(200)
        return Response(
            content, status_code=200, media_type="application/json", headers={**_JSON_HEADERS, "x-request-id": record.request_id}
        )


def _path_id(req: Request, collection: str) -> str:
    """The object id of ``/api/v1/<collection>/{id}[/...]``, as the caller sent it."""
    parts = req.url.path.split("/")
    at = parts.index(collection) + 1
    return unquote(parts[at]) if at < len(parts) else ""


def _list_query(req: Request, seal: OwnerSeal) -> str:
    """The list route's query as the service gets it: the known parameters, and ``after`` unsealed (an item of the caller)."""
    query = [(name, value) for name, value in req.query_params.multi_items() if name in _LIST_QUERY]
    after = req.query_params.get("after")
    if after is not None:
        item_id = seal.unseal(after)
        if item_id is None:
            raise unknown_id(after, "after")
        query.append(("after", item_id))
    if any(name not in (*_LIST_QUERY, "after") for name in req.query_params):
        raise invalid_request("Only limit, order, after and include are allowed on this route.")
    return "?" + urlencode(query) if query else ""
