"""A Foundry project endpoint's Conversations API: create, retrieve, delete, list items.

Paths ``/api/projects/<project>/openai/v1/conversations[/<id>[/items]]`` (the Foundry v1
OpenAPI's "Conversations (OpenAI)"); shapes from OpenAI's Conversations API reference: a
conversation is ``{"id": "conv_...", "object": "conversation", "created_at", "metadata"}``,
its deletion ``{"id", "object": "conversation.deleted", "deleted": true}``. A response
created with ``conversation`` adds its input and output items
(:mod:`devhost.emulator.responses_api`). Auth as for responses.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from devhost.emulator import responses_wire
from devhost.emulator.request_errors import InvalidRequest, invalid_type
from devhost.emulator.responses_api import Rejected, authenticated, invalid, listed_page, on_found, recorded_body
from devhost.emulator.responses_input import ItemNotFound, input_items
from devhost.emulator.responses_store import Conversation
from devhost.emulator.state import get_state


async def create(request: Request) -> Response:
    state = get_state(request)
    project = request.path_params["project"]
    record, auth_error = authenticated(request, state)
    body = await recorded_body(request, record, b"{}")
    try:
        if auth_error is not None:
            raise Rejected(401, auth_error)
        if not isinstance(body, dict):
            raise invalid(invalid_type("body", "an object"))
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise invalid(invalid_type("metadata", "an object"))
        items = input_items(body.get("items") or [], lambda item_id: state.responses.item(project, item_id))
    except InvalidRequest as error:
        record.finish(400, "rejected")
        return JSONResponse(invalid(error).payload, status_code=400)
    except ItemNotFound as error:
        record.finish(404, "rejected")
        return JSONResponse(responses_wire.not_found("Item", error.item_id), status_code=404)
    except Rejected as rejected:
        record.finish(rejected.status, "rejected")
        return JSONResponse(rejected.payload, status_code=rejected.status)
    conversation = state.responses.new_conversation(project, int(time.time()), metadata, items)
    record.finish(200, "completed")
    return JSONResponse(conversation.body)


async def retrieve(request: Request) -> Response:
    return await _on_conversation(request, lambda found: JSONResponse(found.body))


async def delete(request: Request) -> Response:
    state = get_state(request)

    def deleted(found: Conversation) -> Response:
        state.responses.delete_conversation(request.path_params["project"], found.body["id"])
        return JSONResponse({"id": found.body["id"], "object": "conversation.deleted", "deleted": True})

    return await _on_conversation(request, deleted)


async def list_items(request: Request) -> Response:
    return await _on_conversation(request, lambda found: listed_page(found.items, request.query_params))


async def _on_conversation(request: Request, act: Callable[[Conversation], Response]) -> Response:
    return await on_found(request, "conversation_id", "Conversation", get_state(request).responses.conversation, act)
