"""A Foundry project endpoint's Responses API: create (streamed or not), retrieve, delete, cancel, input items.

Paths: ``/api/projects/<project>/openai/v1/responses`` and the routes under it (the Foundry
v1 OpenAPI, Azure/azure-rest-api-specs ``specification/ai-foundry/data-plane/Foundry``,
operation ``createResponse``; "Microsoft Foundry SDKs and endpoints",
learn.microsoft.com/azure/foundry/how-to/develop/sdk-overview). Auth: ``api-key``, or a
bearer token whose audience is ``https://ai.azure.com`` (the scope
``https://ai.azure.com/.default`` the Foundry SDKs ask for). ``user_security_context``
(``AzureUserSecurityContext``) is a top-level field, checked as on chat. What is answered
comes from the chat model (:mod:`devhost.emulator.responses_input`), state from
:mod:`devhost.emulator.responses_store`, shapes from :mod:`devhost.emulator.responses_wire`.
Background responses answer after the ``slow`` directive's wait (none by default) and can be
cancelled meanwhile; cancelling any other response is refused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from devhost.emulator import aoai_wire, responses_wire
from devhost.emulator.directives import DirectiveError, Directives, parse_directives
from devhost.emulator.generation import Answer, last_user_text
from devhost.emulator.model import parse_features, plan_reply
from devhost.emulator.records import RequestRecord
from devhost.emulator.request_errors import EMULATOR_UNSUPPORTED, InvalidRequest
from devhost.emulator.responses_input import ItemNotFound, chat_body, input_items, new_id, responses_error
from devhost.emulator.responses_store import StoredResponse
from devhost.emulator.service_auth import authenticate, security_context_problem
from devhost.emulator.state import EmulatorState, get_state
from devhost.emulator.transport import DropConnection, EventStream, StreamAbort, sleep_unless_disconnected

FOUNDRY_AUDIENCE = "https://ai.azure.com"
BEARER_REJECTED_MESSAGE = f"Unauthorized. Access token is missing, invalid, audience is incorrect ({FOUNDRY_AUDIENCE}), or have expired."
MIDSTREAM_FAIL_AFTER_EVENTS = 5
_UNSUPPORTED_FIELDS = ("prompt", "agent_reference")
_BOOLEANS = ("stream", "store", "background")
T = TypeVar("T")


@dataclass(frozen=True)
class Turn:
    """What a create request continues and adds: the items before its input, its input items, its conversation."""

    context: list[dict[str, Any]]
    items: list[dict[str, Any]]
    conversation: str | None


class Rejected(Exception):
    def __init__(self, status: int, payload: dict[str, Any], headers: Mapping[str, str] | None = None) -> None:
        self.status, self.payload, self.headers = status, payload, headers


def invalid(error: InvalidRequest) -> Rejected:
    return Rejected(400, aoai_wire.openai_error(error.message, error.param, error.code))


def authenticated(request: Request, state: EmulatorState) -> tuple[RequestRecord, dict[str, Any] | None]:
    """The request's record, and Azure's 401 body when its credentials are not accepted."""
    auth, error = authenticate(request.headers, state, FOUNDRY_AUDIENCE, BEARER_REJECTED_MESSAGE)
    record = state.records.add(request.url.path, request.query_params.get("api-version"), auth, request.headers)
    return record, error


async def recorded_body(request: Request, record: RequestRecord, empty: bytes = b"") -> Any:
    """The request's JSON body (``empty`` when there is none; None when it does not parse), kept in its record."""
    try:
        record.body = json.loads(await request.body() or empty)
    except ValueError:
        record.body = None
    return record.body


async def create(request: Request) -> Response:
    state = get_state(request)
    state.stats.responses_requests += 1
    project = request.path_params["project"]
    record, auth_error = authenticated(request, state)
    body = await recorded_body(request, record)
    try:
        if auth_error is not None:
            raise Rejected(401, auth_error)
        _validate(body, record, state.config.deployments)
        context, conversation = _context(state, project, body)
        turn = Turn(context, _input(state, project, body), conversation)
        directives, answer = _answer(body, [*turn.context, *turn.items])
        if body.get("background") is True:
            return _background(state, project, record, body, turn, directives, answer)
        wait_s = directives.slow_s + (0.0 if record.stream else directives.think_s)
        if await sleep_unless_disconnected(request.receive, wait_s):
            record.finish(None, "cancelled")
            return Response(status_code=499)
        _raise_for_directives(directives)
    except Rejected as rejected:
        record.finish(rejected.status, "rejected")
        return JSONResponse(rejected.payload, status_code=rejected.status, headers=rejected.headers)
    if directives.disconnect:
        record.finish(None, "failed")
        return DropConnection()
    response = _respond(state, project, body, turn, answer)
    if record.stream:
        return EventStream(_events(response, answer, directives), lambda outcome: record.finish(200, outcome))
    record.finish(200, "completed")
    return JSONResponse(response)


