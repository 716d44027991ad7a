"""A Responses API request read as the model reads it: its input items, and the chat-shaped body the emulator answers.

Items follow OpenAI's Responses API reference ("Create a model response", ``input``):
a string is one user message; a list holds ``message`` items (``role`` and ``content``, a
string or ``input_text``/``output_text`` parts), ``function_call`` items (``call_id``,
``name``, ``arguments``), ``function_call_output`` items (``call_id``, ``output``) and
``item_reference`` items (``id`` of a stored item). Function tools are flat
(``{"type": "function", "name", "description", "parameters", "strict"}``), a forced choice
is ``{"type": "function", "name"}``, and structured outputs are ``text.format``
(``{"type": "json_schema", "name", "schema", "strict"}``). The emulator answers through the
chat model (:mod:`devhost.emulator.model`), so the request is translated into a chat body;
errors name the Responses fields. Unpaired tool turns get OpenAI's texts: "No tool output
found for function call CALL_ID." and "No tool call found for function call output with
call_id CALL_ID." (both with param ``input``).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from devhost.emulator.generation import content_text
from devhost.emulator.request_errors import EMULATOR_UNSUPPORTED, InvalidRequest, invalid_type, missing
from devhost.emulator.structured import JSON_WORD_MESSAGE

JSON_WORD_RESPONSES_MESSAGE = (
    "Response input messages must contain the word 'json' in some form to use 'text.format' of type 'json_object'."
)
MIN_OUTPUT_TOKENS = 16
_ROLES = ("user", "assistant", "system", "developer")
_TEXT_PARTS = ("input_text", "output_text", "refusal")
_FUNCTION_FIELD = re.compile(r"tools\[(\d+)\]\.function\.")

ItemLookup = Callable[[str], dict[str, Any] | None]


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def input_items(raw: Any, lookup: ItemLookup) -> list[dict[str, Any]]:
    """The request's ``input`` as stored items, with ids; an ``item_reference`` is replaced by the item it names."""
    if isinstance(raw, str):
        return [_message("user", raw)]
    if not isinstance(raw, list):
        raise invalid_type("input", "a string or an array")
    return [_item(item, index, lookup) for index, item in enumerate(raw)]


