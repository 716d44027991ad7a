"""What a caller may ask of the Responses API, and the exact bytes that go to the Foundry project.

``prepare_responses_request`` turns the caller's raw body into the upstream request, as
``shared/request_policy.py`` does for chat, with the same bounded parse: parameters the
service accepts are forwarded (type-checked); ``max_output_tokens`` is capped and always
sent; ``user`` and ``safety_identifier`` are replaced by the relay's pseudonym; the relay's
``user_security_context`` is added; every id the body names (``previous_response_id``,
``conversation``, an item's ``id``, an ``item_reference``) is unsealed for the caller
(``shared/responses_ids.py``) or the request is a 404; and what refers to state the relay
cannot bind to its caller (``background``, a stored ``prompt``, ``agent_reference``,
``file_id`` parts) or reaches out from the service (server-side tools, unless
RELAY_RESPONSES_ALLOWED_TOOLS names them) is refused (README.md, "The Responses API").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from shared.caller import Caller
from shared.config import Settings
from shared.errors import RelayError, invalid_request, not_found, parameter_not_allowed
from shared.request_policy import MAX_CONTENT_PARTS, deployment_for, encode_body, parse_body
from shared.responses_ids import OwnerSeal

MAX_INPUT_ITEMS = 2048
# The service refuses less ("Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16").
MIN_OUTPUT_TOKENS = 16
_CLIENT_TOOLS = frozenset({"function", "custom"})


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _in_range(low: float, high: float) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high


def _is_short_str(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64


def _is_int_between(low: int, high: int) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_stream_options(value: Any) -> bool:
    return isinstance(value, dict) and set(value) <= {"include_obfuscation"} and all(map(_is_bool, value.values()))


def _is_metadata(value: Any) -> bool:
    return isinstance(value, dict) and len(value) <= 16 and all(isinstance(item, str) for item in value.values())


_FORWARDED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "stream": (_is_bool, "a boolean"),
    "stream_options": (_is_stream_options, "an object of booleans (include_obfuscation)"),
    "instructions": (lambda v: v is None or isinstance(v, str), "a string"),
    "temperature": (_in_range(0, 2), "a number between 0 and 2"),
    "top_p": (_in_range(0, 1), "a number between 0 and 1"),
    "top_logprobs": (_is_int_between(0, 20), "an integer between 0 and 20"),
    "tool_choice": (lambda v: isinstance(v, (str, dict)), "a string or an object"),
    "parallel_tool_calls": (_is_bool, "a boolean"),
    "max_tool_calls": (_is_int_between(1, 2**31 - 1), "a positive integer"),
    "text": (lambda v: isinstance(v, dict), "an object"),
    "reasoning": (lambda v: isinstance(v, dict), "an object"),
    "truncation": (_is_short_str, "a string"),
    "include": (lambda v: isinstance(v, list) and all(_is_short_str(item) for item in v), "a list of strings"),
    "metadata": (_is_metadata, "an object of at most 16 strings"),
    "prompt_cache_key": (lambda v: isinstance(v, str) and len(v) <= 256, "a string"),
    "prompt_cache_retention": (_is_short_str, "a string"),
}
_REPLACED = ("user", "safety_identifier")
# Decided below: the model, the input and its ids, the output cap, tools, retention and cost levers.
_DECIDED = ("model", "input", "max_output_tokens", "tools", "store", "service_tier", "previous_response_id", "conversation")
ALLOWED_PARAMETERS = frozenset({*_FORWARDED, *_REPLACED, *_DECIDED})
# Refused with a reason: state the relay cannot bind to its caller.
_UNBOUND = {
    "background": "a background response runs on after the request, beyond the relay's budgets and streams",
    "prompt": "a stored prompt lives in the project every user of this app shares",
    "agent_reference": "a server-side agent keeps its own state in the project every user of this app shares",
    "agent": "a server-side agent keeps its own state in the project every user of this app shares",
}


@dataclass(frozen=True)
class ResponsesRequest:
    """The body the project receives, serialised, and what the relay needs to know about it."""

    payload: bytes
    deployment: str
    stream: bool
    # max_output_tokens, the payload's last member.
    output_cap: int
    prompt_bytes: int
    # The service's id of the response this one continues.
    previous_response_id: str | None = None

    def with_output_cap(self, cap: int) -> ResponsesRequest:
        """The same request with ``max_output_tokens`` lowered to ``cap`` (at least the service's minimum); no re-parse."""
        cap = max(cap, MIN_OUTPUT_TOKENS)
        if cap >= self.output_cap:
            return self
        tail = _cap_tail(self.output_cap)
        assert self.payload.endswith(tail)
        return replace(self, payload=self.payload[: -len(tail)] + _cap_tail(cap), output_cap=cap)


def _cap_tail(cap: int) -> bytes:
    return f',"max_output_tokens":{cap}}}'.encode()


def prepare_responses_request(raw: bytes, settings: Settings, caller: Caller, seal: OwnerSeal) -> ResponsesRequest:
    """Validate the caller's body and build the upstream request; raise the caller's :class:`RelayError` (400 or 404)."""
    body = parse_body(raw)
    _check_parameters(body, settings)
    upstream = dict(body)
    upstream["model"] = deployment_for(body.get("model"), settings)
    upstream["input"] = _input(body.get("input"), seal)
    if "tools" in body:
        _check_tools(body["tools"], settings.responses.allowed_tools)
    previous = body.get("previous_response_id")
    if previous is not None:
        previous = upstream["previous_response_id"] = _unsealed(seal, previous, "previous_response_id")
    if body.get("conversation") is not None:
        upstream["conversation"] = _conversation(body["conversation"], seal)
    upstream["store"] = _store(body.get("store"), settings)
    pseudonym = caller.pseudonym(settings.application_name)
    for name in _REPLACED:
        if name in upstream:
            upstream[name] = pseudonym
    upstream["user_security_context"] = caller.security_context(settings.application_name)
    # The cap goes last, so that a budget can lower it without serialising the body again.
    cap = min(upstream.pop("max_output_tokens", settings.max_tokens), settings.max_tokens)
    upstream["max_output_tokens"] = max(cap, MIN_OUTPUT_TOKENS)
    stream = body.get("stream") is True
    return ResponsesRequest(encode_body(upstream), upstream["model"], stream, upstream["max_output_tokens"], len(raw), previous)


def _check_parameters(body: Mapping[str, Any], settings: Settings) -> None:
    for name in body:
        if name in _UNBOUND and body[name] not in (None, False):
            raise parameter_not_allowed(f"'{name}' is not allowed by this relay: {_UNBOUND[name]}.", name)
        if name not in ALLOWED_PARAMETERS and name not in _UNBOUND:
            raise parameter_not_allowed(f"The parameter '{name[:64]}' is not allowed by this relay.", name[:64])
    for name, value in body.items():
        check = _FORWARDED.get(name)
        if check is not None and not check[0](value):
            raise invalid_request(f"'{name}' must be {check[1]}.", param=name)
    for name in _REPLACED:
        if name in body and not isinstance(body[name], str):
            raise invalid_request(f"'{name}' must be a string.", param=name)
    if "max_output_tokens" in body and not _is_int_between(MIN_OUTPUT_TOKENS, 2**31 - 1)(body["max_output_tokens"]):
        raise invalid_request(f"'max_output_tokens' must be an integer of at least {MIN_OUTPUT_TOKENS}.", param="max_output_tokens")
    if "stream_options" in body and body.get("stream") is not True:
        raise invalid_request("'stream_options' is only allowed when 'stream' is true.", param="stream_options")
    if body.get("previous_response_id") is not None and body.get("conversation") is not None:
        raise invalid_request("'previous_response_id' and 'conversation' cannot both be set.", param="conversation")
    if "service_tier" in body:
        tier = body["service_tier"]
        if not isinstance(tier, str) or tier not in settings.allowed_service_tiers:
            allowed = ", ".join(sorted(settings.allowed_service_tiers)) or "none"
            raise parameter_not_allowed(
                f"The service tier '{str(tier)[:32]}' is not allowed by this relay (allowed: {allowed}; RELAY_ALLOWED_SERVICE_TIERS).",
                "service_tier",
            )


def _store(store: Any, settings: Settings) -> bool:
    """Stored unless the caller says not, when RELAY_RESPONSES_STORE allows storing; never stored when it does not."""
    if store is None:
        return settings.responses.store
    if not isinstance(store, bool):
        raise invalid_request("'store' must be a boolean.", param="store")
    if store and not settings.responses.store:
        raise parameter_not_allowed(
            "'store: true' is not allowed by this relay: responses are not kept in the shared Foundry project (RELAY_RESPONSES_STORE).",
            "store",
        )
    return store


def _check_tools(tools: Any, allowed: frozenset[str]) -> None:
    if not isinstance(tools, list) or not all(isinstance(tool, dict) for tool in tools):
        raise invalid_request("'tools' must be a list of tool objects.", param="tools")
    for index, tool in enumerate(tools):
        kind = tool.get("type")
        if not isinstance(kind, str):
            raise invalid_request(f"tools[{index}] must have a type.", param="tools")
        if kind not in _CLIENT_TOOLS and kind not in allowed:
            raise parameter_not_allowed(
                f"The tool type '{kind[:64]}' (tools[{index}]) is not allowed by this relay: server-side tools reach out "
                "from the service, run code or cost more than tokens (RELAY_RESPONSES_ALLOWED_TOOLS).",
                "tools",
            )


def _input(raw: Any, seal: OwnerSeal) -> Any:
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, list) or not raw:
        raise invalid_request("'input' must be a string or a non-empty list of items.", param="input")
    if len(raw) > MAX_INPUT_ITEMS:
        raise invalid_request(f"'input' must hold at most {MAX_INPUT_ITEMS} items.", param="input")
    return [_item(index, item, seal) for index, item in enumerate(raw)]