def _validate(body: Any, record: RequestRecord, known: tuple[str, ...]) -> None:
    if not isinstance(body, dict):
        raise Rejected(400, aoai_wire.openai_error("We could not parse the JSON body of your request."))
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise Rejected(400, aoai_wire.openai_error("Missing required parameter: 'model'.", "model", "missing_required_parameter"))
    record.deployment = model
    record.stream = body.get("stream") is True
    record.user_security_context = body.get("user_security_context")
    if model not in known:
        raise Rejected(404, aoai_wire.azure_error("DeploymentNotFound", aoai_wire.DEPLOYMENT_NOT_FOUND_MESSAGE))
    for name in _BOOLEANS:
        if body.get(name) is not None and not isinstance(body[name], bool):
            raise Rejected(400, aoai_wire.openai_error(f"Invalid type for '{name}': expected a boolean.", name, "invalid_type"))
    for name in _UNSUPPORTED_FIELDS:
        if body.get(name) is not None:
            message = f"The emulator has no stored prompts or agents: '{name}' is not supported (docs/emulators.md)."
            raise Rejected(400, aoai_wire.openai_error(message, name, EMULATOR_UNSUPPORTED))
    if "user_security_context" in body:
        problem = security_context_problem(body["user_security_context"])
        if problem is not None:
            raise Rejected(400, aoai_wire.openai_error(*problem))
    if "input" not in body:
        raise Rejected(400, aoai_wire.openai_error("Missing required parameter: 'input'.", "input", "missing_required_parameter"))
    if body.get("background") is True and (body.get("store") is False or record.stream):
        message = "The emulator answers background responses stored and not streamed (docs/emulators.md)."
        raise Rejected(400, aoai_wire.openai_error(message, "background", EMULATOR_UNSUPPORTED))