def chat_body(body: Mapping[str, Any], items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The chat-shaped body the model answers: messages from the items, tools, choice, format and token cap."""
    _check_tool_turns(items)
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise invalid_type("instructions", "a string")
        messages.append({"role": "system", "content": instructions})
    messages.extend(_messages(items))
    if not messages:
        raise InvalidRequest("Invalid 'input': the request has no input items.", "input", "empty_array")
    chat: dict[str, Any] = {"messages": messages}
    # An empty list is no tools here, unlike on Chat Completions: the OpenAI Agents SDK sends one for every
    # agent without tools (its quickstart's "Hello world" agent among them).
    if body.get("tools") is not None and body["tools"] != []:
        chat["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(body["tool_choice"])
    if body.get("parallel_tool_calls") is not None:
        chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    text = body.get("text")
    if text is not None:
        if not isinstance(text, dict):
            raise invalid_type("text", "an object")
        if text.get("format") is not None:
            chat["response_format"] = _response_format(text["format"])
    cap = body.get("max_output_tokens")
    if cap is not None:
        if type(cap) is not int:
            raise invalid_type("max_output_tokens", "an integer")
        if cap < MIN_OUTPUT_TOKENS:
            raise InvalidRequest(
                "Invalid 'max_output_tokens': integer below minimum value. "
                f"Expected a value >= {MIN_OUTPUT_TOKENS}, but got {cap} instead.",
                "max_output_tokens",
                "integer_below_min_value",
            )
        chat["max_completion_tokens"] = cap
    return chat


def responses_error(error: InvalidRequest) -> InvalidRequest:
    """A chat-model error named in the Responses API's fields (``text.format``, ``tools[i].name``, ``input``)."""
    if error.message == JSON_WORD_MESSAGE:
        return InvalidRequest(JSON_WORD_RESPONSES_MESSAGE, "input", error.code)
    param = None if error.param is None else _renamed(error.param)
    if param is not None and param.startswith("messages"):
        param = "input"
    return InvalidRequest(_renamed(error.message), param, error.code)


def _renamed(text: str) -> str:
    """Chat field names in ``text`` replaced by the Responses API's."""
    text = _FUNCTION_FIELD.sub(r"tools[\1].", text)
    return text.replace("response_format.json_schema", "text.format").replace("response_format", "text.format")


def _message(role: str, content: Any, item_id: str | None = None) -> dict[str, Any]:
    part = "output_text" if role == "assistant" else "input_text"
    parts = [{"type": part, "text": content}] if isinstance(content, str) else content
    return {"id": item_id or new_id("msg"), "type": "message", "role": role, "content": parts, "status": "completed"}


def _item(item: Any, index: int, lookup: ItemLookup) -> dict[str, Any]:
    where = f"input[{index}]"
    if not isinstance(item, dict):
        raise invalid_type(where, "an object")
    kind = item.get("type", "message" if "role" in item else None)
    if kind == "message":
        role = item.get("role")
        if role not in _ROLES:
            raise InvalidRequest(
                f"Invalid value: '{role}'. Supported values are: 'user', 'assistant', 'system', and 'developer'.",
                f"{where}.role",
                "invalid_value",
            )
        _check_content(item.get("content"), where)
        return _message(role, item["content"], item.get("id"))
    if kind == "function_call":
        for field in ("call_id", "name", "arguments"):
            if not isinstance(item.get(field), str):
                raise missing(f"{where}.{field}")
        fields = {k: item[k] for k in ("call_id", "name", "arguments")}
        return {"id": item.get("id") or new_id("fc"), "type": "function_call", **fields, "status": "completed"}
    if kind == "function_call_output":
        if not isinstance(item.get("call_id"), str):
            raise missing(f"{where}.call_id")
        if "output" not in item:
            raise missing(f"{where}.output")
        output = item["output"]
        return {"id": item.get("id") or new_id("fco"), "type": "function_call_output", "call_id": item["call_id"], "output": output}
    if kind == "item_reference":
        item_id = item.get("id")
        if not isinstance(item_id, str):
            raise missing(f"{where}.id")
        found = lookup(item_id)
        if found is None:
            raise ItemNotFound(item_id)
        return found
    raise InvalidRequest(
        f"The emulator supports input items of type 'message', 'function_call', 'function_call_output' and 'item_reference', not {kind!r} "
        "(docs/emulators.md).",
        f"{where}.type",
        EMULATOR_UNSUPPORTED,
    )


class ItemNotFound(LookupError):
    """An ``item_reference`` names no stored item."""

    def __init__(self, item_id: str) -> None:
        super().__init__(item_id)
        self.item_id = item_id


def _check_content(content: Any, where: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise missing(f"{where}.content")
    for position, part in enumerate(content):
        if not isinstance(part, dict):
            raise invalid_type(f"{where}.content[{position}]", "an object")
        if "file_id" in part:
            raise InvalidRequest(
                "The emulator has no files: a content part cannot refer to a 'file_id' (docs/emulators.md).",
                f"{where}.content[{position}].file_id",
                EMULATOR_UNSUPPORTED,
            )


def _check_tool_turns(items: Sequence[Mapping[str, Any]]) -> None:
    called: set[str] = set()
    answered: set[str] = set()
    for item in items:
        if item["type"] == "function_call":
            called.add(item["call_id"])
        elif item["type"] == "function_call_output":
            if item["call_id"] not in called:
                raise InvalidRequest(f"No tool call found for function call output with call_id {item['call_id']}.", "input")
            answered.add(item["call_id"])
    for item in items:
        if item["type"] == "function_call" and item["call_id"] not in answered:
            raise InvalidRequest(f"No tool output found for function call {item['call_id']}.", "input")


def _messages(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for item in items:
        if item["type"] == "message":
            messages.append({"role": item["role"], "content": content_text(item["content"])})
        elif item["type"] == "function_call":
            call = {"id": item["call_id"], "type": "function", "function": {"name": item["name"], "arguments": item["arguments"]}}
            if messages and messages[-1]["role"] == "assistant" and messages[-1].get("tool_calls"):
                messages[-1]["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        else:
            output = item["output"]
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": content_text(output) or str(output)})
    return messages


def _tools(tools: Any) -> Any:
    if not isinstance(tools, list):
        return tools
    return [
        {"type": "function", "function": {k: v for k, v in tool.items() if k != "type"}}
        if isinstance(tool, dict) and tool.get("type") == "function"
        else tool
        for tool in tools
    ]


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    return choice


def _response_format(spec: Any) -> Any:
    if isinstance(spec, dict) and spec.get("type") == "json_schema":
        return {"type": "json_schema", "json_schema": {k: v for k, v in spec.items() if k != "type"}}
    return spec
