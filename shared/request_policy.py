"""What a caller may ask for: an allow-list of parameters, type checks and caps (README.md, "API").

Turns the caller's raw body into the body the relay sends upstream, or raises
a :class:`RelayError` naming the offending parameter.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from shared.config import Settings
from shared.errors import RelayError, invalid_request

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_REASONING_EFFORTS = frozenset({"minimal", "low", "medium", "high"})


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_one_of(value: Any, choices: frozenset[str]) -> bool:
    return isinstance(value, str) and value in choices


def _in_range(low: float, high: float) -> Callable[[Any], bool]:
    return lambda value: _is_number(value) and low <= value <= high


# Each allowed parameter (besides messages and model) with the check its value must pass.
_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "stream": (lambda v: isinstance(v, bool), "a boolean"),
    "stream_options": (lambda v: isinstance(v, dict), "an object"),
    "temperature": (_in_range(0, 2), "a number between 0 and 2"),
    "top_p": (_in_range(0, 1), "a number between 0 and 1"),
    "max_tokens": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "max_completion_tokens": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "stop": (lambda v: isinstance(v, str) or (_is_str_list(v) and len(v) <= 4), "a string or up to 4 strings"),
    "seed": (_is_int, "an integer"),
    "n": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "presence_penalty": (_in_range(-2, 2), "a number between -2 and 2"),
    "frequency_penalty": (_in_range(-2, 2), "a number between -2 and 2"),
    "logit_bias": (lambda v: isinstance(v, dict) and all(_in_range(-100, 100)(b) for b in v.values()), "an object of token biases"),
    "logprobs": (lambda v: isinstance(v, bool), "a boolean"),
    "top_logprobs": (lambda v: _is_int(v) and 0 <= v <= 20, "an integer between 0 and 20"),
    "response_format": (lambda v: isinstance(v, dict) and isinstance(v.get("type"), str), "an object with a type"),
    "tools": (lambda v: isinstance(v, list) and all(isinstance(t, dict) for t in v), "a list of tool objects"),
    "tool_choice": (lambda v: isinstance(v, (str, dict)), "a string or an object"),
    "parallel_tool_calls": (lambda v: isinstance(v, bool), "a boolean"),
    "reasoning_effort": (lambda v: _is_one_of(v, _REASONING_EFFORTS), "one of minimal, low, medium, high"),
    "prediction": (lambda v: isinstance(v, dict), "an object"),
    "modalities": (_is_str_list, "a list of strings"),
    "audio": (lambda v: isinstance(v, dict), "an object"),
    "metadata": (lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()), "an object of strings"),
    "store": (lambda v: isinstance(v, bool), "a boolean"),
    "prompt_cache_key": (lambda v: isinstance(v, str) and len(v) <= 256, "a string"),
}
ALLOWED_PARAMETERS = frozenset({"messages", "model", *_CHECKS})


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_body(raw: bytes) -> dict[str, Any]:
    """Parse the request body as a JSON object (NaN and Infinity are not JSON)."""
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise invalid_request("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object.")
    return body


def prepare_chat_body(body: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Validate the caller's chat completion body and return what goes upstream.

    The returned dict never holds ``user_security_context``: the caller adds it.
    """
    for name in body:
        if name not in ALLOWED_PARAMETERS:
            raise RelayError(
                400,
                "parameter_not_allowed",
                f"The parameter '{name[:64]}' is not allowed by this relay.",
                param=name[:64],
            )
    _check_messages(body.get("messages"))
    for name, value in body.items():
        check = _CHECKS.get(name)
        if check is not None and not check[0](value):
            raise invalid_request(f"'{name}' must be {check[1]}.", param=name)
    if "stream_options" in body and body.get("stream") is not True:
        raise invalid_request("'stream_options' is only allowed when 'stream' is true.", param="stream_options")

    prepared = dict(body)
    prepared["model"] = _deployment(body.get("model"), settings)
    for name in ("max_tokens", "max_completion_tokens"):
        if name in prepared:
            prepared[name] = min(prepared[name], settings.max_tokens)
    if prepared.get("n", 1) > settings.max_n:
        raise invalid_request(f"'n' must be at most {settings.max_n} on this relay.", param="n")
    return prepared


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise invalid_request("'messages' must be a non-empty list.", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not _is_one_of(message.get("role"), _ROLES):
            raise invalid_request(
                f"messages[{index}] must be an object with a role of system, developer, user, assistant or tool.",
                param="messages",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise invalid_request(f"messages[{index}].content must be a string or a list of parts.", param="messages")


def _deployment(model: Any, settings: Settings) -> str:
    if model is None:
        return settings.default_deployment
    if not isinstance(model, str):
        raise invalid_request("'model' must be a string.", param="model")
    if model not in settings.deployments:
        raise RelayError(
            400,
            "model_not_allowed",
            f"The model '{model[:64]}' is not available on this relay. See GET /api/v1/models.",
            param="model",
        )
    return model
