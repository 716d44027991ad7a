"""Function tools: the request's ``tools``/``tool_choice``/``parallel_tool_calls``, the tool turns of the
conversation, and which functions the emulator calls.

Conversation errors as Azure and OpenAI send them: "Invalid parameter: messages with role
'tool' must be a response to a preceeding message with 'tool_calls'." with param
``messages.[N].role`` (from Azure: Nikunj2003/LLaMa-MCP-Streamlit#1, lobehub/lobehub#3613);
"Invalid parameter: 'tool_call_id' of 'call_...' not found in 'tool_calls' of previous
message." (dapr/dapr-agents#145); "Missing parameter 'tool_call_id': messages with role
'tool' must have a 'tool_call_id'." with param ``messages.[N].tool_call_id``
(langchain-ai/langchain#22600); "An assistant message with 'tool_calls' must be followed
by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not
have response messages: call_..." with param ``messages.[N].role`` (sdcb/chats#132).
Schema errors: "Invalid schema for function 'NAME': ..." with param
``tools[N].function.parameters`` and code ``invalid_function_parameters``
(the rows of :mod:`devhost.emulator.strict_schema`).

Which functions are called (docs/emulators.md, "Tools"): a ``tool_choice`` naming a
function calls it; ``required`` calls the selected functions, or the first tool when
none is selected; ``auto`` (the default) calls the selected functions only when the
conversation's last message is a user message; ``none`` calls nothing. The selection
is the ``[emulate:tool_call=NAME,...]`` directive's names; or the tools whose names
appear as words in the last user message, in ``tools`` order; or else the one tool the
message is most about by the words of names and descriptions
(:mod:`devhost.emulator.tool_words`). A tool selected from the message takes the place it
names in its place arguments. ``parallel_tool_calls: false`` keeps the first. A forced
choice (a named function or ``required``) calls again after tool results, as Azure does
(a forced ``tool_choice`` always yields a call); ``auto`` answers tool results in text.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from devhost.emulator.directives import DirectiveError, strip_directives
from devhost.emulator.generation import ToolCall, json_pieces, last_user_text, tool_results
from devhost.emulator.request_errors import EMULATOR_UNSUPPORTED, InvalidRequest, invalid_type, missing
from devhost.emulator.schema_rules import accept_schema
from devhost.emulator.tool_names import check_name
from devhost.emulator.tool_words import best_tool, with_place

CHOICES = ("none", "auto", "required")
_CALL_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True)
class Function:
    name: str
    arguments: Any
    """The deterministic instance of its ``parameters``, made once when the request is read."""
    description: str = ""
    parameters: Any = None


@dataclass(frozen=True)
class ToolRequest:
    functions: tuple[Function, ...]
    choice: str
    forced: str | None
    parallel: bool


def parse_tools(body: Mapping[str, Any]) -> ToolRequest | None:
    """The request's tools, or None when it has none; raises :class:`InvalidRequest` as Azure does."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    parallel = body.get("parallel_tool_calls", True)
    if not isinstance(parallel, bool):
        raise invalid_type("parallel_tool_calls", "a boolean")
    if tools is None:
        if choice is not None:
            raise InvalidRequest(
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.", "tool_choice", None
            )
        return None
    if not isinstance(tools, list):
        raise invalid_type("tools", "an array")
    if not tools:
        raise InvalidRequest(
            "Invalid 'tools': empty array. Expected an array with minimum length 1, but got an empty array instead.", "tools", "empty_array"
        )
    functions = tuple(_function(tool, index) for index, tool in enumerate(tools))
    mode, forced = _choice(choice, functions)
    return ToolRequest(functions, mode, forced, parallel)


def check_conversation(messages: Sequence[Mapping[str, Any]]) -> None:
    """Every tool message answers a call of the assistant message before it, and every call is answered."""
    pending: dict[str, int] = {}
    for index, message in enumerate(messages):
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str):
                raise InvalidRequest(
                    "Missing parameter 'tool_call_id': messages with role 'tool' must have a 'tool_call_id'.",
                    f"messages.[{index}].tool_call_id",
                )
            if not pending and not _answers_previous_calls(messages, index):
                raise InvalidRequest(
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.",
                    f"messages.[{index}].role",
                )
            if call_id not in pending:
                raise InvalidRequest(
                    f"Invalid parameter: 'tool_call_id' of '{call_id}' not found in 'tool_calls' of previous message.",
                    f"messages.[{index}].tool_call_id",
                )
            del pending[call_id]
            continue
        _raise_unanswered(pending)
        if role == "assistant" and message.get("tool_calls") is not None:
            pending = {call_id: index for call_id in _call_ids(message.get("tool_calls"), index)}
    _raise_unanswered(pending)


