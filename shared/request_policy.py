"""What a caller may ask for, and the exact bytes that go to Azure OpenAI.

``prepare_chat_request`` turns the caller's raw body into the upstream request:
parameters Azure OpenAI accepts are forwarded (type-checked), token counts are
capped, identity fields are replaced by values derived from the authenticated
caller, cost and retention levers obey the instance's settings, and anything
else is a 400 naming the parameter (README.md, "Parameter policy").

The parse is bounded: a body of more than ``MAX_JSON_CONTAINERS`` objects and
arrays is refused before anything is built, so a body of many tiny containers
costs little more than counting its brackets; numbers must be finite and text
valid Unicode, because Azure OpenAI would refuse (or misread) anything else.
The parsed body is dropped once it has been serialised.

The caller's identity and data sources are the relay's to set: a key naming
``user_security_context`` or ``data_sources`` (in any case, with any separators) is
refused wherever it is a key of the request's own objects, at any depth, and
accepted only inside a JSON schema the caller writes (a tool's ``parameters``,
``response_format.json_schema.schema``), whose property names are the caller's.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from shared.caller import Caller
from shared.config import Settings
from shared.errors import invalid_request, model_not_allowed, parameter_not_allowed

# Objects and arrays together; a long conversation with images and tools holds a few thousand.
MAX_JSON_CONTAINERS = 50_000
# OpenAI's API refuses more ("'$.messages' is too long. Maximum length is 2048").
MAX_MESSAGES = 2048
MAX_CONTENT_PARTS = 2048
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_INT64 = 2**63
# Azure accepts max_completion_tokens from api-version 2024-09-01-preview (and in v1); reasoning models refuse max_tokens.
_FIRST_VERSION_WITH_MAX_COMPLETION_TOKENS = "2024-09-01"
_STREAM_OPTIONS = frozenset({"include_usage", "include_obfuscation"})


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -_INT64 <= value < _INT64


def _is_positive_int(value: Any) -> bool:
    return _is_int(value) and value >= 1


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_short_str(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64


def _in_range(low: float, high: float) -> Callable[[Any], bool]:
    return lambda value: _is_number(value) and low <= value <= high


def _is_list_of_objects(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


def _is_stream_options(value: Any) -> bool:
    return isinstance(value, dict) and set(value) <= _STREAM_OPTIONS and all(isinstance(v, bool) for v in value.values())


def _is_metadata(value: Any) -> bool:
    return isinstance(value, dict) and len(value) <= 16 and all(isinstance(v, str) for v in value.values())


# Each parameter forwarded as it is (after its check), besides messages, model and those decided below.
# Values whose set grows with new models (reasoning_effort, verbosity, prompt_cache_retention) are checked
# for their type only; Azure OpenAI validates the value itself.
_FORWARDED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "stream": (lambda v: isinstance(v, bool), "a boolean"),
    "stream_options": (_is_stream_options, "an object of booleans (include_usage, include_obfuscation)"),
    "temperature": (_in_range(0, 2), "a number between 0 and 2"),
    "top_p": (_in_range(0, 1), "a number between 0 and 1"),
    "stop": (lambda v: v is None or isinstance(v, str) or (_is_str_list(v) and len(v) <= 4), "a string or up to 4 strings"),
    "seed": (_is_int, "a 64-bit integer"),
    "presence_penalty": (_in_range(-2, 2), "a number between -2 and 2"),
    "frequency_penalty": (_in_range(-2, 2), "a number between -2 and 2"),
    "logit_bias": (lambda v: isinstance(v, dict) and all(_in_range(-100, 100)(b) for b in v.values()), "an object of token biases"),
    "logprobs": (lambda v: isinstance(v, bool), "a boolean"),
    "top_logprobs": (lambda v: _is_int(v) and 0 <= v <= 20, "an integer between 0 and 20"),
    "response_format": (lambda v: isinstance(v, dict) and isinstance(v.get("type"), str), "an object with a type"),
    "tools": (_is_list_of_objects, "a list of tool objects"),
    "tool_choice": (lambda v: isinstance(v, (str, dict)), "a string or an object"),
    "parallel_tool_calls": (lambda v: isinstance(v, bool), "a boolean"),
    "functions": (_is_list_of_objects, "a list of function objects"),
    "function_call": (lambda v: isinstance(v, (str, dict)), "a string or an object"),
    "reasoning_effort": (_is_short_str, "a string"),
    "verbosity": (_is_short_str, "a string"),
    "prediction": (lambda v: isinstance(v, dict), "an object"),
    "modalities": (_is_str_list, "a list of strings"),
    "audio": (lambda v: isinstance(v, dict), "an object"),
    "metadata": (_is_metadata, "an object of at most 16 strings"),
    "prompt_cache_key": (lambda v: isinstance(v, str) and len(v) <= 256, "a string"),
    "prompt_cache_retention": (_is_short_str, "a string"),
}
_CAPPED = ("max_tokens", "max_completion_tokens")
# The caller's own end-user identifiers: always replaced by the relay's pseudonym of the authenticated caller.
_REPLACED = ("user", "safety_identifier")
_DECIDED = ("n", "store", "service_tier")
ALLOWED_PARAMETERS = frozenset({"messages", "model", *_FORWARDED, *_CAPPED, *_REPLACED, *_DECIDED})
_SCHEMA_KEYS = frozenset({"parameters", "schema"})
# Keys only the relay may set: user_security_context and data_sources, whatever separates their letters.
_RELAY_KEY = re.compile(
    "|".join(r"[\W_]*" + r"[\W_]*".join(word) + r"[\W_]*" for word in ("usersecuritycontext", "datasources")), re.IGNORECASE
)


@dataclass(frozen=True)
class ChatRequest:
    """The body Azure OpenAI receives, serialised, and what the relay needs to know about it."""

    payload: bytes
    deployment: str
    stream: bool
    # The caller did not ask for the usage chunk that the relay asks for (so it is removed from the stream).
    hide_usage: bool
    # The output caps the payload ends with (max_tokens and/or max_completion_tokens), in order.
    caps: tuple[tuple[str, int], ...] = ()
    # The caller's body, in bytes: everything Azure bills as prompt is in it (a budget's prompt estimate).
    prompt_bytes: int = 0

    @property
    def output_cap(self) -> int:
        return min(value for _, value in self.caps)

    def with_output_cap(self, cap: int) -> ChatRequest:
        """The same request with its output caps lowered to ``cap`` (a token budget's remainder); no re-parse.

        The caps are the payload's last members, so only its tail is rewritten.
        """
        if cap >= self.output_cap:
            return self
        tail = _caps_tail(self.caps)
        assert self.payload.endswith(tail)
        lowered = tuple((name, min(value, cap)) for name, value in self.caps)
        return replace(self, payload=self.payload[: -len(tail)] + _caps_tail(lowered), caps=lowered)


def prepare_chat_request(raw: bytes, settings: Settings, caller: Caller) -> ChatRequest:
    """Validate the caller's body and build the upstream request; raise a 400 :class:`RelayError` naming the problem."""
    body = parse_body(raw)
    _check_parameters(body, settings)
    stream = body.get("stream") is True
    hide_usage = stream and body.get("stream_options", {}).get("include_usage") is not True
    upstream = dict(body)
    upstream["model"] = deployment_for(body.get("model"), settings)
    _cap_tokens(upstream, settings)
    pseudonym = caller.pseudonym(settings.application_name)
    for name in _REPLACED:
        if name in upstream:
            upstream[name] = pseudonym
    if stream:
        # The log line records a stream's usage, so Azure is always asked for it.
        upstream["stream_options"] = {**body.get("stream_options", {}), "include_usage": True}
    upstream["user_security_context"] = caller.security_context(settings.application_name)
    # The caps go last, so that a budget can lower them without serialising the body again.
    caps = tuple((name, upstream.pop(name)) for name in _CAPPED if name in upstream)
    upstream.update(caps)
    return ChatRequest(encode_body(upstream), upstream["model"], stream, hide_usage, caps, len(raw))


def _caps_tail(caps: tuple[tuple[str, int], ...]) -> bytes:
    return ("".join(f',"{name}":{value}' for name, value in caps) + "}").encode()


def parse_body(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object; 400 for anything else, including more than ``MAX_JSON_CONTAINERS`` objects and arrays."""
    text: bytes | str = raw
    # Every '[' or '{' byte is at most one container, so a body with few of them is parsed as it is (the common case);
    # otherwise the brackets inside strings are told apart, still without building anything.
    if len(raw) > MAX_JSON_CONTAINERS and raw.count(b"[") + raw.count(b"{") > MAX_JSON_CONTAINERS:
        try:
            text = raw.decode(json.detect_encoding(raw), "surrogatepass")
        except UnicodeDecodeError:
            raise invalid_request("The request body is not valid JSON.") from None
        if containers_outside_strings(text, MAX_JSON_CONTAINERS) > MAX_JSON_CONTAINERS:
            raise invalid_request(f"The request body holds more than {MAX_JSON_CONTAINERS} JSON objects and arrays.")
    try:
        body = json.loads(text, parse_float=_finite_float, parse_constant=_reject_constant)
    except RecursionError:
        # The C parser's own depth limit (the interpreter's recursion limit): thousands of levels, far past any request.
        raise invalid_request("The request body is nested too deeply.") from None
    except ValueError:
        raise invalid_request("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object.")
    return body


def containers_outside_strings(text: str, stop_after: int, chunk: int = 65536) -> int:
    """How many ``[`` and ``{`` of ``text`` open a container (are outside strings): exact for valid JSON, up to
    ``stop_after``; past it, the count so far.

    Escaped backslashes, then escaped quotes, are removed first (left to right, as a JSON parser reads them; none
    occur outside strings), so every quote left opens or closes a string, and the text outside strings is every
    other piece between quotes (``str.split``, at C speed, a chunk at a time so the pieces stay few).
    """
    flat = text.replace("\\\\", "").replace('\\"', "")
    count = 0
    inside = 0
    for start in range(0, len(flat), chunk):
        pieces = flat[start : start + chunk].split('"')
        outside = "".join(pieces[inside::2])
        count += outside.count("[") + outside.count("{")
        if count > stop_after:
            break
        inside = (inside + len(pieces) - 1) % 2
    return count


def encode_body(body: Mapping[str, Any]) -> bytes:
    """UTF-8 JSON; a lone surrogate (valid as a JSON escape, invalid as Unicode) is a 400."""
    try:
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except UnicodeEncodeError:
        raise invalid_request("The request body holds a lone UTF-16 surrogate, which is not valid Unicode.") from None


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _check_parameters(body: Mapping[str, Any], settings: Settings) -> None:
    for name in body:
        if name not in ALLOWED_PARAMETERS:
            raise parameter_not_allowed(f"The parameter '{name[:64]}' is not allowed by this relay.", name[:64])
    _check_nested_keys(body)
    _check_messages(body.get("messages"))
    for name, value in body.items():
        check = _FORWARDED.get(name)
        if check is not None and not check[0](value):
            raise invalid_request(f"'{name}' must be {check[1]}.", param=name)
    for name in (*_CAPPED, "n"):
        if name in body and not _is_positive_int(body[name]):
            raise invalid_request(f"'{name}' must be a positive integer.", param=name)
    for name in _REPLACED:
        if name in body and not isinstance(body[name], str):
            raise invalid_request(f"'{name}' must be a string.", param=name)
    if "stream_options" in body and body.get("stream") is not True:
        raise invalid_request("'stream_options' is only allowed when 'stream' is true.", param="stream_options")
    if body.get("n", 1) > settings.max_n:
        raise invalid_request(f"'n' must be at most {settings.max_n} on this relay.", param="n")
    _check_levers(body, settings)


def _is_relay_key(name: str) -> bool:
    """Whether a lenient parser might read the key as one only the relay may set: in any case, with any separators
    between or around its letters, after compatibility normalisation (full-width letters)."""
    if not name.isascii():
        name = unicodedata.normalize("NFKC", name).casefold()
    return _RELAY_KEY.fullmatch(name) is not None


def _is_schema(path: tuple[str | int, ...], key: str) -> bool:
    """Whether ``path + (key,)`` holds a JSON schema the caller wrote, whose property names are the caller's own."""
    if key == "parameters":
        return (len(path) == 3 and path[0] == "tools" and path[2] == "function") or (len(path) == 2 and path[0] == "functions")
    return key == "schema" and path == ("response_format", "json_schema")


def _path_text(path: tuple[str | int, ...]) -> str:
    """``messages[0].content[1].user_security_context``; at most 256 characters."""
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part[:64]}" for part in path)[1:]
    return text if len(text) <= 256 else text[:255] + "…"


def _check_nested_keys(body: Mapping[str, Any]) -> None:
    """Refuse a key only the relay may set wherever it is a key of the request's own objects (messages, content
    parts, tools and their functions, response_format, audio, prediction, metadata, unknown ones), at any depth."""
    pending: list[tuple[Any, tuple[str | int, ...]]] = [(value, (name,)) for name, value in body.items()]
    while pending:
        value, path = pending.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if _is_relay_key(key):
                    where = _path_text((*path, key))
                    raise parameter_not_allowed(
                        f"'{where}' is not allowed: the relay sets the caller's identity and Azure OpenAI's data sources itself.",
                        where,
                    )
                if isinstance(item, (dict, list)) and not (key in _SCHEMA_KEYS and _is_schema(path, key)):
                    pending.append((item, (*path, key)))
        elif isinstance(value, list):
            pending.extend((item, (*path, index)) for index, item in enumerate(value) if isinstance(item, (dict, list)))


def _check_levers(body: Mapping[str, Any], settings: Settings) -> None:
    """Parameters that cost money or keep data: allowed only as the instance's settings say."""
    store = body.get("store", False)
    if not isinstance(store, bool):
        raise invalid_request("'store' must be a boolean.", param="store")
    if store and not settings.allow_store:
        raise parameter_not_allowed(
            "'store: true' is not allowed by this relay: stored completions would keep this conversation in the shared "
            "Azure OpenAI resource (RELAY_ALLOW_STORE).",
            "store",
        )
    if "service_tier" in body:
        tier = body["service_tier"]
        if not isinstance(tier, str):
            raise invalid_request("'service_tier' must be a string.", param="service_tier")
        if tier not in settings.allowed_service_tiers:
            allowed = ", ".join(sorted(settings.allowed_service_tiers)) or "none"
            raise parameter_not_allowed(
                f"The service tier '{tier[:32]}' is not allowed by this relay (allowed: {allowed}; RELAY_ALLOWED_SERVICE_TIERS).",
                "service_tier",
            )


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise invalid_request("'messages' must be a non-empty list.", param="messages")
    if len(messages) > MAX_MESSAGES:
        raise invalid_request(f"'messages' must hold at most {MAX_MESSAGES} messages.", param="messages")
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if not isinstance(role, str) or role not in _ROLES:
            raise invalid_request(
                f"messages[{index}] must be an object with a role of system, developer, user, assistant or tool.",
                param="messages",
            )
        content = message.get("content")  # type: ignore[union-attr]
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise invalid_request(f"messages[{index}].content must be a string or a list of parts.", param="messages")
        if len(content) > MAX_CONTENT_PARTS:
            raise invalid_request(f"messages[{index}].content must hold at most {MAX_CONTENT_PARTS} parts.", param="messages")
        if not all(isinstance(part, dict) and isinstance(part.get("type"), str) for part in content):
            raise invalid_request(f"messages[{index}].content parts must be objects with a type.", param="messages")


def deployment_for(model: Any, settings: Settings) -> str:
    """The deployment a request's ``model`` names (the default when it names none); 400 when it is not allowed."""
    if model is None:
        return settings.default_deployment
    if not isinstance(model, str):
        raise invalid_request("'model' must be a string.", param="model")
    if model not in settings.deployments:
        raise model_not_allowed(model)
    return model


def _cap_tokens(upstream: dict[str, Any], settings: Settings) -> None:
    """Every upstream request carries an output cap: the caller's, at most RELAY_MAX_TOKENS, or RELAY_MAX_TOKENS itself."""
    sent = [name for name in _CAPPED if name in upstream]
    for name in sent:
        upstream[name] = min(upstream[name], settings.max_tokens)
    if not sent:
        upstream[max_tokens_field(settings.api_version)] = settings.max_tokens


def max_tokens_field(api_version: str) -> str:
    """``max_completion_tokens``, which every current model accepts, unless the API version predates it."""
    if api_version == "v1" or api_version[:10] >= _FIRST_VERSION_WITH_MAX_COMPLETION_TOKENS:
        return "max_completion_tokens"
    return "max_tokens"