def _context(state: EmulatorState, project: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """The items before the request's input (its chain or its conversation), and the conversation's id."""
    previous, conversation = body.get("previous_response_id"), body.get("conversation")
    if previous is not None and conversation is not None:
        message = "Mutually exclusive parameters: Ensure you are only providing one of: 'previous_response_id' or 'conversation'."
        raise Rejected(400, aoai_wire.openai_error(message, None, "mutually_exclusive_parameters"))
    if previous is not None:
        stored = state.responses.response(project, previous) if isinstance(previous, str) else None
        if stored is None:
            message = f"Previous response with id '{previous}' not found."
            raise Rejected(400, aoai_wire.openai_error(message, "previous_response_id", "previous_response_not_found"))
        return list(stored.context), None
    if conversation is None:
        return [], None
    conversation_id = conversation.get("id") if isinstance(conversation, dict) else conversation
    found = state.responses.conversation(project, conversation_id) if isinstance(conversation_id, str) else None
    if found is None:
        raise Rejected(404, responses_wire.not_found("Conversation", str(conversation_id)))
    return list(found.items), found.body["id"]


def _input(state: EmulatorState, project: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        return input_items(body["input"], lambda item_id: state.responses.item(project, item_id))
    except InvalidRequest as error:
        raise invalid(error) from None
    except ItemNotFound as error:
        raise Rejected(404, responses_wire.not_found("Item", error.item_id)) from None


def _answer(body: dict[str, Any], items: list[dict[str, Any]]) -> tuple[Directives, Answer]:
    try:
        chat = chat_body(body, items)
        directives = parse_directives(last_user_text(chat["messages"]))
        answer = plan_reply(body["model"], chat, parse_features(chat), directives)
    except InvalidRequest as error:
        raise invalid(responses_error(error)) from None
    except DirectiveError as error:
        raise Rejected(400, aoai_wire.openai_error(str(error), "input")) from None
    if directives.output_filter:
        answer = dataclasses.replace(answer, pieces=answer.pieces[: max(1, len(answer.pieces) // 2)], finish_reason="content_filter")
    return directives, answer


def _raise_for_directives(directives: Directives) -> None:
    if directives.rate_limit_s is not None:
        seconds = directives.rate_limit_s
        headers = {"Retry-After": str(seconds), "retry-after-ms": str(seconds * 1000)}
        raise Rejected(429, aoai_wire.rate_limited(None, seconds, "Responses_Create"), headers)
    if directives.status is not None:
        raise Rejected(directives.status, aoai_wire.status_error(directives.status))
    if directives.content_filter or directives.jailbreak:
        raise Rejected(400, aoai_wire.prompt_filtered(jailbreak=directives.jailbreak))


def _respond(state: EmulatorState, project: str, body: dict[str, Any], turn: Turn, answer: Answer) -> dict[str, Any]:
    """The finished response, stored (unless ``store: false``) and added to its conversation."""
    opening = responses_wire.response_object(new_id("resp"), int(time.time()), body, status="in_progress", conversation=turn.conversation)
    output = responses_wire.output_items(answer)
    response = responses_wire.finished(opening, answer, output)
    _keep(state, project, body, StoredResponse(response, turn.items, [*turn.context, *turn.items, *output]), turn.conversation)
    return response


def _keep(state: EmulatorState, project: str, body: dict[str, Any], stored: StoredResponse, conversation: str | None) -> None:
    if body.get("store") is not False:
        state.responses.save(project, stored)
    found = state.responses.conversation(project, conversation) if conversation is not None else None
    if found is not None:
        new_items = [*stored.input_items, *stored.response["output"]]
        found.items.extend(new_items)
        state.responses.index(project, new_items)


def _background(
    state: EmulatorState,
    project: str,
    record: RequestRecord,
    body: dict[str, Any],
    turn: Turn,
    directives: Directives,
    answer: Answer,
) -> Response:
    queued = responses_wire.response_object(new_id("resp"), int(time.time()), body, status="queued", conversation=turn.conversation)
    stored = StoredResponse(queued, turn.items, [*turn.context, *turn.items])
    state.responses.save(project, stored)

    async def answer_later() -> None:
        await asyncio.sleep(directives.slow_s + directives.think_s)
        output = responses_wire.output_items(answer)
        stored.response = responses_wire.finished(stored.response, answer, output)
        stored.context.extend(output)
        stored.task = None
        _keep(state, project, body, stored, turn.conversation)

    stored.task = asyncio.ensure_future(answer_later())
    record.finish(200, "completed")
    return JSONResponse(queued)


async def _events(response: dict[str, Any], answer: Answer, directives: Directives) -> AsyncIterator[bytes]:
    delay = directives.chunk_delay_ms / 1000
    for number, (kind, payload) in enumerate(responses_wire.stream_events(response, answer)):
        if directives.midstream_fail and number == MIDSTREAM_FAIL_AFTER_EVENTS:
            raise StreamAbort
        if directives.bad_json and number == 2:
            yield b'event: response.output_text.delta\ndata: {"type": \n\n'
        yield responses_wire.sse_event(kind, payload, number)
        if number == 1 and directives.think_s:
            await asyncio.sleep(directives.think_s)
        elif delay and kind.endswith(".delta"):
            await asyncio.sleep(delay)


async def retrieve(request: Request) -> Response:
    return await _on_stored(request, lambda stored: JSONResponse(stored.response))


async def delete(request: Request) -> Response:
    state = get_state(request)
    project, response_id = request.path_params["project"], request.path_params["response_id"]

    def deleted(_: StoredResponse) -> Response:
        state.responses.delete_response(project, response_id)
        return JSONResponse({"id": response_id, "object": "response.deleted", "deleted": True})

    return await _on_stored(request, deleted)


async def cancel(request: Request) -> Response:
    def cancelled(stored: StoredResponse) -> Response:
        response = stored.response
        if not response["background"]:
            message = "Only responses created with background=true can be cancelled."
            return JSONResponse(aoai_wire.openai_error(message, None), status_code=400)
        if response["status"] not in ("queued", "in_progress"):
            message = f"Cannot cancel a response with status '{response['status']}'."
            return JSONResponse(aoai_wire.openai_error(message, None), status_code=400)
        if stored.task is not None:
            stored.task.cancel()
            stored.task = None
        stored.response = {**response, "status": "cancelled"}
        return JSONResponse(stored.response)

    return await _on_stored(request, cancelled)


async def list_input_items(request: Request) -> Response:
    return await _on_stored(request, lambda stored: listed_page(stored.input_items, request.query_params))


def listed_page(items: list[dict[str, Any]], query: Mapping[str, str]) -> Response:
    """A page of a list route: ``order`` (``desc`` by default), ``limit`` (1-100, 20 by default), ``after`` an id."""
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        error = InvalidRequest(f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.", "order", "invalid_value")
        return JSONResponse(invalid(error).payload, status_code=400)
    raw_limit = query.get("limit", "20")
    limit = int(raw_limit) if raw_limit.isdigit() else 0
    if not 1 <= limit <= 100:
        error = InvalidRequest("Invalid 'limit': expected an integer between 1 and 100.", "limit", "invalid_value")
        return JSONResponse(invalid(error).payload, status_code=400)
    ordered = items if order == "asc" else items[::-1]
    after = query.get("after")
    ids = [item["id"] for item in ordered]
    start = ids.index(after) + 1 if after in ids else 0
    page = ordered[start : start + limit]
    return JSONResponse(responses_wire.listing(page, start + limit < len(ordered)))


async def _on_stored(request: Request, act: Callable[[StoredResponse], Response]) -> Response:
    state = get_state(request)
    state.stats.responses_requests += 1
    return await on_found(request, "response_id", "Response", state.responses.response, act)


async def on_found(request: Request, key: str, what: str, find: Callable[[str, str], T | None], act: Callable[[T], Response]) -> Response:
    """``act`` on the stored object the path names (``key``), after the credentials are checked; 404 when there is none."""
    record, auth_error = authenticated(request, get_state(request))
    if auth_error is not None:
        record.finish(401, "rejected")
        return JSONResponse(auth_error, status_code=401)
    object_id = request.path_params[key]
    found = find(request.path_params["project"], object_id)
    if found is None:
        record.finish(404, "rejected")
        return JSONResponse(responses_wire.not_found(what, object_id), status_code=404)
    answer = act(found)
    record.finish(answer.status_code, "completed" if answer.status_code < 400 else "rejected")
    return answer