def functions_to_call(request: ToolRequest, messages: Sequence[Mapping[str, Any]], directive: tuple[str, ...] | None) -> list[Function]:
    """The functions to call, in order (empty: answer in text)."""
    by_name = {function.name: function for function in request.functions}
    if directive is not None:
        unknown = [name for name in directive if name not in by_name]
        if unknown:
            raise DirectiveError(f"emulator directive 'tool_call' names {unknown[0]!r}, which is not in 'tools'")
        if request.choice == "none":
            raise DirectiveError("emulator directive 'tool_call' conflicts with tool_choice 'none'")
    if request.choice == "none":
        return []
    if request.forced is not None:
        return [by_name[request.forced]]
    if request.choice == "auto" and tool_results(messages):
        return []
    named = [by_name[name] for name in directive] if directive else _selected(request.functions, messages)
    last_is_user = messages[-1].get("role") == "user"
    if request.choice != "required" and not (last_is_user and (named or directive is not None)):
        return []
    chosen = named or list(request.functions[:1])
    return chosen if request.parallel else chosen[:1]


def _selected(functions: Sequence[Function], messages: Sequence[Mapping[str, Any]]) -> list[Function]:
    """The tools the last user message names, or else the one it is most about; their place arguments from the message."""
    text = strip_directives(last_user_text(messages))
    named = [f for f in functions if re.search(rf"(?<![\w-]){re.escape(f.name)}(?![\w-])", text)]
    if not named:
        best = best_tool([(f.name, f.description) for f in functions], text)
        named = [] if best is None else [functions[best]]
    return [replace(f, arguments=with_place(f.arguments, f.parameters, text)) for f in named]


def make_call(function: Function) -> ToolCall:
    """A call with a fresh ``call_...`` id and the function's arguments."""
    call_id = "call_" + "".join(secrets.choice(_CALL_ID_ALPHABET) for _ in range(24))
    return ToolCall(call_id, function.name, tuple(json_pieces(function.arguments)))


def _function(tool: Any, index: int) -> Function:
    where = f"tools[{index}]"
    if not isinstance(tool, dict):
        raise invalid_type(where, "an object")
    if tool.get("type") != "function":
        if tool.get("type") is None:
            raise missing(f"{where}.type")
        raise InvalidRequest(
            f"The emulator supports function tools only, not {tool.get('type')!r} (docs/emulators.md).",
            f"{where}.type",
            EMULATOR_UNSUPPORTED,
        )
    spec = tool.get("function")
    if not isinstance(spec, dict):
        raise missing(f"{where}.function")
    name = spec.get("name")
    if name is None:
        raise missing(f"{where}.function.name")
    check_name(name, f"{where}.function.name")
    description = spec.get("description")
    description = description if isinstance(description, str) else ""
    if "parameters" not in spec:
        return Function(name, {}, description)
    arguments = accept_schema(
        spec["parameters"],
        strict=spec.get("strict") is True,
        object_root=True,
        label=f"function '{name}'",
        param=f"{where}.function.parameters",
        code="invalid_function_parameters",
    )
    return Function(name, arguments, description, spec["parameters"])


def _choice(choice: Any, functions: Sequence[Function]) -> tuple[str, str | None]:
    if choice is None:
        return "auto", None
    if isinstance(choice, str):
        if choice not in CHOICES:
            raise InvalidRequest(
                f"Invalid value: '{choice}'. Supported values are: 'none', 'auto', and 'required'.", "tool_choice", "invalid_value"
            )
        return choice, None
    if not isinstance(choice, dict) or choice.get("type") != "function":
        raise InvalidRequest(
            "The emulator supports a tool_choice of 'none', 'auto', 'required' or one function (docs/emulators.md).",
            "tool_choice",
            EMULATOR_UNSUPPORTED,
        )
    function = choice.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    if name is None:
        raise missing("tool_choice.function.name")
    if name not in {function.name for function in functions}:
        raise InvalidRequest(
            f"Invalid value for 'tool_choice': function '{name}' is not one of the functions in 'tools'.", "tool_choice", "invalid_value"
        )
    return "required", name


def _call_ids(calls: Any, index: int) -> list[str]:
    if not isinstance(calls, list):
        raise invalid_type(f"messages[{index}].tool_calls", "an array")
    ids = []
    for position, call in enumerate(calls):
        where = f"messages[{index}].tool_calls[{position}]"
        if not isinstance(call, dict):
            raise invalid_type(where, "an object")
        for field in ("id", "type", "function"):
            if field not in call:
                raise missing(f"{where}.{field}")
        ids.append(str(call["id"]))
    return ids


def _answers_previous_calls(messages: Sequence[Mapping[str, Any]], index: int) -> bool:
    """Whether the tool message at ``index`` follows (through other tool messages) an assistant message with calls."""
    before = index - 1
    while before >= 0 and messages[before].get("role") == "tool":
        before -= 1
    return before >= 0 and messages[before].get("role") == "assistant" and bool(messages[before].get("tool_calls"))


def _raise_unanswered(pending: Mapping[str, int]) -> None:
    if pending:
        index = min(pending.values())
        raise InvalidRequest(
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. "
            f"The following tool_call_ids did not have response messages: {', '.join(pending)}",
            f"messages.[{index}].role",
        )