def _item(index: int, item: Any, seal: OwnerSeal) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise invalid_request(f"input[{index}] must be an object.", param="input")
    kind = item.get("type", "message")
    if not isinstance(kind, str):
        raise invalid_request(f"input[{index}].type must be a string.", param="input")
    if kind == "item_reference" and not isinstance(item.get("id"), str):
        raise invalid_request(f"input[{index}] (an item_reference) must name an id.", param="input")
    content = item.get("content")
    if isinstance(content, list):
        if len(content) > MAX_CONTENT_PARTS:
            raise invalid_request(f"input[{index}].content must hold at most {MAX_CONTENT_PARTS} parts.", param="input")
        for part in content:
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise invalid_request(f"input[{index}].content parts must be objects with a type.", param="input")
            if part.get("file_id") is not None:
                raise parameter_not_allowed(
                    f"input[{index}].content refers to a file by 'file_id': files live in the project every user of this "
                    "app shares; send the file's data instead.",
                    "input",
                )
    if "id" not in item or item["id"] is None:
        return item
    return {**item, "id": _unsealed(seal, item["id"], "input")}


def _conversation(conversation: Any, seal: OwnerSeal) -> Any:
    if isinstance(conversation, str):
        return _unsealed(seal, conversation, "conversation")
    if isinstance(conversation, dict) and isinstance(conversation.get("id"), str):
        return {**conversation, "id": _unsealed(seal, conversation["id"], "conversation")}
    raise invalid_request("'conversation' must be an id or an object with an id.", param="conversation")


def _unsealed(seal: OwnerSeal, sealed: Any, param: str) -> str:
    if not isinstance(sealed, str):
        raise invalid_request(f"'{param}' ids must be strings.", param=param)
    service_id = seal.unseal(sealed)
    if service_id is None:
        raise unknown_id(sealed, param)
    return service_id


def unknown_id(sealed: str, param: str | None = None) -> RelayError:
    """The same 404 for an id that does not exist and one that is not the caller's: it never confirms that an id exists."""
    return not_found(f"No response, item or conversation with id '{sealed[:128]}' was found.", param)


# A conversation is created with at most this many items (OpenAI's Conversations API reference, "Create a conversation").
MAX_CONVERSATION_ITEMS = 20


def prepare_conversation(raw: bytes, settings: Settings, seal: OwnerSeal) -> bytes:
    """The body of a new conversation the project receives: its ``items`` checked as input items are, its ``metadata``."""
    body = parse_body(raw) if raw.strip() else {}
    for name in body:
        if name not in ("items", "metadata"):
            raise parameter_not_allowed(f"The parameter '{name[:64]}' is not allowed by this relay.", name[:64])
    if not settings.responses.store:
        raise parameter_not_allowed(
            "Conversations are not allowed by this relay: they keep their items in the shared Foundry project "
            "(RELAY_RESPONSES_STORE=false).",
            "items",
        )
    upstream: dict[str, Any] = {}
    if "metadata" in body:
        if not _is_metadata(body["metadata"]):
            raise invalid_request("'metadata' must be an object of at most 16 strings.", param="metadata")
        upstream["metadata"] = body["metadata"]
    items = body.get("items") or []
    if not isinstance(items, list) or len(items) > MAX_CONVERSATION_ITEMS:
        raise invalid_request(f"'items' must be a list of at most {MAX_CONVERSATION_ITEMS} items.", param="items")
    if items:
        upstream["items"] = [_item(index, item, seal) for index, item in enumerate(items)]
    return encode_body(upstream)
