"""The Responses API's JSON: the response object, its output items, its stream events and its errors.

Shapes from OpenAI's Responses API reference ("The response object", "Streaming events"),
which a Foundry project endpoint serves under ``/api/projects/<project>/openai/v1/responses``
(the Foundry v1 OpenAPI in Azure/azure-rest-api-specs, operation ``createResponse``). A
stream is named server-sent events (``event: <type>`` and ``data: <JSON with type and
sequence_number>``), in this order: ``response.created``, ``response.in_progress``; per
output item ``response.output_item.added``, for a message ``response.content_part.added``,
``response.output_text.delta`` per piece, ``response.output_text.done``,
``response.content_part.done``, for a function call ``response.function_call_arguments.delta``
per piece and ``response.function_call_arguments.done``, then ``response.output_item.done``;
last ``response.completed`` (or ``response.incomplete``) carrying the whole response with
``usage``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from devhost.emulator.generation import Answer
from devhost.emulator.responses_input import new_id

INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def output_items(answer: Answer) -> list[dict[str, Any]]:
    """The response's output: one ``function_call`` item per call, or one assistant ``message``."""
    status = "incomplete" if answer.finish_reason in INCOMPLETE_REASONS else "completed"
    if answer.tool_calls:
        return [
            {
                "id": new_id("fc"),
                "type": "function_call",
                "status": status,
                "call_id": call.id,
                "name": call.name,
                "arguments": call.arguments,
            }
            for call in answer.tool_calls
        ]
    text = {"type": "output_text", "text": answer.text, "annotations": [], "logprobs": []}
    return [{"id": new_id("msg"), "type": "message", "status": status, "role": "assistant", "content": [text]}]


def usage(answer: Answer) -> dict[str, Any]:
    counts = answer.usage()
    return {
        "input_tokens": counts["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": counts["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": counts["total_tokens"],
    }


def response_object(response_id: str, created_at: int, body: Mapping[str, Any], *, status: str, conversation: str | None) -> dict[str, Any]:
    """A response without output yet: the request's settings echoed, as the service echoes them."""
    text = body.get("text")
    text = text if isinstance(text, dict) else {}
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": body.get("background") is True,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body.get("model"),
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": body.get("store") is not False,
        "temperature": _or(body.get("temperature"), 1.0),
        "text": {"format": text.get("format") or {"type": "text"}},
        "tool_choice": _or(body.get("tool_choice"), "auto"),
        "tools": body.get("tools") or [],
        "top_p": _or(body.get("top_p"), 1.0),
        "truncation": _or(body.get("truncation"), "disabled"),
        "usage": None,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
        "conversation": None if conversation is None else {"id": conversation},
    }


def _or(value: Any, default: Any) -> Any:
    """A field as the service echoes it: its default when the request leaves it out or sends null."""
    return default if value is None else value


def finished(response: Mapping[str, Any], answer: Answer, output: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The response once the answer is complete: its status, output and usage."""
    reason = INCOMPLETE_REASONS.get(answer.finish_reason)
    return {
        **response,
        "status": "incomplete" if reason else "completed",
        "incomplete_details": {"reason": reason} if reason else None,
        "output": list(output),
        "usage": usage(answer),
    }


def stream_events(response: Mapping[str, Any], answer: Answer) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(type, payload)`` of every event of the stream of a finished ``response``, in the documented order."""
    opening = {**response, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    yield "response.created", {"response": opening}
    yield "response.in_progress", {"response": opening}
    for index, item in enumerate(response["output"]):
        if item["type"] == "function_call":
            yield from _call_events(index, item, answer.tool_calls[index].pieces)
        else:
            yield from _message_events(index, item, answer.pieces)
    yield ("response.incomplete" if response["status"] == "incomplete" else "response.completed"), {"response": dict(response)}


def _message_events(index: int, item: Mapping[str, Any], pieces: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    where = {"item_id": item["id"], "output_index": index}
    yield "response.output_item.added", {"output_index": index, "item": {**item, "status": "in_progress", "content": []}}
    empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    yield "response.content_part.added", {**where, "content_index": 0, "part": empty}
    for piece in pieces:
        yield "response.output_text.delta", {**where, "content_index": 0, "delta": piece, "logprobs": []}
    part = item["content"][0]
    yield "response.output_text.done", {**where, "content_index": 0, "text": part["text"], "logprobs": []}
    yield "response.content_part.done", {**where, "content_index": 0, "part": part}
    yield "response.output_item.done", {"output_index": index, "item": dict(item)}


def _call_events(index: int, item: Mapping[str, Any], pieces: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    where = {"item_id": item["id"], "output_index": index}
    yield "response.output_item.added", {"output_index": index, "item": {**item, "status": "in_progress", "arguments": ""}}
    for piece in pieces:
        yield "response.function_call_arguments.delta", {**where, "delta": piece}
    yield "response.function_call_arguments.done", {**where, "name": item["name"], "arguments": item["arguments"]}
    yield "response.output_item.done", {"output_index": index, "item": dict(item)}


def sse_event(kind: str, payload: Mapping[str, Any], sequence_number: int) -> bytes:
    data = json.dumps({"type": kind, "sequence_number": sequence_number, **payload}, separators=(",", ":"))
    return f"event: {kind}\ndata: {data}\n\n".encode()


def not_found(what: str, object_id: str) -> dict[str, Any]:
    return {"error": {"message": f"{what} with id '{object_id}' not found.", "type": "invalid_request_error", "param": None, "code": None}}


def listing(items: Sequence[Mapping[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": list(items),
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }
